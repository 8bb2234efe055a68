//! The RFC 6962 / RFC 9162 Merkle tree over leaf hashes, built on `tlog_tiles`.
//!
//! Storage keeps tlog's *stored hashes* (every complete subtree root,
//! addressed by [`tlog_tiles::stored_hash_index`]), so a root, an inclusion
//! proof or a consistency proof is O(log n) reads, never a rebuild. Each
//! stored hash lives with the event that completed its subtree: level 0 is
//! the event's leaf hash, levels 1.. are the event's *Merkle nodes* (on
//! average one per event; see [`node_location`]). [`TreeAppender`] produces
//! them while holding only the tree's frontier in memory.

use std::collections::HashMap;

use thiserror::Error;
use tlog_tiles::{Hash, HashReader};

/// A proof could not be produced or did not check.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MerkleError {
    /// The requested sizes or index are out of range.
    #[error("{0}")]
    OutOfRange(String),
    /// The proof does not prove the claim.
    #[error("proof does not verify: {0}")]
    InvalidProof(String),
    /// Stored hashes were missing or unreadable.
    #[error("stored Merkle hashes unavailable: {0}")]
    Storage(String),
}

fn storage_error(e: &tlog_tiles::Error) -> MerkleError {
    MerkleError::Storage(e.to_string())
}

/// Stored-hash indexes of the complete subtrees that make up a tree of
/// `size` leaves, left to right: exactly what [`root`] reads and what an
/// appender needs to continue the tree.
pub fn frontier_indexes(size: u64) -> Vec<u64> {
    tlog_tiles::sub_tree_index(0, size, Vec::new())
}

/// Root hash of the tree of `size` leaves (the empty-string hash for 0).
///
/// # Errors
///
/// [`MerkleError::Storage`] if the reader fails.
pub fn root<R: HashReader>(size: u64, reader: &R) -> Result<Hash, MerkleError> {
    tlog_tiles::tree_hash(size, reader).map_err(|e| storage_error(&e))
}

/// Where the stored hash with this index lives: `(seq, level)` — the event
/// whose append completed the subtree, and the subtree's level. Level 0 is
/// that event's leaf hash; level `l ≥ 1` is entry `l - 1` of its Merkle nodes.
pub fn node_location(index: u64) -> (u64, u8) {
    let (level, n) = tlog_tiles::split_stored_hash_index(index);
    (((n + 1) << level) - 1, level)
}

/// Extends a tree leaf by leaf, yielding the interior nodes each leaf completes.
///
/// Holds the frontier — the roots of the complete subtrees that make up the
/// tree, largest (leftmost) first, exactly the hashes at
/// [`frontier_indexes`]`(size)` — and merges with `tlog_tiles::node_hash`,
/// so a push costs one hash per completed node and no allocation beyond the
/// returned nodes. Tests check it against `tlog_tiles`' stored hashes.
#[derive(Clone, Debug)]
pub struct TreeAppender {
    size: u64,
    frontier: Vec<Hash>,
}

impl TreeAppender {
    /// An appender for an empty tree.
    pub fn empty() -> Self {
        Self {
            size: 0,
            frontier: Vec::new(),
        }
    }

    /// Continues a tree of `size` leaves, given the hashes at [`frontier_indexes`]`(size)`, in order.
    ///
    /// # Errors
    ///
    /// [`MerkleError::Storage`] if the number of hashes is wrong.
    pub fn resume(size: u64, frontier: &[Hash]) -> Result<Self, MerkleError> {
        let expected = size.count_ones() as usize;
        if expected != frontier.len() {
            return Err(MerkleError::Storage(format!(
                "tree of size {size} needs {expected} frontier hashes, got {}",
                frontier.len()
            )));
        }
        Ok(Self {
            size,
            frontier: frontier.to_vec(),
        })
    }

    /// Number of leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Root of the tree so far (RFC 6962 MTH: the frontier folded from the right).
    pub fn root(&self) -> Hash {
        let mut hashes = self.frontier.iter().rev();
        let Some(&last) = hashes.next() else {
            return tlog_tiles::EMPTY_HASH;
        };
        hashes.fold(last, |right, &left| tlog_tiles::node_hash(left, right))
    }

    /// Adds a leaf; returns the interior nodes it completes, level 1 upwards
    /// (the event's Merkle nodes, to be stored with it).
    pub fn push(&mut self, leaf: Hash) -> Vec<Hash> {
        let mut nodes = Vec::new();
        self.push_into(leaf, &mut nodes);
        nodes
    }

    /// [`push`](Self::push), replacing `nodes`' contents with the completed
    /// nodes, so a verifier pushing millions of leaves reuses one buffer.
    pub fn push_into(&mut self, leaf: Hash, nodes: &mut Vec<Hash>) {
        nodes.clear();
        self.push_onto(leaf, nodes);
    }

    /// [`push`](Self::push), adding the completed nodes to the end of
    /// `nodes`, so that a whole commit's nodes share one buffer.
    pub fn push_onto(&mut self, leaf: Hash, nodes: &mut Vec<Hash>) {
        // Each trailing 1 bit of the old size is a complete subtree that the
        // new leaf's subtree now merges with.
        let merges = self.size.trailing_ones() as usize;
        let mut h = leaf;
        for _ in 0..merges {
            let Some(left) = self.frontier.pop() else {
                break;
            };
            h = tlog_tiles::node_hash(left, h);
            nodes.push(h);
        }
        self.frontier.push(h);
        self.size += 1;
    }
}

/// Audit path proving leaf `index` is in the tree of `tree_size` leaves (RFC 9162 §2.1.3).
///
/// # Errors
///
/// [`MerkleError::OutOfRange`] unless `index < tree_size`; [`MerkleError::Storage`] on read failure.
pub fn inclusion_proof<R: HashReader>(
    tree_size: u64,
    index: u64,
    reader: &R,
) -> Result<Vec<Hash>, MerkleError> {
    if index >= tree_size {
        return Err(MerkleError::OutOfRange(format!(
            "seq {index} is not in a tree of size {tree_size}"
        )));
    }
    tlog_tiles::prove_record(tree_size, index, reader).map_err(|e| storage_error(&e))
}

/// Proof that the tree of `from` leaves is a prefix of the tree of `to` leaves
/// (RFC 9162 §2.1.4). Empty when `from` is 0 or equal to `to`.
///
/// # Errors
///
/// [`MerkleError::OutOfRange`] if `from > to`; [`MerkleError::Storage`] on read failure.
pub fn consistency_proof<R: HashReader>(
    from: u64,
    to: u64,
    reader: &R,
) -> Result<Vec<Hash>, MerkleError> {
    if from > to {
        return Err(MerkleError::OutOfRange(format!(
            "cannot prove tree size {from} is a prefix of the smaller size {to}"
        )));
    }
    if from == 0 || from == to {
        return Ok(Vec::new());
    }
    tlog_tiles::prove_tree(to, from, reader).map_err(|e| storage_error(&e))
}

/// Checks an inclusion proof.
///
/// # Errors
///
/// [`MerkleError::InvalidProof`] if it does not prove `leaf` at `index` under `root`.
pub fn verify_inclusion(
    proof: &[Hash],
    tree_size: u64,
    root: Hash,
    index: u64,
    leaf: Hash,
) -> Result<(), MerkleError> {
    if index >= tree_size {
        return Err(MerkleError::OutOfRange(format!(
            "seq {index} is not in a tree of size {tree_size}"
        )));
    }
    tlog_tiles::check_record(&proof.to_vec(), tree_size, root, index, leaf).map_err(|_| {
        MerkleError::InvalidProof(format!(
            "leaf {index} is not included in the tree of size {tree_size} with that root"
        ))
    })
}

/// Checks a consistency proof between two tree heads.
///
/// # Errors
///
/// [`MerkleError::InvalidProof`] if the older tree is not a prefix of the newer one.
pub fn verify_consistency(
    proof: &[Hash],
    from: u64,
    from_root: Hash,
    to: u64,
    to_root: Hash,
) -> Result<(), MerkleError> {
    if from > to {
        return Err(MerkleError::OutOfRange(format!(
            "tree size {from} is larger than {to}"
        )));
    }
    let invalid = || {
        MerkleError::InvalidProof(format!(
            "tree of size {from} is not a prefix of the tree of size {to}"
        ))
    };
    if from == 0 {
        return if proof.is_empty() && from_root == tlog_tiles::EMPTY_HASH {
            Ok(())
        } else {
            Err(invalid())
        };
    }
    if from == to {
        return if proof.is_empty() && from_root == to_root {
            Ok(())
        } else {
            Err(invalid())
        };
    }
    tlog_tiles::check_tree(&proof.to_vec(), to, to_root, from, from_root).map_err(|_| invalid())
}

/// A stored-hash index → hash map; handy for tests and small in-memory trees.
#[derive(Default, Debug, Clone)]
pub struct MemoryHashes(pub HashMap<u64, Hash>);

impl MemoryHashes {
    /// Records leaf `seq` and the nodes its append completed.
    pub fn push(&mut self, seq: u64, leaf: Hash, nodes: &[Hash]) {
        self.0.insert(tlog_tiles::stored_hash_index(0, seq), leaf);
        for (level, node) in (1u8..).zip(nodes) {
            self.0.insert(
                tlog_tiles::stored_hash_index(level, ((seq + 1) >> level) - 1),
                *node,
            );
        }
    }
}

impl HashReader for MemoryHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| {
                self.0
                    .get(i)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u64) -> Hash {
        crate::hashing::leaf_hash(&i.to_be_bytes())
    }

    fn build(n: u64) -> (MemoryHashes, Vec<Hash>) {
        let mut app = TreeAppender::empty();
        let mut mem = MemoryHashes::default();
        let mut roots = vec![app.root()];
        for i in 0..n {
            mem.push(i, leaf(i), &app.push(leaf(i)));
            roots.push(app.root());
        }
        (mem, roots)
    }

    #[test]
    fn appender_nodes_are_tlog_stored_hashes() {
        // The frontier arithmetic must agree with tlog_tiles' own stored hashes.
        let mut app = TreeAppender::empty();
        let mut mem = MemoryHashes::default();
        for n in 0..300u64 {
            let expected = tlog_tiles::stored_hashes_for_record_hash(n, leaf(n), &mem).unwrap();
            let nodes = app.push(leaf(n));
            assert_eq!(nodes, expected[1..], "nodes of leaf {n}");
            mem.push(n, leaf(n), &nodes);
            assert_eq!(app.root(), root(n + 1, &mem).unwrap());
        }
    }

    #[test]
    fn node_locations_follow_the_completing_leaf() {
        assert_eq!(node_location(tlog_tiles::stored_hash_index(0, 5)), (5, 0));
        assert_eq!(node_location(tlog_tiles::stored_hash_index(1, 0)), (1, 1));
        assert_eq!(node_location(tlog_tiles::stored_hash_index(3, 1)), (15, 3));
    }

    #[test]
    fn appender_roots_match_stored_roots_and_resume() {
        let (mem, roots) = build(70);
        for (size, r) in roots.iter().enumerate() {
            assert_eq!(root(size as u64, &mem).unwrap(), *r, "size {size}");
        }
        // Resuming from a frontier read out of storage continues the same tree.
        let size = 37;
        let frontier = mem.read_hashes(&frontier_indexes(size)).unwrap();
        let mut app = TreeAppender::resume(size, &frontier).unwrap();
        for i in size..70 {
            app.push(leaf(i));
        }
        assert_eq!(app.root(), roots[70]);
        assert!(TreeAppender::resume(size, &frontier[1..]).is_err());
    }

    #[test]
    fn proofs_round_trip_and_reject_wrong_claims() {
        let (mem, roots) = build(33);
        for t in 1..=33u64 {
            for i in 0..t {
                let p = inclusion_proof(t, i, &mem).unwrap();
                verify_inclusion(&p, t, roots[t as usize], i, leaf(i)).unwrap();
                assert!(verify_inclusion(&p, t, roots[t as usize], i, leaf(i + 1)).is_err());
            }
            for m in 0..=t {
                let p = consistency_proof(m, t, &mem).unwrap();
                verify_consistency(&p, m, roots[m as usize], t, roots[t as usize]).unwrap();
                if m > 0 && m < t {
                    assert!(
                        verify_consistency(&p, m, roots[m as usize - 1], t, roots[t as usize])
                            .is_err()
                    );
                }
            }
        }
        assert!(inclusion_proof(3, 3, &mem).is_err());
        assert!(consistency_proof(4, 3, &mem).is_err());
    }
}
