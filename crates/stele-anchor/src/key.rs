//! Object keys: `[<prefix>/]anchors/<chain_id>/<YYYY>/<MM>/<DD>/<HH>/anchor-<YYYYMMDDTHHMMSSZ>-<anchor_seq as 10 digits>.json`.
//!
//! Listing a chain's prefix in key order gives its anchors in anchor order,
//! because anchor times never go backwards and the seq breaks ties.

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
}
