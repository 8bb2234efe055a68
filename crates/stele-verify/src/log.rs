//! The log against its anchors: every anchor's `tree_size`, `root_hash` and
//! `last_hash` recomputed from the events, on top of the row-by-row checks of
//! [`stele_ledger::verify::LogVerifier`].

use stele_anchor::Anchor;
use stele_ledger::verify::{ClaimedHead, Finding as LogFinding, LogVerifier, VerifyReport};
use stele_ledger::{ChainId, Keyring, StoredEvent, hex_hash};

use crate::report::{Aspect, Finding};

/// Streams a chain's events and compares them with its anchors.
pub struct AnchoredLog<'k> {
    verifier: LogVerifier<'k>,
    anchors: Vec<Anchor>,
    next: usize,
    findings: Vec<Finding>,
    previous_size: u64,
}

impl<'k> AnchoredLog<'k> {
    /// `anchors` are the trusted anchors (see [`crate::AnchorAudit::trusted`]).
    pub fn new(chain: ChainId, keys: Option<&'k Keyring>, mut anchors: Vec<Anchor>) -> Self {
        anchors.sort_by_key(|a| (a.tree_size, a.anchor_seq));
        let mut this = Self {
            verifier: LogVerifier::new(chain, keys),
            anchors,
            next: 0,
            findings: Vec::new(),
            previous_size: 0,
        };
        this.compare_due();
        this
    }

    /// Checks the next event: an [`Event`](stele_ledger::Event) from an
    /// export, or a borrowed [`StoredEvent`] with its stored Merkle nodes
    /// from a database scan.
    pub fn check<'e>(&mut self, row: impl Into<StoredEvent<'e>>, stored_nodes: Option<&[u8]>) {
        self.verifier.check(row, stored_nodes);
        self.compare_due();
    }

    fn compare_due(&mut self) {
        let size = self.verifier.tree_size();
        while let Some(anchor) = self.anchors.get(self.next).filter(|a| a.tree_size == size) {
            let root = hex_hash(&self.verifier.root());
            let last = (size > 0).then(|| hex_hash(&self.verifier.last_event_hash()));
            let range = format!("seq {}..={}", self.previous_size, size.saturating_sub(1));
            if root != anchor.root_hash {
                self.findings.push(
                    Finding::new(
                        Aspect::Integrity,
                        "anchor_root_mismatch",
                        format!("anchor #{} / {range}", anchor.anchor_seq),
                        format!(
                            "the events give root {root} at tree size {size}, anchor #{} committed {}: events in {range} were changed, inserted, deleted or reordered after they were anchored",
                            anchor.anchor_seq, anchor.root_hash
                        ),
                    )
                    .anchor(anchor.anchor_seq)
                    .seq(self.previous_size)
                    .at(anchor.ts_utc.clone()),
                );
            } else if anchor.last_hash.is_some() && last != anchor.last_hash {
                self.findings.push(
                    Finding::new(
                        Aspect::Integrity,
                        "anchor_last_hash_mismatch",
                        format!(
                            "anchor #{} / seq {}",
                            anchor.anchor_seq,
                            size.saturating_sub(1)
                        ),
                        format!(
                            "event_hash of seq {} is {}, anchor #{} committed {}",
                            size.saturating_sub(1),
                            last.as_deref().unwrap_or("none"),
                            anchor.anchor_seq,
                            anchor.last_hash.as_deref().unwrap_or("none")
                        ),
                    )
                    .anchor(anchor.anchor_seq)
                    .seq(size.saturating_sub(1))
                    .at(anchor.ts_utc.clone()),
                );
            }
            self.previous_size = size;
            self.next += 1;
        }
    }

    /// Finishes: anchors beyond the log's end mean a truncated log.
    pub fn finish(mut self, claimed: Option<&ClaimedHead>) -> (VerifyReport, Vec<Finding>) {
        let size = self.verifier.tree_size();
        if let Some(beyond) = self
            .anchors
            .get(self.next..)
            .and_then(|rest| rest.iter().max_by_key(|a| a.tree_size))
        {
            self.findings.push(
                Finding::new(
                    Aspect::Completeness,
                    "log_truncated",
                    format!("seq {size}..={}", beyond.tree_size.saturating_sub(1)),
                    format!(
                        "anchor #{} covers {} events but the log has {size}: events from seq {size} were removed",
                        beyond.anchor_seq, beyond.tree_size
                    ),
                )
                .anchor(beyond.anchor_seq)
                .seq(size)
                .at(beyond.ts_utc.clone()),
            );
        }
        let report = self.verifier.finish(claimed);
        let mut findings: Vec<Finding> = report.findings.iter().map(from_log_finding).collect();
        findings.extend(self.findings);
        (report, findings)
    }
}

/// A row-level finding in report terms.
fn from_log_finding(f: &LogFinding) -> Finding {
    let aspect = match f {
        LogFinding::MissingEvents { .. } | LogFinding::TailMissing { .. } => Aspect::Completeness,
        _ => Aspect::Integrity,
    };
    let kind = serde_json_kind(f);
    let subject = f
        .seq()
        .map_or_else(|| "chain head".to_owned(), |s| format!("seq {s}"));
    let mut out = Finding::new(aspect, &kind, subject, f.to_string());
    if let Some(s) = f.seq() {
        out = out.seq(s);
    }
    out
}

fn serde_json_kind(f: &LogFinding) -> String {
    match f {
        LogFinding::MissingEvents { .. } => "missing_events",
        LogFinding::OutOfOrder { .. } => "out_of_order",
        LogFinding::WrongChain { .. } => "wrong_chain",
        LogFinding::Malformed { .. } => "malformed",
        LogFinding::NotCanonical { .. } => "not_canonical",
        LogFinding::ContentAltered { .. } => "content_altered",
        LogFinding::UnknownKey { .. } => "unknown_key",
        LogFinding::ChainLinkBroken { .. } => "chain_link_broken",
        LogFinding::TailMissing { .. } => "tail_missing",
        LogFinding::UnaccountedEvents { .. } => "unaccounted_events",
        LogFinding::HeadMismatch { .. } => "head_mismatch",
        LogFinding::MerkleNodesMismatch { .. } => "merkle_nodes_mismatch",
        LogFinding::TreeMismatch { .. } => "tree_mismatch",
        _ => "other",
    }
    .to_owned()
}
