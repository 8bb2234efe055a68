//! What must hold between consecutive anchors of one chain.

use stele_ledger::{merkle, parse_hex_hash};
use thiserror::Error;

use crate::Anchor;

/// Two consecutive anchors do not link up.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkError {
    /// The anchors belong to different chains.
    #[error("anchor {seq} belongs to chain {found:?}, not {expected:?}")]
    WrongChain {
        /// Seq of the later anchor.
        seq: u64,
        /// Chain of the earlier anchor.
        expected: String,
        /// Chain of the later anchor.
        found: String,
    },
    /// `anchor_seq` does not increase by one.
    #[error("anchor {next} follows anchor {prev}: expected anchor {}", prev + 1)]
    NotNext {
        /// Earlier anchor's seq.
        prev: u64,
        /// Later anchor's seq.
        next: u64,
    },
    /// `prev_anchor_hash` is not the SHA-256 of the previous object's bytes.
    #[error("anchor {seq}: prev_anchor_hash {found} is not the hash {expected} of anchor {} as stored", seq - 1)]
    PrevHashMismatch {
        /// Seq of the later anchor.
        seq: u64,
        /// Hash of the earlier anchor's bytes.
        expected: String,
        /// What the later anchor claims.
        found: String,
    },
    /// The tree got smaller.
    #[error("anchor {seq}: tree size {size} is smaller than the previous anchor's {prev_size}")]
    TreeShrank {
        /// Seq of the later anchor.
        seq: u64,
        /// Earlier size.
        prev_size: u64,
        /// Later size.
        size: u64,
    },
    /// The consistency proof does not prove the earlier tree is a prefix of the later one.
    #[error(
        "anchor {seq}: the tree of size {size} is not an extension of the previous anchor's tree of size {prev_size}: {why}"
    )]
    NotConsistent {
        /// Seq of the later anchor.
        seq: u64,
        /// Earlier size.
        prev_size: u64,
        /// Later size.
        size: u64,
        /// Why.
        why: String,
    },
    /// Anchor time went backwards.
    #[error("anchor {seq}: ts_utc {ts} is earlier than the previous anchor's {prev_ts}")]
    TimeWentBack {
        /// Seq of the later anchor.
        seq: u64,
        /// Earlier time.
        prev_ts: String,
        /// Later time.
        ts: String,
    },
}

/// Checks that `next` directly follows `prev`, whose stored bytes are `prev_bytes`.
///
/// # Errors
///
/// The first [`LinkError`] found.
pub fn check_link(prev: &Anchor, prev_bytes: &[u8], next: &Anchor) -> Result<(), LinkError> {
    let seq = next.anchor_seq;
    if next.chain_id != prev.chain_id {
        return Err(LinkError::WrongChain {
            seq,
            expected: prev.chain_id.clone(),
            found: next.chain_id.clone(),
        });
    }
    if prev.anchor_seq.checked_add(1) != Some(seq) {
        return Err(LinkError::NotNext {
            prev: prev.anchor_seq,
            next: seq,
        });
    }
    let expected = crate::object_hash(prev_bytes);
    if next.prev_anchor_hash.as_deref() != Some(expected.as_str()) {
        return Err(LinkError::PrevHashMismatch {
            seq,
            expected,
            found: next
                .prev_anchor_hash
                .clone()
                .unwrap_or_else(|| "null".into()),
        });
    }
    if next.tree_size < prev.tree_size {
        return Err(LinkError::TreeShrank {
            seq,
            prev_size: prev.tree_size,
            size: next.tree_size,
        });
    }
    let not_consistent = |why: String| LinkError::NotConsistent {
        seq,
        prev_size: prev.tree_size,
        size: next.tree_size,
        why,
    };
    let prev_root = parse_hex_hash(&prev.root_hash).map_err(|e| not_consistent(e.to_string()))?;
    let root = parse_hex_hash(&next.root_hash).map_err(|e| not_consistent(e.to_string()))?;
    let proof = next
        .consistency_proof
        .iter()
        .map(|h| parse_hex_hash(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_consistent(e.to_string()))?;
    merkle::verify_consistency(&proof, prev.tree_size, prev_root, next.tree_size, root)
        .map_err(|e| not_consistent(e.to_string()))?;
    // RFC 3339 UTC with whole seconds compares correctly as text.
    if next.ts_utc < prev.ts_utc {
        return Err(LinkError::TimeWentBack {
            seq,
            prev_ts: prev.ts_utc.clone(),
            ts: next.ts_utc.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tests::keys;
    use crate::{AnchorInput, Trigger};
    use stele_ledger::merkle::{MemoryHashes, TreeAppender, consistency_proof};
    use stele_ledger::{ChainId, Hash};
    use time::macros::datetime;

    fn chain_of_anchors(sizes: &[u64]) -> Vec<(Anchor, Vec<u8>)> {
        let (signer, _) = keys("stele.test");
        let mut tree = TreeAppender::empty();
        let mut mem = MemoryHashes::default();
        let mut roots = vec![tree.root()];
        for i in 0..*sizes.iter().max().unwrap() {
            let leaf = stele_ledger::hashing::leaf_hash(&i.to_be_bytes());
            let nodes = tree.push(leaf);
            mem.push(i, leaf, &nodes);
            roots.push(tree.root());
        }
        let chain = ChainId::new("production").unwrap();
        let mut out: Vec<(Anchor, Vec<u8>)> = Vec::new();
        for (seq, &size) in sizes.iter().enumerate() {
            let prev = out.last();
            let proof = match prev {
                Some((p, _)) => consistency_proof(p.tree_size, size, &mem).unwrap(),
                None => vec![],
            };
            let a = Anchor::sign(
                &AnchorInput {
                    chain: &chain,
                    anchor_seq: seq as u64,
                    trigger: Trigger::Volume,
                    tree_size: size,
                    root: roots[size as usize],
                    last_hash: None,
                    key_id: "k1",
                    ts: datetime!(2026-01-15 14:00:00 UTC) + time::Duration::hours(seq as i64),
                    db_snapshot_lsn: None,
                    prev_anchor_hash: prev.map(|(_, b)| crate::object_hash(b)),
                    consistency_proof: &proof,
                },
                &signer,
            )
            .unwrap();
            let bytes = a.to_bytes().unwrap();
            out.push((a, bytes));
        }
        out
    }

    #[test]
    fn consecutive_anchors_link() {
        let anchors = chain_of_anchors(&[0, 5, 5, 17, 64, 65]);
        for w in anchors.windows(2) {
            check_link(&w[0].0, &w[0].1, &w[1].0).unwrap();
        }
    }

    #[test]
    fn broken_links_are_named() {
        let a = chain_of_anchors(&[5, 17, 30]);
        assert_eq!(
            check_link(&a[0].0, &a[0].1, &a[2].0),
            Err(LinkError::NotNext { prev: 0, next: 2 })
        );
        let mut altered = a[0].1.clone();
        altered[10] ^= 1;
        assert!(matches!(
            check_link(&a[0].0, &altered, &a[1].0),
            Err(LinkError::PrevHashMismatch { seq: 1, .. })
        ));
        // A tree that is not an extension of the previous one (a fork).
        let mut forked = a[1].0.clone();
        forked.root_hash = stele_ledger::hex_hash(&Hash([9; 32]));
        assert!(matches!(
            check_link(&a[0].0, &a[0].1, &forked),
            Err(LinkError::NotConsistent { seq: 1, .. })
        ));
        let mut shrunk = a[1].0.clone();
        shrunk.tree_size = 4;
        assert!(matches!(
            check_link(&a[0].0, &a[0].1, &shrunk),
            Err(LinkError::TreeShrank { .. })
        ));
        let mut early = a[1].0.clone();
        early.ts_utc = "2020-01-01T00:00:00Z".into();
        assert!(matches!(
            check_link(&a[0].0, &a[0].1, &early),
            Err(LinkError::TimeWentBack { .. })
        ));
    }
}
