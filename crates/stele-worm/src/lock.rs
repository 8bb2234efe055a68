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

/// Checks the lock a store reports for a version against what was asked:
/// the same mode, and the same retain-until (`exact`, right after it was
/// set) or at least it (a version whose lock may since have been extended).
/// A difference is the version's lock being wrong, named by key and version.
pub(crate) fn check_lock_is(
    key: &str,
    facts: &ObjectFacts,
    asked: Retention,
    exact: bool,
) -> Result<(), WormError> {
    let want = asked.retain_until.unix_timestamp();
    let mode_ok = facts.lock_mode == Some(asked.mode);
    let until_ok = facts.retain_until.is_some_and(|t| {
        let got = t.unix_timestamp();
        if exact { got == want } else { got >= want }
    });
    if mode_ok && until_ok {
        return Ok(());
    }
    let reported = match (facts.lock_mode, facts.retain_until) {
        (Some(m), Some(t)) => format!("{m} until {}", crate::rfc3339_secs(t)),
        (Some(m), None) => format!("{m} with no retain-until"),
        (None, Some(t)) => format!("no lock mode, retain-until {}", crate::rfc3339_secs(t)),
        (None, None) => "no lock at all".into(),
    };
    let what = if mode_ok {
        format!(
            "retain-until is {}, expected {}{}",
            facts
                .retain_until
                .map_or_else(|| "not set".into(), crate::rfc3339_secs),
            if exact { "" } else { "at least " },
            crate::rfc3339_secs(asked.retain_until)
        )
    } else {
        format!(
            "lock mode is {}, expected {}",
            facts.lock_mode.map_or("none", LockMode::as_str),
            asked.mode
        )
    };
    Err(WormError::Verification {
        key: key.to_owned(),
        what: format!(
            "the lock of version {} is wrong: {what} (asked for {} until {}, the store reports {reported}); do not rely on this version being locked",
            facts.version_id.as_deref().unwrap_or("(none)"),
            asked.mode,
            crate::rfc3339_secs(asked.retain_until)
        ),
    })
}

pub(crate) fn to_time(d: &DateTime) -> Option<OffsetDateTime> {
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

    /// Sets a version's retention (`PutObjectRetention`), then reads it back.
    /// Stores refuse to shorten a lock or weaken its mode; callers should
    /// refuse before asking. A retain-until beyond [`crate::latest_retain_until`]
    /// is refused before anything is sent.
    ///
    /// Returns the version's facts as the store reports them afterwards.
    ///
    /// # Errors
    ///
    /// [`WormError::RetainUntilTooLate`] (nothing sent);
    /// [`WormError::Verification`] naming the key and version when the store
    /// then reports another mode or retain-until than was asked; any other
    /// [`WormError`] (a refused shortening is [`WormError::AccessDenied`] or
    /// [`WormError::Refused`], depending on the store).
    pub async fn put_retention(
        &self,
        key: &str,
        version_id: Option<&str>,
        retention: Retention,
    ) -> Result<ObjectFacts, WormError> {
        retention.check(OffsetDateTime::now_utc())?;
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
        let facts = self
            .head(key, version_id)
            .await?
            .ok_or_else(|| WormError::Verification {
                key: key.to_owned(),
                what: format!(
                    "version {} disappeared while its lock was being set",
                    version_id.unwrap_or("current")
                ),
            })?;
        check_lock_is(key, &facts, retention, true)?;
        Ok(facts)
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
        self.put_retention(key, version.as_deref(), wanted).await
    }

    /// Every version and delete marker of exactly `key`, newest first.
    ///
    /// # Errors
    ///
    /// Any [`WormError`].
    pub async fn versions(&self, key: &str) -> Result<Vec<ObjectVersion>, WormError> {
        let mut found = self.versions_in_store_order(key).await?;
        // Stable: entries with the same time keep the store's order.
        found.sort_by_key(|v| std::cmp::Reverse(v.last_modified));
        Ok(found)
    }

    /// Every version and delete marker of exactly `key`, as the store lists
    /// them (all pages): content versions newest first, then delete markers
    /// newest first. S3 lists a key's versions newest first by the store's
    /// own ordering, which — unlike `LastModified` — separates versions
    /// written in the same millisecond.
    async fn versions_in_store_order(&self, key: &str) -> Result<Vec<ObjectVersion>, WormError> {
        let (found, markers): (Vec<_>, Vec<_>) = self
            .list_versions(key)
            .await?
            .into_iter()
            .filter(|v| v.key == key)
            .map(|v| ObjectVersion {
                version_id: v.version_id,
                is_latest: v.is_latest,
                delete_marker: v.delete_marker,
                size: v.size.unwrap_or(0),
                last_modified: v.last_modified,
            })
            .partition(|v| !v.delete_marker);
        Ok(found.into_iter().chain(markers).collect())
    }

    /// After a create-only write that stored `ours`: which version holds the
    /// key. Two writers can both store a version when the store ignores
    /// `If-None-Match` (Ceph RGW does on versioned buckets); the first
    /// version the store lists is the one that holds the key — every writer
    /// that looks after its own write sees the same first version, so
    /// exactly one wins. `Ok(None)`: ours is the first. `Ok(Some(..))`: an
    /// earlier version with the same size and SHA-256 (the same content
    /// stored twice: a retried or concurrent identical upload), for the
    /// caller to verify instead of ours.
    ///
    /// # Errors
    ///
    /// [`WormError::LostRace`] when an earlier version holds other content
    /// (it names both versions and how ours is locked);
    /// [`WormError::Verification`] when the store's answers do not allow
    /// telling; store errors (the writer needs `s3:ListBucketVersions`).
    pub(crate) async fn first_version_holder(
        &self,
        key: &str,
        ours: Option<&str>,
        size: u64,
        sha256: &str,
    ) -> Result<Option<(ObjectFacts, Option<String>)>, WormError> {
        let listed = self.versions_in_store_order(key).await.map_err(|e| match e {
            WormError::AccessDenied { op, target, message } => WormError::AccessDenied {
                op,
                target,
                message: format!(
                    "{message} (stele lists the key's versions after every write, to find out whether another writer stored the same key at the same time: the writer needs s3:ListBucketVersions on the bucket)"
                ),
            },
            other => other,
        })?;
        let content: Vec<&ObjectVersion> = listed.iter().filter(|v| !v.delete_marker).collect();
        let fail = |what: String| WormError::Verification {
            key: key.to_owned(),
            what,
        };
        let Some(first) = content.last() else {
            return Err(fail(
                "the store lists no version of the key after the upload".into(),
            ));
        };
        let Some(ours) = ours else {
            if content.len() > 1 {
                return Err(fail(format!(
                    "the store returned no version id for the upload and lists {} versions of the key: which one is this upload's cannot be told",
                    content.len()
                )));
            }
            return Ok(None);
        };
        let Some(first_id) = first.version_id.as_deref() else {
            return Err(fail(
                "the store lists a version without a version id".into(),
            ));
        };
        if first_id == ours {
            return Ok(None);
        }
        let (winner, checksum) = self
            .head_with_raw_checksum(key, Some(first_id))
            .await?
            .ok_or_else(|| fail(format!("version {first_id} is listed but cannot be read")))?;
        let winner_sha = winner
            .checksum_sha256
            .clone()
            .or_else(|| winner.metadata_sha256.clone());
        if winner.size == size && winner_sha.as_deref() == Some(sha256) {
            tracing::info!(
                key,
                first = first_id,
                ours,
                "the same content was stored twice; the first version holds the key"
            );
            return Ok(Some((winner, checksum)));
        }
        let ours_facts = self.head(key, Some(ours)).await?;
        let ours_text = match ours_facts {
            Some(f) => match (f.lock_mode, f.retain_until) {
                (Some(mode), Some(until)) => format!(
                    "This upload's content (sha256 {sha256}) was stored too, as version {ours}, which is locked {mode} until {}: {}. It does not hold the key and must not be used or recorded as this key's content; store the content under another key.",
                    crate::rfc3339_secs(until),
                    match mode {
                        LockMode::Compliance =>
                            "a COMPLIANCE lock cannot be removed or shortened by anyone, so that version stays in the bucket until then",
                        LockMode::Governance =>
                            "only a principal allowed s3:BypassGovernanceRetention can delete it before then",
                    }
                ),
                _ => format!(
                    "This upload's content (sha256 {sha256}) was stored too, as version {ours}, which is not locked: it may be deleted (DeleteObject with that version id). It does not hold the key and must not be used or recorded as this key's content; store the content under another key."
                ),
            },
            None => format!(
                "This upload's version {ours} is no longer there; nothing of it holds the key. Store the content under another key."
            ),
        };
        Err(WormError::LostRace {
            key: key.to_owned(),
            winner_version: first_id.to_owned(),
            winner_size: winner.size,
            winner_sha256: winner_sha.as_deref().map(Box::from),
            our_version: Some(ours.to_owned()),
            ours: ours_text,
        })
    }

    /// Objects under `prefix` with size and time, in key order (all pages).
    ///
    /// # Errors
    ///
    /// Any [`WormError`].
    pub async fn list_detailed(&self, prefix: &str) -> Result<Vec<ListedObject>, WormError> {
        let mut found = self
            .list_objects_all(prefix, None)
            .await
            .map_err(|f| self.error("ListObjectsV2", prefix, f))?;
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn facts(mode: Option<LockMode>, until: Option<OffsetDateTime>) -> ObjectFacts {
        ObjectFacts {
            version_id: Some("v-42".into()),
            size: 1,
            checksum_sha256: None,
            metadata_sha256: None,
            lock_mode: mode,
            retain_until: until,
            sse: None,
            kms_key_id: None,
        }
    }

    #[test]
    fn a_lock_read_back_that_differs_names_the_key_and_version() {
        let asked = Retention {
            mode: LockMode::Compliance,
            retain_until: datetime!(2107-01-01 00:00:00 UTC),
        };
        // What Ceph RGW reported for 2107-01-01: the 32-bit wrap.
        let wrapped = facts(
            Some(LockMode::Compliance),
            Some(datetime!(1970-11-24 17:31:44 UTC)),
        );
        for exact in [true, false] {
            let err = check_lock_is("evidence/c/k.pdf", &wrapped, asked, exact).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with("evidence/c/k.pdf:")
                    && text.contains("the lock of version v-42 is wrong")
                    && text.contains("1970-11-24T17:31:44Z"),
                "{text}"
            );
        }
        // Right after a write, a later date than asked differs too; later on it may have been extended.
        let later = facts(
            Some(LockMode::Compliance),
            Some(datetime!(2107-01-02 00:00:00 UTC)),
        );
        assert!(check_lock_is("k", &later, asked, true).is_err());
        assert!(check_lock_is("k", &later, asked, false).is_ok());
        let same = facts(Some(LockMode::Compliance), Some(asked.retain_until));
        assert!(check_lock_is("k", &same, asked, true).is_ok());
        let weaker = facts(Some(LockMode::Governance), Some(asked.retain_until));
        assert!(check_lock_is("k", &weaker, asked, false).is_err());
        assert!(check_lock_is("k", &facts(None, None), asked, false).is_err());
    }
}
