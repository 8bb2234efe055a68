//! SQLite under a shared [`Store`](super::Store): one writer thread owning
//! the only write connection, fed by the append queue; read-only
//! connections for reads, used on Tokio's blocking threads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::{Counters, Durability, Pending, StoreOptions, take_group};
use crate::append::AppendRequest;
use crate::sqlite::{Checkpointer, SqliteStore};
use crate::{LedgerStore as _, StoreError};

/// Read-only connections, kept for the next read.
pub(super) struct Readers {
    path: PathBuf,
    idle: Arc<Mutex<Vec<SqliteStore>>>,
    keep: usize,
    /// The side connection for outbox writes, opened at its first use;
    /// `None` for a read-only store.
    writer: Option<Arc<Mutex<Option<SqliteStore>>>>,
}

impl Readers {
    /// Runs `read` on a read-only connection on a blocking thread.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut SqliteStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let idle = Arc::clone(&self.idle);
        let path = self.path.clone();
        let keep = self.keep;
        let task = tokio::task::spawn_blocking(move || {
            let kept = idle.lock().ok().and_then(|mut conns| conns.pop());
            let mut conn = match kept {
                Some(conn) => conn,
                None => SqliteStore::open_read_only(&path)?,
            };
            let result = read(&mut conn);
            if let Ok(mut conns) = idle.lock()
                && conns.len() < keep
            {
                conns.push(conn);
            }
            result
        });
        join(task).await
    }
}

/// Opens the ledger on a new writer thread, checks that its commits are
/// durable, and leaves the thread committing the queue until every sender
/// is gone.
pub(super) async fn start(
    path: &Path,
    options: StoreOptions,
    mut queue: mpsc::Receiver<Pending>,
    counters: Arc<Counters>,
    done: oneshot::Sender<()>,
) -> Result<(Readers, Durability), StoreError> {
    let (opened_tx, opened_rx) = oneshot::channel();
    let writer_path = path.to_owned();
    let readers = options.readers;
    std::thread::Builder::new()
        .name("stele-sqlite-writer".into())
        .spawn(move || {
            let opened = open_writer(&writer_path);
            let (mut store, checkpointer) = match opened {
                Ok((store, checkpointer, durability)) => {
                    if opened_tx.send(Ok(durability)).is_err() {
                        return;
                    }
                    (store, checkpointer)
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                    return;
                }
            };
            while let Some(first) = queue.blocking_recv() {
                let group = take_group(first, &mut queue, &options);
                commit_group(&mut store, group, &counters);
                checkpointer.committed();
            }
            // Closed before `close` returns: no connection of the writer's
            // side outlives the store.
            drop(checkpointer);
            drop(store);
            let _ = done.send(());
        })
        .map_err(|e| {
            StoreError::open_refused(
                &path.display().to_string(),
                format!("cannot start the writer thread: {e}"),
            )
        })?;
    let durability = opened_rx.await.map_err(|_| StoreError::Closed)??;
    Ok((
        Readers {
            path: path.to_owned(),
            idle: Arc::new(Mutex::new(Vec::new())),
            keep: readers,
            writer: Some(Arc::new(Mutex::new(None))),
        },
        durability,
    ))
}

/// Opens the write connection, hands its checkpoints to a checkpointer, and
/// reads its durability settings back.
fn open_writer(path: &Path) -> Result<(SqliteStore, Checkpointer, Durability), StoreError> {
    let mut store = SqliteStore::open(path)?;
    let checkpointer = Checkpointer::start(path)?;
    store.leave_checkpoints_to(&checkpointer)?;
    let durability = store.durability()?;
    let setting = |name: &str| {
        durability
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    if setting("journal_mode") != Some("wal") || setting("synchronous") != Some("full") {
        return Err(StoreError::open_refused(
            &path.display().to_string(),
            format!("commits would not be durable with these settings: {durability:?}"),
        ));
    }
    Ok((store, checkpointer, durability))
}

/// Commits one group in one transaction. If the transaction fails, each
/// append is tried again in a transaction of its own, so a bad one fails
/// alone (SQLite rolls a failed commit back: nothing of the group was written).
fn commit_group(store: &mut SqliteStore, group: Vec<Pending>, counters: &Counters) {
    let (requests, replies): (Vec<AppendRequest>, Vec<_>) =
        group.into_iter().map(|p| (p.request, p.reply)).unzip();
    match store.append_requests(&requests) {
        Ok(results) => {
            counters.committed(&results);
            super::reply_all(replies, results);
        }
        Err(e) if requests.len() == 1 => {
            counters.failed(1);
            super::reply_all(replies, vec![Err(e)]);
        }
        Err(e) => {
            tracing::warn!(appends = requests.len(), error = %e, "a group commit failed; committing its appends one by one");
            for (request, reply) in requests.into_iter().zip(replies) {
                match store.append_requests(std::slice::from_ref(&request)) {
                    Ok(results) => {
                        counters.committed(&results);
                        super::reply_all(vec![reply], results);
                    }
                    Err(e) => {
                        counters.failed(1);
                        let _ = reply.send(Err(e));
                    }
                }
            }
        }
    }
}

impl Readers {
    /// Runs `write` on the store's side connection for writes other than
    /// appends (the anchor outbox), on a blocking thread. It is not the
    /// append writer's connection: SQLite serializes the two with its write
    /// lock (`BEGIN IMMEDIATE` and a busy timeout on both).
    pub(super) async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut SqliteStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let Some(writer) = self.writer.clone() else {
            return Err(StoreError::ReadOnly);
        };
        let path = self.path.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut writer = writer.lock().map_err(|_| StoreError::Closed)?;
            let conn = match &mut *writer {
                Some(conn) => conn,
                empty => empty.insert(SqliteStore::open(&path)?),
            };
            write(conn)
        });
        join(task).await
    }

    /// A read-only connection of its own for a read snapshot.
    pub(super) async fn connection(&self) -> Result<SqliteStore, StoreError> {
        let idle = Arc::clone(&self.idle);
        let path = self.path.clone();
        join(tokio::task::spawn_blocking(move || {
            match idle.lock().ok().and_then(|mut conns| conns.pop()) {
                Some(conn) => Ok(conn),
                None => SqliteStore::open_read_only(&path),
            }
        }))
        .await
    }

    /// Takes a connection back after a read snapshot ended.
    pub(super) fn give_back(&self, conn: SqliteStore) {
        if let Ok(mut conns) = self.idle.lock()
            && conns.len() < self.keep
        {
            conns.push(conn);
        }
    }
}

/// The result of a blocking task; its panic goes on in the caller.
pub(super) async fn join<T>(
    task: tokio::task::JoinHandle<Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match task.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::Closed),
    }
}

/// Opens the read connections of a read-only store: no writer thread, and
/// the ledger must exist with the schema this stele reads.
pub(super) async fn start_read_only(
    path: &Path,
    options: &StoreOptions,
) -> Result<Readers, StoreError> {
    let owned = path.to_owned();
    let first = join(tokio::task::spawn_blocking(move || {
        SqliteStore::open_read_only(&owned)
    }))
    .await?;
    Ok(Readers {
        path: path.to_owned(),
        idle: Arc::new(Mutex::new(vec![first])),
        keep: options.readers,
        writer: None,
    })
}
