//! The embedded SQLite backend (the default).
//!
//! WAL journal with `synchronous=FULL`: a commit returns only after the WAL
//! is fsynced, so an acknowledged append survives power loss and `kill -9`.
//! Writers serialize on `BEGIN IMMEDIATE` (SQLite's single write lock), which
//! is what makes appends from several processes gap-free.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use stele_ledger::append::ChainState;
use stele_ledger::{ChainId, Event, Hash};

use crate::append::{
    AppendRequest, AppendTx, NewRow, RequestResults, RunRows, append_requests_locked, empty_state,
    stored_hex,
};
use crate::migrate::{self, AnchorRow, Migration, MigrationTx, StoredRow};
use crate::scan::{self, RowSink};
use crate::{
    AnchorRecord, AnchorStatus, AnchorUpload, ChainHead, LedgerStore, StoreError, StoredRowVisitor,
    hash_from_bytes, hashes_from_rows, seqs_for, state_of, to_i64,
};
use stele_anchor::{LockMode, retain_until_text};

const EVENT_COLUMNS: &str = "chain_id, chain_index, ts, event_type, actor, payload, idempotency_key, key_id, leaf_hash, event_hash";

/// A ledger in one SQLite file.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// A read snapshot (one read transaction on `conn`) is open.
    in_snapshot: bool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Leaves copying the WAL into the database file to a [`Checkpointer`]
    /// on a thread of its own, so the append writer does not wait for it at
    /// every 1,000 pages. The writer still checkpoints past
    /// [`Checkpointer::WRITER_BACKSTOP_PAGES`]: under unbroken load some
    /// commit always lands during the checkpointer's run, so its checkpoint
    /// never covers the whole WAL and SQLite never starts the WAL over; the
    /// writer's own checkpoint, run between its commits, finds little left
    /// to copy and ends with the whole WAL copied.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub(crate) fn leave_checkpoints_to(
        &self,
        checkpointer: &Checkpointer,
    ) -> Result<(), StoreError> {
        debug_assert_eq!(checkpointer.path, self.path);
        self.conn.pragma_update(
            None,
            "wal_autocheckpoint",
            Checkpointer::WRITER_BACKSTOP_PAGES,
        )?;
        Ok(())
    }

    /// Opens or creates the database file (and its directory), then migrates it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] if the file cannot be opened; migration errors.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let open_err = |e: rusqlite::Error| StoreError::open_failed(&shown, StoreError::Sqlite(e));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::open_refused(&shown, e.to_string()))?;
        }
        let conn = Connection::open(path).map_err(open_err)?;
        // Long enough that a queue of writers from several processes drains.
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(open_err)?;
        let mode = enable_wal(&conn).map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::open_refused(
                &shown,
                format!("could not enable WAL journal (got {mode})"),
            ));
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        let mut store = Self {
            conn,
            path: path.to_owned(),
            in_snapshot: false,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Applies several callers' appends in one durable transaction (group
    /// commit): the outer error means nothing was written; otherwise each
    /// request has its own result.
    pub(crate) fn append_requests(
        &mut self,
        requests: &[AppendRequest],
    ) -> Result<RequestResults, StoreError> {
        let mut tx = SqliteTx(
            self.conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?,
        );
        let results = append_requests_locked(&mut tx, requests)?;
        tx.0.commit()?;
        Ok(results)
    }

    /// Opens an existing ledger file for reading only (see
    /// [`Store::open_read_only`](crate::Store::open_read_only)). SQLite reads a
    /// write-ahead log beside the file even where it may not write its
    /// shared-memory index, so a copy taken with its `-wal` reads complete.
    /// Where it cannot even create the log (a read-only copy alone in a
    /// read-only directory), the file is read as immutable: with no log
    /// beside it, the file is all there is.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`]: no file, not a current stele ledger, or a log
    /// that holds changes but cannot be read; [`StoreError::SchemaTooNew`].
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let open_err = |reason: String| StoreError::open_refused(&shown, reason);
        if !path.is_file() {
            return Err(open_err("no ledger file here".into()));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let open = |immutable: bool| -> Result<(Connection, Option<i64>), rusqlite::Error> {
            let conn = if immutable {
                let uri = format!("file:{}?immutable=1", uri_path(path));
                Connection::open_with_flags(uri, flags)?
            } else {
                Connection::open_with_flags(path, flags)?
            };
            conn.busy_timeout(Duration::from_secs(60))?;
            let version = schema_version_of(&conn)?;
            Ok((conn, version))
        };
        let (conn, version) = match open(false) {
            Ok(opened) => opened,
            // SQLite could not open or create its log and index beside the file.
            Err(rusqlite::Error::SqliteFailure(e, detail))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly
                ) =>
            {
                let reason = detail.unwrap_or_else(|| e.to_string());
                // Immutable is right only if the file is all there is: no log
                // with changes, no rollback journal of an interrupted write.
                for (suffix, what) in [
                    ("-wal", "write-ahead log"),
                    ("-journal", "rollback journal"),
                ] {
                    let beside = PathBuf::from(format!("{}{suffix}", path.display()));
                    if std::fs::metadata(&beside).is_ok_and(|m| m.is_file() && m.len() > 0) {
                        return Err(open_err(format!(
                            "{reason}; its {what} {} holds changes that could not be read",
                            beside.display()
                        )));
                    }
                }
                open(true).map_err(|e| StoreError::open_failed(&shown, StoreError::Sqlite(e)))?
            }
            Err(e) => return Err(StoreError::open_failed(&shown, StoreError::Sqlite(e))),
        };
        migrate::check_read_only(&shown, version)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
            in_snapshot: false,
        })
    }

    /// Brings the schema up to date (see [`migrate`]): nothing is written
    /// when it is current; otherwise one `BEGIN IMMEDIATE` transaction, whose
    /// write lock serializes concurrent first starts.
    fn migrate(&mut self) -> Result<(), StoreError> {
        if migrate::pending(schema_version_of(&self.conn)?)?.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS stele_schema (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
        )?;
        migrate::apply_pending(&mut SqliteMigration(&tx))?;
        tx.commit()?;
        Ok(())
    }
}

/// The migration transaction on SQLite.
struct SqliteMigration<'a>(&'a Transaction<'a>);

impl MigrationTx for SqliteMigration<'_> {
    fn backend(&self) -> &'static str {
        "SQLite"
    }

    fn recorded_version(&mut self) -> Result<i64, StoreError> {
        Ok(self.0.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM stele_schema",
            [],
            |r| r.get(0),
        )?)
    }

    fn apply(&mut self, m: &Migration) -> Result<(), StoreError> {
        self.0.execute_batch(m.sqlite)?;
        self.0.execute(
            "INSERT INTO stele_schema (version, applied_at) VALUES (?1, ?2)",
            params![m.version, crate::now().to_string()],
        )?;
        Ok(())
    }
}

fn event_from_row(r: &rusqlite::Row<'_>) -> Result<Event, StoreError> {
    let chain_id: String = r.get(0)?;
    let seq: i64 = r.get(1)?;
    Ok(Event {
        seq: StoredRow::Event {
            chain: &chain_id,
            seq,
        }
        .unsigned("chain_index", seq)?,
        ts: r.get(2)?,
        event_type: r.get(3)?,
        actor: r.get(4)?,
        payload: r.get(5)?,
        idempotency_key: r.get(6)?,
        key_id: r.get(7)?,
        leaf_hash: stored_hex(&r.get::<_, Vec<u8>>(8)?),
        event_hash: stored_hex(&r.get::<_, Vec<u8>>(9)?),
        chain_id,
    })
}

/// Reads the rows of a scan into `sink`, borrowing each field from SQLite.
fn read_rows(
    conn: &mut Connection,
    chain: &ChainId,
    from: i64,
    to: i64,
    sink: &mut impl RowSink,
) -> Result<(), StoreError> {
    // The scan reads the whole chain once: map the file (pages come straight
    // from the OS cache instead of being copied into SQLite's cache).
    conn.pragma_update(None, "mmap_size", SCAN_MMAP_BYTES)?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS}, merkle_nodes FROM audit_events WHERE chain_id = ?1 AND chain_index >= ?2 AND chain_index <= ?3 ORDER BY chain_index"
    ))?;
    let mut rows = stmt.query(params![chain.as_str(), from, to])?;
    while let Some(row) = rows.next()? {
        let text = |i: usize| match row.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => Ok(Some(t)),
            other => Err(wrong_type(i, other)),
        };
        let blob = |i: usize| match row.get_ref(i)? {
            ValueRef::Blob(b) => Ok(Some(b)),
            other => Err(wrong_type(i, other)),
        };
        let fields = [
            text(0)?,
            text(2)?,
            text(3)?,
            text(4)?,
            text(5)?,
            text(6)?,
            text(7)?,
            blob(8)?,
            blob(9)?,
            // Anything but a blob reads as no nodes, which verification reports.
            Some(row.get_ref(10)?.as_blob().unwrap_or_default()),
        ];
        if !sink.push(row.get(1)?, &fields) {
            break;
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Reads the rows `from <= seq <= to` into `sink` on this connection
    /// (in its open read snapshot, if any).
    ///
    /// # Errors
    ///
    /// Database errors.
    pub(crate) fn scan_into(
        &mut self,
        chain: &ChainId,
        from: u64,
        to: Option<u64>,
        sink: &mut impl RowSink,
    ) -> Result<(), StoreError> {
        let from = to_i64(from, "seq")?;
        let to = to.map_or(Ok(i64::MAX), |t| to_i64(t, "seq"))?;
        read_rows(&mut self.conn, chain, from, to, sink)
    }
}

/// Size of the memory map a scan reads through.
const SCAN_MMAP_BYTES: i64 = 1 << 30;

/// The error reading a value of the wrong type for column `i` of [`EVENT_COLUMNS`].
fn wrong_type(i: usize, found: ValueRef<'_>) -> rusqlite::Error {
    let name = EVENT_COLUMNS.split(", ").nth(i).unwrap_or("merkle_nodes");
    rusqlite::Error::InvalidColumnType(i, name.to_owned(), found.data_type())
}

fn read_head(conn: &Connection, chain: &str) -> Result<Option<ChainHead>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT chain_id, tree_size, head_hash, last_ts FROM stele_chains WHERE chain_id = ?1",
        )?
        .query_row([chain], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .optional()?;
    row.map(|(chain_id, size, hash, last_ts)| {
        Ok(ChainHead {
            size: StoredRow::Head { chain: &chain_id }.unsigned("tree_size", size)?,
            head_hash: hash_from_bytes(&hash, "chain head hash")?,
            last_ts,
            chain_id,
        })
    })
    .transpose()
}

fn read_hashes(
    conn: &Connection,
    chain: &ChainId,
    indexes: &[u64],
) -> Result<Vec<Hash>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT leaf_hash, merkle_nodes FROM audit_events WHERE chain_id = ?1 AND chain_index = ?2",
    )?;
    let mut rows = HashMap::new();
    for seq in seqs_for(indexes) {
        let row: Option<(Vec<u8>, Vec<u8>)> = stmt
            .query_row(params![chain.as_str(), to_i64(seq, "seq")?], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some(row) = row {
            rows.insert(seq, row);
        }
    }
    hashes_from_rows(chain, indexes, &rows)
}

const ANCHOR_COLUMNS: &str = "chain_id, anchor_seq, trigger, tree_size, ts_utc, object_key, body, status, attempts, last_error, location, version_id, lock_mode, retain_until, uploaded_at";

fn anchor_from_row(r: &rusqlite::Row<'_>) -> Result<AnchorRecord, StoreError> {
    AnchorRow {
        chain_id: r.get(0)?,
        anchor_seq: r.get(1)?,
        trigger: r.get(2)?,
        tree_size: r.get(3)?,
        ts_utc: r.get(4)?,
        object_key: r.get(5)?,
        body: r.get(6)?,
        status: r.get(7)?,
        attempts: r.get(8)?,
        last_error: r.get(9)?,
        location: r.get(10)?,
        version_id: r.get(11)?,
        lock_mode: r.get(12)?,
        retain_until: r.get(13)?,
        uploaded_at: r.get(14)?,
    }
    .typed()
}

fn query_anchors(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<AnchorRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(anchor_from_row(row)?);
    }
    Ok(out)
}

/// Checkpoints the WAL (copies committed pages into the database file) on
/// a thread of its own, at most every [`Checkpointer::PAUSE`], when nudged
/// after commits. With the append writer checkpointing at commit instead,
/// a fifth of its time under load went to it. The WAL stays bounded: SQLite
/// starts it over once a checkpoint has copied all of it, which the
/// writer's backstop checkpoint ensures under unbroken load (see
/// [`SqliteStore::leave_checkpoints_to`]).
pub(crate) struct Checkpointer {
    path: PathBuf,
    /// `None` once dropping began.
    nudge: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// The least time between two checkpoints.
    const PAUSE: Duration = Duration::from_millis(100);
    /// WAL pages (4 KiB each) past which the append writer checkpoints
    /// itself after a commit: 40 MiB.
    const WRITER_BACKSTOP_PAGES: i64 = 10_000;

    /// Opens a connection of its own to `path` and starts its thread, which
    /// ends once the checkpointer is dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] if the connection or the thread cannot be had.
    pub(crate) fn start(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let open_err = |e: rusqlite::Error| StoreError::open_failed(&shown, StoreError::Sqlite(e));
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(open_err)?;
        conn.execute_batch("PRAGMA synchronous = FULL;")
            .map_err(open_err)?;
        let (nudge, nudged) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("stele-sqlite-checkpoint".into())
            .spawn(move || Self::run(&conn, &nudged))
            .map_err(|e| {
                StoreError::open_refused(&shown, format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Self {
            path: path.to_owned(),
            nudge: Some(nudge),
            thread: Some(thread),
        })
    }

    /// Checkpoints after each nudge, no sooner than [`Self::PAUSE`] after
    /// the last checkpoint, until the sender is gone.
    fn run(conn: &Connection, nudged: &std::sync::mpsc::Receiver<()>) {
        use std::sync::mpsc::RecvTimeoutError;
        let mut nudged_meanwhile = false;
        loop {
            if !nudged_meanwhile && nudged.recv().is_err() {
                return;
            }
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "could not checkpoint the SQLite WAL; trying again after the next commit");
            }
            nudged_meanwhile = false;
            let next = std::time::Instant::now() + Self::PAUSE;
            loop {
                let left = next.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                match nudged.recv_timeout(left) {
                    Ok(()) => nudged_meanwhile = true,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        }
    }

    /// Says a commit added to the WAL; returns at once.
    pub(crate) fn committed(&self) {
        // A nudge already waiting covers this commit too.
        if let Some(nudge) = &self.nudge {
            let _ = nudge.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    /// Ends the thread and waits for it, so that once the store is closed
    /// no connection of it is left open.
    fn drop(&mut self) {
        self.nudge.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Rows one INSERT statement carries (far below SQLite's limit of 32,766
/// bound values).
const INSERT_CHUNK: usize = 64;

/// The statement sizes an insert uses, largest first, down to one row.
const INSERT_SIZES: [usize; 7] = [INSERT_CHUNK, 32, 16, 8, 4, 2, 1];

/// `INSERT` of `rows` event rows of one run: chain, time and key, the same
/// for the whole run, are bound once, as `?1`, `?2` and `?3`, and each row
/// binds [`ROW_VALUES`] values of its own (binding copies every text value).
fn run_insert_sql(rows: usize) -> String {
    let row = |r: usize| {
        let own: Vec<String> = (0..ROW_VALUES)
            .map(|i| format!("?{}", 4 + r * ROW_VALUES + i))
            .collect();
        // Column order: chain, seq, ts, type, actor, payload, idempotency
        // key, key id, leaf, event hash, Merkle nodes.
        format!(
            "(?1, {}, ?2, {}, ?3, {})",
            own[0],
            own[1..5].join(", "),
            own[5..].join(", ")
        )
    };
    format!(
        "INSERT INTO audit_events ({EVENT_COLUMNS}, merkle_nodes) VALUES {}",
        (0..rows).map(row).collect::<Vec<_>>().join(", ")
    )
}

/// Values each row binds in [`run_insert_sql`]: all but chain, time and key.
const ROW_VALUES: usize = 8;

/// One row's own values, in [`run_insert_sql`]'s order, borrowed from the
/// row; `nodes` is its `merkle_nodes` blob.
fn push_row_values<'r>(
    values: &mut Vec<ToSqlOutput<'r>>,
    row: &'r NewRow<'_>,
    nodes: &'r [u8],
) -> Result<(), StoreError> {
    let text = |t: &'r str| ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes()));
    let optional = |t: &'r Option<String>| {
        t.as_deref()
            .map_or(ToSqlOutput::Borrowed(ValueRef::Null), text)
    };
    let e = row.event;
    values.extend([
        ToSqlOutput::Owned(rusqlite::types::Value::Integer(to_i64(
            row.linked.seq,
            "seq",
        )?)),
        text(&e.event_type),
        optional(&e.actor),
        optional(&e.payload),
        optional(&e.idempotency_key),
        ToSqlOutput::Borrowed(ValueRef::Blob(&row.linked.leaf_hash.0)),
        ToSqlOutput::Borrowed(ValueRef::Blob(&row.linked.event_hash.0)),
        ToSqlOutput::Borrowed(ValueRef::Blob(nodes)),
    ]);
    Ok(())
}

/// Runs one [`run_insert_sql`] statement for `rows` of `run`. `nodes` is
/// scratch space for their Merkle nodes, one buffer for the lot rather than
/// one per row.
fn insert_rows<'r>(
    stmt: &mut rusqlite::CachedStatement<'_>,
    run: &'r RunRows<'_>,
    rows: &'r [NewRow<'_>],
    nodes: &'r mut Vec<u8>,
) -> Result<(), StoreError> {
    nodes.clear();
    let mut ends = Vec::with_capacity(rows.len());
    for row in rows {
        for node in run.nodes(row) {
            nodes.extend_from_slice(&node.0);
        }
        ends.push(nodes.len());
    }
    let text = |t: &'r str| ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes()));
    let nodes: &'r [u8] = nodes;
    let mut values = Vec::with_capacity(3 + rows.len() * ROW_VALUES);
    values.extend([text(run.chain.as_str()), text(&run.ts), text(run.key_id)]);
    let mut start = 0;
    for (row, end) in rows.iter().zip(ends) {
        push_row_values(&mut values, row, &nodes[start..end])?;
        start = end;
    }
    stmt.execute(rusqlite::params_from_iter(values))?;
    Ok(())
}

struct SqliteTx<'a>(Transaction<'a>);

impl AppendTx for SqliteTx<'_> {
    fn lock_chain(&mut self, chain: &ChainId) -> Result<ChainState, StoreError> {
        // BEGIN IMMEDIATE already holds the database write lock.
        self.0.prepare_cached(
            "INSERT OR IGNORE INTO stele_chains (chain_id, tree_size, head_hash, last_ts, created_at) VALUES (?1, 0, ?2, NULL, ?3)",
        )?
        .execute(params![chain.as_str(), &empty_state().head_hash.0[..], crate::now().to_string()])?;
        let head = read_head(&self.0, chain.as_str())?
            .ok_or_else(|| StoreError::Corrupt("chain head vanished".into()))?;
        state_of(&head)
    }

    fn read_hashes(&mut self, chain: &ChainId, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        read_hashes(&self.0, chain, indexes)
    }

    fn find_by_idempotency_keys(
        &mut self,
        chain: &ChainId,
        keys: &[String],
    ) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE chain_id = ?1 AND idempotency_key = ?2"
        ))?;
        let mut found = Vec::new();
        for k in keys {
            if let Some(row) = stmt.query(params![chain.as_str(), k])?.next()? {
                found.push(event_from_row(row)?);
            }
        }
        Ok(found)
    }

    fn insert(&mut self, run: &RunRows<'_>) -> Result<(), StoreError> {
        // One statement run per INSERT_CHUNK rows instead of per row (a
        // third less of the writer's time on a 1,000-event commit); the rest
        // in statements of 32, 16, … 1 rows, so that no more than six run
        // for it.
        static SQL: [std::sync::OnceLock<String>; INSERT_SIZES.len()] =
            [const { std::sync::OnceLock::new() }; INSERT_SIZES.len()];
        let mut nodes = Vec::new();
        let mut left = &run.rows[..];
        for (sql, size) in SQL.iter().zip(INSERT_SIZES) {
            while left.len() >= size {
                let (chunk, rest) = left.split_at(size);
                left = rest;
                let mut stmt = self
                    .0
                    .prepare_cached(sql.get_or_init(|| run_insert_sql(size)))?;
                insert_rows(&mut stmt, run, chunk, &mut nodes)?;
            }
        }
        Ok(())
    }

    fn set_head(&mut self, chain: &ChainId, state: &ChainState) -> Result<(), StoreError> {
        self.0
            .prepare_cached("UPDATE stele_chains SET tree_size = ?2, head_hash = ?3, last_ts = ?4 WHERE chain_id = ?1")?
            .execute(params![
                chain.as_str(),
                to_i64(state.size, "tree size")?,
                &state.head_hash.0[..],
                state.last_ts.map(|t| t.to_string()),
            ])?;
        Ok(())
    }
}

impl LedgerStore for SqliteStore {
    fn durability(&mut self) -> Result<Vec<(&'static str, String)>, StoreError> {
        let journal_mode: String = self
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        let synchronous: i64 = self
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        // SQLite reports the level as a number: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA.
        let synchronous = match synchronous {
            0 => "off".to_owned(),
            1 => "normal".to_owned(),
            2 => "full".to_owned(),
            3 => "extra".to_owned(),
            other => other.to_string(),
        };
        Ok(vec![
            ("journal_mode", journal_mode.to_ascii_lowercase()),
            ("synchronous", synchronous),
        ])
    }

    fn chains(&mut self) -> Result<Vec<ChainHead>, StoreError> {
        let ids: Vec<String> = self
            .conn
            .prepare_cached(
                "SELECT chain_id FROM stele_chains WHERE tree_size > 0 ORDER BY chain_id",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        ids.iter()
            .filter_map(|id| read_head(&self.conn, id).transpose())
            .collect()
    }

    fn head(&mut self, chain: &ChainId) -> Result<Option<ChainHead>, StoreError> {
        Ok(read_head(&self.conn, chain.as_str())?.filter(|h| h.size > 0))
    }

    fn scan_stored(
        &mut self,
        chain: &ChainId,
        from: u64,
        to: Option<u64>,
        visit: &mut StoredRowVisitor<'_>,
    ) -> Result<(), StoreError> {
        let from = to_i64(from, "seq")?;
        let to = to.map_or(Ok(i64::MAX), |t| to_i64(t, "seq"))?;
        let conn = &mut self.conn;
        scan::pipelined(|sink| read_rows(conn, chain, from, to, sink), visit)
    }

    fn read_hashes(&mut self, chain: &ChainId, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        read_hashes(&self.conn, chain, indexes)
    }

    fn head_with_lsn(
        &mut self,
        chain: &ChainId,
    ) -> Result<(Option<ChainHead>, Option<String>), StoreError> {
        Ok((self.head(chain)?, None))
    }

    fn begin_read_snapshot(&mut self) -> Result<bool, StoreError> {
        if self.in_snapshot {
            return Ok(false);
        }
        // A deferred transaction takes its WAL read snapshot at its first
        // read: read at once, so the snapshot is the state as of now. Every
        // later read on this connection — the head, the scan (its reader
        // thread uses this same connection), the stored hashes — sees it.
        self.conn.execute_batch("BEGIN DEFERRED")?;
        if let Err(e) = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
        {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        self.in_snapshot = true;
        Ok(true)
    }

    fn end_read_snapshot(&mut self) -> Result<(), StoreError> {
        if !std::mem::take(&mut self.in_snapshot) {
            return Ok(());
        }
        // Nothing was written: ending the read transaction only releases its snapshot.
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn.execute_batch("ROLLBACK")?;
        Ok(())
    }

    fn insert_anchor(&mut self, a: &AnchorRecord) -> Result<(), StoreError> {
        let result = self.conn.prepare_cached(
            "INSERT INTO stele_anchors (chain_id, anchor_seq, trigger, tree_size, ts_utc, object_key, body, status, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8)",
        )?
        .execute(params![
            a.chain_id,
            to_i64(a.anchor_seq, "anchor seq")?,
            a.trigger.as_str(),
            to_i64(a.tree_size, "tree size")?,
            a.ts_utc,
            a.object_key,
            a.body,
            crate::now().to_string()
        ]);
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::AnchorConflict {
                    chain: a.chain_id.clone(),
                    anchor_seq: a.anchor_seq,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn anchors(
        &mut self,
        chain: Option<&ChainId>,
        status: Option<AnchorStatus>,
    ) -> Result<Vec<AnchorRecord>, StoreError> {
        let chain = chain.map(ChainId::as_str);
        let status = status.map(AnchorStatus::as_str);
        query_anchors(
            &self.conn,
            &format!(
                "SELECT {ANCHOR_COLUMNS} FROM stele_anchors WHERE (?1 IS NULL OR chain_id = ?1) AND (?2 IS NULL OR status = ?2) ORDER BY chain_id, anchor_seq"
            ),
            &[&chain, &status],
        )
    }

    fn last_anchor(&mut self, chain: &ChainId) -> Result<Option<AnchorRecord>, StoreError> {
        Ok(query_anchors(
            &self.conn,
            &format!("SELECT {ANCHOR_COLUMNS} FROM stele_anchors WHERE chain_id = ?1 ORDER BY anchor_seq DESC LIMIT 1"),
            &[&chain.as_str()],
        )?
        .pop())
    }

    fn lease_anchor(
        &mut self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = unix_millis()?;
        let until = now
            .checked_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
            .ok_or_else(|| {
                StoreError::OutOfRange(format!("anchor lease time {ttl:?} is out of range"))
            })?;
        // One statement under SQLite's write lock: of two processes, one wins.
        // The holder may take its own lease again (after a failed outcome write).
        let granted = self
            .conn
            .prepare_cached(
                "UPDATE stele_anchors SET lease_owner = ?3, lease_until = ?5, attempts = attempts + 1 \
                 WHERE chain_id = ?1 AND anchor_seq = ?2 AND status = 'pending' \
                 AND (lease_until IS NULL OR lease_until < ?4 OR lease_owner = ?3) \
                 AND NOT EXISTS (SELECT 1 FROM stele_anchors e WHERE e.chain_id = ?1 AND e.anchor_seq < ?2 AND e.status = 'pending')",
            )?
            .execute(params![
                chain.as_str(),
                to_i64(anchor_seq, "anchor seq")?,
                owner,
                now,
                until
            ])?;
        Ok(granted == 1)
    }

    fn mark_anchor_uploaded(
        &mut self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        u: &AnchorUpload,
    ) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE stele_anchors SET status = ?4, location = ?5, version_id = ?6, lock_mode = ?7, retain_until = ?8, uploaded_at = ?9, last_error = NULL, lease_owner = NULL, lease_until = NULL \
                 WHERE chain_id = ?1 AND anchor_seq = ?2 AND status = 'pending' AND lease_owner = ?3",
            )?
            .execute(params![
                chain.as_str(),
                to_i64(anchor_seq, "anchor seq")?,
                owner,
                u.status.as_str(),
                u.location,
                u.version_id,
                u.lock_mode.map(LockMode::as_str),
                u.retain_until.map(retain_until_text),
                crate::now().to_string()
            ])?;
        Ok(changed == 1)
    }

    fn record_anchor_failure(
        &mut self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        error: &str,
    ) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE stele_anchors SET last_error = ?4, lease_owner = NULL, lease_until = NULL \
                 WHERE chain_id = ?1 AND anchor_seq = ?2 AND status = 'pending' AND lease_owner = ?3",
            )?
            .execute(params![chain.as_str(), to_i64(anchor_seq, "anchor seq")?, owner, error])?;
        Ok(changed == 1)
    }

    fn set_anchor_object_key(
        &mut self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        object_key: &str,
        note: &str,
    ) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE stele_anchors SET object_key = ?4, last_error = ?5 \
                 WHERE chain_id = ?1 AND anchor_seq = ?2 AND status = 'pending' AND lease_owner = ?3",
            )?
            .execute(params![chain.as_str(), to_i64(anchor_seq, "anchor seq")?, owner, object_key, note])?;
        Ok(changed == 1)
    }
}

/// Now as Unix milliseconds, for lease times.
fn unix_millis() -> Result<i64, StoreError> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| {
            StoreError::OutOfRange(
                "the system clock is before 1970 or too far ahead: anchor leases cannot be timed"
                    .into(),
            )
        })
}

impl SqliteStore {
    /// The highest schema version applied, or `None` if the file holds no
    /// stele schema.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub(crate) fn schema_version(&self) -> Result<Option<i64>, StoreError> {
        Ok(schema_version_of(&self.conn)?)
    }
}

/// The highest schema version applied, or `None` if the file holds no stele schema.
fn schema_version_of(conn: &Connection) -> Result<Option<i64>, rusqlite::Error> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stele_schema')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM stele_schema",
        [],
        |r| r.get(0),
    )
    .map(Some)
}

/// A path as an SQLite URI path: `%`, `?` and `#` escaped.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.display().to_string().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

/// Switches a connection to WAL. Switching a new database's journal needs
/// it to itself for a moment, and SQLite reports "database is locked" at
/// once (its busy handler is not consulted for this) while another
/// process or thread opens the same new file: so it is tried again, for as
/// long as the busy timeout would have waited.
fn enable_wal(conn: &Connection) -> Result<String, rusqlite::Error> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use stele_ledger::append::{ChainAppender, ChainState};
    use stele_ledger::event::{EventInput, Limits, ValidEvent};
    use stele_ledger::{HmacKey, KeyId};

    use super::*;
    use crate::append::{build_run, concat_nodes};

    fn events(n: usize) -> Vec<ValidEvent> {
        (0..n)
            .map(|i| {
                EventInput {
                    event_type: format!("user.login.{}", i % 3),
                    actor: (i % 2 == 0).then(|| format!("user{i}")),
                    payload: (i % 5 != 0).then(|| serde_json::json!({ "i": i })),
                    idempotency_key: (i % 7 == 0).then(|| format!("k-{i}")),
                }
                .validate(&Limits::default())
                .unwrap()
            })
            .collect()
    }

    type Stored = (
        i64,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        Vec<u8>,
        Vec<u8>,
        Vec<u8>,
    );

    fn stored(store: &SqliteStore, chain: &ChainId) -> Vec<Stored> {
        store
            .conn
            .prepare("SELECT chain_index, ts, event_type, actor, payload, idempotency_key, key_id, leaf_hash, event_hash, merkle_nodes FROM audit_events WHERE chain_id = ?1 ORDER BY chain_index")
            .unwrap()
            .query_map([chain.as_str()], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Each statement binds the run's chain, time and key once and every
    /// row's own values after them: whole 64-row chunks and the statements
    /// of 32, 16, … rows for the rest store each row with its own values,
    /// the ones the owned append path computes for the same events.
    #[test]
    fn every_row_is_stored_with_its_own_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("ledger.db")).unwrap();
        let chain = ChainId::new("c").unwrap();
        let key = HmacKey::new(KeyId::new("k1").unwrap(), &[7; 32]);
        // Two whole chunks, then 32 + 8 + 4 + 2 + 1 rows.
        let n = 2 * INSERT_CHUNK + 47;
        let requests = vec![AppendRequest::new(chain.clone(), events(n), key.clone())];
        let now = crate::now();
        {
            let mut tx = SqliteTx(store.conn.transaction().unwrap());
            let mut results = vec![None];
            let run = build_run(
                &requests,
                &[0],
                &ChainState::empty(),
                &[],
                Vec::new(),
                now,
                &mut results,
            )
            .unwrap();
            assert_eq!(run.rows.len(), n);
            tx.insert(&run).unwrap();
            tx.0.commit().unwrap();
        }
        let mut appender =
            ChainAppender::new(chain.clone(), &ChainState::empty(), &[], &key).unwrap();
        let expected: Vec<Stored> = events(n)
            .into_iter()
            .map(|input| {
                let r = appender.append(input, now);
                (
                    i64::try_from(r.event.seq).unwrap(),
                    r.event.ts,
                    r.event.event_type,
                    r.event.actor,
                    r.event.payload,
                    r.event.idempotency_key,
                    r.event.key_id,
                    r.leaf_hash.0.to_vec(),
                    r.event_hash.0.to_vec(),
                    concat_nodes(&r.merkle_nodes),
                )
            })
            .collect();
        assert_eq!(stored(&store, &chain), expected);
    }
}
