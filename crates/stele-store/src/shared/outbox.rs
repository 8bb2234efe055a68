//! The anchor outbox of a shared [`Store`]: anchors built and signed once,
//! then leased to one uploader at a time until they land. Apart from the
//! event log: its own table, its own writes (SQLite: a side connection,
//! serialized with appends by SQLite's write lock), its records typed and
//! owned by the anchoring side ([`stele_anchor::AnchorRecord`]).

use std::time::Duration;

use stele_ledger::ChainId;

use super::{Backend, Store};
use crate::{AnchorRecord, AnchorStatus, AnchorUpload, LedgerStore as _, StoreError};

impl Store {
    /// Anchors in (chain, anchor seq) order, optionally for one chain and/or status.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn anchors(
        &self,
        chain: Option<&ChainId>,
        status: Option<AnchorStatus>,
    ) -> Result<Vec<AnchorRecord>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(r) => {
                let chain = chain.cloned();
                r.read(move |s| crate::LedgerStore::anchors(s, chain.as_ref(), status))
                    .await
            }
            Backend::Postgres(p) => p.anchors(chain, status).await,
        }
    }

    /// Stores a new anchor in the outbox, status pending.
    ///
    /// # Errors
    ///
    /// [`StoreError::AnchorConflict`] if that anchor seq exists;
    /// [`StoreError::ReadOnly`]; database errors.
    pub async fn insert_anchor(&self, anchor: &AnchorRecord) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(r) => {
                let anchor = anchor.clone();
                r.write(move |s| s.insert_anchor(&anchor)).await
            }
            Backend::Postgres(p) => p.insert_anchor(anchor).await,
        }
    }

    /// The chain's latest anchor, whatever its status.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn last_anchor(&self, chain: &ChainId) -> Result<Option<AnchorRecord>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(r) => {
                let chain = chain.clone();
                r.read(move |s| s.last_anchor(&chain)).await
            }
            Backend::Postgres(p) => p.last_anchor(chain).await,
        }
    }

    /// Leases a pending anchor to `owner` for `ttl` and counts one upload
    /// attempt: only the holder uploads it, so two processes never upload
    /// the same anchor at once. Granted only if the anchor is pending, no
    /// unexpired lease is held on it (an expired one, e.g. of a killed
    /// process, is taken over), and no earlier anchor of the chain is still
    /// pending (anchors land in order). One atomic statement; no
    /// transaction stays open while the holder uploads. Returns whether
    /// the lease was granted.
    ///
    /// # Errors
    ///
    /// [`StoreError::ReadOnly`]; database errors.
    pub async fn lease_anchor(
        &self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(r) => {
                let (chain, owner) = (chain.clone(), owner.to_owned());
                r.write(move |s| s.lease_anchor(&chain, anchor_seq, &owner, ttl))
                    .await
            }
            Backend::Postgres(p) => p.lease_anchor(chain, anchor_seq, owner, ttl).await,
        }
    }

    /// Records a successful write of an anchor and ends the lease, if
    /// `owner` still holds it; returns whether it did.
    ///
    /// # Errors
    ///
    /// [`StoreError::ReadOnly`]; database errors.
    pub async fn mark_anchor_uploaded(
        &self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        upload: &AnchorUpload,
    ) -> Result<bool, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(r) => {
                let (chain, owner, upload) = (chain.clone(), owner.to_owned(), upload.clone());
                r.write(move |s| s.mark_anchor_uploaded(&chain, anchor_seq, &owner, &upload))
                    .await
            }
            Backend::Postgres(p) => {
                p.mark_anchor_uploaded(chain, anchor_seq, owner, upload)
                    .await
            }
        }
    }

    /// Records a failed upload attempt and ends the lease, if `owner` still
    /// holds it; the anchor stays pending. Returns whether `owner` held it.
    ///
    /// # Errors
    ///
    /// [`StoreError::ReadOnly`]; database errors.
    pub async fn record_anchor_failure(
        &self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        error: &str,
    ) -> Result<bool, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(r) => {
                let (chain, owner, error) = (chain.clone(), owner.to_owned(), error.to_owned());
                r.write(move |s| s.record_anchor_failure(&chain, anchor_seq, &owner, &error))
                    .await
            }
            Backend::Postgres(p) => {
                p.record_anchor_failure(chain, anchor_seq, owner, error)
                    .await
            }
        }
    }

    /// Moves a still-pending anchor to another object key, recording `note`
    /// as its last error, if `owner` holds its lease; the body never changes.
    /// Returns whether `owner` held the lease.
    ///
    /// # Errors
    ///
    /// [`StoreError::ReadOnly`]; database errors.
    pub async fn set_anchor_object_key(
        &self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        object_key: &str,
        note: &str,
    ) -> Result<bool, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(r) => {
                let (chain, owner) = (chain.clone(), owner.to_owned());
                let (object_key, note) = (object_key.to_owned(), note.to_owned());
                r.write(move |s| {
                    s.set_anchor_object_key(&chain, anchor_seq, &owner, &object_key, &note)
                })
                .await
            }
            Backend::Postgres(p) => {
                p.set_anchor_object_key(chain, anchor_seq, owner, object_key, note)
                    .await
            }
        }
    }
}
