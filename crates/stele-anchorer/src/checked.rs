//! Roots that may be signed: recomputed from checked events, never taken
//! from storage as they are.
//!
//! Leaf hashes and Merkle nodes are plain SHA-256: someone holding the
//! database but no key can rewrite an event together with its leaf and
//! nodes, and storage then serves a root over the rewritten event. A
//! checkpoint signed over that root would make a `tlog-proof` of the
//! forgery that verifies with the public key alone. So every signer —
//! an anchor, a gateway's checkpoint or proof, `stele checkpoint` — signs
//! only a [`CheckedRoot`]: the root of a tree whose events since a trusted
//! start (this ledger's last anchor that its key signed, or the empty
//! tree) were each recomputed here: canonical bytes to leaf hash, the HMAC
//! link with the key that wrote it, the row's stored Merkle nodes, and the
//! chain head.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use stele_anchor::Anchor;
use stele_ledger::hashing::{GENESIS_HASH, leaf_hash};
use stele_ledger::{ChainId, Hash, Keyring, hex_hash, merkle, parse_hex_hash};
use stele_store::{ChainHead, ReadSnapshot, Store, StoreError};

use crate::AnchorerError;

/// A chain's tree root at a size, recomputed from checked events (see the
/// module's documentation): the only root a checkpoint may be signed over.
/// Made only by [`TreeChecker`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CheckedRoot {
    size: u64,
    root: Hash,
}

impl CheckedRoot {
    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The tree's root.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// Checks an inclusion proof read from storage against this root
    /// before it is handed out: `leaf` (computed from the event's stored
    /// content, not its stored leaf hash) at `seq`.
    ///
    /// # Errors
    ///
    /// [`AnchorerError::UnanchoredTampering`] if the proof does not hold:
    /// the stored event or hashes changed since they were checked.
    pub fn check_inclusion(
        &self,
        chain: &ChainId,
        seq: u64,
        leaf: Hash,
        proof: &[Hash],
    ) -> Result<(), AnchorerError> {
        merkle::verify_inclusion(proof, self.size, self.root, seq, leaf).map_err(|e| {
            AnchorerError::UnanchoredTampering {
                chain: chain.to_string(),
                seq: Some(seq),
                what: format!(
                    "its stored content and Merkle hashes do not prove it in the checked tree of size {} ({e}): the database changed after it was checked",
                    self.size
                ),
            }
        })
    }
}

/// A chain's first `tree.size()` events, checked: the Merkle frontier they
/// give and the last one's `event_hash`.
#[derive(Clone, Debug)]
pub(crate) struct CheckedPrefix {
    pub(crate) tree: merkle::TreeAppender,
    pub(crate) last_hash: Hash,
}

impl CheckedPrefix {
    fn empty() -> Self {
        Self {
            tree: merkle::TreeAppender::empty(),
            last_hash: GENESIS_HASH,
        }
    }

    fn root(&self) -> CheckedRoot {
        CheckedRoot {
            size: self.tree.size(),
            root: self.tree.root(),
        }
    }
}

fn tampering(chain: &ChainId, seq: Option<u64>, what: String) -> AnchorerError {
    AnchorerError::UnanchoredTampering {
        chain: chain.to_string(),
        seq,
        what,
    }
}

/// The checked start an anchor of this ledger gives (`None`: the empty
/// tree): its stored frontier must reproduce the root it signed. Reads
/// O(log n) stored hashes.
pub(crate) async fn anchored_prefix(
    snapshot: &mut ReadSnapshot,
    chain: &ChainId,
    anchor: Option<&Anchor>,
) -> Result<CheckedPrefix, AnchorerError> {
    let Some(a) = anchor.filter(|a| a.tree_size > 0) else {
        return Ok(CheckedPrefix::empty());
    };
    let refuse = |what: String| tampering(chain, None, what);
    let from = a.tree_size;
    let signed_root = parse_hex_hash(&a.root_hash)
        .map_err(|e| refuse(format!("anchor {} root: {e}", a.anchor_seq)))?;
    let signed_last = a
        .last_hash
        .as_deref()
        .map(parse_hex_hash)
        .transpose()
        .map_err(|e| refuse(format!("anchor {} last_hash: {e}", a.anchor_seq)))?
        .ok_or_else(|| refuse(format!("anchor {} has no last_hash", a.anchor_seq)))?;
    let frontier = match snapshot
        .read_hashes(chain, &merkle::frontier_indexes(from))
        .await
    {
        Ok(f) => f,
        Err(StoreError::Corrupt(what)) => return Err(refuse(what)),
        Err(e) => return Err(e.into()),
    };
    let tree = merkle::TreeAppender::resume(from, &frontier).map_err(|e| refuse(e.to_string()))?;
    if tree.root() != signed_root {
        return Err(refuse(format!(
            "the stored Merkle hashes of the {from} anchored events give root {}, but anchor {} signed root {}",
            hex_hash(&tree.root()),
            a.anchor_seq,
            a.root_hash
        )));
    }
    Ok(CheckedPrefix {
        tree,
        last_hash: signed_last,
    })
}

/// Recomputes the events after `prefix` up to `head` from their stored
/// rows and checks them: canonical bytes -> leaf hashes, HMAC links from
/// the prefix's last `event_hash`, each row's stored Merkle nodes, and the
/// head (its size and hash are the last checked event's). Returns the
/// longer prefix.
pub(crate) async fn check_rows(
    snapshot: &mut ReadSnapshot,
    chain: &ChainId,
    keys: &Keyring,
    prefix: CheckedPrefix,
    head: &ChainHead,
) -> Result<CheckedPrefix, AnchorerError> {
    let CheckedPrefix {
        mut tree,
        last_hash: mut prev_hash,
    } = prefix;
    let from = tree.size();
    let mut next = from;
    let mut found: Option<AnchorerError> = None;
    let mut unknown_key: Option<String> = None;
    let mut canonical = Vec::new();
    let mut nodes = Vec::new();
    if head.size > from {
        let scanned = snapshot
            .scan(chain, from, Some(head.size - 1), &mut |e, stored_nodes| {
                let seq = e.seq;
                let what = (|| {
                    if seq != next {
                        return Err(format!(
                            "expected seq {next} next, the database holds seq {seq} (rows deleted, inserted or renumbered)"
                        ));
                    }
                    if e.chain_id != chain.as_str() {
                        return Err(format!("the row claims chain {:?}", e.chain_id));
                    }
                    let stored_leaf = e.leaf_hash.parse().ok_or("leaf_hash is not 32 bytes")?;
                    // stele stores every field in canonical form, so the stored
                    // text itself must hash to the leaf: anything else
                    // (altered content, or another spelling of it) is refused.
                    e.committed_as_stored().write_canonical_bytes(&mut canonical);
                    let leaf = leaf_hash(&canonical);
                    if leaf != stored_leaf {
                        return Err(format!(
                            "its stored fields hash to leaf {}, but its leaf_hash is {} (content altered)",
                            hex_hash(&leaf),
                            hex_hash(&stored_leaf)
                        ));
                    }
                    let event_hash = e.event_hash.parse().ok_or("event_hash is not 32 bytes")?;
                    let Some(key) = keys.get(e.key_id) else {
                        unknown_key = Some(e.key_id.to_owned());
                        return Err("unknown HMAC key".to_owned());
                    };
                    // The HMAC the key gives is not named: with the database
                    // in hand it is exactly what a forger needs next.
                    if key.chain_hash(&prev_hash, &leaf) != event_hash {
                        return Err(format!(
                            "HMAC link broken: its event_hash {} is not the HMAC of the previous event_hash and its leaf (content, leaf or hash rewritten without the key)",
                            hex_hash(&event_hash)
                        ));
                    }
                    tree.push_into(leaf, &mut nodes);
                    let same = stored_nodes.len() == nodes.len() * 32
                        && stored_nodes.chunks(32).zip(&nodes).all(|(s, n)| s == n.0);
                    if !same {
                        return Err("its stored Merkle nodes differ from the tree its events give".into());
                    }
                    prev_hash = event_hash;
                    next = seq + 1;
                    Ok(())
                })();
                match what {
                    Ok(()) => Ok(()),
                    Err(what) => {
                        found = Some(match unknown_key.take() {
                            Some(key_id) => AnchorerError::UnknownHmacKey {
                                chain: chain.to_string(),
                                seq,
                                key_id,
                            },
                            None => tampering(chain, Some(seq), what),
                        });
                        Err(StoreError::Corrupt(format!("seq {seq} does not check")))
                    }
                }
            })
            .await;
        if let Some(e) = found {
            return Err(e);
        }
        scanned?;
    }
    if next != head.size {
        return Err(tampering(
            chain,
            Some(next),
            format!(
                "the chain head records {} events but the rows end before seq {next}",
                head.size
            ),
        ));
    }
    if prev_hash != head.head_hash {
        return Err(tampering(
            chain,
            None,
            format!(
                "the chain head hash {} is not the last event's event_hash {}",
                hex_hash(&head.head_hash),
                hex_hash(&prev_hash)
            ),
        ));
    }
    Ok(CheckedPrefix {
        tree,
        last_hash: prev_hash,
    })
}

/// Where a long-running checker reads the HMAC keyring again, to learn a
/// key added by `stele keys rotate` since it started.
pub type KeyringSource = Arc<dyn Fn() -> Result<Keyring, String> + Send + Sync>;

/// Checked roots of a ledger's chains for a long-running signer (the
/// gateway's checkpoints and proofs) or a one-off one (`stele checkpoint`).
///
/// Each chain's checked tree is kept in memory and only the events
/// appended since are checked on the next call; the first call for a
/// chain starts from its newest anchor that verifies with this ledger's
/// verifier key (else from the empty tree). What is kept in memory is
/// never read back from storage and only ever grows: an event rewritten
/// after its check changes no root signed later (its proof then fails
/// [`CheckedRoot::check_inclusion`]), and a chain cut back below what was
/// checked stays refused for as long as the checker lives. A check runs as
/// a task of its own, so one its caller gave up on still leaves its tree.
#[derive(Clone)]
pub struct TreeChecker {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    keys: Mutex<Keyring>,
    reload: Option<KeyringSource>,
    verifier_key: String,
    chains: Mutex<HashMap<ChainId, Arc<tokio::sync::Mutex<Option<CheckedPrefix>>>>>,
}

/// Which checked root a caller needs.
#[derive(Clone, Copy, Debug)]
pub enum RootWanted {
    /// The head's, after checking the events since the last check.
    Head,
    /// Any checked tree that holds this seq: the newest one kept if it
    /// does (nothing read), else the head's.
    Holding(u64),
    /// The tree of exactly this size.
    Size(u64),
}

impl TreeChecker {
    /// A checker over `store`, checking HMAC links with `keys` (every key
    /// the chains were written with) and trusting only anchors that verify
    /// with `verifier_key` (this ledger's public key, signed-note form).
    pub fn new(store: Store, keys: Keyring, verifier_key: impl Into<String>) -> Self {
        Self::build(store, keys, None, verifier_key.into())
    }

    /// [`new`](Self::new), reading the keyring again from `source` when an
    /// event names a key the checker does not hold (a key rotated in since
    /// it started).
    pub fn reloading(
        store: Store,
        keys: Keyring,
        source: KeyringSource,
        verifier_key: impl Into<String>,
    ) -> Self {
        Self::build(store, keys, Some(source), verifier_key.into())
    }

    fn build(
        store: Store,
        keys: Keyring,
        reload: Option<KeyringSource>,
        verifier_key: String,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                keys: Mutex::new(keys),
                reload,
                verifier_key,
                chains: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A checked root of `chain` as `wanted`.
    ///
    /// # Errors
    ///
    /// [`AnchorerError::CheckFailed`] naming the event that does not
    /// check, or saying the chain holds fewer events than were checked or
    /// anchored; [`AnchorerError::UnknownHmacKey`] for an event whose key
    /// is not held (nothing may be signed then); [`StoreError::UnknownChain`]
    /// / [`StoreError::OutOfRange`] (as [`AnchorerError::Store`]) for a
    /// chain or size that is not there; database errors.
    pub async fn root(
        &self,
        chain: &ChainId,
        wanted: RootWanted,
    ) -> Result<CheckedRoot, AnchorerError> {
        let inner = Arc::clone(&self.inner);
        let chain = chain.clone();
        match tokio::spawn(async move { inner.root(&chain, wanted).await }).await {
            Ok(root) => root,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Closed.into()),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    async fn root(
        &self,
        chain: &ChainId,
        wanted: RootWanted,
    ) -> Result<CheckedRoot, AnchorerError> {
        let slot = Arc::clone(lock(&self.chains).entry(chain.clone()).or_default());
        // One check at a time per chain: callers arriving meanwhile find
        // the tree it leaves.
        let mut checked = slot.lock().await;
        let kept = checked.as_ref().map(CheckedPrefix::root);
        if let (RootWanted::Holding(seq), Some(kept)) = (wanted, kept)
            && kept.size > seq
        {
            return Ok(kept);
        }
        let enough = matches!((wanted, kept), (RootWanted::Size(size), Some(k)) if k.size >= size);
        // The anchor to start from is read before the snapshot, so the
        // snapshot holds every event it covers.
        let anchor = match &*checked {
            None => self.trusted_anchor(chain).await,
            Some(_) => Ok(None),
        };
        let result = match anchor {
            Ok(anchor) => {
                self.check_in_snapshot(chain, wanted, enough, anchor, &mut checked)
                    .await
            }
            Err(e) => Err(e),
        };
        if checked.is_none()
            && matches!(
                result,
                Err(AnchorerError::Store(StoreError::UnknownChain(_)))
            )
        {
            // No entry is kept for a chain that is not there.
            lock(&self.chains).remove(chain);
        }
        result
    }

    /// Checks `chain` up to the head of a new snapshot (unless `enough` is
    /// kept already) and answers `wanted` from it. The tree kept is
    /// replaced only by a longer checked one.
    async fn check_in_snapshot(
        &self,
        chain: &ChainId,
        wanted: RootWanted,
        enough: bool,
        anchor: Option<Anchor>,
        checked: &mut Option<CheckedPrefix>,
    ) -> Result<CheckedRoot, AnchorerError> {
        let mut snapshot = self.store.read_snapshot().await?;
        let answered = async {
            if !enough {
                let tree = self
                    .check_to_head(&mut snapshot, chain, checked.clone(), anchor.as_ref())
                    .await?;
                *checked = Some(tree);
            }
            let at_head = checked
                .as_ref()
                .map(CheckedPrefix::root)
                .ok_or_else(|| StoreError::UnknownChain(chain.to_string()))?;
            match wanted {
                RootWanted::Size(size) if size != at_head.size => {
                    older_root(&mut snapshot, chain, size, at_head).await
                }
                RootWanted::Holding(seq) if seq >= at_head.size => {
                    Err(StoreError::OutOfRange(format!(
                        "seq {seq} is not in chain {chain:?} at tree size {}",
                        at_head.size
                    ))
                    .into())
                }
                _ => Ok(at_head),
            }
        }
        .await;
        let ended = snapshot.end().await;
        let root = answered.map_err(|e| refused(chain, e))?;
        ended?;
        Ok(root)
    }

    /// Checks `chain` from `kept` (else `anchor`, else the empty tree) up to
    /// the snapshot's head.
    async fn check_to_head(
        &self,
        snapshot: &mut ReadSnapshot,
        chain: &ChainId,
        kept: Option<CheckedPrefix>,
        anchor: Option<&Anchor>,
    ) -> Result<CheckedPrefix, AnchorerError> {
        let head = snapshot
            .head(chain)
            .await?
            .ok_or_else(|| StoreError::UnknownChain(chain.to_string()))?;
        let start = match kept {
            Some(kept) => kept,
            None => anchored_prefix(snapshot, chain, anchor).await?,
        };
        if head.size < start.tree.size() {
            return Err(tampering(
                chain,
                None,
                format!(
                    "the chain head records {} events, fewer than the {} already checked or anchored (events deleted)",
                    head.size,
                    start.tree.size()
                ),
            ));
        }
        let keys = lock(&self.keys).clone();
        match check_rows(snapshot, chain, &keys, start.clone(), &head).await {
            Err(AnchorerError::UnknownHmacKey { .. }) if self.reload.is_some() => {
                let reloaded = self
                    .reload
                    .as_ref()
                    .map(|source| source())
                    .transpose()
                    .map_err(AnchorerError::Config)?
                    .unwrap_or(keys);
                *lock(&self.keys) = reloaded.clone();
                check_rows(snapshot, chain, &reloaded, start, &head).await
            }
            other => other,
        }
    }

    /// The chain's newest outbox anchor, if it verifies with this ledger's
    /// key (one signed by another key, or altered, is no start to trust:
    /// the check then begins at the empty tree).
    async fn trusted_anchor(&self, chain: &ChainId) -> Result<Option<Anchor>, AnchorerError> {
        let Some(record) = self.store.last_anchor(chain).await? else {
            return Ok(None);
        };
        let anchor = Anchor::from_bytes(&record.body)
            .ok()
            .filter(|a| a.chain_id == chain.as_str() && a.verify(&self.verifier_key).is_ok());
        if anchor.is_none() {
            tracing::warn!(chain = %chain, anchor_seq = record.anchor_seq, "the newest outbox anchor does not verify with this ledger's key; checking the chain from its first event");
        }
        Ok(anchor)
    }
}

/// The check's own refusal, worded for a signer of checkpoints rather
/// than an anchorer.
fn refused(chain: &ChainId, e: AnchorerError) -> AnchorerError {
    match e {
        AnchorerError::UnanchoredTampering { seq, what, .. } => AnchorerError::CheckFailed {
            chain: chain.to_string(),
            seq,
            what,
        },
        e => e,
    }
}

/// The root at `size`, below the checked head `checked`: storage's root at
/// that size, accepted only with a consistency proof from it to the
/// checked root.
async fn older_root(
    snapshot: &mut ReadSnapshot,
    chain: &ChainId,
    size: u64,
    checked: CheckedRoot,
) -> Result<CheckedRoot, AnchorerError> {
    if size > checked.size {
        return Err(StoreError::OutOfRange(format!(
            "tree size {size} is larger than chain {chain:?} ({} events)",
            checked.size
        ))
        .into());
    }
    let (root, _) = snapshot.root_and_proof(chain, size, None).await?;
    let (_, proof) = snapshot
        .root_and_proof(chain, checked.size, Some(size))
        .await?;
    merkle::verify_consistency(&proof, size, root, checked.size, checked.root).map_err(|e| {
        tampering(
            chain,
            None,
            format!(
                "the stored Merkle hashes at tree size {size} are not a prefix of the checked tree of size {} ({e})",
                checked.size
            ),
        )
    })?;
    Ok(CheckedRoot { size, root })
}
