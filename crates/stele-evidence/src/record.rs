//! Evidence in the ledger: the events stele appends, and reading them back.
//!
//! | event type | when | payload |
//! |---|---|---|
//! | `evidence.uploaded` | an object and its `.sig` are stored and verified | [`EvidenceRecord`] |
//! | `evidence.legal_hold` | a legal hold was set or released | [`HoldRecord`] |
//! | `evidence.retention_extended` | a lock was extended | [`ExtensionRecord`] |
//!
//! Events are appended only after the store has been checked, so a failed
//! upload leaves nothing in the ledger. Each carries an idempotency key
//! derived from the object version, so recording the same version twice
//! appends once.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use stele_ledger::append::Receipt;
use stele_ledger::event::{EventInput, ValidEvent};
use stele_ledger::{ChainId, Event, HmacKey, Limits};
use stele_store::{Store, StoreError};

use crate::EvidenceError;

/// Type of the event recording an upload.
pub const UPLOADED: &str = "evidence.uploaded";
/// Type of the event recording a legal hold change.
pub const LEGAL_HOLD: &str = "evidence.legal_hold";
/// Type of the event recording a retention extension.
pub const RETENTION_EXTENDED: &str = "evidence.retention_extended";
/// The chain evidence events go to unless told otherwise.
pub const DEFAULT_CHAIN: &str = "evidence";

/// Payload of `evidence.uploaded`: what was stored, where, and how it is locked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Object version id (the locked version).
    pub version_id: Option<String>,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Lock mode (`COMPLIANCE` or `GOVERNANCE`).
    pub mode: String,
    /// Retain-until the store reported after the upload (RFC 3339 UTC, seconds).
    pub retain_until: String,
    /// Retention asked for, in days.
    pub retention_days: u32,
    /// Client id.
    pub client_id: String,
    /// Bundle id.
    pub bundle_id: String,
    /// Key of the detached signature.
    pub signature_key: String,
    /// Version id of the detached signature.
    pub signature_version_id: Option<String>,
    /// Signing key as `name+keyid` (the verifier key's first two parts).
    pub signer: String,
    /// When stele uploaded it (RFC 3339 UTC, seconds).
    pub upload_ts: String,
    /// How the content was verified after upload: `checksum-api` or `bytes`.
    pub verified_by: String,
    /// The local path it was uploaded from, as given.
    pub original_path: String,
}

/// Payload of `evidence.legal_hold`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Version id.
    pub version_id: Option<String>,
    /// `ON` or `OFF`.
    pub status: String,
}

/// Payload of `evidence.retention_extended`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionRecord {
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Version id.
    pub version_id: Option<String>,
    /// Lock mode.
    pub mode: String,
    /// Retain-until before (RFC 3339 UTC).
    pub previous_retain_until: String,
    /// Retain-until now.
    pub retain_until: String,
}

/// An evidence event found in a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded<T> {
    /// Chain.
    pub chain_id: String,
    /// Seq of the event.
    pub seq: u64,
    /// Event time.
    pub ts: String,
    /// Payload.
    pub record: T,
}

/// An idempotency key for one event about one object version: stable across
/// retries, short enough for the ledger (at most 128 characters).
fn idempotency_key(event_type: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    format!("{event_type}:{}", hex::encode(&h.finalize()[..20]))
}

fn event<T: Serialize>(
    event_type: &str,
    payload: &T,
    idempotency: String,
) -> Result<ValidEvent, EvidenceError> {
    let payload = serde_json::to_value(payload)
        .map_err(|e| EvidenceError::Invalid(format!("cannot encode the event payload: {e}")))?;
    EventInput {
        event_type: event_type.to_owned(),
        actor: None,
        payload: Some(payload),
        idempotency_key: Some(idempotency),
    }
    // stele's own records: the internal path, which allows the reserved `evidence.*` types.
    .validate_internal(&Limits::default())
    .map_err(|e| EvidenceError::Invalid(format!("the {event_type} event is not valid: {e}")))
}

impl EvidenceRecord {
    /// The `evidence.uploaded` event for this record.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::Invalid`] if the payload breaks the ledger's limits.
    pub fn to_event(&self) -> Result<ValidEvent, EvidenceError> {
        let id = idempotency_key(
            UPLOADED,
            &[
                &self.bucket,
                &self.key,
                self.version_id.as_deref().unwrap_or(""),
            ],
        );
        event(UPLOADED, self, id)
    }
}

impl HoldRecord {
    /// The `evidence.legal_hold` event (one per change; not idempotent by design:
    /// setting a hold twice is two operator actions).
    ///
    /// # Errors
    ///
    /// As [`EvidenceRecord::to_event`].
    pub fn to_event(&self, ts: &str) -> Result<ValidEvent, EvidenceError> {
        let id = idempotency_key(
            LEGAL_HOLD,
            &[
                &self.bucket,
                &self.key,
                self.version_id.as_deref().unwrap_or(""),
                &self.status,
                ts,
            ],
        );
        event(LEGAL_HOLD, self, id)
    }
}

impl ExtensionRecord {
    /// The `evidence.retention_extended` event.
    ///
    /// # Errors
    ///
    /// As [`EvidenceRecord::to_event`].
    pub fn to_event(&self) -> Result<ValidEvent, EvidenceError> {
        let id = idempotency_key(
            RETENTION_EXTENDED,
            &[
                &self.bucket,
                &self.key,
                self.version_id.as_deref().unwrap_or(""),
                &self.retain_until,
            ],
        );
        event(RETENTION_EXTENDED, self, id)
    }
}

/// Appends one evidence event.
///
/// # Errors
///
/// [`EvidenceError::Ledger`].
pub async fn append(
    store: &Store,
    chain: &ChainId,
    event: ValidEvent,
    key: &HmacKey,
) -> Result<Receipt, EvidenceError> {
    let mut receipts = store.append(chain, vec![event], key).await?;
    receipts.pop().ok_or_else(|| {
        EvidenceError::Ledger(StoreError::Corrupt("append returned no receipt".into()))
    })
}

/// Every `evidence.uploaded` record in `chain`, in seq order. A chain that
/// does not exist yet has none.
///
/// # Errors
///
/// [`EvidenceError::Ledger`]; [`EvidenceError::Invalid`] for an
/// `evidence.uploaded` event whose payload is not a record (named by seq).
pub async fn uploads(
    store: &Store,
    chain: &ChainId,
) -> Result<Vec<Recorded<EvidenceRecord>>, EvidenceError> {
    scan(store, chain, UPLOADED).await
}

/// Every `evidence.retention_extended` record in `chain`, in seq order.
///
/// # Errors
///
/// As [`uploads`].
pub async fn extensions(
    store: &Store,
    chain: &ChainId,
) -> Result<Vec<Recorded<ExtensionRecord>>, EvidenceError> {
    scan(store, chain, RETENTION_EXTENDED).await
}

/// The upload `e` records, if it is an `evidence.uploaded` event: for callers
/// that already read every event (a verifier scanning the log or an export).
///
/// # Errors
///
/// [`EvidenceError::Invalid`] for an `evidence.uploaded` event whose payload
/// is not a record (named by seq).
pub fn upload_in(e: &Event) -> Option<Result<Recorded<EvidenceRecord>, EvidenceError>> {
    recorded(e, UPLOADED)
}

fn recorded<T: for<'de> Deserialize<'de>>(
    e: &Event,
    event_type: &str,
) -> Option<Result<Recorded<T>, EvidenceError>> {
    (e.event_type == event_type).then(|| {
        parse(e).map(|record| Recorded {
            chain_id: e.chain_id.clone(),
            seq: e.seq,
            ts: e.ts.clone(),
            record,
        })
    })
}

/// The records of one type in `chain`, read from one snapshot.
async fn scan<T: for<'de> Deserialize<'de> + Send>(
    store: &Store,
    chain: &ChainId,
    event_type: &str,
) -> Result<Vec<Recorded<T>>, EvidenceError> {
    let mut snapshot = store.read_snapshot().await?;
    let mut found = Vec::new();
    let mut bad: Option<EvidenceError> = None;
    let scanned = match snapshot.head(chain).await {
        Ok(None) => Ok(()),
        Ok(Some(_)) => {
            snapshot
                .scan(chain, 0, None, &mut |e, _| {
                    if bad.is_none() && e.event_type == event_type {
                        match recorded(&e.to_event(), event_type) {
                            Some(Ok(r)) => found.push(r),
                            Some(Err(err)) => bad = Some(err),
                            None => {}
                        }
                    }
                    Ok(())
                })
                .await
        }
        Err(e) => Err(e),
    };
    let ended = snapshot.end().await;
    scanned?;
    ended?;
    match bad {
        Some(err) => Err(err),
        None => Ok(found),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(e: &Event) -> Result<T, EvidenceError> {
    let text = e.payload.as_deref().unwrap_or("null");
    serde_json::from_str(text).map_err(|err| {
        EvidenceError::Invalid(format!(
            "{} seq {}: the {} payload is not what stele writes ({err})",
            e.chain_id, e.seq, e.event_type
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> EvidenceRecord {
        EvidenceRecord {
            bucket: "b".into(),
            key: "evidence/c/2026/11/EB-1.json".into(),
            version_id: Some("v1".into()),
            sha256: "ab".repeat(32),
            size: 42,
            mode: "COMPLIANCE".into(),
            retain_until: "2027-02-20T10:00:00Z".into(),
            retention_days: 90,
            client_id: "c".into(),
            bundle_id: "EB-1".into(),
            signature_key: "evidence/c/2026/11/EB-1.json.sig".into(),
            signature_version_id: Some("v2".into()),
            signer: "stele.test+01234567".into(),
            upload_ts: "2026-11-22T10:00:00Z".into(),
            verified_by: "bytes".into(),
            original_path: "/tmp/EB-1.json".into(),
        }
    }

    #[test]
    fn the_event_carries_the_record_and_a_stable_idempotency_key() {
        let e = sample().to_event().unwrap();
        assert_eq!(e.event_type, UPLOADED);
        let key = e.idempotency_key.clone().unwrap();
        assert!(key.len() <= 128 && key.starts_with("evidence.uploaded:"));
        let payload: EvidenceRecord = serde_json::from_str(e.payload.as_deref().unwrap()).unwrap();
        assert_eq!(payload, sample());
        // The same version gives the same key, whatever else differs; another version another key.
        let mut later = sample();
        later.upload_ts = "2026-11-23T00:00:00Z".into();
        assert_eq!(later.to_event().unwrap().idempotency_key.unwrap(), key);
        later.version_id = Some("v9".into());
        assert_ne!(later.to_event().unwrap().idempotency_key.unwrap(), key);
    }
}
