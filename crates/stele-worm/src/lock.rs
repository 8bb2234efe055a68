//! Managing locks on stored versions: legal holds, extending retention,
//! listing versions and objects with their details. Every call goes through
//! the same retry policy and error classification as writes.

use std::collections::HashMap;

use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{
    ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockRetention, ObjectLockRetentionMode,
};
use time::OffsetDateTime;

use crate::s3::{ObjectFacts, S3Worm};
use crate::{LockMode, Retention, WormError};

/// One version (or delete marker) of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectVersion {
    /// Version id.
    pub version_id: Option<String>,
    /// Whether it is the current version.
    pub is_latest: bool,
    /// A delete marker rather than content.
    pub delete_marker: bool,
    /// Size (0 for delete markers).
    pub size: u64,
    /// Last modified.
    pub last_modified: Option<OffsetDateTime>,
}

/// An object in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    /// Key.
    pub key: String,
    /// Size.
    pub size: u64,
    /// Last modified.
    pub last_modified: Option<OffsetDateTime>,
}

/// A HEAD's facts plus what only reports need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectDetails {
    /// Size, checksums, lock and encryption.
    pub facts: ObjectFacts,
    /// User metadata (`x-amz-meta-*`, names lowercased by the store).
    pub metadata: HashMap<String, String>,
    /// Last modified.
    pub last_modified: Option<OffsetDateTime>,
}

fn to_time(d: &DateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(d.secs()).ok()
}

impl S3Worm {
    /// [`head`](Self::head) with user metadata and last-modified time.
    ///
    /// # Errors
    ///
    /// Any [`WormError`]; `Ok(None)` when there is no such key or version.
    pub async fn head_details(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<ObjectDetails>, WormError> {
        let Some((facts, _)) = self.head_with_raw_checksum(key, version_id).await? else {
            return Ok(None);
        };
        // A second, plain HEAD for the fields ObjectFacts leaves out (rare: reports only).
        let out = self
            .retrying("HeadObject", key, || {
                self.client
                    .head_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .set_version_id(facts.version_id.clone())
                    .send()
            })
            .await?;
        Ok(Some(ObjectDetails {
            metadata: out.metadata().cloned().unwrap_or_default(),
            last_modified: out.last_modified().and_then(to_time),
            facts,
        }))
    }

    /// Whether a legal hold is on for a version. A version that never had
    /// one reports off (Ceph RGW answers `ObjectLockConfigurationNotFoundError`,
    /// AWS `NoSuchObjectLockConfiguration`).
    ///
    /// # Errors
    ///
    /// Any other [`WormError`].
    pub async fn legal_hold(&self, key: &str, version_id: Option<&str>) -> Result<bool, WormError> {
        let result = self
            .call("GetObjectLegalHold", || {
                self.client
                    .get_object_legal_hold()
                    .bucket(&self.bucket)
                    .key(key)
                    .set_version_id(version_id.map(str::to_owned))
                    .send()
            })
            .await;
        match result {
            Ok(out) => Ok(out
                .legal_hold()
                .and_then(|h| h.status())
                .is_some_and(|s| *s == ObjectLockLegalHoldStatus::On)),
            Err(f)
                if matches!(
                    f.error.code.as_str(),
                    "ObjectLockConfigurationNotFoundError" | "NoSuchObjectLockConfiguration"
                ) =>
            {
                Ok(false)
            }
            Err(f) => Err(self.error("GetObjectLegalHold", key, f)),
        }
    }

    /// Sets or releases the legal hold on a version, then reads it back.
    ///
    /// # Errors
    ///
    /// [`WormError::Verification`] if the store does not report the new
    /// state; other [`WormError`]s.
    pub async fn set_legal_hold(
        &self,
        key: &str,
        version_id: Option<&str>,
        on: bool,
    ) -> Result<(), WormError> {
        let status = if on {
            ObjectLockLegalHoldStatus::On
        } else {
            ObjectLockLegalHoldStatus::Off
        };
        let hold = ObjectLockLegalHold::builder().status(status).build();
        self.retrying("PutObjectLegalHold", key, || {
            self.client
                .put_object_legal_hold()
                .bucket(&self.bucket)
                .key(key)
                .set_version_id(version_id.map(str::to_owned))
                .legal_hold(hold.clone())
                .send()
        })
        .await?;
        if self.legal_hold(key, version_id).await? != on {
            return Err(WormError::Verification {
                key: key.to_owned(),
                what: format!(
                    "the store accepted the legal hold change but still reports it {}",
                    if on { "off" } else { "on" }
                ),
            });
        }
        Ok(())
    }

    /// Sets a version's retention (`PutObjectRetention`). Stores refuse to
    /// shorten a lock or weaken its mode; callers should refuse before asking.
    ///
    /// # Errors
    ///
    /// Any [`WormError`] (a refused shortening is [`WormError::AccessDenied`]
    /// or [`WormError::Refused`], depending on the store).
    pub async fn put_retention(
        &self,
        key: &str,
        version_id: Option<&str>,
        retention: Retention,
    ) -> Result<(), WormError> {
        let mode = match retention.mode {
            LockMode::Compliance => ObjectLockRetentionMode::Compliance,
            LockMode::Governance => ObjectLockRetentionMode::Governance,
        };
        let body = ObjectLockRetention::builder()
            .mode(mode)
            .retain_until_date(DateTime::from_secs(retention.retain_until.unix_timestamp()))
            .build();
        self.retrying("PutObjectRetention", key, || {
            self.client
                .put_object_retention()
                .bucket(&self.bucket)
                .key(key)
                .set_version_id(version_id.map(str::to_owned))
                .retention(body.clone())
                .send()
        })
        .await?;
        Ok(())
    }

    /// Brings the lock of a stored version up to `wanted` when it falls
    /// short: no lock at all (a store that ignored the one requested), or
    /// the same mode with an earlier retain-until (a retried upload that
    /// asks for a later one). `PutObjectRetention` only ever extends, so a
    /// lock is never shortened or weakened here; a version locked in
    /// another mode is left for the caller's check to report. Returns the
    /// version's facts as the store reports them afterwards.
    ///
    /// # Errors
    ///
    /// Any [`WormError`]; [`WormError::Verification`] if the version is gone.
    pub(crate) async fn extend_lock_to(
        &self,
        key: &str,
        facts: ObjectFacts,
        wanted: Retention,
    ) -> Result<ObjectFacts, WormError> {
        let wanted_until = wanted.retain_until.unix_timestamp();
        let short = match (facts.lock_mode, facts.retain_until) {
            (None, _) | (_, None) => true,
            (Some(mode), Some(until)) => {
                mode == wanted.mode && until.unix_timestamp() < wanted_until
            }
        };
        if !short {
            return Ok(facts);
        }
        tracing::info!(key, mode = ?facts.lock_mode, "the stored version is locked short of what was asked; extending its lock");
        let version = facts.version_id.clone();
        self.put_retention(key, version.as_deref(), wanted).await?;
        self.head(key, version.as_deref())
            .await?
            .ok_or_else(|| WormError::Verification {
                key: key.to_owned(),
                what: "the version disappeared while its lock was being set".into(),
            })
    }

    /// Every version and delete marker of exactly `key`, newest first.
    ///
    /// # Errors
    ///
    /// Any [`WormError`].
    pub async fn versions(&self, key: &str) -> Result<Vec<ObjectVersion>, WormError> {
        let mut found = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let out = self
                .retrying("ListObjectVersions", key, || {
                    self.client
                        .list_object_versions()
                        .bucket(&self.bucket)
                        .prefix(key)
                        .set_key_marker(key_marker.clone())
                        .set_version_id_marker(version_marker.clone())
                        .send()
                })
                .await?;
            found.extend(
                out.versions()
                    .iter()
                    .filter(|v| v.key() == Some(key))
                    .map(|v| ObjectVersion {
                        version_id: v.version_id().map(str::to_owned),
                        is_latest: v.is_latest() == Some(true),
                        delete_marker: false,
                        size: u64::try_from(v.size().unwrap_or(0)).unwrap_or(0),
                        last_modified: v.last_modified().and_then(to_time),
                    }),
            );
            found.extend(
                out.delete_markers()
                    .iter()
                    .filter(|m| m.key() == Some(key))
                    .map(|m| ObjectVersion {
                        version_id: m.version_id().map(str::to_owned),
                        is_latest: m.is_latest() == Some(true),
                        delete_marker: true,
                        size: 0,
                        last_modified: m.last_modified().and_then(to_time),
                    }),
            );
            if out.is_truncated() != Some(true) {
                break;
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            version_marker = out.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                break;
            }
        }
        found.sort_by_key(|v| std::cmp::Reverse(v.last_modified));
        Ok(found)
    }

    /// Objects under `prefix` with size and time, in key order (all pages).
    ///
    /// # Errors
    ///
    /// Any [`WormError`].
    pub async fn list_detailed(&self, prefix: &str) -> Result<Vec<ListedObject>, WormError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .retrying("ListObjectsV2", prefix, || {
                    self.client
                        .list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(prefix)
                        .set_continuation_token(token.clone())
                        .send()
                })
                .await?;
            found.extend(out.contents().iter().filter_map(|o| {
                Some(ListedObject {
                    key: o.key()?.to_owned(),
                    size: u64::try_from(o.size().unwrap_or(0)).unwrap_or(0),
                    last_modified: o.last_modified().and_then(to_time),
                })
            }));
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }
}
