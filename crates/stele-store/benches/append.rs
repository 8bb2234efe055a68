//! Batch-append throughput, next to a baseline measured in the same run.
//!
//! For each backend: stele appends 1,000-event batches of ~256-byte payloads
//! (canonical bytes, leaf hash, HMAC chain, Merkle stored hashes, durable
//! commit), and the baseline inserts the same rows into a plain table with
//! the same columns — same durability settings, same batch size, no hashing,
//! no Merkle rows. The ratio is what the tamper evidence costs.
//!
//! Then concurrent single-event appenders through the shared store
//! (`stele_store::Store`, group commit): 1, 16 and 64 tasks each appending
//! one event at a time for a fixed time, with events/s, p50 and p99 latency
//! of an append (queued to durably committed), and each rate as a ratio to
//! one appender's in the same run.
//!
//! `cargo bench -p stele-store --bench append [-- ROUNDS BATCHES SECONDS]`. PostgreSQL
//! is measured when `STELE_BENCH_PG_URL` or `STELE_TEST_PG_URL` is set, or the
//! local server answers.

use std::time::{Duration, Instant};

use stele_ledger::event::{EventInput, Limits, ValidEvent};
use stele_ledger::{ChainId, HmacKey, KeyId};
use stele_store::DbLocation;
use stele_store::testkit::TestDb;

const BATCH: usize = 1000;

fn events(n: usize, offset: usize) -> Vec<ValidEvent> {
    (offset..offset + n)
        .map(|i| {
            EventInput {
                event_type: "record.viewed".into(),
                actor: Some(format!("user{}@clinic.example", i % 97)),
                payload: Some(serde_json::json!({
                    "record": format!("patient/{}", 40_000 + i % 9_000),
                    "purpose": "treatment",
                    "ip": format!("10.20.{}.{}", i % 16, i % 251),
                    "session": format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
                    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0",
                    "note": "routine access during scheduled appointment",
                })),
                idempotency_key: None,
            }
            .validate(&Limits::default())
            .expect("valid event")
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The database `db` is in, PostgreSQL in clear, as the baseline's
/// connection is: the ratio is the ledger's work, not TLS's.
fn in_clear(db: &TestDb) -> DbLocation {
    match &db.location {
        DbLocation::Postgres(url) => {
            let joiner = if url.contains('?') { '&' } else { '?' };
            DbLocation::Postgres(format!("{url}{joiner}sslmode=disable"))
        }
        other => other.clone(),
    }
}

/// Events per second appending `batches` batches through stele, one after
/// the other.
fn stele_run(db: &TestDb, batches: usize) -> f64 {
    let key = HmacKey::new(KeyId::new("k1").unwrap(), &[7; 32]);
    let chain = ChainId::new("bench").unwrap();
    let prepared: Vec<Vec<ValidEvent>> = (0..batches).map(|b| events(BATCH, b * BATCH)).collect();
    runtime().block_on(async {
        let store = stele_store::Store::open(&in_clear(db), stele_store::StoreOptions::default())
            .await
            .expect("open store");
        let start = Instant::now();
        for batch in prepared {
            store.append(&chain, batch, &key).await.expect("append");
        }
        let elapsed = start.elapsed();
        store.close().await;
        rate(batches, elapsed)
    })
}

/// Events per second inserting the same rows without any hashing.
fn baseline_run(db: &TestDb, batches: usize) -> f64 {
    let rows: Vec<Vec<ValidEvent>> = (0..batches).map(|b| events(BATCH, b * BATCH)).collect();
    let ts = stele_store::now().to_string();
    let zero = [0u8; 32];
    match &db.location {
        DbLocation::Sqlite(path) => {
            let mut conn = rusqlite::Connection::open(path).unwrap();
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
                .unwrap();
            conn.execute_batch(
                "PRAGMA synchronous = FULL;
                 CREATE TABLE plain_events (chain_id TEXT NOT NULL, chain_index INTEGER NOT NULL, ts TEXT NOT NULL,
                   event_type TEXT NOT NULL, actor TEXT, payload TEXT, idempotency_key TEXT, key_id TEXT NOT NULL,
                   leaf_hash BLOB NOT NULL, event_hash BLOB NOT NULL, PRIMARY KEY (chain_id, chain_index));",
            )
            .unwrap();
            let start = Instant::now();
            let mut seq = 0i64;
            for batch in rows {
                let tx = conn.transaction().unwrap();
                {
                    let mut stmt = tx
                        .prepare_cached(
                            "INSERT INTO plain_events VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
                        )
                        .unwrap();
                    for e in batch {
                        stmt.execute(rusqlite::params![
                            "bench",
                            seq,
                            ts,
                            e.event_type,
                            e.actor,
                            e.payload,
                            e.idempotency_key,
                            "k1",
                            &zero[..],
                            &zero[..]
                        ])
                        .unwrap();
                        seq += 1;
                    }
                }
                tx.commit().unwrap();
            }
            rate(batches, start.elapsed())
        }
        DbLocation::Postgres(url) => runtime().block_on(async {
            use tokio_postgres::binary_copy::BinaryCopyInWriter;
            use tokio_postgres::types::{ToSql, Type};
            let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
                .batch_execute(
                    "SET synchronous_commit = on;
                     CREATE TABLE plain_events (chain_id text NOT NULL, chain_index bigint NOT NULL, ts text NOT NULL,
                       event_type text NOT NULL, actor text, payload text, idempotency_key text, key_id text NOT NULL,
                       leaf_hash bytea NOT NULL, event_hash bytea NOT NULL, PRIMARY KEY (chain_id, chain_index));",
                )
                .await
                .unwrap();
            let types = [
                Type::TEXT,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::BYTEA,
                Type::BYTEA,
            ];
            let start = Instant::now();
            let mut seq = 0i64;
            for batch in rows {
                let tx = client.transaction().await.unwrap();
                let sink = tx
                    .copy_in("COPY plain_events FROM STDIN BINARY")
                    .await
                    .unwrap();
                let w = BinaryCopyInWriter::new(sink, &types);
                let mut w = std::pin::pin!(w);
                for e in &batch {
                    let values: [&(dyn ToSql + Sync); 10] = [
                        &"bench",
                        &seq,
                        &ts,
                        &e.event_type,
                        &e.actor,
                        &e.payload,
                        &e.idempotency_key,
                        &"k1",
                        &&zero[..],
                        &&zero[..],
                    ];
                    w.as_mut().write(&values).await.unwrap();
                    seq += 1;
                }
                w.finish().await.unwrap();
                tx.commit().await.unwrap();
            }
            rate(batches, start.elapsed())
        }),
    }
}

fn rate(batches: usize, elapsed: Duration) -> f64 {
    (batches * BATCH) as f64 / elapsed.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn measure(name: &str, make: &dyn Fn() -> TestDb, rounds: usize, batches: usize) {
    let mut stele = Vec::new();
    let mut base = Vec::new();
    for round in 0..rounds {
        // Alternate the order so drift in machine load (and the server's
        // background work after creating a database) hits both sides alike.
        let (b_db, s_db) = (make(), make());
        if round % 2 == 0 {
            base.push(baseline_run(&b_db, batches));
            stele.push(stele_run(&s_db, batches));
        } else {
            stele.push(stele_run(&s_db, batches));
            base.push(baseline_run(&b_db, batches));
        }
    }
    let (s, b) = (median(stele), median(base));
    println!("{name:<10} {s:>16.0} {b:>20.0} {:>8.2}", s / b);
}

/// One run of `appenders` concurrent single-event appenders for `duration`.
struct ConcurrentRun {
    events_per_sec: f64,
    p50: Duration,
    p99: Duration,
    commits: u64,
}

fn concurrent_run(db: &TestDb, appenders: usize, duration: Duration) -> ConcurrentRun {
    // In clear, like the batch figures above.
    let location = in_clear(db);
    runtime().block_on(async {
        let store = stele_store::Store::open(&location, stele_store::StoreOptions::default())
            .await
            .expect("open shared store");
        let key = HmacKey::new(KeyId::new("k1").unwrap(), &[7; 32]);
        let chain = ChainId::new("bench").unwrap();
        let start = Instant::now();
        let deadline = start + duration;
        let tasks: Vec<_> = (0..appenders)
            .map(|t| {
                let (store, key, chain) = (store.clone(), key.clone(), chain.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut i = t;
                    while Instant::now() < deadline {
                        let event = events(1, i);
                        let sent = Instant::now();
                        store.append(&chain, event, &key).await.expect("append");
                        latencies.push(sent.elapsed());
                        i += appenders;
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.expect("appender"));
        }
        let elapsed = start.elapsed();
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        let run = ConcurrentRun {
            events_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: at(0.50),
            p99: at(0.99),
            commits: store.stats().commits,
        };
        store.close().await;
        run
    })
}

fn measure_concurrent(name: &str, make: &dyn Fn() -> TestDb, rounds: usize, duration: Duration) {
    let mut one = 0.0;
    for appenders in [1, 16, 64] {
        let mut runs: Vec<ConcurrentRun> = (0..rounds)
            .map(|_| concurrent_run(&make(), appenders, duration))
            .collect();
        runs.sort_by(|a, b| a.events_per_sec.total_cmp(&b.events_per_sec));
        let run = &runs[runs.len() / 2];
        if appenders == 1 {
            one = run.events_per_sec;
        }
        let per_commit = run.events_per_sec * duration.as_secs_f64() / run.commits.max(1) as f64;
        println!(
            "{name:<10} {appenders:>9} {:>12.0} {:>9.2} {:>9.2} {:>14.1} {:>8.2}",
            run.events_per_sec,
            run.p50.as_secs_f64() * 1e3,
            run.p99.as_secs_f64() * 1e3,
            per_commit,
            run.events_per_sec / one,
        );
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = args.first().copied().unwrap_or(5);
    let batches = args.get(1).copied().unwrap_or(50);
    let seconds = args.get(2).copied().unwrap_or(3);
    let sample = events(1, 0);
    let payload = sample[0].payload.as_deref().unwrap_or("");
    println!(
        "batch append: {batches} batches x {BATCH} events, payload {} bytes canonical, median of {rounds} rounds, durable commits",
        payload.len()
    );
    println!(
        "{:<10} {:>16} {:>20} {:>8}",
        "backend", "stele events/s", "baseline events/s", "ratio"
    );
    measure("sqlite", &TestDb::sqlite, rounds, batches);
    let concurrent_rounds = rounds.min(3);
    let duration = Duration::from_secs(seconds as u64);
    let print_concurrent_header = || {
        println!(
            "\nconcurrent single-event appends through the shared store (group commit), {seconds} s each, median of {concurrent_rounds} rounds"
        );
        println!(
            "{:<10} {:>9} {:>12} {:>9} {:>9} {:>14} {:>8}",
            "backend", "appenders", "events/s", "p50 ms", "p99 ms", "events/commit", "vs 1"
        );
    };
    let pg_url = std::env::var("STELE_BENCH_PG_URL")
        .unwrap_or_else(|_| stele_store::testkit::pg_admin_url());
    // The testkit reads STELE_TEST_PG_URL for its admin connection, so the
    // local server found without any variable set is the one it uses too.
    #[allow(unsafe_code)] // single-threaded here: nothing else reads the environment yet
    unsafe {
        std::env::set_var("STELE_TEST_PG_URL", &pg_url)
    };
    if stele_store::testkit::pg_answers(&pg_url) {
        measure("postgres", &TestDb::postgres, rounds, batches);
        print_concurrent_header();
        measure_concurrent("sqlite", &TestDb::sqlite, concurrent_rounds, duration);
        measure_concurrent("postgres", &TestDb::postgres, concurrent_rounds, duration);
    } else {
        print_concurrent_header();
        measure_concurrent("sqlite", &TestDb::sqlite, concurrent_rounds, duration);
        println!(
            "postgres   (skipped: no server at STELE_BENCH_PG_URL / STELE_TEST_PG_URL / 127.0.0.1:5432)"
        );
    }
}
