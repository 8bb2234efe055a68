//! The stele ledger model: what an audit event is, how it is committed, and
//! how a log of them is checked.
//!
//! - [`event`]: the event model, input limits and validation (docs/contracts.md §1).
//! - [`canonical`]: RFC 8785 (JCS) canonical bytes of an event's committed fields.
//! - [`hashing`]: RFC 6962 leaf hashes and the keyed HMAC-SHA256 chain.
//! - [`merkle`]: the RFC 6962 / RFC 9162 Merkle tree over leaf hashes, via
//!   `tlog_tiles`: stored hashes for appends, inclusion and consistency proofs.
//! - [`checkpoint`]: C2SP signed checkpoints and `tlog-proof` bundles.
//! - [`verify`]: recomputing a log from its stored rows and naming what differs.
//!
//! # No I/O
//!
//! This crate never touches files, sockets or clocks: callers pass the time,
//! the keys and the rows. That keeps every format and check testable on its
//! own and usable by an auditor's tooling without a database.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod append;
pub mod canonical;
pub mod chain_id;
pub mod checkpoint;
pub mod event;
pub mod hashing;
pub mod merkle;
pub mod verify;

pub use chain_id::ChainId;
pub use event::{Event, EventInput, Limits, StoredEvent, StoredHash, Timestamp};
pub use hashing::{HmacKey, KeyId, Keyring};
pub use tlog_tiles::Hash;

/// Formats a hash as lowercase hex, the form used in exports, receipts and anchors.
pub fn hex_hash(hash: &Hash) -> String {
    hex_bytes(&hash.0)
}

/// Lowercase hex of any bytes (table-driven: verification formats millions of hashes).
pub fn hex_bytes(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
    // Only ASCII hex digits were pushed.
    String::from_utf8(out).unwrap_or_default()
}

/// Parses a 64-character hex hash.
///
/// # Errors
///
/// Returns [`event::InputError::BadHash`] if `s` is not 32 bytes of hex.
pub fn parse_hex_hash(s: &str) -> Result<Hash, event::InputError> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bad = || event::InputError::BadHash(s.chars().take(80).collect());
    let text = s.as_bytes();
    if text.len() != 64 {
        return Err(bad());
    }
    let mut arr = [0u8; 32];
    for (out, pair) in arr.iter_mut().zip(text.chunks_exact(2)) {
        *out = (nibble(pair[0]).ok_or_else(bad)? << 4) | nibble(pair[1]).ok_or_else(bad)?;
    }
    Ok(Hash(arr))
}
