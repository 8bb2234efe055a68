//! A live bucket's configuration as plain data (no I/O): what the read-only
//! calls in `read.rs` found, ready for the pure evaluation in `evaluate.rs`.

use stele_worm::LockMode;

use crate::endpoint::EndpointProfile;
use crate::lifecycle::LifecycleRule;

/// What one read found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed<T> {
    /// The endpoint answered with this.
    Found(T),
    /// The endpoint does not implement the API (see `endpoint.rs`); the reason says how that was decided.
    Unsupported(String),
    /// The read failed for another reason (access denied, an error code); the message says which.
    Unreadable(String),
}

impl<T> Observed<T> {
    /// The value, if found.
    pub fn found(&self) -> Option<&T> {
        match self {
            Self::Found(v) => Some(v),
            _ => None,
        }
    }
}

/// Object Lock as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectLockState {
    /// `ObjectLockEnabled = Enabled`.
    pub enabled: bool,
    /// Default retention, if any.
    pub default_retention: Option<DefaultRetention>,
}

/// A default retention rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultRetention {
    /// Mode; `None` if the store returned one stele does not know.
    pub mode: Option<LockMode>,
    /// The period in days (years count as 365 days).
    pub days: u32,
    /// As configured, e.g. `400 days` or `2 years`.
    pub as_configured: String,
}

/// Versioning as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersioningState {
    /// `Enabled`, `Suspended`, or `None` (never enabled).
    pub status: Option<String>,
    /// MFA delete enabled.
    pub mfa_delete: bool,
}

/// One default-encryption rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultEncryption {
    /// `aws:kms`, `aws:kms:dsse`, `AES256`.
    pub algorithm: String,
    /// The KMS key id or ARN, if set.
    pub kms_key: Option<String>,
    /// `BucketKeyEnabled`, if returned.
    pub bucket_key: Option<bool>,
}

/// The bucket's public access block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicAccessBlock {
    /// `BlockPublicAcls`.
    pub block_public_acls: bool,
    /// `IgnorePublicAcls`.
    pub ignore_public_acls: bool,
    /// `BlockPublicPolicy`.
    pub block_public_policy: bool,
    /// `RestrictPublicBuckets`.
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    /// All four flags on.
    pub const ALL: Self = Self {
        block_public_acls: true,
        ignore_public_acls: true,
        block_public_policy: true,
        restrict_public_buckets: true,
    };

    /// All but `BlockPublicAcls`: what stele applies where that flag breaks uploads.
    pub const ALL_BUT_BLOCK_PUBLIC_ACLS: Self = Self {
        block_public_acls: false,
        ..Self::ALL
    };

    /// Names of the flags that are off.
    pub fn off(&self) -> Vec<&'static str> {
        [
            ("BlockPublicAcls", self.block_public_acls),
            ("IgnorePublicAcls", self.ignore_public_acls),
            ("BlockPublicPolicy", self.block_public_policy),
            ("RestrictPublicBuckets", self.restrict_public_buckets),
        ]
        .into_iter()
        .filter(|(_, on)| !on)
        .map(|(name, _)| name)
        .collect()
    }
}

/// Server access logging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggingTarget {
    /// Target bucket.
    pub bucket: String,
    /// Target prefix.
    pub prefix: String,
}

/// Everything `stele bucket check` reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveConfig {
    /// What the endpoint supports.
    pub profile: EndpointProfile,
    /// Object Lock; `None` when the bucket has no Object Lock configuration.
    pub object_lock: Observed<Option<ObjectLockState>>,
    /// Versioning.
    pub versioning: Observed<VersioningState>,
    /// Default encryption rules; `None` when none are configured.
    pub encryption: Observed<Option<Vec<DefaultEncryption>>>,
    /// Public access block; `None` when none is configured.
    pub public_access_block: Observed<Option<PublicAccessBlock>>,
    /// Object ownership; `None` when no ownership controls are set.
    pub ownership: Observed<Option<String>>,
    /// The policy JSON; `None` when the bucket has no policy.
    pub policy: Observed<Option<String>>,
    /// S3's policy status `IsPublic`; `None` when the endpoint answered without it.
    pub policy_status: Observed<Option<bool>>,
    /// Lifecycle rules (empty when none).
    pub lifecycle: Observed<Vec<LifecycleRule>>,
    /// Server access logging; `None` when off.
    pub logging: Observed<Option<LoggingTarget>>,
}

/// Whether two KMS key references name the same key: equal, or one is a key
/// ARN whose `key/<id>` is the other.
pub fn kms_keys_match(a: &str, b: &str) -> bool {
    let id = |k: &str| -> String {
        match k.rsplit_once(":key/") {
            Some((_, id)) => id.to_owned(),
            None => k.to_owned(),
        }
    };
    a == b || (id(a) == id(b) && !(a.contains(":key/") && b.contains(":key/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_references_match_by_arn_or_id() {
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234";
        assert!(kms_keys_match(arn, arn));
        assert!(kms_keys_match(arn, "1234"));
        assert!(kms_keys_match("1234", arn));
        assert!(!kms_keys_match(arn, "5678"));
        // Same id in two accounts is two keys.
        assert!(!kms_keys_match(
            arn,
            "arn:aws:kms:us-east-1:444455556666:key/1234"
        ));
        assert!(kms_keys_match("stele-test-key-1", "stele-test-key-1"));
    }

    #[test]
    fn names_the_flags_that_are_off() {
        assert!(PublicAccessBlock::ALL.off().is_empty());
        assert_eq!(
            PublicAccessBlock::ALL_BUT_BLOCK_PUBLIC_ACLS.off(),
            ["BlockPublicAcls"]
        );
    }
}
