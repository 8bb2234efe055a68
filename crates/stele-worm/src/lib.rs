//! Create-only, verified writes to WORM storage.
//!
//! [`S3Worm`] writes objects into an S3 bucket with Object Lock, on the
//! official AWS SDK (endpoint, path-style, region and the standard
//! credential chain, so it works against AWS S3, Ceph RGW and ministack):
//! every PUT carries an explicit lock mode and retain-until, Content-MD5,
//! an `x-amz-checksum-sha256`, `sha256` metadata and (optionally) an SSE-KMS
//! key, and is create-only. The object is then read back — size, SHA-256
//! (checksum API where the store has one, else the bytes), lock mode and
//! retain-until — and anything short of that is an error.
//!
//! Transient failures (connection errors, timeouts, 5xx, throttling) are
//! retried with exponential backoff and full jitter; permanent ones
//! (access denied, bad credentials, a bucket without Object Lock, an
//! unknown KMS key) fail at once with a message that says what to fix.
//!
//! Files of any size are stored with [`S3Worm::put_file_locked`]: streamed
//! from disk, multipart with per-part SHA-256 checksums above a threshold,
//! verified the same way (see the `multipart` module docs), and read back
//! in a stream with [`S3Worm::read_streamed`] — memory stays flat.
//!
//! [`LocalDir`] is a stand-in for demos and the embedded default: it keeps
//! objects in a directory and is **not WORM storage**; every report that
//! involves it says so.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod digest;
mod listing;
mod local;
mod lock;
mod multipart;
mod readback;
mod retry;
mod s3;
#[cfg(feature = "testkit")]
pub mod testkit;

use thiserror::Error;
use time::OffsetDateTime;

pub use digest::{FileDigest, PartDigests};
pub use listing::{KeyVersions, ListedVersion, VersionsByKey};
pub use local::LocalDir;
pub use lock::{ListedObject, ObjectDetails, ObjectVersion};
pub use multipart::{FileUpload, MIB, NoProgress, Phase, Progress, UploadTuning};
pub use readback::{Sink, StreamedRead};
pub use retry::{CallError, RetryFailure, RetryPolicy, call_with_retry, classify};
pub use s3::{ObjectFacts, S3Config, S3Worm};

/// Object Lock retention mode (defined with the anchor outbox, which records it).
pub use stele_anchor::LockMode;

/// How an object must be locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Mode.
    pub mode: LockMode,
    /// Retain until (whole seconds; S3 has no finer precision).
    pub retain_until: OffsetDateTime,
}

/// S3's longest retention, in days (100 years, counted as AWS does for
/// default retention: 36,500 days).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// The latest retain-until Ceph RGW can hold: it keeps retain-until as
/// 32-bit seconds since 1970, so 2106-02-07T06:28:15Z (`u32::MAX`) is the
/// last date it stores; a later one wraps silently to a date near 1970 and
/// the version is left unlocked.
pub const RGW_LATEST_RETAIN_UNTIL_SECS: i64 = u32::MAX as i64;

/// The latest retain-until stele sends to any store at `now`: the earlier of
/// S3's 100-year maximum and the last date Ceph RGW can hold. One bound for
/// every store, so a bucket moved between stores keeps every lock it had.
pub fn latest_retain_until(now: OffsetDateTime) -> OffsetDateTime {
    let rgw = OffsetDateTime::from_unix_timestamp(RGW_LATEST_RETAIN_UNTIL_SECS)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    now.checked_add(time::Duration::days(i64::from(MAX_RETENTION_DAYS)))
        .map_or(rgw, |aws| aws.min(rgw))
}

/// The most whole days of retention that, counted from `now`, stay within
/// [`latest_retain_until`].
pub fn max_retention_days(now: OffsetDateTime) -> u32 {
    let days = (latest_retain_until(now) - now).whole_days();
    u32::try_from(days.max(0)).unwrap_or(0)
}

/// RFC 3339 UTC with whole seconds (S3's precision for retain-until), for messages.
pub fn rfc3339_secs(t: OffsetDateTime) -> String {
    use time::format_description::well_known::Rfc3339;
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

impl Retention {
    /// Checks that this retention can be sent to a store at `now`: its
    /// retain-until is in the future and not later than
    /// [`latest_retain_until`]. Every write path of [`S3Worm`] (PUT,
    /// multipart, `PutObjectRetention`) calls it before sending anything.
    ///
    /// # Errors
    ///
    /// [`WormError::RetainUntilTooLate`] beyond the bound;
    /// [`WormError::Config`] for a retain-until not in the future.
    pub fn check(&self, now: OffsetDateTime) -> Result<(), WormError> {
        if self.retain_until <= now {
            return Err(WormError::Config(format!(
                "retain-until {} is in the past",
                rfc3339_secs(self.retain_until)
            )));
        }
        let latest = latest_retain_until(now);
        if self.retain_until > latest {
            return Err(WormError::RetainUntilTooLate {
                requested: rfc3339_secs(self.retain_until),
                latest: rfc3339_secs(latest),
            });
        }
        Ok(())
    }
}

/// What the store holds after a verified write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Object key.
    pub key: String,
    /// Version id (S3 with versioning); `None` for a local directory.
    pub version_id: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the stored bytes, as verified.
    pub sha256: String,
    /// How the SHA-256 was verified: `"checksum-api"` or `"bytes"`.
    pub verified_by: &'static str,
    /// Lock mode the store reports; `None` when the store is not WORM.
    pub lock_mode: Option<LockMode>,
    /// Retain-until the store reports.
    pub retain_until: Option<OffsetDateTime>,
    /// SSE-KMS key the store reports, if any.
    pub kms_key_id: Option<String>,
    /// Whether the object already existed with identical bytes (a retried write).
    pub already_present: bool,
    /// False for stores that are not WORM (a local directory).
    pub worm: bool,
}

/// A WORM operation failed. Messages say what to fix and never contain secrets.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WormError {
    /// Settings are missing or invalid.
    #[error("{0}")]
    Config(String),
    /// The bucket does not have Object Lock enabled.
    #[error(
        "bucket {bucket:?} does not have Object Lock enabled; stele only writes to WORM buckets (Object Lock can only be enabled when a bucket is created)"
    )]
    NoObjectLock {
        /// Bucket.
        bucket: String,
    },
    /// The bucket does not exist.
    #[error("bucket {bucket:?} does not exist at this endpoint and region")]
    NoSuchBucket {
        /// Bucket.
        bucket: String,
    },
    /// The credentials were rejected.
    #[error("the S3 credentials were rejected by {op} ({code})")]
    BadCredentials {
        /// Operation.
        op: &'static str,
        /// Error code from the store.
        code: String,
    },
    /// Access denied by IAM, a bucket policy or a lock.
    #[error("access denied for {op} on {target}: {message}")]
    AccessDenied {
        /// Operation.
        op: &'static str,
        /// Bucket/key.
        target: String,
        /// Store message.
        message: String,
    },
    /// The SSE-KMS key is unknown or unusable.
    #[error(
        "SSE-KMS key {key_id:?} was refused: {message} (check the key id/ARN and that the writer may use it)"
    )]
    KmsKey {
        /// Configured key.
        key_id: String,
        /// Store message.
        message: String,
    },
    /// The retention asked for is below the configured floor.
    #[error(
        "retention of {days} days is below the configured minimum of {floor} days; raise the retention (or, deliberately, lower the floor)"
    )]
    RetentionBelowFloor {
        /// Requested days.
        days: u32,
        /// Floor.
        floor: u32,
    },
    /// A retain-until later than any store can hold; refused before any request.
    #[error(
        "retain-until {requested} is later than stele can safely ask any store for: the latest is {latest} (AWS allows at most 100 years; Ceph RGW keeps retain-until in 32 bits and silently wraps a date after 2106-02-07T06:28:15Z to one near 1970, leaving the object unlocked). Nothing was sent; choose a date no later than {latest}"
    )]
    RetainUntilTooLate {
        /// What was asked (RFC 3339).
        requested: String,
        /// The latest retain-until allowed now (RFC 3339).
        latest: String,
    },
    /// An object already exists at the key with different bytes; it is never overwritten.
    #[error(
        "{key} already exists with different content (version {}, sha256 {existing}); refusing to overwrite a WORM object",
        version_id.as_deref().unwrap_or("unknown")
    )]
    Conflict {
        /// Key.
        key: String,
        /// SHA-256 of what is there.
        existing: String,
        /// The version that holds it, where the store says.
        version_id: Option<String>,
    },
    /// Another writer stored different content at the same key at the same
    /// time, and its version is the first: it holds the key. This upload's
    /// own version may exist too (a store that ignores `If-None-Match`, such
    /// as Ceph RGW, keeps both) and, locked, cannot be deleted before its
    /// retain-until.
    #[error(
        "{key}: another upload stored different content at this key first: version {winner_version} holds {winner_size} bytes with sha256 {sha256}, and that version is the one the key holds. {ours}",
        sha256 = .winner_sha256.as_deref().unwrap_or("unknown")
    )]
    LostRace {
        /// Key.
        key: String,
        /// The first version (the one that holds the key).
        winner_version: String,
        /// Its size in bytes.
        winner_size: u64,
        /// Its SHA-256 (hex), when the store gives one (boxed: keeps the error small).
        winner_sha256: Option<Box<str>>,
        /// This upload's own version, if the store kept it.
        our_version: Option<String>,
        /// What became of this upload's bytes, in words (its version and lock).
        ours: String,
    },
    /// The store accepted the write but does not hold what was sent.
    #[error("{key}: verification after upload failed: {what}")]
    Verification {
        /// Key.
        key: String,
        /// What differs.
        what: String,
    },
    /// A transient failure persisted through every retry.
    #[error("{op} failed after {attempts} attempts: {message} (the store may be unreachable)")]
    Unavailable {
        /// Operation.
        op: &'static str,
        /// Attempts made.
        attempts: u32,
        /// Last error.
        message: String,
    },
    /// Any other refusal by the store.
    #[error("{op} on {target} was refused: {code}: {message}")]
    Refused {
        /// Operation.
        op: &'static str,
        /// Bucket/key.
        target: String,
        /// Error code.
        code: String,
        /// Store message.
        message: String,
    },
    /// Local file system error (local directory store).
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Error.
        source: std::io::Error,
    },
}

impl WormError {
    /// True when the store said the object (or that version of it) is not there.
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::Refused { code, .. } => {
                matches!(code.as_str(), "NoSuchKey" | "NoSuchVersion" | "NotFound")
            }
            Self::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }

    /// True for failures worth retrying later (the store was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// True when the same operation may succeed if tried again unchanged:
    /// the store stayed unreachable or throttled through every attempt
    /// ([`WormError::Unavailable`]). Everything else is not: settings,
    /// credentials, permissions, conflicts and failed verifications need a
    /// change or an investigation first, and a local file error is
    /// reported as the file system gave it.
    pub fn is_retryable(&self) -> bool {
        self.is_transient()
    }
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Where objects go: real WORM storage, or a local directory that is not.
#[derive(Debug)]
pub enum ObjectStore {
    /// S3 with Object Lock.
    S3(S3Worm),
    /// A local directory — **not WORM**.
    Local(LocalDir),
}

impl ObjectStore {
    /// Writes `bytes` at `key` create-only with `retention`, then verifies what the store holds.
    ///
    /// # Errors
    ///
    /// Any [`WormError`]; see [`WormError::is_transient`].
    pub async fn put_locked(
        &self,
        key: &str,
        bytes: &[u8],
        retention: Retention,
    ) -> Result<StoredObject, WormError> {
        match self {
            Self::S3(s) => s.put_locked(key, bytes, retention).await,
            Self::Local(l) => l.put_locked(key, bytes, retention),
        }
    }

    /// Reads an object's bytes.
    ///
    /// # Errors
    ///
    /// Any [`WormError`].
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, WormError> {
        match self {
            Self::S3(s) => s.get(key).await,
            Self::Local(l) => l.get(key),
        }
    }

    /// Keys under `prefix`, in key order.
    ///
    /// # Errors
    ///
    /// Any [`WormError`].
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, WormError> {
        self.list_after(prefix, None).await
    }

    /// Keys under `prefix` that sort after `start_after` (all if `None`), in key order.
    ///
    /// # Errors
    ///
    /// Any [`WormError`].
    pub async fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<String>, WormError> {
        match self {
            Self::S3(s) => s.list_after(prefix, start_after).await,
            Self::Local(l) => l.list_after(prefix, start_after),
        }
    }

    /// Whether this store is WORM storage.
    pub fn is_worm(&self) -> bool {
        matches!(self, Self::S3(_))
    }

    /// A description for reports, e.g. `s3://bucket` or `local directory ./x (NOT WORM storage)`.
    pub fn describe(&self) -> String {
        match self {
            Self::S3(s) => format!("s3://{}", s.bucket()),
            Self::Local(l) => format!(
                "local directory {} (NOT WORM storage: anyone with file access can change it)",
                l.root().display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn only_an_unavailable_store_is_retryable_and_messages_name_no_cli_setting() {
        assert!(
            WormError::Unavailable {
                op: "PutObject",
                attempts: 3,
                message: "timed out".into()
            }
            .is_retryable()
        );
        let refusals = [
            WormError::NoSuchBucket { bucket: "b".into() },
            WormError::NoObjectLock { bucket: "b".into() },
            WormError::BadCredentials {
                op: "HeadBucket",
                code: "InvalidAccessKeyId".into(),
            },
            WormError::Config("x".into()),
        ];
        for e in refusals {
            assert!(!e.is_retryable(), "{e}");
            let text = e.to_string();
            for word in ["AUDIT_", "STELE_", "AWS_", "`stele ", "--"] {
                assert!(!text.contains(word), "{word:?} in {text}");
            }
        }
    }

    fn at(mode: LockMode, retain_until: OffsetDateTime) -> Retention {
        Retention { mode, retain_until }
    }

    #[test]
    fn the_latest_retain_until_is_rgws_32_bit_edge_until_100_years_come_first() {
        let now = datetime!(2026-12-01 00:00:00 UTC);
        let edge = datetime!(2106-02-07 06:28:15 UTC);
        assert_eq!(edge.unix_timestamp(), i64::from(u32::MAX));
        assert_eq!(latest_retain_until(now), edge);
        // The exact edge is accepted; one second later is refused.
        at(LockMode::Compliance, edge).check(now).unwrap();
        let err = at(LockMode::Compliance, edge + time::Duration::seconds(1))
            .check(now)
            .unwrap_err();
        assert!(
            matches!(&err, WormError::RetainUntilTooLate { requested, latest }
                if requested == "2106-02-07T06:28:16Z" && latest == "2106-02-07T06:28:15Z"),
            "{err}"
        );
        // The dates.
        assert!(
            at(LockMode::Compliance, datetime!(2107-01-01 00:00:00 UTC))
                .check(now)
                .is_err()
        );
        assert!(
            at(LockMode::Governance, datetime!(9999-12-31 00:00:00 UTC))
                .check(now)
                .is_err()
        );
        // Whole days: 2106-02-07T00:00 is the last midnight within the edge.
        let max = max_retention_days(now);
        let last = now + time::Duration::days(i64::from(max));
        assert!(last <= edge && last + time::Duration::days(1) > edge);
        assert_eq!(max, 28_922);
    }

    #[test]
    fn before_2006_the_100_year_maximum_is_the_bound() {
        let now = datetime!(2000-01-01 00:00:00 UTC);
        let latest = latest_retain_until(now);
        assert_eq!(latest, now + time::Duration::days(36_500));
        assert_eq!(max_retention_days(now), MAX_RETENTION_DAYS);
        at(LockMode::Compliance, latest).check(now).unwrap();
        assert!(
            at(LockMode::Compliance, latest + time::Duration::seconds(1))
                .check(now)
                .is_err()
        );
    }

    #[test]
    fn a_retain_until_not_in_the_future_is_refused() {
        let now = datetime!(2026-12-01 00:00:00 UTC);
        assert!(matches!(
            at(LockMode::Compliance, now).check(now),
            Err(WormError::Config(_))
        ));
    }
}
