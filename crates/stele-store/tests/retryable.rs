//! Errors say whether a retry can help, and keep PostgreSQL's SQLSTATE:
//! real failures from a real server (and a real SQLite lock), not
//! hand-built errors.

mod common;

use common::{Db, event, keyring, runtime};
use stele_ledger::ChainId;
use stele_store::{DbLocation, Store, StoreError, StoreOptions};

/// The error of opening the shared store at `location`, as a writer does;
/// `why` says why it must fail.
fn failed_open(location: &DbLocation, why: &str) -> StoreError {
    runtime()
        .block_on(Store::open(location, StoreOptions::default()))
        .expect_err(why)
}

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
    let failure = runtime().block_on(async {
        let connect = || async {
            let (client, connection) = tokio_postgres::connect(pg_url(&db), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
        };
        let (a, b) = (connect().await, connect().await);
        a.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT sum(v) FROM t;")
            .await
            .unwrap();
        b.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT sum(v) FROM t;")
            .await
            .unwrap();
        a.batch_execute("UPDATE t SET v = 1 WHERE k = 1")
            .await
            .unwrap();
        b.batch_execute("UPDATE t SET v = 1 WHERE k = 2")
            .await
            .unwrap();
        a.batch_execute("COMMIT").await.unwrap();
        b.batch_execute("COMMIT")
            .await
            .expect_err("write skew between SERIALIZABLE transactions must fail one of them")
    });
    let err = StoreError::from(failure);
    assert_eq!(err.sqlstate(), Some("40001"), "{err}");
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("40001"), "{err}");
}

/// The session of an open read snapshot is terminated by an administrator
/// (57P01, or the closed connection after it): the snapshot's next read
/// fails and says a retry may succeed — and one does, on a new connection.
#[test]
fn a_terminated_store_session_is_retryable() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    let keys = keyring();
    let chain = ChainId::new("terminated").unwrap();
    let name = pg_url(&db)
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    runtime().block_on(async {
        let store = db.open().await;
        store
            .append(&chain, vec![event(0)], keys.active())
            .await
            .unwrap();
        let mut snapshot = store.read_snapshot().await.unwrap();
        let killed = db.query_text(&format!(
            "SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity \
                 WHERE datname = '{name}' AND application_name = 'stele'"
        ));
        assert_ne!(
            killed.as_deref(),
            Some("0"),
            "the store's sessions were found"
        );
        let err = snapshot
            .head(&chain)
            .await
            .expect_err("a terminated session cannot answer");
        assert!(matches!(err, StoreError::Postgres { .. }), "{err:?}");
        assert!(err.is_retryable(), "{err:?}");
        assert!(
            matches!(err.sqlstate(), None | Some("57P01")),
            "SQLSTATE of a terminated session: {err:?}"
        );
        drop(snapshot);
        // Every pooled session was terminated: each may fail one read
        // before the pool has replaced it, none more.
        let mut failures = Vec::new();
        let head = loop {
            match store.head(&chain).await {
                Ok(head) => break head,
                Err(e) => {
                    assert!(e.is_retryable(), "{e:?}");
                    failures.push(e);
                    assert!(
                        failures.len() <= StoreOptions::default().readers + 1,
                        "a retry keeps failing: {failures:?}"
                    );
                }
            }
        };
        assert_eq!(head.map(|h| h.size), Some(1));
    });
}

/// A database that does not exist is configuration: not retryable, and the
/// SQLSTATE (3D000, invalid_catalog_name) is kept through the open.
#[test]
fn an_unknown_database_is_not_retryable_and_keeps_its_sqlstate() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    let url = pg_url(&db).replacen("stele_test_", "stele_missing_", 1);
    let err = failed_open(&DbLocation::Postgres(url), "there is no such database");
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert_eq!(err.sqlstate(), Some("3D000"), "{err:?}");
    assert!(!err.is_retryable(), "{err:?}");
}

/// Nothing listens on the port: the server may come back, so retryable,
/// and there is no SQLSTATE because no server answered.
#[test]
fn a_refused_connection_is_retryable() {
    let err = failed_open(
        &DbLocation::Postgres("postgres://postgres@127.0.0.1:1/stele?connect_timeout=5".into()),
        "nothing listens on port 1",
    );
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert_eq!(err.sqlstate(), None, "{err:?}");
    assert!(err.is_retryable(), "{err:?}");
}

/// A peer that takes the connection and then never answers (a hung
/// server, a proxy in front of a dead one): the TCP connect succeeds at
/// once, so it is the store's limit on setting up a whole session that
/// ends the open, retryable, instead of waiting for ever.
#[test]
fn a_server_that_never_answers_is_given_up_on() {
    // Connections wait in the listener's backlog: taken by the kernel,
    // never read from or written to.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let started = std::time::Instant::now();
    let err = failed_open(
        &DbLocation::Postgres(format!("postgres://postgres@127.0.0.1:{port}/stele")),
        "the peer never answers",
    );
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(30),
        "gave up after {waited:?}"
    );
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("connecting"), "{err}");
    drop(listener);
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
    let err = failed_open(&DbLocation::Sqlite(junk), "not a database");
    assert!(!err.is_retryable(), "{err:?}");
}

/// Errors that need a change before a retry can help.
#[test]
fn refusals_and_corruption_are_not_retryable() {
    let db = Db::sqlite();
    let err = runtime()
        .block_on(async {
            let store = db.open().await;
            store.tree_root(&ChainId::new("nope").unwrap(), None).await
        })
        .expect_err("unknown chain");
    assert!(matches!(err, StoreError::UnknownChain(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert!(
        !err.to_string().contains("stele "),
        "no CLI wording in the library: {err}"
    );
}
