//! Durable storage for the stele ledger.
//!
//! One store a service shares, [`Store`] (async, `Send + Sync`, group
//! commit), over two backends with the same behaviour: embedded SQLite (the
//! default: WAL, `synchronous=FULL`) and PostgreSQL (`postgres://…`, on
//! `tokio-postgres`). Both run the same append logic (`append.rs`) inside one
//! write transaction per batch, under a per-chain lock, so concurrent
//! appenders — threads or processes — never fork a chain or leave a gap,
//! and a batch is all-or-nothing. An append returns only after the commit
//! is durable.
//!
//! Tables (both backends): `audit_events` (one row per event; `chain_id`,
//! `chain_index`, `event_hash` as the auditor's SQL expects, plus the
//! `merkle_nodes` the event completed, so proofs are O(log n) point reads),
//! `stele_chains` (chain heads: size, last `event_hash`, last `ts`) and
//! `stele_schema` (applied migrations).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod append;
mod migrate;
#[doc(hidden)]
pub mod pg_copy;
mod pg_tls;
mod scan;
mod shared;
mod sqlite;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;

use stele_ledger::append::ChainState;
use stele_ledger::event::InputError;
use stele_ledger::merkle::{self, MerkleError};
use stele_ledger::{ChainId, Event, Hash, StoredEvent, Timestamp};
use thiserror::Error;
use tlog_tiles::HashReader;

pub use append::{Receipts, now};
pub use shared::{ReadSnapshot, Store, StoreOptions, StoreStats};
pub(crate) use stele_anchor::{AnchorRecord, AnchorStatus, AnchorUpload};

/// A storage operation failed. Messages never include credentials.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Input rejected before anything was written.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The chain has no events.
    #[error("unknown chain {0:?}: it has no events in this database")]
    UnknownChain(String),
    /// A seq or range outside the chain.
    #[error("{0}")]
    OutOfRange(String),
    /// An idempotency key was reused for a different event.
    #[error(
        "idempotency key {key:?} was already used for a different event (seq {seq}); use a new key for a new event"
    )]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// Seq of the event it was first used for.
        seq: u64,
    },
    /// One batch used an idempotency key twice for different events.
    #[error(
        "idempotency key {key:?} is used twice in this batch for different events; give each event its own key"
    )]
    IdempotencyConflictInBatch {
        /// The key.
        key: String,
    },
    /// The store's append queue is full: the database commits more slowly
    /// than appends arrive. Nothing was written; try again shortly.
    #[error(
        "the ledger is busy: {queued} appends are already waiting to be committed; nothing was written, try again shortly"
    )]
    Busy {
        /// Appends waiting when this one was refused.
        queued: usize,
    },
    /// The connection failed while the commit itself was under way: the
    /// append may or may not have been committed. Not retryable as is: a
    /// retry with the same idempotency keys is safe (it returns the
    /// original receipts if the commit happened); one without could append
    /// the events twice.
    #[error(
        "the outcome of the commit is unknown ({message}): read the chain, or send again with the same idempotency keys, before sending again"
    )]
    CommitOutcomeUnknown {
        /// The database's error.
        message: String,
    },
    /// The store was shut down before this append could be committed;
    /// nothing of it was written.
    #[error("the ledger store is shutting down; nothing was written")]
    Closed,
    /// Another writer created this anchor first; rebuild from the new state.
    #[error(
        "anchor {anchor_seq} of chain {chain:?} already exists (another process anchored first)"
    )]
    AnchorConflict {
        /// Chain.
        chain: String,
        /// Anchor seq.
        anchor_seq: u64,
    },
    /// Stored data cannot be read as stele wrote it.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database schema is newer than this build of stele.
    #[error(
        "database schema version {found} is newer than this stele supports ({supported}); upgrade stele"
    )]
    SchemaTooNew {
        /// Version found.
        found: i64,
        /// Highest version known.
        supported: i64,
    },
    /// Merkle proof construction failed.
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    /// SQLite error.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL error, with the server's SQLSTATE when it sent one.
    #[error("PostgreSQL: {message}")]
    Postgres {
        /// What went wrong (SQLSTATE and detail included; never a password).
        message: String,
        /// The five-character SQLSTATE (`40001`, `42501`, …); `None` when
        /// the failure was not reported by the server (a lost connection,
        /// a TLS or protocol error).
        sqlstate: Option<String>,
        /// Whether trying the same operation again may succeed (see
        /// [`StoreError::is_retryable`]).
        retryable: bool,
    },
    /// The database location is malformed or names settings that cannot
    /// work (an unknown `sslmode`, an unreadable `sslrootcert`): fix the
    /// location; nothing was attempted.
    #[error("invalid database location {location}: {reason}")]
    InvalidLocation {
        /// Where (credentials redacted).
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// A write to a store opened read-only (verification, an auditor's role).
    #[error("this ledger was opened read-only; nothing was written")]
    ReadOnly,
    /// Could not open the database.
    #[error("cannot open database {location}: {reason}")]
    Open {
        /// Where (credentials redacted).
        location: String,
        /// Why.
        reason: String,
        /// The SQLSTATE of the server error behind it, if there was one
        /// (`3D000` for an unknown database, `28P01` for a wrong password).
        sqlstate: Option<String>,
        /// Whether opening again later may succeed (the server was
        /// unreachable, starting or shutting down, the file was busy).
        retryable: bool,
    },
}

impl StoreError {
    /// True when the same operation may succeed if tried again unchanged:
    /// a serialization failure or deadlock (`40001`, `40P01`), a lost or
    /// refused connection (class `08`, or no SQLSTATE from the server), a
    /// server shutting down or starting (`57P01`, `57P02`, `57P03`), or a
    /// busy/locked SQLite database. False for everything else: bad input,
    /// conflicts, corruption and configuration (wrong database, role or
    /// permission) need a change before a retry can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Postgres { retryable, .. } | Self::Open { retryable, .. } => *retryable,
            Self::Sqlite(e) => sqlite_retryable(e),
            Self::Busy { .. } | Self::Closed => true,
            Self::Input(_)
            | Self::UnknownChain(_)
            | Self::OutOfRange(_)
            | Self::IdempotencyConflict { .. }
            | Self::IdempotencyConflictInBatch { .. }
            | Self::CommitOutcomeUnknown { .. }
            | Self::AnchorConflict { .. }
            | Self::Corrupt(_)
            | Self::SchemaTooNew { .. }
            | Self::Merkle(_)
            | Self::InvalidLocation { .. }
            | Self::ReadOnly => false,
        }
    }

    /// The PostgreSQL SQLSTATE behind this error, when the server sent one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Postgres { sqlstate, .. } | Self::Open { sqlstate, .. } => sqlstate.as_deref(),
            _ => None,
        }
    }

    /// A PostgreSQL error raised by stele itself (a protocol or format
    /// problem in what the server sent): no SQLSTATE, not retryable.
    pub(crate) fn postgres_local(message: impl Into<String>) -> Self {
        Self::Postgres {
            message: message.into(),
            sqlstate: None,
            retryable: false,
        }
    }

    /// [`StoreError::Open`] for a reason that no retry changes (no ledger
    /// there, an unsafe setting).
    pub(crate) fn open_refused(location: &str, reason: impl Into<String>) -> Self {
        Self::Open {
            location: location.to_owned(),
            reason: reason.into(),
            sqlstate: None,
            retryable: false,
        }
    }

    /// [`StoreError::Open`] for `location`, keeping the SQLSTATE and
    /// retryability of the error that stopped the open.
    pub(crate) fn open_failed(location: &str, cause: StoreError) -> Self {
        let sqlstate = cause.sqlstate().map(str::to_owned);
        let retryable = cause.is_retryable();
        let reason = match cause {
            Self::Postgres { message, .. } => format!("PostgreSQL: {message}"),
            Self::Sqlite(e) => e.to_string(),
            other => other.to_string(),
        };
        Self::Open {
            location: location.to_owned(),
            reason,
            sqlstate,
            retryable,
        }
    }
}

/// Whether a SQLite error is the database being busy or locked by another
/// connection (worth retrying), as opposed to a bad file or statement.
fn sqlite_retryable(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Whether a PostgreSQL SQLSTATE says "try again": serialization failure,
/// deadlock, connection exceptions (class 08), and the server shutting
/// down, crashing or not yet accepting connections (57P01–57P03).
pub fn sqlstate_is_retryable(code: &str) -> bool {
    matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03") || code.starts_with("08")
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let sqlstate = e.code().map(|c| c.code().to_owned());
        // Without a SQLSTATE the client failed on its own side: a closed
        // or reset connection or an I/O error is retryable; a TLS set-up,
        // a conversion or a protocol error is not.
        let retryable = match &sqlstate {
            Some(code) => sqlstate_is_retryable(code),
            None => e.is_closed() || io_cause(&e),
        };
        Self::Postgres {
            message: postgres_message(&e),
            sqlstate,
            retryable,
        }
    }
}

/// Whether an I/O error (connection refused, reset, timed out) is among
/// the error's causes.
fn io_cause(e: &tokio_postgres::Error) -> bool {
    use std::io::ErrorKind;
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        // Only the network's own failures: a TLS certificate rejection
        // also arrives as an `io::Error` (kind `InvalidData`), and is
        // configuration.
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::NotConnected
                    | ErrorKind::BrokenPipe
                    | ErrorKind::TimedOut
                    | ErrorKind::UnexpectedEof
                    | ErrorKind::Interrupted
            );
        }
        cause = c.source();
    }
    false
}

/// A PostgreSQL error's message, with its SQLSTATE and detail when the
/// server sent them (`Display` of a server error is just its message), or
/// with its causes (a TLS handshake error says why only in its source).
pub(crate) fn postgres_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{} ({})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                m.push_str(&format!(": {d}"));
            }
            m
        }
        None => {
            let mut m = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                let text = c.to_string();
                // Some layers repeat their cause's text in their own.
                if !m.contains(&text) {
                    m.push_str(&format!(": {text}"));
                }
                cause = c.source();
            }
            m
        }
    }
}

/// Which database to use, parsed from `--db`.
#[derive(Clone, PartialEq, Eq)]
pub enum DbLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl DbLocation {
    /// `postgres://…`/`postgresql://…` select PostgreSQL; `sqlite://PATH` or
    /// a plain path select SQLite.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidLocation`] for a libpq keyword/value string
    /// (`host=… password=…`) or a URL of another scheme: either could hold a
    /// password, so neither is taken as a file name (which error messages
    /// would show); the error never repeats the text.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Self::Postgres(s.to_owned()));
        }
        if let Some(path) = s.strip_prefix("sqlite://") {
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if is_keyword_value_string(s) {
            return Err(StoreError::InvalidLocation {
                location: "(a keyword=value connection string, not shown)".into(),
                reason: "libpq keyword/value strings (`host=… dbname=…`) are not supported: give \
                         a postgres://user:password@host:port/dbname URL, with the password \
                         percent-encoded, preferably through STELE_DB"
                    .into(),
            });
        }
        if looks_like_credentials(s) {
            return Err(StoreError::InvalidLocation {
                location: "(not shown: it looks like user:password@host)".into(),
                reason: "a PostgreSQL location needs its postgres:// prefix; a SQLite file \
                         name with `:` before `@` must be given as sqlite://PATH"
                    .into(),
            });
        }
        if let Some((scheme, _)) = s.split_once("://") {
            let shown = if scheme.len() <= 16
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+')
            {
                format!("{scheme}://…")
            } else {
                "(a URL, not shown)".into()
            };
            return Err(StoreError::InvalidLocation {
                location: shown,
                reason:
                    "only postgres://, postgresql:// and sqlite:// URLs (or a plain file path) \
                         are supported"
                        .into(),
            });
        }
        Ok(Self::Sqlite(PathBuf::from(s)))
    }

    /// Backend name.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// Whether `s` reads as `user:password@host…` without a scheme: taken as a
/// file name it would be shown in errors (and created as a directory).
fn looks_like_credentials(s: &str) -> bool {
    !s.contains("://")
        && s.split_once('@')
            .is_some_and(|(before, _)| before.contains(':'))
}

/// Whether `s` reads as a libpq keyword/value connection string: it starts
/// with `keyword =` (libpq takes any string with `=` that is not a URI as one).
fn is_keyword_value_string(s: &str) -> bool {
    let s = s.trim_start();
    let keyword_len = s
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    keyword_len > 0 && s[keyword_len..].trim_start().starts_with('=')
}

/// Shows the location with any password replaced, safe for logs and errors.
impl fmt::Display for DbLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "{}", p.display()),
            Self::Postgres(url) => f.write_str(&redact_url(url)),
        }
    }
}

impl fmt::Debug for DbLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbLocation({self})")
    }
}

/// URL parameters whose values are shown; every other value (a password
/// under any spelling, `options`, anything unknown) is replaced by `***`.
const SHOWN_URL_PARAMETERS: [&str; 17] = [
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "application_name",
    "sslmode",
    "sslrootcert",
    "sslnegotiation",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
];

/// A PostgreSQL URL as it may be shown: the user, host, port, database and
/// the values of [`SHOWN_URL_PARAMETERS`]; the password and every other
/// parameter value as `***`. The credentials are split off as the driver
/// splits them (everything before the first `@`, so a password with an
/// unencoded `/`, `?` or `#` stays hidden); what remains is parsed with the
/// `url` crate, and a location it cannot read unambiguously is not shown at all.
pub fn redact_url(url: &str) -> String {
    const HIDDEN: &str =
        "(location not shown: it could not be read without risking showing a password)";
    let Some((scheme, rest)) = url.split_once("://") else {
        return HIDDEN.into();
    };
    let (userinfo, rest) = match rest.split_once('@') {
        Some((creds, rest)) => {
            let user = creds.split(':').next().unwrap_or_default();
            let shown = if creds.contains(':') {
                format!("{user}:***@")
            } else {
                format!("{user}@")
            };
            (shown, rest)
        }
        None => (String::new(), rest),
    };
    let Ok(parsed) = url::Url::parse(&format!("{scheme}://{rest}")) else {
        return format!("{scheme}://{userinfo}{HIDDEN}");
    };
    // Another userinfo in what remains means a second `@`: ambiguous.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return format!("{scheme}://{userinfo}{HIDDEN}");
    }
    let mut out = format!(
        "{scheme}://{userinfo}{}",
        parsed.host_str().unwrap_or_default()
    );
    if let Some(port) = parsed.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(parsed.path());
    if let Some(query) = parsed.query() {
        let params: Vec<String> = query
            .split('&')
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                // Names are matched decoded, as the driver reads them (`pass%77ord`).
                let name = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
                if SHOWN_URL_PARAMETERS.contains(&name.as_ref()) {
                    format!("{key}={value}")
                } else {
                    format!("{key}=***")
                }
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    if parsed.fragment().is_some() {
        out.push_str("#***");
    }
    out
}

/// A chain's head as storage records it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainHead {
    /// The chain.
    pub chain_id: String,
    /// Number of events.
    pub size: u64,
    /// Last `event_hash` (genesis hash when empty).
    pub head_hash: Hash,
    /// Time of the last event.
    pub last_ts: Option<String>,
}

/// Receives one stored row borrowed from the scan's buffer (no allocation
/// per row): the event and its stored Merkle nodes.
pub(crate) type StoredRowVisitor<'a> =
    dyn FnMut(StoredEvent<'_>, &[u8]) -> Result<(), StoreError> + 'a;

/// A SQLite connection's synchronous reads and outbox writes: what the shared
/// store runs on its reader connections and side writer, on blocking threads.
pub(crate) trait LedgerStore: Send {
    /// Every chain's head, ordered by chain id.
    ///
    /// # Errors
    ///
    /// Database errors.
    fn chains(&mut self) -> Result<Vec<ChainHead>, StoreError>;

    /// One chain's head, or `None` if it has no events.
    ///
    /// # Errors
    ///
    /// Database errors.
    fn head(&mut self, chain: &ChainId) -> Result<Option<ChainHead>, StoreError>;

    /// Streams the stored rows with `from <= seq <= to` in seq order, each
    /// borrowed, with its stored Merkle nodes (concatenated 32-byte hashes,
    /// as stored). Rows are read on a second thread while `visit` runs on
    /// this one; this is the scan to verify a large log with.
    ///
    /// # Errors
    ///
    /// Database errors, or the first error returned by `visit`.
    fn scan_stored(
        &mut self,
        chain: &ChainId,
        from: u64,
        to: Option<u64>,
        visit: &mut StoredRowVisitor<'_>,
    ) -> Result<(), StoreError>;

    /// Streams the stored events with `from <= seq <= to` in seq order.
    ///
    /// # Errors
    ///
    /// Database errors, or the first error returned by `visit`.
    fn scan(
        &mut self,
        chain: &ChainId,
        from: u64,
        to: Option<u64>,
        visit: &mut dyn FnMut(Event) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.scan_stored(chain, from, to, &mut |e, _| visit(e.to_event()))
    }

    /// Reads Merkle stored hashes by tlog stored-hash index, in the order asked
    /// (see [`stele_ledger::merkle::node_location`] for where each lives).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if one is missing; database errors.
    fn read_hashes(&mut self, chain: &ChainId, indexes: &[u64]) -> Result<Vec<Hash>, StoreError>;

    /// Opens a read snapshot on this store: until
    /// [`end_read_snapshot`](Self::end_read_snapshot), every read (heads,
    /// scans, stored hashes, anchors) sees one and the same committed state,
    /// whatever other connections append meanwhile: one read transaction
    /// on this connection. Returns `false`, and changes nothing, if a
    /// snapshot is already open (its opener closes it).
    ///
    /// # Errors
    ///
    /// Database errors; then no snapshot is open.
    fn begin_read_snapshot(&mut self) -> Result<bool, StoreError>;

    /// Closes the read snapshot opened by
    /// [`begin_read_snapshot`](Self::begin_read_snapshot); nothing happens
    /// if none is open.
    ///
    /// # Errors
    ///
    /// Database errors (the snapshot is closed all the same).
    fn end_read_snapshot(&mut self) -> Result<(), StoreError>;

    /// The chain head together with the database's snapshot position
    /// (`pg_current_wal_lsn()` on PostgreSQL, `None` on SQLite), read atomically.
    ///
    /// # Errors
    ///
    /// Database errors.
    fn head_with_lsn(
        &mut self,
        chain: &ChainId,
    ) -> Result<(Option<ChainHead>, Option<String>), StoreError>;

    /// Stores a new anchor in the outbox, status pending.
    ///
    /// # Errors
    ///
    /// [`StoreError::AnchorConflict`] if that anchor seq exists; database errors.
    fn insert_anchor(&mut self, anchor: &AnchorRecord) -> Result<(), StoreError>;

    /// Anchors in (chain, anchor seq) order, optionally for one chain and/or status.
    ///
    /// # Errors
    ///
    /// Database errors.
    fn anchors(
        &mut self,
        chain: Option<&ChainId>,
        status: Option<AnchorStatus>,
    ) -> Result<Vec<AnchorRecord>, StoreError>;

    /// The chain's latest anchor, whatever its status.
    ///
    /// # Errors
    ///
    /// Database errors.
    fn last_anchor(&mut self, chain: &ChainId) -> Result<Option<AnchorRecord>, StoreError>;

    /// Leases a pending anchor to `owner` for `ttl` and counts one upload
    /// attempt: only the holder uploads it, so two anchorer processes never
    /// upload the same anchor at once. Granted only if the anchor is pending,
    /// no unexpired lease is held on it (an expired one, e.g. of a killed
    /// process, is taken over), and no earlier anchor of the chain is still
    /// pending (anchors land in order). One atomic statement; no transaction
    /// stays open while the holder uploads.
    ///
    /// Returns whether the lease was granted.
    ///
    /// # Errors
    ///
    /// Database errors.
    fn lease_anchor(
        &mut self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError>;

    /// Records a successful write of an anchor and ends the lease, if
    /// `owner` still holds it. A holder whose lease was taken over changes
    /// nothing.
    ///
    /// Returns whether `owner` held the lease (and the anchor was marked).
    ///
    /// # Errors
    ///
    /// Database errors.
    fn mark_anchor_uploaded(
        &mut self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        upload: &AnchorUpload,
    ) -> Result<bool, StoreError>;

    /// Records a failed upload attempt and ends the lease, if `owner` still
    /// holds it; the anchor stays pending (its attempt was counted when it
    /// was leased).
    ///
    /// Returns whether `owner` held the lease.
    ///
    /// # Errors
    ///
    /// Database errors.
    fn record_anchor_failure(
        &mut self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        error: &str,
    ) -> Result<bool, StoreError>;

    /// The durability settings in force on this store's own connection,
    /// read back from the database (not what was asked for): SQLite's
    /// `journal_mode` and `synchronous`, PostgreSQL's `synchronous_commit`
    /// and `fsync`. An acknowledged append is durable only with these at
    /// `wal`/`full` and `on`/`on`; tests pin them.
    ///
    /// # Errors
    ///
    /// Database errors.
    fn durability(&mut self) -> Result<Vec<(&'static str, String)>, StoreError>;

    /// Moves a still-pending anchor to another object key (its intended key
    /// was taken by an object with other bytes), recording `note` as its last
    /// error, if `owner` holds its lease. The body is never changed; an
    /// anchor already uploaded is left alone.
    ///
    /// Returns whether `owner` held the lease (and the key was moved).
    ///
    /// # Errors
    ///
    /// Database errors.
    fn set_anchor_object_key(
        &mut self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        object_key: &str,
        note: &str,
    ) -> Result<bool, StoreError>;
}

/// Runs `read` on one consistent state of the store: every head, row and
/// stored hash it reads comes from one snapshot (see
/// [`LedgerStore::begin_read_snapshot`]), so a report about a ledger that
/// others are appending to describes one state of it, never a head from one
/// moment and rows from another. Nested calls share the outer snapshot.
///
/// # Errors
///
/// The error of `read`, else a failure to open or close the snapshot.
pub(crate) fn read_consistent<T, E: From<StoreError>>(
    store: &mut dyn LedgerStore,
    read: impl FnOnce(&mut dyn LedgerStore) -> Result<T, E>,
) -> Result<T, E> {
    let opened = store.begin_read_snapshot()?;
    let result = read(&mut *store);
    if !opened {
        return result;
    }
    let closed = store.end_read_snapshot();
    let value = result?;
    closed?;
    Ok(value)
}

/// Adapts a store to `tlog_tiles`'s [`HashReader`], keeping the real error.
struct StoreHashReader<'a> {
    store: RefCell<&'a mut dyn LedgerStore>,
    chain: &'a ChainId,
    error: RefCell<Option<StoreError>>,
}

impl<'a> StoreHashReader<'a> {
    fn new(store: &'a mut dyn LedgerStore, chain: &'a ChainId) -> Self {
        Self {
            store: RefCell::new(store),
            chain,
            error: RefCell::new(None),
        }
    }

    /// Runs a tlog computation, surfacing a storage error in place of tlog's generic one.
    fn run<T>(self, f: impl FnOnce(&Self) -> Result<T, MerkleError>) -> Result<T, StoreError> {
        let result = f(&self);
        match self.error.into_inner() {
            Some(e) => Err(e),
            None => Ok(result?),
        }
    }
}

impl HashReader for StoreHashReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let result = self.store.borrow_mut().read_hashes(self.chain, indexes);
        result.map_err(|e| {
            *self.error.borrow_mut() = Some(e);
            tlog_tiles::Error::IndexesNotInTree
        })
    }
}

fn require_head(store: &mut dyn LedgerStore, chain: &ChainId) -> Result<ChainHead, StoreError> {
    store
        .head(chain)?
        .ok_or_else(|| StoreError::UnknownChain(chain.to_string()))
}

/// `size`, or the head's size if `None`, checked to be within `chain`
/// whose head is `head` (`None`: the chain has no events).
pub(crate) fn size_within(
    chain: &ChainId,
    head: Option<ChainHead>,
    size: Option<u64>,
) -> Result<u64, StoreError> {
    let head = head.ok_or_else(|| StoreError::UnknownChain(chain.to_string()))?;
    let size = size.unwrap_or(head.size);
    check_size(&head, size, "tree size")?;
    Ok(size)
}

fn check_size(head: &ChainHead, size: u64, what: &str) -> Result<(), StoreError> {
    if size > head.size {
        return Err(StoreError::OutOfRange(format!(
            "{what} {size} is beyond chain {:?}, which has {} events",
            head.chain_id, head.size
        )));
    }
    Ok(())
}

/// Merkle root of `chain` at `size` (the current size if `None`); returns `(size, root)`.
///
/// # Errors
///
/// [`StoreError::UnknownChain`], [`StoreError::OutOfRange`], storage errors.
pub(crate) fn tree_root(
    store: &mut dyn LedgerStore,
    chain: &ChainId,
    size: Option<u64>,
) -> Result<(u64, Hash), StoreError> {
    read_consistent(store, |store| {
        let head = require_head(store, chain)?;
        let size = size.unwrap_or(head.size);
        check_size(&head, size, "tree size")?;
        let root = StoreHashReader::new(store, chain).run(|r| merkle::root(size, r))?;
        Ok((size, root))
    })
}

/// Inclusion proof for `seq` in the tree of `tree_size` (current size if `None`).
/// Returns `(tree_size, root, proof)`.
///
/// # Errors
///
/// [`StoreError::UnknownChain`], [`StoreError::OutOfRange`], storage errors.
pub(crate) fn inclusion_proof(
    store: &mut dyn LedgerStore,
    chain: &ChainId,
    seq: u64,
    tree_size: Option<u64>,
) -> Result<(u64, Hash, Vec<Hash>), StoreError> {
    read_consistent(store, |store| {
        let (size, root) = tree_root(store, chain, tree_size)?;
        if seq >= size {
            return Err(StoreError::OutOfRange(format!(
                "seq {seq} is not in chain {chain:?} at tree size {size}"
            )));
        }
        let proof =
            StoreHashReader::new(store, chain).run(|r| merkle::inclusion_proof(size, seq, r))?;
        Ok((size, root, proof))
    })
}

/// Consistency proof from tree size `from` to `to`; returns `(from_root, to_root, proof)`.
///
/// # Errors
///
/// [`StoreError::UnknownChain`], [`StoreError::OutOfRange`], storage errors.
pub(crate) fn consistency_proof(
    store: &mut dyn LedgerStore,
    chain: &ChainId,
    from: u64,
    to: u64,
) -> Result<(Hash, Hash, Vec<Hash>), StoreError> {
    if from > to {
        return Err(StoreError::OutOfRange(format!(
            "consistency proof from tree size {from} to the smaller size {to}"
        )));
    }
    read_consistent(store, |store| {
        let (_, to_root) = tree_root(store, chain, Some(to))?;
        let (_, from_root) = tree_root(store, chain, Some(from))?;
        let proof =
            StoreHashReader::new(store, chain).run(|r| merkle::consistency_proof(from, to, r))?;
        Ok((from_root, to_root, proof))
    })
}

/// One event by seq.
///
/// # Errors
///
/// [`StoreError::UnknownChain`], [`StoreError::OutOfRange`] if there is no such seq, storage errors.
pub(crate) fn event(
    store: &mut dyn LedgerStore,
    chain: &ChainId,
    seq: u64,
) -> Result<Event, StoreError> {
    read_consistent(store, |store| {
        let mut found = None;
        store.scan(chain, seq, Some(seq), &mut |e| {
            found = Some(e);
            Ok(())
        })?;
        match found {
            Some(e) => Ok(e),
            None => {
                let head = require_head(store, chain)?;
                Err(StoreError::OutOfRange(format!(
                    "chain {chain:?} has no event with seq {seq} (it has {} events)",
                    head.size
                )))
            }
        }
    })
}

/// Resolves tlog stored-hash indexes to hashes, given a lookup of
/// `(seq) -> (leaf_hash, merkle_nodes)` rows; shared by the backends.
pub(crate) fn hashes_from_rows(
    chain: &ChainId,
    indexes: &[u64],
    rows: &std::collections::HashMap<u64, (Vec<u8>, Vec<u8>)>,
) -> Result<Vec<Hash>, StoreError> {
    indexes
        .iter()
        .map(|&index| {
            let (seq, level) = merkle::node_location(index);
            let missing = || {
                StoreError::Corrupt(format!(
                    "Merkle hash {index} of chain {chain:?} (seq {seq}, level {level}) is missing"
                ))
            };
            let (leaf, nodes) = rows.get(&seq).ok_or_else(missing)?;
            let bytes = if level == 0 {
                leaf.as_slice()
            } else {
                let at = usize::from(level - 1) * 32;
                nodes.get(at..at + 32).ok_or_else(missing)?
            };
            hash_from_bytes(bytes, "Merkle hash")
        })
        .collect()
}

/// The seqs whose rows hold these stored-hash indexes.
pub(crate) fn seqs_for(indexes: &[u64]) -> Vec<u64> {
    let mut seqs: Vec<u64> = indexes
        .iter()
        .map(|&i| merkle::node_location(i).0)
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    seqs
}

/// The state of a chain head, for the append path.
pub(crate) fn state_of(head: &ChainHead) -> Result<ChainState, StoreError> {
    Ok(ChainState {
        size: head.size,
        head_hash: head.head_hash,
        last_ts: head.last_ts.as_deref().map(Timestamp::parse).transpose()?,
    })
}

pub(crate) fn hash_from_bytes(bytes: &[u8], what: &str) -> Result<Hash, StoreError> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is {} bytes, not 32", bytes.len())))?;
    Ok(Hash(arr))
}

pub(crate) fn to_i64(n: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::OutOfRange(format!("{what} {n} is too large")))
}

pub(crate) fn to_u64(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{what} {n} is negative")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_that_a_retry_can_clear_are_retryable() {
        for code in [
            "40001", "40P01", "57P01", "57P02", "57P03", "08000", "08006", "08001",
        ] {
            assert!(sqlstate_is_retryable(code), "{code}");
        }
        // Configuration, input and integrity errors need a change first.
        for code in [
            "42501", "3D000", "28P01", "28000", "42P01", "23505", "22P02", "25006", "53100",
            "XX000", "57014",
        ] {
            assert!(!sqlstate_is_retryable(code), "{code}");
        }
    }

    #[test]
    fn open_keeps_the_cause_sqlstate_and_retryability() {
        let cause = StoreError::Postgres {
            message: "terminating connection due to administrator command (57P01)".into(),
            sqlstate: Some("57P01".into()),
            retryable: true,
        };
        let open = StoreError::open_failed("postgres://h/db", cause);
        assert_eq!(open.sqlstate(), Some("57P01"));
        assert!(open.is_retryable());
        assert!(
            open.to_string().contains("PostgreSQL: terminating"),
            "{open}"
        );
        let refused = StoreError::open_refused("x", "it holds no stele ledger");
        assert!(!refused.is_retryable());
        assert_eq!(refused.sqlstate(), None);
        assert!(!StoreError::postgres_local("COPY output ended").is_retryable());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:s3cret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?password=s3cret&sslmode=require&x=1"),
            "postgres://u@h/db?password=***&sslmode=require&x=***"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(
            redact_url("postgres://u@h/db?sslpassword=a&sslmode=require&password=s3cret"),
            "postgres://u@h/db?sslpassword=***&sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?pass%77ord=s3cret"),
            "postgres://u@h/db?pass%77ord=***"
        );
        // Whatever the spelling, and however the password breaks URL syntax.
        for (url, secret) in [
            ("postgres://u@h/db?PASSWORD=s3cret", "s3cret"),
            ("postgres://u@h/db?Password=s3cret", "s3cret"),
            ("postgres://u:pa/ss@h:5432/db", "pa/ss"),
            ("postgres://u:123/45@h:5432/db", "123/45"),
            ("postgres://u:p?q=w#x@h/db", "p?q=w#x"),
            ("postgres://u:p@s3cret@h/db", "s3cret"),
            ("postgres://u@h/db#frag", "frag"),
            ("postgres://u:pw@[::1/db", "pw"),
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains(secret), "{url} -> {shown}");
        }
        assert_eq!(
            redact_url("postgres://u:pa/ss@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        // What is not secret is still shown, for a useful error.
        for shown in [
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/db",
            "postgres://u:***@[::1]:5433/db?sslmode=verify-full&sslrootcert=/etc/ca.pem",
            "postgresql://h/db?application_name=x&connect_timeout=5",
        ] {
            assert_eq!(redact_url(shown), shown);
        }
        let loc = DbLocation::parse("postgresql://a:b@c/d").unwrap();
        assert_eq!(loc.to_string(), "postgresql://a:***@c/d");
        assert!(!format!("{loc:?}").contains(":b@"));
        assert_eq!(
            DbLocation::parse("sqlite://x.db").unwrap(),
            DbLocation::Sqlite("x.db".into())
        );
        assert_eq!(
            DbLocation::parse("./x.db").unwrap(),
            DbLocation::Sqlite("./x.db".into())
        );
        for refused in [
            "host=h password=s3cret dbname=d",
            "  dbname = d password=s3cret",
            "postgress://u:s3cret@h/db",
            "u:s3cret@h:5432/db",
        ] {
            let err = DbLocation::parse(refused).unwrap_err().to_string();
            assert!(!err.contains("s3cret"), "{err}");
        }
    }
}
