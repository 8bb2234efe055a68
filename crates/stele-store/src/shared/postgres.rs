//! PostgreSQL under a shared [`Store`](super::Store): `tokio-postgres`
//! connections in a `deadpool` pool, every session with
//! `synchronous_commit = on`; a committer task takes the append queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use stele_ledger::{ChainId, Event, Hash, merkle};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::GenericClient;

use super::{Counters, Durability, GroupFailure, Pending, StoreOptions, take_group};
use crate::append::stored_hex;
use crate::append::{
    AppendRequest, RequestResults, RunRows, build_run, collect_results, concat_nodes, empty_state,
    plan_runs, run_idempotency_keys,
};
use crate::hash_from_bytes;
use crate::migrate::{self, AnchorRow, StoredRow};
use crate::pg_tls;
use crate::{
    AnchorRecord, AnchorStatus, AnchorUpload, ChainHead, StoreError, hashes_from_rows, redact_url,
    seqs_for, state_of, to_i64, to_u64,
};
use stele_anchor::{LockMode, retain_until_text};
use tokio_postgres::Row;

const EVENT_COLUMNS: &str = "chain_id, chain_index, ts, event_type, actor, payload, idempotency_key, key_id, leaf_hash, event_hash";

const ANCHOR_COLUMNS: &str = "chain_id, anchor_seq, trigger, tree_size, ts_utc, object_key, body, status, attempts, last_error, location, version_id, lock_mode, retain_until, uploaded_at";

/// A migration refused for lack of privilege (`42501`, creating a table or
/// altering one this role does not own) says what is going on: the role
/// opening the ledger is not the one that writes it.
fn with_privilege_hint(e: StoreError) -> StoreError {
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

fn event_from_row(r: &Row) -> Result<Event, StoreError> {
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

fn head_from_row(r: &Row) -> Result<ChainHead, StoreError> {
    let chain_id: String = r.try_get(0)?;
    Ok(ChainHead {
        size: StoredRow::Head { chain: &chain_id }.unsigned("tree_size", r.try_get(1)?)?,
        head_hash: hash_from_bytes(r.try_get(2)?, "chain head hash")?,
        last_ts: r.try_get(3)?,
        chain_id,
    })
}

fn anchor_from_row(r: &Row) -> Result<AnchorRecord, StoreError> {
    AnchorRow {
        chain_id: r.try_get(0)?,
        anchor_seq: r.try_get(1)?,
        trigger: r.try_get(2)?,
        tree_size: r.try_get(3)?,
        ts_utc: r.try_get(4)?,
        object_key: r.try_get(5)?,
        body: r.try_get(6)?,
        status: r.try_get(7)?,
        attempts: r.try_get(8)?,
        last_error: r.try_get(9)?,
        location: r.try_get(10)?,
        version_id: r.try_get(11)?,
        lock_mode: r.try_get(12)?,
        retain_until: r.try_get(13)?,
        uploaded_at: r.try_get(14)?,
    }
    .typed()
}

/// Whether a session with these settings may append: an append is
/// acknowledged after its commit, so the commit must reach the disk. A server
/// with `fsync=off` can lose acknowledged events in a power failure or OS
/// crash, and no session setting fixes that: refused for writing (reading
/// and verifying still work).
fn check_write_durability(synchronous_commit: &str, fsync: &str) -> Result<(), String> {
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

/// How long a new connection may take (unless the URL sets `connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long sent bytes may stay unacknowledged before the connection counts
/// as lost (unless the URL sets `tcp_user_timeout`).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// What a new session may take beyond its TCP connects (TLS, authentication).
const SESSION_SETUP_ALLOWANCE: Duration = Duration::from_secs(10);
/// How long a caller waits for a pooled connection when all are busy.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The pool every read and the committer draw connections from.
pub(super) struct Pool {
    pool: deadpool_postgres::Pool,
    location: String,
}

impl Pool {
    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| pool_error(&self.location, e))
    }

    pub(super) async fn chains(&self) -> Result<Vec<ChainHead>, StoreError> {
        read_chains(&**self.client().await?).await
    }

    pub(super) async fn schema_version(&self) -> Result<Option<i64>, StoreError> {
        applied_version(&**self.client().await?).await
    }

    pub(super) async fn head(&self, chain: &ChainId) -> Result<Option<ChainHead>, StoreError> {
        let client = self.client().await?;
        Ok(read_head(&**client, chain, false)
            .await?
            .filter(|h| h.size > 0))
    }

    pub(super) async fn event(&self, chain: &ChainId, seq: u64) -> Result<Event, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM audit_events WHERE chain_id = $1 AND chain_index = $2"
                ),
                &[&chain.as_str(), &to_i64(seq, "seq")?],
            )
            .await?;
        if let Some(row) = row {
            return event_from_row(&row);
        }
        let head = read_head(&**client, chain, false)
            .await?
            .filter(|h| h.size > 0)
            .ok_or_else(|| StoreError::UnknownChain(chain.to_string()))?;
        Err(StoreError::OutOfRange(format!(
            "chain {chain:?} has no event with seq {seq} (it has {} events)",
            head.size
        )))
    }
}

impl Pool {
    pub(super) async fn events(
        &self,
        chain: &ChainId,
        from: u64,
        to: u64,
    ) -> Result<Vec<Event>, StoreError> {
        self.client()
            .await?
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM audit_events WHERE chain_id = $1 AND chain_index BETWEEN $2 AND $3 ORDER BY chain_index"
                ),
                &[
                    &chain.as_str(),
                    &to_i64(from, "seq")?,
                    &to_i64(to.min(i64::MAX as u64), "seq")?,
                ],
            )
            .await?
            .iter()
            .map(event_from_row)
            .collect()
    }

    pub(super) async fn anchors(
        &self,
        chain: Option<&ChainId>,
        status: Option<AnchorStatus>,
    ) -> Result<Vec<AnchorRecord>, StoreError> {
        read_anchors(&**self.client().await?, chain, status).await
    }

    /// `size`, or the head's size if `None`, checked to be within the chain.
    pub(super) async fn checked_size(
        &self,
        chain: &ChainId,
        size: Option<u64>,
    ) -> Result<u64, StoreError> {
        crate::size_within(chain, self.head(chain).await?, size)
    }

    /// Runs a tlog computation over this chain's stored hashes (see
    /// [`super::FetchedHashes`]).
    pub(super) async fn with_hashes<T>(
        &self,
        chain: &ChainId,
        compute: impl Fn(&super::FetchedHashes) -> Result<T, stele_ledger::merkle::MerkleError>,
    ) -> Result<T, StoreError> {
        let client = self.client().await?;
        let mut fetched = super::FetchedHashes::default();
        loop {
            match fetched.run(&compute)? {
                super::Pass::Done(value) => return Ok(value),
                super::Pass::Needs(indexes) => {
                    let hashes = read_hashes(&**client, chain, &indexes).await?;
                    fetched.add(indexes, hashes);
                }
            }
        }
    }
}

/// One failure to get a connection, told to each caller of a group.
fn same_failure(e: &StoreError) -> StoreError {
    match e {
        StoreError::Postgres {
            message,
            sqlstate,
            retryable,
        } => StoreError::Postgres {
            message: message.clone(),
            sqlstate: sqlstate.clone(),
            retryable: *retryable,
        },
        other => StoreError::Postgres {
            message: other.to_string(),
            sqlstate: other.sqlstate().map(str::to_owned),
            retryable: other.is_retryable(),
        },
    }
}

fn pool_error(location: &str, e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => e.into(),
        deadpool_postgres::PoolError::Timeout(waiting) => StoreError::Postgres {
            message: format!(
                "no connection to {location} within its time limit ({}): the database is unreachable or every pooled connection stayed busy",
                match waiting {
                    deadpool_postgres::TimeoutType::Wait => "waiting for a free pooled connection",
                    deadpool_postgres::TimeoutType::Create
                    | deadpool_postgres::TimeoutType::Recycle => "connecting",
                }
            ),
            sqlstate: None,
            retryable: true,
        },
        other => StoreError::Postgres {
            message: format!("no connection to {location}: {other}"),
            sqlstate: None,
            retryable: true,
        },
    }
}

/// Migrates and checks durability (as a writing open always does), builds
/// the pool, and spawns the committer on the current runtime.
pub(super) async fn start(
    url: &str,
    options: StoreOptions,
    queue: mpsc::Receiver<Pending>,
    counters: Arc<Counters>,
    done: oneshot::Sender<()>,
) -> Result<(Pool, Durability), StoreError> {
    let pool = build_pool(url, &options, false)?;
    let durability = {
        let mut client = pool
            .client()
            .await
            .map_err(|e| StoreError::open_failed(&pool.location, e))?;
        let durability = read_durability(&**client).await?;
        let setting = |name: &str| {
            durability
                .iter()
                .find(|(n, _)| *n == name)
                .map_or("", |(_, v)| v.as_str())
        };
        check_write_durability(setting("synchronous_commit"), setting("fsync"))
            .map_err(|reason| StoreError::open_refused(&pool.location, reason))?;
        migrate(&mut client).await?;
        durability
    };
    let committer = Pool {
        pool: pool.pool.clone(),
        location: pool.location.clone(),
    };
    tokio::spawn(run_committer(committer, options, queue, counters, done));
    Ok((pool, durability))
}

/// Builds the pool of a read-only store (every session refuses writes from
/// its start; an auditor's role that may only `SELECT` works) and checks
/// that the ledger's schema is the one this stele reads, migrating nothing.
pub(super) async fn start_read_only(
    url: &str,
    options: &StoreOptions,
) -> Result<(Pool, Durability), StoreError> {
    let pool = build_pool(url, options, true)?;
    let client = pool
        .client()
        .await
        .map_err(|e| StoreError::open_failed(&pool.location, e))?;
    migrate::check_read_only(&pool.location, applied_version(&**client).await?)?;
    let durability = read_durability(&**client).await?;
    drop(client);
    Ok((pool, durability))
}

/// A pool whose every session commits durably, whatever the server's
/// default, and with `read_only` refuses writes.
fn build_pool(url: &str, options: &StoreOptions, read_only: bool) -> Result<Pool, StoreError> {
    let location = redact_url(url);
    let mut target = pg_tls::target(url).map_err(|reason| StoreError::InvalidLocation {
        location: location.clone(),
        reason,
    })?;
    target.config.application_name("stele");
    // Without these a blackholed server or a cut network would leave a
    // connect, or a commit whose bytes are never acknowledged, waiting for
    // the kernel's retransmissions (many minutes). A URL's own values win.
    if target.config.get_connect_timeout().is_none() {
        target.config.connect_timeout(CONNECT_TIMEOUT);
    }
    if target.config.get_tcp_user_timeout().is_none() {
        target.config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    let mut options_text = target.config.get_options().unwrap_or_default().to_owned();
    options_text.push_str(" -c synchronous_commit=on");
    if read_only {
        options_text.push_str(" -c default_transaction_read_only=on");
    }
    target.config.options(options_text.trim_start());
    // A whole new session — each host in turn, then TLS and authentication
    // on the one that answers — within the connect limit per host and a
    // little more, so that a second host is still tried after the first
    // timed out.
    let hosts = u32::try_from(target.config.get_hosts().len().max(1)).unwrap_or(u32::MAX);
    let session_timeout = target
        .config
        .get_connect_timeout()
        .copied()
        .unwrap_or(CONNECT_TIMEOUT)
        .saturating_mul(hosts)
        .saturating_add(SESSION_SETUP_ALLOWANCE);
    let manager = Manager::from_config(
        target.config,
        target.tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(options.readers.max(1) + 1)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .create_timeout(Some(session_timeout))
        .build()
        .map_err(|e| {
            StoreError::open_refused(&location, format!("cannot build the connection pool: {e}"))
        })?;
    Ok(Pool { pool, location })
}

/// `synchronous_commit` and `fsync` as a session of this pool sees them.
async fn read_durability(client: &impl GenericClient) -> Result<Durability, StoreError> {
    let mut settings = Vec::new();
    for name in ["synchronous_commit", "fsync"] {
        let value: String = client
            .query_one(&format!("SHOW {name}"), &[])
            .await?
            .try_get(0)?;
        settings.push((name, value));
    }
    Ok(settings)
}

/// The highest schema version applied, read without writing; `None` if the
/// database has no stele schema yet.
async fn applied_version(client: &impl GenericClient) -> Result<Option<i64>, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('stele_schema') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(None);
    }
    Ok(Some(
        client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM stele_schema", &[])
            .await?
            .try_get(0)?,
    ))
}

/// Brings the schema up to date (see [`migrate`](crate::migrate)). A
/// current schema needs no write; otherwise one transaction holding an
/// advisory lock, which serializes concurrent first starts, re-reads the
/// recorded version under the lock and applies what is still pending.
async fn migrate(client: &mut deadpool_postgres::Client) -> Result<(), StoreError> {
    if migrate::pending(applied_version(&***client).await?)?.is_empty() {
        return Ok(());
    }
    let tx = client.transaction().await?;
    let migrated = async {
        // Released at commit or rollback.
        tx.execute("SELECT pg_advisory_xact_lock(7374656865)", &[])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS stele_schema (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        let recorded: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM stele_schema", &[])
            .await?
            .try_get(0)?;
        for m in migrate::pending(Some(recorded))? {
            tracing::info!(version = m.version, name = m.name, backend = "PostgreSQL", "applying schema migration");
            tx.batch_execute(m.postgres).await?;
            tx.execute("INSERT INTO stele_schema (version) VALUES ($1)", &[&m.version])
                .await?;
        }
        Ok::<_, StoreError>(())
    }
    .await;
    migrated.map_err(with_privilege_hint)?;
    tx.commit().await?;
    Ok(())
}

async fn run_committer(
    pool: Pool,
    options: StoreOptions,
    mut queue: mpsc::Receiver<Pending>,
    counters: Arc<Counters>,
    done: oneshot::Sender<()>,
) {
    while let Some(first) = queue.recv().await {
        let group = take_group(first, &mut queue, &options);
        commit_group(&pool, group, &counters).await;
    }
    let _ = done.send(());
}

/// Commits one group in one transaction. A failure before the commit was
/// sent wrote nothing, so each append is tried again alone and a bad one
/// fails alone; a failure of the commit itself may have committed, so
/// every caller gets the error (with idempotency keys a retry is safe).
async fn commit_group(pool: &Pool, group: Vec<Pending>, counters: &Counters) {
    let (requests, replies): (Vec<AppendRequest>, Vec<_>) =
        group.into_iter().map(|p| (p.request, p.reply)).unzip();
    match append_requests(pool, &requests).await {
        Ok(results) => {
            counters.committed(&results);
            super::reply_all(replies, results);
        }
        Err(GroupFailure::AtCommit(e)) => {
            counters.failed(requests.len() as u64);
            super::commit_outcome_unknown(replies, &e.to_string());
        }
        Err(GroupFailure::NoConnection(e)) => {
            // Trying each append alone would wait for a connection again,
            // once per append, while the queue fills: every caller is told
            // at once, and may retry (nothing was written).
            fail_without_connection(replies, &e, counters);
        }
        Err(GroupFailure::BeforeCommit(e)) if requests.len() == 1 => {
            counters.failed(1);
            super::reply_all(replies, vec![Err(e)]);
        }
        Err(GroupFailure::BeforeCommit(e)) => {
            tracing::warn!(appends = requests.len(), error = %e, "a group commit failed; committing its appends one by one");
            let mut appends = requests.into_iter().zip(replies);
            while let Some((request, reply)) = appends.next() {
                match append_requests(pool, std::slice::from_ref(&request)).await {
                    Ok(results) => {
                        counters.committed(&results);
                        super::reply_all(vec![reply], results);
                    }
                    Err(GroupFailure::AtCommit(e)) => {
                        counters.failed(1);
                        let _ = reply.send(Err(StoreError::CommitOutcomeUnknown {
                            message: e.to_string(),
                        }));
                    }
                    Err(GroupFailure::BeforeCommit(e)) => {
                        counters.failed(1);
                        let _ = reply.send(Err(e));
                    }
                    Err(GroupFailure::NoConnection(e)) => {
                        // The group failed on a connection that was already
                        // lost (a pooled session the server had ended), and
                        // now no new one can be had: the rest would each
                        // wait out the limit again, so they fail with it.
                        let rest = std::iter::once(reply).chain(appends.by_ref().map(|(_, r)| r));
                        fail_without_connection(rest.collect(), &e, counters);
                    }
                }
            }
        }
    }
}

/// Tells each caller that no connection could be had: nothing was written,
/// and a retry may succeed.
fn fail_without_connection(replies: Vec<super::Reply>, e: &StoreError, counters: &Counters) {
    counters.failed(replies.len() as u64);
    for reply in replies {
        let _ = reply.send(Err(same_failure(e)));
    }
}

async fn append_requests(
    pool: &Pool,
    requests: &[AppendRequest],
) -> Result<RequestResults, GroupFailure> {
    let mut client = pool.client().await.map_err(GroupFailure::NoConnection)?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| GroupFailure::BeforeCommit(e.into()))?;
    let results = append_in(&tx, requests)
        .await
        .map_err(GroupFailure::BeforeCommit)?;
    tx.commit()
        .await
        .map_err(|e| GroupFailure::AtCommit(e.into()))?;
    Ok(results)
}

/// The append path of `append::append_requests_locked`, over an async
/// transaction: per run, lock the chain, read its frontier and the events
/// under the run's idempotency keys, build the rows, write them, move the head.
async fn append_in(
    tx: &deadpool_postgres::Transaction<'_>,
    requests: &[AppendRequest],
) -> Result<RequestResults, StoreError> {
    let mut results: Vec<_> = requests.iter().map(|_| None).collect();
    for run in plan_runs(requests) {
        let chain = &requests[run[0]].chain;
        tx.execute(
            "INSERT INTO stele_chains (chain_id, tree_size, head_hash) VALUES ($1, 0, $2) ON CONFLICT (chain_id) DO NOTHING",
            &[&chain.as_str(), &&empty_state().head_hash.0[..]],
        )
        .await?;
        let head = read_head(&**tx, chain, true)
            .await?
            .ok_or_else(|| StoreError::Corrupt("chain head vanished".into()))?;
        let state = state_of(&head)?;
        // Taken after the lock, so ts order follows seq order across writers.
        let now = crate::now();
        let frontier = read_hashes(&**tx, chain, &merkle::frontier_indexes(state.size)).await?;
        let keys = run_idempotency_keys(requests, &run);
        let stored = if keys.is_empty() {
            Vec::new()
        } else {
            tx.query(
                &format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE chain_id = $1 AND idempotency_key = ANY($2)"),
                &[&chain.as_str(), &keys],
            )
            .await?
            .iter()
            .map(event_from_row)
            .collect::<Result<_, _>>()?
        };
        let built = build_run(requests, &run, &state, &frontier, stored, now, &mut results)?;
        if !built.rows.is_empty() {
            insert_rows(tx, &built).await?;
            tx.execute(
                "UPDATE stele_chains SET tree_size = $2, head_hash = $3, last_ts = $4 WHERE chain_id = $1",
                &[
                    &chain.as_str(),
                    &to_i64(built.state.size, "tree size")?,
                    &&built.state.head_hash.0[..],
                    &built.state.last_ts.map(|t| t.to_string()),
                ],
            )
            .await?;
        }
        built.answer(&mut results)?;
    }
    Ok(collect_results(results))
}

/// Writes a run's rows with one multi-row `INSERT` over arrays: one
/// statement and one round trip whatever the group's size.
async fn insert_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    run: &RunRows<'_>,
) -> Result<(), StoreError> {
    let n = run.rows.len();
    let mut seqs = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut actors = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut leaves = Vec::with_capacity(n);
    let mut hashes = Vec::with_capacity(n);
    let mut nodes = Vec::with_capacity(n);
    for row in &run.rows {
        let e = row.event;
        seqs.push(to_i64(row.linked.seq, "seq")?);
        types.push(e.event_type.as_str());
        actors.push(e.actor.as_deref());
        payloads.push(e.payload.as_deref());
        keys.push(e.idempotency_key.as_deref());
        leaves.push(&row.linked.leaf_hash.0[..]);
        hashes.push(&row.linked.event_hash.0[..]);
        nodes.push(concat_nodes(run.nodes(row)));
    }
    let statement = tx
        .prepare_cached(&format!(
            "INSERT INTO audit_events ({EVENT_COLUMNS}, merkle_nodes) \
             SELECT $1, s, $2, t, a, p, i, $3, l, h, m FROM unnest($4::bigint[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::bytea[], $10::bytea[], $11::bytea[]) \
             AS r(s, t, a, p, i, l, h, m)"
        ))
        .await?;
    tx.execute(
        &statement,
        &[
            &run.chain.as_str(),
            &run.ts.as_str(),
            &run.key_id,
            &seqs,
            &types,
            &actors,
            &payloads,
            &keys,
            &leaves,
            &hashes,
            &nodes,
        ],
    )
    .await?;
    Ok(())
}

async fn read_chains(client: &impl GenericClient) -> Result<Vec<ChainHead>, StoreError> {
    client
        .query(
            "SELECT chain_id, tree_size, head_hash, last_ts FROM stele_chains WHERE tree_size > 0 ORDER BY chain_id",
            &[],
        )
        .await?
        .iter()
        .map(head_from_row)
        .collect()
}

async fn read_anchors(
    client: &impl GenericClient,
    chain: Option<&ChainId>,
    status: Option<AnchorStatus>,
) -> Result<Vec<AnchorRecord>, StoreError> {
    let chain = chain.map(ChainId::as_str);
    let status = status.map(AnchorStatus::as_str);
    client
        .query(
            &format!("SELECT {ANCHOR_COLUMNS} FROM stele_anchors WHERE ($1::text IS NULL OR chain_id = $1) AND ($2::text IS NULL OR status = $2) ORDER BY chain_id, anchor_seq"),
            &[&chain, &status],
        )
        .await?
        .iter()
        .map(anchor_from_row)
        .collect()
}

async fn read_head(
    client: &impl GenericClient,
    chain: &ChainId,
    for_update: bool,
) -> Result<Option<ChainHead>, StoreError> {
    let sql = if for_update {
        "SELECT chain_id, tree_size, head_hash, last_ts FROM stele_chains WHERE chain_id = $1 FOR UPDATE"
    } else {
        "SELECT chain_id, tree_size, head_hash, last_ts FROM stele_chains WHERE chain_id = $1"
    };
    client
        .query_opt(sql, &[&chain.as_str()])
        .await?
        .map(|r| head_from_row(&r))
        .transpose()
}

async fn read_hashes(
    client: &impl GenericClient,
    chain: &ChainId,
    indexes: &[u64],
) -> Result<Vec<Hash>, StoreError> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let seqs: Vec<i64> = seqs_for(indexes)
        .into_iter()
        .map(|s| to_i64(s, "seq"))
        .collect::<Result<_, _>>()?;
    let mut rows = HashMap::with_capacity(seqs.len());
    for r in client
        .query(
            "SELECT chain_index, leaf_hash, merkle_nodes FROM audit_events WHERE chain_id = $1 AND chain_index = ANY($2)",
            &[&chain.as_str(), &seqs],
        )
        .await?
    {
        let seq = to_u64(r.try_get(0)?, "seq")?;
        rows.insert(seq, (r.try_get::<_, Vec<u8>>(1)?, r.try_get::<_, Vec<u8>>(2)?));
    }
    hashes_from_rows(chain, indexes, &rows)
}

/// The anchor outbox and the reads the anchorer needs.
impl Pool {
    pub(super) async fn read_hashes(
        &self,
        chain: &ChainId,
        indexes: &[u64],
    ) -> Result<Vec<Hash>, StoreError> {
        read_hashes(&**self.client().await?, chain, indexes).await
    }

    pub(super) async fn head_with_lsn(
        &self,
        chain: &ChainId,
    ) -> Result<(Option<ChainHead>, Option<String>), StoreError> {
        // One statement, one snapshot: the LSN and the head are read together.
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT pg_current_wal_lsn()::text, c.chain_id, c.tree_size, c.head_hash, c.last_ts
                   FROM (SELECT 1) AS one LEFT JOIN stele_chains c ON c.chain_id = $1",
                &[&chain.as_str()],
            )
            .await?;
        let lsn: Option<String> = row.try_get(0)?;
        let head = match row.try_get::<_, Option<String>>(1)? {
            None => None,
            Some(chain_id) => Some(ChainHead {
                size: migrate::StoredRow::Head { chain: &chain_id }
                    .unsigned("tree_size", row.try_get(2)?)?,
                head_hash: crate::hash_from_bytes(row.try_get(3)?, "chain head hash")?,
                last_ts: row.try_get(4)?,
                chain_id,
            }),
        };
        Ok((head.filter(|h| h.size > 0), lsn))
    }

    pub(super) async fn insert_anchor(&self, a: &AnchorRecord) -> Result<(), StoreError> {
        let result = self
            .client()
            .await?
            .execute(
                "INSERT INTO stele_anchors (chain_id, anchor_seq, trigger, tree_size, ts_utc, object_key, body, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8)",
                &[
                    &a.chain_id,
                    &to_i64(a.anchor_seq, "anchor seq")?,
                    &a.trigger.as_str(),
                    &to_i64(a.tree_size, "tree size")?,
                    &a.ts_utc,
                    &a.object_key,
                    &a.body,
                    &crate::now().to_string(),
                ],
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                Err(StoreError::AnchorConflict {
                    chain: a.chain_id.clone(),
                    anchor_seq: a.anchor_seq,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn last_anchor(
        &self,
        chain: &ChainId,
    ) -> Result<Option<AnchorRecord>, StoreError> {
        self.client()
            .await?
            .query_opt(
                &format!("SELECT {ANCHOR_COLUMNS} FROM stele_anchors WHERE chain_id = $1 ORDER BY anchor_seq DESC LIMIT 1"),
                &[&chain.as_str()],
            )
            .await?
            .as_ref()
            .map(anchor_from_row)
            .transpose()
    }

    /// Runs one outbox `UPDATE` on the anchor `(chain, anchor_seq)`;
    /// `params` follow those two. Returns whether it changed the row.
    async fn update_anchor(
        &self,
        sql: &str,
        chain: &ChainId,
        anchor_seq: u64,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<bool, StoreError> {
        let seq = to_i64(anchor_seq, "anchor seq")?;
        let chain = chain.as_str();
        let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&chain, &seq];
        all.extend_from_slice(params);
        let changed = self.client().await?.execute(sql, &all).await?;
        Ok(changed == 1)
    }

    pub(super) async fn lease_anchor(
        &self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        // One autocommit UPDATE: a concurrent claimer blocks on the row, then
        // re-checks the lease and finds it taken. No transaction spans the upload.
        // The holder may take its own lease again (after a failed outcome write).
        self.update_anchor(
            "UPDATE stele_anchors SET lease_owner = $3, lease_until = now() + make_interval(secs => $4), attempts = attempts + 1 \
             WHERE chain_id = $1 AND anchor_seq = $2 AND status = 'pending' \
             AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $3) \
             AND NOT EXISTS (SELECT 1 FROM stele_anchors e WHERE e.chain_id = $1 AND e.anchor_seq < $2 AND e.status = 'pending')",
            chain,
            anchor_seq,
            &[&owner, &ttl.as_secs_f64()],
        )
        .await
    }

    pub(super) async fn mark_anchor_uploaded(
        &self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        u: &AnchorUpload,
    ) -> Result<bool, StoreError> {
        self.update_anchor(
            "UPDATE stele_anchors SET status = $4, location = $5, version_id = $6, lock_mode = $7, retain_until = $8, uploaded_at = $9, last_error = NULL, lease_owner = NULL, lease_until = NULL \
             WHERE chain_id = $1 AND anchor_seq = $2 AND status = 'pending' AND lease_owner = $3",
            chain,
            anchor_seq,
            &[
                &owner,
                &u.status.as_str(),
                &u.location,
                &u.version_id,
                &u.lock_mode.map(LockMode::as_str),
                &u.retain_until.map(retain_until_text),
                &crate::now().to_string(),
            ],
        )
        .await
    }

    pub(super) async fn record_anchor_failure(
        &self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.update_anchor(
            "UPDATE stele_anchors SET last_error = $4, lease_owner = NULL, lease_until = NULL \
             WHERE chain_id = $1 AND anchor_seq = $2 AND status = 'pending' AND lease_owner = $3",
            chain,
            anchor_seq,
            &[&owner, &error],
        )
        .await
    }

    pub(super) async fn set_anchor_object_key(
        &self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        object_key: &str,
        note: &str,
    ) -> Result<bool, StoreError> {
        self.update_anchor(
            "UPDATE stele_anchors SET object_key = $4, last_error = $5 \
             WHERE chain_id = $1 AND anchor_seq = $2 AND status = 'pending' AND lease_owner = $3",
            chain,
            anchor_seq,
            &[&owner, &object_key, &note],
        )
        .await
    }

    /// A connection in a `REPEATABLE READ, READ ONLY` transaction: every
    /// read on it sees the state of its first statement.
    pub(super) async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let client = self.client().await?;
        // The session idles in the transaction between the reader's calls:
        // a server's idle_in_transaction_session_timeout must not end it.
        client
            .batch_execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
                 SET LOCAL idle_in_transaction_session_timeout = 0",
            )
            .await?;
        let snapshot = Snapshot {
            client: Some(client),
        };
        // The first read fixes the snapshot: now, not at the caller's first read.
        snapshot.client()?.query_one("SELECT 1", &[]).await?;
        Ok(snapshot)
    }
}

/// One read snapshot on a connection of its own (see [`Pool::snapshot`]).
pub(super) struct Snapshot {
    /// `None` once ended.
    client: Option<deadpool_postgres::Client>,
}

impl Snapshot {
    fn client(&self) -> Result<&deadpool_postgres::Client, StoreError> {
        self.client.as_ref().ok_or(StoreError::Closed)
    }

    pub(super) async fn chains(&self) -> Result<Vec<ChainHead>, StoreError> {
        read_chains(&***self.client()?).await
    }

    pub(super) async fn head(&self, chain: &ChainId) -> Result<Option<ChainHead>, StoreError> {
        Ok(read_head(&***self.client()?, chain, false)
            .await?
            .filter(|h| h.size > 0))
    }

    pub(super) async fn read_hashes(
        &self,
        chain: &ChainId,
        indexes: &[u64],
    ) -> Result<Vec<Hash>, StoreError> {
        read_hashes(&***self.client()?, chain, indexes).await
    }

    pub(super) async fn anchors(
        &self,
        chain: Option<&ChainId>,
        status: Option<AnchorStatus>,
    ) -> Result<Vec<AnchorRecord>, StoreError> {
        read_anchors(&***self.client()?, chain, status).await
    }

    /// Streams the rows through one binary `COPY` into `sink`, on this
    /// snapshot's connection.
    pub(super) async fn scan(
        &mut self,
        chain: &ChainId,
        from: u64,
        to: Option<u64>,
        sink: &mut impl crate::scan::RowSink,
    ) -> Result<(), StoreError> {
        let sql = crate::pg_copy::scan_sql(chain, from, to)?;
        let client = self.client()?;
        let scanned = async {
            let messages = client.copy_out(sql.as_str()).await?;
            let mut messages = std::pin::pin!(messages);
            let mut parser = crate::pg_copy::CopyParser::default();
            let chain_id = chain.as_str().as_bytes();
            let mut push = |fields: &crate::pg_copy::CopyFields<'_>| {
                crate::pg_copy::push_row(chain_id, fields, sink)
            };
            while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
                match parser.feed(&message?, &mut push)? {
                    crate::pg_copy::Fed::More => {}
                    crate::pg_copy::Fed::Stopped => return Ok(true),
                    crate::pg_copy::Fed::End => {
                        // Read to the end, so a server error after the data shows.
                        while let Some(message) = futures_util::StreamExt::next(&mut messages).await
                        {
                            message?;
                        }
                        return Ok(false);
                    }
                }
            }
            Err(crate::pg_copy::truncated())
        }
        .await;
        match scanned {
            Ok(false) => Ok(()),
            // A scan that stopped early leaves the rest of its COPY on the
            // connection: the snapshot cannot go on, and the connection is
            // not given back to the pool.
            Ok(true) => {
                self.discard();
                Ok(())
            }
            Err(e) => {
                self.discard();
                Err(e)
            }
        }
    }

    /// Ends the snapshot: nothing was written, so ending the transaction
    /// only releases it, and the connection goes back to the pool.
    pub(super) async fn end(mut self) -> Result<(), StoreError> {
        if let Some(client) = &self.client
            && let Err(e) = client.batch_execute("ROLLBACK").await
        {
            self.discard();
            return Err(e.into());
        }
        self.client.take();
        Ok(())
    }

    /// Closes the connection instead of giving it back to the pool in the
    /// middle of a transaction or a `COPY`.
    fn discard(&mut self) {
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.discard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_without_fsync_is_refused_for_writing() {
        assert!(check_write_durability("on", "on").is_ok());
        let err = check_write_durability("on", "off").unwrap_err();
        assert!(err.contains("fsync=off"), "{err}");
        let err = check_write_durability("off", "on").unwrap_err();
        assert!(err.contains("synchronous_commit is off"), "{err}");
        assert!(check_write_durability("local", "on").is_err());
    }
}
