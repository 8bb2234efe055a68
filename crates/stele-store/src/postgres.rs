//! The PostgreSQL backend, for production.
//!
//! Appends lock the chain's head row (`SELECT … FOR UPDATE`), so writers to
//! one chain serialize while other chains proceed; rows go in with binary
//! `COPY`. Sessions force `synchronous_commit = on`, so an acknowledged
//! append is on disk whatever the server's default.

use std::collections::HashMap;

use futures_util::StreamExt as _;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, GenericClient, Row, Transaction};
use stele_ledger::append::{AppendedEvent, ChainState, Receipt};
use stele_ledger::event::ValidEvent;
use stele_ledger::{ChainId, Event, Hash, HmacKey};

use crate::append::{AppendTx, append_locked, concat_nodes, empty_state, stored_hex};
use crate::migrate::{self, Migration, MigrationTx, StoredRow};
use crate::pg_copy::{CopyFields, CopyParser, Fed};
use crate::pg_tls::{self, PgTarget};
use crate::scan::{self, BatchSink};
use crate::{
    AnchorRecord, AnchorStatus, AnchorUpload, ChainHead, LedgerStore, StoreError, StoredRowVisitor,
    hash_from_bytes, hashes_from_rows, redact_url, seqs_for, state_of, to_i64, to_u64,
};

pub(crate) const EVENT_COLUMNS: &str = "chain_id, chain_index, ts, event_type, actor, payload, idempotency_key, key_id, leaf_hash, event_hash";

/// A ledger in a PostgreSQL database.
pub struct PostgresStore {
    client: Client,
    location: String,
    /// Where scans connect (see [`ScanConnection`]), and how.
    scan_target: PgTarget,
    scan_connection: Option<ScanConnection>,
    /// The exported snapshot of the open read snapshot (a `REPEATABLE
    /// READ, READ ONLY` transaction on `client`), which scans import.
    snapshot: Option<String>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .finish()
    }
}

impl PostgresStore {
    /// Connects and migrates. The URL's `sslmode` and `sslrootcert` say
    /// whether and how the connection is secured, as in libpq (`prefer` by
    /// default; `verify-full` checks the server's certificate and name).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidLocation`] for a malformed URL or TLS settings;
    /// [`StoreError::Open`] (the password is never shown); migration errors.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let mut store = Self::connect_session(url, false)?;
        let (synchronous_commit, fsync) = store.durability_settings()?;
        check_write_durability(&synchronous_commit, &fsync)
            .map_err(|reason| StoreError::open_refused(&store.location, reason))?;
        store.migrate()?;
        Ok(store)
    }

    /// `synchronous_commit` and `fsync` as this session sees them.
    fn durability_settings(&mut self) -> Result<(String, String), StoreError> {
        let show = |client: &mut postgres::Client, name: &str| -> Result<String, StoreError> {
            Ok(client.query_one(&format!("SHOW {name}"), &[])?.get(0))
        };
        Ok((
            show(&mut self.client, "synchronous_commit")?,
            show(&mut self.client, "fsync")?,
        ))
    }

    /// Connects for reading only (see [`open_read_only`](crate::open_read_only)):
    /// the session refuses writes, and the schema must already be current.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), and [`StoreError::Open`] for a
    /// database without a current stele schema.
    pub fn connect_read_only(url: &str) -> Result<Self, StoreError> {
        let mut store = Self::connect_session(url, true)?;
        let found = store.applied_version()?;
        migrate::check_read_only(&store.location, found)?;
        Ok(store)
    }

    /// Opens the main session and prepares the scan connection's target;
    /// `read_only` makes both sessions refuse writes from their start.
    fn connect_session(url: &str, read_only: bool) -> Result<Self, StoreError> {
        let location = redact_url(url);
        let open_err = |e: postgres::Error| StoreError::open_failed(&location, e.into());
        let mut target = pg_tls::target(url).map_err(|reason| StoreError::InvalidLocation {
            location: location.clone(),
            reason,
        })?;
        target.config.application_name("stele");
        if read_only {
            let options = target.config.get_options().unwrap_or_default();
            let options = format!("{options} -c default_transaction_read_only=on");
            target.config.options(options.trim_start());
        }
        let mut client = postgres::Config::from(target.config.clone())
            .connect(target.tls.clone())
            .map_err(open_err)?;
        client
            .batch_execute("SET synchronous_commit = on")
            .map_err(open_err)?;
        Ok(Self {
            client,
            location,
            scan_target: target,
            scan_connection: None,
            snapshot: None,
        })
    }

    /// The highest schema version applied, read without writing; `None`
    /// if the database has no stele schema yet.
    fn applied_version(&mut self) -> Result<Option<i64>, StoreError> {
        let exists: bool = self
            .client
            .query_one("SELECT to_regclass('stele_schema') IS NOT NULL", &[])?
            .get(0);
        if !exists {
            return Ok(None);
        }
        let version: i64 = self
            .client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM stele_schema", &[])?
            .get(0);
        Ok(Some(version))
    }

    /// Highest schema version applied.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub fn schema_version(&mut self) -> Result<i64, StoreError> {
        Ok(self.applied_version()?.unwrap_or(0))
    }

    /// Brings the schema up to date (see [`migrate`]). A current schema
    /// needs no write, so a read-only role (an auditor's) can open the
    /// ledger; otherwise one transaction holding an advisory lock, which
    /// serializes concurrent first starts.
    fn migrate(&mut self) -> Result<(), StoreError> {
        if migrate::pending(self.applied_version()?)?.is_empty() {
            return Ok(());
        }
        let mut tx = self.client.transaction()?;
        let migrated = (|| {
            // Released at commit or rollback.
            tx.execute("SELECT pg_advisory_xact_lock(7374656865)", &[])?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS stele_schema (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
            )?;
            migrate::apply_pending(&mut PgMigration(&mut tx))
        })();
        migrated.map_err(with_privilege_hint)?;
        tx.commit()?;
        Ok(())
    }
}

/// The migration transaction on PostgreSQL.
struct PgMigration<'t, 'c>(&'t mut Transaction<'c>);

impl MigrationTx for PgMigration<'_, '_> {
    fn backend(&self) -> &'static str {
        "PostgreSQL"
    }

    fn recorded_version(&mut self) -> Result<i64, StoreError> {
        Ok(self
            .0
            .query_one("SELECT COALESCE(MAX(version), 0) FROM stele_schema", &[])?
            .try_get(0)?)
    }

    fn apply(&mut self, m: &Migration) -> Result<(), StoreError> {
        self.0.batch_execute(m.postgres)?;
        self.0.execute(
            "INSERT INTO stele_schema (version) VALUES ($1)",
            &[&m.version],
        )?;
        Ok(())
    }
}

/// A migration refused for lack of privilege (`42501`, creating a table or
/// altering one this role does not own) says what is going on: the role
/// opening the ledger is not the one that writes it.
pub(crate) fn with_privilege_hint(e: StoreError) -> StoreError {
    match e {
        StoreError::Postgres {
            message,
            sqlstate,
            retryable,
        } if sqlstate.as_deref() == Some("42501") => StoreError::Postgres {
            message: format!(
                "{message}; the ledger's tables are missing or out of date and this role \
                 may not create them: open the ledger once with the role that writes it"
            ),
            sqlstate,
            retryable,
        },
        other => other,
    }
}

pub(crate) fn event_from_row(r: &Row) -> Result<Event, StoreError> {
    let chain_id: String = r.try_get(0)?;
    let seq: i64 = r.try_get(1)?;
    Ok(Event {
        seq: StoredRow::Event {
            chain: &chain_id,
            seq,
        }
        .unsigned("chain_index", seq)?,
        ts: r.try_get(2)?,
        event_type: r.try_get(3)?,
        actor: r.try_get(4)?,
        payload: r.try_get(5)?,
        idempotency_key: r.try_get(6)?,
        key_id: r.try_get(7)?,
        leaf_hash: stored_hex(r.try_get(8)?),
        event_hash: stored_hex(r.try_get(9)?),
        chain_id,
    })
}

/// The connection scans read through: a `tokio-postgres` client of its own
/// on a current-thread runtime. The whole `COPY` runs inside one
/// `block_on` on the scan's reader thread, so each row costs a message
/// parse, not a trip through the synchronous client's runtime (which
/// enters and leaves its runtime once per message, most of the reader's
/// time). The connection is kept for the next scan.
struct ScanConnection {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl ScanConnection {
    fn connect(target: &PgTarget) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::postgres_local(format!("starting the scan runtime: {e}")))?;
        let (client, connection) = runtime.block_on(target.config.connect(target.tls.clone()))?;
        // Runs whenever the runtime is driven, i.e. during a scan; its end
        // (the server closed the connection) shows as errors on `client`.
        runtime.spawn(connection);
        Ok(Self { runtime, client })
    }

    /// Whether the kept connection still answers: the server may have
    /// closed it while it sat idle (a restart, `idle_session_timeout`),
    /// which shows only once the connection is driven. One empty query.
    fn is_alive(&self) -> bool {
        !self.client.is_closed() && self.runtime.block_on(self.client.batch_execute("")).is_ok()
    }
}

/// Reads the rows of a scan into `sink` through one binary `COPY`: the
/// server streams rows without a protocol round trip or a result row
/// object per row, and the fields are copied once, from the wire.
///
/// With `snapshot` (an exported snapshot id), the `COPY` runs in a
/// `REPEATABLE READ, READ ONLY` transaction that imports it, so it reads
/// exactly the state the main session's open snapshot reads.
fn read_rows(
    scan: &ScanConnection,
    snapshot: Option<&str>,
    chain: &ChainId,
    from: u64,
    to: Option<u64>,
    sink: &mut BatchSink,
) -> Result<(), StoreError> {
    let sql = crate::pg_copy::scan_sql(chain, from, to)?;
    let chain_id = chain.as_str().as_bytes();
    let mut push_row = |fields: &CopyFields<'_>| crate::pg_copy::push_row(chain_id, fields, sink);
    let import = snapshot
        .map(|id| {
            check_snapshot_id(id).map(|()| {
                format!(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '{id}'"
                )
            })
        })
        .transpose()?;
    scan.runtime.block_on(async {
        if let Some(import) = &import {
            scan.client.batch_execute(import).await?;
        }
        let messages = scan.client.copy_out(sql.as_str()).await?;
        let mut messages = std::pin::pin!(messages);
        let mut parser = CopyParser::default();
        while let Some(message) = messages.next().await {
            match parser.feed(&message?, &mut push_row)? {
                Fed::More => {}
                // The visiting side stopped; its error is the one reported.
                Fed::Stopped => return Ok(()),
                Fed::End => {
                    // Read to the end, so a server error after the data shows.
                    while let Some(message) = messages.next().await {
                        message?;
                    }
                    if import.is_some() {
                        scan.client.batch_execute("COMMIT").await?;
                    }
                    return Ok(());
                }
            }
        }
        Err(crate::pg_copy::truncated())
    })
}

/// An exported snapshot id goes into SQL text (`SET TRANSACTION SNAPSHOT`
/// takes no bind parameter): only the server's own spelling
/// (`00000003-0000001B-1`, hex digits and dashes) is accepted.
fn check_snapshot_id(id: &str) -> Result<(), StoreError> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Ok(());
    }
    Err(StoreError::postgres_local(format!(
        "the server exported a snapshot id that is not one: {:?}",
        id.chars().take(64).collect::<String>()
    )))
}

fn read_head(
    client: &mut impl GenericClient,
    chain: &str,
    for_update: bool,
) -> Result<Option<ChainHead>, StoreError> {
    let sql = if for_update {
        "SELECT chain_id, tree_size, head_hash, last_ts FROM stele_chains WHERE chain_id = $1 FOR UPDATE"
    } else {
        "SELECT chain_id, tree_size, head_hash, last_ts FROM stele_chains WHERE chain_id = $1"
    };
    client
        .query_opt(sql, &[&chain])?
        .map(|r| head_from_row(&r))
        .transpose()
}

pub(crate) fn head_from_row(r: &Row) -> Result<ChainHead, StoreError> {
    let chain_id: String = r.try_get(0)?;
    Ok(ChainHead {
        size: StoredRow::Head { chain: &chain_id }.unsigned("tree_size", r.try_get(1)?)?,
        head_hash: hash_from_bytes(r.try_get(2)?, "chain head hash")?,
        last_ts: r.try_get(3)?,
        chain_id,
    })
}

fn read_hashes(
    client: &mut impl GenericClient,
    chain: &ChainId,
    indexes: &[u64],
) -> Result<Vec<Hash>, StoreError> {
    let seqs: Vec<i64> = seqs_for(indexes)
        .into_iter()
        .map(|s| to_i64(s, "seq"))
        .collect::<Result<_, _>>()?;
    let mut rows = HashMap::with_capacity(seqs.len());
    for r in client.query(
        "SELECT chain_index, leaf_hash, merkle_nodes FROM audit_events WHERE chain_id = $1 AND chain_index = ANY($2)",
        &[&chain.as_str(), &seqs],
    )? {
        let seq = to_u64(r.try_get(0)?, "seq")?;
        rows.insert(seq, (r.try_get::<_, Vec<u8>>(1)?, r.try_get::<_, Vec<u8>>(2)?));
    }
    hashes_from_rows(chain, indexes, &rows)
}

pub(crate) const ANCHOR_COLUMNS: &str = "chain_id, anchor_seq, trigger, tree_size, ts_utc, object_key, body, status, attempts, last_error, location, version_id, lock_mode, retain_until, uploaded_at";

pub(crate) fn anchor_from_row(r: &Row) -> Result<AnchorRecord, StoreError> {
    let chain_id: String = r.try_get(0)?;
    let anchor_seq: i64 = r.try_get(1)?;
    let row = StoredRow::Anchor {
        chain: &chain_id,
        anchor_seq,
    };
    Ok(AnchorRecord {
        anchor_seq: row.unsigned("anchor_seq", anchor_seq)?,
        trigger: r.try_get(2)?,
        tree_size: row.unsigned("tree_size", r.try_get(3)?)?,
        ts_utc: r.try_get(4)?,
        object_key: r.try_get(5)?,
        body: r.try_get(6)?,
        status: AnchorStatus::parse(r.try_get(7)?)?,
        attempts: row.unsigned("attempts", r.try_get(8)?)?,
        last_error: r.try_get(9)?,
        location: r.try_get(10)?,
        version_id: r.try_get(11)?,
        lock_mode: r.try_get(12)?,
        retain_until: r.try_get(13)?,
        uploaded_at: r.try_get(14)?,
        chain_id,
    })
}

struct PgTx<'a>(Transaction<'a>);

impl AppendTx for PgTx<'_> {
    fn lock_chain(&mut self, chain: &ChainId) -> Result<ChainState, StoreError> {
        self.0.execute(
            "INSERT INTO stele_chains (chain_id, tree_size, head_hash) VALUES ($1, 0, $2) ON CONFLICT (chain_id) DO NOTHING",
            &[&chain.as_str(), &&empty_state().head_hash.0[..]],
        )?;
        let head = read_head(&mut self.0, chain.as_str(), true)?
            .ok_or_else(|| StoreError::Corrupt("chain head vanished".into()))?;
        state_of(&head)
    }

    fn read_hashes(&mut self, chain: &ChainId, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        read_hashes(&mut self.0, chain, indexes)
    }

    fn find_by_idempotency_keys(
        &mut self,
        chain: &ChainId,
        keys: &[String],
    ) -> Result<Vec<Event>, StoreError> {
        self.0
            .query(
                &format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE chain_id = $1 AND idempotency_key = ANY($2)"),
                &[&chain.as_str(), &keys],
            )?
            .iter()
            .map(event_from_row)
            .collect()
    }

    fn insert(&mut self, chain: &ChainId, rows: &[AppendedEvent]) -> Result<(), StoreError> {
        let sink = self.0.copy_in(&format!(
            "COPY audit_events ({EVENT_COLUMNS}, merkle_nodes) FROM STDIN BINARY"
        ))?;
        let types = [
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::BYTEA,
            Type::BYTEA,
            Type::BYTEA,
        ];
        let mut w = BinaryCopyInWriter::new(sink, &types);
        for row in rows {
            let e = &row.event;
            let seq = to_i64(e.seq, "seq")?;
            let nodes = concat_nodes(&row.merkle_nodes);
            let values: [&(dyn ToSql + Sync); 11] = [
                &chain.as_str(),
                &seq,
                &e.ts,
                &e.event_type,
                &e.actor,
                &e.payload,
                &e.idempotency_key,
                &e.key_id,
                &&row.leaf_hash.0[..],
                &&row.event_hash.0[..],
                &nodes,
            ];
            w.write(&values)?;
        }
        w.finish()?;
        Ok(())
    }

    fn set_head(&mut self, chain: &ChainId, state: &ChainState) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE stele_chains SET tree_size = $2, head_hash = $3, last_ts = $4 WHERE chain_id = $1",
            &[
                &chain.as_str(),
                &to_i64(state.size, "tree size")?,
                &&state.head_hash.0[..],
                &state.last_ts.map(|t| t.to_string()),
            ],
        )?;
        Ok(())
    }
}

/// Whether a session with these settings may append: an append is
/// acknowledged after its commit, so the commit must reach the disk. A server
/// with `fsync=off` can lose acknowledged events in a power failure or OS
/// crash, and no session setting fixes that: refused for writing (reading
/// and verifying still work).
pub(crate) fn check_write_durability(synchronous_commit: &str, fsync: &str) -> Result<(), String> {
    if fsync != "on" {
        return Err(format!(
            "the PostgreSQL server runs with fsync={fsync}: acknowledged events could be lost in a \
             crash, so stele refuses to write to it; set fsync = on in postgresql.conf (reading \
             and verifying still work)"
        ));
    }
    if synchronous_commit != "on" {
        return Err(format!(
            "the session's synchronous_commit is {synchronous_commit} although stele set it to on \
             (is a pooler rewriting settings?): an append could be acknowledged before it is durable"
        ));
    }
    Ok(())
}

impl LedgerStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn durability(&mut self) -> Result<Vec<(&'static str, String)>, StoreError> {
        let (synchronous_commit, fsync) = self.durability_settings()?;
        Ok(vec![
            ("synchronous_commit", synchronous_commit),
            ("fsync", fsync),
        ])
    }

    fn append(
        &mut self,
        chain: &ChainId,
        events: Vec<ValidEvent>,
        key: &HmacKey,
    ) -> Result<Vec<Receipt>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        if self.snapshot.is_some() {
            return Err(StoreError::AppendInReadSnapshot);
        }
        let mut tx = PgTx(self.client.transaction()?);
        let receipts = append_locked(&mut tx, chain, events, key)?;
        tx.0.commit()?;
        Ok(receipts)
    }

    fn chains(&mut self) -> Result<Vec<ChainHead>, StoreError> {
        self.client
            .query(
                "SELECT chain_id, tree_size, head_hash, last_ts FROM stele_chains WHERE tree_size > 0 ORDER BY chain_id",
                &[],
            )?
            .iter()
            .map(head_from_row)
            .collect()
    }

    fn head(&mut self, chain: &ChainId) -> Result<Option<ChainHead>, StoreError> {
        Ok(read_head(&mut self.client, chain.as_str(), false)?.filter(|h| h.size > 0))
    }

    fn scan_stored(
        &mut self,
        chain: &ChainId,
        from: u64,
        to: Option<u64>,
        visit: &mut StoredRowVisitor<'_>,
    ) -> Result<(), StoreError> {
        let connection = match self.scan_connection.take() {
            Some(connection) if connection.is_alive() => connection,
            _ => ScanConnection::connect(&self.scan_target)?,
        };
        let snapshot = self.snapshot.as_deref();
        let scanned = scan::pipelined(
            |sink| read_rows(&connection, snapshot, chain, from, to, sink),
            visit,
        );
        // A scan that stopped early leaves the rest of its COPY on the
        // connection; a new connection is cheaper than reading that out.
        if scanned.is_ok() {
            self.scan_connection = Some(connection);
        }
        scanned
    }

    fn read_hashes(&mut self, chain: &ChainId, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        read_hashes(&mut self.client, chain, indexes)
    }

    fn head_with_lsn(
        &mut self,
        chain: &ChainId,
    ) -> Result<(Option<ChainHead>, Option<String>), StoreError> {
        // One statement, one snapshot: the LSN and the head are read together.
        let row = self.client.query_one(
            "SELECT pg_current_wal_lsn()::text, c.chain_id, c.tree_size, c.head_hash, c.last_ts
               FROM (SELECT 1) AS one LEFT JOIN stele_chains c ON c.chain_id = $1",
            &[&chain.as_str()],
        )?;
        let lsn: Option<String> = row.try_get(0)?;
        let head = match row.try_get::<_, Option<String>>(1)? {
            None => None,
            Some(chain_id) => Some(ChainHead {
                size: StoredRow::Head { chain: &chain_id }
                    .unsigned("tree_size", row.try_get(2)?)?,
                head_hash: hash_from_bytes(row.try_get(3)?, "chain head hash")?,
                last_ts: row.try_get(4)?,
                chain_id,
            }),
        };
        Ok((head.filter(|h| h.size > 0), lsn))
    }

    fn begin_read_snapshot(&mut self) -> Result<bool, StoreError> {
        if self.snapshot.is_some() {
            return Ok(false);
        }
        // The first statement of a REPEATABLE READ transaction fixes its
        // snapshot; exporting it lets the scan connection read the same one.
        // Works in a read-only transaction and for a role that may only SELECT.
        // The session idles in the transaction while the scan connection
        // reads: a server's idle_in_transaction_session_timeout must not end it.
        self.client.batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
             SET LOCAL idle_in_transaction_session_timeout = 0",
        )?;
        let exported = self
            .client
            .query_one("SELECT pg_export_snapshot()", &[])
            .map_err(StoreError::from)
            .and_then(|row| {
                let id: String = row.try_get(0)?;
                check_snapshot_id(&id)?;
                Ok(id)
            });
        match exported {
            Ok(id) => {
                self.snapshot = Some(id);
                Ok(true)
            }
            Err(e) => {
                let _ = self.client.batch_execute("ROLLBACK");
                Err(e)
            }
        }
    }

    fn end_read_snapshot(&mut self) -> Result<(), StoreError> {
        if self.snapshot.take().is_none() {
            return Ok(());
        }
        // Nothing was written: ending the transaction only releases the snapshot.
        self.client.batch_execute("ROLLBACK")?;
        Ok(())
    }

    fn insert_anchor(&mut self, a: &AnchorRecord) -> Result<(), StoreError> {
        let result = self.client.execute(
            "INSERT INTO stele_anchors (chain_id, anchor_seq, trigger, tree_size, ts_utc, object_key, body, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8)",
            &[
                &a.chain_id,
                &to_i64(a.anchor_seq, "anchor seq")?,
                &a.trigger,
                &to_i64(a.tree_size, "tree size")?,
                &a.ts_utc,
                &a.object_key,
                &a.body,
                &crate::now().to_string(),
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
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
        self.client
            .query(
                &format!("SELECT {ANCHOR_COLUMNS} FROM stele_anchors WHERE ($1::text IS NULL OR chain_id = $1) AND ($2::text IS NULL OR status = $2) ORDER BY chain_id, anchor_seq"),
                &[&chain, &status],
            )?
            .iter()
            .map(anchor_from_row)
            .collect()
    }

    fn last_anchor(&mut self, chain: &ChainId) -> Result<Option<AnchorRecord>, StoreError> {
        self.client
            .query_opt(
                &format!("SELECT {ANCHOR_COLUMNS} FROM stele_anchors WHERE chain_id = $1 ORDER BY anchor_seq DESC LIMIT 1"),
                &[&chain.as_str()],
            )?
            .as_ref()
            .map(anchor_from_row)
            .transpose()
    }

    fn lease_anchor(
        &mut self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        // One autocommit UPDATE: a concurrent claimer blocks on the row, then
        // re-checks the lease and finds it taken. No transaction spans the upload.
        // The holder may take its own lease again (after a failed outcome write).
        let granted = self.client.execute(
            "UPDATE stele_anchors SET lease_owner = $3, lease_until = now() + make_interval(secs => $4), attempts = attempts + 1 \
             WHERE chain_id = $1 AND anchor_seq = $2 AND status = 'pending' \
             AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $3) \
             AND NOT EXISTS (SELECT 1 FROM stele_anchors e WHERE e.chain_id = $1 AND e.anchor_seq < $2 AND e.status = 'pending')",
            &[
                &chain.as_str(),
                &to_i64(anchor_seq, "anchor seq")?,
                &owner,
                &ttl.as_secs_f64(),
            ],
        )?;
        Ok(granted == 1)
    }

    fn mark_anchor_uploaded(
        &mut self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        u: &AnchorUpload,
    ) -> Result<bool, StoreError> {
        let changed = self.client.execute(
            "UPDATE stele_anchors SET status = $4, location = $5, version_id = $6, lock_mode = $7, retain_until = $8, uploaded_at = $9, last_error = NULL, lease_owner = NULL, lease_until = NULL \
             WHERE chain_id = $1 AND anchor_seq = $2 AND status = 'pending' AND lease_owner = $3",
            &[
                &chain.as_str(),
                &to_i64(anchor_seq, "anchor seq")?,
                &owner,
                &u.status.as_str(),
                &u.location,
                &u.version_id,
                &u.lock_mode,
                &u.retain_until,
                &crate::now().to_string(),
            ],
        )?;
        Ok(changed == 1)
    }

    fn record_anchor_failure(
        &mut self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        error: &str,
    ) -> Result<bool, StoreError> {
        let changed = self.client.execute(
            "UPDATE stele_anchors SET last_error = $4, lease_owner = NULL, lease_until = NULL \
             WHERE chain_id = $1 AND anchor_seq = $2 AND status = 'pending' AND lease_owner = $3",
            &[
                &chain.as_str(),
                &to_i64(anchor_seq, "anchor seq")?,
                &owner,
                &error,
            ],
        )?;
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
        let changed = self.client.execute(
            "UPDATE stele_anchors SET object_key = $4, last_error = $5 \
             WHERE chain_id = $1 AND anchor_seq = $2 AND status = 'pending' AND lease_owner = $3",
            &[
                &chain.as_str(),
                &to_i64(anchor_seq, "anchor seq")?,
                &owner,
                &object_key,
                &note,
            ],
        )?;
        Ok(changed == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scan connection is kept between scans; one the server closed
    /// in between is replaced, not reported as a failed scan.
    #[cfg(feature = "testkit")]
    #[test]
    fn a_scan_connection_closed_by_the_server_is_replaced() {
        crate::testkit::live_or_skip!(Postgres);
        let db = crate::testkit::TestDb::postgres();
        let mut store = crate::open(&db.location).unwrap();
        db.exec(
            "INSERT INTO audit_events VALUES ('c', 0, 'ts', 't', NULL, NULL, NULL, 'k1', '\\x00', '\\x00', '\\x')",
        );
        let chain = ChainId::new("c").unwrap();
        let count = |store: &mut Box<dyn LedgerStore>| {
            let mut rows = 0;
            store
                .scan_stored(&chain, 0, None, &mut |_, _| {
                    rows += 1;
                    Ok(())
                })
                .map(|()| rows)
        };
        assert_eq!(count(&mut store).unwrap(), 1);
        db.exec(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        );
        assert_eq!(count(&mut store).unwrap(), 1);
    }
}
