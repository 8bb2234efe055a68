//! Opening a ledger for reading only, as verification does: on both
//! backends it reads and verifies, refuses every write (the database itself
//! refuses), and never creates or migrates anything.

#[macro_use]
mod common;

use common::{Db, event, keyring};
use stele_ledger::ChainId;
use stele_store::{DbLocation, StoreError, open_read_only, verify_chain};

on_every_backend!(
    reads_and_verifies_but_refuses_writes,
    a_database_without_a_ledger_is_refused_and_left_alone,
);

fn reads_and_verifies_but_refuses_writes(db: &Db) {
    let keys = keyring();
    let chain = ChainId::new("audited").unwrap();
    let mut writer = db.open();
    writer
        .append(&chain, (0..25).map(event).collect(), keys.active())
        .unwrap();
    drop(writer);

    let mut reader = open_read_only(&db.location).unwrap();
    assert_eq!(reader.chains().unwrap().len(), 1);
    let report = verify_chain(reader.as_mut(), &chain, Some(&keys), &mut |_| {}).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.events_checked, 25);

    let err = reader
        .append(&chain, vec![event(25)], keys.active())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("readonly") || text.contains("read-only"),
        "a write through a read-only store is refused by the database: {text}"
    );
    drop(reader);
    let mut writer = db.open();
    assert_eq!(
        writer.head(&chain).unwrap().unwrap().size,
        25,
        "nothing was written"
    );
}

fn a_database_without_a_ledger_is_refused_and_left_alone(db: &Db) {
    match &db.location {
        DbLocation::Sqlite(path) => {
            // No file: refused, and none is created.
            let err = open_read_only(&db.location).err().unwrap();
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
    let err = open_read_only(&db.location).err().unwrap();
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
    let mut reader = open_read_only(&DbLocation::Sqlite(copy)).unwrap();
    let report = verify_chain(reader.as_mut(), chain, Some(&keyring()), &mut |_| {}).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    report.events_checked
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
    let mut writer = db.open();
    writer
        .append(&chain, (0..9).map(event).collect(), keys.active())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    std::fs::copy(path, &copy).unwrap();
    let wal = format!("{}-wal", path.display());
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "the log holds frames"
    );
    std::fs::copy(&wal, dir.path().join("copy.db-wal")).unwrap();
    drop(writer);
    std::fs::create_dir(dir.path().join("copy.db-shm")).unwrap();

    assert_eq!(verify_copy(copy, &chain), 9);
}

/// A copy alone where SQLite cannot even create its write-ahead log (a
/// read-only directory; here a directory in the way, which stops root too)
/// is read as immutable: without a log beside it, the file is all there is.
/// The path needs URI escaping on the way.
#[test]
fn a_lone_copy_where_no_log_can_be_made_is_read_as_immutable() {
    let keys = keyring();
    let chain = ChainId::new("copied").unwrap();
    let db = Db::sqlite();
    let DbLocation::Sqlite(path) = &db.location else {
        unreachable!()
    };
    let mut writer = db.open();
    writer
        .append(&chain, (0..7).map(event).collect(), keys.active())
        .unwrap();
    drop(writer); // the last connection checkpoints the log into the file
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
    drop(db.open());
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    std::fs::copy(path, &copy).unwrap();
    std::fs::create_dir(dir.path().join("copy.db-wal")).unwrap();
    std::fs::write(
        dir.path().join("copy.db-journal"),
        b"pages of an interrupted write",
    )
    .unwrap();
    let err = open_read_only(&DbLocation::Sqlite(copy)).err().unwrap();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("rollback journal"), "{err}");
}
