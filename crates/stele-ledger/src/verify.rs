//! Recomputing a chain from its stored rows and naming what differs.
//!
//! [`LogVerifier`] takes events in stored order, one at a time (so a
//! million-event log streams through in constant memory), and checks each
//! row locally against its neighbours: the seq sequence, the canonical
//! bytes against the stored leaf hash, and the HMAC link from the previous
//! stored `event_hash`. Local checks keep one tampered row from drowning
//! the report in consequences. [`LogVerifier::finish`] then compares the
//! recomputed Merkle root and chain head with what storage claims.

use std::fmt;

use serde::Serialize;
use tlog_tiles::Hash;

use crate::canonical::{CommittedFields, event_canonical_bytes};
use crate::hashing::{GENESIS_HASH, Keyring, leaf_hash};
use crate::merkle::TreeAppender;
use crate::{ChainId, Event, hex_hash, parse_hex_hash};

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
    /// `event_hash` is not `HMAC(key, previous event_hash ‖ leaf)`.
    ChainLinkBroken {
        /// Seq of the row.
        seq: u64,
        /// Stored event hash (hex).
        stored: String,
        /// Recomputed event hash (hex).
        recomputed: String,
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
            Self::ChainLinkBroken {
                seq,
                stored,
                recomputed,
            } => write!(
                f,
                "seq {seq}: HMAC chain broken: stored event_hash {stored}, recomputed {recomputed}"
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
    stored_tree: TreeAppender,
    nodes_mismatch_reported: bool,
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
            stored_tree: TreeAppender::empty(),
            nodes_mismatch_reported: false,
        }
    }

    fn report(&mut self, f: Finding) {
        self.total_findings += 1;
        if self.findings.len() < self.max_findings {
            self.findings.push(f);
        }
    }

    /// Checks the next stored row. `stored_nodes` are the row's stored Merkle
    /// nodes (concatenated hashes), when the source has them (a database
    /// does; an export does not).
    pub fn check(&mut self, e: &Event, stored_nodes: Option<&[u8]>) {
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
        self.next_seq = seq + 1;
        if e.chain_id != self.chain.as_str() {
            self.report(Finding::WrongChain {
                seq,
                found: e.chain_id.clone(),
            });
        }

        let stored_leaf_parsed = parse_hex_hash(&e.leaf_hash);
        let recomputed_leaf = match self.recompute_leaf(e, stored_leaf_parsed.as_ref().ok()) {
            Ok(leaf) => leaf,
            Err(what) => {
                self.report(Finding::Malformed { seq, what });
                return;
            }
        };
        // Missing rows leave the recomputed tree short; the root comparison in
        // `finish` reports that, so the tree keeps following the rows present.
        self.tree.push(recomputed_leaf);

        let stored_event_hash = parse_hex_hash(&e.event_hash);
        // Later checks use the stored leaf, so each finding points at what was
        // changed (content, leaf_hash, event_hash or Merkle nodes) rather than
        // repeating one change as several.
        let stored_leaf = match stored_leaf_parsed {
            Ok(stored) => {
                if stored != recomputed_leaf {
                    self.report(Finding::ContentAltered {
                        seq,
                        stored_leaf: hex_hash(&stored),
                        recomputed_leaf: hex_hash(&recomputed_leaf),
                    });
                }
                stored
            }
            Err(_) => {
                self.report(Finding::Malformed {
                    seq,
                    what: "leaf_hash is not 64 hex characters".into(),
                });
                recomputed_leaf
            }
        };
        if let Some(stored) = stored_nodes {
            // Proofs are served from stored leaves and nodes: check those agree.
            let nodes = self.stored_tree.push(stored_leaf);
            let same = stored.len() == nodes.len() * 32
                && stored.chunks(32).zip(&nodes).all(|(s, n)| s == n.0);
            if !same && !self.nodes_mismatch_reported {
                self.nodes_mismatch_reported = true;
                self.report(Finding::MerkleNodesMismatch { seq });
            }
        }
        let Ok(stored_event_hash) = stored_event_hash else {
            self.report(Finding::Malformed {
                seq,
                what: "event_hash is not 64 hex characters".into(),
            });
            return;
        };
        if let Some(keys) = self.keys {
            match keys.get(&e.key_id) {
                None => self.report(Finding::UnknownKey {
                    seq,
                    key_id: e.key_id.clone(),
                }),
                Some(key) => {
                    let recomputed = key.chain_hash(&self.prev_stored_hash, &stored_leaf);
                    if recomputed != stored_event_hash {
                        self.report(Finding::ChainLinkBroken {
                            seq,
                            stored: hex_hash(&stored_event_hash),
                            recomputed: hex_hash(&recomputed),
                        });
                    }
                }
            }
        }
        self.prev_stored_hash = stored_event_hash;
    }

    fn recompute_leaf(&self, e: &Event, stored_leaf: Option<&Hash>) -> Result<Hash, String> {
        // stele stores payloads in canonical form, so hash the stored text as
        // it is first: if that matches the committed leaf, these are exactly
        // the committed bytes (SHA-256 leaves no other way to match) and the
        // JSON parse and re-serialization can be skipped.
        let as_stored = CommittedFields {
            chain_id: &e.chain_id,
            seq: e.seq,
            ts: &e.ts,
            event_type: &e.event_type,
            actor: e.actor.as_deref(),
            canonical_payload: e.payload.as_deref(),
        };
        let fast = leaf_hash(&as_stored.canonical_bytes());
        if stored_leaf == Some(&fast) {
            return Ok(fast);
        }
        event_canonical_bytes(e)
            .map(|bytes| leaf_hash(&bytes))
            .map_err(|err| format!("payload is not valid JSON ({err})"))
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
    use crate::event::{EventInput, Limits};
    use crate::hashing::{HmacKey, KeyId};
    use crate::{Timestamp, merkle};

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
}
