//! Opening a ledger for reading only, as verification does: on both
//! backends it reads and verifies, refuses every write (the database itself
//! refuses), and never creates or migrates anything.

#[macro_use]
mod common;

use common::{Db, event, keyring, open_reader, runtime, verify};
use stele_anchor::AnchorRecord;
use stele_ledger::ChainId;
use stele_store::{DbLocation, StoreError};

on_every_backend_async!(
    reads_and_verifies_but_refuses_writes,
    a_database_without_a_ledger_is_refused_and_left_alone,
);

async fn reads_and_verifies_but_refuses_writes(db: &Db) {
    let keys = keyring();
    let chain = ChainId::new("audited").unwrap();
    let writer = db.open().await;
    writer
        .append(&chain, (0..25).map(event).collect(), keys.active())
        .await
        .unwrap();
    writer.close().await;

    let reader = open_reader(&db.location).await.unwrap();
    assert_eq!(reader.chains().await.unwrap().len(), 1);
    let report = verify(&reader, &chain, Some(&keys)).await.unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.events_checked, 25);

    // An append is refused before it is queued.
    let err = reader
        .append(&chain, vec![event(25)], keys.active())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("read-only"),
        "a write through a read-only store is refused: {text}"
    );
    // A write the store sends on (PostgreSQL's outbox writes) is refused by
    // the database itself: the session is read-only from its start.
    match reader.insert_anchor(&anchor()).await {
        Err(StoreError::ReadOnly) => assert_eq!(reader.backend(), "sqlite"),
        Err(e) => {
            assert_eq!(e.sqlstate(), Some("25006"), "{e:?}");
            assert!(e.to_string().contains("read-only transaction"), "{e}");
        }
        Ok(()) => panic!("a read-only store stored an anchor"),
    }
    let writer = db.open().await;
    assert_eq!(
        writer.head(&chain).await.unwrap().unwrap().size,
        25,
        "nothing was written"
    );
    assert!(writer.anchors(None, None).await.unwrap().is_empty());
}

fn anchor() -> AnchorRecord {
    common::pending_anchor("audited", 0, 25, b"{}")
}

async fn a_database_without_a_ledger_is_refused_and_left_alone(db: &Db) {
    match &db.location {
        DbLocation::Sqlite(path) => {
            // No file: refused, and none is created.
            let err = open_reader(&db.location).await.err().unwrap();
            assert!(matches!(err, StoreError::Open { .. }), "{err}");
            assert!(err.to_string().contains("no ledger file"), "{err}");
            assert!(!path.exists());
            // A SQLite file that is not a stele ledger.
            rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch("CREATE TABLE notes (t TEXT)")
                .unwrap();
        }
        DbLocation::Postgres(_) => {}
    }
    let err = open_reader(&db.location).await.err().unwrap();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("holds no stele ledger"), "{err}");
    // Nothing was created.
    let schema = match db.location {
        DbLocation::Sqlite(_) => {
            "SELECT count(*) || '' FROM sqlite_master WHERE name = 'stele_schema'"
        }
        DbLocation::Postgres(_) => "SELECT (to_regclass('stele_schema') IS NOT NULL)::int::text",
    };
    assert_eq!(db.query_text(schema).as_deref(), Some("0"));
}

/// Opens a SQLite copy read-only and verifies `chain` with the test
/// keyring: it must verify clean; returns how many events it checked.
fn verify_copy(copy: std::path::PathBuf, chain: &ChainId) -> u64 {
    runtime().block_on(async {
        let reader = open_reader(&DbLocation::Sqlite(copy)).await.unwrap();
        let report = verify(&reader, chain, Some(&keyring())).await.unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        report.events_checked
    })
}

/// Appends `n` events to `chain` and returns with the store closed.
fn write(db: &Db, chain: &ChainId, n: usize) {
    runtime().block_on(async {
        let writer = db.open().await;
        writer
            .append(chain, (0..n).map(event).collect(), keyring().active())
            .await
            .unwrap();
        writer.close().await;
    });
}

/// A copy SQLite cannot keep its shared-memory index beside (a read-only
/// directory; here a directory in the way, which stops root too) still
/// reads, including the changes its write-ahead log holds.
#[test]
fn a_copy_without_room_for_sqlite_shared_memory_reads_complete() {
    let keys = keyring();
    let chain = ChainId::new("copied").unwrap();
    let db = Db::sqlite();
    let DbLocation::Sqlite(path) = &db.location else {
        unreachable!()
    };
    // Copy the file while a writer holds its latest events in the log (it
    // checkpoints them into the file only when it closes).
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let wal = format!("{}-wal", path.display());
    runtime().block_on(async {
        let writer = db.open().await;
        writer
            .append(&chain, (0..9).map(event).collect(), keys.active())
            .await
            .unwrap();
        std::fs::copy(path, &copy).unwrap();
        assert!(
            std::fs::metadata(&wal).unwrap().len() > 0,
            "the log holds frames"
        );
        std::fs::copy(&wal, dir.path().join("copy.db-wal")).unwrap();
        writer.close().await;
    });
    std::fs::create_dir(dir.path().join("copy.db-shm")).unwrap();

    assert_eq!(verify_copy(copy, &chain), 9);
}

/// A copy alone where SQLite cannot even create its write-ahead log (a
/// read-only directory; here a directory in the way, which stops root too)
/// is read as immutable: without a log beside it, the file is all there is.
/// The path needs URI escaping on the way.
#[test]
fn a_lone_copy_where_no_log_can_be_made_is_read_as_immutable() {
    let chain = ChainId::new("copied").unwrap();
    let db = Db::sqlite();
    let DbLocation::Sqlite(path) = &db.location else {
        unreachable!()
    };
    write(&db, &chain, 7);
    // Everything into the file, as the last connection to close a ledger
    // does (the store's read-only connections cannot, if they close last).
    let (busy, log, checkpointed): (i64, i64, i64) = rusqlite::Connection::open(path)
        .unwrap()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(busy, 0, "checkpoint blocked");
    assert_eq!(log, checkpointed, "every frame of the log is in the file");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("evidence #3 100%?.db");
    std::fs::copy(path, &copy).unwrap();
    std::fs::create_dir(dir.path().join("evidence #3 100%?.db-wal")).unwrap();

    assert_eq!(verify_copy(copy, &chain), 7);
}

/// A lone copy beside a rollback journal (a write interrupted mid-way) is
/// not read as immutable: the journal would have undone part of the file.
#[test]
fn a_lone_copy_beside_a_rollback_journal_is_refused() {
    let db = Db::sqlite();
    let DbLocation::Sqlite(path) = &db.location else {
        unreachable!()
    };
    write(&db, &ChainId::new("copied").unwrap(), 1);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    std::fs::copy(path, &copy).unwrap();
    std::fs::create_dir(dir.path().join("copy.db-wal")).unwrap();
    std::fs::write(
        dir.path().join("copy.db-journal"),
        b"pages of an interrupted write",
    )
    .unwrap();
    let err = runtime()
        .block_on(open_reader(&DbLocation::Sqlite(copy)))
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("rollback journal"), "{err}");
}
