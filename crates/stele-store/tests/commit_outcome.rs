//! A PostgreSQL connection lost during COMMIT itself, live: a TCP proxy
//! between the shared store and the real server forwards the committer's
//! `COMMIT`, waits for the server's answer (so the commit happened) and cuts
//! both directions instead of relaying it. The store must call that outcome
//! unknown — not a success, not a retryable error —, go on with a new
//! connection, and a retry with the same idempotency keys must find the
//! events the server did commit, once, and append nothing.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use common::{Db, keyed, keyring, runtime, verify};
use stele_ledger::ChainId;
use stele_ledger::append::Receipt;
use stele_ledger::event::ValidEvent;
use stele_store::{DbLocation, Store, StoreError, StoreOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// Startup-phase requests that would switch the connection to encryption,
/// which the proxy could not read (it is given `sslmode=disable`).
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// What the proxy is told to do, and what it saw.
struct CutterState {
    /// How many more `COMMIT`s go through before one is cut; `None`: no cut.
    cut_after: Mutex<Option<u64>>,
    /// While true, nothing from the store is forwarded.
    hold: watch::Sender<bool>,
    /// A message from the store waits on the hold.
    holding: AtomicBool,
    /// Connections accepted from the store.
    connections: AtomicU64,
    /// The server's answers to the COMMITs that were cut, as swallowed.
    swallowed: Mutex<Vec<Vec<u8>>>,
}

impl CutterState {
    /// Whether this `COMMIT` is the one to cut (counting it either way).
    fn cut_this_commit(&self) -> bool {
        let mut cut_after = self.cut_after.lock().expect("cut_after");
        match *cut_after {
            Some(0) => {
                *cut_after = None;
                true
            }
            Some(n) => {
                *cut_after = Some(n - 1);
                false
            }
            None => false,
        }
    }

    /// Waits while the hold is on.
    async fn pass_hold(&self) {
        let mut hold = self.hold.subscribe();
        while *hold.borrow_and_update() {
            self.holding.store(true, Ordering::SeqCst);
            if hold.changed().await.is_err() {
                return;
            }
        }
    }
}

/// A loopback TCP proxy to PostgreSQL that can cut a connection right
/// after forwarding a simple-query `COMMIT`.
struct CommitCutter {
    addr: SocketAddr,
    state: Arc<CutterState>,
    accept: tokio::task::JoinHandle<()>,
}

impl CommitCutter {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(CutterState {
            cut_after: Mutex::new(None),
            hold: watch::Sender::new(false),
            holding: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            swallowed: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn({
            let state = Arc::clone(&state);
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    state.connections.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(relay(client, upstream, Arc::clone(&state)));
                }
            }
        });
        Self {
            addr,
            state,
            accept,
        }
    }

    /// Lets `commits` COMMITs through, then cuts at the next one.
    fn cut_after(&self, commits: u64) {
        *self.state.cut_after.lock().expect("cut_after") = Some(commits);
    }

    /// Stops forwarding what the store sends, until [`release`](Self::release).
    fn hold(&self) {
        self.state.hold.send_replace(true);
    }

    fn release(&self) {
        self.state.hold.send_replace(false);
    }

    /// Waits until something the store sent waits on the hold.
    async fn wait_until_holding(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while !self.state.holding.load(Ordering::SeqCst) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the store sent nothing within 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    fn swallowed(&self) -> Vec<Vec<u8>> {
        self.state.swallowed.lock().expect("swallowed").clone()
    }

    /// `url` with its server replaced by the proxy, in plain text.
    fn url_for(&self, url: &str) -> String {
        let mut proxied = url::Url::parse(url).expect("the test database URL parses");
        proxied
            .set_host(Some(&self.addr.ip().to_string()))
            .expect("set host");
        proxied.set_port(Some(self.addr.port())).expect("set port");
        let params: Vec<(String, String)> = proxied
            .query_pairs()
            .filter(|(k, _)| k != "sslmode")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        proxied
            .query_pairs_mut()
            .clear()
            .extend_pairs(params)
            .append_pair("sslmode", "disable");
        proxied.to_string()
    }
}

impl Drop for CommitCutter {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Relays one connection; see [`frontend`] and [`backend`].
async fn relay(client: TcpStream, upstream: SocketAddr, state: Arc<CutterState>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let cut = AtomicBool::new(false);
    let (done_tx, done_rx) = oneshot::channel();
    let up = async {
        if let Ok(true) = frontend(&mut client_rx, &mut server_tx, &state, &cut).await {
            // Hold both halves until the answer is swallowed.
            let _ = done_rx.await;
        }
        let _ = server_tx.shutdown().await;
    };
    let down = async {
        let _ = backend(&mut server_rx, &mut client_tx, &state, &cut).await;
        let _ = client_tx.shutdown().await;
        let _ = done_tx.send(());
    };
    tokio::join!(up, down);
    // Dropping the halves closes both sockets.
}

/// Client to server: forwards every message; returns `true` after it
/// forwarded the `COMMIT` to cut at, `false` when the client closed.
async fn frontend(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    state: &CutterState,
    cut: &AtomicBool,
) -> std::io::Result<bool> {
    // The startup message has no type byte.
    let Some(startup) = read_message(from, false).await? else {
        return Ok(false);
    };
    let code = startup
        .get(4..8)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    if matches!(code, Some(SSL_REQUEST | GSSENC_REQUEST)) {
        return Err(std::io::Error::other(
            "the store asked for an encrypted connection: connect through the proxy with sslmode=disable",
        ));
    }
    state.pass_hold().await;
    to.write_all(&startup).await?;
    while let Some(message) = read_message(from, true).await? {
        state.pass_hold().await;
        // A simple query: 'Q', length, SQL text, NUL.
        let is_commit = message[0] == b'Q'
            && message[5..]
                .strip_suffix(b"\0")
                .is_some_and(|sql| sql.trim_ascii().eq_ignore_ascii_case(b"COMMIT"));
        let cut_here = is_commit && state.cut_this_commit();
        if cut_here {
            // Set before the server can answer, so its answer is not relayed.
            cut.store(true, Ordering::SeqCst);
        }
        to.write_all(&message).await?;
        if cut_here {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Server to client: relays message by message until, after a cut, the
/// COMMIT's answer arrives (CommandComplete "COMMIT", or an error); keeps
/// that answer and relays none of it. Answers to what the store sent
/// before the COMMIT without waiting (tokio-postgres closes dropped
/// statements that way) are still relayed.
async fn backend(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    state: &CutterState,
    cut: &AtomicBool,
) -> std::io::Result<()> {
    let mut from = tokio::io::BufReader::new(from);
    while let Some(message) = read_message(&mut from, true).await? {
        let answers_commit = cut.load(Ordering::SeqCst)
            && (message[0] == b'E' || (message[0] == b'C' && message.ends_with(b"COMMIT\0")));
        if answers_commit {
            state.swallowed.lock().expect("swallowed").push(message);
            return Ok(());
        }
        to.write_all(&message).await?;
    }
    Ok(())
}

/// Reads one protocol message (type byte if `typed`, then a length that
/// counts itself), whole; `None` at a clean end of stream.
async fn read_message(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    typed: bool,
) -> std::io::Result<Option<Vec<u8>>> {
    let head_len = if typed { 5 } else { 4 };
    let mut message = vec![0u8; head_len];
    match from.read_exact(&mut message).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = &message[head_len - 4..];
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if !(4..=64 << 20).contains(&len) {
        return Err(std::io::Error::other(format!("a message length of {len}")));
    }
    message.resize(head_len + len - 4, 0);
    from.read_exact(&mut message[head_len..]).await?;
    Ok(Some(message))
}

/// The test server's address, from its URL.
fn server_of(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).expect("the test database URL parses");
    let host = url
        .host_str()
        .expect("the test PostgreSQL is reached over TCP");
    let port = url.port().unwrap_or(5432);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .expect("resolve the test PostgreSQL")
        .next()
        .expect("an address for the test PostgreSQL")
}

/// Each appender's batch: two events under keys of its own.
fn batch(appender: usize) -> Vec<ValidEvent> {
    (0..2)
        .map(|i| keyed(appender * 2 + i, &format!("a{appender}-{i}")))
        .collect()
}

/// Starts an append on a task of its own and returns once it is queued
/// for the committer: `Store::append` queues on its first poll (it then
/// waits for the commit).
async fn spawn_queued(
    store: &Store,
    chain: &ChainId,
    events: Vec<ValidEvent>,
) -> tokio::task::JoinHandle<Result<Vec<Receipt>, StoreError>> {
    let (store, chain, key) = (store.clone(), chain.clone(), keyring().active().clone());
    let (queued_tx, queued_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut append = std::pin::pin!(store.append(&chain, events, &key));
        let first = std::future::poll_fn(|cx| Poll::Ready(append.as_mut().poll(cx))).await;
        let _ = queued_tx.send(());
        match first {
            Poll::Ready(result) => result,
            Poll::Pending => append.await,
        }
    });
    queued_rx.await.expect("the append task ran");
    task
}

/// The transaction (`xmin`) that wrote each idempotency key's row, and how
/// many rows each key has, read directly from the server.
fn rows_by_key(db: &Db) -> HashMap<String, (String, u64)> {
    db.pg_rows(
        "SELECT idempotency_key, min(xmin::text), count(*) FROM audit_events GROUP BY idempotency_key",
    )
    .iter()
        .map(|r| {
            let count: i64 = r.get(2);
            (
                r.get::<_, String>(0),
                (r.get(1), u64::try_from(count).expect("a count")),
            )
        })
        .collect()
}

const APPENDERS: usize = 8;

#[test]
fn a_connection_lost_during_commit_is_an_unknown_outcome_and_a_keyed_retry_finds_the_commit() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    let DbLocation::Postgres(direct_url) = &db.location else {
        unreachable!("Db::postgres")
    };
    let rt = runtime();
    let cutter = rt.block_on(CommitCutter::start(server_of(direct_url)));
    let through_proxy = DbLocation::Postgres(cutter.url_for(direct_url));
    let store = rt
        .block_on(Store::open(&through_proxy, StoreOptions::default()))
        .expect("open through the proxy");
    let key = keyring().active().clone();
    let chain = ChainId::new("orders").expect("chain id");
    rt.block_on(store.append(&chain, vec![keyed(100, "seed")], &key))
        .expect("an append before the cut");

    // The committer is held inside one append's transaction while the
    // others queue; they then commit as one group, whose COMMIT is cut.
    cutter.hold();
    cutter.cut_after(1);
    let connections_at_cut = cutter.connections();
    let (before, results) = rt.block_on(async {
        let before = spawn_queued(&store, &chain, vec![keyed(101, "before")]).await;
        cutter.wait_until_holding().await;
        let mut group = Vec::new();
        for appender in 0..APPENDERS {
            group.push(spawn_queued(&store, &chain, batch(appender)).await);
        }
        cutter.release();
        let before = before.await.expect("append task");
        let mut results = Vec::new();
        for task in group {
            results.push(task.await.expect("append task"));
        }
        (before, results)
    });
    assert!(
        before.as_ref().is_ok_and(|r| !r[0].duplicate),
        "the append before the cut commits: {before:?}"
    );

    // The server committed the COMMIT that was cut: its answer was
    // CommandComplete "COMMIT", which the store never saw.
    let swallowed = cutter.swallowed();
    assert_eq!(swallowed.len(), 1, "one COMMIT was cut");
    assert!(
        swallowed[0].starts_with(b"C") && swallowed[0].ends_with(b"COMMIT\0"),
        "the server's answer to the cut COMMIT: {:?}",
        String::from_utf8_lossy(&swallowed[0])
    );
    // Every appender of that group is told the outcome is unknown: not a
    // success, not an error that invites a blind retry.
    for (appender, result) in results.iter().enumerate() {
        match result {
            Err(e @ StoreError::CommitOutcomeUnknown { .. }) => {
                assert!(!e.is_retryable(), "{e}");
            }
            other => panic!("appender {appender} in the cut commit: {other:?}"),
        }
    }

    // The store goes on, on a new connection through the proxy.
    assert!(store.is_accepting());
    let after = rt
        .block_on(store.append(&chain, vec![keyed(200, "after")], &key))
        .expect("an append after the cut");
    assert!(!after[0].duplicate);
    assert!(
        cutter.connections() > connections_at_cut,
        "the store connected again after the cut"
    );

    // Yet the database holds the group's events, once each, all written by
    // the one transaction whose COMMIT was cut, and nothing else by it.
    let rows = rows_by_key(&db);
    let cut_xmin = &rows["a0-0"].0;
    for appender in 0..APPENDERS {
        for i in 0..2 {
            let key_name = format!("a{appender}-{i}");
            let (xmin, count) = &rows[&key_name];
            assert_eq!(*count, 1, "{key_name} is stored once");
            assert_eq!(xmin, cut_xmin, "{key_name} was written by the cut commit");
        }
    }
    for other in ["seed", "before", "after"] {
        assert_ne!(&rows[other].0, cut_xmin, "{other}");
    }

    // So the caller was right not to retry blindly: a retry with the same
    // keys returns the original receipts and appends nothing.
    let size = |store: &Store| {
        rt.block_on(store.head(&chain))
            .expect("head")
            .expect("chain")
            .size
    };
    let expected_size = 3 + 2 * APPENDERS as u64;
    assert_eq!(size(&store), expected_size);
    // (All at once, as the clients would: one commit, not one each.)
    let retries = rt.block_on(async {
        let mut tasks = Vec::new();
        for appender in 0..APPENDERS {
            tasks.push(spawn_queued(&store, &chain, batch(appender)).await);
        }
        let mut retries = Vec::new();
        for task in tasks {
            retries.push(task.await.expect("retry task"));
        }
        retries
    });
    for (appender, retry) in retries.into_iter().enumerate() {
        let receipts = retry.expect("a retry with the same idempotency keys");
        for (receipt, i) in receipts.iter().zip(0..) {
            let stored = rt
                .block_on(store.event(&chain, receipt.seq))
                .expect("the retried event");
            assert_eq!(*receipt, Receipt::for_event(&stored, true));
            assert_eq!(
                stored.idempotency_key.as_deref(),
                Some(format!("a{appender}-{i}").as_str())
            );
        }
    }
    assert_eq!(size(&store), expected_size, "the retries appended nothing");
    rt.block_on(store.close());

    let report = rt
        .block_on(async {
            let reader = db.open().await;
            verify(&reader, &chain, Some(&keyring())).await
        })
        .expect("verify");
    assert_eq!(report.events_checked, expected_size);
    assert!(report.is_clean(), "{report:?}");
}
