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

/// The database name in a fixture's URL.
fn db_name(db: &Db) -> String {
    let (_, path) = pg_url(db).rsplit_once('/').unwrap();
    path.split('?').next().unwrap().to_owned()
}

/// Terminates every session the store holds on `db`, as an administrator
/// (or a server restart) would.
fn terminate_store_sessions(db: &Db) {
    let killed = db.query_text(&format!(
        "SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity \
             WHERE datname = '{}' AND application_name = 'stele'",
        db_name(db)
    ));
    assert_ne!(
        killed.as_deref(),
        Some("0"),
        "the store's sessions were found"
    );
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
    runtime().block_on(async {
        let store = db.open().await;
        store
            .append(&chain, vec![event(0)], keys.active())
            .await
            .unwrap();
        let mut snapshot = store.read_snapshot().await.unwrap();
        terminate_store_sessions(&db);
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

/// A TCP proxy in front of the real server that can be made to hang: new
/// connections are then taken and never answered (a server that stopped
/// answering, a partition behind a load balancer). Connections already
/// forwarded keep working.
struct HangingProxy {
    port: u16,
    hung: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HangingProxy {
    /// Listens on a free loopback port, forwarding to `upstream` (`host:port`).
    async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hung = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hang = hung.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((client, _)) = listener.accept().await {
                if hang.load(Ordering::SeqCst) {
                    held.push(client);
                    continue;
                }
                let (upstream, hang) = (upstream.clone(), hang.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    });
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    if hang.load(Ordering::SeqCst) {
                        // Cut off, the client learns late that its session
                        // ended: until then its pool still hands it out.
                        tokio::time::sleep(SESSION_END_LEARNED_AFTER).await;
                    }
                });
            }
        });
        Self { port, hung }
    }

    fn hang(&self, hung: bool) {
        self.hung.store(hung, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How long a client behind a hung [`HangingProxy`] goes on believing in a
/// session the server has ended.
const SESSION_END_LEARNED_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// The store's server stops answering new connections while its sessions
/// are terminated, and the store learns of the ended sessions late. A group
/// sent on an ended pooled session fails before its commit and is split
/// into single appends; the first of them gets no new connection within
/// the time limit for a new session, and every append left is failed with
/// it, at once, retryable — not append by append, each waiting out the
/// limit again while the queue fills. Nothing was written, and once the
/// server answers again the next append commits.
#[test]
fn a_group_that_gets_no_connection_fails_whole_and_at_once() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    let keys = keyring();
    let chain = ChainId::new("no-connection").unwrap();
    let (scheme_user, rest) = pg_url(&db).split_once('@').unwrap();
    let (upstream, _) = rest.split_once('/').unwrap();
    let name = db_name(&db);
    runtime().block_on(async {
        let proxy = HangingProxy::start(upstream.to_owned()).await;
        // Connect limit 2 s: a new session is given up on after 2 s + 10 s.
        let via_proxy = format!(
            "{scheme_user}@127.0.0.1:{}/{name}?connect_timeout=2",
            proxy.port
        );
        let store = Store::open(&DbLocation::Postgres(via_proxy), StoreOptions::default())
            .await
            .unwrap();
        store
            .append(&chain, vec![event(0)], keys.active())
            .await
            .unwrap();
        // Two more pooled sessions, for the two groups below to be sent on.
        let snapshot = store.read_snapshot().await.unwrap();
        let other = store.read_snapshot().await.unwrap();
        snapshot.end().await.unwrap();
        other.end().await.unwrap();

        proxy.hang(true);
        terminate_store_sessions(&db);
        const APPENDS: usize = 8;
        let started = std::time::Instant::now();
        let appends: Vec<_> = (0..APPENDS)
            .map(|i| {
                let (store, key, chain) = (store.clone(), keys.active().clone(), chain.clone());
                tokio::spawn(async move { store.append(&chain, vec![event(1 + i)], &key).await })
            })
            .collect();
        for append in appends {
            let err = append
                .await
                .unwrap()
                .expect_err("no connection can be had for the append");
            assert!(err.is_retryable(), "{err:?}");
        }
        let waited = started.elapsed();
        // One session limit is 12 s. The first append may be a group of its
        // own and the rest a second one: at most two limits in all (and the
        // late news of the ended sessions), where append by append would be
        // eight.
        assert!(
            waited < std::time::Duration::from_secs(2 * 12 + 6),
            "the appends failed one by one: {waited:?}"
        );

        proxy.hang(false);
        let mut tries = 0;
        let receipts = loop {
            match store.append(&chain, vec![event(100)], keys.active()).await {
                Ok(receipts) => break receipts,
                Err(e) => {
                    tries += 1;
                    assert!(
                        e.is_retryable() && tries <= 3,
                        "after the server came back: {e:?}"
                    );
                }
            }
        };
        assert_eq!(
            receipts[0].seq, 1,
            "nothing of the failed appends was written"
        );
        store.close().await;
    });
}

/// A URL may list a standby after the primary: when the first host refuses
/// connections (nothing listens there), the store opens on the next one and
/// appends there.
#[test]
fn a_refused_first_host_is_passed_over_for_the_next() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    let keys = keyring();
    let chain = ChainId::new("second-host").unwrap();
    let (scheme_user, rest) = pg_url(&db).split_once('@').unwrap();
    let hosts = format!("{scheme_user}@127.0.0.1:1,{rest}");
    runtime().block_on(async {
        let store = Store::open(&DbLocation::Postgres(hosts), StoreOptions::default())
            .await
            .expect("the second host answers");
        let receipts = store
            .append(&chain, vec![event(0), event(1)], keys.active())
            .await
            .unwrap();
        assert_eq!(receipts.len(), 2);
        store.close().await;
    });
    let written = db.query_text("SELECT count(*)::text FROM audit_events");
    assert_eq!(
        written.as_deref(),
        Some("2"),
        "the events are on the second host"
    );
}

/// A loopback port where a TCP connect hangs (as to a host that is down
/// or cut off): a listener whose accept queue is full and never drained,
/// so the kernel drops every further SYN. Returns the port and what must
/// stay alive for it to keep hanging.
fn port_where_connects_hang() -> (u16, tokio::net::TcpListener, Vec<std::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(300)) {
            Ok(stream) => queued.push(stream),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return (addr.port(), listener, queued);
            }
            Err(e) => panic!("filling the accept queue: {e}"),
        }
    }
    panic!("the accept queue never filled");
}

/// The first host of a URL does not answer the TCP connect at all (down,
/// or cut off): after its connect limit (10 s by default) the store goes
/// on to the next host and opens there — the limit on a whole new session
/// leaves room for every host's connect limit.
#[test]
fn a_first_host_that_never_answers_the_connect_is_passed_over_after_its_limit() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    let keys = keyring();
    let chain = ChainId::new("second-host").unwrap();
    let (scheme_user, rest) = pg_url(&db).split_once('@').unwrap();
    runtime().block_on(async {
        let (port, _listener, _queued) = port_where_connects_hang();
        let hosts = format!("{scheme_user}@127.0.0.1:{port},{rest}");
        let started = std::time::Instant::now();
        let store = Store::open(&DbLocation::Postgres(hosts), StoreOptions::default())
            .await
            .expect("the second host answers");
        let waited = started.elapsed();
        assert!(
            waited >= std::time::Duration::from_secs(9),
            "the first host was not waited on: {waited:?}"
        );
        store
            .append(&chain, vec![event(0)], keys.active())
            .await
            .unwrap();
        store.close().await;
    });
    let written = db.query_text("SELECT count(*)::text FROM audit_events");
    assert_eq!(
        written.as_deref(),
        Some("1"),
        "the event is on the second host"
    );
}
