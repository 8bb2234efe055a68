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
pub mod payload;
pub mod verify;

pub use chain_id::ChainId;
pub use event::{Event, EventInput, Limits, StoredEvent, StoredHash, Timestamp};
pub use hashing::{HmacKey, KeyId, Keyring};
pub use tlog_tiles::Hash;

/// Formats a hash as lowercase hex, the form used in exports, receipts and anchors.
pub fn hex_hash(hash: &Hash) -> String {
    hex_bytes(&hash.0)
}

/// Lowercase hex of any bytes.
pub fn hex_bytes(bytes: &[u8]) -> String {
    // `hex::encode` collects chars one by one; every event's two hashes go
    // through here on the commit path, so the text is written directly.
    let mut text = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        let [high, low] = hex_pair(b);
        text.push(char::from(high));
        text.push(char::from(low));
    }
    text
}

/// The two lowercase hex digits of a byte.
pub(crate) fn hex_pair(b: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]]
}

/// Parses a 64-character hex hash (either case).
///
/// # Errors
///
/// Returns [`event::InputError::BadHash`] if `s` is not 32 bytes of hex.
pub fn parse_hex_hash(s: &str) -> Result<Hash, event::InputError> {
    let mut arr = [0u8; 32];
    hex::decode_to_slice(s, &mut arr)
        .map_err(|_| event::InputError::BadHash(s.chars().take(80).collect()))?;
    Ok(Hash(arr))
}

#[cfg(test)]
mod hex_tests {
    use super::*;

    #[test]
    fn every_byte_is_written_as_the_hex_crate_writes_it() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(hex_bytes(&all), hex::encode(&all));
        assert_eq!(hex_bytes(&[]), "");
    }

    #[test]
    fn hashes_round_trip_through_hex_and_nothing_else_parses() {
        let hash = Hash(std::array::from_fn(|i| u8::try_from(i * 7).unwrap()));
        let text = hex_hash(&hash);
        assert_eq!(text.len(), 64);
        assert_eq!(text, text.to_lowercase());
        assert_eq!(parse_hex_hash(&text).unwrap(), hash);
        assert_eq!(parse_hex_hash(&text.to_uppercase()).unwrap(), hash);
        for bad in [
            &text[..62],
            &format!("{text}00"),
            &format!("{}zz", &text[..62]),
            &format!("{}é", &text[..62]),
            "",
        ] {
            assert!(
                matches!(parse_hex_hash(bad), Err(event::InputError::BadHash(_))),
                "{bad}"
            );
        }
        assert_eq!(hex_bytes(&[0x00, 0xab, 0xff]), "00abff");
    }
}
