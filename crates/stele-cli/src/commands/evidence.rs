//! `stele evidence put|get|check|list|status|hold|extend`: the evidence vault
//! (docs/contracts.md §3) on `stele-evidence`.
//!
//! Settings, each flag first, then its environment variable:
//!
//! | setting | flag | environment | default |
//! |---|---|---|---|
//! | bucket | `--bucket` | `STELE_EVIDENCE_BUCKET`, `AUDIT_EVIDENCE_BUCKET` | — |
//! | SSE-KMS key | `--kms-key-id` | `STELE_EVIDENCE_KMS_KEY_ID`, `AUDIT_EVIDENCE_KMS_KEY_ID` | bucket default |
//! | attempts per request | `--retries` | `STELE_EVIDENCE_RETRIES` | 3 |
//! | ledger chain | `--chain` | `STELE_EVIDENCE_CHAIN` | `evidence` |
//! | retention days | `--retain-days` | `STELE_EVIDENCE_RETENTION_DAYS` | 90 |
//! | retention floor | `--min-retain-days` | `STELE_EVIDENCE_MIN_RETENTION_DAYS` | 90 |
//! | lock mode | `--mode` | `STELE_EVIDENCE_MODE` | COMPLIANCE |
//! | part size (MiB) | `--part-size-mib` | `STELE_EVIDENCE_PART_SIZE_MIB` | 32 |
//! | parts in flight | `--concurrency` | `STELE_EVIDENCE_CONCURRENCY` | 3 |
//!
//! The endpoint, region and credentials come from the AWS SDK's standard
//! variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, the credential chain), else
//! from `[anchor]` in `stele.toml` (endpoint, region, path style).

mod fetch;
mod manage;
mod put;

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::anyhow;
use clap::{Args, Subcommand, ValueEnum};
use stele_evidence::record::{self, DEFAULT_CHAIN, EvidenceRecord, Recorded};
use stele_evidence::{EvidenceError, EvidenceKey, Vault};
use stele_ledger::ChainId;
use stele_worm::{LockMode, Phase, Progress, RetryPolicy, S3Config, S3Worm, UploadTuning};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::runtime::Runtime;

use super::{chain_id, open_shared_read_only, runtime};
use crate::config::Context;
use crate::error::Failure;

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Store files under Object Lock with a detached signature beside each,
    /// verify what the store holds, then record `evidence.uploaded` in the ledger.
    Put(PutArgs),
    /// Download an object and verify it against the ledger, its metadata and its signature.
    Get(GetArgs),
    /// Check a local copy against the ledger record and the detached signature.
    Check(CheckArgs),
    /// List a client's evidence, with whether each object is recorded in the ledger.
    List(ListArgs),
    /// Show an object's lock mode, retain-until, legal hold and versions.
    Status(StatusArgs),
    /// Set or release a legal hold (it blocks deletion whatever the retention).
    Hold(HoldArgs),
    /// Extend an object's retention. Object Lock retention can only be extended.
    Extend(ExtendArgs),
}

/// Where evidence lives and how requests are retried.
#[derive(Debug, Args)]
pub struct VaultArgs {
    /// Evidence bucket (S3 with Object Lock) [env: STELE_EVIDENCE_BUCKET or AUDIT_EVIDENCE_BUCKET].
    #[arg(long)]
    pub bucket: Option<String>,
    /// SSE-KMS key id or ARN for new objects [env: STELE_EVIDENCE_KMS_KEY_ID or AUDIT_EVIDENCE_KMS_KEY_ID].
    #[arg(long)]
    pub kms_key_id: Option<String>,
    /// Attempts per request on transient failures, with exponential backoff and jitter.
    #[arg(long, env = "STELE_EVIDENCE_RETRIES", default_value_t = 3)]
    pub retries: u32,
    /// Ledger chain for evidence events.
    #[arg(long, env = "STELE_EVIDENCE_CHAIN", default_value = DEFAULT_CHAIN)]
    pub chain: String,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// Files to store.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Client (tenant) id: the key's second segment, e.g. clinic-001.
    #[arg(long)]
    pub client: String,
    /// Bundle id (default: the file name without its extension); one file only.
    #[arg(long)]
    pub bundle_id: Option<String>,
    /// Days to lock each file for.
    #[arg(long, env = "STELE_EVIDENCE_RETENTION_DAYS", default_value_t = stele_evidence::RetentionPolicy::DEFAULT_DAYS)]
    pub retain_days: u32,
    /// The shortest retention accepted; lowering it below 90 is a deliberate operator decision.
    #[arg(long, env = "STELE_EVIDENCE_MIN_RETENTION_DAYS", default_value_t = stele_evidence::RetentionPolicy::DEFAULT_FLOOR_DAYS)]
    pub min_retain_days: u32,
    /// Lock mode: COMPLIANCE (nobody can shorten or delete) or GOVERNANCE.
    #[arg(long, env = "STELE_EVIDENCE_MODE", default_value = "COMPLIANCE", value_parser = parse_mode)]
    pub mode: LockMode,
    /// Multipart part size in MiB (files above it go multipart).
    #[arg(long, env = "STELE_EVIDENCE_PART_SIZE_MIB", default_value_t = 32)]
    pub part_size_mib: u64,
    /// Parts uploaded at once; memory is about (concurrency + 2) × part size.
    #[arg(long, env = "STELE_EVIDENCE_CONCURRENCY", default_value_t = 3)]
    pub concurrency: usize,
    #[command(flatten)]
    pub vault: VaultArgs,
}

/// How to name stored evidence: its key, or (with the ledger) its bundle id.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// An evidence key (evidence/<client>/<YYYY>/<MM>/<name>) or a bundle id recorded in the ledger.
    pub target: String,
    /// Client id, to tell apart bundle ids used by several clients.
    #[arg(long)]
    pub client: Option<String>,
    /// A specific object version (default: the one recorded in the ledger, else the current one).
    #[arg(long)]
    pub version_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Where to write it (`-` for stdout; default: the object's file name in the current directory).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
    /// Verifier key to check the signature with (default: this ledger's, from `stele keys export-verifier`).
    #[arg(long, env = "STELE_VERIFIER_KEY")]
    pub verifier_key: Option<String>,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The local copy.
    pub file: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Verifier key to check the signature with (default: this ledger's).
    #[arg(long, env = "STELE_VERIFIER_KEY")]
    pub verifier_key: Option<String>,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Client id.
    #[arg(long)]
    pub client: String,
    /// First month or day (YYYY-MM or YYYY-MM-DD, UTC).
    #[arg(long)]
    pub from: Option<String>,
    /// Last month or day (YYYY-MM or YYYY-MM-DD, UTC), inclusive.
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Evidence key.
    pub key: String,
    /// A specific version (default: the current one).
    #[arg(long)]
    pub version_id: Option<String>,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HoldState {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct HoldArgs {
    /// `on` or `off`.
    pub state: HoldState,
    /// Evidence key.
    pub key: String,
    /// A specific version (default: the one recorded in the ledger, else the current one).
    #[arg(long)]
    pub version_id: Option<String>,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Debug, Args)]
pub struct ExtendArgs {
    /// Evidence key.
    pub key: String,
    /// New retain-until: YYYY-MM-DD (00:00:00 UTC that day) or RFC 3339. Must be later than the current one.
    #[arg(long)]
    pub until: String,
    /// A specific version (default: the one recorded in the ledger, else the current one).
    #[arg(long)]
    pub version_id: Option<String>,
    #[command(flatten)]
    pub vault: VaultArgs,
}

pub fn run(ctx: &Context, cmd: &EvidenceCommand) -> Result<(), Failure> {
    match cmd {
        EvidenceCommand::Put(args) => put::run(ctx, args),
        EvidenceCommand::Get(args) => fetch::get(ctx, args),
        EvidenceCommand::Check(args) => fetch::check(ctx, args),
        EvidenceCommand::List(args) => manage::list(ctx, args),
        EvidenceCommand::Status(args) => manage::status(ctx, args),
        EvidenceCommand::Hold(args) => manage::hold(ctx, args),
        EvidenceCommand::Extend(args) => manage::extend(ctx, args),
    }
}

fn parse_mode(s: &str) -> Result<LockMode, String> {
    LockMode::parse(s)
        .ok_or_else(|| format!("{s:?} is not a lock mode: use COMPLIANCE or GOVERNANCE"))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The S3 settings for the evidence bucket.
fn s3_config(ctx: &Context, args: &VaultArgs) -> Result<S3Config, Failure> {
    let bucket = args
        .bucket
        .clone()
        .or_else(|| env("STELE_EVIDENCE_BUCKET"))
        .or_else(|| env("AUDIT_EVIDENCE_BUCKET"))
        .ok_or_else(|| {
            Failure::Input(anyhow!(
                "no evidence bucket: pass --bucket or set STELE_EVIDENCE_BUCKET (or AUDIT_EVIDENCE_BUCKET)"
            ))
        })?;
    if args.retries == 0 {
        return Err(Failure::Input(anyhow!(
            "--retries must be at least 1 (it counts every attempt, the first included)"
        )));
    }
    Ok(S3Config {
        kms_key_id: args
            .kms_key_id
            .clone()
            .or_else(|| env("STELE_EVIDENCE_KMS_KEY_ID"))
            .or_else(|| env("AUDIT_EVIDENCE_KMS_KEY_ID")),
        retry: RetryPolicy {
            attempts: args.retries,
            ..RetryPolicy::default()
        },
        ..bucket_config(ctx, bucket)
    })
}

/// Reaching `bucket`: the endpoint, region and path style of `[anchor]` in
/// stele.toml (the AWS SDK's variables override them), default retries.
pub fn bucket_config(ctx: &Context, bucket: String) -> S3Config {
    let shared = ctx.anchor_file.clone().unwrap_or_default();
    S3Config {
        bucket,
        endpoint: shared.endpoint,
        region: shared.region,
        path_style: shared.path_style,
        static_credentials: None,
        kms_key_id: None,
        retry: RetryPolicy::default(),
    }
}

/// Connects to the evidence bucket (no request yet).
fn open_vault(
    rt: &Runtime,
    ctx: &Context,
    args: &VaultArgs,
    tuning: UploadTuning,
) -> Result<Vault, Failure> {
    let cfg = s3_config(ctx, args)?;
    let worm = rt
        .block_on(S3Worm::connect(cfg))
        .map_err(EvidenceError::from)?;
    Ok(Vault::new(worm, tuning))
}

fn evidence_chain(args: &VaultArgs) -> Result<ChainId, Failure> {
    chain_id(&args.chain)
}

/// The latest `evidence.uploaded` record for `key` (and `version`, when given).
fn find_record<'a>(
    records: &'a [Recorded<EvidenceRecord>],
    key: &str,
    version: Option<&str>,
) -> Option<&'a Recorded<EvidenceRecord>> {
    records.iter().rev().find(|r| {
        r.record.key == key && version.is_none_or(|v| r.record.version_id.as_deref() == Some(v))
    })
}

/// A resolved target: its key, the version to use and its ledger record.
struct Resolved {
    key: String,
    version_id: Option<String>,
    record: Option<Recorded<EvidenceRecord>>,
}

/// Resolves a key or a bundle id (through the ledger) to an object version.
fn resolve(
    target: &TargetArgs,
    records: Option<&[Recorded<EvidenceRecord>]>,
) -> Result<Resolved, Failure> {
    let key = if target.target.contains('/') {
        EvidenceKey::parse(&target.target)?.key()
    } else {
        let bundle = stele_evidence::BundleId::new(&target.target)?;
        let records = records.ok_or_else(|| {
            Failure::Input(anyhow!(
                "{bundle} is a bundle id, which only the ledger can resolve, and there is no ledger here (pass --data-dir, or give the object key)"
            ))
        })?;
        let mut keys: Vec<&str> = records
            .iter()
            .filter(|r| {
                r.record.bundle_id == bundle.as_str()
                    && target
                        .client
                        .as_deref()
                        .is_none_or(|c| r.record.client_id == c)
            })
            .map(|r| r.record.key.as_str())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        match keys.as_slice() {
            [one] => (*one).to_owned(),
            [] => {
                return Err(Failure::Input(anyhow!(
                    "no evidence with bundle id {bundle} is recorded in the ledger{}",
                    target
                        .client
                        .as_deref()
                        .map(|c| format!(" for client {c}"))
                        .unwrap_or_default()
                )));
            }
            many => {
                return Err(Failure::Input(anyhow!(
                    "bundle id {bundle} names several objects ({}); pass --client or the key",
                    many.join(", ")
                )));
            }
        }
    };
    let record = records
        .and_then(|r| find_record(r, &key, target.version_id.as_deref()))
        .cloned();
    let version_id = target
        .version_id
        .clone()
        .or_else(|| record.as_ref().and_then(|r| r.record.version_id.clone()));
    Ok(Resolved {
        key,
        version_id,
        record,
    })
}

/// Every upload recorded in the evidence chain, if this data directory has
/// a ledger that opens (readers work without one), read without writing.
fn recorded_uploads(
    rt: &Runtime,
    ctx: &Context,
    chain: &ChainId,
) -> Result<Option<Vec<Recorded<EvidenceRecord>>>, Failure> {
    if !ctx.config_path().exists() {
        return Ok(None);
    }
    rt.block_on(async {
        let Ok(store) = open_shared_read_only(ctx).await else {
            return Ok(None);
        };
        Ok(Some(record::uploads(&store, chain).await?))
    })
}

/// Parses `YYYY-MM-DD` (midnight UTC) or RFC 3339.
fn parse_date(s: &str) -> Result<OffsetDateTime, Failure> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.to_offset(time::UtcOffset::UTC));
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &format)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| {
            Failure::Input(anyhow!(
                "{s:?} is not a date: use YYYY-MM-DD (midnight UTC) or RFC 3339 like 2027-06-01T12:00:00Z"
            ))
        })
}

/// A byte-counting progress bar that restarts for each phase (upload, verify, download).
struct BarProgress {
    bar: indicatif::ProgressBar,
    name: String,
    phase: Mutex<Option<Phase>>,
}

impl BarProgress {
    fn new(json: bool, total: u64, name: &str) -> Self {
        let bar = crate::output::progress(json, total, name);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:30} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Self {
            bar,
            name: name.to_owned(),
            phase: Mutex::new(None),
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for BarProgress {
    fn advance(&self, phase: Phase, bytes: u64) {
        let mut current = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if *current != Some(phase) {
            *current = Some(phase);
            self.bar.reset();
            let verb = match phase {
                Phase::Upload => "uploading",
                Phase::Verify => "verifying",
                Phase::Download => "downloading",
            };
            self.bar.set_message(format!("{verb} {}", self.name));
        }
        self.bar.inc(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_as_utc() {
        assert_eq!(
            parse_date("2027-06-01").unwrap(),
            time::macros::datetime!(2027-06-01 00:00 UTC)
        );
        assert_eq!(
            parse_date("2027-06-01T12:00:00+02:00").unwrap(),
            time::macros::datetime!(2027-06-01 10:00 UTC)
        );
        assert!(parse_date("June 1st").is_err());
    }
}
