//! Anchoring: turning a chain's state into signed anchors in WORM storage.
//!
//! An anchor is built and signed exactly once, stored in the database
//! outbox (`stele_anchors`) in the same breath, and only then uploaded.
//! If the upload fails the anchor stays pending and is retried — in anchor
//! order, per chain — until it lands; it is never dropped and never
//! re-signed with different content. [`Anchorer::run`] drives the cadence
//! (time, volume, key rotation, shutdown) for every chain.
//!
//! The store is synchronous; object-store calls run on a Tokio runtime
//! handle given by the caller, so this works from a plain thread.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::time::Duration;

use signed_note::StandardSigner;
use stele_anchor::cadence::{Cadence, ChainProgress};
use stele_anchor::{Anchor, AnchorInput, Trigger, object_hash, object_key};
use stele_ledger::{ChainId, Hash, merkle};
use stele_store::{AnchorRecord, AnchorStatus, AnchorUpload, LedgerStore, StoreError};
use stele_worm::{LockMode, ObjectStore, Retention, WormError};
use thiserror::Error;
use time::OffsetDateTime;
use tokio::runtime::Handle;

/// Anchoring failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AnchorerError {
    /// Settings are invalid.
    #[error("{0}")]
    Config(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The object store failed.
    #[error(transparent)]
    Worm(#[from] WormError),
    /// The anchor could not be built.
    #[error(transparent)]
    Anchor(#[from] stele_anchor::AnchorError),
    /// The chain is smaller than at its last anchor: history was removed.
    #[error(
        "chain {chain:?} has {size} events but anchor {anchor_seq} covered {anchored}: the database lost events since it was anchored (restored from an old backup, or tampered). Refusing to anchor; run `stele verify log`"
    )]
    ChainShrank {
        /// Chain.
        chain: String,
        /// Current size.
        size: u64,
        /// Size at the last anchor.
        anchored: u64,
        /// That anchor.
        anchor_seq: u64,
    },
    /// A stored anchor cannot be read back.
    #[error("stored anchor {anchor_seq} of chain {chain:?} is unreadable: {why}")]
    CorruptOutbox {
        /// Chain.
        chain: String,
        /// Anchor seq.
        anchor_seq: u64,
        /// Why.
        why: String,
    },
}

/// How anchors are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorPolicy {
    /// Optional key prefix in the bucket.
    pub prefix: Option<String>,
    /// Object Lock mode (COMPLIANCE unless asked).
    pub mode: LockMode,
    /// Retention in days from the anchor's time.
    pub retention_days: u32,
    /// The lowest retention the operator allows.
    pub min_retention_days: u32,
    /// When anchors are due.
    pub cadence: Cadence,
}

impl AnchorPolicy {
    /// 400 days: a year of audit plus the time an audit takes.
    pub const DEFAULT_RETENTION_DAYS: u32 = 400;
    /// Retention below a year is refused unless the operator lowers the floor.
    pub const DEFAULT_MIN_RETENTION_DAYS: u32 = 365;

    /// Checks the policy before anything is built or written.
    ///
    /// # Errors
    ///
    /// [`AnchorerError::Worm`] with [`WormError::RetentionBelowFloor`], or [`AnchorerError::Config`].
    pub fn validate(&self) -> Result<(), AnchorerError> {
        if self.retention_days < self.min_retention_days {
            return Err(WormError::RetentionBelowFloor {
                days: self.retention_days,
                floor: self.min_retention_days,
            }
            .into());
        }
        // No store can hold a later lock (S3: 100 years; Ceph RGW wraps after 2106).
        let max_days = stele_worm::max_retention_days(OffsetDateTime::now_utc());
        if self.retention_days > max_days {
            return Err(AnchorerError::Config(format!(
                "retention of {} days would end after {}, the latest retain-until any store can hold (S3 allows 100 years; Ceph RGW wraps a later date to one near 1970, unlocking the anchor); use at most {max_days} days",
                self.retention_days,
                stele_worm::rfc3339_secs(
                    stele_worm::latest_retain_until(OffsetDateTime::now_utc())
                )
            )));
        }
        if self.cadence.interval < Duration::from_secs(60) {
            return Err(AnchorerError::Config(
                "the anchor interval must be at least one minute".into(),
            ));
        }
        stele_anchor::chain_prefix(
            self.prefix.as_deref(),
            &ChainId::new("x").map_err(|e| AnchorerError::Config(e.to_string()))?,
        )
        .map_err(|e| AnchorerError::Config(e.to_string()))?;
        Ok(())
    }

    fn retention_for(&self, anchor_ts: OffsetDateTime) -> Retention {
        Retention {
            mode: self.mode,
            retain_until: anchor_ts + time::Duration::days(i64::from(self.retention_days)),
        }
    }
}

impl Default for AnchorPolicy {
    fn default() -> Self {
        Self {
            prefix: None,
            mode: LockMode::Compliance,
            retention_days: Self::DEFAULT_RETENTION_DAYS,
            min_retention_days: Self::DEFAULT_MIN_RETENTION_DAYS,
            cadence: Cadence::default(),
        }
    }
}

/// The result of one upload pass.
#[derive(Debug, Default)]
pub struct UploadReport {
    /// Anchors that landed, in order.
    pub uploaded: Vec<AnchorRecord>,
    /// Anchors that failed this time (one per chain at most: later ones wait their turn).
    pub failed: Vec<(AnchorRecord, WormError)>,
    /// Anchors still pending after the pass.
    pub still_pending: usize,
}

/// Builds and uploads anchors for one database.
pub struct Anchorer<'a> {
    store: &'a mut dyn LedgerStore,
    signer: &'a StandardSigner,
    policy: &'a AnchorPolicy,
}

/// Parses a stored anchor.
fn parse_record(record: &AnchorRecord) -> Result<Anchor, AnchorerError> {
    Anchor::from_bytes(&record.body).map_err(|e| AnchorerError::CorruptOutbox {
        chain: record.chain_id.clone(),
        anchor_seq: record.anchor_seq,
        why: e.to_string(),
    })
}

/// Time truncated to whole seconds (anchor times and keys have no finer precision).
fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

impl<'a> Anchorer<'a> {
    /// An anchorer over `store`, signing with `signer` (the checkpoint key).
    ///
    /// # Errors
    ///
    /// The policy's validation errors.
    pub fn new(
        store: &'a mut dyn LedgerStore,
        signer: &'a StandardSigner,
        policy: &'a AnchorPolicy,
    ) -> Result<Self, AnchorerError> {
        policy.validate()?;
        Ok(Self {
            store,
            signer,
            policy,
        })
    }

    /// The store, for callers that need it between anchoring steps.
    pub fn store(&mut self) -> &mut dyn LedgerStore {
        self.store
    }

    /// Builds, signs and stores (pending) the next anchor of `chain`.
    ///
    /// # Errors
    ///
    /// [`AnchorerError::ChainShrank`] if the chain lost events since its last
    /// anchor; store and signing errors.
    pub fn build(
        &mut self,
        chain: &ChainId,
        trigger: Trigger,
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<AnchorRecord, AnchorerError> {
        // Another process may anchor the same chain at the same moment; the
        // outbox's primary key decides, and the loser rebuilds from the new state.
        for _ in 0..5 {
            match self.try_build(chain, trigger, key_id, now) {
                Err(AnchorerError::Store(StoreError::AnchorConflict { .. })) => continue,
                other => return other,
            }
        }
        Err(AnchorerError::Config(format!(
            "could not build an anchor for {chain}: other writers kept anchoring first"
        )))
    }

    fn try_build(
        &mut self,
        chain: &ChainId,
        trigger: Trigger,
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<AnchorRecord, AnchorerError> {
        let last = self.store.last_anchor(chain)?;
        let prev = last
            .as_ref()
            .map(|r| parse_record(r).map(|a| (r, a)))
            .transpose()?;
        let (head, lsn) = self.store.head_with_lsn(chain)?;
        let size = head.as_ref().map_or(0, |h| h.size);
        let (root, last_hash) = match &head {
            Some(h) => (
                stele_store::tree_root(self.store, chain, Some(size))?.1,
                Some(h.head_hash),
            ),
            None => (tlog_empty_root(), None),
        };
        let mut ts = whole_seconds(now);
        let mut proof = Vec::new();
        if let Some((_, prev)) = &prev {
            if size < prev.tree_size {
                return Err(AnchorerError::ChainShrank {
                    chain: chain.to_string(),
                    size,
                    anchored: prev.tree_size,
                    anchor_seq: prev.anchor_seq,
                });
            }
            if prev.tree_size > 0 {
                proof = stele_store::consistency_proof(self.store, chain, prev.tree_size, size)?.2;
            }
            // Anchor times never go backwards, so key order stays anchor order.
            if let Ok(prev_ts) = prev.time() {
                ts = ts.max(prev_ts);
            }
        }
        let anchor_seq = prev.as_ref().map_or(0, |(_, a)| a.anchor_seq + 1);
        let anchor = Anchor::sign(
            &AnchorInput {
                chain,
                anchor_seq,
                trigger,
                tree_size: size,
                root,
                last_hash,
                key_id,
                ts,
                db_snapshot_lsn: lsn,
                prev_anchor_hash: prev.as_ref().map(|(r, _)| object_hash(&r.body)),
                consistency_proof: &proof,
            },
            self.signer,
        )?;
        let body = anchor.to_bytes()?;
        let record = AnchorRecord {
            chain_id: chain.to_string(),
            anchor_seq,
            trigger: trigger.as_str().to_owned(),
            tree_size: size,
            ts_utc: anchor.ts_utc.clone(),
            object_key: object_key(self.policy.prefix.as_deref(), chain, ts, anchor_seq)
                .map_err(|e| AnchorerError::Config(e.to_string()))?,
            body,
            status: AnchorStatus::Pending,
            attempts: 0,
            last_error: None,
            location: None,
            version_id: None,
            lock_mode: None,
            retain_until: None,
            uploaded_at: None,
        };
        self.store.insert_anchor(&record)?;
        tracing::info!(chain = %chain, anchor_seq, trigger = %trigger, tree_size = size, "anchor built");
        Ok(record)
    }

    /// Uploads every pending anchor, oldest first per chain; a chain stops at
    /// its first failure so anchors land in order.
    ///
    /// # Errors
    ///
    /// Store errors (upload failures are reported in the [`UploadReport`]).
    pub fn upload_pending(
        &mut self,
        target: &ObjectStore,
        rt: &Handle,
    ) -> Result<UploadReport, AnchorerError> {
        let pending = self.store.anchors(None, Some(AnchorStatus::Pending))?;
        let mut report = UploadReport::default();
        let mut blocked: Vec<String> = Vec::new();
        for record in pending {
            if blocked.contains(&record.chain_id) {
                report.still_pending += 1;
                continue;
            }
            let chain =
                ChainId::new(&record.chain_id).map_err(|e| AnchorerError::Config(e.to_string()))?;
            let anchor = parse_record(&record)?;
            let retention = self.policy.retention_for(anchor.time()?);
            match rt.block_on(target.put_locked(&record.object_key, &record.body, retention)) {
                Ok(stored) => {
                    let upload = AnchorUpload {
                        status: if stored.worm {
                            AnchorStatus::Verified
                        } else {
                            AnchorStatus::Uploaded
                        },
                        location: target.describe(),
                        version_id: stored.version_id.clone(),
                        lock_mode: stored.lock_mode.map(|m| m.as_str().to_owned()),
                        retain_until: stored.retain_until.map(stele_anchor_ts),
                    };
                    self.store
                        .mark_anchor_uploaded(&chain, record.anchor_seq, &upload)?;
                    tracing::info!(chain = %chain, anchor_seq = record.anchor_seq, key = %record.object_key, "anchor stored");
                    report.uploaded.push(AnchorRecord {
                        status: upload.status,
                        location: Some(upload.location),
                        version_id: upload.version_id,
                        lock_mode: upload.lock_mode,
                        retain_until: upload.retain_until,
                        ..record
                    });
                }
                Err(e) => {
                    tracing::warn!(chain = %chain, anchor_seq = record.anchor_seq, error = %e, "anchor upload failed; it stays pending");
                    self.store
                        .record_anchor_failure(&chain, record.anchor_seq, &e.to_string())?;
                    blocked.push(record.chain_id.clone());
                    report.still_pending += 1;
                    report.failed.push((record, e));
                }
            }
        }
        Ok(report)
    }

    /// What the cadence asks for, per chain, at `now`.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn due(
        &mut self,
        chains: &[ChainId],
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<(ChainId, Trigger)>, AnchorerError> {
        let mut due = Vec::new();
        for chain in chains {
            let progress = self.progress(chain, key_id)?;
            if let Some(trigger) = self.policy.cadence.due(&progress, now) {
                due.push((chain.clone(), trigger));
            }
        }
        Ok(due)
    }

    fn progress(&mut self, chain: &ChainId, key_id: &str) -> Result<ChainProgress, AnchorerError> {
        let last = self
            .store
            .last_anchor(chain)?
            .map(|r| parse_record(&r))
            .transpose()?;
        let size = self.store.head(chain)?.map_or(0, |h| h.size);
        Ok(ChainProgress {
            last_anchor_ts: last.as_ref().and_then(|a| a.time().ok()),
            last_anchor_size: last.as_ref().map_or(0, |a| a.tree_size),
            last_anchor_key_id: last.as_ref().map(|a| a.key_id.clone()),
            size,
            key_id: key_id.to_owned(),
        })
    }

    /// Builds a volume anchor if `chain` has reached the volume threshold since
    /// its last anchor (the append path calls this after each commit).
    ///
    /// # Errors
    ///
    /// Store and build errors.
    pub fn anchor_if_volume_due(
        &mut self,
        chain: &ChainId,
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<AnchorRecord>, AnchorerError> {
        let p = self.progress(chain, key_id)?;
        let volume = self.policy.cadence.volume;
        if volume > 0 && p.size.saturating_sub(p.last_anchor_size) >= volume {
            return self.build(chain, Trigger::Volume, key_id, now).map(Some);
        }
        Ok(None)
    }

    /// Runs the cadence until `wait` reports shutdown: each round builds due
    /// anchors, uploads pending ones (backing off while the store is down), then
    /// calls `wait(d)` which sleeps up to `d` and returns true to stop. On stop,
    /// every chain gets a `shutdown` anchor and one last upload pass.
    ///
    /// `chains` lists the chains to anchor (`None`: every chain in the database);
    /// `key_id` returns the active HMAC key id each round, so rotations by other
    /// processes are noticed.
    ///
    /// # Errors
    ///
    /// Store, build and configuration errors; upload failures are retried, not returned.
    pub fn run(
        &mut self,
        target: &ObjectStore,
        rt: &Handle,
        chains: Option<&[ChainId]>,
        key_id: &mut dyn FnMut() -> Result<String, AnchorerError>,
        on_round: &mut dyn FnMut(&UploadReport),
        wait: &mut dyn FnMut(Duration) -> bool,
    ) -> Result<UploadReport, AnchorerError> {
        let backoff = stele_worm::RetryPolicy {
            attempts: u32::MAX,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15),
        };
        let mut failures = 0u32;
        loop {
            let report = self.round(target, rt, chains, &key_id()?, OffsetDateTime::now_utc())?;
            on_round(&report);
            failures = if report.failed.is_empty() {
                0
            } else {
                failures.saturating_add(1)
            };
            // Poll often enough to notice volume; back off while uploads fail.
            let pause = if failures == 0 {
                Duration::from_secs(1)
            } else {
                backoff
                    .delay(failures.saturating_add(1).min(8))
                    .max(Duration::from_millis(500))
            };
            if wait(pause) {
                break;
            }
        }
        let key = key_id()?;
        let now = OffsetDateTime::now_utc();
        for chain in self.chain_list(chains)? {
            self.build(&chain, Trigger::Shutdown, &key, now)?;
        }
        let report = self.upload_pending(target, rt)?;
        on_round(&report);
        Ok(report)
    }

    /// One cadence round: builds the anchors that are due at `now`, then uploads every pending one.
    ///
    /// # Errors
    ///
    /// Store and build errors; upload failures are in the report.
    pub fn round(
        &mut self,
        target: &ObjectStore,
        rt: &Handle,
        chains: Option<&[ChainId]>,
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<UploadReport, AnchorerError> {
        let all = self.chain_list(chains)?;
        for (chain, trigger) in self.due(&all, key_id, now)? {
            self.build(&chain, trigger, key_id, now)?;
        }
        self.upload_pending(target, rt)
    }

    fn chain_list(&mut self, chains: Option<&[ChainId]>) -> Result<Vec<ChainId>, AnchorerError> {
        match chains {
            Some(c) => Ok(c.to_vec()),
            None => self
                .store
                .chains()?
                .iter()
                .map(|h| {
                    ChainId::new(&h.chain_id).map_err(|e| AnchorerError::Config(e.to_string()))
                })
                .collect(),
        }
    }
}

fn tlog_empty_root() -> Hash {
    // MTH of the empty tree: SHA-256 of the empty string (RFC 6962 §2.1).
    merkle::TreeAppender::empty().root()
}

fn stele_anchor_ts(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
