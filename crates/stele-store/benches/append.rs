//! Batch-append throughput, next to a baseline measured in the same run.
//!
//! For each backend: stele appends 1,000-event batches of ~256-byte payloads
//! (canonical bytes, leaf hash, HMAC chain, Merkle stored hashes, durable
//! commit), and the baseline inserts the same rows into a plain table with
//! the same columns — same durability settings, same batch size, no hashing,
//! no Merkle rows. The ratio is what the tamper evidence costs.
//!
//! `cargo bench -p stele-store --bench append [-- ROUNDS BATCHES]`. PostgreSQL
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

/// Events per second appending `batches` batches through stele.
fn stele_run(db: &TestDb, batches: usize) -> f64 {
    let key = HmacKey::new(KeyId::new("k1").unwrap(), &[7; 32]);
    let chain = ChainId::new("bench").unwrap();
    let mut store = match &db.location {
        // In clear, as the baseline's connection is: the ratio is the
        // ledger's work, not TLS's.
        DbLocation::Postgres(url) => {
            let joiner = if url.contains('?') { '&' } else { '?' };
            stele_store::open(&DbLocation::Postgres(format!(
                "{url}{joiner}sslmode=disable"
            )))
            .expect("open store")
        }
        DbLocation::Sqlite(_) => db.open(),
    };
    let prepared: Vec<Vec<ValidEvent>> = (0..batches).map(|b| events(BATCH, b * BATCH)).collect();
    let start = Instant::now();
    for batch in prepared {
        store.append(&chain, batch, &key).expect("append");
    }
    rate(batches, start.elapsed())
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
                   leaf_hash BLOB NOT NULL, event_hash BLOB NOT NULL, PRIMARY KEY (chain_id, chain_index)) WITHOUT ROWID;",
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
        DbLocation::Postgres(url) => {
            use postgres::binary_copy::BinaryCopyInWriter;
            use postgres::types::{ToSql, Type};
            let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
            client
                .batch_execute(
                    "SET synchronous_commit = on;
                     CREATE TABLE plain_events (chain_id text NOT NULL, chain_index bigint NOT NULL, ts text NOT NULL,
                       event_type text NOT NULL, actor text, payload text, idempotency_key text, key_id text NOT NULL,
                       leaf_hash bytea NOT NULL, event_hash bytea NOT NULL, PRIMARY KEY (chain_id, chain_index));",
                )
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
                let mut tx = client.transaction().unwrap();
                let sink = tx.copy_in("COPY plain_events FROM STDIN BINARY").unwrap();
                let mut w = BinaryCopyInWriter::new(sink, &types);
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
                    w.write(&values).unwrap();
                    seq += 1;
                }
                w.finish().unwrap();
                tx.commit().unwrap();
            }
            rate(batches, start.elapsed())
        }
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

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = args.first().copied().unwrap_or(5);
    let batches = args.get(1).copied().unwrap_or(50);
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
    let pg_url = std::env::var("STELE_BENCH_PG_URL")
        .ok()
        .or_else(|| std::env::var("STELE_TEST_PG_URL").ok());
    if let Some(url) = pg_url {
        // SAFETY of intent: the testkit reads STELE_TEST_PG_URL for its admin connection.
        #[allow(unsafe_code)] // single-threaded here: nothing else reads the environment yet
        unsafe {
            std::env::set_var("STELE_TEST_PG_URL", url)
        };
    }
    if postgres::Client::connect(&stele_store::testkit::pg_admin_url(), postgres::NoTls).is_ok() {
        measure("postgres", &TestDb::postgres, rounds, batches);
    } else {
        println!(
            "postgres   (skipped: no server at STELE_BENCH_PG_URL / STELE_TEST_PG_URL / 127.0.0.1:5432)"
        );
    }
}
