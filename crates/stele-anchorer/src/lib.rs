//! Anchoring: turning a chain's state into signed anchors in WORM storage.
//!
//! An anchor is built and signed exactly once, stored in the database
//! outbox (`stele_anchors`) in the same breath, and only then uploaded.
//! If the upload fails the anchor stays pending and is retried — in anchor
//! order, per chain — until it lands; it is never dropped and never
//! re-signed with different content. [`Anchorer::run`] drives the cadence
//! (time, volume, key rotation, shutdown) for every chain.
//!
//! Every step is async over the shared [`Store`] and the object store, and
//! an [`Anchorer`]'s futures are `Send`: it runs as a task of a server's
//! runtime, or under one `block_on` in a command.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use signed_note::{Signer as _, StandardSigner, Verifier as _};
use stele_anchor::cadence::{Cadence, ChainProgress};
use stele_anchor::{
    Anchor, AnchorInput, Trigger, alternate_object_key, check_link, object_hash, object_key,
};
use stele_anchor::{AnchorRecord, AnchorStatus, AnchorUpload, NewAnchor};
use stele_ledger::checkpoint::{key_label, signature_keys};
use stele_ledger::{ChainId, Hash, Keyring, merkle, parse_hex_hash};
use stele_store::{ChainHead, ReadSnapshot, Store, StoreError};
use stele_worm::{LockMode, ObjectStore, Retention, WormError};
use thiserror::Error;
use time::OffsetDateTime;

mod checked;

pub use checked::{CheckedRoot, KeyringSource, RootWanted, TreeChecker};

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
        "chain {chain:?} has {size} events but anchor {anchor_seq} covered {anchored}: the database lost events since it was anchored (restored from an old backup, or tampered). Refusing to anchor; verify the log to find what was removed"
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
    /// A stored anchor is not one this anchorer signed as it is: the outbox
    /// row (`stele_anchors`) was altered in the database.
    #[error(
        "outbox row stele_anchors (chain {chain:?}, anchor_seq {anchor_seq}) is corrupt: {why}. This is evidence that the database was tampered with; nothing was signed or uploaded. Refusing to anchor until it is investigated (compare it with the anchor in the bucket)"
    )]
    CorruptOutbox {
        /// Chain.
        chain: String,
        /// Anchor seq.
        anchor_seq: u64,
        /// Why.
        why: String,
    },
    /// A stored anchor was signed with another signing key than this
    /// anchorer's: the key was changed since the anchor was built, so this
    /// anchorer can neither re-check it nor build on it.
    #[error(
        "outbox row stele_anchors (chain {chain:?}, anchor_seq {anchor_seq}) holds an anchor signed with a different key ({signed_with}) than the one this anchorer signs with ({signs_with}): the signing key was changed since that anchor was built. This key cannot re-check it, so nothing was signed or uploaded for the chain. Sign with the key that signed it; if the key was not changed on purpose, the row was altered"
    )]
    SignedByOtherKey {
        /// Chain.
        chain: String,
        /// Anchor seq.
        anchor_seq: u64,
        /// The key(s) its checkpoint names as signers (`name+hexid`).
        signed_with: String,
        /// This anchorer's key (`name+hexid`).
        signs_with: String,
    },
    /// The events since the last anchor do not check: signing them would
    /// vouch for altered history.
    #[error(
        "refusing to anchor chain {chain:?}: {}{what}. The database was altered after these events were written; nothing was signed. Verify the log and investigate",
        seq.map(|s| format!("seq {s}: ")).unwrap_or_default()
    )]
    UnanchoredTampering {
        /// Chain.
        chain: String,
        /// The event concerned, if one.
        seq: Option<u64>,
        /// What differs.
        what: String,
    },
    /// A checkpoint or proof was asked for, but the chain does not check
    /// (see [`TreeChecker`]): nothing was signed.
    #[error(
        "chain {chain:?} does not check, so nothing was signed: {}{what}. The database was altered after these events were written; verify the log and investigate",
        seq.map(|s| format!("seq {s}: ")).unwrap_or_default()
    )]
    CheckFailed {
        /// Chain.
        chain: String,
        /// The event concerned, if one.
        seq: Option<u64>,
        /// What differs.
        what: String,
    },
    /// An event names an HMAC key this process does not hold, so its link
    /// cannot be checked and nothing is signed over it.
    #[error(
        "chain {chain:?}, seq {seq}: HMAC key {key_id:?} is not in the keyring, so its link cannot be checked and nothing was signed (after `stele keys rotate`, the new key must be in the keyring this process reads)"
    )]
    UnknownHmacKey {
        /// Chain.
        chain: String,
        /// The event.
        seq: u64,
        /// The key id it names.
        key_id: String,
    },
    /// Other writers kept creating the next anchor first, through every
    /// attempt: nothing is wrong, and a later try will build on theirs.
    #[error("could not build an anchor for {chain}: other writers kept anchoring first")]
    Contended {
        /// Chain.
        chain: String,
    },
    /// The previous anchor is dated in the future: anchors built on it would be too.
    #[error(
        "the latest anchor of chain {chain:?} (anchor_seq {anchor_seq}) is dated {ts}, more than a day after now ({now}): the clock was wrong when it was signed. Refusing to build later anchors on it; fix the clock or investigate"
    )]
    AnchorInFuture {
        /// Chain.
        chain: String,
        /// Anchor seq.
        anchor_seq: u64,
        /// Its time.
        ts: String,
        /// Now.
        now: String,
    },
    /// The bucket already holds anchors of this chain signed by another key:
    /// another ledger anchors the same chain id under the same prefix.
    #[error(
        "the bucket already holds anchors of chain {chain:?} under {prefix} that this ledger did not sign ({key}, anchor_seq {anchor_seq}, {why}): another ledger anchors a chain with the same id there. Anchors cannot be removed, and writing ours beside them would fork that WORM history (and make its anchor verification fail for good), so nothing was signed or uploaded. Use another chain id for this ledger, or another prefix or bucket"
    )]
    ForeignAnchors {
        /// Chain.
        chain: String,
        /// The chain's key prefix in the bucket.
        prefix: String,
        /// The newest such object.
        key: String,
        /// Its anchor seq.
        anchor_seq: u64,
        /// Why it is not ours.
        why: String,
    },
    /// The bucket holds an anchor of this chain signed by our key that the
    /// database does not know: it was restored from an older backup (or
    /// another copy of the ledger anchors too).
    #[error(
        "the bucket holds anchor_seq {anchor_seq} of chain {chain:?} ({key}), signed by this ledger's key, that this database's outbox does not have: the database was restored from an older backup, or another copy of this ledger anchors the same chain. Anchoring now would fork the WORM history, so nothing was signed or uploaded. Restore the newest database (or recover the missing events and anchors), and verify the bucket's anchors to see what it holds"
    )]
    UnknownOwnAnchor {
        /// Chain.
        chain: String,
        /// The object.
        key: String,
        /// Its anchor seq.
        anchor_seq: u64,
    },
}

impl AnchorerError {
    /// True when the same operation may succeed if tried again unchanged:
    /// the database or the object store failed for a passing reason (see
    /// [`StoreError::is_retryable`], [`WormError::is_retryable`]), or other
    /// writers kept anchoring first. Settings, a malformed anchor and every
    /// sign of tampering or a forked history are not: they need a change
    /// or an investigation first.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Worm(e) => e.is_retryable(),
            Self::Contended { .. } => true,
            Self::Config(_)
            | Self::Anchor(_)
            | Self::ChainShrank { .. }
            | Self::CorruptOutbox { .. }
            | Self::SignedByOtherKey { .. }
            | Self::UnanchoredTampering { .. }
            | Self::CheckFailed { .. }
            | Self::UnknownHmacKey { .. }
            | Self::AnchorInFuture { .. }
            | Self::ForeignAnchors { .. }
            | Self::UnknownOwnAnchor { .. } => false,
        }
    }
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

    fn retention_for(&self, anchor_ts: OffsetDateTime) -> Result<Retention, AnchorerError> {
        let retain_until = anchor_ts
            .checked_add(time::Duration::days(i64::from(self.retention_days)))
            .ok_or_else(|| {
                AnchorerError::Config(format!(
                    "an anchor dated {} cannot be retained {} days: the date is out of range",
                    stele_anchor_ts(anchor_ts),
                    self.retention_days
                ))
            })?;
        Ok(Retention {
            mode: self.mode,
            retain_until,
        })
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

/// What ends a wait of [`Anchorer::run_until`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The pause is over: next round.
    Elapsed,
    /// Write the shutdown anchors, upload, and return.
    Stop,
    /// Anchor these chains' heads now (then the next round uploads them).
    AnchorNow(Vec<ChainId>),
}

/// What [`Anchorer::run_until`] waits on between rounds: the pause, and
/// whatever may end it early (a shutdown, a client waiting for an anchor).
/// A trait rather than an async closure, so that the run's future is `Send`
/// with a waiter that borrows its state (a command inbox) mutably.
pub trait Waiter: Send {
    /// Waits up to `pause`, then says what comes next.
    fn wait(&mut self, pause: Duration) -> impl Future<Output = Wake> + Send;
}

/// Pauses until `stop` completes (see [`Anchorer::run`]).
struct UntilStop<F> {
    stop: std::pin::Pin<Box<F>>,
}

impl<F: Future<Output = ()> + Send> Waiter for UntilStop<F> {
    async fn wait(&mut self, pause: Duration) -> Wake {
        tokio::select! {
            () = tokio::time::sleep(pause) => Wake::Elapsed,
            () = &mut self.stop => Wake::Stop,
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
    /// Intended anchor keys found taken by another object (see [`Squatted`]).
    pub squatted: Vec<Squatted>,
    /// Anchors left to another process holding their outbox lease (included in `still_pending`).
    pub leased_elsewhere: usize,
    /// Chains whose anchors were not uploaded because something about them
    /// needs investigating (see [`RefusedChain`]); their anchors are
    /// included in `still_pending`, and the other chains went on.
    pub refused: Vec<RefusedChain>,
}

/// A chain the upload pass stopped at: one of its outbox rows is not an
/// anchor this anchorer signed as it reads ([`AnchorerError::CorruptOutbox`],
/// [`AnchorerError::SignedByOtherKey`]), or the bucket holds anchors of it
/// that are not this ledger's history ([`AnchorerError::ForeignAnchors`],
/// [`AnchorerError::UnknownOwnAnchor`]). Its anchors wait in the outbox;
/// within [`Anchorer::run`] it is not tried again until the next start.
#[derive(Debug)]
pub struct RefusedChain {
    /// Chain.
    pub chain_id: String,
    /// Why.
    pub error: AnchorerError,
}

/// An anchor's intended key held an object with other bytes (someone who may
/// write to the bucket created it first), so the anchor went to its alternate
/// key ([`stele_anchor::alternate_object_key`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Squatted {
    /// Chain.
    pub chain_id: String,
    /// Anchor seq.
    pub anchor_seq: u64,
    /// The intended key, held by the other object.
    pub key: String,
    /// What the store says that object's SHA-256 is (`unknown` if it does not say).
    pub existing_sha256: String,
    /// Where the anchor goes instead.
    pub moved_to: String,
}

/// Builds and uploads anchors for one database.
pub struct Anchorer<'a> {
    store: Store,
    signer: &'a StandardSigner,
    keys: &'a Keyring,
    policy: &'a AnchorPolicy,
    /// Names this anchorer in outbox leases (see [`Anchorer::upload_pending`]).
    lease_owner: String,
    /// How long a lease lasts; see [`DEFAULT_LEASE_TTL`].
    lease_ttl: Duration,
    /// Per chain, what this anchorer has seen in the bucket (see [`BucketCursor`]).
    bucket_cursors: HashMap<String, BucketCursor>,
}

/// What an anchorer knows of a chain's objects in the bucket, so that each
/// history check lists only the keys written since the one before.
#[derive(Debug, Default)]
struct BucketCursor {
    /// The newest key found holding one of this ledger's anchors: what sorts
    /// before it was checked, so later listings start after it.
    after: Option<String>,
    /// Keys after it already read and let pass (other objects, squatters):
    /// listed again, not read again.
    passed: HashSet<String>,
}

/// How long an outbox lease lasts: longer than one upload with its retries
/// (each S3 attempt may take up to two minutes), so a live holder is never
/// overtaken; a killed holder's anchors wait this long before another
/// process takes them over.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10 * 60);

/// A name for this anchorer in outbox leases, unique per process and instance.
fn new_lease_owner() -> String {
    format!("pid{}-{:016x}", std::process::id(), rand::random::<u64>())
}

/// What a build reads from one snapshot of its chain.
enum Snapshotted<'r> {
    /// The pending anchor already covers the tree: nothing new to build.
    Covered(&'r AnchorRecord),
    /// The tree to sign, checked.
    Checked(CheckedTree),
}

/// A chain's tree as one snapshot holds it, every event since the previous
/// anchor checked.
struct CheckedTree {
    size: u64,
    /// Computed from the events, not read from storage.
    root: Hash,
    last_hash: Option<Hash>,
    /// From the previous anchor's tree, as storage serves it.
    proof: Vec<Hash>,
    lsn: Option<String>,
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
    /// An anchorer over `store` (a clone of the shared store), signing with
    /// `signer` (the checkpoint key). `keys` (every HMAC key the chain was
    /// written with) lets it check the HMAC links of the events since the
    /// last anchor before it signs them.
    ///
    /// # Errors
    ///
    /// The policy's validation errors.
    pub fn new(
        store: Store,
        signer: &'a StandardSigner,
        keys: &'a Keyring,
        policy: &'a AnchorPolicy,
    ) -> Result<Self, AnchorerError> {
        policy.validate()?;
        Ok(Self {
            store,
            signer,
            keys,
            policy,
            lease_owner: new_lease_owner(),
            lease_ttl: DEFAULT_LEASE_TTL,
            bucket_cursors: HashMap::new(),
        })
    }

    /// Takes a stable identity for outbox leases instead of a new one per
    /// process: a process restarted under the same identity (a gateway on
    /// the same data directory, after a crash) takes its predecessor's
    /// leases over at once instead of waiting for them to expire. Two
    /// processes must never run under one identity at the same time.
    #[must_use]
    pub fn with_lease_owner(mut self, owner: impl Into<String>) -> Self {
        self.lease_owner = owner.into();
        self
    }

    /// Sets how long this anchorer's outbox leases last (default [`DEFAULT_LEASE_TTL`]).
    #[must_use]
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The name this anchorer holds outbox leases under.
    pub fn lease_owner(&self) -> &str {
        &self.lease_owner
    }

    /// The store, for callers that need it between anchoring steps.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Builds, signs and stores (pending) the next anchor of `chain`.
    ///
    /// # Errors
    ///
    /// [`AnchorerError::ChainShrank`] if the chain lost events since its last
    /// anchor; store and signing errors.
    pub async fn build(
        &mut self,
        chain: &ChainId,
        trigger: Trigger,
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<AnchorRecord, AnchorerError> {
        // Another process may anchor the same chain at the same moment; the
        // outbox's primary key decides, and the loser rebuilds from the new state.
        for _ in 0..5 {
            match self.try_build(chain, trigger, key_id, now).await {
                Err(AnchorerError::Store(StoreError::AnchorConflict { .. })) => continue,
                other => return other,
            }
        }
        Err(AnchorerError::Contended {
            chain: chain.to_string(),
        })
    }

    async fn try_build(
        &mut self,
        chain: &ChainId,
        trigger: Trigger,
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<AnchorRecord, AnchorerError> {
        let last = self.store.last_anchor(chain).await?;
        let prev = match &last {
            Some(r) => Some((r, self.check_latest_anchor(r, now)?)),
            None => None,
        };
        let mut ts = whole_seconds(now);
        if let Some((_, prev)) = &prev
            && let Ok(prev_ts) = prev.time()
        {
            // Anchor times never go backwards, so key order stays anchor order.
            ts = ts.max(prev_ts);
        }
        // The head, the rows, the stored hashes and the consistency proof
        // are read from one state of the ledger, whatever is appended
        // meanwhile; the snapshot ends before anything is signed or written.
        let mut snapshot = self.store.read_snapshot().await?;
        let read = self
            .read_checked(
                &mut snapshot,
                chain,
                trigger,
                key_id,
                prev.as_ref().map(|(r, a)| (*r, a)),
            )
            .await;
        let ended = snapshot.end().await;
        // A read's error says more than the end's that follows it.
        let read = read?;
        ended?;
        let checked = match read {
            Snapshotted::Covered(record) => return Ok(record.clone()),
            Snapshotted::Checked(checked) => checked,
        };
        let CheckedTree {
            size,
            root,
            last_hash,
            proof,
            lsn,
        } = checked;
        let anchor_seq = match &prev {
            None => 0,
            Some((_, a)) => a.anchor_seq.checked_add(1).ok_or_else(|| {
                AnchorerError::Config(format!("chain {chain} has run out of anchor seqs"))
            })?,
        };
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
        // The proof was read from storage: the new anchor must link to the
        // previous one exactly as a verifier will check it.
        if let Some((r, prev)) = &prev
            && let Err(e) = check_link(prev, &r.body, &anchor)
        {
            let e = AnchorerError::UnanchoredTampering {
                chain: chain.to_string(),
                seq: None,
                what: format!("the new anchor would not link to the previous one: {e}"),
            };
            tracing::error!(chain = %chain, error = %e, "ANCHORING REFUSED");
            return Err(e);
        }
        let body = anchor.to_bytes()?;
        let record = AnchorRecord::pending(NewAnchor {
            chain_id: chain.to_string(),
            anchor_seq,
            trigger,
            tree_size: size,
            ts_utc: anchor.ts_utc.clone(),
            object_key: object_key(self.policy.prefix.as_deref(), chain, ts, anchor_seq)
                .map_err(|e| AnchorerError::Config(e.to_string()))?,
            body,
        });
        self.store.insert_anchor(&record).await?;
        tracing::info!(chain = %chain, anchor_seq, trigger = %trigger, tree_size = size, "anchor built");
        Ok(record)
    }

    /// Reads `chain` as of `snapshot` and checks all a build signs: the
    /// head (never smaller than the previous anchor `prev`), every event
    /// since `prev` ([`verify_unanchored`](Self::verify_unanchored)), and the
    /// consistency proof from `prev`'s tree, all from that one state.
    async fn read_checked<'r>(
        &self,
        snapshot: &mut ReadSnapshot,
        chain: &ChainId,
        trigger: Trigger,
        key_id: &str,
        prev: Option<(&'r AnchorRecord, &Anchor)>,
    ) -> Result<Snapshotted<'r>, AnchorerError> {
        let head = snapshot.head(chain).await?;
        let size = head.as_ref().map_or(0, |h| h.size);
        if let Some((_, prev)) = prev
            && size < prev.tree_size
        {
            return Err(AnchorerError::ChainShrank {
                chain: chain.to_string(),
                size,
                anchored: prev.tree_size,
                anchor_seq: prev.anchor_seq,
            });
        }
        // An anchor asked for while the last one still waits for the bucket,
        // over the same tree and key, would only add another object locked for
        // years saying the same thing: the pending one stands for it.
        if let Some((r, prev)) = prev
            && trigger == Trigger::Manual
            && r.status == AnchorStatus::Pending
            && prev.tree_size == size
            && prev.key_id == key_id
        {
            tracing::info!(chain = %chain, anchor_seq = prev.anchor_seq, tree_size = size, "the pending anchor already covers this tree; not building another");
            return Ok(Snapshotted::Covered(r));
        }
        // The database's position now, after the snapshot was taken: a
        // restore to it holds every event the anchor covers.
        let (_, lsn) = self.store.head_with_lsn(chain).await?;
        // Nothing is signed that was not checked first: an attacker with the
        // database but no keys could otherwise rewrite an unanchored event
        // (and its leaf and Merkle nodes) and have the next anchor vouch for it.
        let (root, last_hash) = match &head {
            Some(h) => {
                let checked = self
                    .verify_unanchored(snapshot, chain, prev.map(|(_, a)| a), h)
                    .await
                    .inspect_err(|e| {
                        tracing::error!(chain = %chain, error = %e, "ANCHORING REFUSED: the unanchored events do not check");
                    })?;
                (checked, Some(h.head_hash))
            }
            None => (tlog_empty_root(), None),
        };
        let mut proof = Vec::new();
        if let Some((_, prev)) = prev
            && prev.tree_size > 0
        {
            // The root signed is the one computed from the events above; the
            // proof read here is checked against it when the anchor is linked.
            proof = snapshot
                .root_and_proof(chain, size, Some(prev.tree_size))
                .await?
                .1;
        }
        Ok(Snapshotted::Checked(CheckedTree {
            size,
            root,
            last_hash,
            proof,
            lsn,
        }))
    }

    /// Checks that an outbox row holds an anchor this anchorer signed, as
    /// signed, before anything is built on it or uploaded: the row and its
    /// body agree (chain, seq, size, time), the body is exactly what our key
    /// signs for those fields (Ed25519 signatures are deterministic, so
    /// re-signing reproduces the bytes of an unaltered anchor, and of no
    /// other).
    ///
    /// # Errors
    ///
    /// [`AnchorerError::CorruptOutbox`] naming the row;
    /// [`AnchorerError::SignedByOtherKey`] when its checkpoint names another
    /// signing key than this anchorer's.
    pub fn check_own_anchor(&self, record: &AnchorRecord) -> Result<Anchor, AnchorerError> {
        let corrupt = |why: String| AnchorerError::CorruptOutbox {
            chain: record.chain_id.clone(),
            anchor_seq: record.anchor_seq,
            why,
        };
        let anchor = parse_record(record)?;
        let row = (
            record.chain_id.as_str(),
            record.anchor_seq,
            record.tree_size,
            record.ts_utc.as_str(),
        );
        let body = (
            anchor.chain_id.as_str(),
            anchor.anchor_seq,
            anchor.tree_size,
            anchor.ts_utc.as_str(),
        );
        if row != body {
            return Err(corrupt(format!(
                "the row says (chain, anchor_seq, tree_size, ts_utc) = {row:?}, its body says {body:?}"
            )));
        }
        let chain = ChainId::new(&anchor.chain_id).map_err(|e| corrupt(e.to_string()))?;
        let ts = anchor.time().map_err(|e| corrupt(e.to_string()))?;
        // The key is not covered by the signature: a row pointed at another
        // seq's or time's key would pass the genuine anchor off as another
        // one. What precedes the layout is the prefix, which the operator may
        // have changed since the row was built.
        let layout = stele_anchor::object_key(None, &chain, ts, anchor.anchor_seq)
            .map_err(|e| corrupt(e.to_string()))?;
        let alternate = stele_anchor::alternate_object_key(&layout, &record.body);
        let key_is_ours = [layout.as_str(), alternate.as_str()].iter().any(|k| {
            record
                .object_key
                .strip_suffix(k)
                .is_some_and(|prefix| prefix.is_empty() || prefix.ends_with('/'))
        });
        if !key_is_ours {
            return Err(corrupt(format!(
                "its object key {:?} is neither this anchor's key nor its alternate key",
                record.object_key
            )));
        }
        let resigned = match self.resign(&anchor) {
            Ok(bytes) => bytes,
            Err(AnchorerError::Anchor(stele_anchor::AnchorError::Malformed(why))) => {
                return Err(corrupt(why));
            }
            Err(e) => return Err(e),
        };
        if resigned != record.body {
            // Another key gives other bytes for the same fields: say so
            // rather than call a changed signing key tampering.
            let signs_with = self.key_label();
            let signed_with = signature_keys(&anchor.checkpoint).unwrap_or_default();
            if !signed_with.is_empty() && !signed_with.contains(&signs_with) {
                return Err(AnchorerError::SignedByOtherKey {
                    chain: record.chain_id.clone(),
                    anchor_seq: record.anchor_seq,
                    signed_with: signed_with.join(", "),
                    signs_with,
                });
            }
            return Err(corrupt(format!(
                "its body is not the anchor this signing key ({signs_with}), which its checkpoint names as the signer, signed for those fields: it was altered in the database"
            )));
        }
        Ok(anchor)
    }

    /// This anchorer's signing key as signed notes name it (`name+hexid`).
    fn key_label(&self) -> String {
        key_label(self.signer.name(), self.signer.key_id())
    }

    /// The bytes this anchorer's key signs for `anchor`'s fields. Ed25519
    /// signatures are deterministic, so an unaltered anchor this key signed
    /// re-signs to its own bytes, and no other anchor does.
    ///
    /// # Errors
    ///
    /// [`stele_anchor::AnchorError::Malformed`] for a field that cannot be
    /// signed as it reads; signing errors.
    fn resign(&self, anchor: &Anchor) -> Result<Vec<u8>, AnchorerError> {
        let malformed =
            |why: String| AnchorerError::Anchor(stele_anchor::AnchorError::Malformed(why));
        let hash = |what: &str, hex: &str| {
            parse_hex_hash(hex).map_err(|e| malformed(format!("{what} is not a hash: {e}")))
        };
        let chain = ChainId::new(&anchor.chain_id).map_err(|e| malformed(e.to_string()))?;
        let proof = anchor
            .consistency_proof
            .iter()
            .map(|h| hash("a consistency proof entry", h))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Anchor::sign(
            &AnchorInput {
                chain: &chain,
                anchor_seq: anchor.anchor_seq,
                trigger: anchor.trigger,
                tree_size: anchor.tree_size,
                root: hash("root_hash", &anchor.root_hash)?,
                last_hash: anchor
                    .last_hash
                    .as_deref()
                    .map(|h| hash("last_hash", h))
                    .transpose()?,
                key_id: &anchor.key_id,
                ts: anchor.time()?,
                db_snapshot_lsn: anchor.db_snapshot_lsn.clone(),
                prev_anchor_hash: anchor.prev_anchor_hash.clone(),
                consistency_proof: &proof,
            },
            self.signer,
        )?
        .to_bytes()?)
    }

    /// Whether `bytes` (parsed as `anchor`) are an anchor this anchorer's key signed, as signed.
    fn signed_by_us(&self, anchor: &Anchor, bytes: &[u8]) -> bool {
        self.resign(anchor).is_ok_and(|ours| ours == bytes)
    }

    /// [`check_own_anchor`](Self::check_own_anchor), for an anchor the next
    /// one is built on: its time must also not be in the future, or every
    /// later anchor would carry that date.
    fn check_latest_anchor(
        &self,
        record: &AnchorRecord,
        now: OffsetDateTime,
    ) -> Result<Anchor, AnchorerError> {
        let anchor = self.check_own_anchor(record)?;
        let ts = anchor.time()?;
        let tomorrow = now
            .checked_add(time::Duration::days(1))
            .unwrap_or(OffsetDateTime::new_utc(
                time::Date::MAX,
                time::Time::MIDNIGHT,
            ));
        if ts > tomorrow {
            return Err(AnchorerError::AnchorInFuture {
                chain: anchor.chain_id.clone(),
                anchor_seq: anchor.anchor_seq,
                ts: anchor.ts_utc.clone(),
                now: stele_anchor_ts(whole_seconds(now)),
            });
        }
        Ok(anchor)
    }

    /// Recomputes the events after the previous anchor (`prev`) up to `head`
    /// from their stored rows and checks them against what that anchor signed:
    /// canonical bytes -> leaf hashes, HMAC links from the anchor's
    /// `last_hash`, the stored Merkle nodes of each row, and the tree: the
    /// stored frontier of the anchored tree must reproduce the anchor's root,
    /// and the tree it extends to must be the one storage serves. Reads the
    /// rows since the anchor and O(log n) stored hashes. Returns the root to sign.
    async fn verify_unanchored(
        &self,
        snapshot: &mut ReadSnapshot,
        chain: &ChainId,
        prev: Option<&Anchor>,
        head: &ChainHead,
    ) -> Result<Hash, AnchorerError> {
        let start = checked::anchored_prefix(snapshot, chain, prev).await?;
        let checked = checked::check_rows(snapshot, chain, self.keys, start, head)
            .await
            .map_err(|e| match e {
                AnchorerError::UnknownHmacKey { chain, seq, key_id } => {
                    AnchorerError::UnanchoredTampering {
                        chain,
                        seq: Some(seq),
                        what: format!(
                            "HMAC key {key_id:?} is not in the keyring, so its link cannot be checked"
                        ),
                    }
                }
                e => e,
            })?;
        // The root is computed here, once. Storage holds this very tree: each
        // row's stored nodes were compared with it, and the anchored part's
        // frontier with the signed root; the consistency proof read from
        // storage is checked against this root when the anchor is linked.
        Ok(checked.tree.root())
    }

    /// Uploads every pending anchor, oldest first per chain; a chain stops at
    /// its first failure so anchors land in order.
    ///
    /// Each anchor is leased in the outbox before it is uploaded
    /// ([`Store::lease_anchor`], which counts the attempt), so of
    /// several anchorer processes on one database exactly one uploads a given
    /// anchor at a time. A chain whose next anchor is leased by another
    /// process is skipped this pass (counted in `still_pending` and
    /// `leased_elsewhere`); a holder whose lease was taken over (it expired)
    /// records nothing.
    ///
    /// Before a chain's first upload of the pass, the bucket's anchors of it
    /// written since the last check are checked to be this ledger's own
    /// ([`check_bucket_history`](Self::check_bucket_history), listing only
    /// keys after the newest one known), so a long-running anchorer notices
    /// another ledger or a restored backup writing the chain. A chain with a
    /// corrupt outbox row or a foreign history is refused (in
    /// [`UploadReport::refused`]); the other chains go on.
    ///
    /// # Errors
    ///
    /// Store errors (upload failures and refused chains are reported in the
    /// [`UploadReport`]).
    pub async fn upload_pending(
        &mut self,
        target: &ObjectStore,
    ) -> Result<UploadReport, AnchorerError> {
        self.upload_pass(target, &[]).await
    }

    /// [`upload_pending`](Self::upload_pending), leaving the chains in `skip` alone.
    async fn upload_pass(
        &mut self,
        target: &ObjectStore,
        skip: &[String],
    ) -> Result<UploadReport, AnchorerError> {
        // Boxed: the S3 client's futures nest deep, too deep for the compiler
        // to lay out inline in a caller's task (a gateway's).
        Box::pin(self.upload_each(target, skip)).await
    }

    async fn upload_each(
        &mut self,
        target: &ObjectStore,
        skip: &[String],
    ) -> Result<UploadReport, AnchorerError> {
        let pending = self
            .store
            .anchors(None, Some(AnchorStatus::Pending))
            .await?;
        let mut report = UploadReport::default();
        let mut blocked: Vec<String> = skip.to_vec();
        let mut history_checked: Vec<String> = Vec::new();
        for mut record in pending {
            if blocked.contains(&record.chain_id) {
                report.still_pending += 1;
                continue;
            }
            // An edited outbox row is never uploaded (it would be locked for
            // years); it is evidence against its own chain only.
            let anchor = match self.check_own_anchor(&record) {
                Ok(anchor) => anchor,
                Err(
                    e @ (AnchorerError::CorruptOutbox { .. }
                    | AnchorerError::SignedByOtherKey { .. }),
                ) => {
                    refuse(&mut report, &mut blocked, &record.chain_id, e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let chain =
                ChainId::new(&record.chain_id).map_err(|e| AnchorerError::Config(e.to_string()))?;
            let retention = self.policy.retention_for(anchor.time()?)?;
            if !self
                .store
                .lease_anchor(&chain, record.anchor_seq, &self.lease_owner, self.lease_ttl)
                .await?
            {
                // Another process is uploading it (or uploaded it since we
                // listed it): leave the chain to it this pass, keeping order.
                tracing::debug!(chain = %chain, anchor_seq = record.anchor_seq, "anchor leased by another process; skipping its chain this pass");
                blocked.push(record.chain_id.clone());
                report.still_pending += 1;
                report.leased_elsewhere += 1;
                continue;
            }
            record.attempts = record.attempts.saturating_add(1);
            // Checked under the lease, as part of the try: a bucket that
            // cannot be read now fails the try like an upload would.
            if !history_checked.contains(&record.chain_id) {
                history_checked.push(record.chain_id.clone());
                match self.check_bucket(target, &chain).await {
                    Ok(()) => {}
                    Err(AnchorerError::Worm(e)) => {
                        tracing::warn!(chain = %chain, error = %e, "cannot read the chain's anchors in the bucket to check they are this ledger's; nothing uploaded unchecked");
                        self.upload_failed(&chain, record, e, &mut report, &mut blocked)
                            .await?;
                        continue;
                    }
                    Err(
                        e @ (AnchorerError::ForeignAnchors { .. }
                        | AnchorerError::UnknownOwnAnchor { .. }),
                    ) => {
                        // Ends our lease; `last_error` says why the anchor waits.
                        self.store
                            .record_anchor_failure(
                                &chain,
                                record.anchor_seq,
                                &self.lease_owner,
                                &e.to_string(),
                            )
                            .await?;
                        refuse(&mut report, &mut blocked, &record.chain_id, e);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let mut result = target
                .put_locked(&record.object_key, &record.body, retention)
                .await;
            let squatted = match &result {
                Err(e) => squatter(target, &record, e).await,
                Ok(_) => None,
            };
            if let Some(existing) = squatted {
                let moved_to = alternate_object_key(&record.object_key, &record.body);
                let note = format!(
                    "the intended key {} is held by another object (sha256 {existing}) that stele did not write: someone who may write to the bucket created it first; the anchor goes to {moved_to} instead",
                    record.object_key
                );
                tracing::warn!(chain = %chain, anchor_seq = record.anchor_seq, key = %record.object_key, existing_sha256 = %existing, moved_to = %moved_to, "anchor key squatted: another object holds it; writing the anchor at its alternate key");
                if !self
                    .store
                    .set_anchor_object_key(
                        &chain,
                        record.anchor_seq,
                        &self.lease_owner,
                        &moved_to,
                        &note,
                    )
                    .await?
                {
                    self.lease_lost(&chain, &record, &mut report);
                    blocked.push(record.chain_id.clone());
                    continue;
                }
                report.squatted.push(Squatted {
                    chain_id: record.chain_id.clone(),
                    anchor_seq: record.anchor_seq,
                    key: record.object_key.clone(),
                    existing_sha256: existing,
                    moved_to: moved_to.clone(),
                });
                record.object_key = moved_to;
                record.last_error = Some(note);
                result = target
                    .put_locked(&record.object_key, &record.body, retention)
                    .await;
            }
            match result {
                Ok(stored) => {
                    let upload = AnchorUpload {
                        status: if stored.worm {
                            AnchorStatus::Verified
                        } else {
                            AnchorStatus::Uploaded
                        },
                        location: target.describe(),
                        version_id: stored.version_id.clone(),
                        lock_mode: stored.lock_mode,
                        retain_until: stored.retain_until,
                    };
                    if !self
                        .store
                        .mark_anchor_uploaded(&chain, record.anchor_seq, &self.lease_owner, &upload)
                        .await?
                    {
                        // The new holder records the outcome of its own try
                        // (identical bytes at the same key count as success).
                        self.lease_lost(&chain, &record, &mut report);
                        blocked.push(record.chain_id.clone());
                        continue;
                    }
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
                    self.upload_failed(&chain, record, e, &mut report, &mut blocked)
                        .await?;
                }
            }
        }
        Ok(report)
    }

    /// Records a failed try of `record` (ending our lease) and stops its chain for this pass.
    async fn upload_failed(
        &mut self,
        chain: &ChainId,
        record: AnchorRecord,
        e: WormError,
        report: &mut UploadReport,
        blocked: &mut Vec<String>,
    ) -> Result<(), AnchorerError> {
        blocked.push(record.chain_id.clone());
        if self
            .store
            .record_anchor_failure(chain, record.anchor_seq, &self.lease_owner, &e.to_string())
            .await?
        {
            report.still_pending += 1;
            report.failed.push((record, e));
        } else {
            self.lease_lost(chain, &record, report);
        }
        Ok(())
    }

    /// Our lease on `record` expired and another process took it over (or it
    /// was finished meanwhile): the outcome of our try is not ours to record.
    fn lease_lost(&self, chain: &ChainId, record: &AnchorRecord, report: &mut UploadReport) {
        tracing::warn!(chain = %chain, anchor_seq = record.anchor_seq, lease_ttl = ?self.lease_ttl, "anchor lease expired during the upload and was taken over by another process; leaving the anchor to it");
        report.still_pending += 1;
        report.leased_elsewhere += 1;
    }

    /// What the cadence asks for, per chain, at `now`.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn due(
        &mut self,
        chains: &[ChainId],
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<(ChainId, Trigger)>, AnchorerError> {
        let mut due = Vec::new();
        for chain in chains {
            let progress = self.progress(chain, key_id, now).await?;
            if let Some(trigger) = self.policy.cadence.due(&progress, now) {
                due.push((chain.clone(), trigger));
            }
        }
        Ok(due)
    }

    async fn progress(
        &mut self,
        chain: &ChainId,
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<ChainProgress, AnchorerError> {
        // The cadence computes with the last anchor's time: only an authentic, sane one.
        let last = self
            .store
            .last_anchor(chain)
            .await?
            .map(|r| self.check_latest_anchor(&r, now))
            .transpose()?;
        let size = self.store.head(chain).await?.map_or(0, |h| h.size);
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
    pub async fn anchor_if_volume_due(
        &mut self,
        chain: &ChainId,
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<AnchorRecord>, AnchorerError> {
        let p = self.progress(chain, key_id, now).await?;
        let volume = self.policy.cadence.volume;
        if volume > 0 && p.size.saturating_sub(p.last_anchor_size) >= volume {
            return self
                .build(chain, Trigger::Volume, key_id, now)
                .await
                .map(Some);
        }
        Ok(None)
    }

    /// Runs the cadence until `stop` completes: each round builds due
    /// anchors, uploads pending ones (backing off while the store is down),
    /// then pauses (one second, longer while uploads fail) unless `stop`
    /// completes first. On stop, every chain gets a `shutdown` anchor and one
    /// last upload pass.
    ///
    /// `chains` lists the chains to anchor (`None`: every chain in the database);
    /// `key_id` returns the active HMAC key id each round, so rotations by other
    /// processes are noticed.
    ///
    /// A chain refused during the run (see [`RefusedChain`]) is left alone
    /// until the next start; the other chains go on, and the report returned
    /// at the end lists every refusal of the run.
    ///
    /// # Errors
    ///
    /// Store, build and configuration errors; upload failures are retried, not returned.
    pub async fn run(
        &mut self,
        target: &ObjectStore,
        chains: Option<&[ChainId]>,
        key_id: &mut impl FnMut() -> Result<String, AnchorerError>,
        on_round: &mut impl FnMut(&UploadReport),
        stop: impl Future<Output = ()> + Send,
    ) -> Result<UploadReport, AnchorerError> {
        let mut waiter = UntilStop {
            stop: Box::pin(stop),
        };
        self.run_until(target, chains, key_id, on_round, &mut waiter)
            .await
    }

    /// [`run`](Self::run), with a [`Waiter`] that can also ask for anchors now
    /// ([`Wake::AnchorNow`]: a `manual` anchor of each named chain whose
    /// newest anchor does not cover its head yet, then an upload pass) —
    /// how a gateway serves a client waiting for its event to be anchored.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub async fn run_until(
        &mut self,
        target: &ObjectStore,
        chains: Option<&[ChainId]>,
        key_id: &mut impl FnMut() -> Result<String, AnchorerError>,
        on_round: &mut impl FnMut(&UploadReport),
        waiter: &mut impl Waiter,
    ) -> Result<UploadReport, AnchorerError> {
        let backoff = stele_worm::RetryPolicy {
            attempts: u32::MAX,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15),
        };
        let mut failures = 0u32;
        // A refused chain stays refused until the next start (its anchors
        // wait); every refusal is in the last report, so the run ends with it.
        let mut refused: Vec<RefusedChain> = Vec::new();
        let mut wanted: Vec<ChainId> = Vec::new();
        loop {
            let skip: Vec<String> = refused.iter().map(|r| r.chain_id.clone()).collect();
            let key = key_id()?;
            let now = OffsetDateTime::now_utc();
            for chain in wanted.drain(..) {
                if !skip.contains(&chain.to_string()) {
                    self.anchor_head(&chain, &key, now).await?;
                }
            }
            let mut report = self
                .round_skipping(target, chains, &key, now, &skip)
                .await?;
            on_round(&report);
            refused.append(&mut report.refused);
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
            match waiter.wait(pause).await {
                Wake::Stop => break,
                Wake::Elapsed => {}
                Wake::AnchorNow(chains) => wanted = chains,
            }
        }
        let key = key_id()?;
        let now = OffsetDateTime::now_utc();
        let skip: Vec<String> = refused.iter().map(|r| r.chain_id.clone()).collect();
        for chain in self.chain_list(chains).await? {
            if !skip.contains(&chain.to_string()) {
                self.build(&chain, Trigger::Shutdown, &key, now).await?;
            }
        }
        let mut report = self.upload_pass(target, &skip).await?;
        on_round(&report);
        refused.append(&mut report.refused);
        report.refused = refused;
        Ok(report)
    }

    /// A `manual` anchor of `chain` unless its newest anchor already covers
    /// its head (or it has no events).
    async fn anchor_head(
        &mut self,
        chain: &ChainId,
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), AnchorerError> {
        let size = self.store.head(chain).await?.map_or(0, |h| h.size);
        let covered = self
            .store
            .last_anchor(chain)
            .await?
            .map_or(0, |a| a.tree_size);
        if size > covered {
            self.build(chain, Trigger::Manual, key_id, now).await?;
        }
        Ok(())
    }

    /// One cadence round: builds the anchors that are due at `now`, then uploads every pending one.
    ///
    /// # Errors
    ///
    /// Store and build errors; upload failures are in the report.
    pub async fn round(
        &mut self,
        target: &ObjectStore,
        chains: Option<&[ChainId]>,
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<UploadReport, AnchorerError> {
        self.round_skipping(target, chains, key_id, now, &[]).await
    }

    /// [`round`](Self::round), leaving the chains in `skip` alone.
    async fn round_skipping(
        &mut self,
        target: &ObjectStore,
        chains: Option<&[ChainId]>,
        key_id: &str,
        now: OffsetDateTime,
        skip: &[String],
    ) -> Result<UploadReport, AnchorerError> {
        let mut all = self.chain_list(chains).await?;
        all.retain(|c| !skip.contains(&c.to_string()));
        for (chain, trigger) in self.due(&all, key_id, now).await? {
            self.build(&chain, trigger, key_id, now).await?;
        }
        self.upload_pass(target, skip).await
    }

    async fn chain_list(&self, chains: Option<&[ChainId]>) -> Result<Vec<ChainId>, AnchorerError> {
        match chains {
            Some(c) => Ok(c.to_vec()),
            None => self
                .store
                .chains()
                .await?
                .iter()
                .map(|h| {
                    ChainId::new(&h.chain_id).map_err(|e| AnchorerError::Config(e.to_string()))
                })
                .collect(),
        }
    }
}

/// Stops `chain_id` for this pass: its anchors wait, the refusal is reported.
fn refuse(
    report: &mut UploadReport,
    blocked: &mut Vec<String>,
    chain_id: &str,
    error: AnchorerError,
) {
    tracing::error!(chain = %chain_id, error = %error, "ANCHORING REFUSED for this chain; its anchors stay pending, other chains go on");
    blocked.push(chain_id.to_owned());
    report.still_pending += 1;
    report.refused.push(RefusedChain {
        chain_id: chain_id.to_owned(),
        error,
    });
}

/// If the upload of `record` failed because its key holds an object with
/// other bytes, that object's SHA-256 (as far as the store says). An anchor
/// already at its alternate key is not moved again.
async fn squatter(
    target: &ObjectStore,
    record: &AnchorRecord,
    error: &WormError,
) -> Option<String> {
    if stele_anchor::relocated_from(&record.object_key, &record.body).is_some() {
        return None;
    }
    match error {
        WormError::Conflict { existing, .. } => Some(existing.clone()),
        // The squatter's PUT landed between our check and our write (RGW
        // keeps both versions; the first one holds the key).
        WormError::LostRace { winner_sha256, .. } => {
            Some(winner_sha256.as_deref().unwrap_or("unknown").to_owned())
        }
        // Same size, and the store keeps no checksum for it: compare the bytes
        // (no more than the anchor's own size, or the store said Conflict).
        WormError::Verification { .. } => {
            match read_bounded(target, &record.object_key, record.body.len()).await {
                Ok(Some(bytes)) if bytes != record.body => Some(stele_anchor::object_hash(&bytes)),
                // Larger than the anchor: not its bytes.
                Ok(None) => Some("unknown (larger than the anchor)".to_owned()),
                _ => None,
            }
        }
        _ => None,
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

/// How many of a chain's newest objects the bucket check reads.
const BUCKET_CHECK_OBJECTS: usize = 4;
/// Largest object the bucket check reads: far above any anchor stele writes.
const BUCKET_CHECK_MAX_BYTES: usize = 256 * 1024;

impl Anchorer<'_> {
    /// Checks, before anchors of `chain` are written, that what the bucket
    /// holds for it is this ledger's own history: the newest anchor objects
    /// under the chain's prefix (at most a few, each of bounded size) must
    /// be ones in our outbox, byte for byte. A chain with no objects there
    /// passes; objects that are not anchors of this chain are left to
    /// the auditor's anchor verification (a squatter must not stop anchoring).
    ///
    /// An anchor counts as signed by this ledger when this anchorer's key
    /// re-signs its fields to its very bytes; `verifier_key` must be that
    /// key's verifier key. The anchorer remembers the newest key it found
    /// holding one of its anchors, so later checks of the chain (one before
    /// each upload pass, see [`upload_pending`](Self::upload_pending)) list
    /// only keys after it.
    ///
    /// # Errors
    ///
    /// [`AnchorerError::ForeignAnchors`] when another key signed them,
    /// [`AnchorerError::UnknownOwnAnchor`] when our key signed one our
    /// outbox does not have; [`AnchorerError::Config`] when `verifier_key`
    /// is not the signing key's; object store and database errors.
    pub async fn check_bucket_history(
        &mut self,
        target: &ObjectStore,
        chain: &ChainId,
        verifier_key: &str,
    ) -> Result<(), AnchorerError> {
        let verifier = signed_note::StandardVerifier::new(verifier_key.trim())
            .map_err(|e| AnchorerError::Config(format!("the verifier key is malformed: {e}")))?;
        let named = key_label(verifier.name(), verifier.key_id());
        if named != self.key_label() {
            return Err(AnchorerError::Config(format!(
                "the verifier key is for {named}, but anchors are signed with {}: they are not one key pair",
                self.key_label()
            )));
        }
        self.check_bucket(target, chain).await
    }

    /// [`check_bucket_history`](Self::check_bucket_history) from what this
    /// anchorer already knows of the chain in the bucket.
    async fn check_bucket(
        &mut self,
        target: &ObjectStore,
        chain: &ChainId,
    ) -> Result<(), AnchorerError> {
        let prefix = stele_anchor::chain_prefix(self.policy.prefix.as_deref(), chain)
            .map_err(|e| AnchorerError::Config(e.to_string()))?;
        let mut cursor = self
            .bucket_cursors
            .remove(chain.as_str())
            .unwrap_or_default();
        let result = self
            .check_bucket_since(target, chain, &prefix, &mut cursor)
            .await;
        self.bucket_cursors.insert(chain.to_string(), cursor);
        result
    }

    async fn check_bucket_since(
        &self,
        target: &ObjectStore,
        chain: &ChainId,
        prefix: &str,
        cursor: &mut BucketCursor,
    ) -> Result<(), AnchorerError> {
        let keys = target.list_after(prefix, cursor.after.as_deref()).await?;
        let fresh: Vec<&String> = keys
            .iter()
            .filter(|k| !cursor.passed.contains(*k))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let outbox = self.store.anchors(Some(chain), None).await?;
        let ours: HashSet<String> = outbox.iter().map(|r| object_hash(&r.body)).collect();
        // Once this ledger's anchors of the chain are in the store, an anchor
        // signed by another key there is not another ledger's history but a
        // squatter (anyone who may PutObject can write one at our next key):
        // it must not stop the chain, which moves on to the alternate key.
        // Before our first anchor, such an object means the chain id is
        // taken in this bucket, and writing beside it would fork that history.
        // The same holds for an object sitting exactly at the key one of our
        // own anchors was meant for: it was put there for that key.
        let anchored_here = outbox.iter().any(|r| r.status != AnchorStatus::Pending);
        let our_keys: HashSet<&str> = outbox.iter().map(|r| r.object_key.as_str()).collect();
        // Keys sort by anchor time, then seq: the newest are last.
        for &key in fresh.iter().rev().take(BUCKET_CHECK_OBJECTS) {
            let read = read_bounded(target, key, BUCKET_CHECK_MAX_BYTES).await?;
            let Some((bytes, anchor)) = read.and_then(|bytes| {
                let anchor = Anchor::from_bytes(&bytes)
                    .ok()
                    .filter(|a| a.chain_id == chain.as_str())?;
                Some((bytes, anchor))
            }) else {
                // Too large, not an anchor, or another chain's: the auditor's to judge.
                cursor.passed.insert(key.clone());
                continue;
            };
            if ours.contains(&object_hash(&bytes)) {
                // The newest anchor there is ours: ours link on from it, and
                // the next check starts after it.
                cursor.passed.retain(|k| k > key);
                cursor.after = Some(key.clone());
                return Ok(());
            }
            let err = if self.signed_by_us(&anchor, &bytes) {
                // Our key, a seq whose outbox row is not an anchor we signed
                // as it reads: the row was altered, which building on it
                // reports as tampering (a sound row with other bytes is a fork).
                if outbox
                    .iter()
                    .any(|r| r.anchor_seq == anchor.anchor_seq && self.check_own_anchor(r).is_err())
                {
                    return Ok(());
                }
                AnchorerError::UnknownOwnAnchor {
                    chain: chain.to_string(),
                    key: key.clone(),
                    anchor_seq: anchor.anchor_seq,
                }
            } else {
                let signed_with = signature_keys(&anchor.checkpoint)
                    .ok()
                    .filter(|keys| !keys.is_empty())
                    .map_or_else(|| "no readable signer".to_owned(), |keys| keys.join(", "));
                let why = format!(
                    "its checkpoint names {signed_with} as signer, and this ledger's key {} does not reproduce it",
                    self.key_label()
                );
                if anchored_here || our_keys.contains(key.as_str()) {
                    tracing::warn!(chain = %chain, key = %key, anchor_seq = anchor.anchor_seq, why = %why, "an anchor of this chain that this ledger did not sign is in the bucket: a squatter (restrict s3:PutObject to the anchor writer); ignored");
                    cursor.passed.insert(key.clone());
                    continue;
                }
                AnchorerError::ForeignAnchors {
                    chain: chain.to_string(),
                    prefix: prefix.to_owned(),
                    key: key.clone(),
                    anchor_seq: anchor.anchor_seq,
                    why,
                }
            };
            tracing::error!(chain = %chain, error = %err, "ANCHORING REFUSED");
            return Err(err);
        }
        Ok(())
    }
}

/// An object's bytes, or `None` if it is larger than [`BUCKET_CHECK_MAX_BYTES`].
async fn read_bounded(
    target: &ObjectStore,
    key: &str,
    limit: usize,
) -> Result<Option<Vec<u8>>, AnchorerError> {
    Ok(match target {
        ObjectStore::S3(s3) => s3.get_version_bounded(key, None, limit).await?,
        ObjectStore::Local(_) => Some(target.get(key).await?).filter(|b| b.len() <= limit),
    })
}

/// An outbox record as JSON, the one shape the CLI and the gateway show:
/// every field, the SHA-256 of its bytes, and the key it was moved from if
/// its intended key was taken.
pub fn record_json(r: &AnchorRecord) -> serde_json::Value {
    serde_json::json!({
        "chain_id": r.chain_id,
        "anchor_seq": r.anchor_seq,
        "trigger": r.trigger.as_str(),
        "tree_size": r.tree_size,
        "ts_utc": r.ts_utc,
        "object_key": r.object_key,
        "sha256": stele_worm::sha256_hex(&r.body),
        "status": r.status.as_str(),
        "attempts": r.attempts,
        "last_error": r.last_error,
        "location": r.location,
        "version_id": r.version_id,
        "lock_mode": r.lock_mode.map(LockMode::as_str),
        "retain_until": r.retain_until.map(stele_anchor::retain_until_text),
        "uploaded_at": r.uploaded_at,
        "squatted_key": stele_anchor::relocated_from(&r.object_key, &r.body),
    })
}

#[cfg(test)]
mod error_tests {
    use super::*;

    #[test]
    fn retryable_follows_the_cause_and_tampering_never_is() {
        assert!(AnchorerError::Contended { chain: "c".into() }.is_retryable());
        let serialization = StoreError::Postgres {
            message: "could not serialize access (40001)".into(),
            sqlstate: Some("40001".into()),
            retryable: true,
        };
        assert!(AnchorerError::Store(serialization).is_retryable());
        assert!(!AnchorerError::Config("x".into()).is_retryable());
        let tampering = AnchorerError::UnanchoredTampering {
            chain: "c".into(),
            seq: Some(3),
            what: "HMAC differs".into(),
        };
        assert!(!tampering.is_retryable());
        let foreign = AnchorerError::ForeignAnchors {
            chain: "c".into(),
            prefix: "p/".into(),
            key: "k".into(),
            anchor_seq: 0,
            why: "signed by another key".into(),
        };
        assert!(!foreign.is_retryable());
        // The CLI adds its commands and variables; the library names none.
        for e in [tampering, foreign] {
            let text = e.to_string();
            for word in ["AUDIT_", "`stele ", "--"] {
                assert!(!text.contains(word), "{word:?} in {text}");
            }
        }
    }
}

#[cfg(test)]
mod send_tests {
    use super::*;

    /// A gateway runs the anchorer as a task of its runtime, held across
    /// awaits: every future it makes must be `Send`. This holds when it
    /// compiles; nothing runs.
    #[test]
    fn anchoring_futures_are_send() {
        fn send<T: Send>(_: T) {}
        fn every_step(
            anchorer: &mut Anchorer<'_>,
            target: &ObjectStore,
            chain: &ChainId,
            now: OffsetDateTime,
            inbox: &mut tokio::sync::mpsc::UnboundedReceiver<Wake>,
        ) {
            send(anchorer.build(chain, Trigger::Manual, "k1", now));
            send(anchorer.anchor_if_volume_due(chain, "k1", now));
            send(anchorer.due(std::slice::from_ref(chain), "k1", now));
            send(anchorer.upload_pending(target));
            send(anchorer.round(target, None, "k1", now));
            send(anchorer.check_bucket_history(target, chain, "vkey"));
            send(anchorer.run(
                target,
                None,
                &mut || Ok("k1".to_owned()),
                &mut |_| {},
                std::future::pending(),
            ));
            send(anchorer.run_until(
                target,
                None,
                &mut || Ok("k1".to_owned()),
                &mut |_| {},
                &mut Inbox(inbox),
            ));
        }
        /// A waiter borrowing its state mutably, as a gateway's does.
        struct Inbox<'a>(&'a mut tokio::sync::mpsc::UnboundedReceiver<Wake>);
        impl Waiter for Inbox<'_> {
            async fn wait(&mut self, pause: Duration) -> Wake {
                match tokio::time::timeout(pause, self.0.recv()).await {
                    Ok(Some(wake)) => wake,
                    Ok(None) => Wake::Stop,
                    Err(_) => Wake::Elapsed,
                }
            }
        }
        let _ = every_step;
    }
}
