//! Bearer tokens: what each may do (scopes) on which chains (names or
//! patterns). Only a SHA-256 of each secret is stored, in `tokens.json`
//! (0600) in the data directory; a token is shown once, when created.
//!
//! A token reads `stl_<id>_<secret>`: the id finds the record, the secret's
//! hash is compared in constant time.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use stele_ledger::ChainId;
use thiserror::Error;

/// The file tokens live in, inside the data directory.
pub const TOKENS_FILE: &str = "tokens.json";

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Append events.
    Append,
    /// Read events, heads, proofs, checkpoints, anchors.
    Read,
    /// Everything, on every chain, and server-wide information.
    Admin,
    /// `/metrics` only: what a Prometheus scraper holds, which can neither
    /// append nor read events (the metrics name chains, nothing more).
    Metrics,
}

impl Scope {
    /// The name used in the API and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Read => "read",
            Self::Admin => "admin",
            Self::Metrics => "metrics",
        }
    }

    /// Parses `append`, `read`, `admin` or `metrics`.
    ///
    /// # Errors
    ///
    /// [`AuthError::Invalid`] naming the scopes there are.
    pub fn parse(s: &str) -> Result<Self, AuthError> {
        match s {
            "append" => Ok(Self::Append),
            "read" => Ok(Self::Read),
            "admin" => Ok(Self::Admin),
            "metrics" => Ok(Self::Metrics),
            other => Err(AuthError::Invalid(format!(
                "unknown scope {other:?}: use append, read, admin or metrics"
            ))),
        }
    }
}

/// One token as stored (the secret itself is never stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id (`tok_` and 12 hex digits), shown in lists and logs.
    pub id: String,
    /// What the operator called it.
    pub name: String,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Chains it may touch: exact names, `prefix*`, or `*`.
    pub chains: Vec<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl TokenRecord {
    fn allows(&self, scope: Scope, chain: Option<&ChainId>) -> bool {
        if self.scopes.contains(&Scope::Admin) {
            return true;
        }
        if !self.scopes.contains(&scope) {
            return false;
        }
        // Server-wide, on no chain.
        if scope == Scope::Metrics {
            return true;
        }
        match chain {
            Some(chain) => self
                .chains
                .iter()
                .any(|p| pattern_matches(p, chain.as_str())),
            // Server-wide reads (the chain list) need a token for every chain.
            None => self.chains.iter().any(|p| p == "*"),
        }
    }
}

/// `*` matches every chain, `prefix*` the chains starting with `prefix`,
/// anything else exactly one chain.
fn pattern_matches(pattern: &str, chain: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => chain.starts_with(prefix),
        None => pattern == chain,
    }
}

/// A token problem.
#[derive(Debug, Error)]
pub enum AuthError {
    /// The token file cannot be read or written.
    #[error("token file {path}: {reason}")]
    File {
        /// Which file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A bad argument (scope, pattern, id).
    #[error("{0}")]
    Invalid(String),
    /// No token with that id.
    #[error("no token with id {0:?}")]
    UnknownId(String),
}

/// Why a request was not allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No token, a malformed one, an unknown or revoked one, a wrong secret.
    Unauthenticated,
    /// A valid token without the scope or the chain.
    Forbidden,
}

/// The token file of a data directory.
#[derive(Clone, Debug)]
pub struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    /// The token file in `data_dir`.
    pub fn in_dir(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(TOKENS_FILE),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every token, revoked ones included; none if there is no file yet.
    ///
    /// # Errors
    ///
    /// [`AuthError::File`] if it cannot be read or parsed.
    pub fn list(&self) -> Result<Vec<TokenRecord>, AuthError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                self.error(format!(
                    "not a stele token file (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.error(e.to_string())),
        }
    }

    /// Creates a token and returns its record and the token text — the only
    /// time the secret exists outside the client.
    ///
    /// # Errors
    ///
    /// [`AuthError::Invalid`] for no scope, a bad chain pattern or name;
    /// [`AuthError::File`].
    pub fn create(
        &self,
        name: &str,
        scopes: &[Scope],
        chains: &[String],
        now: &str,
    ) -> Result<(TokenRecord, String), AuthError> {
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(AuthError::Invalid(
                "a token name is 1 to 128 printable characters".into(),
            ));
        }
        if scopes.is_empty() {
            return Err(AuthError::Invalid(
                "a token needs at least one scope (append, read, admin)".into(),
            ));
        }
        let chainless = |s: &Scope| matches!(s, Scope::Admin | Scope::Metrics);
        if chains.is_empty() && !scopes.iter().all(chainless) {
            return Err(AuthError::Invalid(
                "a token needs at least one chain (a name, `prefix*`, or `*`)".into(),
            ));
        }
        for pattern in chains {
            let name = pattern.strip_suffix('*').unwrap_or(pattern);
            if pattern != "*" && ChainId::new(name).is_err() {
                return Err(AuthError::Invalid(format!(
                    "chain pattern {pattern:?} is not a chain name, `prefix*` or `*`"
                )));
            }
        }
        let mut id_bytes = [0u8; 6];
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut id_bytes);
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let id = format!("tok_{}", hex::encode(id_bytes));
        let secret_hex = hex::encode(secret);
        let record = TokenRecord {
            id: id.clone(),
            name: name.to_owned(),
            secret_sha256: hex::encode(Sha256::digest(secret_hex.as_bytes())),
            scopes: scopes.to_vec(),
            chains: chains.to_vec(),
            created_at: now.to_owned(),
            revoked_at: None,
        };
        self.modify(|records| {
            records.push(record.clone());
            Ok(())
        })?;
        Ok((record, format!("stl_{}_{secret_hex}", &id[4..])))
    }

    /// Revokes a token: from then on it authenticates nothing.
    ///
    /// # Errors
    ///
    /// [`AuthError::UnknownId`]; [`AuthError::File`].
    pub fn revoke(&self, id: &str, now: &str) -> Result<TokenRecord, AuthError> {
        self.modify(|records| {
            let record = records
                .iter_mut()
                .find(|r| r.id == id)
                .ok_or_else(|| AuthError::UnknownId(id.to_owned()))?;
            if record.revoked_at.is_none() {
                record.revoked_at = Some(now.to_owned());
            }
            Ok(record.clone())
        })
    }

    /// Reads the records, changes them and writes them back under an
    /// exclusive lock on `tokens.json.lock`: two `stele token` commands at
    /// once each see the other's change, so a revocation is never written
    /// over by a creation that read the file before it.
    fn modify<T>(
        &self,
        change: impl FnOnce(&mut Vec<TokenRecord>) -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        options.mode(0o600);
        let lock = options
            .open(self.path.with_extension("json.lock"))
            .map_err(|e| self.error(format!("cannot open its lock file: {e}")))?;
        lock.lock()
            .map_err(|e| self.error(format!("cannot lock it: {e}")))?;
        let mut records = self.list()?;
        let changed = change(&mut records)?;
        self.write(&records)?;
        Ok(changed)
    }

    /// Writes the file atomically, readable by its owner only.
    fn write(&self, records: &[TokenRecord]) -> Result<(), AuthError> {
        let text = serde_json::to_vec_pretty(records).map_err(|e| self.error(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        let written = (|| -> std::io::Result<()> {
            use std::io::Write as _;
            #[cfg(unix)]
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            options.mode(0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            // The rename itself is durable only once the directory is.
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        written.map_err(|e| self.error(e.to_string()))
    }

    fn error(&self, reason: String) -> AuthError {
        AuthError::File {
            path: self.path.clone(),
            reason,
        }
    }
}

/// The tokens a running server checks requests against, re-read when the
/// file changes (so `stele token revoke` takes effect within a second).
#[derive(Debug)]
pub struct Tokens {
    file: TokenFile,
    state: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    records: Vec<TokenRecord>,
    modified: Option<SystemTime>,
    checked: Instant,
}

const RECHECK: Duration = Duration::from_secs(1);

impl Tokens {
    /// Loads the token file.
    ///
    /// # Errors
    ///
    /// [`AuthError::File`] if it exists but cannot be read.
    pub fn load(file: TokenFile) -> Result<Self, AuthError> {
        let modified = modified(file.path());
        let records = file.list()?;
        Ok(Self {
            file,
            state: RwLock::new(Loaded {
                records,
                modified,
                checked: Instant::now(),
            }),
        })
    }

    /// How many tokens can authenticate (not revoked).
    pub fn active(&self) -> usize {
        self.refresh();
        self.state
            .read()
            .map(|s| s.records.iter().filter(|r| r.revoked_at.is_none()).count())
            .unwrap_or(0)
    }

    /// Checks an `Authorization` header value for `scope` on `chain`
    /// (`None`: server-wide). Returns the token's id.
    ///
    /// # Errors
    ///
    /// [`Denied::Unauthenticated`] or [`Denied::Forbidden`].
    pub fn authorize(
        &self,
        authorization: Option<&str>,
        scope: Scope,
        chain: Option<&ChainId>,
    ) -> Result<String, Denied> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or(Denied::Unauthenticated)?;
        let (id, secret) = token
            .strip_prefix("stl_")
            .and_then(|rest| rest.split_once('_'))
            .ok_or(Denied::Unauthenticated)?;
        self.refresh();
        let state = self.state.read().map_err(|_| Denied::Unauthenticated)?;
        let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let record = state
            .records
            .iter()
            .find(|r| r.id.strip_prefix("tok_") == Some(id))
            .ok_or(Denied::Unauthenticated)?;
        let stored = hex::decode(&record.secret_sha256).map_err(|_| Denied::Unauthenticated)?;
        if !constant_time_eq(&presented, &stored) || record.revoked_at.is_some() {
            return Err(Denied::Unauthenticated);
        }
        if !record.allows(scope, chain) {
            return Err(Denied::Forbidden);
        }
        Ok(record.id.clone())
    }

    fn refresh(&self) {
        let due = self
            .state
            .read()
            .map(|s| s.checked.elapsed() >= RECHECK)
            .unwrap_or(false);
        if !due {
            return;
        }
        let Ok(mut state) = self.state.write() else {
            return;
        };
        state.checked = Instant::now();
        // Read again whatever the modification time says: two writes within
        // one tick of a coarse clock leave it unchanged, and a revocation
        // must never be missed. The file is small.
        let now_modified = modified(self.file.path());
        match self.file.list() {
            Ok(records) => {
                state.records = records;
                state.modified = now_modified;
            }
            // A file being replaced or damaged: keep what was loaded, say so.
            Err(e) => tracing::warn!(error = %e, "token file not reloaded"),
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(s: &str) -> ChainId {
        ChainId::new(s).unwrap()
    }

    #[test]
    fn a_token_authenticates_only_with_its_secret_and_only_for_its_scopes_and_chains() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::in_dir(dir.path());
        let (record, token) = file
            .create(
                "ingest",
                &[Scope::Append],
                &["prod-*".into()],
                "2026-12-06T00:00:00Z",
            )
            .unwrap();
        assert!(
            !std::fs::read_to_string(file.path())
                .unwrap()
                .contains(&token[20..])
        );
        let tokens = Tokens::load(file.clone()).unwrap();
        let bearer = format!("Bearer {token}");
        assert_eq!(
            tokens.authorize(Some(&bearer), Scope::Append, Some(&chain("prod-eu"))),
            Ok(record.id.clone())
        );
        assert_eq!(
            tokens.authorize(Some(&bearer), Scope::Read, Some(&chain("prod-eu"))),
            Err(Denied::Forbidden)
        );
        assert_eq!(
            tokens.authorize(Some(&bearer), Scope::Append, Some(&chain("staging"))),
            Err(Denied::Forbidden)
        );
        let mut wrong = token.clone();
        wrong.pop();
        wrong.push(if token.ends_with('0') { '1' } else { '0' });
        for bad in [
            None,
            Some(token.clone()),
            Some(format!("Bearer {wrong}")),
            Some("Bearer stl_".into()),
            Some("Basic abc".into()),
        ] {
            assert_eq!(
                tokens.authorize(bad.as_deref(), Scope::Append, Some(&chain("prod-eu"))),
                Err(Denied::Unauthenticated),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn revoking_takes_effect_on_a_loaded_token_set() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::in_dir(dir.path());
        let (record, token) = file
            .create("reader", &[Scope::Read], &["*".into()], "t0")
            .unwrap();
        let tokens = Tokens::load(file.clone()).unwrap();
        let bearer = format!("Bearer {token}");
        assert!(tokens.authorize(Some(&bearer), Scope::Read, None).is_ok());
        // Make sure the file's mtime moves past the loaded one.
        std::thread::sleep(Duration::from_millis(20));
        file.revoke(&record.id, "t1").unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(
            tokens.authorize(Some(&bearer), Scope::Read, None),
            Err(Denied::Unauthenticated)
        );
        assert_eq!(tokens.active(), 0);
    }

    #[test]
    fn bad_token_arguments_are_refused_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::in_dir(dir.path());
        for (scopes, chains) in [
            (vec![], vec!["*".to_owned()]),
            (vec![Scope::Append], vec![]),
            (vec![Scope::Append], vec!["no spaces allowed".to_owned()]),
        ] {
            assert!(matches!(
                file.create("x", &scopes, &chains, "t"),
                Err(AuthError::Invalid(_))
            ));
        }
        assert!(!file.path().exists());
        assert!(matches!(
            file.revoke("tok_nope", "t"),
            Err(AuthError::UnknownId(_))
        ));
    }
}
