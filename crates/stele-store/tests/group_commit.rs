//! The shared store (`stele_store::Store`): concurrent appends coalesce into
//! shared durable transactions, each caller gets its own result, a full
//! queue refuses with `Busy`, and closing drains what was queued. On SQLite
//! and the real PostgreSQL.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{Db, event, keyed, keyring, rfc6962, runtime, verify};
use stele_ledger::ChainId;
use stele_ledger::event::ValidEvent;
use stele_store::{Store, StoreError, StoreOptions};
use tokio::sync::Barrier;

on_every_backend!(
    concurrent_single_event_appends_share_commits_and_make_one_gap_free_chain,
    a_conflicting_append_fails_alone_among_its_neighbours,
    a_full_queue_refuses_with_busy_and_writes_nothing_for_the_refused,
    close_commits_everything_queued_and_refuses_what_comes_after,
    the_shared_store_commits_durably,
    the_shared_store_reads_pages_roots_and_proofs_of_what_it_wrote,
);

const APPENDERS: usize = 64;

fn chain() -> ChainId {
    ChainId::new("orders").expect("chain id")
}

/// Starts one task per batch, all released at once, and returns their
/// results in the order given.
async fn append_all(
    store: &Store,
    batches: Vec<Vec<ValidEvent>>,
) -> Vec<Result<Vec<stele_ledger::append::Receipt>, StoreError>> {
    let barrier = Arc::new(Barrier::new(batches.len()));
    let key = keyring().active().clone();
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|events| {
            let (store, barrier, key) = (store.clone(), Arc::clone(&barrier), key.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.append(&chain(), events, &key).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("append task"));
    }
    results
}

/// The transactions that wrote the chain's rows, counted by the database
/// itself where it can tell (PostgreSQL: distinct `xmin`).
fn writing_transactions(db: &Db) -> Option<u64> {
    match &db.location {
        stele_store::DbLocation::Postgres(_) => db
            .query_text("SELECT count(DISTINCT xmin::text)::text FROM audit_events")
            .map(|n| n.parse().expect("a count")),
        stele_store::DbLocation::Sqlite(_) => None,
    }
}

fn concurrent_single_event_appends_share_commits_and_make_one_gap_free_chain(db: &Db) {
    let rt = runtime();
    let store = rt
        .block_on(Store::open(&db.location, StoreOptions::default()))
        .expect("open");
    let results = rt.block_on(append_all(
        &store,
        (0..APPENDERS).map(|i| vec![event(i)]).collect(),
    ));

    let seqs: BTreeSet<u64> = results
        .iter()
        .map(|r| {
            let receipts = r.as_ref().expect("every append succeeds");
            assert_eq!(receipts.len(), 1);
            receipts[0].seq
        })
        .collect();
    assert_eq!(
        seqs,
        (0..APPENDERS as u64).collect(),
        "one seq each, no gaps"
    );
    let stats = store.stats();
    assert_eq!(stats.appends, APPENDERS as u64);
    assert_eq!(stats.events, APPENDERS as u64);
    assert!(
        stats.commits < APPENDERS as u64,
        "{APPENDERS} concurrent appends should share commits, got {stats:?}"
    );
    assert!(stats.largest_group > 1, "{stats:?}");
    if let Some(transactions) = writing_transactions(db) {
        assert_eq!(
            transactions, stats.commits,
            "the database saw as many writing transactions as the store counted commits"
        );
    }
    eprintln!(
        "{}: {APPENDERS} appends in {} commits (largest group {})",
        store.backend(),
        stats.commits,
        stats.largest_group
    );

    // The chain the shared store wrote verifies like any other.
    let report = rt
        .block_on(verify(&store, &chain(), Some(&keyring())))
        .expect("verify");
    assert_eq!(report.events_checked, APPENDERS as u64);
    assert!(report.is_clean(), "{report:?}");
    let head = rt
        .block_on(store.head(&chain()))
        .expect("head")
        .expect("chain");
    assert_eq!(head.size, APPENDERS as u64);
    let seq_10 = rt.block_on(store.event(&chain(), 10)).expect("event 10");
    assert_eq!(seq_10.seq, 10);
}

fn a_conflicting_append_fails_alone_among_its_neighbours(db: &Db) {
    let rt = runtime();
    let store = rt
        .block_on(Store::open(&db.location, StoreOptions::default()))
        .expect("open");
    let key = keyring().active().clone();
    let first = rt
        .block_on(store.append(&chain(), vec![keyed(1, "order-1")], &key))
        .expect("first append");
    let before = store.stats();

    // Batch 20 reuses a stored key for other content; batch 40 uses one
    // key twice for different events; the rest are fine. Batch 30 repeats
    // the stored event exactly (a retry): original receipt, nothing written.
    let batches: Vec<Vec<ValidEvent>> = (0..APPENDERS)
        .map(|i| match i {
            20 => vec![event(100), keyed(2, "order-1")],
            30 => vec![keyed(1, "order-1")],
            40 => vec![keyed(3, "dup"), keyed(4, "dup")],
            i => vec![event(i)],
        })
        .collect();
    let results = rt.block_on(append_all(&store, batches));
    for (i, r) in results.iter().enumerate() {
        match i {
            20 => assert!(
                matches!(r, Err(StoreError::IdempotencyConflict { seq: 0, key }) if key == "order-1"),
                "{r:?}"
            ),
            40 => assert!(
                matches!(r, Err(StoreError::IdempotencyConflictInBatch { key }) if key == "dup"),
                "{r:?}"
            ),
            30 => {
                let receipts = r.as_ref().expect("a retry succeeds");
                assert!(receipts[0].duplicate);
                assert_eq!(
                    receipts[0],
                    stele_ledger::append::Receipt {
                        duplicate: true,
                        ..first[0].clone()
                    }
                );
            }
            _ => assert!(r.is_ok(), "append {i} failed beside a bad neighbour: {r:?}"),
        }
    }
    let stats = store.stats();
    let commits = stats.commits - before.commits;
    assert_eq!(stats.failed_appends - before.failed_appends, 2);
    assert_eq!(stats.events - before.events, APPENDERS as u64 - 3);
    assert!(
        commits < (APPENDERS - 2) as u64,
        "the good appends still shared commits: {stats:?}"
    );

    // Nothing of the refused batches was written: 1 + 61 events, no gaps.
    let head = rt
        .block_on(store.head(&chain()))
        .expect("head")
        .expect("chain");
    assert_eq!(head.size, 1 + APPENDERS as u64 - 3);
    let report = rt
        .block_on(verify(&store, &chain(), Some(&keyring())))
        .expect("verify");
    assert!(report.is_clean(), "{report:?}");
    let types: Vec<_> = rt
        .block_on(async {
            let mut snapshot = store.read_snapshot().await?;
            let events = snapshot.events(&chain(), 0, None).await?;
            snapshot.end().await?;
            Ok::<_, StoreError>(events)
        })
        .expect("events")
        .into_iter()
        .map(|e| (e.idempotency_key, e.payload))
        .collect();
    assert!(
        !types.iter().any(|(k, _)| k.as_deref() == Some("dup")),
        "the refused batch wrote nothing"
    );
    assert!(
        !types
            .iter()
            .any(|(_, p)| p.as_deref().is_some_and(|p| p.contains("\"i\":100"))),
        "the refused batch's good event was not written either"
    );
}

fn a_full_queue_refuses_with_busy_and_writes_nothing_for_the_refused(db: &Db) {
    let rt = runtime();
    let options = StoreOptions {
        queue_capacity: 2,
        max_group_requests: 1,
        ..StoreOptions::default()
    };
    let store = rt
        .block_on(Store::open(&db.location, options))
        .expect("open");
    let results = rt.block_on(append_all(
        &store,
        (0..200).map(|i| vec![event(i)]).collect(),
    ));
    let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
    let busy: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        !busy.is_empty(),
        "200 appends at once overflow a queue of 2"
    );
    for e in &busy {
        assert!(matches!(e, StoreError::Busy { queued: 2 }), "{e:?}");
        assert!(e.is_retryable());
        assert!(e.to_string().contains("nothing was written"), "{e}");
    }
    assert_eq!(store.stats().busy, busy.len() as u64);
    let head = rt
        .block_on(store.head(&chain()))
        .expect("head")
        .expect("chain");
    assert_eq!(
        head.size, ok,
        "exactly the acknowledged appends were written"
    );
}

fn close_commits_everything_queued_and_refuses_what_comes_after(db: &Db) {
    let rt = runtime();
    let store = rt
        .block_on(Store::open(&db.location, StoreOptions::default()))
        .expect("open");
    assert!(store.is_accepting());
    let key = keyring().active().clone();
    let acknowledged = rt.block_on(async {
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let (store, key) = (store.clone(), key.clone());
                tokio::spawn(async move { store.append(&chain(), vec![event(i)], &key).await })
            })
            .collect();
        tokio::task::yield_now().await;
        store.close().await;
        let mut acknowledged = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(_) => acknowledged += 1,
                Err(StoreError::Closed) => {}
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        acknowledged
    });
    assert!(!store.is_accepting());
    let after = rt.block_on(store.append(&chain(), vec![event(99)], &key));
    assert!(matches!(after, Err(StoreError::Closed)), "{after:?}");
    let size = rt
        .block_on(store.head(&chain()))
        .expect("head")
        .map_or(0, |h| h.size);
    assert_eq!(
        size, acknowledged,
        "every acknowledged append, and only those, is stored"
    );
}

fn the_shared_store_commits_durably(db: &Db) {
    let rt = runtime();
    let store = rt
        .block_on(Store::open(&db.location, StoreOptions::default()))
        .expect("open");
    let settings: Vec<(&str, &str)> = store
        .durability()
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    match store.backend() {
        "sqlite" => assert_eq!(settings, [("journal_mode", "wal"), ("synchronous", "full")]),
        _ => assert_eq!(settings, [("synchronous_commit", "on"), ("fsync", "on")]),
    }
}

fn the_shared_store_reads_pages_roots_and_proofs_of_what_it_wrote(db: &Db) {
    let rt = runtime();
    let store = rt
        .block_on(Store::open(&db.location, StoreOptions::default()))
        .expect("open");
    let key = keyring().active().clone();
    // Several batches, so the tree has many shapes on the way.
    for b in 0..10 {
        rt.block_on(store.append(&chain(), (b * 7..b * 7 + 7).map(event).collect(), &key))
            .expect("append");
    }
    let size = 70;
    // What the store's reads are checked against: every row as a read
    // snapshot scans it, and roots of their leaves by an independent RFC
    // 6962 implementation.
    let rows = rt
        .block_on(async {
            let mut snapshot = store.read_snapshot().await?;
            let rows = snapshot.events(&chain(), 0, None).await?;
            snapshot.end().await?;
            Ok::<_, StoreError>(rows)
        })
        .expect("rows");
    assert_eq!(rows.len(), size as usize);
    let leaves: Vec<[u8; 32]> = rows
        .iter()
        .map(|e| {
            stele_ledger::parse_hex_hash(&e.leaf_hash)
                .expect("a leaf hash")
                .0
        })
        .collect();

    let page = rt.block_on(store.events(&chain(), 65, 100)).expect("page");
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (65..70).collect::<Vec<_>>()
    );
    assert_eq!(page[..], rows[65..]);
    assert_eq!(
        rt.block_on(store.event(&chain(), 65)).expect("event"),
        rows[65]
    );

    for at in [1, 2, 3, 7, 8, 33, 64, 69, 70] {
        let (got_size, root) = rt
            .block_on(store.tree_root(&chain(), Some(at)))
            .expect("root");
        let expected = stele_ledger::Hash(rfc6962::mth(&leaves[..at as usize]));
        assert_eq!((got_size, root), (at, expected), "root at {at}");
        for seq in [0, at / 2, at - 1] {
            let (s, r, proof) = rt
                .block_on(store.inclusion_proof(&chain(), seq, Some(at)))
                .expect("inclusion proof");
            assert_eq!((s, r), (at, expected));
            let leaf = stele_ledger::Hash(leaves[seq as usize]);
            stele_ledger::merkle::verify_inclusion(&proof, at, r, seq, leaf)
                .unwrap_or_else(|e| panic!("seq {seq} in {at}: {e}"));
        }
        let (from_root, to_root, proof) = rt
            .block_on(store.consistency_proof(&chain(), at, size))
            .expect("consistency proof");
        stele_ledger::merkle::verify_consistency(&proof, at, from_root, size, to_root)
            .unwrap_or_else(|e| panic!("{at} -> {size}: {e}"));
    }
    let (head_size, _) = rt.block_on(store.tree_root(&chain(), None)).expect("root");
    assert_eq!(head_size, size);

    for wrong in [
        rt.block_on(store.tree_root(&chain(), Some(71))).map(|_| ()),
        rt.block_on(store.inclusion_proof(&chain(), 70, None))
            .map(|_| ()),
        rt.block_on(store.consistency_proof(&chain(), 5, 71))
            .map(|_| ()),
        rt.block_on(store.consistency_proof(&chain(), 9, 5))
            .map(|_| ()),
    ] {
        assert!(matches!(wrong, Err(StoreError::OutOfRange(_))), "{wrong:?}");
    }
    let unknown = ChainId::new("nope").expect("chain id");
    assert!(matches!(
        rt.block_on(store.tree_root(&unknown, None)),
        Err(StoreError::UnknownChain(_))
    ));
    assert!(
        rt.block_on(store.anchors(Some(&chain()), None))
            .expect("anchors")
            .is_empty()
    );
}

/// A SQLite fixture's database file and its WAL file.
fn sqlite_files(db: &Db) -> (std::path::PathBuf, std::path::PathBuf) {
    let stele_store::DbLocation::Sqlite(path) = &db.location else {
        unreachable!("a SQLite fixture")
    };
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    (path.clone(), wal.into())
}

/// The WAL is copied into the database file beside the appends, by the
/// checkpoint thread: each round's 2 MiB of WAL is below the writer's own
/// checkpoint thresholds, so without that thread the database file would
/// stay at its empty size here.
#[test]
fn sqlite_checkpoints_beside_the_appends_and_keeps_the_wal_bounded() {
    let db = Db::sqlite();
    let (path, wal) = sqlite_files(&db);
    let rt = runtime();
    let store = rt
        .block_on(Store::open(&db.location, StoreOptions::default()))
        .expect("open");
    let empty = std::fs::metadata(&path).expect("database file").len();
    let keys = keyring();
    let mut largest_wal = 0;
    for round in 0..8 {
        let batch: Vec<_> = (0..5_000).map(|i| event(round * 5_000 + i)).collect();
        rt.block_on(store.append(&chain(), batch, keys.active()))
            .expect("append");
        largest_wal = largest_wal.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let copied = std::fs::metadata(&path).expect("database file").len();
    assert!(
        copied > empty + 4 * 1024 * 1024,
        "database file {empty} -> {copied} bytes: the WAL was not checkpointed"
    );
    assert!(
        largest_wal < 8 * 1024 * 1024,
        "the WAL grew to {largest_wal} bytes for 40,000 events"
    );
    rt.block_on(store.close());
    let size = rt
        .block_on(async {
            let store = Store::open_read_only(&db.location, StoreOptions::default()).await?;
            store.head(&chain()).await
        })
        .expect("head")
        .map_or(0, |h| h.size);
    assert_eq!(size, 40_000);
}

/// Under unbroken load (four appenders sending prepared batches back to
/// back) the WAL is still started over: 300,000 events, whose pages made a
/// 75 MiB WAL with checkpoints switched off, leave it far smaller. A commit
/// landing during every background checkpoint could keep those from ever
/// covering the whole WAL; the writer's backstop checkpoint is there for
/// that case.
#[test]
fn sqlite_wal_stays_bounded_under_unbroken_appends() {
    let db = Db::sqlite();
    let (_, wal) = sqlite_files(&db);
    let rt = runtime();
    let store = rt
        .block_on(Store::open(&db.location, StoreOptions::default()))
        .expect("open");
    // Built first, so that each appender sends its next batch the moment
    // the last one is answered.
    let batches: Vec<Vec<Vec<_>>> = (0..4)
        .map(|t| {
            (0..15)
                .map(|round| {
                    (0..5_000)
                        .map(|i| event(t * 100_000 + round * 5_000 + i))
                        .collect()
                })
                .collect()
        })
        .collect();
    let largest_wal = rt.block_on(async {
        let appenders: Vec<_> = batches
            .into_iter()
            .map(|batches| {
                let store = store.clone();
                let key = keyring().active().clone();
                let wal = wal.clone();
                tokio::spawn(async move {
                    let mut largest = 0;
                    for batch in batches {
                        store.append(&chain(), batch, &key).await.expect("append");
                        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
                    }
                    largest
                })
            })
            .collect();
        let mut largest = 0;
        for a in appenders {
            largest = largest.max(a.await.expect("appender"));
        }
        largest
    });
    assert!(
        largest_wal < 64 * 1024 * 1024,
        "the WAL grew to {largest_wal} bytes"
    );
    rt.block_on(store.close());
}
