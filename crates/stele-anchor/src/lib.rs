//! The stele anchor: a signed checkpoint of one chain, written create-only
//! into WORM storage (docs/contracts.md §2).
//!
//! - [`Anchor`]: every field, its signing bytes, signing and verification.
//! - [`object_key`]: where an anchor lives in the bucket.
//! - [`check_link`]: what must hold between consecutive anchors.
//! - [`cadence`]: when the next anchor is due.
//!
//! # No I/O
//!
//! Building, signing and checking anchors needs no network, database or
//! clock: callers pass the chain state, the time and the keys.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cadence;
mod format;
mod key;
mod link;
mod outbox;

pub use format::{ANCHOR_VERSION, Anchor, AnchorError, AnchorInput, Trigger};
pub use key::{
    ObjectKeyError, alternate_object_key, chain_prefix, is_anchor_key, object_key, relocated_from,
};
pub use link::{LinkError, check_link};
pub use outbox::{
    AnchorRecord, AnchorStatus, AnchorUpload, LockMode, NewAnchor, parse_retain_until,
    retain_until_text,
};

/// Hex SHA-256 of an anchor object's exact bytes: the next anchor's `prev_anchor_hash`.
pub fn object_hash(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
