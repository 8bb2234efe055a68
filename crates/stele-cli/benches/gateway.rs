//! The gateway under load: the real `stele serve` over loopback, driven by
//! `wrk` (an external load tool, `apt-get install wrk`), next to the shared
//! store's direct append rate measured in the same run.
//!
//! For each backend: single-event appends at 1, 16 and 64 concurrent
//! connections (events/s, p50, p99), batch appends of 1,000 events, and the
//! same two workloads straight into `stele_store::Store` in-process, with
//! events validated beforehand and no anchorer running (the ceiling the
//! HTTP layer, its parsing and the server's anchoring are measured against).
//!
//! `cargo bench -p stele-cli --bench gateway [-- SECONDS]`. PostgreSQL is
//! measured when `STELE_TEST_PG_URL` is set.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stele_ledger::event::{EventInput, Limits, ValidEvent};
use stele_ledger::{ChainId, HmacKey, KeyId};
use stele_store::testkit::TestDb;
use stele_store::{DbLocation, Store, StoreOptions};

const BATCH: usize = 1000;

fn event_json(i: usize) -> Value {
    json!({
        "type": "record.viewed",
        "actor": format!("user{}@clinic.example", i % 97),
        "payload": {
            "record": format!("patient/{}", 40_000 + i % 9_000),
            "purpose": "treatment",
            "ip": format!("10.20.{}.{}", i % 16, i % 251),
            "note": "routine access during scheduled appointment",
        },
    })
}

fn valid(i: usize) -> ValidEvent {
    serde_json::from_value::<EventInput>(event_json(i))
        .expect("event")
        .validate(&Limits::default())
        .expect("valid")
}

/// A server for one backend, with a token.
struct Server {
    child: Child,
    addr: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stele(dir: &Path, db: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stele"));
    cmd.env_remove("STELE_DB")
        .env_remove("AUDIT_ANCHOR_BUCKET")
        .args(["--data-dir", dir.to_str().expect("utf-8 path"), "--db", db]);
    cmd
}

fn start_server(db: &TestDb) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = match &db.location {
        DbLocation::Sqlite(p) => p.display().to_string(),
        DbLocation::Postgres(url) => url.clone(),
    };
    let ok = stele(dir.path(), &db)
        .args(["init"])
        .output()
        .expect("init");
    assert!(
        ok.status.success(),
        "init: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let created = stele(dir.path(), &db)
        .args([
            "--json", "token", "create", "--name", "bench", "--scope", "append", "--chain", "*",
        ])
        .output()
        .expect("token");
    let token = serde_json::from_slice::<Value>(&created.stdout).expect("token json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let config = dir.path().join("stele.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("\n[server]\nmax_in_flight_appends = 4096\n");
    std::fs::write(&config, text).expect("config");
    let mut child = stele(dir.path(), &db)
        .args(["--json", "serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let addr = serde_json::from_str::<Value>(&line).expect("listening json")["listening"]
        .as_str()
        .expect("address")
        .to_owned();
    Server {
        child,
        addr,
        token,
        _dir: dir,
    }
}

/// One `wrk` run: requests/s, p50 and p99 latency, non-2xx responses.
struct WrkRun {
    requests_per_sec: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

fn wrk(server: &Server, connections: usize, seconds: u64, body: &str, chain: &str) -> WrkRun {
    let script = tempfile::NamedTempFile::new().expect("script");
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.body = {body:?}\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {}\"\n",
        server.token
    );
    std::fs::write(script.path(), lua).expect("write script");
    let out = Command::new("wrk")
        .args(["-t", &connections.clamp(1, 2).to_string()])
        .args(["-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "--latency", "-s"])
        .arg(script.path())
        .arg(format!("{}/v1/chains/{chain}/events", server.addr))
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
    };
    WrkRun {
        requests_per_sec: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}")),
        p50: field("50%").map(|v| duration(&v)).unwrap_or_default(),
        p99: field("99%").map(|v| duration(&v)).unwrap_or_default(),
        errors: field("Non-2xx or 3xx responses:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    }
}

/// `635.00us`, `1.20ms`, `2.00s`.
fn duration(text: &str) -> Duration {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().unwrap_or(0.0);
    let seconds = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => 0.0,
    };
    Duration::from_secs_f64(seconds)
}

/// The shared store in-process: `appenders` tasks of `per_append` events
/// each for `duration`; events/s.
fn direct(db: &TestDb, appenders: usize, per_append: usize, duration: Duration) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = Store::open(&db.location, StoreOptions::default())
            .await
            .expect("open");
        let key = HmacKey::new(KeyId::new("k1").expect("id"), &[7; 32]);
        let chain = ChainId::new("direct").expect("chain");
        // Events are validated before the clock starts (the server's parse
        // is what the HTTP runs add); each append takes a copy.
        let batches: Vec<Vec<ValidEvent>> = (0..appenders)
            .map(|t| (0..per_append).map(|i| valid(t + i)).collect())
            .collect();
        let start = Instant::now();
        let tasks: Vec<_> = batches
            .into_iter()
            .map(|batch| {
                let (store, key, chain) = (store.clone(), key.clone(), chain.clone());
                tokio::spawn(async move {
                    let mut events = 0usize;
                    while start.elapsed() < duration {
                        store
                            .append(&chain, batch.clone(), &key)
                            .await
                            .expect("append");
                        events += per_append;
                    }
                    events
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("task");
        }
        let rate = total as f64 / start.elapsed().as_secs_f64();
        store.close().await;
        rate
    })
}

fn measure(name: &str, make: &dyn Fn() -> TestDb, seconds: u64) {
    let duration = Duration::from_secs(seconds);
    let direct_single = direct(&make(), 64, 1, duration);
    let direct_batch = direct(&make(), 4, BATCH, duration);
    println!(
        "{name:<9} {:<28} {:>12.0} {:>9} {:>9} {:>7}",
        "store direct, 64 x 1 event", direct_single, "-", "-", "1.00"
    );
    let single = event_json(0).to_string();
    for connections in [1, 16, 64] {
        let db = make();
        let server = start_server(&db);
        let run = wrk(&server, connections, seconds, &single, "bench");
        println!(
            "{name:<9} {:<28} {:>12.0} {:>9.2} {:>9.2} {:>7.2}{}",
            format!("HTTP, {connections} connection(s)"),
            run.requests_per_sec,
            run.p50.as_secs_f64() * 1e3,
            run.p99.as_secs_f64() * 1e3,
            run.requests_per_sec / direct_single,
            if run.errors > 0 {
                format!("  ({} non-2xx)", run.errors)
            } else {
                String::new()
            }
        );
    }
    println!(
        "{name:<9} {:<28} {:>12.0} {:>9} {:>9} {:>7}",
        format!("store direct, 4 x {BATCH}"),
        direct_batch,
        "-",
        "-",
        "1.00"
    );
    let batch = Value::Array((0..BATCH).map(event_json).collect()).to_string();
    let db = make();
    let server = start_server(&db);
    let run = wrk(&server, 4, seconds, &batch, "bench");
    let events = run.requests_per_sec * BATCH as f64;
    println!(
        "{name:<9} {:<28} {:>12.0} {:>9.2} {:>9.2} {:>7.2}{}",
        format!("HTTP, 4 x {BATCH}-event batches"),
        events,
        run.p50.as_secs_f64() * 1e3,
        run.p99.as_secs_f64() * 1e3,
        events / direct_batch,
        if run.errors > 0 {
            format!("  ({} non-2xx)", run.errors)
        } else {
            String::new()
        }
    );
}

fn main() {
    let seconds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("gateway bench skipped: `wrk` is not installed (apt-get install wrk)");
        return;
    }
    println!(
        "gateway load: wrk over loopback against `stele serve`, {seconds} s per run, durable commits; ratio = events/s over the shared store's direct rate in the same run"
    );
    println!(
        "{:<9} {:<28} {:>12} {:>9} {:>9} {:>7}",
        "backend", "workload", "events/s", "p50 ms", "p99 ms", "ratio"
    );
    measure("sqlite", &TestDb::sqlite, seconds);
    if std::env::var_os("STELE_TEST_PG_URL").is_some() {
        measure("postgres", &TestDb::postgres, seconds);
    } else {
        println!("postgres  (skipped: STELE_TEST_PG_URL not set)");
    }
}
