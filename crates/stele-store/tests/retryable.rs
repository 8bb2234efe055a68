//! Errors say whether a retry can help, and keep PostgreSQL's SQLSTATE:
//! real failures from a real server (and a real SQLite lock), not
//! hand-built errors.

mod common;

use common::{Db, event, keyring};
use stele_ledger::ChainId;
use stele_store::{DbLocation, StoreError};

fn pg_url(db: &Db) -> &str {
    let DbLocation::Postgres(url) = &db.location else {
        unreachable!("a PostgreSQL fixture")
    };
    url
}

/// Two SERIALIZABLE transactions that each read what the other writes:
/// the second to commit fails with a real serialization failure (40001).
#[test]
fn a_serialization_failure_is_retryable_and_keeps_its_sqlstate() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    db.exec("CREATE TABLE t (k int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0), (2, 0);");
    let mut a = postgres::Client::connect(pg_url(&db), postgres::NoTls).unwrap();
    let mut b = postgres::Client::connect(pg_url(&db), postgres::NoTls).unwrap();
    a.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT sum(v) FROM t;")
        .unwrap();
    b.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT sum(v) FROM t;")
        .unwrap();
    a.batch_execute("UPDATE t SET v = 1 WHERE k = 1").unwrap();
    b.batch_execute("UPDATE t SET v = 1 WHERE k = 2").unwrap();
    a.batch_execute("COMMIT").unwrap();
    let failure = b
        .batch_execute("COMMIT")
        .expect_err("write skew between SERIALIZABLE transactions must fail one of them");
    let err = StoreError::from(failure);
    assert_eq!(err.sqlstate(), Some("40001"), "{err}");
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("40001"), "{err}");
}

/// The store's own session is terminated by an administrator (57P01, or
/// the closed connection after it): the store's next call fails, and says
/// a retry may succeed.
#[test]
fn a_terminated_store_session_is_retryable() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    let keys = keyring();
    let chain = ChainId::new("terminated").unwrap();
    let mut store = db.open();
    store.append(&chain, vec![event(0)], keys.active()).unwrap();
    let name = pg_url(&db)
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let killed = db.query_text(&format!(
        "SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity \
             WHERE datname = '{name}' AND application_name = 'stele'"
    ));
    assert_ne!(
        killed.as_deref(),
        Some("0"),
        "the store's session was found"
    );
    let err = store
        .head(&chain)
        .expect_err("a terminated session cannot answer");
    assert!(matches!(err, StoreError::Postgres { .. }), "{err:?}");
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        matches!(err.sqlstate(), None | Some("57P01")),
        "SQLSTATE of a terminated session: {err:?}"
    );
}

/// A database that does not exist is configuration: not retryable, and the
/// SQLSTATE (3D000, invalid_catalog_name) is kept through the open.
#[test]
fn an_unknown_database_is_not_retryable_and_keeps_its_sqlstate() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    let url = pg_url(&db).replacen("stele_test_", "stele_missing_", 1);
    let err = stele_store::open(&DbLocation::Postgres(url))
        .err()
        .expect("there is no such database");
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert_eq!(err.sqlstate(), Some("3D000"), "{err:?}");
    assert!(!err.is_retryable(), "{err:?}");
}

/// Nothing listens on the port: the server may come back, so retryable,
/// and there is no SQLSTATE because no server answered.
#[test]
fn a_refused_connection_is_retryable() {
    let err = stele_store::open(&DbLocation::Postgres(
        "postgres://postgres@127.0.0.1:1/stele?connect_timeout=5".into(),
    ))
    .err()
    .expect("nothing listens on port 1");
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert_eq!(err.sqlstate(), None, "{err:?}");
    assert!(err.is_retryable(), "{err:?}");
}

/// A SQLite database locked by another connection (a real SQLITE_BUSY) is
/// retryable; a file that is not a database is not.
#[test]
fn sqlite_busy_is_retryable_and_a_bad_file_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder
        .execute_batch("CREATE TABLE t (v int); BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);")
        .unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.busy_timeout(std::time::Duration::ZERO).unwrap();
    let busy = other
        .execute("INSERT INTO t VALUES (2)", [])
        .expect_err("the file is locked by the holder");
    let err = StoreError::from(busy);
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.sqlstate(), None);

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x5a_u8; 8192]).unwrap();
    let err = stele_store::open(&DbLocation::Sqlite(junk))
        .err()
        .expect("not a database");
    assert!(!err.is_retryable(), "{err:?}");
}

/// Errors that need a change before a retry can help.
#[test]
fn refusals_and_corruption_are_not_retryable() {
    let db = Db::sqlite();
    let mut store = db.open();
    let err = stele_store::tree_root(store.as_mut(), &ChainId::new("nope").unwrap(), None)
        .expect_err("unknown chain");
    assert!(matches!(err, StoreError::UnknownChain(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert!(
        !err.to_string().contains("stele "),
        "no CLI wording in the library: {err}"
    );
}
