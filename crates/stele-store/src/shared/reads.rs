//! Reads of one consistent state of a shared [`Store`] ([`ReadSnapshot`]),
//! and the reads the anchorer needs beside it.

use stele_ledger::{ChainId, Event, Hash, StoredEvent, merkle};

use super::{Backend, Store, postgres, sqlite};
use crate::{AnchorRecord, AnchorStatus, ChainHead, LedgerStore as _, StoreError};

impl Store {
    /// The chain head together with the database's snapshot position
    /// (`pg_current_wal_lsn()` on PostgreSQL, `None` on SQLite), read atomically.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn head_with_lsn(
        &self,
        chain: &ChainId,
    ) -> Result<(Option<ChainHead>, Option<String>), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(r) => {
                let chain = chain.clone();
                r.read(move |s| s.head_with_lsn(&chain)).await
            }
            Backend::Postgres(p) => p.head_with_lsn(chain).await,
        }
    }

    /// Stored Merkle hashes by tlog stored-hash index, in the order asked.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if one is missing; database errors.
    pub async fn read_hashes(
        &self,
        chain: &ChainId,
        indexes: &[u64],
    ) -> Result<Vec<Hash>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(r) => {
                let (chain, indexes) = (chain.clone(), indexes.to_vec());
                r.read(move |s| s.read_hashes(&chain, &indexes)).await
            }
            Backend::Postgres(p) => p.read_hashes(chain, indexes).await,
        }
    }

    /// Opens a read snapshot: every read through it (heads, scans, stored
    /// hashes, anchors) sees one and the same committed state, whatever is
    /// appended meanwhile — a verification, an export or a proof describes
    /// one state of the ledger. PostgreSQL: a `REPEATABLE READ, READ ONLY`
    /// transaction on a connection of its own; SQLite: a read transaction
    /// on a connection of its own. Appends go on beside it.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn read_snapshot(&self) -> Result<ReadSnapshot, StoreError> {
        let conn = match &self.inner.backend {
            Backend::Sqlite(r) => {
                let mut conn = r.connection().await?;
                let conn = sqlite::join(tokio::task::spawn_blocking(move || {
                    conn.begin_read_snapshot()?;
                    Ok(conn)
                }))
                .await?;
                SnapshotConn::Sqlite(Some(conn))
            }
            Backend::Postgres(p) => SnapshotConn::Postgres(p.snapshot().await?),
        };
        Ok(ReadSnapshot {
            store: self.clone(),
            conn,
        })
    }
}

enum SnapshotConn {
    /// `None` while a read runs on a blocking thread, or after a read failed there.
    Sqlite(Option<crate::sqlite::SqliteStore>),
    Postgres(postgres::Snapshot),
}

/// One consistent state of the ledger, opened by [`Store::read_snapshot`].
/// End it with [`end`](Self::end); dropping it ends it too.
pub struct ReadSnapshot {
    store: Store,
    conn: SnapshotConn,
}

impl std::fmt::Debug for ReadSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSnapshot")
            .field("backend", &self.store.backend())
            .finish_non_exhaustive()
    }
}

impl ReadSnapshot {
    /// Runs `read` on the SQLite connection on a blocking thread.
    async fn sqlite<T: Send + 'static>(
        slot: &mut Option<crate::sqlite::SqliteStore>,
        read: impl FnOnce(&mut crate::sqlite::SqliteStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let mut conn = slot.take().ok_or(StoreError::Closed)?;
        let (conn, result) = sqlite::join(tokio::task::spawn_blocking(move || {
            let result = read(&mut conn);
            Ok((conn, result))
        }))
        .await?;
        *slot = Some(conn);
        result
    }

    /// Every chain's head, ordered by chain id.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn chains(&mut self) -> Result<Vec<ChainHead>, StoreError> {
        match &mut self.conn {
            SnapshotConn::Sqlite(c) => Self::sqlite(c, |s| s.chains()).await,
            SnapshotConn::Postgres(p) => p.chains().await,
        }
    }

    /// One chain's head, or `None` if it has no events.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn head(&mut self, chain: &ChainId) -> Result<Option<ChainHead>, StoreError> {
        match &mut self.conn {
            SnapshotConn::Sqlite(c) => {
                let chain = chain.clone();
                Self::sqlite(c, move |s| s.head(&chain)).await
            }
            SnapshotConn::Postgres(p) => p.head(chain).await,
        }
    }

    /// Stored Merkle hashes by tlog stored-hash index, in the order asked.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if one is missing; database errors.
    pub async fn read_hashes(
        &mut self,
        chain: &ChainId,
        indexes: &[u64],
    ) -> Result<Vec<Hash>, StoreError> {
        match &mut self.conn {
            SnapshotConn::Sqlite(c) => {
                let (chain, indexes) = (chain.clone(), indexes.to_vec());
                Self::sqlite(c, move |s| s.read_hashes(&chain, &indexes)).await
            }
            SnapshotConn::Postgres(p) => p.read_hashes(chain, indexes).await,
        }
    }

    /// Anchors in (chain, anchor seq) order, optionally for one chain and/or status.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn anchors(
        &mut self,
        chain: Option<&ChainId>,
        status: Option<AnchorStatus>,
    ) -> Result<Vec<AnchorRecord>, StoreError> {
        match &mut self.conn {
            SnapshotConn::Sqlite(c) => {
                let chain = chain.cloned();
                Self::sqlite(c, move |s| s.anchors(chain.as_ref(), status)).await
            }
            SnapshotConn::Postgres(p) => p.anchors(chain, status).await,
        }
    }

    /// Runs a tlog computation over this snapshot's stored hashes.
    async fn tlog<T>(
        &mut self,
        chain: &ChainId,
        compute: impl Fn(&super::FetchedHashes) -> Result<T, merkle::MerkleError>,
    ) -> Result<T, StoreError> {
        let mut fetched = super::FetchedHashes::default();
        loop {
            match fetched.run(&compute)? {
                super::Pass::Done(value) => return Ok(value),
                super::Pass::Needs(indexes) => {
                    let hashes = self.read_hashes(chain, &indexes).await?;
                    fetched.add(indexes, hashes);
                }
            }
        }
    }

    /// `size`, or the head's size if `None`, checked to be within the chain.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownChain`], [`StoreError::OutOfRange`], database errors.
    pub async fn checked_size(
        &mut self,
        chain: &ChainId,
        size: Option<u64>,
    ) -> Result<u64, StoreError> {
        crate::size_within(chain, self.head(chain).await?, size)
    }

    /// The Merkle root at tree size `size` and, if `from` is given, the
    /// consistency proof from tree size `from` to `size`: both computed
    /// from the stored hashes of this snapshot.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if a stored hash is missing; database errors.
    pub async fn root_and_proof(
        &mut self,
        chain: &ChainId,
        size: u64,
        from: Option<u64>,
    ) -> Result<(Hash, Vec<Hash>), StoreError> {
        self.tlog(chain, |hashes| {
            let root = merkle::root(size, hashes)?;
            let proof = match from {
                Some(from) if from > 0 && from < size => {
                    merkle::consistency_proof(from, size, hashes)?
                }
                _ => Vec::new(),
            };
            Ok((root, proof))
        })
        .await
    }

    /// An RFC 6962 inclusion proof of `seq` in the tree of `size` (the
    /// head's if `None`): the size, its root and the proof.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownChain`], [`StoreError::OutOfRange`], database errors.
    pub async fn inclusion_proof(
        &mut self,
        chain: &ChainId,
        seq: u64,
        size: Option<u64>,
    ) -> Result<(u64, Hash, Vec<Hash>), StoreError> {
        let size = self.checked_size(chain, size).await?;
        if seq >= size {
            return Err(StoreError::OutOfRange(format!(
                "seq {seq} is not in chain {chain:?} at tree size {size}"
            )));
        }
        let (root, proof) = self
            .tlog(chain, |hashes| {
                Ok((
                    merkle::root(size, hashes)?,
                    merkle::inclusion_proof(size, seq, hashes)?,
                ))
            })
            .await?;
        Ok((size, root, proof))
    }

    /// The stored events with `from <= seq <= to`, in seq order.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn events(
        &mut self,
        chain: &ChainId,
        from: u64,
        to: Option<u64>,
    ) -> Result<Vec<Event>, StoreError> {
        let mut events = Vec::new();
        self.scan(chain, from, to, &mut |e, _| {
            events.push(e.to_event());
            Ok(())
        })
        .await?;
        Ok(events)
    }

    /// The event at `seq`.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownChain`], [`StoreError::OutOfRange`], database errors.
    pub async fn event(&mut self, chain: &ChainId, seq: u64) -> Result<Event, StoreError> {
        if let Some(event) = self.events(chain, seq, Some(seq)).await?.pop() {
            return Ok(event);
        }
        let size = self.checked_size(chain, None).await?;
        Err(StoreError::OutOfRange(format!(
            "chain {chain:?} has no event with seq {seq} (it has {size} events)"
        )))
    }

    /// Streams the stored rows with `from <= seq <= to` in seq order, each
    /// borrowed, with its stored Merkle nodes (concatenated 32-byte
    /// hashes, as stored). Rows are decoded in batches; `visit` runs on
    /// the caller's task.
    ///
    /// # Errors
    ///
    /// Database errors, or the first error returned by `visit`.
    pub async fn scan<F>(
        &mut self,
        chain: &ChainId,
        from: u64,
        to: Option<u64>,
        visit: &mut F,
    ) -> Result<(), StoreError>
    where
        F: FnMut(StoredEvent<'_>, &[u8]) -> Result<(), StoreError> + Send + ?Sized,
    {
        match &mut self.conn {
            SnapshotConn::Sqlite(slot) => {
                let mut conn = slot.take().ok_or(StoreError::Closed)?;
                let (mut sink, batches) = crate::scan::channel();
                let chain = chain.clone();
                let reader = tokio::task::spawn_blocking(move || {
                    let read = conn.scan_into(&chain, from, to, &mut sink);
                    if read.is_ok() {
                        sink.finish();
                    }
                    Ok((conn, read))
                });
                let visited = crate::scan::visit_batches(batches, visit).await;
                let (conn, read) = sqlite::join(reader).await?;
                *slot = Some(conn);
                // A visitor error comes first: the reader only saw the scan stop.
                visited.and(read)
            }
            SnapshotConn::Postgres(p) => {
                let mut sink = crate::scan::VisitingSink::new(visit);
                let read = p.scan(chain, from, to, &mut sink).await;
                sink.finish(read)
            }
        }
    }

    /// Ends the snapshot and gives its connection back.
    ///
    /// # Errors
    ///
    /// Database errors (the snapshot is ended all the same).
    pub async fn end(mut self) -> Result<(), StoreError> {
        match std::mem::replace(&mut self.conn, SnapshotConn::Sqlite(None)) {
            SnapshotConn::Sqlite(Some(mut conn)) => {
                let conn = sqlite::join(tokio::task::spawn_blocking(move || {
                    conn.end_read_snapshot()?;
                    Ok(conn)
                }))
                .await?;
                if let Backend::Sqlite(r) = &self.store.inner.backend {
                    r.give_back(conn);
                }
                Ok(())
            }
            SnapshotConn::Sqlite(None) => Ok(()),
            SnapshotConn::Postgres(p) => p.end().await,
        }
    }
}
