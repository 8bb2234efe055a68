//! Reading a live bucket's configuration with read-only calls (GET/HEAD only).

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{
    BucketVersioningStatus, LifecycleRule as SdkRule, MfaDeleteStatus, ObjectLockEnabled,
    ObjectLockRetentionMode,
};
use stele_worm::LockMode;

use crate::BucketError;
use crate::endpoint::{
    EndpointProfile, failed_read, read_encryption, read_ownership, read_public_access_block,
};
use crate::lifecycle::{Expiration, LifecycleRule, Transition};
use crate::live::{
    DefaultRetention, LiveConfig, LoggingTarget, ObjectLockState, Observed, VersioningState,
};
use crate::s3call::{IntoBucketError as _, call, classify};

/// Fails unless the bucket exists and these credentials can reach it.
pub(crate) async fn require_bucket(client: &Client, bucket: &str) -> Result<(), BucketError> {
    match bucket_exists(client, bucket).await? {
        true => Ok(()),
        false => Err(BucketError::NoSuchBucket {
            bucket: bucket.to_owned(),
        }),
    }
}

/// Whether the bucket exists; an existing bucket these credentials may not
/// see is an error.
pub(crate) async fn bucket_exists(client: &Client, bucket: &str) -> Result<bool, BucketError> {
    match call("HeadBucket", || client.head_bucket().bucket(bucket).send()).await {
        Ok(_) => Ok(true),
        Err(e) => {
            let c = classify(&e);
            if c.status == Some(404) || c.is(&["NoSuchBucket", "NotFound"]) {
                Ok(false)
            } else if c.is_access_denied() {
                // A HEAD answer has no body, so no error code: ask once more
                // with a GET to tell rejected credentials from a foreign bucket.
                let why = call("GetBucketLocation", || {
                    client.get_bucket_location().bucket(bucket).send()
                })
                .await
                .err()
                .map(|e| classify(&e).into_error("GetBucketLocation"));
                match why {
                    Some(e @ BucketError::Credentials { .. }) => Err(e),
                    _ => Err(BucketError::NotAccessible {
                        bucket: bucket.to_owned(),
                    }),
                }
            } else {
                Err(c.into_error("HeadBucket"))
            }
        }
    }
}

/// Reads everything `check` evaluates.
///
/// # Errors
///
/// [`BucketError::NoSuchBucket`], [`BucketError::NotAccessible`], or an
/// outage; a single unreadable setting is reported in the result instead.
pub async fn read_live(client: &Client, bucket: &str) -> Result<LiveConfig, BucketError> {
    require_bucket(client, bucket).await?;
    let encryption = read_encryption(client, bucket).await?;
    let ownership = read_ownership(client, bucket).await?;
    Ok(LiveConfig {
        profile: EndpointProfile::from_reads(&encryption, &ownership),
        object_lock: read_object_lock(client, bucket).await?,
        versioning: read_versioning(client, bucket).await?,
        encryption,
        public_access_block: read_public_access_block(client, bucket).await?,
        ownership,
        policy: read_policy(client, bucket).await?,
        policy_status: read_policy_status(client, bucket).await?,
        lifecycle: read_lifecycle(client, bucket).await?,
        logging: read_logging(client, bucket).await?,
    })
}

pub(crate) async fn read_object_lock(
    client: &Client,
    bucket: &str,
) -> Result<Observed<Option<ObjectLockState>>, BucketError> {
    let op = "GetObjectLockConfiguration";
    match call(op, || {
        client.get_object_lock_configuration().bucket(bucket).send()
    })
    .await
    {
        Ok(out) => Ok(Observed::Found(out.object_lock_configuration().map(|c| {
            ObjectLockState {
                enabled: c.object_lock_enabled() == Some(&ObjectLockEnabled::Enabled),
                default_retention: c.rule().and_then(|r| r.default_retention()).map(|d| {
                    let (days, as_configured) = match (d.days(), d.years()) {
                        (Some(days), _) => (days, format!("{days} days")),
                        (None, Some(years)) => {
                            (years.saturating_mul(365), format!("{years} years"))
                        }
                        (None, None) => (0, "no period".to_owned()),
                    };
                    DefaultRetention {
                        mode: d.mode().and_then(|m| match m {
                            ObjectLockRetentionMode::Compliance => Some(LockMode::Compliance),
                            ObjectLockRetentionMode::Governance => Some(LockMode::Governance),
                            _ => None,
                        }),
                        days: u32::try_from(days).unwrap_or(0),
                        as_configured,
                    }
                }),
            }
        }))),
        Err(e) => {
            let c = classify(&e);
            // AWS: ObjectLockConfigurationNotFoundError; some stores: NoSuchObjectLockConfiguration.
            if c.is(&[
                "ObjectLockConfigurationNotFoundError",
                "NoSuchObjectLockConfiguration",
            ]) {
                Ok(Observed::Found(None))
            } else {
                failed_read(&e, op, "s3:GetBucketObjectLockConfiguration")
            }
        }
    }
}

pub(crate) async fn read_versioning(
    client: &Client,
    bucket: &str,
) -> Result<Observed<VersioningState>, BucketError> {
    let op = "GetBucketVersioning";
    match call(op, || client.get_bucket_versioning().bucket(bucket).send()).await {
        Ok(out) => Ok(Observed::Found(VersioningState {
            status: out.status().map(|s| match s {
                BucketVersioningStatus::Enabled => "Enabled".to_owned(),
                other => other.as_str().to_owned(),
            }),
            mfa_delete: out.mfa_delete() == Some(&MfaDeleteStatus::Enabled),
        })),
        Err(e) => failed_read(&e, op, "s3:GetBucketVersioning"),
    }
}

pub(crate) async fn read_policy(
    client: &Client,
    bucket: &str,
) -> Result<Observed<Option<String>>, BucketError> {
    let op = "GetBucketPolicy";
    match call(op, || client.get_bucket_policy().bucket(bucket).send()).await {
        Ok(out) => Ok(Observed::Found(out.policy().map(str::to_owned))),
        Err(e) => {
            let c = classify(&e);
            if c.is(&["NoSuchBucketPolicy"]) {
                Ok(Observed::Found(None))
            } else {
                failed_read(&e, op, "s3:GetBucketPolicy")
            }
        }
    }
}

async fn read_policy_status(
    client: &Client,
    bucket: &str,
) -> Result<Observed<Option<bool>>, BucketError> {
    let op = "GetBucketPolicyStatus";
    match call(op, || {
        client.get_bucket_policy_status().bucket(bucket).send()
    })
    .await
    {
        Ok(out) => Ok(Observed::Found(
            out.policy_status().and_then(|s| s.is_public()),
        )),
        Err(e) => {
            let c = classify(&e);
            if c.is(&["NoSuchBucketPolicy"]) {
                Ok(Observed::Found(Some(false)))
            } else {
                failed_read(&e, op, "s3:GetBucketPolicyStatus")
            }
        }
    }
}

pub(crate) async fn read_lifecycle(
    client: &Client,
    bucket: &str,
) -> Result<Observed<Vec<LifecycleRule>>, BucketError> {
    let op = "GetBucketLifecycleConfiguration";
    match call(op, || {
        client
            .get_bucket_lifecycle_configuration()
            .bucket(bucket)
            .send()
    })
    .await
    {
        Ok(out) => Ok(Observed::Found(
            out.rules().iter().map(from_sdk_rule).collect(),
        )),
        Err(e) => {
            let c = classify(&e);
            if c.is(&["NoSuchLifecycleConfiguration"]) {
                Ok(Observed::Found(Vec::new()))
            } else {
                failed_read(&e, op, "s3:GetLifecycleConfiguration")
            }
        }
    }
}

fn from_sdk_rule(r: &SdkRule) -> LifecycleRule {
    #[allow(deprecated)] // the rule-level Prefix is deprecated but still returned by some stores
    let legacy_prefix = r.prefix().map(str::to_owned);
    let filter = r.filter();
    let prefix = filter
        .and_then(|f| {
            f.prefix()
                .map(str::to_owned)
                .or_else(|| f.and().and_then(|a| a.prefix()).map(str::to_owned))
        })
        .or(legacy_prefix)
        .filter(|p| !p.is_empty());
    let expiration = r.expiration().and_then(|e| {
        if let Some(days) = e.days() {
            Some(Expiration::Days(i64::from(days)))
        } else if let Some(date) = e.date() {
            Some(Expiration::Date(date.to_string()))
        } else if e.expired_object_delete_marker() == Some(true) {
            Some(Expiration::ExpiredDeleteMarkersOnly)
        } else {
            None
        }
    });
    LifecycleRule {
        id: r.id().unwrap_or_default().to_owned(),
        enabled: r.status().as_str() == "Enabled",
        prefix,
        transitions: r
            .transitions()
            .iter()
            .map(|t| Transition {
                days: i64::from(t.days().unwrap_or(0)),
                storage_class: t
                    .storage_class()
                    .map(|c| c.as_str().to_owned())
                    .unwrap_or_default(),
            })
            .collect(),
        expiration,
        noncurrent_expiration_days: r
            .noncurrent_version_expiration()
            .and_then(|n| n.noncurrent_days())
            .map(i64::from),
        abort_incomplete_upload_days: r
            .abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation())
            .map(i64::from),
    }
}

async fn read_logging(
    client: &Client,
    bucket: &str,
) -> Result<Observed<Option<LoggingTarget>>, BucketError> {
    let op = "GetBucketLogging";
    match call(op, || client.get_bucket_logging().bucket(bucket).send()).await {
        Ok(out) => Ok(Observed::Found(out.logging_enabled().map(|l| {
            LoggingTarget {
                bucket: l.target_bucket().to_owned(),
                prefix: l.target_prefix().to_owned(),
            }
        }))),
        Err(e) => failed_read(&e, op, "s3:GetBucketLogging"),
    }
}
