//! `stele bucket init|check`: the WORM bucket (stele-bucket does the work).

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};
use serde_json::json;
use stele_bucket::spec::{DEFAULT_MIN_RETENTION_DAYS, DEFAULT_RETENTION_DAYS};
use stele_bucket::{CheckSpec, InitReport, InitSpec};
use stele_worm::{LockMode, S3Config, S3Worm};
use tokio::runtime::Runtime;

use super::runtime;
use crate::config::Context;
use crate::error::{BucketSetting, Failure};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum BucketCommand {
    /// Create a WORM bucket with the Terraform module's configuration: Object
    /// Lock, default retention, versioning, SSE-KMS, public access block,
    /// ownership, the shared bucket policy, lifecycle. Safe to re-run.
    Init(InitArgs),
    /// Check a live bucket against the controls, read-only. Exit 1 if any
    /// control fails; unsupported-by-endpoint is shown but is not a failure.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Bucket name (S3 naming rules).
    #[arg(long)]
    pub bucket: String,
    /// Default retention mode; GOVERNANCE is refused on production stages.
    #[arg(long, default_value = "COMPLIANCE", value_parser = parse_mode)]
    pub mode: LockMode,
    /// Default retention in days (at least AUDIT_ANCHOR_MIN_RETENTION_DAYS, default 365).
    #[arg(long, default_value_t = DEFAULT_RETENTION_DAYS)]
    pub days: u32,
    /// SSE-KMS key: the key ARN on AWS (never an alias), the key id on Ceph RGW
    /// (default AUDIT_ANCHOR_KMS_KEY_ID, then `kms_key_id` under [anchor]).
    #[arg(long)]
    pub kms_key: Option<String>,
    /// Deployment stage (dev, staging, prod, …); prod, production and prd refuse GOVERNANCE.
    #[arg(long)]
    pub stage: Option<String>,
    /// The writer's ARN: a role on AWS, `arn:aws:iam:::user/<uid>` on Ceph RGW.
    #[arg(long)]
    pub writer_arn: String,
    /// Add the optional DenyUploadsByNonWriter statement (AWS only: Ceph RGW ignores it).
    #[arg(long)]
    pub restrict_uploads_to_writer: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Bucket (default AUDIT_ANCHOR_BUCKET, then `bucket` under [anchor]).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Expected default retention mode (COMPLIANCE also satisfies GOVERNANCE).
    #[arg(long, default_value = "COMPLIANCE", value_parser = parse_mode)]
    pub expect_mode: LockMode,
    /// Minimum default retention in days (default AUDIT_ANCHOR_MIN_RETENTION_DAYS, else 365).
    #[arg(long)]
    pub min_days: Option<u32>,
    /// Expected SSE-KMS key (default AUDIT_ANCHOR_KMS_KEY_ID, then [anchor]; else
    /// taken from the bucket, and the report says so).
    #[arg(long)]
    pub kms_key: Option<String>,
    /// Expected writer ARN (else taken from the policy, and the report says so).
    #[arg(long)]
    pub writer_arn: Option<String>,
    /// Also require MFA delete (CIS AWS 2.1.2).
    #[arg(long)]
    pub require_mfa_delete: bool,
    /// Also require server access logging (SOC 2 CC7.2).
    #[arg(long)]
    pub require_logging: bool,
    /// Also require the optional DenyUploadsByNonWriter statement.
    #[arg(long)]
    pub restrict_uploads_to_writer: bool,
    /// Also write the results as JUnit XML to this file (one testcase per control).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

fn parse_mode(s: &str) -> Result<LockMode, String> {
    LockMode::parse(s).ok_or_else(|| format!("{s:?} is not COMPLIANCE or GOVERNANCE"))
}

pub fn run(ctx: &Context, cmd: &BucketCommand) -> Result<(), Failure> {
    match cmd {
        BucketCommand::Init(args) => init(ctx, args),
        BucketCommand::Check(args) => check(ctx, args),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The retention floor: AUDIT_ANCHOR_MIN_RETENTION_DAYS, then [anchor], then 365.
fn retention_floor(ctx: &Context) -> Result<u32, Failure> {
    match env("AUDIT_ANCHOR_MIN_RETENTION_DAYS") {
        Some(v) => v.trim().parse().map_err(|_| {
            Failure::Input(anyhow!(
                "AUDIT_ANCHOR_MIN_RETENTION_DAYS={v:?} is not a number of days"
            ))
        }),
        None => Ok(ctx
            .anchor_file
            .as_ref()
            .and_then(|f| f.min_retention_days)
            .unwrap_or(DEFAULT_MIN_RETENTION_DAYS)),
    }
}

fn configured_kms_key(ctx: &Context) -> Option<String> {
    env("AUDIT_ANCHOR_KMS_KEY_ID").or_else(|| ctx.anchor_file.as_ref()?.kms_key_id.clone())
}

/// A client for `bucket` from the standard AWS chain (AWS_ENDPOINT_URL,
/// AWS_REGION, credentials…) plus [anchor] endpoint/region/path_style; and the region in use.
fn connect(rt: &Runtime, ctx: &Context, bucket: &str) -> Result<(S3Worm, String), Failure> {
    let file = ctx.anchor_file.clone().unwrap_or_default();
    let worm = rt
        .block_on(S3Worm::connect(S3Config {
            bucket: bucket.to_owned(),
            endpoint: file.endpoint,
            region: file.region,
            path_style: file.path_style,
            static_credentials: None,
            kms_key_id: None,
            retry: stele_worm::RetryPolicy::default(),
        }))
        .map_err(|e| Failure::worm(e, BucketSetting::Anchors))?;
    let region = worm
        .client()
        .config()
        .region()
        .map_or_else(|| "us-east-1".to_owned(), |r| r.as_ref().to_owned());
    Ok((worm, region))
}

fn init(ctx: &Context, args: &InitArgs) -> Result<(), Failure> {
    let kms_key = args.kms_key.clone().or_else(|| configured_kms_key(ctx)).ok_or_else(|| {
        Failure::Input(anyhow!(
            "init needs --kms-key (or AUDIT_ANCHOR_KMS_KEY_ID): the bucket policy pins uploads to one key; stele does not create KMS keys (the Terraform module can)"
        ))
    })?;
    let floor = retention_floor(ctx)?;
    let rt = runtime()?;
    let (store, region) = connect(&rt, ctx, &args.bucket)?;
    let spec = InitSpec {
        bucket: args.bucket.clone(),
        region,
        mode: args.mode,
        days: args.days,
        kms_key,
        writer_arn: args.writer_arn.clone(),
        stage: args.stage.clone(),
        restrict_uploads_to_writer: args.restrict_uploads_to_writer,
        lifecycle: stele_bucket::lifecycle::LifecycleSettings::default(),
    };
    let report = rt.block_on(stele_bucket::init(store.client(), &spec, floor))?;
    let next = next_check(&spec);
    if ctx.json {
        output::print_json(&init_json(&report, &next))
    } else {
        output::print(&init_text(&report, &next))
    }
}

/// The `check` command that verifies what `init` just did.
fn next_check(spec: &InitSpec) -> String {
    let mut cmd = format!(
        "stele bucket check --bucket {} --expect-mode {} --min-days {} --kms-key {} --writer-arn {}",
        spec.bucket, spec.mode, spec.days, spec.kms_key, spec.writer_arn
    );
    if spec.restrict_uploads_to_writer {
        cmd.push_str(" --restrict-uploads-to-writer");
    }
    cmd
}

fn init_json(report: &InitReport, next: &str) -> serde_json::Value {
    json!({
        "bucket": report.bucket,
        "endpoint": report.endpoint,
        "steps": report.steps.iter().map(|s| json!({
            "step": s.name,
            "outcome": s.outcome.as_str(),
            "detail": s.detail,
        })).collect::<Vec<_>>(),
        "policy": report.policy,
        "next": next,
    })
}

fn init_text(report: &InitReport, next: &str) -> String {
    use std::fmt::Write as _;
    let width = report.steps.iter().map(|s| s.name.len()).max().unwrap_or(4);
    let mut out = format!(
        "stele bucket init: s3://{}\nendpoint: {}\n\n{:<width$}  {:<19}  DETAIL\n",
        report.bucket, report.endpoint, "STEP", "OUTCOME"
    );
    for s in &report.steps {
        let _ = writeln!(
            out,
            "{:<width$}  {:<19}  {}",
            s.name,
            s.outcome.as_str(),
            s.detail
        );
    }
    let _ = writeln!(out, "\nnext: {next}");
    out
}

fn check(ctx: &Context, args: &CheckArgs) -> Result<(), Failure> {
    let bucket = args
        .bucket
        .clone()
        .or_else(|| env("AUDIT_ANCHOR_BUCKET"))
        .or_else(|| ctx.anchor_file.as_ref()?.bucket.clone())
        .ok_or_else(|| {
            Failure::Input(anyhow!(
                "no bucket: pass --bucket (or set AUDIT_ANCHOR_BUCKET, or `bucket` under [anchor] in stele.toml)"
            ))
        })?;
    let min_days = match args.min_days {
        Some(days) => days,
        None => retention_floor(ctx)?,
    };
    let rt = runtime()?;
    let (store, region) = connect(&rt, ctx, &bucket)?;
    let spec = CheckSpec {
        bucket,
        region,
        expect_mode: args.expect_mode,
        min_days,
        kms_key: args.kms_key.clone().or_else(|| configured_kms_key(ctx)),
        writer_arn: args.writer_arn.clone(),
        require_mfa_delete: args.require_mfa_delete,
        require_logging: args.require_logging,
        require_writer_only_uploads: args.restrict_uploads_to_writer,
    };
    let report = rt.block_on(stele_bucket::check(store.client(), &spec))?;
    // Findings exit 1, like verification; decided before any report is
    // written, so a report that cannot be written does not hide them.
    let verdict = if report.has_failures() {
        Err(Failure::Tampered)
    } else {
        Ok(())
    };
    let junit = args.junit.as_ref().map(|path| {
        std::fs::write(path, report.to_junit())
            .with_context(|| format!("cannot write the JUnit report to {}", path.display()))
            .map_err(Failure::Operational)
    });
    let printed = if ctx.json {
        output::print_json(&report.to_json())
    } else {
        output::print(&report.to_text())
    };
    Failure::after_reports(verdict, junit.into_iter().chain([printed]), ctx.json)
}
