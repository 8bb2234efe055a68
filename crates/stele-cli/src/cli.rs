//! Command-line definitions. Names here are a contract: scripts and later
//! stele components call them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// stele — a tamper-evident audit ledger: hash-chained, Merkle-committed,
/// anchored to WORM storage.
#[derive(Debug, Parser)]
#[command(name = "stele", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Directory holding stele.toml, the keys and (by default) the SQLite ledger.
    #[arg(
        long,
        global = true,
        env = "STELE_DATA_DIR",
        default_value = "stele-data"
    )]
    pub data_dir: PathBuf,
    /// Database: a SQLite path (`sqlite://PATH` or plain) or `postgres://user@host/db`
    /// (TLS as in libpq: `?sslmode=verify-full&sslrootcert=ca.pem`).
    /// Defaults to the config file's `db`, else `<data-dir>/ledger.db`.
    #[arg(long, global = true, env = "STELE_DB", hide_env_values = true)]
    pub db: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the config, the HMAC keyring and the signing key; print the verifier key.
    Init(InitArgs),
    /// Append events to a chain; prints one receipt per event.
    Append(AppendArgs),
    /// Read the log.
    #[command(subcommand)]
    Log(LogCommand),
    /// Merkle proofs.
    #[command(subcommand)]
    Proof(ProofCommand),
    /// Print a signed C2SP checkpoint of a chain's tree.
    Checkpoint(CheckpointArgs),
    /// Manage keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Verify the log, or one event from a proof bundle.
    #[command(subcommand)]
    Verify(VerifyCommand),
    /// Anchor chains into WORM storage: signed checkpoints in an S3 Object Lock bucket.
    #[command(subcommand)]
    Anchor(AnchorCommand),
    /// Create and check the WORM bucket (Object Lock, encryption, policy, lifecycle).
    #[command(subcommand)]
    Bucket(crate::commands::bucket::BucketCommand),
    /// Store evidence bundles under Object Lock, verified and recorded in the ledger.
    #[command(subcommand)]
    Evidence(crate::commands::evidence::EvidenceCommand),
    /// Run the gateway: the HTTP API applications append audit events to.
    Serve(ServeArgs),
    /// Bearer tokens for the gateway: create, list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Run a self-contained demonstration in a temporary directory: append,
    /// prove, tamper, and watch verification name the tampered event.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Name of this ledger: the signing key's name and the checkpoint origin
    /// prefix (`<log-name>/<chain>`), e.g. `audit.example.com`.
    #[arg(long, default_value = "stele.local")]
    pub log_name: String,
    /// Largest payload accepted, in canonical bytes.
    #[arg(long, default_value_t = stele_ledger::Limits::DEFAULT_MAX_PAYLOAD_BYTES)]
    pub max_payload_bytes: usize,
}

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// Chain to append to, e.g. `production`.
    #[arg(long)]
    pub chain: String,
    /// Event type, e.g. `user.login`.
    #[arg(
        long = "type",
        required_unless_present = "jsonl",
        conflicts_with = "jsonl"
    )]
    pub event_type: Option<String>,
    /// Who did it.
    #[arg(long, conflicts_with = "jsonl")]
    pub actor: Option<String>,
    /// Event payload, any JSON.
    #[arg(long, conflicts_with = "jsonl")]
    pub payload: Option<String>,
    /// Retry-safe key: a repeat returns the original receipt and appends nothing.
    #[arg(long, conflicts_with = "jsonl")]
    pub idempotency_key: Option<String>,
    /// Append a batch from a JSONL file (`-` for stdin): one
    /// `{"type":…,"actor":…,"payload":…,"idempotency_key":…}` per line.
    /// The whole file is validated first and appended in one transaction.
    #[arg(long, value_name = "FILE|-")]
    pub jsonl: Option<String>,
    /// Send to a running gateway (`stele serve`) instead of writing the
    /// database: its URL, e.g. `http://127.0.0.1:7070`.
    #[arg(long, env = "STELE_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token for --server (from `stele token create`).
    #[arg(long, env = "STELE_TOKEN", hide_env_values = true, requires = "server")]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// List chains with their sizes and heads.
    Chains,
    /// Show events.
    Show(RangeArgs),
    /// Export events as JSONL: every committed field plus key id and hashes,
    /// the offline format an auditor verifies.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct RangeArgs {
    /// Chain.
    #[arg(long)]
    pub chain: String,
    /// First seq (inclusive).
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Last seq (inclusive).
    #[arg(long)]
    pub to: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub range: RangeArgs,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ProofCommand {
    /// Prove that one event is in the tree.
    Inclusion(InclusionArgs),
    /// Prove that an older tree is a prefix of a newer one.
    Consistency(ConsistencyArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ProofFormat {
    /// JSON with hex hashes, the event and the signed checkpoint.
    Json,
    /// C2SP tlog-proof text (event canonical bytes in `extra`), verifiable offline.
    TlogProof,
}

#[derive(Debug, Args)]
pub struct InclusionArgs {
    /// Chain.
    #[arg(long)]
    pub chain: String,
    /// Event seq.
    #[arg(long)]
    pub seq: u64,
    /// Tree size to prove against (default: current).
    #[arg(long)]
    pub tree_size: Option<u64>,
    /// Output format (default json).
    #[arg(long, value_enum, default_value = "json")]
    pub format: ProofFormat,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ConsistencyArgs {
    /// Chain.
    #[arg(long)]
    pub chain: String,
    /// Older tree size.
    #[arg(long)]
    pub from: u64,
    /// Newer tree size.
    #[arg(long)]
    pub to: u64,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (default 127.0.0.1:7070, or `[server] listen`).
    #[arg(long, env = "STELE_LISTEN")]
    pub listen: Option<String>,
    /// Serve plain HTTP on an address other than loopback (only behind a
    /// TLS-terminating proxy: tokens and events would otherwise cross the
    /// network in clear).
    #[arg(long, env = "STELE_ALLOW_PLAIN_HTTP")]
    pub allow_plain_http: bool,
    /// Serve HTTPS with this certificate chain (PEM; with --tls-key).
    #[arg(long, env = "STELE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM; with --tls-cert).
    #[arg(long, env = "STELE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once and only its hash is kept.
    Create(TokenCreateArgs),
    /// List tokens (ids, names, scopes, chains; never secrets).
    List,
    /// Revoke a token: it stops authenticating within a second.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// What the token is for, e.g. `billing-service`.
    #[arg(long)]
    pub name: String,
    /// Scopes, comma-separated: append, read, admin, metrics (`/metrics`
    /// only, for a scraper; needs no --chain).
    #[arg(long, value_delimiter = ',', required = true)]
    pub scope: Vec<String>,
    /// Chains it may touch, comma-separated: names, `prefix*`, or `*`.
    #[arg(long, value_delimiter = ',')]
    pub chain: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The token's id (`tok_…`, from `stele token list`).
    pub id: String,
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// Chain.
    #[arg(long)]
    pub chain: String,
    /// Tree size (default: current).
    #[arg(long)]
    pub tree_size: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Start chaining new events with a new HMAC key; old keys stay for verification.
    Rotate(RotateArgs),
    /// List HMAC key ids (never secrets).
    List,
    /// Print the public verifier key to hand to auditors.
    ExportVerifier,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Id for the new key (default: the next `kN`).
    #[arg(long)]
    pub key_id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// Recompute canonical bytes, leaves, the Merkle tree and the HMAC chain from
    /// the database or an export file; name every seq that differs. With
    /// --bucket or --mirror, also check every anchor's tree size, root and
    /// last hash against the events.
    Log(VerifyLogArgs),
    /// Check a chain's anchors with read-only access and the public key:
    /// signatures, links, forks, Object Lock, cadence gaps and freshness.
    Anchors(VerifyAnchorsArgs),
    /// Verify one event offline from a tlog-proof bundle and a verifier key.
    Event(VerifyEventArgs),
}

/// The largest interval or grace `stele verify` accepts, in minutes (100
/// years): anything larger cannot be a real cadence and would overflow time.
pub const MAX_VERIFY_MINUTES: u64 = 100 * 366 * 24 * 60;

/// Where the anchors are and what to expect of them.
#[derive(Debug, Args, Clone)]
pub struct AnchorSourceArgs {
    /// The anchor bucket (read-only access is enough).
    #[arg(long, conflicts_with = "mirror")]
    pub bucket: Option<String>,
    /// An offline copy of the bucket (a directory of its keys, as `aws s3 sync` writes it).
    #[arg(long)]
    pub mirror: Option<PathBuf>,
    /// Key prefix inside the bucket (AUDIT_ANCHOR_PREFIX).
    #[arg(long, env = "AUDIT_ANCHOR_PREFIX")]
    pub prefix: Option<String>,
    /// The signed-note verifier key, as text (default: this data dir's).
    /// Always taken as the key itself, never as a file name.
    #[arg(long, conflicts_with = "verifier_key_file")]
    pub verifier_key: Option<String>,
    /// A file holding the verifier key (as `stele keys export-verifier` writes it).
    #[arg(long)]
    pub verifier_key_file: Option<PathBuf>,
    /// Accept that a check could not be performed, by name (repeatable):
    /// `versions` (no s3:ListBucketVersions), `anchors` (an export checked
    /// without anchors), `hmac` (no HMAC keys), `evidence` (no evidence
    /// bucket allowed). The report still lists it as waived.
    #[arg(long, value_parser = ["versions", "anchors", "hmac", "evidence"])]
    pub waive: Vec<String>,
    /// Only anchors from this time on (RFC 3339).
    #[arg(long)]
    pub from: Option<String>,
    /// Only anchors up to this time (RFC 3339).
    #[arg(long)]
    pub to: Option<String>,
    /// Expected anchoring interval (AUDIT_ANCHOR_INTERVAL_MINUTES).
    #[arg(long, env = "AUDIT_ANCHOR_INTERVAL_MINUTES", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=MAX_VERIFY_MINUTES))]
    pub interval_minutes: u64,
    /// Slack before a missing or late anchor is reported (at most 100 years).
    #[arg(long, default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(0..=MAX_VERIFY_MINUTES))]
    pub grace_minutes: u64,
    /// Retention each anchor must carry, in days from its time (AUDIT_ANCHOR_RETENTION_DAYS).
    #[arg(long, env = "AUDIT_ANCHOR_RETENTION_DAYS", default_value_t = 400)]
    pub retention_days: u32,
    /// Expected Object Lock mode.
    #[arg(long, default_value = "COMPLIANCE")]
    pub mode: String,
}

#[derive(Debug, Args)]
pub struct VerifyLogArgs {
    /// Chain (default: every chain; required with --export or anchors).
    #[arg(long)]
    pub chain: Option<String>,
    /// Skip the HMAC chain check (for verifiers without the secret keys).
    #[arg(long)]
    pub no_hmac: bool,
    /// Verify an export file (`stele log export`) instead of the database.
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Also write a self-contained HTML report to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// How to re-check the evidence objects the log records, in their
    /// buckets (read-only): `content` reads each back (or uses the store's
    /// SHA-256 checksum), `metadata` stops at HEAD, `skip` leaves them.
    #[arg(long, value_enum, default_value_t)]
    pub evidence: crate::commands::verify::EvidenceDepth,
    /// An evidence bucket the verification may contact (repeatable; env
    /// STELE_EVIDENCE_BUCKET, comma-separated). A record naming any other
    /// bucket is a finding, and that bucket is not contacted.
    #[arg(
        long = "evidence-bucket",
        env = "STELE_EVIDENCE_BUCKET",
        value_delimiter = ','
    )]
    pub evidence_buckets: Vec<String>,
    #[command(flatten)]
    pub anchors: AnchorSourceArgs,
}

#[derive(Debug, Args)]
pub struct VerifyAnchorsArgs {
    /// Chain.
    #[arg(long)]
    pub chain: String,
    /// Also write a self-contained HTML report to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub anchors: AnchorSourceArgs,
}

#[derive(Debug, Args)]
pub struct VerifyEventArgs {
    /// tlog-proof file from `stele proof inclusion --format tlog-proof`.
    #[arg(long)]
    pub proof: PathBuf,
    /// Verifier key as text, never a file name (default: this data dir's).
    #[arg(long, conflicts_with = "verifier_key_file")]
    pub verifier_key: Option<String>,
    /// A file holding the verifier key.
    #[arg(long)]
    pub verifier_key_file: Option<PathBuf>,
    /// Also tie the proof to an anchor: an anchor file, or its key in --bucket.
    #[arg(long)]
    pub anchor: Option<String>,
    /// Bucket to fetch --anchor KEY from (read-only access is enough).
    #[arg(long, requires = "anchor")]
    pub bucket: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of events to append.
    #[arg(long, default_value_t = 2000)]
    pub events: usize,
    /// Keep the demo ledger in this directory instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AnchorCommand {
    /// Build a manual anchor for each chain now and upload every pending anchor.
    Now(AnchorNowArgs),
    /// Run the anchoring cadence in the foreground (time, volume, key rotation;
    /// a shutdown anchor on SIGINT/SIGTERM), retrying uploads until they land.
    Run(AnchorRunArgs),
    /// List anchors and their status (pending, uploaded, verified).
    List(AnchorListArgs),
    /// Show one anchor: its object and where it was stored.
    Show(AnchorShowArgs),
}

#[derive(Debug, Args, Default, Clone)]
pub struct AnchorTargetArgs {
    /// S3 bucket with Object Lock (AUDIT_ANCHOR_BUCKET).
    #[arg(long, conflicts_with = "local_dir")]
    pub bucket: Option<String>,
    /// Write anchors to a local directory instead — NOT WORM storage; for demos and trials.
    #[arg(long)]
    pub local_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct AnchorNowArgs {
    /// Only this chain (default: AUDIT_ANCHOR_CHAIN_ID, else every chain).
    #[arg(long)]
    pub chain: Option<String>,
    #[command(flatten)]
    pub target: AnchorTargetArgs,
}

#[derive(Debug, Args)]
pub struct AnchorRunArgs {
    /// Only this chain (default: AUDIT_ANCHOR_CHAIN_ID, else every chain).
    #[arg(long)]
    pub chain: Option<String>,
    /// One round (anchors that are due, then uploads) and exit; for cron.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub target: AnchorTargetArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum AnchorStatusArg {
    /// Built and signed, waiting to be uploaded.
    Pending,
    /// Written to a local directory (not WORM).
    Uploaded,
    /// Written to WORM storage and verified.
    Verified,
}

#[derive(Debug, Args)]
pub struct AnchorListArgs {
    /// Only this chain.
    #[arg(long)]
    pub chain: Option<String>,
    /// Only anchors with this status.
    #[arg(long, value_enum)]
    pub status: Option<AnchorStatusArg>,
}

#[derive(Debug, Args)]
pub struct AnchorShowArgs {
    /// Chain.
    #[arg(long)]
    pub chain: String,
    /// Anchor seq.
    #[arg(long)]
    pub seq: u64,
}
