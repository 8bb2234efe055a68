//! Object keys: `[<prefix>/]anchors/<chain_id>/<YYYY>/<MM>/<DD>/<HH>/anchor-<YYYYMMDDTHHMMSSZ>-<anchor_seq as 10 digits>.json`.
//!
//! Listing a chain's prefix in key order gives its anchors in anchor order,
//! because anchor times never go backwards and the seq breaks ties.
//!
//! Anyone who may write to the bucket can pre-create that predictable key.
//! An anchor whose key is taken by other bytes goes to its *alternate key*
//! instead ([`alternate_object_key`]): the same key with `-<first 16 hex of
//! the SHA-256 of the anchor's bytes>` after the seq. Nobody can predict it
//! without the signed bytes, a reader can check it against the bytes it
//! holds, and it still sorts by (time, seq) — just before the taken key.

use stele_ledger::ChainId;
use thiserror::Error;
use time::OffsetDateTime;

/// A prefix that cannot be used in object keys.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "invalid key prefix {0:?}: use 1-128 characters of a-z, A-Z, 0-9, '-', '_', '.' and '/' (no leading '/', no '..', no '//')"
)]
pub struct ObjectKeyError(pub String);

fn validate_prefix(prefix: &str) -> Result<&str, ObjectKeyError> {
    let p = prefix.trim_end_matches('/');
    let ok = !p.is_empty()
        && p.len() <= 128
        && !p.starts_with('/')
        && !p.contains("//")
        && !p.split('/').any(|seg| seg == ".." || seg == ".")
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if ok {
        Ok(p)
    } else {
        Err(ObjectKeyError(prefix.chars().take(80).collect()))
    }
}

/// The key prefix holding every anchor of `chain` (ends with `/`).
///
/// # Errors
///
/// [`ObjectKeyError`] for an unusable prefix.
pub fn chain_prefix(prefix: Option<&str>, chain: &ChainId) -> Result<String, ObjectKeyError> {
    Ok(match prefix.filter(|p| !p.is_empty()) {
        Some(p) => format!("{}/anchors/{chain}/", validate_prefix(p)?),
        None => format!("anchors/{chain}/"),
    })
}

/// The object key of anchor `anchor_seq` of `chain`, written at `ts`.
///
/// # Errors
///
/// [`ObjectKeyError`] for an unusable prefix.
pub fn object_key(
    prefix: Option<&str>,
    chain: &ChainId,
    ts: OffsetDateTime,
    anchor_seq: u64,
) -> Result<String, ObjectKeyError> {
    let t = ts.to_offset(time::UtcOffset::UTC);
    let (y, mo, d, h) = (t.year(), u8::from(t.month()), t.day(), t.hour());
    Ok(format!(
        "{}{y:04}/{mo:02}/{d:02}/{h:02}/anchor-{y:04}{mo:02}{d:02}T{h:02}{:02}{:02}Z-{anchor_seq:010}.json",
        chain_prefix(prefix, chain)?,
        t.minute(),
        t.second()
    ))
}

/// Hex characters of the body's SHA-256 in an alternate key.
const ALTERNATE_HASH_HEX: usize = 16;

fn alternate_suffix(body: &[u8]) -> String {
    let mut hash = crate::object_hash(body);
    hash.truncate(ALTERNATE_HASH_HEX);
    format!("-{hash}.json")
}

/// The key an anchor with these `body` bytes is written at when its intended
/// key `primary` (from [`object_key`]) holds another object.
pub fn alternate_object_key(primary: &str, body: &[u8]) -> String {
    let stem = primary.strip_suffix(".json").unwrap_or(primary);
    format!("{stem}{}", alternate_suffix(body))
}

/// If `key` is the alternate key of an anchor with these `body` bytes, the
/// intended key it was moved from (taken by another object).
pub fn relocated_from(key: &str, body: &[u8]) -> Option<String> {
    key.strip_suffix(&alternate_suffix(body))
        .map(|stem| format!("{stem}.json"))
}

/// Whether `key` is a place an anchor of `chain` with seq `anchor_seq`, time
/// `ts` and these `body` bytes may be found: its intended key or its alternate.
///
/// # Errors
///
/// [`ObjectKeyError`] for an unusable prefix.
pub fn is_anchor_key(
    prefix: Option<&str>,
    chain: &ChainId,
    ts: OffsetDateTime,
    anchor_seq: u64,
    key: &str,
    body: &[u8],
) -> Result<bool, ObjectKeyError> {
    let primary = object_key(prefix, chain, ts, anchor_seq)?;
    Ok(key == primary || key == alternate_object_key(&primary, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn layout_matches_the_contract() {
        let chain = ChainId::new("production").unwrap();
        let ts = datetime!(2025-01-15 14:00:00 UTC);
        assert_eq!(
            object_key(None, &chain, ts, 42).unwrap(),
            "anchors/production/2025/01/15/14/anchor-20250115T140000Z-0000000042.json"
        );
        assert_eq!(
            object_key(Some("audit/prod/"), &chain, ts, 0).unwrap(),
            "audit/prod/anchors/production/2025/01/15/14/anchor-20250115T140000Z-0000000000.json"
        );
        for bad in ["/x", "a//b", "a/../b", "a b", "ä"] {
            assert!(object_key(Some(bad), &chain, ts, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_order_is_anchor_order() {
        let chain = ChainId::new("c").unwrap();
        let keys = [
            object_key(None, &chain, datetime!(2025-12-31 23:59:59 UTC), 9),
            object_key(None, &chain, datetime!(2026-01-01 00:00:00 UTC), 10),
            object_key(None, &chain, datetime!(2026-01-01 00:00:00 UTC), 11),
            object_key(None, &chain, datetime!(2026-01-01 10:00:00 UTC), 12),
        ];
        let keys: Vec<String> = keys.into_iter().map(Result::unwrap).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn alternate_keys_keep_anchor_order_and_name_their_bytes() {
        let chain = ChainId::new("c").unwrap();
        let ts = datetime!(2026-01-01 00:00:00 UTC);
        let primary = object_key(None, &chain, ts, 10).unwrap();
        let alt = alternate_object_key(&primary, b"anchor bytes");
        assert!(alt.starts_with("anchors/c/2026/01/01/00/anchor-20260101T000000Z-0000000010-"));
        assert!(
            alt.ends_with(".json") && alt.len() == primary.len() + 17,
            "{alt}"
        );
        assert_eq!(relocated_from(&alt, b"anchor bytes"), Some(primary.clone()));
        assert_eq!(relocated_from(&alt, b"other bytes"), None);
        assert_eq!(relocated_from(&primary, b"anchor bytes"), None);
        assert!(is_anchor_key(None, &chain, ts, 10, &alt, b"anchor bytes").unwrap());
        assert!(!is_anchor_key(None, &chain, ts, 10, &alt, b"other bytes").unwrap());
        assert!(is_anchor_key(None, &chain, ts, 10, &primary, b"x").unwrap());
        // The anchors before and after still sort around both.
        let before = object_key(None, &chain, ts, 9).unwrap();
        let after = object_key(None, &chain, ts, 11).unwrap();
        let mut keys = vec![after.clone(), primary.clone(), alt.clone(), before.clone()];
        keys.sort();
        assert_eq!(keys, [before, alt, primary, after]);
    }

    #[test]
    fn far_dates_do_not_panic() {
        let chain = ChainId::new("c").unwrap();
        let last = time::PrimitiveDateTime::MAX.assume_utc();
        let first = time::PrimitiveDateTime::MIN.assume_utc();
        for t in [last, first] {
            let key = object_key(None, &chain, t, u64::MAX).unwrap();
            assert!(key.ends_with("-18446744073709551615.json"), "{key}");
        }
    }
}
