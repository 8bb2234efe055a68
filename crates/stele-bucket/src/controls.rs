//! The controls catalogue (no I/O): every check [`crate::check`] makes,
//! what it maps to, and how to fix a failure (in S3 API and Terraform
//! module terms: callers add their own commands).
//!
//! Mappings:
//! - **CIS AWS** 2.1.x as numbered in the project's security review (seed
//!   002, CIS AWS Foundations v1.5.0): 2.1.1 deny HTTP, 2.1.2 MFA delete,
//!   2.1.4 block public access, 2.1.5 KMS CMK encryption — the numbering
//!   `deploy/policy/README.md` and the Terraform module use too;
//! - **SOC 2** trust services criteria CC6.1 (logical access), CC6.6
//!   (threats from outside the boundary; the review files encryption here),
//!   CC6.7 (data in transit), CC7.2 (monitoring), A1.2 (backup processes:
//!   the records can be stored at all);
//! - **HIPAA** §164.312: (a)(1) access control, (a)(2)(iv) encryption,
//!   (b) audit controls, (c)(1) integrity, (e)(1) transmission security;
//! - **SEC 17a-4(f)**: (2)(ii)(A) non-rewriteable, non-erasable storage.
//!
//! The policy statements' mappings are the ones in `deploy/policy/README.md`.

/// One control.
#[derive(Debug, PartialEq, Eq)]
pub struct Control {
    /// Stable id, used in reports, JSON and JUnit (`object-lock`, `policy.DenyWrongKmsKey`).
    pub id: &'static str,
    /// What is checked.
    pub title: &'static str,
    /// CIS AWS Foundations 2.1.x.
    pub cis_aws: &'static [&'static str],
    /// SOC 2 criteria.
    pub soc2: &'static [&'static str],
    /// HIPAA §164.312 paragraphs.
    pub hipaa: &'static [&'static str],
    /// SEC 17a-4 paragraphs.
    pub sec_17a_4: &'static [&'static str],
    /// How to fix a failure.
    pub fix: &'static str,
}

impl Control {
    /// Every mapping as one label, e.g. `CIS AWS 2.1.5`, `SOC 2 CC6.6`.
    pub fn mappings(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(self.cis_aws.iter().map(|c| format!("CIS AWS {c}")));
        out.extend(self.soc2.iter().map(|c| format!("SOC 2 {c}")));
        out.extend(self.hipaa.iter().map(|c| format!("HIPAA §164.312{c}")));
        out.extend(self.sec_17a_4.iter().map(|c| format!("SEC 17a-4{c}")));
        out
    }
}

const APPLY_POLICY: &str = "apply the policy rendered from deploy/policy/ (PutBucketPolicy, or the Terraform module's aws_s3_bucket_policy)";

/// Object Lock is enabled on the bucket.
pub const OBJECT_LOCK: Control = Control {
    id: "object-lock",
    title: "Object Lock enabled",
    cis_aws: &[],
    soc2: &["CC6.1"],
    hipaa: &["(c)(1)"],
    sec_17a_4: &["(f)(2)(ii)(A)"],
    fix: "Object Lock can only be enabled when a bucket is created: create a new bucket with Object Lock (the Terraform module does) and move the writers to it",
};

/// Default retention has the expected mode and at least the minimum period.
pub const DEFAULT_RETENTION: Control = Control {
    id: "default-retention",
    title: "Default retention: mode and period",
    cis_aws: &[],
    soc2: &["CC6.1"],
    hipaa: &["(c)(1)"],
    sec_17a_4: &["(f)(2)(ii)(A)"],
    fix: "set the default retention to the expected mode and at least the minimum days (PutObjectLockConfiguration, or the module's object_lock_mode / object_lock_retention_days)",
};

/// Versioning is enabled (Object Lock requires it).
pub const VERSIONING: Control = Control {
    id: "versioning",
    title: "Versioning enabled",
    cis_aws: &[],
    soc2: &["CC6.1"],
    hipaa: &["(c)(1)"],
    sec_17a_4: &["(f)(2)(ii)(A)"],
    fix: "enable versioning (PutBucketVersioning Status=Enabled); a bucket with Object Lock cannot suspend it",
};

/// MFA delete is enabled (only when asked for).
pub const MFA_DELETE: Control = Control {
    id: "mfa-delete",
    title: "MFA delete enabled",
    cis_aws: &["2.1.2"],
    soc2: &["CC6.1"],
    hipaa: &["(c)(1)"],
    sec_17a_4: &[],
    fix: "enable MFA delete with the root user's MFA device (PutBucketVersioning with MFADelete=Enabled and the device's serial and code, or the module's mfa_delete + mfa); note S3 does not run lifecycle rules on MFA-delete buckets",
};

/// Default encryption is SSE-KMS with the expected key and a bucket key.
pub const DEFAULT_ENCRYPTION: Control = Control {
    id: "default-encryption",
    title: "Default encryption: SSE-KMS, expected key, bucket key",
    cis_aws: &["2.1.5"],
    soc2: &["CC6.1", "CC6.6"],
    hipaa: &["(a)(2)(iv)", "(c)(1)"],
    sec_17a_4: &[],
    fix: "set default encryption to aws:kms with the expected key ARN and BucketKeyEnabled=true (PutBucketEncryption, or the module)",
};

/// All four public-access-block flags are on.
pub const PUBLIC_ACCESS_BLOCK: Control = Control {
    id: "public-access-block",
    title: "Public access block: all four flags",
    cis_aws: &["2.1.4"],
    soc2: &["CC6.1", "CC6.6"],
    hipaa: &["(a)(1)"],
    sec_17a_4: &[],
    fix: "turn on BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy and RestrictPublicBuckets (PutPublicAccessBlock, or the module)",
};

/// Object ownership is `BucketOwnerEnforced` (ACLs disabled).
pub const OBJECT_OWNERSHIP: Control = Control {
    id: "object-ownership",
    title: "Object ownership: BucketOwnerEnforced (ACLs disabled)",
    cis_aws: &[],
    soc2: &["CC6.1"],
    hipaa: &["(a)(1)"],
    sec_17a_4: &[],
    fix: "set ownership controls to BucketOwnerEnforced (PutBucketOwnershipControls, or the module)",
};

/// The bucket policy grants nothing to the public.
pub const POLICY_NOT_PUBLIC: Control = Control {
    id: "policy-not-public",
    title: "Bucket policy is not public",
    cis_aws: &["2.1.4"],
    soc2: &["CC6.1", "CC6.6"],
    hipaa: &["(a)(1)"],
    sec_17a_4: &[],
    fix: "remove Allow statements for Principal \"*\" without a condition pinning the caller; keep BlockPublicPolicy on",
};

/// `DenyInsecureTransport`.
pub const DENY_INSECURE_TRANSPORT: Control = Control {
    id: "policy.DenyInsecureTransport",
    title: "Policy denies every request over plain HTTP",
    cis_aws: &["2.1.1"],
    soc2: &["CC6.6", "CC6.7"],
    hipaa: &["(e)(1)"],
    sec_17a_4: &[],
    fix: APPLY_POLICY,
};

/// `DenyWrongEncryptionHeader`.
pub const DENY_WRONG_ENCRYPTION_HEADER: Control = Control {
    id: "policy.DenyWrongEncryptionHeader",
    title: "Policy denies uploads whose SSE header is not aws:kms",
    cis_aws: &["2.1.5"],
    soc2: &["CC6.6"],
    hipaa: &["(a)(2)(iv)", "(c)(1)"],
    sec_17a_4: &[],
    fix: APPLY_POLICY,
};

/// `DenyWrongKmsKey`.
pub const DENY_WRONG_KMS_KEY: Control = Control {
    id: "policy.DenyWrongKmsKey",
    title: "Policy denies uploads with another KMS key",
    cis_aws: &["2.1.5"],
    soc2: &["CC6.1", "CC6.6"],
    hipaa: &["(a)(2)(iv)"],
    sec_17a_4: &[],
    fix: APPLY_POLICY,
};

/// `DenyKmsUploadWithoutKeyId`: on AWS an SSE-KMS upload that names no
/// key is encrypted under the AWS managed key `aws/s3`, not the bucket's.
pub const DENY_KMS_UPLOAD_WITHOUT_KEY_ID: Control = Control {
    id: "policy.DenyKmsUploadWithoutKeyId",
    title: "Policy denies SSE-KMS uploads that name no KMS key",
    cis_aws: &["2.1.5"],
    soc2: &["CC6.1", "CC6.6"],
    hipaa: &["(a)(2)(iv)"],
    sec_17a_4: &[],
    fix: APPLY_POLICY,
};

/// No Deny refuses the parts of a multipart upload. Not a Deny itself: a
/// policy that refuses them (the v1 template did, with `Null` and negated
/// conditions on the encryption headers, which parts never carry) leaves
/// every file above the multipart threshold unstorable, so the records the
/// bucket exists to preserve are not preserved.
pub const POLICY_ALLOWS_MULTIPART: Control = Control {
    id: "policy-allows-multipart",
    title: "Policy lets the parts of a multipart upload through",
    cis_aws: &[],
    soc2: &["A1.2"],
    hipaa: &[],
    sec_17a_4: &["(f)(2)(ii)(A)"],
    fix: "re-apply the current policy from deploy/policy/ (PutBucketPolicy, or the module): its encryption Denies test the headers only when a request carries them, and the bucket's default encryption covers the requests that carry none",
};

/// `DenyObjectDeletion`.
pub const DENY_OBJECT_DELETION: Control = Control {
    id: "policy.DenyObjectDeletion",
    title: "Policy denies DeleteObject and DeleteObjectVersion",
    cis_aws: &[],
    soc2: &["CC6.1", "CC7.2"],
    hipaa: &["(c)(1)"],
    sec_17a_4: &["(f)(2)(ii)(A)"],
    fix: APPLY_POLICY,
};

/// `DenyBucketDeletion`.
pub const DENY_BUCKET_DELETION: Control = Control {
    id: "policy.DenyBucketDeletion",
    title: "Policy denies DeleteBucket",
    cis_aws: &[],
    soc2: &["CC6.1"],
    hipaa: &["(c)(1)"],
    sec_17a_4: &["(f)"],
    fix: APPLY_POLICY,
};

/// `DenyGovernanceBypassByWriter`.
pub const DENY_GOVERNANCE_BYPASS_BY_WRITER: Control = Control {
    id: "policy.DenyGovernanceBypassByWriter",
    title: "Policy denies the writer s3:BypassGovernanceRetention",
    cis_aws: &[],
    soc2: &["CC6.1"],
    hipaa: &["(c)(1)"],
    sec_17a_4: &["(f)"],
    fix: APPLY_POLICY,
};

/// `DenyUploadsByNonWriter` (optional).
pub const DENY_UPLOADS_BY_NON_WRITER: Control = Control {
    id: "policy.DenyUploadsByNonWriter",
    title: "Policy denies uploads by anyone but the writer",
    cis_aws: &[],
    soc2: &["CC6.1"],
    hipaa: &["(c)(1)"],
    sec_17a_4: &[],
    fix: "apply the policy with the optional statement DenyUploadsByNonWriter (rendered from deploy/policy/, or the module's restrict_uploads_to_writer)",
};

/// Lifecycle rules never expire objects before their retention.
pub const LIFECYCLE: Control = Control {
    id: "lifecycle",
    title: "Lifecycle never expires objects before their retention",
    cis_aws: &[],
    soc2: &[],
    hipaa: &["(c)(1)"],
    sec_17a_4: &["(f)(2)(ii)(A)"],
    fix: "remove the expirations or raise them to at least the retention period (the module refuses shorter ones at plan time)",
};

/// Server access logging is on (only when asked for).
pub const ACCESS_LOGGING: Control = Control {
    id: "access-logging",
    title: "Server access logging enabled",
    cis_aws: &[],
    soc2: &["CC7.2"],
    hipaa: &["(b)"],
    sec_17a_4: &[],
    fix: "enable server access logging into a separate bucket without Object Lock default retention (the module's enable_access_logging); log object-level activity with CloudTrail data events too",
};

/// Every control, in report order.
pub const ALL: [&Control; 19] = [
    &OBJECT_LOCK,
    &DEFAULT_RETENTION,
    &VERSIONING,
    &MFA_DELETE,
    &DEFAULT_ENCRYPTION,
    &PUBLIC_ACCESS_BLOCK,
    &OBJECT_OWNERSHIP,
    &POLICY_NOT_PUBLIC,
    &DENY_INSECURE_TRANSPORT,
    &DENY_WRONG_ENCRYPTION_HEADER,
    &DENY_WRONG_KMS_KEY,
    &DENY_KMS_UPLOAD_WITHOUT_KEY_ID,
    &DENY_OBJECT_DELETION,
    &DENY_BUCKET_DELETION,
    &DENY_GOVERNANCE_BYPASS_BY_WRITER,
    &DENY_UPLOADS_BY_NON_WRITER,
    &POLICY_ALLOWS_MULTIPART,
    &LIFECYCLE,
    &ACCESS_LOGGING,
];

/// The control for the policy statement with this `Sid`.
pub fn for_statement(sid: &str) -> Option<&'static Control> {
    ALL.iter()
        .copied()
        .find(|c| c.id.strip_prefix("policy.") == Some(sid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyDocument;
    use crate::template::{PolicyValues, render_policy};

    #[test]
    fn every_template_statement_has_a_control() {
        let policy = render_policy(
            &PolicyValues {
                bucket_arn: "arn:aws:s3:::b".into(),
                kms_key_arn: "k".into(),
                writer_role_arn: "arn:aws:iam::1:role/w".into(),
            },
            true,
        )
        .unwrap();
        for sid in PolicyDocument::from_value(&policy).unwrap().by_sid().keys() {
            assert!(for_statement(sid).is_some(), "no control for {sid}");
        }
    }

    #[test]
    fn ids_are_unique_and_every_control_maps_somewhere() {
        let mut ids: Vec<&str> = ALL.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), ALL.len());
        for c in ALL {
            assert!(!c.mappings().is_empty(), "{} maps to nothing", c.id);
            assert!(!c.fix.is_empty());
        }
        assert_eq!(
            DEFAULT_ENCRYPTION.mappings(),
            [
                "CIS AWS 2.1.5",
                "SOC 2 CC6.1",
                "SOC 2 CC6.6",
                "HIPAA §164.312(a)(2)(iv)",
                "HIPAA §164.312(c)(1)"
            ]
        );
    }
}
