//! The WORM bucket's configuration as controls (docs/contracts.md §5).
//!
//! One idea: a stele bucket is a list of controls — Object Lock with a
//! default retention, versioning, SSE-KMS with a bucket key, the public
//! access block, ownership enforced, the shared bucket policy, lifecycle
//! that never expires before retention — each mapped to CIS AWS 2.1.x,
//! SOC 2, HIPAA §164.312 and SEC 17a-4(f). [`init`] applies them through
//! the S3 API (the same configuration the Terraform module in
//! `deploy/terraform/modules/worm-bucket` applies); [`check`] reads a live
//! bucket with read-only calls and reports each control as pass, fail or
//! unsupported-by-endpoint.
//!
//! # No I/O in the core
//!
//! Rendering the policy ([`template`]), parsing and evaluating policies
//! ([`policy`], [`policy_eval`]), lifecycle rules ([`lifecycle`]), the
//! catalogue ([`controls`]), settings ([`spec`]), the evaluation of a live
//! configuration ([`evaluate`]) and the reports ([`report`]) are pure. The
//! I/O is in `read.rs` (GET/HEAD only), `apply.rs` (init) and [`endpoint`]
//! (which decides what an endpoint supports without calling anything that
//! an endpoint may misinterpret: Ceph RGW deletes the bucket on DELETE
//! `?encryption`, so that call is never made).
//!
//! # One policy template
//!
//! The bucket policy is `deploy/policy/*.json.tftpl`, compiled in with
//! `include_str!`; the Terraform module renders the same files with
//! `templatefile()`. A test renders both and compares them statement by
//! statement.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod apply;
pub mod controls;
pub mod endpoint;
pub mod evaluate;
pub mod lifecycle;
pub mod live;
pub mod policy;
pub mod policy_eval;
mod read;
pub mod report;
mod s3call;
pub mod spec;
pub mod template;

use aws_sdk_s3::Client;
use thiserror::Error;

/// The AWS SDK this crate's API takes a client of (re-exported so callers use the same version).
pub use aws_sdk_s3;

pub use apply::{InitReport, Step, StepOutcome, init};
pub use read::read_live;
pub use report::{Finding, Report, Status};
pub use spec::{CheckSpec, InitSpec, SpecError};

/// Reads the live bucket and evaluates every control.
///
/// # Errors
///
/// [`BucketError`] when the bucket cannot be reached at all; a setting that
/// cannot be read fails its own control instead.
pub async fn check(client: &Client, spec: &CheckSpec) -> Result<Report, BucketError> {
    spec::validate_bucket_name(&spec.bucket)?;
    let live = read_live(client, &spec.bucket).await?;
    Ok(evaluate::evaluate(spec, &live))
}

/// `init` or `check` could not run. Messages say what to fix and never contain secrets.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BucketError {
    /// The settings are invalid; nothing was sent.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The bucket does not exist.
    #[error("bucket {bucket:?} does not exist (check the name, the endpoint and the region)")]
    NoSuchBucket {
        /// Bucket.
        bucket: String,
    },
    /// The bucket exists but these credentials cannot use it.
    #[error(
        "bucket {bucket:?} exists but these credentials cannot use it (owned by another account, or access denied): choose another name or other credentials"
    )]
    NotAccessible {
        /// Bucket.
        bucket: String,
    },
    /// An existing bucket has no Object Lock.
    #[error(
        "bucket {bucket:?} exists without Object Lock; Object Lock can only be enabled when a bucket is created, so choose a new bucket name (stele does not convert existing buckets)"
    )]
    NoObjectLock {
        /// Bucket.
        bucket: String,
    },
    /// Applying would weaken an existing setting.
    #[error(
        "bucket {bucket:?}: {what}; init never weakens a bucket (ask for at least the retention days and mode that are there)"
    )]
    WouldWeaken {
        /// Bucket.
        bucket: String,
        /// What would be weakened.
        what: String,
    },
    /// The credentials were rejected.
    #[error(
        "the S3 credentials were rejected by {op} ({code}): the access key, the profile or the role is not valid for this endpoint"
    )]
    Credentials {
        /// Operation.
        op: &'static str,
        /// Error code.
        code: String,
    },
    /// The endpoint refused a call.
    #[error("{op} was refused: {code}: {message}")]
    Refused {
        /// Operation.
        op: &'static str,
        /// Error code.
        code: String,
        /// Endpoint message.
        message: String,
    },
    /// The endpoint could not be reached (after retries).
    #[error("{op} failed: {message} (the endpoint may be unreachable; try again)")]
    Unavailable {
        /// Operation.
        op: &'static str,
        /// Last error.
        message: String,
    },
}

impl BucketError {
    /// True when the user must change something (settings, names, credentials)
    /// rather than retry.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            Self::Spec(_)
                | Self::NoSuchBucket { .. }
                | Self::NotAccessible { .. }
                | Self::NoObjectLock { .. }
                | Self::WouldWeaken { .. }
                | Self::Credentials { .. }
        )
    }
}
