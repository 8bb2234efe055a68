//! What `init` should create and what `check` should expect, validated
//! before any request is made (no I/O).

use stele_worm::LockMode;
use thiserror::Error;

use crate::lifecycle::LifecycleSettings;
use crate::template::{PolicyValues, RenderError, render_policy};

/// Default retention when none is given (the Terraform module's default).
pub const DEFAULT_RETENTION_DAYS: u32 = 400;
/// The floor below which a default retention is refused unless lowered
/// deliberately (the same default as the anchorer's `AUDIT_ANCHOR_MIN_RETENTION_DAYS`).
pub const DEFAULT_MIN_RETENTION_DAYS: u32 = 365;
/// The longest default retention accepted (the module's bound).
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// Stages that refuse GOVERNANCE (the module's `production_stages` default).
pub const PRODUCTION_STAGES: [&str; 3] = ["prod", "production", "prd"];

/// Invalid settings; nothing was sent.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecError {
    /// The bucket name breaks S3's naming rules.
    #[error("bucket name {name:?} is not valid: {why}")]
    BucketName {
        /// Name.
        name: String,
        /// Rule broken.
        why: &'static str,
    },
    /// GOVERNANCE on a production stage.
    #[error(
        "stage {stage:?} is a production stage (prod, production, prd): GOVERNANCE retention can be bypassed, so production buckets must use COMPLIANCE mode"
    )]
    GovernanceInProduction {
        /// Stage.
        stage: String,
    },
    /// GOVERNANCE without saying which stage.
    #[error(
        "GOVERNANCE mode needs a non-production stage named (e.g. dev): production buckets must use COMPLIANCE"
    )]
    GovernanceWithoutStage,
    /// Retention under the floor.
    #[error(
        "a default retention of {days} days is below the minimum of {floor} days: raise the retention (or, deliberately, lower the minimum)"
    )]
    RetentionBelowFloor {
        /// Requested.
        days: u32,
        /// Floor.
        floor: u32,
    },
    /// Retention out of range.
    #[error(
        "a default retention of {days} days is out of range: use 1 to {MAX_RETENTION_DAYS} days"
    )]
    RetentionOutOfRange {
        /// Requested.
        days: u32,
    },
    /// A KMS alias where a key is needed.
    #[error(
        "KMS key {0:?} is an alias: the bucket policy compares the key id uploads send with this exact string, so give the key ARN (arn:aws:kms:<region>:<account>:key/<id>), or the key id on stores without ARNs"
    )]
    KmsAlias(String),
    /// Not an IAM principal ARN.
    #[error(
        "writer {0:?} is not an IAM role or user ARN (arn:aws:iam::<account>:role/<name>; on Ceph RGW arn:aws:iam:::user/<uid>)"
    )]
    WriterArn(String),
    /// The policy cannot be rendered with these values.
    #[error(transparent)]
    Policy(#[from] RenderError),
}

/// What [`crate::init`] creates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitSpec {
    /// Bucket name.
    pub bucket: String,
    /// Region the bucket lives in (for its ARN's partition and the location constraint).
    pub region: String,
    /// Default retention mode.
    pub mode: LockMode,
    /// Default retention days.
    pub days: u32,
    /// SSE-KMS key: the key ARN on AWS, the key id on stores without ARNs.
    pub kms_key: String,
    /// The writer's ARN.
    pub writer_arn: String,
    /// Deployment stage (`dev`, `prod`, …).
    pub stage: Option<String>,
    /// Append `DenyUploadsByNonWriter`.
    pub restrict_uploads_to_writer: bool,
    /// Lifecycle rules to apply.
    pub lifecycle: LifecycleSettings,
}

impl InitSpec {
    /// Checks the settings; `floor` is the minimum default retention.
    ///
    /// # Errors
    ///
    /// [`SpecError`] saying what to change.
    pub fn validate(&self, floor: u32) -> Result<(), SpecError> {
        validate_bucket_name(&self.bucket)?;
        if self.mode == LockMode::Governance {
            match &self.stage {
                None => return Err(SpecError::GovernanceWithoutStage),
                Some(stage) if is_production_stage(stage) => {
                    return Err(SpecError::GovernanceInProduction {
                        stage: stage.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        if self.days == 0 || self.days > MAX_RETENTION_DAYS {
            return Err(SpecError::RetentionOutOfRange { days: self.days });
        }
        if self.days < floor {
            return Err(SpecError::RetentionBelowFloor {
                days: self.days,
                floor,
            });
        }
        validate_kms_key(&self.kms_key)?;
        validate_writer_arn(&self.writer_arn)?;
        // Renders once so a bad value is refused before the bucket exists.
        render_policy(&self.policy_values(), self.restrict_uploads_to_writer)?;
        Ok(())
    }

    /// The values the policy templates are rendered with.
    pub fn policy_values(&self) -> PolicyValues {
        PolicyValues {
            bucket_arn: bucket_arn(&self.bucket, &self.region),
            kms_key_arn: self.kms_key.clone(),
            writer_role_arn: self.writer_arn.clone(),
        }
    }
}

/// What `stele bucket check` expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckSpec {
    /// Bucket name.
    pub bucket: String,
    /// Region (for the bucket ARN's partition).
    pub region: String,
    /// Expected default retention mode (COMPLIANCE also satisfies GOVERNANCE).
    pub expect_mode: LockMode,
    /// Minimum default retention days.
    pub min_days: u32,
    /// Expected KMS key; `None`: taken from the bucket's default encryption or its policy (and said so).
    pub kms_key: Option<String>,
    /// Expected writer; `None`: taken from the policy (and said so).
    pub writer_arn: Option<String>,
    /// Evaluate MFA delete.
    pub require_mfa_delete: bool,
    /// Evaluate server access logging.
    pub require_logging: bool,
    /// Require `DenyUploadsByNonWriter` (it is evaluated anyway when the policy has it).
    pub require_writer_only_uploads: bool,
}

/// Whether `stage` is a production stage (case-insensitive).
pub fn is_production_stage(stage: &str) -> bool {
    PRODUCTION_STAGES
        .iter()
        .any(|p| p.eq_ignore_ascii_case(stage.trim()))
}

/// The bucket's ARN; the partition follows the region (`aws-us-gov`, `aws-cn`, else `aws`).
pub fn bucket_arn(bucket: &str, region: &str) -> String {
    let partition = if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("cn-") {
        "aws-cn"
    } else {
        "aws"
    };
    format!("arn:{partition}:s3:::{bucket}")
}

/// S3's general-purpose bucket naming rules.
///
/// # Errors
///
/// [`SpecError::BucketName`] naming the rule broken.
pub fn validate_bucket_name(name: &str) -> Result<(), SpecError> {
    let why = if !(3..=63).contains(&name.len()) {
        Some("it must be 3 to 63 characters long")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        Some("only lowercase letters, digits, '.' and '-' are allowed")
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        Some("it must begin and end with a letter or digit")
    } else if name.contains("..") {
        Some("it must not contain two adjacent periods")
    } else if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        Some("it must not look like an IP address")
    } else if ["xn--", "sthree-", "amzn-s3-demo-"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        Some("it must not start with a reserved prefix (xn--, sthree-, amzn-s3-demo-)")
    } else if ["-s3alias", "--ol-s3", "--x-s3", "--table-s3", ".mrap"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        Some(
            "it must not end with a reserved suffix (-s3alias, --ol-s3, --x-s3, --table-s3, .mrap)",
        )
    } else {
        None
    };
    match why {
        Some(why) => Err(SpecError::BucketName {
            name: name.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

fn validate_kms_key(key: &str) -> Result<(), SpecError> {
    if key.starts_with("alias/") || key.contains(":alias/") {
        return Err(SpecError::KmsAlias(key.to_owned()));
    }
    Ok(())
}

fn validate_writer_arn(arn: &str) -> Result<(), SpecError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && (parts[5].starts_with("role/") || parts[5].starts_with("user/"))
        && parts[5].len() > 5;
    if ok {
        Ok(())
    } else {
        Err(SpecError::WriterArn(arn.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> InitSpec {
        InitSpec {
            bucket: "stele-prod-anchors".into(),
            region: "us-east-1".into(),
            mode: LockMode::Compliance,
            days: 400,
            kms_key: "arn:aws:kms:us-east-1:111122223333:key/k".into(),
            writer_arn: "arn:aws:iam::111122223333:role/stele-writer".into(),
            stage: Some("prod".into()),
            restrict_uploads_to_writer: false,
            lifecycle: LifecycleSettings::default(),
        }
    }

    #[test]
    fn a_production_compliance_spec_is_fine() {
        spec().validate(DEFAULT_MIN_RETENTION_DAYS).unwrap();
    }

    #[test]
    fn governance_is_refused_in_production_and_without_a_stage() {
        for stage in ["prod", "Production", " PRD "] {
            let s = InitSpec {
                mode: LockMode::Governance,
                stage: Some(stage.into()),
                ..spec()
            };
            assert!(matches!(
                s.validate(1),
                Err(SpecError::GovernanceInProduction { .. })
            ));
        }
        let s = InitSpec {
            mode: LockMode::Governance,
            stage: None,
            ..spec()
        };
        assert_eq!(s.validate(1), Err(SpecError::GovernanceWithoutStage));
        let s = InitSpec {
            mode: LockMode::Governance,
            stage: Some("dev".into()),
            ..spec()
        };
        s.validate(1).unwrap();
    }

    #[test]
    fn retention_below_the_floor_or_out_of_range_is_refused() {
        let s = InitSpec { days: 30, ..spec() };
        assert_eq!(
            s.validate(365),
            Err(SpecError::RetentionBelowFloor {
                days: 30,
                floor: 365
            })
        );
        s.validate(30).unwrap();
        for days in [0, 36_501] {
            let s = InitSpec { days, ..spec() };
            assert_eq!(s.validate(0), Err(SpecError::RetentionOutOfRange { days }));
        }
    }

    #[test]
    fn aliases_and_non_iam_writers_are_refused() {
        let s = InitSpec {
            kms_key: "alias/stele".into(),
            ..spec()
        };
        assert!(matches!(s.validate(1), Err(SpecError::KmsAlias(_))));
        for writer in [
            "stele-writer",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::1:group/x",
            "arn:aws:iam::1:role/",
        ] {
            let s = InitSpec {
                writer_arn: writer.into(),
                ..spec()
            };
            assert!(
                matches!(s.validate(1), Err(SpecError::WriterArn(_))),
                "{writer}"
            );
        }
        let rgw = InitSpec {
            writer_arn: "arn:aws:iam:::user/stele-other".into(),
            kms_key: "stele-test-key-1".into(),
            ..spec()
        };
        rgw.validate(1).unwrap();
        let unsafe_key = InitSpec {
            kms_key: "k\"}".into(),
            ..spec()
        };
        assert!(matches!(unsafe_key.validate(1), Err(SpecError::Policy(_))));
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "stele-prod-anchors-use1", "a.b-c", &"a".repeat(63)] {
            validate_bucket_name(ok).unwrap();
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "Stele",
            "stele_x",
            "-stele",
            "stele-",
            "a..b",
            "192.168.1.1",
            "xn--stele",
            "stele-s3alias",
        ] {
            assert!(validate_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_partition_follows_the_region() {
        assert_eq!(bucket_arn("b", "us-east-1"), "arn:aws:s3:::b");
        assert_eq!(bucket_arn("b", "us-gov-west-1"), "arn:aws-us-gov:s3:::b");
        assert_eq!(bucket_arn("b", "cn-north-1"), "arn:aws-cn:s3:::b");
    }
}
