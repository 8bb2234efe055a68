//! Readers beside writers on the shared store (`stele_store::Store`): while
//! several tasks append continuously, every read answers a state some
//! commit left, on SQLite and the real PostgreSQL.
//!
//! What each read promises, and so what is checked:
//! - `head`: a committed head, its hash that of its last event (rows and
//!   head move in one transaction), never behind a head read before it;
//! - `events`: one query, so a page is contiguous from `from`, holds every
//!   event committed before it was read (a short page reaches at least the
//!   head read before it), and nothing beyond the head read after it — the
//!   store has no call reading a head and a page in one snapshot, so "the
//!   page never goes beyond the head" is checked against the next head;
//! - `tree_root`, `inclusion_proof`, `consistency_proof`: each result
//!   verifies against the root(s) it came with, of a tree no smaller than
//!   the head read before it, and a tree's root is the same whichever read
//!   reported it (stored hashes never change, so neither may a root).

#[macro_use]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{Db, event, keyring, runtime, verify};
use stele_ledger::merkle::{verify_consistency, verify_inclusion};
use stele_ledger::{ChainId, Event, Hash};
use stele_store::{Store, StoreOptions};

on_every_backend!(reads_beside_continuous_appends_are_each_self_consistent);

const ROUNDS: u64 = 20;
const APPENDERS: u64 = 4;
const READERS: u64 = 4;
/// Read passes (each: head, event, page, head, root, three proofs) per
/// reader per round, at least; readers go on until the appenders have
/// acknowledged [`APPENDERS`] batches since they began, however slow the
/// disk, so every round reads beside commits.
const PASSES: u64 = 6;

fn chains() -> Vec<ChainId> {
    ["orders", "refunds"]
        .iter()
        .map(|c| ChainId::new(c).expect("chain id"))
        .collect()
}

fn hash_of(hex_text: &str) -> Hash {
    Hash(
        hex::decode(hex_text)
            .expect("stored hashes are hex")
            .try_into()
            .expect("32 bytes"),
    )
}

/// A small deterministic generator: each reader's choices follow from its
/// round and number, so a failure can be read back from the seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Every root a read reported, by chain and tree size: one tree, one root.
#[derive(Default)]
struct Roots(Mutex<HashMap<(String, u64), Hash>>);

impl Roots {
    fn saw(&self, chain: &ChainId, size: u64, root: Hash, what: &str) {
        let mut roots = self.0.lock().expect("roots");
        let first = *roots.entry((chain.to_string(), size)).or_insert(root);
        assert_eq!(
            first, root,
            "{what}: chain {chain} at size {size} has a root other than an earlier read's"
        );
    }
}

/// The event's stored leaf is the RFC 6962 hash of its canonical bytes: a
/// row read whole, as it was written.
fn check_leaf(e: &Event) {
    let canonical = stele_ledger::canonical::event_canonical_bytes(e).expect("canonical bytes");
    assert_eq!(
        stele_ledger::hashing::leaf_hash(&canonical),
        hash_of(&e.leaf_hash),
        "seq {}: the stored leaf is not its event's",
        e.seq
    );
}

/// One pass of every read on `chain`, each checked on its own and against
/// the reads before it; `seen` is the largest tree size this reader saw.
async fn read_pass(store: &Store, chain: &ChainId, rng: &mut Rng, roots: &Roots, seen: &mut u64) {
    let head = store
        .head(chain)
        .await
        .expect("head")
        .expect("the chain was seeded");
    assert!(
        head.size >= *seen,
        "{chain}: head size {} after a read of size {seen}",
        head.size
    );

    let last = store
        .event(chain, head.size - 1)
        .await
        .expect("the head's last event");
    check_leaf(&last);
    assert_eq!(
        (hash_of(&last.event_hash), Some(last.ts.as_str())),
        (head.head_hash, head.last_ts.as_deref()),
        "{chain}: the head of size {} is not its last event's",
        head.size
    );

    let from = rng.below(head.size + 1);
    let limit = 1 + rng.below(40);
    let page = store.events(chain, from, limit).await.expect("page");
    let after = store
        .head(chain)
        .await
        .expect("head")
        .expect("the chain was seeded");
    let end = from + page.len() as u64;
    assert!(page.len() as u64 <= limit, "{chain}: page over its limit");
    for (e, seq) in page.iter().zip(from..) {
        assert_eq!(
            (e.chain_id.as_str(), e.seq),
            (chain.as_str(), seq),
            "{chain}: a page from {from} is not contiguous"
        );
        check_leaf(e);
    }
    assert!(
        end >= head.size.min(from + limit),
        "{chain}: a page from {from} (limit {limit}) ends at {end}, short of the head of size {} read before it",
        head.size
    );
    assert!(
        end <= after.size,
        "{chain}: a page from {from} ends at {end}, beyond the head of size {} read after it",
        after.size
    );

    let (size, root) = store.tree_root(chain, None).await.expect("root");
    assert!(
        size >= after.size,
        "{chain}: tree size {size} after a head of {}",
        after.size
    );
    roots.saw(chain, size, root, "tree_root");

    // An event of the page (else the head's) in the newest tree...
    let proved = if page.is_empty() {
        &last
    } else {
        &page[usize::try_from(rng.below(page.len() as u64)).expect("small")]
    };
    let (newest, newest_root, proof) = store
        .inclusion_proof(chain, proved.seq, None)
        .await
        .expect("inclusion proof");
    assert!(
        newest >= size,
        "{chain}: proof of size {newest} after {size}"
    );
    verify_inclusion(
        &proof,
        newest,
        newest_root,
        proved.seq,
        hash_of(&proved.leaf_hash),
    )
    .unwrap_or_else(|e| panic!("{chain}: seq {} in {newest}: {e}", proved.seq));
    roots.saw(chain, newest, newest_root, "inclusion_proof");
    *seen = newest;

    // ... the head's event in the tree of the head read first ...
    let (at, at_root, proof) = store
        .inclusion_proof(chain, last.seq, Some(head.size))
        .await
        .expect("inclusion proof at an older size");
    assert_eq!(at, head.size);
    verify_inclusion(&proof, at, at_root, last.seq, hash_of(&last.leaf_hash))
        .unwrap_or_else(|e| panic!("{chain}: seq {} in {at}: {e}", last.seq));
    roots.saw(chain, at, at_root, "inclusion_proof at a size");

    // ... and an older tree grown into the newest.
    let old = 1 + rng.below(head.size);
    let (old_root, new_root, proof) = store
        .consistency_proof(chain, old, newest)
        .await
        .expect("consistency proof");
    verify_consistency(&proof, old, old_root, newest, new_root)
        .unwrap_or_else(|e| panic!("{chain}: {old} -> {newest}: {e}"));
    roots.saw(chain, old, old_root, "consistency_proof (from)");
    roots.saw(chain, newest, new_root, "consistency_proof (to)");
}

fn reads_beside_continuous_appends_are_each_self_consistent(db: &Db) {
    let rt = runtime();
    let store = rt
        .block_on(Store::open(&db.location, StoreOptions::default()))
        .expect("open");
    let key = keyring().active().clone();
    let chains = chains();
    // Acknowledged events per chain.
    let acknowledged: Arc<Vec<AtomicU64>> =
        Arc::new(chains.iter().map(|_| AtomicU64::new(0)).collect());
    for (chain, count) in chains.iter().zip(acknowledged.iter()) {
        rt.block_on(store.append(chain, vec![event(0)], &key))
            .expect("seed append");
        count.fetch_add(1, Ordering::SeqCst);
    }
    let roots = Arc::new(Roots::default());
    // Batches acknowledged, all rounds.
    let batches = Arc::new(AtomicU64::new(0));

    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let appenders: Vec<_> = (0..APPENDERS)
            .map(|a| {
                let (store, key, chains, acknowledged, batches, stop) = (
                    store.clone(),
                    key.clone(),
                    chains.clone(),
                    Arc::clone(&acknowledged),
                    Arc::clone(&batches),
                    Arc::clone(&stop),
                );
                rt.spawn(async move {
                    let mut n: u64 = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let c = usize::try_from((a + n) % 2).expect("small");
                        let events: Vec<_> = (0..1 + (n % 3))
                            .map(|i| event(usize::try_from(n + i).expect("small")))
                            .collect();
                        let len = events.len() as u64;
                        let receipts = store
                            .append(&chains[c], events, &key)
                            .await
                            .unwrap_or_else(|e| panic!("appender {a}: {e}"));
                        assert_eq!(receipts.len() as u64, len);
                        acknowledged[c].fetch_add(len, Ordering::SeqCst);
                        batches.fetch_add(1, Ordering::SeqCst);
                        n += 1;
                    }
                })
            })
            .collect();
        let batches_before = batches.load(Ordering::SeqCst);
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                let (store, chains, roots, batches) = (
                    store.clone(),
                    chains.clone(),
                    Arc::clone(&roots),
                    Arc::clone(&batches),
                );
                rt.spawn(async move {
                    let mut rng = Rng::new(round * READERS + r);
                    let mut seen = vec![0; chains.len()];
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                    for pass in 0.. {
                        let during = batches.load(Ordering::SeqCst) - batches_before;
                        if pass >= PASSES && during >= APPENDERS {
                            break;
                        }
                        assert!(
                            std::time::Instant::now() < deadline,
                            "round {round}: the appenders acknowledged {during} batches in 60 s of reading"
                        );
                        let c = usize::try_from((r + pass) % 2).expect("small");
                        read_pass(&store, &chains[c], &mut rng, &roots, &mut seen[c]).await;
                    }
                })
            })
            .collect();
        let failed_read = rt.block_on(async {
            let mut failed = None;
            for reader in readers {
                if let Err(e) = reader.await {
                    failed.get_or_insert(e);
                }
            }
            failed
        });
        stop.store(true, Ordering::SeqCst);
        // An appender's failure first: a reader waiting for appends that
        // never came would only say that they did not.
        rt.block_on(async {
            for appender in appenders {
                if let Err(e) = appender.await {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        });
        if let Some(e) = failed_read {
            std::panic::resume_unwind(e.into_panic());
        }
        for (chain, count) in chains.iter().zip(acknowledged.iter()) {
            let head = rt
                .block_on(store.head(chain))
                .expect("head")
                .expect("chain");
            assert_eq!(
                head.size,
                count.load(Ordering::SeqCst),
                "round {round}: {chain} holds exactly the acknowledged events"
            );
        }
    }

    for chain in &chains {
        let report = rt
            .block_on(verify(&store, chain, Some(&keyring())))
            .expect("verify");
        assert!(report.is_clean(), "{chain}: {report:?}");
    }
    eprintln!(
        "{}: {ROUNDS} rounds, {} batches, {} events, {} commits, {} roots compared",
        store.backend(),
        batches.load(Ordering::SeqCst),
        store.stats().events,
        store.stats().commits,
        roots.0.lock().expect("roots").len()
    );
}
