//! `stele bucket init`: applies the Terraform module's configuration through
//! the S3 API, step by step, in the module's order, and says for each step
//! what it did.
//!
//! Re-running is safe: each step reads first and leaves a setting alone when
//! it already matches; a step never weakens what it finds (a shorter or
//! GOVERNANCE default retention over a stricter one is refused).

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    BucketVersioningStatus, CreateBucketConfiguration, DefaultRetention as SdkDefaultRetention,
    ExpirationStatus, LifecycleExpiration, LifecycleRule as SdkRule, LifecycleRuleFilter,
    NoncurrentVersionExpiration, ObjectLockConfiguration, ObjectLockEnabled,
    ObjectLockRetentionMode, ObjectLockRule, ObjectOwnership, OwnershipControls,
    OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Transition as SdkTransition, TransitionStorageClass,
};
use serde_json::Value;
use stele_worm::LockMode;

use crate::BucketError;
use crate::endpoint::{
    EndpointProfile, ProbeOutcome, probe_upload, read_encryption, read_ownership,
    read_public_access_block,
};
use crate::lifecycle::{
    Expiration, LifecycleRule, TRANSITION_STORAGE_CLASS, expirations_before_retention,
    module_rules, without_transitions,
};
use crate::live::{DefaultEncryption, Observed, PublicAccessBlock, kms_keys_match};
use crate::policy::PolicyDocument;
use crate::read::{bucket_exists, read_lifecycle, read_object_lock, read_policy, read_versioning};
use crate::s3call::{CallError, IntoBucketError as _, call, classify};
use crate::spec::InitSpec;
use crate::template::{WRITER_ONLY_SID, render_policy};

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// Changed the bucket as asked.
    Done,
    /// Already as asked; nothing sent.
    Unchanged,
    /// Did something other than asked, because the endpoint needs it; the detail says what and why.
    Adapted,
    /// Not done: the endpoint does not implement it; the detail says how that was decided.
    SkippedUnsupported,
}

impl StepOutcome {
    /// `done`, `unchanged`, `adapted`, `skipped-unsupported`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Unchanged => "unchanged",
            Self::Adapted => "adapted",
            Self::SkippedUnsupported => "skipped-unsupported",
        }
    }
}

/// One step of `init`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Step name (`bucket`, `versioning`, …).
    pub name: &'static str,
    /// Outcome.
    pub outcome: StepOutcome,
    /// What was done or found.
    pub detail: String,
}

/// What `init` did.
#[derive(Clone, Debug, PartialEq)]
pub struct InitReport {
    /// Bucket.
    pub bucket: String,
    /// What the endpoint was found to support.
    pub endpoint: String,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// The policy applied.
    pub policy: Value,
}

struct Steps(Vec<Step>);

impl Steps {
    fn push(&mut self, name: &'static str, outcome: StepOutcome, detail: impl Into<String>) {
        self.0.push(Step {
            name,
            outcome,
            detail: detail.into(),
        });
    }
}

/// Creates (or completes) the WORM bucket `spec` describes.
///
/// # Errors
///
/// [`BucketError`]: invalid settings, an existing bucket without Object Lock
/// or with a stricter retention, refusals and outages.
pub async fn init(client: &Client, spec: &InitSpec, floor: u32) -> Result<InitReport, BucketError> {
    spec.validate(floor)?;
    let bucket = spec.bucket.as_str();
    let mut steps = Steps(Vec::new());

    ensure_bucket(client, spec, &mut steps).await?;
    let lock = match read_object_lock(client, bucket).await? {
        Observed::Found(Some(s)) if s.enabled => s,
        Observed::Found(_) => {
            return Err(BucketError::NoObjectLock {
                bucket: bucket.to_owned(),
            });
        }
        Observed::Unsupported(why) | Observed::Unreadable(why) => {
            return Err(BucketError::Refused {
                op: "GetObjectLockConfiguration",
                code: "Unreadable".into(),
                message: why,
            });
        }
    };

    // Endpoint detection: two GETs, never anything that could delete (endpoint.rs).
    let encryption = read_encryption(client, bucket).await?;
    let ownership = read_ownership(client, bucket).await?;
    let profile = EndpointProfile::from_reads(&encryption, &ownership);

    versioning(client, bucket, &mut steps).await?;
    object_ownership(client, bucket, &ownership, &mut steps).await?;
    // A test upload is harmless only while nothing can lock or refuse it:
    // a bucket just created, or one without default retention and policy.
    let may_probe = lock.default_retention.is_none()
        && matches!(read_policy(client, bucket).await?, Observed::Found(None));
    public_access_block(client, bucket, &profile, may_probe, &mut steps).await?;
    default_retention(client, spec, lock.default_retention.as_ref(), &mut steps).await?;
    default_encryption(client, spec, &encryption, &mut steps).await?;
    let policy = bucket_policy(client, spec, &profile, &mut steps).await?;
    lifecycle(client, spec, &mut steps).await?;

    Ok(InitReport {
        bucket: bucket.to_owned(),
        endpoint: profile.describe(),
        steps: steps.0,
        policy,
    })
}

/// Creates the bucket with Object Lock, or accepts an existing one.
async fn ensure_bucket(
    client: &Client,
    spec: &InitSpec,
    steps: &mut Steps,
) -> Result<(), BucketError> {
    let bucket = spec.bucket.as_str();
    if bucket_exists(client, bucket).await? {
        steps.push("bucket", StepOutcome::Unchanged, "the bucket exists");
        return Ok(());
    }
    // us-east-1 takes no location constraint; every other region needs one.
    let location = (spec.region != "us-east-1").then(|| {
        CreateBucketConfiguration::builder()
            .location_constraint(BucketLocationConstraint::from(spec.region.as_str()))
            .build()
    });
    let result = call("CreateBucket", || {
        client
            .create_bucket()
            .bucket(bucket)
            .object_lock_enabled_for_bucket(true)
            .set_create_bucket_configuration(location.clone())
            .send()
    })
    .await;
    match result {
        Ok(_) => {
            steps.push(
                "bucket",
                StepOutcome::Done,
                "created with Object Lock enabled (it can only be enabled at creation)",
            );
            Ok(())
        }
        Err(e) => {
            let c = classify(&e);
            if c.is(&["BucketAlreadyOwnedByYou"]) {
                steps.push("bucket", StepOutcome::Unchanged, "the bucket exists");
                Ok(())
            } else if c.is(&["BucketAlreadyExists"]) {
                Err(BucketError::NotAccessible {
                    bucket: bucket.to_owned(),
                })
            } else {
                Err(c.into_error("CreateBucket"))
            }
        }
    }
}

async fn versioning(client: &Client, bucket: &str, steps: &mut Steps) -> Result<(), BucketError> {
    if let Observed::Found(v) = read_versioning(client, bucket).await?
        && v.status.as_deref() == Some("Enabled")
    {
        steps.push("versioning", StepOutcome::Unchanged, "Enabled");
        return Ok(());
    }
    call("PutBucketVersioning", || {
        client
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
    })
    .await
    .map_err(|e| classify(&e).into_error("PutBucketVersioning"))?;
    steps.push("versioning", StepOutcome::Done, "Enabled");
    Ok(())
}

async fn object_ownership(
    client: &Client,
    bucket: &str,
    current: &Observed<Option<String>>,
    steps: &mut Steps,
) -> Result<(), BucketError> {
    const WANT: &str = "BucketOwnerEnforced";
    match current {
        Observed::Found(Some(o)) if o == WANT => {
            steps.push("object-ownership", StepOutcome::Unchanged, WANT);
            return Ok(());
        }
        Observed::Found(_) => {}
        // Only a GET that proved the API exists lets a PUT through (endpoint.rs rule 1).
        Observed::Unsupported(why) | Observed::Unreadable(why) => {
            steps.push(
                "object-ownership",
                StepOutcome::SkippedUnsupported,
                format!(
                    "{why}; nothing was sent. ACLs stay in effect on this endpoint: objects another identity (the writer) uploads are owned by it, and the bucket owner can read them only if the writer sends x-amz-acl: bucket-owner-full-control"
                ),
            );
            return Ok(());
        }
    }
    let controls = OwnershipControls::builder()
        .rules(
            OwnershipControlsRule::builder()
                .object_ownership(ObjectOwnership::BucketOwnerEnforced)
                .build()
                .map_err(build_error)?,
        )
        .build()
        .map_err(build_error)?;
    call("PutBucketOwnershipControls", || {
        client
            .put_bucket_ownership_controls()
            .bucket(bucket)
            .ownership_controls(controls.clone())
            .send()
    })
    .await
    .map_err(|e| classify(&e).into_error("PutBucketOwnershipControls"))?;
    steps.push(
        "object-ownership",
        StepOutcome::Done,
        format!("{WANT} (ACLs disabled)"),
    );
    Ok(())
}

async fn put_public_access_block(
    client: &Client,
    bucket: &str,
    flags: PublicAccessBlock,
) -> Result<(), BucketError> {
    let cfg = PublicAccessBlockConfiguration::builder()
        .block_public_acls(flags.block_public_acls)
        .ignore_public_acls(flags.ignore_public_acls)
        .block_public_policy(flags.block_public_policy)
        .restrict_public_buckets(flags.restrict_public_buckets)
        .build();
    call("PutPublicAccessBlock", || {
        client
            .put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(cfg.clone())
            .send()
    })
    .await
    .map_err(|e| classify(&e).into_error("PutPublicAccessBlock"))?;
    Ok(())
}

const BLOCK_PUBLIC_ACLS_BUG: &str = "BlockPublicAcls=true makes this endpoint refuse every upload (the Ceph RGW 16 bug), so stele turned on the other three flags (IgnorePublicAcls, BlockPublicPolicy, RestrictPublicBuckets) and left BlockPublicAcls off; IgnorePublicAcls still makes any public ACL ineffective";

/// All four flags — unless the endpoint refuses uploads with `BlockPublicAcls`,
/// found by a test upload where one can be removed again, else by the profile.
async fn public_access_block(
    client: &Client,
    bucket: &str,
    profile: &EndpointProfile,
    may_probe: bool,
    steps: &mut Steps,
) -> Result<(), BucketError> {
    const NAME: &str = "public-access-block";
    let current = read_public_access_block(client, bucket).await?;
    if current == Observed::Found(Some(PublicAccessBlock::ALL)) {
        steps.push(NAME, StepOutcome::Unchanged, "all four flags on");
        return Ok(());
    }
    if !may_probe {
        // The bucket may already lock or refuse a test upload: decide by the profile.
        if profile.block_public_acls_breaks_uploads() {
            if current != Observed::Found(Some(PublicAccessBlock::ALL_BUT_BLOCK_PUBLIC_ACLS)) {
                put_public_access_block(
                    client,
                    bucket,
                    PublicAccessBlock::ALL_BUT_BLOCK_PUBLIC_ACLS,
                )
                .await?;
            }
            steps.push(
                NAME,
                StepOutcome::Adapted,
                format!(
                    "{BLOCK_PUBLIC_ACLS_BUG} (decided from the endpoint profile: {})",
                    profile.describe()
                ),
            );
        } else {
            put_public_access_block(client, bucket, PublicAccessBlock::ALL).await?;
            steps.push(NAME, StepOutcome::Done, "all four flags on");
        }
        return Ok(());
    }
    put_public_access_block(client, bucket, PublicAccessBlock::ALL).await?;
    let refused = match probe_upload(client, bucket).await? {
        ProbeOutcome::Accepted { leftover } => {
            steps.push(
                NAME,
                StepOutcome::Done,
                format!(
                    "all four flags on; a test upload still succeeded{}",
                    leftover.map(|l| format!(" ({l})")).unwrap_or_default()
                ),
            );
            return Ok(());
        }
        ProbeOutcome::Refused(code) => code,
    };
    put_public_access_block(client, bucket, PublicAccessBlock::ALL_BUT_BLOCK_PUBLIC_ACLS).await?;
    match probe_upload(client, bucket).await? {
        ProbeOutcome::Accepted { leftover } => {
            steps.push(
                NAME,
                StepOutcome::Adapted,
                format!(
                    "{BLOCK_PUBLIC_ACLS_BUG} (found by a test upload: refused with {refused} with all four flags, accepted without BlockPublicAcls; the test object was deleted{})",
                    leftover.map(|l| format!("; {l}")).unwrap_or_default()
                ),
            );
            Ok(())
        }
        ProbeOutcome::Refused(again) => Err(BucketError::Refused {
            op: "PutObject",
            code: again,
            message: format!(
                "a test upload into the new bucket was refused with and without BlockPublicAcls ({refused}); check that these credentials may upload to {bucket}"
            ),
        }),
    }
}

async fn default_retention(
    client: &Client,
    spec: &InitSpec,
    current: Option<&crate::live::DefaultRetention>,
    steps: &mut Steps,
) -> Result<(), BucketError> {
    const NAME: &str = "default-retention";
    let want = format!("{}, {} days", spec.mode, spec.days);
    if let Some(cur) = current {
        if cur.mode == Some(spec.mode) && cur.days == spec.days {
            steps.push(NAME, StepOutcome::Unchanged, want);
            return Ok(());
        }
        let weaker_mode =
            cur.mode == Some(LockMode::Compliance) && spec.mode == LockMode::Governance;
        if weaker_mode || cur.days > spec.days {
            return Err(BucketError::WouldWeaken {
                bucket: spec.bucket.clone(),
                what: format!(
                    "the default retention is {} {}; init will not change it to {want}",
                    cur.mode.map_or("(unknown mode)", LockMode::as_str),
                    cur.as_configured
                ),
            });
        }
    }
    let mode = match spec.mode {
        LockMode::Compliance => ObjectLockRetentionMode::Compliance,
        LockMode::Governance => ObjectLockRetentionMode::Governance,
    };
    let days = i32::try_from(spec.days).unwrap_or(i32::MAX);
    let cfg = ObjectLockConfiguration::builder()
        .object_lock_enabled(ObjectLockEnabled::Enabled)
        .rule(
            ObjectLockRule::builder()
                .default_retention(SdkDefaultRetention::builder().mode(mode).days(days).build())
                .build(),
        )
        .build();
    call("PutObjectLockConfiguration", || {
        client
            .put_object_lock_configuration()
            .bucket(&spec.bucket)
            .object_lock_configuration(cfg.clone())
            .send()
    })
    .await
    .map_err(|e| classify(&e).into_error("PutObjectLockConfiguration"))?;
    steps.push(NAME, StepOutcome::Done, want);
    Ok(())
}

async fn default_encryption(
    client: &Client,
    spec: &InitSpec,
    current: &Observed<Option<Vec<DefaultEncryption>>>,
    steps: &mut Steps,
) -> Result<(), BucketError> {
    const NAME: &str = "default-encryption";
    let want = format!("aws:kms with {}, bucket key on", spec.kms_key);
    match current {
        Observed::Found(Some(rules))
            if rules.first().is_some_and(|r| {
                r.algorithm == "aws:kms"
                    && r.kms_key
                        .as_deref()
                        .is_some_and(|k| kms_keys_match(k, &spec.kms_key))
                    && r.bucket_key == Some(true)
            }) =>
        {
            steps.push(NAME, StepOutcome::Unchanged, want);
            return Ok(());
        }
        Observed::Found(_) => {}
        // Never PUT (let alone DELETE) ?encryption where GET did not prove the API (endpoint.rs).
        Observed::Unsupported(why) | Observed::Unreadable(why) => {
            steps.push(
                NAME,
                StepOutcome::SkippedUnsupported,
                format!(
                    "{why}; nothing was sent to ?encryption (on Ceph RGW a DELETE there deletes the bucket). Uploads are held to SSE-KMS with {} by the bucket policy instead",
                    spec.kms_key
                ),
            );
            return Ok(());
        }
    }
    let cfg = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(ServerSideEncryption::AwsKms)
                        .kms_master_key_id(&spec.kms_key)
                        .build()
                        .map_err(build_error)?,
                )
                .bucket_key_enabled(true)
                .build(),
        )
        .build()
        .map_err(build_error)?;
    call("PutBucketEncryption", || {
        client
            .put_bucket_encryption()
            .bucket(&spec.bucket)
            .server_side_encryption_configuration(cfg.clone())
            .send()
    })
    .await
    .map_err(|e| classify(&e).into_error("PutBucketEncryption"))?;
    steps.push(NAME, StepOutcome::Done, want);
    Ok(())
}

async fn bucket_policy(
    client: &Client,
    spec: &InitSpec,
    profile: &EndpointProfile,
    steps: &mut Steps,
) -> Result<Value, BucketError> {
    const NAME: &str = "bucket-policy";
    let rendered = render_policy(&spec.policy_values(), spec.restrict_uploads_to_writer)
        .map_err(crate::spec::SpecError::from)?;
    let want = PolicyDocument::from_value(&rendered).map_err(|e| BucketError::Refused {
        op: "PutBucketPolicy",
        code: "InvalidPolicy".into(),
        message: e.to_string(),
    })?;
    let sids: Vec<&str> = want
        .statements
        .iter()
        .filter_map(|s| s.sid.as_deref())
        .collect();
    let mut detail = format!("{} statements: {}", sids.len(), sids.join(", "));
    if spec.restrict_uploads_to_writer && !profile.evaluates_principal_arn() {
        detail.push_str(&format!(
            "; note: {WRITER_ONLY_SID} is in the policy, but this Ceph RGW-like endpoint does not evaluate aws:PrincipalArn, so it has no effect here"
        ));
    }
    let current = read_policy(client, &spec.bucket).await?;
    if let Observed::Found(Some(text)) = &current
        && PolicyDocument::parse(text).is_ok_and(|cur| same_statements(&cur, &want))
    {
        steps.push(NAME, StepOutcome::Unchanged, detail);
        return Ok(rendered);
    }
    let text = rendered.to_string();
    call("PutBucketPolicy", || {
        client
            .put_bucket_policy()
            .bucket(&spec.bucket)
            .policy(&text)
            .send()
    })
    .await
    .map_err(|e| classify(&e).into_error("PutBucketPolicy"))?;
    if matches!(current, Observed::Found(Some(_))) {
        detail.push_str(" (replaced the previous policy)");
    }
    steps.push(NAME, StepOutcome::Done, detail);
    Ok(rendered)
}

/// Same statements, in any order.
fn same_statements(a: &PolicyDocument, b: &PolicyDocument) -> bool {
    a.statements.len() == b.statements.len()
        && a.statements.iter().all(|s| b.statements.contains(s))
}

async fn lifecycle(client: &Client, spec: &InitSpec, steps: &mut Steps) -> Result<(), BucketError> {
    const NAME: &str = "lifecycle";
    let rules = module_rules(&spec.lifecycle);
    let problems = expirations_before_retention(&rules, spec.days);
    if !problems.is_empty() {
        return Err(BucketError::Refused {
            op: "PutBucketLifecycleConfiguration",
            code: "ExpirationBeforeRetention".into(),
            message: problems.join("; "),
        });
    }
    let describe = |rules: &[LifecycleRule]| {
        rules
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Already there (with or without the transitions an endpoint refused before)?
    if let Observed::Found(current) = read_lifecycle(client, &spec.bucket).await? {
        for wanted in [rules.clone(), without_transitions(&rules)] {
            if same_rules(&current, &wanted) {
                steps.push(
                    NAME,
                    StepOutcome::Unchanged,
                    format!(
                        "{} rules ({}); nothing expires",
                        wanted.len(),
                        describe(&wanted)
                    ),
                );
                return Ok(());
            }
        }
    }
    match put_lifecycle(client, &spec.bucket, &rules).await {
        Ok(()) => {
            steps.push(
                NAME,
                StepOutcome::Done,
                format!(
                    "{} rules ({}); nothing expires",
                    rules.len(),
                    describe(&rules)
                ),
            );
            Ok(())
        }
        // Some stores offer no GLACIER_IR class: keep the rules that still act.
        Err(c) if c.is(&["InvalidStorageClass", "InvalidArgument", "InvalidRequest"]) => {
            let reduced = without_transitions(&rules);
            put_lifecycle(client, &spec.bucket, &reduced)
                .await
                .map_err(|c| c.into_error("PutBucketLifecycleConfiguration"))?;
            steps.push(
                NAME,
                StepOutcome::Adapted,
                format!(
                    "the endpoint refused the {TRANSITION_STORAGE_CLASS} transitions ({}: {}); applied {} without them; nothing expires",
                    c.code,
                    c.message,
                    describe(&reduced)
                ),
            );
            Ok(())
        }
        Err(c) => Err(c.into_error("PutBucketLifecycleConfiguration")),
    }
}

/// Same rules, in any order.
fn same_rules(a: &[LifecycleRule], b: &[LifecycleRule]) -> bool {
    a.len() == b.len() && a.iter().all(|r| b.contains(r))
}

async fn put_lifecycle(
    client: &Client,
    bucket: &str,
    rules: &[LifecycleRule],
) -> Result<(), CallError> {
    // A rule the SDK cannot build is a bug here, reported like a refusal.
    let unbuildable = |e: aws_sdk_s3::error::BuildError| CallError {
        code: "Build".into(),
        status: None,
        message: e.to_string(),
        transient: false,
    };
    let sdk_rules = rules
        .iter()
        .map(to_sdk_rule)
        .collect::<Result<Vec<_>, _>>()
        .map_err(unbuildable)?;
    let cfg = BucketLifecycleConfiguration::builder()
        .set_rules(Some(sdk_rules))
        .build()
        .map_err(unbuildable)?;
    call("PutBucketLifecycleConfiguration", || {
        client
            .put_bucket_lifecycle_configuration()
            .bucket(bucket)
            .lifecycle_configuration(cfg.clone())
            .send()
    })
    .await
    .map(|_| ())
    .map_err(|e| classify(&e))
}

fn to_sdk_rule(r: &LifecycleRule) -> Result<SdkRule, aws_sdk_s3::error::BuildError> {
    let days = |d: i64| i32::try_from(d).unwrap_or(i32::MAX);
    let mut b = SdkRule::builder()
        .id(&r.id)
        .status(if r.enabled {
            ExpirationStatus::Enabled
        } else {
            ExpirationStatus::Disabled
        })
        .filter(match &r.prefix {
            Some(p) => LifecycleRuleFilter::builder().prefix(p).build(),
            None => LifecycleRuleFilter::builder().build(),
        });
    for t in &r.transitions {
        b = b.transitions(
            SdkTransition::builder()
                .days(days(t.days))
                .storage_class(TransitionStorageClass::from(t.storage_class.as_str()))
                .build(),
        );
    }
    if let Some(Expiration::Days(d)) = r.expiration {
        b = b.expiration(LifecycleExpiration::builder().days(days(d)).build());
    }
    if let Some(d) = r.noncurrent_expiration_days {
        b = b.noncurrent_version_expiration(
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(days(d))
                .build(),
        );
    }
    if let Some(d) = r.abort_incomplete_upload_days {
        b = b.abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(days(d))
                .build(),
        );
    }
    b.build()
}

fn build_error(e: aws_sdk_s3::error::BuildError) -> BucketError {
    BucketError::Refused {
        op: "build request",
        code: "Build".into(),
        message: e.to_string(),
    }
}
