//! The shared store beside appends: a read snapshot sees one state while
//! appends go on, and a read-only store refuses every write. On SQLite and
//! the real PostgreSQL. (The outbox's leases: `ledger.rs`.)

#[macro_use]
mod common;

use std::time::Duration;

use common::{Db, event, keyring, runtime};
use stele_ledger::{ChainId, merkle};
use stele_store::{Store, StoreError, StoreOptions};

on_every_backend!(
    a_read_snapshot_sees_one_state_while_appends_go_on,
    a_read_only_store_refuses_every_write_and_changes_nothing,
);

fn chain() -> ChainId {
    ChainId::new("production").expect("chain id")
}

async fn append(store: &Store, from: usize, n: usize) {
    let events = (from..from + n).map(event).collect();
    store
        .append(&chain(), events, keyring().active())
        .await
        .expect("append");
}

fn a_read_snapshot_sees_one_state_while_appends_go_on(db: &Db) {
    runtime().block_on(async {
        let store = Store::open(&db.location, StoreOptions::default())
            .await
            .expect("open");
        append(&store, 0, 700).await;
        let (_, root_700) = store.tree_root(&chain(), None).await.expect("root");
        let mut snapshot = store.read_snapshot().await.expect("snapshot");
        // Appends beside the open snapshot commit (nothing waits for it)…
        append(&store, 700, 300).await;
        assert_eq!(store.head(&chain()).await.unwrap().unwrap().size, 1000);
        // …and the snapshot does not see them: head, rows, hashes and
        // anchors all describe the ledger as it was when it opened.
        let head = snapshot.head(&chain()).await.unwrap().unwrap();
        assert_eq!(head.size, 700);
        let mut seqs = Vec::new();
        snapshot
            .scan(&chain(), 0, None, &mut |e, nodes| {
                // A row stores the interior nodes its leaf completes: 32 bytes each.
                assert_eq!(nodes.len() % 32, 0);
                seqs.push(e.seq);
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(
            seqs,
            (0..700).collect::<Vec<u64>>(),
            "rows in order, no row past the head"
        );
        let (root, proof) = snapshot
            .root_and_proof(&chain(), 700, Some(300))
            .await
            .unwrap();
        assert_eq!(root, root_700);
        let (_, root_300) = store.tree_root(&chain(), Some(300)).await.unwrap();
        assert!(merkle::verify_consistency(&proof, 300, root_300, 700, root).is_ok());
        let (size, root, proof) = snapshot.inclusion_proof(&chain(), 650, None).await.unwrap();
        assert_eq!((size, root), (700, root_700));
        let event = snapshot.event(&chain(), 650).await.unwrap();
        let leaf = stele_ledger::parse_hex_hash(&event.leaf_hash).expect("a stored leaf hash");
        assert!(merkle::verify_inclusion(&proof, 700, root, 650, leaf).is_ok());
        assert!(matches!(
            snapshot.event(&chain(), 800).await,
            Err(StoreError::OutOfRange(_))
        ));
        // A visitor's error stops the scan and is the one reported.
        let stopped = snapshot
            .scan(&chain(), 0, None, &mut |e, _| {
                if e.seq == 600 {
                    return Err(StoreError::Corrupt("stop at 600".into()));
                }
                Ok(())
            })
            .await;
        assert!(matches!(stopped, Err(StoreError::Corrupt(m)) if m == "stop at 600"));
        drop(snapshot);
        // A new snapshot sees everything committed.
        let mut snapshot = store.read_snapshot().await.unwrap();
        assert_eq!(snapshot.head(&chain()).await.unwrap().unwrap().size, 1000);
        assert_eq!(
            snapshot.events(&chain(), 990, None).await.unwrap().len(),
            10
        );
        snapshot.end().await.unwrap();
        store.close().await;
    });
}

fn a_read_only_store_refuses_every_write_and_changes_nothing(db: &Db) {
    runtime().block_on(async {
        let writer = Store::open(&db.location, StoreOptions::default())
            .await
            .expect("open");
        append(&writer, 0, 5).await;
        writer
            .insert_anchor(&common::pending_anchor("production", 0, 5, b"{}"))
            .await
            .unwrap();
        writer.close().await;
        let reader = Store::open_read_only(&db.location, StoreOptions::default())
            .await
            .expect("open read-only");
        let c = chain();
        let refused = reader.append(&c, vec![event(9)], keyring().active()).await;
        assert!(matches!(refused, Err(StoreError::ReadOnly)), "{refused:?}");
        let ttl = Duration::from_secs(60);
        match reader.lease_anchor(&c, 0, "r", ttl).await {
            // SQLite: refused before the database; PostgreSQL: by the session.
            Err(StoreError::ReadOnly) => {}
            Err(e) => assert_eq!(e.sqlstate(), Some("25006"), "{e}"),
            Ok(granted) => panic!("a read-only store leased an anchor ({granted})"),
        }
        let mut snapshot = reader.read_snapshot().await.unwrap();
        assert_eq!(snapshot.head(&c).await.unwrap().unwrap().size, 5);
        let anchors = snapshot.anchors(Some(&c), None).await.unwrap();
        assert_eq!(
            (anchors.len(), anchors[0].attempts),
            (1, 0),
            "nothing changed"
        );
        snapshot.end().await.unwrap();
    });
    // A read-only open of a database without a ledger creates nothing.
    let empty = Db::sqlite();
    let opened = runtime().block_on(Store::open_read_only(
        &empty.location,
        StoreOptions::default(),
    ));
    assert!(matches!(opened, Err(StoreError::Open { .. })), "{opened:?}");
}
