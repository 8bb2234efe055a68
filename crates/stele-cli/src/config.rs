//! The data directory and its `stele.toml`.
//!
//! Resolution order for every setting: command-line flag, then environment
//! (`STELE_*`, handled by clap), then `stele.toml`, then the default.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use stele_keys::KeyDir;
use stele_ledger::Limits;
use stele_store::DbLocation;

use crate::cli::GlobalArgs;
use crate::error::Failure;

/// File name of the config inside the data directory.
pub const CONFIG_FILE: &str = "stele.toml";

/// `stele.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Largest payload accepted, in canonical bytes.
    pub max_payload_bytes: usize,
    /// Database location, as `stele init` recorded it: a SQLite path, or a
    /// PostgreSQL URL without its password (never written here). Absent: the
    /// data directory's `ledger.db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    /// A file holding the PostgreSQL password for `db` (mode 0600, relative
    /// to the data directory or absolute); `PGPASSWORD` wins over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_password_file: Option<PathBuf>,
    /// Anchoring settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<AnchorFile>,
    /// Gateway settings (`stele serve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerFile>,
}

/// `[server]` in `stele.toml`: what `stele serve` listens on and accepts.
/// The command-line flags (and their `STELE_*` variables) win.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// `STELE_LISTEN`: address and port (default `127.0.0.1:7070`).
    pub listen: Option<String>,
    /// `STELE_ALLOW_PLAIN_HTTP`: serve plain HTTP off loopback (behind a
    /// TLS-terminating proxy).
    pub allow_plain_http: Option<bool>,
    /// Largest request body, in bytes (default 8 MiB).
    pub max_request_bytes: Option<usize>,
    /// Most events in one append request (default 10000).
    pub max_events_per_request: Option<usize>,
    /// Longest a request may take, in seconds (default 30).
    pub request_timeout_secs: Option<u64>,
    /// Append requests in progress at once; more get 429 (default 256).
    pub max_in_flight_appends: Option<usize>,
    /// Bytes of append bodies in progress at once (a body without
    /// Content-Length counts as `max_request_bytes`); more get 429 (default
    /// 256 MiB).
    pub max_in_flight_body_bytes: Option<usize>,
    /// Appends waiting for a commit; more get 503 (default 4096).
    pub commit_queue: Option<usize>,
    /// Pending anchors above which `/readyz` answers 503 (default 100).
    pub max_anchor_backlog: Option<usize>,
    /// Seconds between scheduled verifications (default 3600).
    pub verify_interval_secs: Option<u64>,
    /// Where each verification result is posted, signed with HMAC-SHA256
    /// (`X-Stele-Signature: sha256=…`) under `STELE_WEBHOOK_SECRET` or the
    /// key in `webhook_secret_file`.
    pub webhook_url: Option<String>,
    /// A file (0600) holding the webhook's HMAC key.
    pub webhook_secret_file: Option<PathBuf>,
    /// `STELE_TLS_CERT`: serve HTTPS with this certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// `STELE_TLS_KEY`: the certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
}

/// `[anchor]` in `stele.toml`. Every setting also has an environment variable,
/// which wins (the `AUDIT_ANCHOR_*` names are the ones deployments already use).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorFile {
    /// `AUDIT_ANCHOR_BUCKET`: the S3 bucket with Object Lock.
    pub bucket: Option<String>,
    /// `AUDIT_ANCHOR_PREFIX`: key prefix inside the bucket.
    pub prefix: Option<String>,
    /// `AUDIT_ANCHOR_CHAIN_ID`: anchor only this chain.
    pub chain_id: Option<String>,
    /// `AUDIT_ANCHOR_RETENTION_DAYS` (default 400).
    pub retention_days: Option<u32>,
    /// `AUDIT_ANCHOR_MIN_RETENTION_DAYS` (default 365): the floor below which retention is refused.
    pub min_retention_days: Option<u32>,
    /// `AUDIT_ANCHOR_MODE`: COMPLIANCE (default) or GOVERNANCE.
    pub mode: Option<String>,
    /// `AUDIT_ANCHOR_INTERVAL_MINUTES` (default 60).
    pub interval_minutes: Option<u64>,
    /// `AUDIT_ANCHOR_VOLUME` (default 10000): events between volume anchors.
    pub volume: Option<u64>,
    /// `AUDIT_ANCHOR_KMS_KEY_ID`: SSE-KMS key for anchor objects.
    pub kms_key_id: Option<String>,
    /// S3 endpoint for S3-compatible stores (`AWS_ENDPOINT_URL` also works).
    pub endpoint: Option<String>,
    /// Region (`AWS_REGION` also works).
    pub region: Option<String>,
    /// Path-style addressing (default: on when an endpoint is set).
    pub path_style: Option<bool>,
    /// A local directory instead of S3 — NOT WORM storage; demos and trials only.
    pub local_dir: Option<PathBuf>,
}

/// Where anchors go.
#[derive(Debug, Clone)]
pub enum AnchorTarget {
    /// An S3 bucket with Object Lock.
    S3(stele_worm::S3Config),
    /// A local directory (not WORM).
    Local(PathBuf),
}

/// Anchoring, resolved from flags, environment and `stele.toml`.
#[derive(Debug, Clone)]
pub struct AnchorSetup {
    /// Where anchors go, if configured.
    pub target: Option<AnchorTarget>,
    /// How anchors are written.
    pub policy: stele_anchorer::AnchorPolicy,
    /// Only this chain, if set.
    pub chain: Option<stele_ledger::ChainId>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_num<T: std::str::FromStr>(name: &str) -> Result<Option<T>, Failure> {
    env(name)
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|_| Failure::Input(anyhow::anyhow!("{name}={v:?} is not a valid number")))
        })
        .transpose()
}

/// Where the database location came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbSource {
    /// `--db` or `STELE_DB`: what the user asked for, now.
    Explicit,
    /// `db` in `stele.toml`: the ledger `stele init` created.
    Config,
    /// Neither: the data directory's `ledger.db`.
    Default,
}

/// Everything a command needs to find its data.
pub struct Context {
    pub data_dir: PathBuf,
    pub db: DbLocation,
    pub db_source: DbSource,
    pub limits: Limits,
    pub json: bool,
    pub anchor_file: Option<AnchorFile>,
    pub server_file: Option<ServerFile>,
}

impl Context {
    /// Reads the config (if the directory is initialized) and resolves settings.
    pub fn load(global: &GlobalArgs) -> Result<Self, Failure> {
        let path = global.data_dir.join(CONFIG_FILE);
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => Some(toml::from_str::<ConfigFile>(&text).map_err(|e| {
                Failure::Input(anyhow::anyhow!(
                    "{} is not a valid stele config: {}",
                    path.display(),
                    describe_toml_error(&text, &e)
                ))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Failure::Operational(anyhow::anyhow!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let recorded = file.as_ref().and_then(|f| f.db.clone());
        let (db, db_source) = match (global.db.clone(), recorded) {
            (Some(s), _) => (DbLocation::parse(&s)?, DbSource::Explicit),
            (None, Some(s)) => {
                let location = match DbLocation::parse(&s)? {
                    DbLocation::Postgres(url) => {
                        let password_file = file.as_ref().and_then(|f| f.db_password_file.clone());
                        DbLocation::Postgres(with_password(
                            &url,
                            db_password(&global.data_dir, password_file.as_deref())?,
                        ))
                    }
                    // A relative path is the data directory's, wherever stele runs.
                    DbLocation::Sqlite(path) => DbLocation::Sqlite(global.data_dir.join(path)),
                };
                (location, DbSource::Config)
            }
            (None, None) => (
                DbLocation::Sqlite(global.data_dir.join("ledger.db")),
                DbSource::Default,
            ),
        };
        let limits = Limits {
            max_payload_bytes: file
                .as_ref()
                .map_or(Limits::DEFAULT_MAX_PAYLOAD_BYTES, |f| f.max_payload_bytes),
        };
        let anchor_file = file.as_ref().and_then(|f| f.anchor.clone());
        let server_file = file.as_ref().and_then(|f| f.server.clone());
        Ok(Self {
            data_dir: global.data_dir.clone(),
            db,
            db_source,
            limits,
            json: global.json,
            anchor_file,
            server_file,
        })
    }

    /// Resolves anchoring settings; `bucket`/`local_dir` come from command-line flags.
    pub fn anchor_setup(
        &self,
        bucket: Option<&str>,
        local_dir: Option<&Path>,
    ) -> Result<AnchorSetup, Failure> {
        let file = self.anchor_file.clone().unwrap_or_default();
        let mut policy = stele_anchorer::AnchorPolicy::default();
        if let Some(days) = env_num::<u32>("AUDIT_ANCHOR_RETENTION_DAYS")?.or(file.retention_days) {
            // An anchor is locked until its time plus these days: refuse, before
            // anything is built, a lock no store can hold (RGW wraps after 2106).
            let max = stele_worm::max_retention_days(time::OffsetDateTime::now_utc());
            if days > max {
                return Err(Failure::Input(anyhow::anyhow!(
                    "anchor retention of {days} days (AUDIT_ANCHOR_RETENTION_DAYS / retention_days in [anchor]) would end after {}, the latest retain-until stele asks any store for (AWS allows at most 100 years; Ceph RGW keeps retain-until in 32 bits and silently wraps a later date to one near 1970, leaving the anchor unlocked); use at most {max} days",
                    stele_evidence::vault::rfc3339(stele_worm::latest_retain_until(
                        time::OffsetDateTime::now_utc()
                    ))
                )));
            }
            policy.retention_days = days;
        }
        if let Some(days) =
            env_num::<u32>("AUDIT_ANCHOR_MIN_RETENTION_DAYS")?.or(file.min_retention_days)
        {
            policy.min_retention_days = days;
        }
        if let Some(mode) = env("AUDIT_ANCHOR_MODE").or(file.mode.clone()) {
            policy.mode = stele_worm::LockMode::parse(&mode).ok_or_else(|| {
                Failure::Input(anyhow::anyhow!(
                    "anchor mode {mode:?} must be COMPLIANCE or GOVERNANCE"
                ))
            })?;
        }
        if let Some(minutes) =
            env_num::<u64>("AUDIT_ANCHOR_INTERVAL_MINUTES")?.or(file.interval_minutes)
        {
            policy.cadence.interval = std::time::Duration::from_secs(minutes.saturating_mul(60));
        }
        if let Some(volume) = env_num::<u64>("AUDIT_ANCHOR_VOLUME")?.or(file.volume) {
            policy.cadence.volume = volume;
        }
        policy.prefix = env("AUDIT_ANCHOR_PREFIX").or(file.prefix.clone());
        policy.validate()?;
        let chain = env("AUDIT_ANCHOR_CHAIN_ID")
            .or(file.chain_id.clone())
            .map(|c| stele_ledger::ChainId::new(&c))
            .transpose()?;

        let bucket = bucket
            .map(str::to_owned)
            .or_else(|| env("AUDIT_ANCHOR_BUCKET"))
            .or(file.bucket.clone());
        let local = local_dir.map(Path::to_path_buf).or(file.local_dir.clone());
        let target = match (bucket, local) {
            (Some(_), Some(_)) if local_dir.is_none() => {
                return Err(Failure::Input(anyhow::anyhow!(
                    "both an anchor bucket and a local directory are configured; choose one"
                )));
            }
            (_, Some(dir)) if local_dir.is_some() => Some(AnchorTarget::Local(dir)),
            (Some(bucket), _) => Some(AnchorTarget::S3(stele_worm::S3Config {
                bucket,
                endpoint: file.endpoint.clone(),
                region: file.region.clone(),
                path_style: file.path_style,
                static_credentials: None,
                kms_key_id: env("AUDIT_ANCHOR_KMS_KEY_ID").or(file.kms_key_id.clone()),
                retry: stele_worm::RetryPolicy::default(),
            })),
            (None, Some(dir)) => Some(AnchorTarget::Local(dir)),
            (None, None) => None,
        };
        Ok(AnchorSetup {
            target,
            policy,
            chain,
        })
    }

    pub fn keys(&self) -> KeyDir {
        KeyDir::new(self.data_dir.join("keys"))
    }

    pub fn config_path(&self) -> PathBuf {
        self.data_dir.join(CONFIG_FILE)
    }
}

/// Where a TOML error is and what kind it is, without the text of the line
/// (`toml`'s own message quotes it: a `db = "postgres://user:password@…"`
/// line would be printed) and with any quoted value in the message elided
/// (serde's "invalid type: string \"…\"" repeats the value).
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = elide_quoted(e.message().lines().next().unwrap_or_default());
    let Some(span) = e.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or_default();
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or_default();
    // Name the key when the line is `key = …` with a bare key (never the value).
    let key = line.split_once('=').map(|(k, _)| k.trim()).filter(|k| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    });
    match key {
        Some(key) => format!("line {line_no} (key `{key}`): {message}"),
        None => format!("line {line_no}: {message}"),
    }
}

/// `message` with every `"…"` quoted run (backslash escapes included)
/// replaced by `"…"`; runs in backticks (token and key names) are kept.
fn elide_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        if c == '`' {
            // A `token` or `key` name, as toml and serde quote them: kept.
            out.push(c);
            for inner in chars.by_ref() {
                out.push(inner);
                if inner == '`' {
                    break;
                }
            }
            continue;
        }
        if c != '"' {
            out.push(c);
            continue;
        }
        out.push_str("\"…\"");
        // Skip to the closing quote, stepping over escaped characters.
        while let Some(inner) = chars.next() {
            match inner {
                '\\' => {
                    chars.next();
                }
                '"' => break,
                _ => {}
            }
        }
    }
    out
}

/// The PostgreSQL password for the recorded `db`, if one is given:
/// `PGPASSWORD`, else the contents of `db_password_file` (which must not be
/// readable by group or others, like the keys).
fn db_password(data_dir: &Path, password_file: Option<&Path>) -> Result<Option<String>, Failure> {
    if let Ok(password) = std::env::var("PGPASSWORD")
        && !password.is_empty()
    {
        return Ok(Some(password));
    }
    let Some(file) = password_file else {
        return Ok(None);
    };
    let path = data_dir.join(file);
    let not_usable = |why: String| {
        Failure::Input(anyhow::anyhow!(
            "db_password_file {} in stele.toml {why}",
            path.display()
        ))
    };
    let meta = std::fs::metadata(&path).map_err(|e| not_usable(format!("cannot be read: {e}")))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(not_usable(format!(
                "has mode {mode:04o}: a password file must be readable by its owner only (chmod 600 it)"
            )));
        }
    }
    let text =
        std::fs::read_to_string(&path).map_err(|e| not_usable(format!("cannot be read: {e}")))?;
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(not_usable("is empty".into()));
    }
    Ok(Some(password.to_owned()))
}

/// `url` with `password` added as its `password` parameter (percent-encoded),
/// unless the URL already carries one.
pub fn with_password(url: &str, password: Option<String>) -> String {
    let Some(password) = password else {
        return url.to_owned();
    };
    if has_password(url) {
        return url.to_owned();
    }
    let mut encoded = String::with_capacity(password.len());
    for b in password.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push('%');
            encoded.push_str(&hex::encode_upper([b]));
        }
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}password={encoded}")
}

/// Splits a PostgreSQL URL as the driver does: the credentials are
/// everything before the first `@` after the scheme.
fn split_url(url: &str) -> Option<(&str, Option<&str>, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    Some(match rest.split_once('@') {
        Some((credentials, rest)) => (scheme, Some(credentials), rest),
        None => (scheme, None, rest),
    })
}

fn is_password_parameter(pair: &str) -> bool {
    let name = pair.split_once('=').map_or(pair, |(k, _)| k);
    percent_decode(name).eq_ignore_ascii_case("password")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let mut decoded = [0u8; 1];
        let escape = bytes
            .get(i + 1..i + 3)
            .filter(|h| hex::decode_to_slice(h, &mut decoded).is_ok());
        match (bytes[i], escape) {
            (b'%', Some(_)) => {
                out.push(decoded[0]);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a PostgreSQL URL carries a password (in its credentials or as a parameter).
pub fn has_password(url: &str) -> bool {
    let Some((_, credentials, rest)) = split_url(url) else {
        return false;
    };
    credentials.is_some_and(|c| c.contains(':'))
        || rest
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(is_password_parameter))
}

/// A PostgreSQL URL with its password removed (from the credentials and any
/// `password` parameter): what `stele init` records in `stele.toml`.
pub fn without_password(url: &str) -> String {
    let Some((scheme, credentials, rest)) = split_url(url) else {
        return url.to_owned();
    };
    let mut out = format!("{scheme}://");
    if let Some(credentials) = credentials {
        out.push_str(credentials.split(':').next().unwrap_or_default());
        out.push('@');
    }
    match rest.split_once('?') {
        Some((base, query)) => {
            out.push_str(base);
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| !p.is_empty() && !is_password_parameter(p))
                .collect();
            if !kept.is_empty() {
                out.push('?');
                out.push_str(&kept.join("&"));
            }
        }
        None => out.push_str(rest),
    }
    out
}

/// Writes a new config file; refuses to overwrite.
pub fn write_config(path: &Path, config: &ConfigFile) -> anyhow::Result<()> {
    use std::io::Write as _;
    let text = format!(
        "# stele configuration. Settings here are overridden by STELE_* variables and flags.\n{}",
        toml::to_string(config)?
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_url_has_no_password_and_one_can_be_added_back() {
        for (given, recorded) in [
            ("postgres://u:s3cret@h:5432/db", "postgres://u@h:5432/db"),
            ("postgres://u:pa/s3cret?x=1#y@h/db", "postgres://u@h/db"),
            (
                "postgres://u@h/db?sslmode=require&PassWord=s3cret",
                "postgres://u@h/db?sslmode=require",
            ),
            ("postgres://u@h/db?pass%77ord=s3cret", "postgres://u@h/db"),
            ("postgresql://h/db", "postgresql://h/db"),
        ] {
            assert_eq!(without_password(given), recorded);
            assert!(!has_password(recorded));
        }
        assert!(has_password("postgres://u:x@h/db"));
        assert_eq!(
            with_password("postgres://u@h/db", Some("a b&c=/".into())),
            "postgres://u@h/db?password=a%20b%26c%3D%2F"
        );
        assert_eq!(
            with_password("postgres://u@h/db?sslmode=disable", Some("p".into())),
            "postgres://u@h/db?sslmode=disable&password=p"
        );
        assert_eq!(
            with_password("postgres://u:q@h/db", Some("p".into())),
            "postgres://u:q@h/db"
        );
    }
}
