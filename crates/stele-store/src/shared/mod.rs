//! The store a server shares: `Send + Sync`, `&self`, async, cheap to clone.
//!
//! Appends go through one bounded queue to a committer that takes every
//! append waiting at that moment and commits them together (group commit):
//! one durable transaction and one fsync for many callers, each caller still
//! getting its own result — an idempotency conflict fails its own request,
//! never its neighbours'. An append returns only after its commit is durable.
//! A full queue refuses at once with [`StoreError::Busy`]; memory never grows
//! without bound.
//!
//! SQLite commits on one writer thread that owns the only write connection
//! (SQLite has one write lock anyway, and a second writer gains nothing);
//! reads run on a few read-only connections on Tokio's blocking threads.
//! PostgreSQL runs on `tokio-postgres` with a `deadpool` pool, the committer
//! being a task of the caller's runtime.

mod outbox;
mod postgres;
mod reads;
mod sqlite;

pub use reads::ReadSnapshot;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use stele_ledger::append::Receipt;
use stele_ledger::event::ValidEvent;
use stele_ledger::merkle::{self, MerkleError};
use stele_ledger::{ChainId, Event, Hash, HmacKey};
use tokio::sync::{mpsc, oneshot};

use crate::append::{AppendRequest, Receipts, RequestResults};
use crate::{ChainHead, DbLocation, StoreError};

/// Durability settings as read back from the database: (name, value).
type Durability = Vec<(&'static str, String)>;

/// Limits of a [`Store`]; the defaults suit a gateway on a small machine.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Appends that may wait for a commit; one more is refused with
    /// [`StoreError::Busy`].
    pub queue_capacity: usize,
    /// Most appends (callers' batches) one transaction takes.
    pub max_group_requests: usize,
    /// Most events one transaction takes (a single larger batch still
    /// commits alone).
    pub max_group_events: usize,
    /// Read connections (SQLite) or pooled connections (PostgreSQL, beside
    /// the committer's own).
    pub readers: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 4096,
            max_group_requests: 1024,
            max_group_events: 50_000,
            readers: 4,
        }
    }
}

/// Counters of what the committer did since the store opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Durable transactions that committed appends.
    pub commits: u64,
    /// Appends (callers' batches) acknowledged.
    pub appends: u64,
    /// Events written (repeats of an idempotency key not counted).
    pub events: u64,
    /// Appends that failed on their own (e.g. an idempotency conflict).
    pub failed_appends: u64,
    /// Appends refused because the queue was full.
    pub busy: u64,
    /// The most appends one transaction carried.
    pub largest_group: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    appends: AtomicU64,
    events: AtomicU64,
    failed_appends: AtomicU64,
    busy: AtomicU64,
    largest_group: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> StoreStats {
        StoreStats {
            commits: self.commits.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            failed_appends: self.failed_appends.load(Ordering::Relaxed),
            busy: self.busy.load(Ordering::Relaxed),
            largest_group: self.largest_group.load(Ordering::Relaxed),
        }
    }

    fn committed(&self, results: &RequestResults) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.largest_group
            .fetch_max(results.len() as u64, Ordering::Relaxed);
        for r in results {
            match r {
                Ok(receipts) => {
                    self.appends.fetch_add(1, Ordering::Relaxed);
                    self.events
                        .fetch_add(receipts.written() as u64, Ordering::Relaxed);
                }
                Err(_) => {
                    self.failed_appends.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn failed(&self, appends: u64) {
        self.failed_appends.fetch_add(appends, Ordering::Relaxed);
    }
}

/// One caller waiting for its append.
struct Pending {
    request: AppendRequest,
    reply: Reply,
}

/// Where a group's transaction failed: before its commit was sent (nothing
/// was written, so each request may be tried alone), or at the commit
/// itself (the outcome may be unknown, so nothing is tried again).
enum GroupFailure {
    /// No connection could be had for the group (PostgreSQL): nothing was
    /// tried, and trying each append alone would only wait again.
    NoConnection(StoreError),
    BeforeCommit(StoreError),
    AtCommit(StoreError),
}

/// Takes, after `first`, whatever else is already waiting, within the
/// group limits.
fn take_group(
    first: Pending,
    queue: &mut mpsc::Receiver<Pending>,
    options: &StoreOptions,
) -> Vec<Pending> {
    let mut events = first.request.events.len();
    let mut group = vec![first];
    while group.len() < options.max_group_requests && events < options.max_group_events {
        match queue.try_recv() {
            Ok(next) => {
                events += next.request.events.len();
                group.push(next);
            }
            Err(_) => break,
        }
    }
    group
}

type Reply = oneshot::Sender<Result<Receipts, StoreError>>;

/// Answers every caller of a group from its results.
fn reply_all(replies: Vec<Reply>, results: RequestResults) {
    for (reply, result) in replies.into_iter().zip(results) {
        // A caller that stopped waiting still had its append committed.
        let _ = reply.send(result);
    }
}

/// Tells every caller of a group that its commit failed while under way:
/// each append may or may not have been committed.
fn commit_outcome_unknown(replies: Vec<Reply>, message: &str) {
    for reply in replies {
        let _ = reply.send(Err(StoreError::CommitOutcomeUnknown {
            message: message.to_owned(),
        }));
    }
}

/// Stored hashes fetched so far for a tlog computation (root, proof), and
/// the ones it asked for that were not there yet. A computation runs over
/// the hashes fetched so far; a pass that asks for hashes not fetched yet
/// names them and fails; they are read in one query and it runs again. A
/// proof needs O(log n) hashes, read in a few passes. Stored hashes never
/// change once written, so passes need no shared snapshot.
#[derive(Default)]
struct FetchedHashes {
    hashes: std::collections::HashMap<u64, Hash>,
    missing: std::cell::RefCell<Vec<u64>>,
    passes: u32,
}

/// One pass of a computation over [`FetchedHashes`].
enum Pass<T> {
    Done(T),
    /// These stored hashes are needed first, sorted and without repeats.
    Needs(Vec<u64>),
}

impl FetchedHashes {
    fn run<T>(
        &mut self,
        compute: impl Fn(&Self) -> Result<T, MerkleError>,
    ) -> Result<Pass<T>, StoreError> {
        // Each pass fetches at least one new hash; a tree of 2^64 leaves
        // needs far fewer passes than this.
        self.passes += 1;
        if self.passes > 256 {
            return Err(StoreError::Corrupt(
                "a Merkle computation kept asking for more stored hashes".into(),
            ));
        }
        let result = compute(self);
        let mut missing = self.missing.take();
        if missing.is_empty() {
            return Ok(Pass::Done(result?));
        }
        missing.sort_unstable();
        missing.dedup();
        Ok(Pass::Needs(missing))
    }

    fn add(&mut self, indexes: Vec<u64>, hashes: Vec<Hash>) {
        self.hashes.extend(indexes.into_iter().zip(hashes));
    }
}

impl tlog_tiles::HashReader for FetchedHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let found: Option<Vec<Hash>> = indexes
            .iter()
            .map(|i| self.hashes.get(i).copied())
            .collect();
        found.ok_or_else(|| {
            self.missing
                .borrow_mut()
                .extend(indexes.iter().filter(|i| !self.hashes.contains_key(i)));
            tlog_tiles::Error::IndexesNotInTree
        })
    }
}

enum Backend {
    Sqlite(sqlite::Readers),
    Postgres(postgres::Pool),
}

struct Inner {
    backend: Backend,
    /// `None` once [`Store::close`] began.
    queue: Mutex<Option<mpsc::Sender<Pending>>>,
    queue_capacity: usize,
    /// Fires when the committer has answered everything it took.
    committer_done: Mutex<Option<oneshot::Receiver<()>>>,
    counters: Arc<Counters>,
    durability: Durability,
    /// Opened with [`Store::open_read_only`]: appends are refused.
    read_only: bool,
}

/// A ledger store many tasks share (clone it; clones share one queue, one
/// committer and one pool).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating and migrating if needed) the ledger at `location` for
    /// reading and writing, refusing a database whose settings would not
    /// make a commit durable. Must be called inside a Tokio runtime, which
    /// runs the PostgreSQL committer.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`], [`StoreError::InvalidLocation`],
    /// [`StoreError::SchemaTooNew`], database errors.
    pub async fn open(location: &DbLocation, options: StoreOptions) -> Result<Self, StoreError> {
        let counters = Arc::new(Counters::default());
        let (queue, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let (done_tx, done_rx) = oneshot::channel();
        let queue_capacity = options.queue_capacity.max(1);
        let (backend, durability) = match location {
            DbLocation::Sqlite(path) => {
                let (readers, durability) =
                    sqlite::start(path, options, receiver, Arc::clone(&counters), done_tx).await?;
                (Backend::Sqlite(readers), durability)
            }
            DbLocation::Postgres(url) => {
                let (pool, durability) =
                    postgres::start(url, options, receiver, Arc::clone(&counters), done_tx).await?;
                (Backend::Postgres(pool), durability)
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                queue: Mutex::new(Some(queue)),
                queue_capacity,
                committer_done: Mutex::new(Some(done_rx)),
                counters,
                durability,
                read_only: false,
            }),
        })
    }

    /// Opens an existing ledger for reading only, as verification and the
    /// other read commands do: nothing is created or migrated, and every
    /// write is refused by the database itself (SQLite opened read-only;
    /// PostgreSQL sessions with `default_transaction_read_only`), so it works
    /// with a role that may only `SELECT`. Appends and outbox writes get
    /// [`StoreError::ReadOnly`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] if there is no ledger there or its schema is
    /// older than this stele reads; [`StoreError::SchemaTooNew`];
    /// [`StoreError::InvalidLocation`].
    pub async fn open_read_only(
        location: &DbLocation,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let (backend, durability) = match location {
            DbLocation::Sqlite(path) => {
                let readers = sqlite::start_read_only(path, &options).await?;
                (Backend::Sqlite(readers), Vec::new())
            }
            DbLocation::Postgres(url) => {
                let (pool, durability) = postgres::start_read_only(url, &options).await?;
                (Backend::Postgres(pool), durability)
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                queue: Mutex::new(None),
                queue_capacity: 0,
                committer_done: Mutex::new(None),
                counters: Arc::default(),
                durability,
                read_only: true,
            }),
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.inner.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Appends a batch to one chain, chained with `key`, and returns once
    /// it is durably committed — usually in one transaction with other
    /// callers' appends. Events whose idempotency key was seen before
    /// return the original receipt and append nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::Busy`] if the queue is full, [`StoreError::Closed`]
    /// after [`close`](Self::close), [`StoreError::IdempotencyConflict`] or
    /// [`StoreError::IdempotencyConflictInBatch`] for this batch alone,
    /// database errors; in each case nothing of this batch was written (a
    /// PostgreSQL connection lost during the commit itself is the one
    /// case whose outcome is unknown: retry with idempotency keys).
    pub async fn append(
        &self,
        chain: &ChainId,
        events: Vec<ValidEvent>,
        key: &HmacKey,
    ) -> Result<Vec<Receipt>, StoreError> {
        Ok(self.append_receipts(chain, events, key).await?.into_vec())
    }

    /// [`append`](Self::append), its receipts left as the committer made
    /// them, for an answer written straight from them.
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append).
    pub async fn append_receipts(
        &self,
        chain: &ChainId,
        events: Vec<ValidEvent>,
        key: &HmacKey,
    ) -> Result<Receipts, StoreError> {
        if self.inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        if events.is_empty() {
            return Ok(Receipts::none(chain));
        }
        let queue = self
            .inner
            .queue
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            request: AppendRequest::new(chain.clone(), events, key.clone()),
            reply,
        };
        let sent = queue.try_send(pending);
        // Only a queued append may keep the queue open: `close` waits for
        // the last sender to go.
        drop(queue);
        match sent {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.inner.counters.busy.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::Busy {
                    queued: self.inner.queue_capacity,
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(StoreError::Closed),
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Every chain's head, ordered by chain id.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn chains(&self) -> Result<Vec<ChainHead>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(r) => r.read(crate::LedgerStore::chains).await,
            Backend::Postgres(p) => p.chains().await,
        }
    }

    /// Whether the database's schema is the one this stele writes: a newer
    /// stele may have migrated it since this store opened.
    ///
    /// # Errors
    ///
    /// [`StoreError::SchemaTooNew`] (or a schema older than this stele's,
    /// as [`StoreError::Corrupt`]); database errors.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let found = match &self.inner.backend {
            Backend::Sqlite(r) => r.read(|s| s.schema_version()).await?,
            Backend::Postgres(p) => p.schema_version().await?,
        };
        match found {
            Some(v) if v == crate::migrate::SUPPORTED => Ok(()),
            Some(v) if v > crate::migrate::SUPPORTED => Err(StoreError::SchemaTooNew {
                found: v,
                supported: crate::migrate::SUPPORTED,
            }),
            other => Err(StoreError::Corrupt(format!(
                "the database's schema is at version {}, not this stele's {}: it was rolled back or replaced after this store opened it",
                other.map_or_else(|| "none".to_owned(), |v| v.to_string()),
                crate::migrate::SUPPORTED
            ))),
        }
    }

    /// One chain's head, or `None` if it has no events.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn head(&self, chain: &ChainId) -> Result<Option<ChainHead>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(r) => {
                let chain = chain.clone();
                r.read(move |s| crate::LedgerStore::head(s, &chain)).await
            }
            Backend::Postgres(p) => p.head(chain).await,
        }
    }

    /// The event at `seq`.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownChain`], [`StoreError::OutOfRange`], database errors.
    pub async fn event(&self, chain: &ChainId, seq: u64) -> Result<Event, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(r) => {
                let chain = chain.clone();
                r.read(move |s| crate::event(s, &chain, seq)).await
            }
            Backend::Postgres(p) => p.event(chain, seq).await,
        }
    }

    /// Up to `limit` events from `from` on, in seq order.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn events(
        &self,
        chain: &ChainId,
        from: u64,
        limit: u64,
    ) -> Result<Vec<Event>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let to = from.saturating_add(limit - 1);
        match &self.inner.backend {
            Backend::Sqlite(r) => {
                let chain = chain.clone();
                r.read(move |s| {
                    let mut events = Vec::new();
                    crate::LedgerStore::scan(s, &chain, from, Some(to), &mut |e| {
                        events.push(e);
                        Ok(())
                    })?;
                    Ok(events)
                })
                .await
            }
            Backend::Postgres(p) => p.events(chain, from, to).await,
        }
    }

    /// The Merkle root at `size` (the head's size if `None`), with that size.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownChain`], [`StoreError::OutOfRange`], database errors.
    pub async fn tree_root(
        &self,
        chain: &ChainId,
        size: Option<u64>,
    ) -> Result<(u64, Hash), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(r) => {
                let chain = chain.clone();
                r.read(move |s| crate::tree_root(s, &chain, size)).await
            }
            Backend::Postgres(p) => {
                let size = p.checked_size(chain, size).await?;
                let root = p.with_hashes(chain, |r| merkle::root(size, r)).await?;
                Ok((size, root))
            }
        }
    }

    /// An RFC 6962 inclusion proof of `seq` in the tree of `size` (the
    /// head's if `None`): the size, its root and the proof.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownChain`], [`StoreError::OutOfRange`], database errors.
    pub async fn inclusion_proof(
        &self,
        chain: &ChainId,
        seq: u64,
        size: Option<u64>,
    ) -> Result<(u64, Hash, Vec<Hash>), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(r) => {
                let chain = chain.clone();
                r.read(move |s| crate::inclusion_proof(s, &chain, seq, size))
                    .await
            }
            Backend::Postgres(p) => {
                let size = p.checked_size(chain, size).await?;
                if seq >= size {
                    return Err(StoreError::OutOfRange(format!(
                        "seq {seq} is not in chain {chain:?} at tree size {size}"
                    )));
                }
                let (root, proof) = p
                    .with_hashes(chain, |r| {
                        Ok((
                            merkle::root(size, r)?,
                            merkle::inclusion_proof(size, seq, r)?,
                        ))
                    })
                    .await?;
                Ok((size, root, proof))
            }
        }
    }

    /// An RFC 6962 consistency proof from tree size `from` to `to`: both
    /// roots and the proof.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownChain`], [`StoreError::OutOfRange`], database errors.
    pub async fn consistency_proof(
        &self,
        chain: &ChainId,
        from: u64,
        to: u64,
    ) -> Result<(Hash, Hash, Vec<Hash>), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(r) => {
                let chain = chain.clone();
                r.read(move |s| crate::consistency_proof(s, &chain, from, to))
                    .await
            }
            Backend::Postgres(p) => {
                if from > to {
                    return Err(StoreError::OutOfRange(format!(
                        "consistency proof from tree size {from} to the smaller size {to}"
                    )));
                }
                p.checked_size(chain, Some(to)).await?;
                p.with_hashes(chain, |r| {
                    Ok((
                        merkle::root(from, r)?,
                        merkle::root(to, r)?,
                        merkle::consistency_proof(from, to, r)?,
                    ))
                })
                .await
            }
        }
    }

    /// The durability settings read back from the database when the store
    /// opened (SQLite `journal_mode`/`synchronous` of the writer
    /// connection; PostgreSQL `synchronous_commit`/`fsync`), which opening
    /// checked.
    pub fn durability(&self) -> &[(&'static str, String)] {
        &self.inner.durability
    }

    /// Whether appends are taken: false after [`close`](Self::close), or
    /// if the committer stopped (a SQLite writer thread that died).
    pub fn is_accepting(&self) -> bool {
        self.inner
            .queue
            .lock()
            .ok()
            .and_then(|q| q.as_ref().map(|q| !q.is_closed()))
            .unwrap_or(false)
    }

    /// What the committer did so far.
    pub fn stats(&self) -> StoreStats {
        self.inner.counters.snapshot()
    }

    /// Stops taking appends (later ones get [`StoreError::Closed`]) and
    /// waits until every append already queued is committed and answered.
    pub async fn close(&self) {
        if let Ok(mut queue) = self.inner.queue.lock() {
            queue.take();
        }
        let done = self
            .inner
            .committer_done
            .lock()
            .ok()
            .and_then(|mut d| d.take());
        if let Some(done) = done {
            // Clones still held elsewhere keep no sender: the committer
            // drains what was queued and stops.
            let _ = done.await;
        }
    }
}
