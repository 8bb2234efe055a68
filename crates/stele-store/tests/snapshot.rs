//! Consistent reads (`Store::read_snapshot`): a verification, an export or
//! a proof reads one state of the chain — its head, its rows and its stored
//! hashes — however much another session appends meanwhile. On SQLite and
//! the real PostgreSQL, including an auditor's SELECT-only role over TLS.

#[macro_use]
mod common;

use common::{Db, event, keyring, verify};
use stele_ledger::{ChainId, Hash};
use stele_store::{DbLocation, ReadSnapshot, Store, StoreError, StoreOptions};

on_every_backend_async!(
    a_consistent_read_does_not_see_appends_made_during_it,
    a_snapshot_ended_by_an_error_gives_its_connection_back_to_the_current_state,
);

/// What one consistent read saw.
#[derive(Debug, PartialEq)]
struct Seen {
    head: u64,
    listed: u64,
    tree_size: u64,
    root: Hash,
    rows_scanned: u64,
    events_verified: u64,
}

/// Reads the head, lets `meanwhile` commit an append from another session,
/// then reads everything else a verification reads, in the same snapshot.
async fn read_with_append_in_between(
    reader: &Store,
    chain: &ChainId,
    meanwhile: impl Future<Output = ()>,
) -> Seen {
    let keys = keyring();
    let mut snapshot = reader.read_snapshot().await.unwrap();
    let head = snapshot
        .head(chain)
        .await
        .unwrap()
        .expect("the chain exists")
        .size;
    meanwhile.await;
    let tree_size = snapshot.checked_size(chain, None).await.unwrap();
    let (root, _) = snapshot
        .root_and_proof(chain, tree_size, None)
        .await
        .unwrap();
    let mut rows_scanned = 0;
    snapshot
        .scan(chain, 0, None, &mut |_, _| {
            rows_scanned += 1;
            Ok(())
        })
        .await
        .unwrap();
    let report = stele_audit::verify_chain(&mut snapshot, chain, Some(&keys), &mut (), &mut |_| {})
        .await
        .unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    let listed = snapshot
        .chains()
        .await
        .unwrap()
        .first()
        .map_or(0, |h| h.size);
    snapshot.end().await.unwrap();
    Seen {
        head,
        listed,
        tree_size,
        root,
        rows_scanned,
        events_verified: report.events_checked,
    }
}

async fn append(store: &Store, chain: &ChainId, seqs: std::ops::Range<usize>) {
    store
        .append(chain, seqs.map(event).collect(), keyring().active())
        .await
        .unwrap();
}

async fn a_consistent_read_does_not_see_appends_made_during_it(db: &Db) {
    let keys = keyring();
    let chain = ChainId::new("live").unwrap();
    let writer = db.open().await;
    append(&writer, &chain, 0..10).await;
    let reader = Store::open_read_only(&db.location, StoreOptions::default())
        .await
        .unwrap();
    let (_, root_at_10) = reader.tree_root(&chain, None).await.unwrap();

    let seen = read_with_append_in_between(&reader, &chain, append(&writer, &chain, 10..15)).await;
    assert_eq!(
        seen,
        Seen {
            head: 10,
            listed: 10,
            tree_size: 10,
            root: root_at_10,
            rows_scanned: 10,
            events_verified: 10,
        },
        "every read of one consistent read sees the state it started on"
    );

    // Once it ends, the next read sees the appended events.
    assert_eq!(reader.head(&chain).await.unwrap().unwrap().size, 15);
    let report = verify(&reader, &chain, Some(&keys)).await.unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.events_checked, 15);
}

/// Replaces "an append inside a consistent read is refused and errors close
/// it" of the synchronous store, whose snapshot held the store's only
/// session: on the shared store appends go on beside an open snapshot
/// (tests/shared_snapshot.rs), and what remains to hold is that a snapshot
/// ending in an error — whether dropped or ended, after an error of the
/// caller's or a scan stopped half-way — never leaves its connection
/// behind in the old state: with a pool of two connections (one reader
/// beside the committer's), every later read and snapshot sees the
/// current state, and appends commit.
async fn a_snapshot_ended_by_an_error_gives_its_connection_back_to_the_current_state(db: &Db) {
    let keys = keyring();
    let chain = ChainId::new("c").unwrap();
    let store = Store::open(
        &db.location,
        StoreOptions {
            readers: 1,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    append(&store, &chain, 0..3).await;

    // A read refused inside the snapshot; the snapshot is dropped, not ended.
    let mut snapshot = store.read_snapshot().await.unwrap();
    let err = snapshot.checked_size(&chain, Some(99)).await.unwrap_err();
    assert!(matches!(err, StoreError::OutOfRange(_)), "{err}");
    append(&store, &chain, 3..4).await;
    drop(snapshot);
    let sizes = sizes_seen(&store, &chain).await;
    assert_eq!(sizes, [4, 4, 4], "store, snapshot, store");

    // A scan stopped by its visitor's error: the rest of its COPY stays on
    // the connection, which must not serve another read.
    let mut snapshot = store.read_snapshot().await.unwrap();
    append(&store, &chain, 4..5).await;
    let stopped = snapshot
        .scan(&chain, 0, None, &mut |e, _| {
            if e.seq == 1 {
                return Err(StoreError::Corrupt("stop at 1".into()));
            }
            Ok(())
        })
        .await;
    assert!(
        matches!(&stopped, Err(StoreError::Corrupt(m)) if m == "stop at 1"),
        "{stopped:?}"
    );
    snapshot.end().await.unwrap();
    assert_eq!(sizes_seen(&store, &chain).await, [5, 5, 5]);

    let report = verify(&store, &chain, Some(&keys)).await.unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.events_checked, 5);
    store.close().await;
}

/// The chain's size as the store reads it, as a new snapshot reads it, and
/// as the store reads it once that snapshot ended.
async fn sizes_seen(store: &Store, chain: &ChainId) -> Vec<u64> {
    let size = |head: Option<stele_store::ChainHead>| head.expect("the chain exists").size;
    let mut sizes = vec![size(store.head(chain).await.unwrap())];
    let mut snapshot: ReadSnapshot = store.read_snapshot().await.unwrap();
    sizes.push(size(snapshot.head(chain).await.unwrap()));
    snapshot.end().await.unwrap();
    sizes.push(size(store.head(chain).await.unwrap()));
    sizes
}

/// An auditor's role may only SELECT and reaches the server over TLS: its
/// read-only snapshot reads one state, on an encrypted connection.
#[test]
fn postgres_an_auditor_role_over_tls_reads_one_snapshot() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    assert_eq!(
        db.query_text("SHOW ssl").as_deref(),
        Some("on"),
        "the test PostgreSQL must offer TLS"
    );
    let chain = ChainId::new("audited").unwrap();
    let role = format!("stele_snapshot_auditor_{}", std::process::id());
    let (seen, root_at_10, encrypted) = common::runtime().block_on(async {
        let writer = db.open().await;
        append(&writer, &chain, 0..10).await;

        db.exec(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
        ));
        let DbLocation::Postgres(url) = &db.location else {
            unreachable!("a PostgreSQL fixture")
        };
        let joiner = if url.contains('?') { '&' } else { '?' };
        let auditor_url =
            format!("{url}{joiner}sslmode=require").replacen("postgres@", &format!("{role}@"), 1);
        assert!(auditor_url.contains(&role), "{auditor_url}");

        // Its reads come one at a time: each takes the pool's one idle
        // connection, the one opening made.
        let reader =
            Store::open_read_only(&DbLocation::Postgres(auditor_url), StoreOptions::default())
                .await
                .unwrap();
        let (_, root_at_10) = reader.tree_root(&chain, None).await.unwrap();
        let seen =
            read_with_append_in_between(&reader, &chain, append(&writer, &chain, 10..15)).await;
        let encrypted = db.query_text(&format!(
            "SELECT string_agg(s.ssl::text, ',') FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.usename = '{role}'"
        ));
        (seen, root_at_10, encrypted)
    });
    db.exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'; \
         DROP OWNED BY {role}; DROP ROLE {role};"
    ));
    assert_eq!(
        seen,
        Seen {
            head: 10,
            listed: 10,
            tree_size: 10,
            root: root_at_10,
            rows_scanned: 10,
            events_verified: 10,
        }
    );
    assert_eq!(
        encrypted.as_deref(),
        Some("true"),
        "the auditor's one session, its snapshot's"
    );
}

/// A consistent read of a large ledger keeps its session idle in its
/// transaction between the reader's calls: a server that ends idle
/// transactions (`idle_in_transaction_session_timeout`) must not end it.
#[test]
fn postgres_a_slow_consistent_read_outlives_the_idle_transaction_timeout() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    let chain = ChainId::new("slow").unwrap();
    common::runtime().block_on(async {
        let writer = db.open().await;
        append(&writer, &chain, 0..10).await;
        writer.close().await;
        db.exec(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET idle_in_transaction_session_timeout = ''100ms''', current_database()); END $$",
        );
        let reader = Store::open_read_only(&db.location, StoreOptions::default())
            .await
            .unwrap();
        let mut snapshot = reader.read_snapshot().await.unwrap();
        let head = snapshot.head(&chain).await.unwrap().expect("the chain exists");
        // Longer than the timeout, as a scan of millions of rows would be.
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        let mut rows = 0u64;
        snapshot
            .scan(&chain, 0, None, &mut |_, _| {
                rows += 1;
                Ok(())
            })
            .await
            .unwrap();
        let size = snapshot.checked_size(&chain, Some(head.size)).await.unwrap();
        snapshot.root_and_proof(&chain, size, None).await.unwrap();
        snapshot.end().await.unwrap();
        assert_eq!((size, rows), (10, 10));
    });
}
