//! PostgreSQL under a shared [`Store`](super::Store): `tokio-postgres`
//! connections in a `deadpool` pool, every session with
//! `synchronous_commit = on`; a committer task takes the append queue.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use stele_ledger::append::AppendedEvent;
use stele_ledger::{ChainId, Event, Hash, merkle};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::GenericClient;

use super::{Counters, Durability, GroupFailure, Pending, StoreOptions, take_group};
use crate::append::{
    AppendRequest, RequestResults, build_run, collect_results, concat_nodes, empty_state,
    plan_runs, run_idempotency_keys,
};
use crate::pg_tls;
use crate::postgres::{
    ANCHOR_COLUMNS, EVENT_COLUMNS, PostgresStore, anchor_from_row, event_from_row, head_from_row,
};
use crate::{
    AnchorRecord, AnchorStatus, ChainHead, LedgerStore as _, StoreError, hashes_from_rows,
    redact_url, seqs_for, state_of, to_i64, to_u64,
};

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
        self.client()
            .await?
            .query(
                "SELECT chain_id, tree_size, head_hash, last_ts FROM stele_chains WHERE tree_size > 0 ORDER BY chain_id",
                &[],
            )
            .await?
            .iter()
            .map(head_from_row)
            .collect()
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
        let chain = chain.map(ChainId::as_str);
        let status = status.map(AnchorStatus::as_str);
        self.client()
            .await?
            .query(
                &format!("SELECT {ANCHOR_COLUMNS} FROM stele_anchors WHERE ($1::text IS NULL OR chain_id = $1) AND ($2::text IS NULL OR status = $2) ORDER BY chain_id, anchor_seq"),
                &[&chain, &status],
            )
            .await?
            .iter()
            .map(anchor_from_row)
            .collect()
    }

    /// `size`, or the head's size if `None`, checked to be within the chain.
    pub(super) async fn checked_size(
        &self,
        chain: &ChainId,
        size: Option<u64>,
    ) -> Result<u64, StoreError> {
        let head = self
            .head(chain)
            .await?
            .ok_or_else(|| StoreError::UnknownChain(chain.to_string()))?;
        let size = size.unwrap_or(head.size);
        if size > head.size {
            return Err(StoreError::OutOfRange(format!(
                "tree size {size} is beyond chain {chain:?}, which has {} events",
                head.size
            )));
        }
        Ok(size)
    }

    /// Runs a tlog computation over this chain's stored hashes (see
    /// [`super::with_fetched_hashes`]).
    pub(super) async fn with_hashes<T>(
        &self,
        chain: &ChainId,
        compute: impl Fn(&super::FetchedHashes) -> Result<T, stele_ledger::merkle::MerkleError>,
    ) -> Result<T, StoreError> {
        let client = self.client().await?;
        super::with_fetched_hashes(compute, |indexes| {
            let client = &client;
            async move { read_hashes(&***client, chain, &indexes).await }
        })
        .await
    }
}

fn pool_error(location: &str, e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => e.into(),
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
    let location = redact_url(url);
    let durability = migrate_and_check(url).await?;
    let mut target = pg_tls::target(url).map_err(|reason| StoreError::InvalidLocation {
        location: location.clone(),
        reason,
    })?;
    target.config.application_name("stele");
    // Every pooled session commits durably, whatever the server's default.
    let options_text = target.config.get_options().unwrap_or_default();
    target
        .config
        .options(format!("{options_text} -c synchronous_commit=on").trim_start());
    let manager = Manager::from_config(
        target.config,
        target.tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(options.readers.max(1) + 1)
        .build()
        .map_err(|e| {
            StoreError::open_refused(&location, format!("cannot build the connection pool: {e}"))
        })?;
    let pool = Pool { pool, location };
    // Fail at open, not at the first append, if the pool cannot connect.
    drop(
        pool.client()
            .await
            .map_err(|e| StoreError::open_failed(&pool.location, e))?,
    );
    let committer = Pool {
        pool: pool.pool.clone(),
        location: pool.location.clone(),
    };
    tokio::spawn(run_committer(committer, options, queue, counters, done));
    Ok((pool, durability))
}

/// Opens the ledger the way every writing command does — creating or
/// migrating its schema, refusing a server whose commits are not durable —
/// and reads the durability settings back.
// The migration runner still speaks the synchronous client, so it runs on
// a thread of its own rather than inside the caller's runtime.
async fn migrate_and_check(url: &str) -> Result<Durability, StoreError> {
    let (tx, rx) = oneshot::channel();
    let url = url.to_owned();
    std::thread::Builder::new()
        .name("stele-pg-open".into())
        .spawn(move || {
            let opened = PostgresStore::connect(&url).and_then(|mut store| store.durability());
            let _ = tx.send(opened);
        })
        .map_err(|e| StoreError::postgres_local(format!("cannot start the open thread: {e}")))?;
    rx.await.map_err(|_| StoreError::Closed)?
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
        Err(GroupFailure::BeforeCommit(e)) if requests.len() == 1 => {
            counters.failed(1);
            super::reply_all(replies, vec![Err(e)]);
        }
        Err(GroupFailure::BeforeCommit(e)) => {
            tracing::warn!(appends = requests.len(), error = %e, "a group commit failed; committing its appends one by one");
            for (request, reply) in requests.into_iter().zip(replies) {
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
                }
            }
        }
    }
}

async fn append_requests(
    pool: &Pool,
    requests: &[AppendRequest],
) -> Result<RequestResults, GroupFailure> {
    let mut client = pool.client().await.map_err(GroupFailure::BeforeCommit)?;
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
            insert_rows(tx, chain, &built.rows).await?;
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
    }
    Ok(collect_results(results))
}

/// Writes rows with one multi-row `INSERT` over arrays: one statement and
/// one round trip whatever the group's size.
async fn insert_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    chain: &ChainId,
    rows: &[AppendedEvent],
) -> Result<(), StoreError> {
    let mut seqs = Vec::with_capacity(rows.len());
    let mut ts = Vec::with_capacity(rows.len());
    let mut types = Vec::with_capacity(rows.len());
    let mut actors = Vec::with_capacity(rows.len());
    let mut payloads = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    let mut key_ids = Vec::with_capacity(rows.len());
    let mut leaves = Vec::with_capacity(rows.len());
    let mut hashes = Vec::with_capacity(rows.len());
    let mut nodes = Vec::with_capacity(rows.len());
    for row in rows {
        let e = &row.event;
        seqs.push(to_i64(e.seq, "seq")?);
        ts.push(e.ts.as_str());
        types.push(e.event_type.as_str());
        actors.push(e.actor.as_deref());
        payloads.push(e.payload.as_deref());
        keys.push(e.idempotency_key.as_deref());
        key_ids.push(e.key_id.as_str());
        leaves.push(&row.leaf_hash.0[..]);
        hashes.push(&row.event_hash.0[..]);
        nodes.push(concat_nodes(&row.merkle_nodes));
    }
    let statement = tx
        .prepare_cached(&format!(
            "INSERT INTO audit_events ({EVENT_COLUMNS}, merkle_nodes) \
             SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::bytea[], $10::bytea[], $11::bytea[])"
        ))
        .await?;
    tx.execute(
        &statement,
        &[
            &chain.as_str(),
            &seqs,
            &ts,
            &types,
            &actors,
            &payloads,
            &keys,
            &key_ids,
            &leaves,
            &hashes,
            &nodes,
        ],
    )
    .await?;
    Ok(())
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
