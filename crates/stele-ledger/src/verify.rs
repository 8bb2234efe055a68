//! Recomputing a chain from its stored rows and naming what differs.
//!
//! [`LogVerifier`] takes events in stored order, one at a time (so a
//! million-event log streams through in constant memory, borrowed from the
//! reader's buffers: a row costs no allocation), and checks each
//! row locally against its neighbours: the seq sequence, the canonical
//! bytes against the stored leaf hash, and the HMAC link from the previous
//! stored `event_hash`. Local checks keep one tampered row from drowning
//! the report in consequences. [`LogVerifier::finish`] then compares the
//! recomputed Merkle root and chain head with what storage claims.

use std::fmt;

use serde::Serialize;
use tlog_tiles::Hash;

use crate::canonical::{CommittedFields, StoredPayloadError, parse_stored_payload};
use crate::event::StoredEvent;
use crate::hashing::{GENESIS_HASH, Keyring, leaf_hash};
use crate::merkle::TreeAppender;
use crate::{ChainId, hex_hash};

/// One discrepancy between the stored log and its recomputation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Finding {
    /// Seqs `first..=last` are absent: rows were deleted.
    MissingEvents {
        /// First missing seq.
        first: u64,
        /// Last missing seq.
        last: u64,
    },
    /// A row's seq is not greater than the one before it: a duplicate or reordered row.
    OutOfOrder {
        /// The seq found.
        seq: u64,
        /// The seq of the row before it.
        after: u64,
    },
    /// A row claims another chain.
    WrongChain {
        /// Seq of the row.
        seq: u64,
        /// The chain id it claims.
        found: String,
    },
    /// A stored field cannot be read at all.
    Malformed {
        /// Seq of the row.
        seq: u64,
        /// What is wrong.
        what: String,
    },
    /// The stored (or exported) payload text is not byte-identical to its
    /// RFC 8785 form, as append writes it: another spelling of a value
    /// (`1.0`, `-0.0`, a number that rounds to the committed one) that would
    /// show a reader something else than what was committed.
    NotCanonical {
        /// Seq of the row.
        seq: u64,
        /// What differs.
        what: String,
    },
    /// The committed fields no longer hash to the stored leaf hash.
    ContentAltered {
        /// Seq of the row.
        seq: u64,
        /// Stored leaf hash (hex).
        stored_leaf: String,
        /// Leaf hash recomputed from the stored fields (hex).
        recomputed_leaf: String,
    },
    /// The row's HMAC key is not in the keyring, so its link cannot be checked.
    UnknownKey {
        /// Seq of the row.
        seq: u64,
        /// The key id it names.
        key_id: String,
    },
    /// `event_hash` is not `HMAC(key, previous event_hash ‖ leaf)`. The
    /// HMAC the key gives is never shown: whoever reads a report (or a
    /// gateway's answer) while holding the database could otherwise write
    /// it into the row, and forge the links one event at a time.
    ChainLinkBroken {
        /// Seq of the row.
        seq: u64,
        /// Stored event hash (hex).
        stored: String,
    },
    /// The chain head says there are more events than the log holds.
    TailMissing {
        /// Size the head claims.
        head_size: u64,
        /// Events found.
        found: u64,
    },
    /// The log holds more events than the chain head accounts for.
    UnaccountedEvents {
        /// Size the head claims.
        head_size: u64,
        /// Events found.
        found: u64,
    },
    /// The head's `event_hash` is not the last event's.
    HeadMismatch {
        /// Hash recorded in the head (hex).
        head_hash: String,
        /// Hash of the last event found (hex).
        last_event_hash: String,
    },
    /// A row's stored Merkle nodes differ from the ones recomputed from the
    /// events, so proofs served from storage would be wrong. Only the first
    /// such row is reported.
    MerkleNodesMismatch {
        /// Seq of the row holding the nodes.
        seq: u64,
    },
    /// The stored Merkle tree's root differs from the tree recomputed from the events.
    TreeMismatch {
        /// Tree size compared.
        size: u64,
        /// Root read from stored hashes (hex).
        stored_root: String,
        /// Root recomputed from the events (hex).
        recomputed_root: String,
    },
}

impl Finding {
    /// The seq this finding is about, if it is about one event.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::MissingEvents { first, .. } => Some(*first),
            Self::OutOfOrder { seq, .. }
            | Self::WrongChain { seq, .. }
            | Self::Malformed { seq, .. }
            | Self::NotCanonical { seq, .. }
            | Self::ContentAltered { seq, .. }
            | Self::UnknownKey { seq, .. }
            | Self::ChainLinkBroken { seq, .. }
            | Self::MerkleNodesMismatch { seq } => Some(*seq),
            Self::TailMissing { found, .. } => Some(*found),
            Self::UnaccountedEvents { head_size, .. } => Some(*head_size),
            Self::HeadMismatch { .. } | Self::TreeMismatch { .. } => None,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingEvents { first, last } if first == last => {
                write!(f, "seq {first}: event missing (deleted row)")
            }
            Self::MissingEvents { first, last } => write!(
                f,
                "seq {first}..={last}: {} events missing (deleted rows)",
                last - first + 1
            ),
            Self::OutOfOrder { seq, after } => write!(
                f,
                "seq {seq}: appears after seq {after} (duplicate or reordered row)"
            ),
            Self::WrongChain { seq, found } => write!(f, "seq {seq}: row claims chain {found:?}"),
            Self::Malformed { seq, what } => write!(f, "seq {seq}: unreadable row: {what}"),
            Self::NotCanonical { seq, what } => write!(f, "seq {seq}: {what}"),
            Self::ContentAltered {
                seq,
                stored_leaf,
                recomputed_leaf,
            } => write!(
                f,
                "seq {seq}: event content altered: its fields hash to leaf {recomputed_leaf}, but leaf {stored_leaf} was committed"
            ),
            Self::UnknownKey { seq, key_id } => write!(
                f,
                "seq {seq}: HMAC key {key_id:?} is not in the keyring; the chain link cannot be checked"
            ),
            Self::ChainLinkBroken { seq, stored } => write!(
                f,
                "seq {seq}: HMAC chain broken: its stored event_hash {stored} is not the HMAC of the previous event_hash and its leaf"
            ),
            Self::TailMissing { head_size, found } => write!(
                f,
                "seq {found}: log truncated: the chain head records {head_size} events but only {found} were found"
            ),
            Self::UnaccountedEvents { head_size, found } => write!(
                f,
                "seq {head_size}: {} events beyond the chain head's size {head_size} (inserted rows)",
                found - head_size
            ),
            Self::HeadMismatch {
                head_hash,
                last_event_hash,
            } => write!(
                f,
                "chain head hash {head_hash} is not the last event's event_hash {last_event_hash}"
            ),
            Self::MerkleNodesMismatch { seq } => write!(
                f,
                "seq {seq}: the stored Merkle nodes do not match the tree the events give; proofs served from this database would be wrong"
            ),
            Self::TreeMismatch {
                size,
                stored_root,
                recomputed_root,
            } => write!(
                f,
                "stored Merkle tree at size {size} has root {stored_root}, the events give {recomputed_root}"
            ),
        }
    }
}

/// What storage claims about the chain, to compare the recomputation with.
#[derive(Clone, Debug)]
pub struct ClaimedHead {
    /// Number of events the chain head records.
    pub size: u64,
    /// The head's last `event_hash`.
    pub head_hash: Hash,
    /// Root computed from storage's Merkle hashes at `size`, or why it could not be read.
    pub stored_root: Result<Hash, String>,
}

/// The outcome of verifying one chain.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// Chain verified.
    pub chain_id: String,
    /// Rows read.
    pub events_checked: u64,
    /// Whether HMAC links were checked (needs the keyring).
    pub hmac_checked: bool,
    /// Tree size recomputed from the rows.
    pub tree_size: u64,
    /// Root recomputed from the rows (hex).
    pub root_hash: String,
    /// Lowest seq named by any finding.
    pub first_bad_seq: Option<u64>,
    /// Number of findings in all (the list below may be capped).
    pub total_findings: u64,
    /// Findings, in the order found.
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// True when nothing differs.
    pub fn is_clean(&self) -> bool {
        self.total_findings == 0
    }
}

/// Streams a chain's rows through every check.
#[derive(Debug)]
pub struct LogVerifier<'k> {
    chain: ChainId,
    keys: Option<&'k Keyring>,
    next_seq: u64,
    last_seq: Option<u64>,
    prev_stored_hash: Hash,
    rows: u64,
    tree: TreeAppender,
    findings: Vec<Finding>,
    total_findings: u64,
    max_findings: usize,
    /// The tree of the stored leaves, once it differs from `tree` (the tree
    /// of the recomputed leaves): the two are the same until some row's
    /// content was altered, so until then `tree` serves both and each
    /// node is hashed once.
    stored_tree: Option<TreeAppender>,
    nodes_mismatch_reported: bool,
    /// Buffers reused from row to row: the canonical bytes being hashed,
    /// and the Merkle nodes the last leaf completed in each tree.
    canonical: Vec<u8>,
    nodes: Vec<Hash>,
    stored_nodes: Vec<Hash>,
}

impl<'k> LogVerifier<'k> {
    /// Findings kept in the report; beyond this they are only counted.
    pub const DEFAULT_MAX_FINDINGS: usize = 1000;

    /// A verifier for `chain`; without `keys` the HMAC links are not checked.
    pub fn new(chain: ChainId, keys: Option<&'k Keyring>) -> Self {
        Self {
            chain,
            keys,
            next_seq: 0,
            last_seq: None,
            prev_stored_hash: GENESIS_HASH,
            rows: 0,
            tree: TreeAppender::empty(),
            findings: Vec::new(),
            total_findings: 0,
            max_findings: Self::DEFAULT_MAX_FINDINGS,
            stored_tree: None,
            nodes_mismatch_reported: false,
            canonical: Vec::new(),
            nodes: Vec::new(),
            stored_nodes: Vec::new(),
        }
    }

    fn report(&mut self, f: Finding) {
        self.total_findings += 1;
        if self.findings.len() < self.max_findings {
            self.findings.push(f);
        }
    }

    /// Checks the next stored row: an [`Event`](crate::Event) (from an export) or a
    /// borrowed [`StoredEvent`] (from a database scan). `stored_nodes` are
    /// the row's stored Merkle nodes (concatenated hashes), when the source
    /// has them (a database does; an export does not).
    pub fn check<'e>(&mut self, row: impl Into<StoredEvent<'e>>, stored_nodes: Option<&[u8]>) {
        let e: StoredEvent<'e> = row.into();
        self.rows += 1;
        let seq = e.seq;
        if let Some(last) = self.last_seq.filter(|last| seq <= *last) {
            self.report(Finding::OutOfOrder { seq, after: last });
            return;
        }
        if seq > self.next_seq {
            self.report(Finding::MissingEvents {
                first: self.next_seq,
                last: seq - 1,
            });
        }
        self.last_seq = Some(seq);
        // Saturating: a row may claim any seq, u64::MAX included.
        self.next_seq = seq.saturating_add(1);
        if e.chain_id != self.chain.as_str() {
            self.report(Finding::WrongChain {
                seq,
                found: e.chain_id.to_owned(),
            });
        }

        let stored_leaf_parsed = e.leaf_hash.parse();
        let recomputed_leaf = match self.recompute_leaf(&e, stored_leaf_parsed.as_ref()) {
            Ok(leaf) => leaf,
            Err(what) => {
                self.report(Finding::Malformed { seq, what });
                return;
            }
        };

        // Later checks use the stored leaf, so each finding points at what was
        // changed (content, leaf_hash, event_hash or Merkle nodes) rather than
        // repeating one change as several.
        let stored_leaf = match stored_leaf_parsed {
            Some(stored) => {
                if stored != recomputed_leaf {
                    self.report(Finding::ContentAltered {
                        seq,
                        stored_leaf: hex_hash(&stored),
                        recomputed_leaf: hex_hash(&recomputed_leaf),
                    });
                }
                stored
            }
            None => {
                self.report(Finding::Malformed {
                    seq,
                    what: "leaf_hash is not 64 hex characters".into(),
                });
                recomputed_leaf
            }
        };
        if stored_nodes.is_some() && stored_leaf != recomputed_leaf && self.stored_tree.is_none() {
            // From here on the stored leaves give another tree than the events.
            self.stored_tree = Some(self.tree.clone());
        }
        // Missing rows leave the recomputed tree short; the root comparison in
        // `finish` reports that, so the tree keeps following the rows present.
        self.tree.push_into(recomputed_leaf, &mut self.nodes);
        if let Some(stored) = stored_nodes {
            // Proofs are served from stored leaves and nodes: check those agree.
            let nodes = match &mut self.stored_tree {
                Some(stored_tree) => {
                    stored_tree.push_into(stored_leaf, &mut self.stored_nodes);
                    &self.stored_nodes
                }
                None => &self.nodes,
            };
            let same = stored.len() == nodes.len() * 32
                && stored.chunks(32).zip(nodes).all(|(s, n)| s == n.0);
            if !same && !self.nodes_mismatch_reported {
                self.nodes_mismatch_reported = true;
                self.report(Finding::MerkleNodesMismatch { seq });
            }
        }
        let Some(stored_event_hash) = e.event_hash.parse() else {
            self.report(Finding::Malformed {
                seq,
                what: "event_hash is not 64 hex characters".into(),
            });
            return;
        };
        if let Some(keys) = self.keys {
            match keys.get(e.key_id) {
                None => self.report(Finding::UnknownKey {
                    seq,
                    key_id: e.key_id.to_owned(),
                }),
                Some(key) => {
                    let recomputed = key.chain_hash(&self.prev_stored_hash, &stored_leaf);
                    if recomputed != stored_event_hash {
                        self.report(Finding::ChainLinkBroken {
                            seq,
                            stored: hex_hash(&stored_event_hash),
                        });
                    }
                }
            }
        }
        self.prev_stored_hash = stored_event_hash;
    }

    fn recompute_leaf(
        &mut self,
        e: &StoredEvent<'_>,
        stored_leaf: Option<&Hash>,
    ) -> Result<Hash, String> {
        // stele stores payloads in canonical form, so hash the stored text as
        // it is first: if that matches the committed leaf, these are exactly
        // the committed bytes (SHA-256 leaves no other way to match) and the
        // JSON parse and re-serialization can be skipped.
        e.committed_as_stored()
            .write_canonical_bytes(&mut self.canonical);
        let fast = leaf_hash(&self.canonical);
        if stored_leaf == Some(&fast) {
            return Ok(fast);
        }
        // Otherwise the text must still be what append writes: JSON within
        // the depth limit and byte-identical to its canonical form. Another
        // spelling of a value that canonicalizes to the committed bytes
        // (`1.0`, `9007199254740993`) is a finding, not a pass.
        let Some(payload) = e.payload else {
            return Ok(fast);
        };
        match parse_stored_payload(payload) {
            Ok(()) => Ok(fast),
            Err(StoredPayloadError::Unreadable(what)) => Err(what),
            Err(StoredPayloadError::NotCanonical {
                canonical,
                difference,
            }) => {
                self.report(Finding::NotCanonical {
                    seq: e.seq,
                    what: difference,
                });
                // Go on with the value the text denotes, so a changed value
                // is also named as altered content.
                CommittedFields {
                    canonical_payload: Some(&canonical),
                    ..e.committed_as_stored()
                }
                .write_canonical_bytes(&mut self.canonical);
                Ok(leaf_hash(&self.canonical))
            }
        }
    }

    /// Leaves recomputed so far.
    pub fn tree_size(&self) -> u64 {
        self.tree.size()
    }

    /// Root of the tree recomputed so far.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The stored `event_hash` of the last row read (genesis before any).
    pub fn last_event_hash(&self) -> Hash {
        self.prev_stored_hash
    }

    /// Compares the recomputation with storage's claims and returns the report.
    pub fn finish(mut self, claimed: Option<&ClaimedHead>) -> VerifyReport {
        let found = self.next_seq;
        if let Some(head) = claimed {
            if head.size > found {
                self.report(Finding::TailMissing {
                    head_size: head.size,
                    found,
                });
            } else if head.size < found {
                self.report(Finding::UnaccountedEvents {
                    head_size: head.size,
                    found,
                });
            } else if head.size > 0 && head.head_hash != self.prev_stored_hash {
                self.report(Finding::HeadMismatch {
                    head_hash: hex_hash(&head.head_hash),
                    last_event_hash: hex_hash(&self.prev_stored_hash),
                });
            }
            let recomputed_root = self.tree.root();
            // When sizes differ, the truncation or insertion above explains the difference.
            if self.tree.size() == head.size {
                let stored_root = match &head.stored_root {
                    Ok(root) if *root == recomputed_root => None,
                    Ok(root) => Some(hex_hash(root)),
                    Err(why) => Some(format!("unreadable ({why})")),
                };
                if let Some(stored_root) = stored_root {
                    self.report(Finding::TreeMismatch {
                        size: head.size,
                        stored_root,
                        recomputed_root: hex_hash(&recomputed_root),
                    });
                }
            }
        }
        let first_bad_seq = self.findings.iter().filter_map(Finding::seq).min();
        VerifyReport {
            chain_id: self.chain.to_string(),
            events_checked: self.rows,
            hmac_checked: self.keys.is_some(),
            tree_size: self.tree.size(),
            root_hash: hex_hash(&self.tree.root()),
            first_bad_seq,
            total_findings: self.total_findings,
            findings: self.findings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::append::{ChainAppender, ChainState};
    use crate::event::StoredHash;
    use crate::event::{EventInput, Limits};
    use crate::hashing::{HmacKey, KeyId};
    use crate::{Event, Timestamp, merkle};

    fn keyring() -> Keyring {
        let k = HmacKey::new(KeyId::new("k1").unwrap(), b"secret");
        Keyring::new(KeyId::new("k1").unwrap(), [k]).unwrap()
    }

    fn chain(n: u64, keys: &Keyring) -> (Vec<Event>, ClaimedHead) {
        let id = ChainId::new("prod").unwrap();
        let mut app = ChainAppender::new(id, &ChainState::empty(), &[], keys.active()).unwrap();
        let now = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        let events: Vec<Event> = (0..n)
            .map(|i| {
                let input = EventInput {
                    event_type: "user.login".into(),
                    actor: Some(format!("user{i}")),
                    payload: Some(serde_json::json!({"i": i})),
                    idempotency_key: None,
                };
                app.append(input.validate(&Limits::default()).unwrap(), now)
                    .event
            })
            .collect();
        let st = app.state();
        (
            events,
            ClaimedHead {
                size: st.size,
                head_hash: st.head_hash,
                stored_root: Ok(app.root()),
            },
        )
    }

    fn run(events: &[Event], head: &ClaimedHead, keys: &Keyring) -> VerifyReport {
        let mut v = LogVerifier::new(ChainId::new("prod").unwrap(), Some(keys));
        events.iter().for_each(|e| v.check(e, None));
        v.finish(Some(head))
    }

    #[test]
    fn a_row_claiming_the_largest_seq_is_a_finding_not_a_panic() {
        // Found by the `export_lines` fuzz target (fuzz/regressions/export_lines/):
        // an export line with "seq":18446744073709551615 overflowed `seq + 1`.
        let keys = keyring();
        let (mut events, head) = chain(3, &keys);
        events[2].seq = u64::MAX;
        let r = run(&events, &head, &keys);
        assert!(
            r.findings.iter().any(|f| matches!(
                f,
                Finding::MissingEvents { first: 2, last } if *last == u64::MAX - 1
            )),
            "{:?}",
            r.findings
        );
        assert!(!r.is_clean());
    }

    #[test]
    fn clean_chain_verifies() {
        let keys = keyring();
        let (events, head) = chain(20, &keys);
        let r = run(&events, &head, &keys);
        assert!(r.is_clean(), "{:?}", r.findings);
        assert_eq!(r.tree_size, 20);
        assert_eq!(r.root_hash, hex_hash(head.stored_root.as_ref().unwrap()));
        assert_ne!(
            *head.stored_root.as_ref().unwrap(),
            merkle::root(0, &merkle::MemoryHashes::default()).unwrap()
        );
    }

    /// A row as a database holds it: leaf and event hash as raw bytes, and
    /// the Merkle nodes its append completed.
    type StoredRow = (Event, [u8; 32], [u8; 32], Vec<u8>);

    fn stored_rows(n: u64, keys: &Keyring) -> Vec<StoredRow> {
        let id = ChainId::new("prod").unwrap();
        let mut app = ChainAppender::new(id, &ChainState::empty(), &[], keys.active()).unwrap();
        let now = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        (0..n)
            .map(|i| {
                let input = EventInput {
                    event_type: "user.login".into(),
                    actor: Some(format!("user{i}")),
                    payload: Some(serde_json::json!({"i": i})),
                    idempotency_key: None,
                };
                let row = app.append(input.validate(&Limits::default()).unwrap(), now);
                let nodes = row.merkle_nodes.iter().flat_map(|h| h.0).collect();
                (row.event, row.leaf_hash.0, row.event_hash.0, nodes)
            })
            .collect()
    }

    fn run_stored(rows: &[StoredRow], keys: &Keyring) -> VerifyReport {
        let mut v = LogVerifier::new(ChainId::new("prod").unwrap(), Some(keys));
        for (e, leaf, event_hash, nodes) in rows {
            let row = StoredEvent {
                leaf_hash: StoredHash::Bytes(leaf),
                event_hash: StoredHash::Bytes(event_hash),
                ..StoredEvent::from(e)
            };
            v.check(row, Some(nodes));
        }
        v.finish(None)
    }

    #[test]
    fn stored_rows_verify_like_exported_ones() {
        let keys = keyring();
        let rows = stored_rows(40, &keys);
        let r = run_stored(&rows, &keys);
        assert!(r.is_clean(), "{:?}", r.findings);
        let exported: Vec<Event> = rows.iter().map(|r| r.0.clone()).collect();
        let (_, head) = chain(40, &keys);
        assert_eq!(r.root_hash, run(&exported, &head, &keys).root_hash);
    }

    #[test]
    fn an_edited_row_does_not_make_later_stored_nodes_look_wrong() {
        // After an edit, the events give another tree than the stored leaves;
        // the stored nodes still match the stored leaves, so the edit is the
        // only finding.
        let keys = keyring();
        let mut rows = stored_rows(40, &keys);
        rows[5].0.payload = Some(r#"{"i":500}"#.into());
        let r = run_stored(&rows, &keys);
        assert_eq!(r.total_findings, 1, "{:?}", r.findings);
        assert!(matches!(
            r.findings[0],
            Finding::ContentAltered { seq: 5, .. }
        ));

        // A stored node rewritten after that edit is still found.
        let at = rows
            .iter()
            .position(|r| r.0.seq > 9 && !r.3.is_empty())
            .unwrap();
        rows[at].3[0] ^= 1;
        let r = run_stored(&rows, &keys);
        assert_eq!(
            r.findings[1],
            Finding::MerkleNodesMismatch { seq: at as u64 }
        );

        // A wrong-length stored hash is unreadable, as in an export.
        let rows = stored_rows(1, &keys);
        let mut v = LogVerifier::new(ChainId::new("prod").unwrap(), Some(&keys));
        let (e, leaf, event_hash, nodes) = &rows[0];
        v.check(
            StoredEvent {
                leaf_hash: StoredHash::Bytes(&leaf[..31]),
                event_hash: StoredHash::Bytes(event_hash),
                ..StoredEvent::from(e)
            },
            Some(nodes),
        );
        assert_eq!(
            v.finish(None).findings,
            [Finding::Malformed {
                seq: 0,
                what: "leaf_hash is not 64 hex characters".into()
            }]
        );
    }

    #[test]
    fn each_tamper_names_its_seq() {
        let keys = keyring();
        let (events, head) = chain(20, &keys);

        let mut edited = events.clone();
        edited[7].payload = Some(r#"{"i":700}"#.into());
        let r = run(&edited, &head, &keys);
        assert_eq!(r.first_bad_seq, Some(7));
        assert!(
            matches!(r.findings[0], Finding::ContentAltered { seq: 7, .. }),
            "{:?}",
            r.findings
        );

        let mut deleted = events.clone();
        deleted.remove(11);
        let r = run(&deleted, &head, &keys);
        assert_eq!(r.first_bad_seq, Some(11));
        assert_eq!(
            r.findings[0],
            Finding::MissingEvents {
                first: 11,
                last: 11
            }
        );

        let mut swapped = events.clone();
        swapped.swap(3, 4);
        (swapped[3].seq, swapped[4].seq) = (3, 4);
        let r = run(&swapped, &head, &keys);
        assert_eq!(r.first_bad_seq, Some(3));

        let mut rehashed = events.clone();
        rehashed[15].event_hash = "ab".repeat(32);
        let r = run(&rehashed, &head, &keys);
        assert_eq!(r.first_bad_seq, Some(15));
        assert!(matches!(
            r.findings[0],
            Finding::ChainLinkBroken { seq: 15, .. }
        ));

        let truncated = &events[..18];
        let r = run(truncated, &head, &keys);
        assert_eq!(
            r.findings[0],
            Finding::TailMissing {
                head_size: 20,
                found: 18
            }
        );

        let mut bad_json = events.clone();
        bad_json[2].payload = Some("{not json".into());
        let r = run(&bad_json, &head, &keys);
        assert!(matches!(r.findings[0], Finding::Malformed { seq: 2, .. }));

        let mut unknown_key = events;
        unknown_key[5].key_id = "k9".into();
        let r = run(&unknown_key, &head, &keys);
        assert_eq!(
            r.findings[0],
            Finding::UnknownKey {
                seq: 5,
                key_id: "k9".into()
            }
        );
    }

    /// Another spelling of a committed number canonicalizes to the same
    /// bytes; it must still be named, as append would never have stored it.
    #[test]
    fn a_payload_not_in_canonical_form_is_named() {
        let keys = keyring();
        let id = ChainId::new("prod").unwrap();
        let mut app = ChainAppender::new(id, &ChainState::empty(), &[], keys.active()).unwrap();
        let now = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        let payloads = [
            serde_json::json!({"n": 9_007_199_254_740_992_u64}),
            serde_json::json!({"n": 1e21}),
            serde_json::json!({"n": 0.1}),
            serde_json::json!({"n": 0}),
            serde_json::json!({"n": 1}),
        ];
        let events: Vec<Event> = payloads
            .iter()
            .map(|p| {
                let input = EventInput {
                    event_type: "t".into(),
                    payload: Some(p.clone()),
                    ..Default::default()
                };
                app.append(input.validate(&Limits::default()).unwrap(), now)
                    .event
            })
            .collect();
        let st = app.state();
        let head = ClaimedHead {
            size: st.size,
            head_hash: st.head_hash,
            stored_root: Ok(app.root()),
        };
        assert!(run(&events, &head, &keys).is_clean());
        let swaps = [
            ("9007199254740992", "9007199254740993"),
            ("1e+21", "1000000000000000000001"),
            ("0.1", "0.10000000000000001"),
            ("0", "-0.0"),
            ("1", "1.0"),
        ];
        for (seq, (from, to)) in swaps.iter().enumerate() {
            let mut edited = events.clone();
            let payload = edited[seq].payload.clone().unwrap();
            assert_eq!(payload, format!("{{\"n\":{from}}}"));
            edited[seq].payload = Some(format!("{{\"n\":{to}}}"));
            let r = run(&edited, &head, &keys);
            assert_eq!(r.first_bad_seq, Some(seq as u64), "{to}: {:?}", r.findings);
            assert!(
                matches!(&r.findings[..], [Finding::NotCanonical { seq: s, what }] if *s == seq as u64 && what.contains(to)),
                "{to}: {:?}",
                r.findings
            );
        }
    }

    #[test]
    fn a_payload_deeper_than_append_accepts_is_unreadable() {
        let keys = keyring();
        let (mut events, head) = chain(3, &keys);
        let deep = crate::event::MAX_PAYLOAD_DEPTH + 1;
        events[1].payload = Some(format!("{}{}", "[".repeat(deep), "]".repeat(deep)));
        let r = run(&events, &head, &keys);
        assert!(
            matches!(&r.findings[0], Finding::Malformed { seq: 1, what } if what.contains("deep")),
            "{:?}",
            r.findings
        );
    }
}
