//! The vault: evidence objects in an S3 Object Lock bucket, each with its
//! detached signature, locked explicitly and verified after every write.

use std::path::Path;

use signed_note::Signer;
use stele_worm::{
    FileDigest, FileUpload, LockMode, Progress, Retention, S3Worm, Sink, StreamedRead,
    UploadTuning, WormError,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::EvidenceError;
use crate::naming::{BundleId, ClientId, EvidenceKey, Extension};
use crate::policy::RetentionPolicy;
use crate::record::EvidenceRecord;
use crate::statement::{Statement, signer_id};

/// RFC 3339 UTC with whole seconds, the form used in records and metadata.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Percent-encodes what S3 user metadata cannot carry (non-ASCII, control characters, `%`).
fn metadata_safe(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One file to store.
#[derive(Clone, Copy, Debug)]
pub struct PutItem<'a> {
    /// The local file.
    pub path: &'a Path,
    /// The client it belongs to.
    pub client: &'a ClientId,
    /// Its bundle id.
    pub bundle: &'a BundleId,
    /// Its extension.
    pub ext: &'a Extension,
    /// Retention.
    pub policy: RetentionPolicy,
    /// Upload time: the key's year and month and the retain-until are computed from it.
    pub now: OffsetDateTime,
}

/// A stored and verified upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    /// What the ledger records.
    pub record: EvidenceRecord,
    /// The object was already there with the same content (a retried upload).
    pub already_present: bool,
}

/// An evidence bucket.
#[derive(Debug)]
pub struct Vault {
    worm: S3Worm,
    tuning: UploadTuning,
}

impl Vault {
    /// A vault on `worm`'s bucket; `tuning` sets part size and parallelism of uploads.
    pub fn new(worm: S3Worm, tuning: UploadTuning) -> Self {
        Self { worm, tuning }
    }

    /// The underlying store.
    pub fn worm(&self) -> &S3Worm {
        &self.worm
    }

    /// Refuses a bucket without Object Lock.
    ///
    /// # Errors
    ///
    /// [`WormError::NoObjectLock`] and availability/credential errors.
    pub async fn check_bucket(&self) -> Result<(), EvidenceError> {
        Ok(self.worm.check_object_lock().await?)
    }

    /// Stores one file and its detached signature, both locked until the
    /// policy's retain-until, and verifies both. Returns the record to append
    /// to the ledger; nothing is recorded here.
    ///
    /// # Errors
    ///
    /// Any [`EvidenceError`]; the file is either fully verified or reported failed.
    pub async fn put(
        &self,
        item: &PutItem<'_>,
        signer: &dyn Signer,
        progress: &dyn Progress,
    ) -> Result<Uploaded, EvidenceError> {
        let retention = item.policy.retention_at(item.now)?;
        let key = EvidenceKey::new(item.client, item.now, item.bundle, item.ext);
        let object_key = key.key();
        let path = item.path.to_path_buf();
        let started = std::time::Instant::now();
        let tuning = self.tuning;
        let digest = tokio::task::spawn_blocking(move || {
            // Large files: the parts' SHA-256s are hashed now, beside the
            // whole file's, while no upload competes for the CPU.
            let size = std::fs::metadata(&path)?.len();
            if size > tuning.multipart_threshold {
                FileDigest::of_file_with_parts(&path, tuning.part_size_for(size))
            } else {
                FileDigest::of_file(&path)
            }
        })
        .await
        .map_err(|e| EvidenceError::Invalid(format!("hashing the file failed: {e}")))?
        .map_err(|source| EvidenceError::Io {
            path: item.path.display().to_string(),
            source,
        })?;
        tracing::debug!(key = %object_key, secs = started.elapsed().as_secs_f64(), "file hashed");
        let statement = Statement {
            key: object_key.clone(),
            size: digest.size,
            sha256: digest.sha256.clone(),
        };
        // Signed before the upload: a signature is never made over bytes read later.
        let sig = statement.sign(signer)?;
        let upload_ts = rfc3339(item.now);
        // Where it came from, absolute (not canonicalized: symlinks stay as named).
        let original_path = std::path::absolute(item.path)
            .unwrap_or_else(|_| item.path.to_path_buf())
            .display()
            .to_string();
        let metadata = vec![
            ("upload-ts".to_owned(), upload_ts.clone()),
            ("retention-days".to_owned(), item.policy.days.to_string()),
            ("original-path".to_owned(), metadata_safe(&original_path)),
        ];
        let stored = self
            .worm
            .put_file_locked(
                &FileUpload {
                    key: &object_key,
                    path: item.path,
                    digest: &digest,
                    retention,
                    metadata: &metadata,
                    tuning: self.tuning,
                },
                progress,
            )
            .await?;
        let sig_metadata = vec![
            ("upload-ts".to_owned(), upload_ts.clone()),
            ("retention-days".to_owned(), item.policy.days.to_string()),
            ("signs".to_owned(), object_key.clone()),
        ];
        let stored_sig = self
            .worm
            .put_locked_with_metadata(&key.sig_key(), &sig, retention, &sig_metadata)
            .await?;
        tracing::debug!(key = %object_key, secs = started.elapsed().as_secs_f64(), "stored and signed");
        let retain_until = stored.retain_until.unwrap_or(retention.retain_until);
        Ok(Uploaded {
            already_present: stored.already_present,
            record: EvidenceRecord {
                bucket: self.worm.bucket().to_owned(),
                key: object_key,
                version_id: stored.version_id,
                sha256: stored.sha256,
                size: stored.size,
                mode: stored
                    .lock_mode
                    .unwrap_or(retention.mode)
                    .as_str()
                    .to_owned(),
                retain_until: rfc3339(retain_until),
                retention_days: item.policy.days,
                client_id: item.client.as_str().to_owned(),
                bundle_id: item.bundle.as_str().to_owned(),
                signature_key: key.sig_key(),
                signature_version_id: stored_sig.version_id,
                signer: signer_id(signer),
                upload_ts,
                verified_by: stored.verified_by.to_owned(),
                original_path,
            },
        })
    }

    /// Reads and checks the detached signature of `key` (a given version of
    /// the `.sig`, or its current one) with `verifier_key`.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::Signature`] if it is missing, foreign or altered, or
    /// names another key; store errors.
    pub async fn statement(
        &self,
        key: &str,
        sig_version: Option<&str>,
        verifier_key: &str,
    ) -> Result<Statement, EvidenceError> {
        read_statement(&self.worm, key, sig_version, verifier_key).await
    }

    /// Streams one version of `key` into `sink`, hashing it.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::NotFound`] for a missing key or version; store and sink errors.
    pub async fn download(
        &self,
        key: &str,
        version_id: Option<&str>,
        sink: &mut Sink<'_>,
        progress: &dyn Progress,
    ) -> Result<StreamedRead, EvidenceError> {
        self.worm
            .read_streamed(key, version_id, sink, progress)
            .await
            .map_err(|e| not_found_or(e, key))
    }

    /// Extends the lock of one version of `key` to `until`.
    ///
    /// Shortening is refused before any write is sent: first against
    /// `recorded_until` (the ledger's latest retain-until, checked without
    /// contacting the store), then against what the store reports.
    /// Returns (previous retain-until, mode); an `until` equal to the current
    /// one changes nothing.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::CannotShorten`], [`EvidenceError::Invalid`] for a
    /// date in the past or an unlocked version, store errors.
    pub async fn extend(
        &self,
        key: &str,
        version_id: Option<&str>,
        until: OffsetDateTime,
        recorded: Option<(OffsetDateTime, LockMode)>,
        now: OffsetDateTime,
    ) -> Result<(OffsetDateTime, LockMode), EvidenceError> {
        let until = until.replace_nanosecond(0).unwrap_or(until);
        if until <= now {
            return Err(EvidenceError::Invalid(format!(
                "{} is in the past; a retain-until must be in the future",
                rfc3339(until)
            )));
        }
        // Refused before the store is contacted at all.
        Retention {
            mode: recorded.map_or(LockMode::Compliance, |(_, m)| m),
            retain_until: until,
        }
        .check(now)?;
        if let Some((recorded_until, mode)) = recorded
            && until < recorded_until
        {
            return Err(shorten(key, mode, recorded_until, until));
        }
        let facts = self.worm.head(key, version_id).await?.ok_or_else(|| {
            EvidenceError::NotFound(format!(
                "{key} (version {}) does not exist",
                version_id.unwrap_or("current")
            ))
        })?;
        let (Some(mode), Some(current)) = (facts.lock_mode, facts.retain_until) else {
            return Err(EvidenceError::Invalid(format!(
                "{key} is not locked (no retention on this version); stele only extends existing locks"
            )));
        };
        if until < current {
            return Err(shorten(key, mode, current, until));
        }
        if until == current {
            return Ok((current, mode));
        }
        let version = facts.version_id.as_deref().or(version_id);
        // Sends nothing for a date beyond what a store can hold, and reads the
        // lock back: a store reporting another mode or date is an error naming the version.
        self.worm
            .put_retention(
                key,
                version,
                Retention {
                    mode,
                    retain_until: until,
                },
            )
            .await?;
        Ok((current, mode))
    }
}

/// See [`Vault::statement`].
pub(crate) async fn read_statement(
    worm: &S3Worm,
    key: &str,
    sig_version: Option<&str>,
    verifier_key: &str,
) -> Result<Statement, EvidenceError> {
    let sig_key = format!("{key}{}", crate::naming::SIG_SUFFIX);
    let bytes = match worm.get_version(&sig_key, sig_version).await {
        Ok(b) => b,
        Err(WormError::Refused { code, .. }) if code == "NoSuchKey" || code == "NoSuchVersion" => {
            return Err(EvidenceError::Signature(format!(
                "{sig_key} is missing: the object has no detached signature"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let statement = Statement::verify(&bytes, verifier_key)?;
    if statement.key != key {
        return Err(EvidenceError::Signature(format!(
            "{sig_key} signs {}, not {key}",
            statement.key
        )));
    }
    Ok(statement)
}

fn shorten(
    key: &str,
    mode: LockMode,
    current: OffsetDateTime,
    requested: OffsetDateTime,
) -> EvidenceError {
    EvidenceError::CannotShorten {
        key: key.to_owned(),
        mode: mode.as_str().to_owned(),
        current: rfc3339(current),
        requested: rfc3339(requested),
    }
}

/// A missing key or version as [`EvidenceError::NotFound`]; other errors unchanged.
pub(crate) fn not_found_or(e: WormError, key: &str) -> EvidenceError {
    match e {
        WormError::Refused { code, .. }
            if matches!(code.as_str(), "NoSuchKey" | "NoSuchVersion" | "NotFound") =>
        {
            EvidenceError::NotFound(format!("{key} does not exist in the bucket ({code})"))
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn timestamps_are_whole_seconds_utc() {
        assert_eq!(
            rfc3339(datetime!(2026-11-22 10:00:00.999 +02:00)),
            "2026-11-22T08:00:00Z"
        );
    }

    #[test]
    fn metadata_values_stay_ascii() {
        assert_eq!(metadata_safe("/tmp/a b.json"), "/tmp/a b.json");
        assert_eq!(metadata_safe("/tmp/é%\n"), "/tmp/%C3%A9%25%0A");
    }
}
