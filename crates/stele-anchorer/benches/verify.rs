//! Full re-verification of a large anchored ledger, next to the machine's raw
//! SHA-256 throughput over the same bytes, measured in the same run; and the
//! false-alarm count, which must be zero. Measured with the HMAC key (every
//! chain link checked) and without it (public data only), and through the
//! store's own `verify_chain` (`stele verify log` without anchors).
//!
//! Also measured: reading the rows with nothing checked (the floor the
//! database sets), stele's own CPU time per event and, for a PostgreSQL
//! server on this machine, the server's: both share the same cores here, so
//! their sum bounds the rate. PostgreSQL is read over TCP in clear and,
//! when the server offers them, over TCP with TLS and its Unix socket.
//!
//! `cargo bench -p stele-anchorer --bench verify [-- EVENTS [EVENTS_PER_ANCHOR [ROUNDS]]] [sqlite|postgres]`
//! (defaults 1,000,000, 5,000 and 3 rounds, both backends); each figure is
//! the median of its rounds. PostgreSQL is measured when
//! `STELE_TEST_PG_URL` or the local server answers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sha2::Digest as _;
use signed_note::StandardSigner;
use stele_anchor::Trigger;
use stele_anchorer::{AnchorPolicy, Anchorer};
use stele_ledger::event::{EventInput, Limits, ValidEvent};
use stele_ledger::{ChainId, HmacKey, KeyId, Keyring};
use stele_store::testkit::TestDb;
use stele_store::{DbLocation, Store, StoreOptions};
use stele_verify::{AnchoredLog, AuditPolicy, StoredAnchor, audit_anchors};
use stele_worm::{LocalDir, ObjectStore};
use time::OffsetDateTime;

fn events(offset: usize, n: usize) -> Vec<ValidEvent> {
    (offset..offset + n)
        .map(|i| {
            EventInput {
                event_type: "record.viewed".into(),
                actor: Some(format!("user{}@clinic.example", i % 97)),
                payload: Some(serde_json::json!({"record": format!("patient/{}", 40_000 + i % 9_000), "purpose": "treatment", "ip": format!("10.20.{}.{}", i % 16, i % 251)})),
                idempotency_key: None,
            }
            .validate(&Limits::default())
            .unwrap()
        })
        .collect()
}

/// One measured pass over the ledger.
struct Figure {
    what: String,
    events: u64,
    anchors: usize,
    took: Measured,
    false_alarms: usize,
}

/// Wall time, this process's CPU time (all its threads) and the CPU time of
/// the PostgreSQL server processes serving its database, over a stretch.
struct Measured {
    wall: Duration,
    cpu: Option<Duration>,
    server_cpu: Option<Duration>,
}

/// Starts measuring the wall clock, the process's CPU clock and, for a
/// PostgreSQL database on this machine, its server processes' CPU clocks.
struct Stopwatch<'a> {
    db: &'a TestDb,
    server: Option<BTreeMap<u32, Duration>>,
    wall: Instant,
    cpu: Option<Duration>,
}

impl<'a> Stopwatch<'a> {
    fn start(db: &'a TestDb) -> Self {
        Self {
            server: server_cpu(db),
            db,
            wall: Instant::now(),
            cpu: process_cpu("self"),
        }
    }

    fn stop(&self) -> Measured {
        let wall = self.wall.elapsed();
        let cpu = process_cpu("self")
            .zip(self.cpu)
            .map(|(now, then)| now.saturating_sub(then));
        // A backend that started during the stretch (the scan connection)
        // counts from zero.
        let server_cpu = server_cpu(self.db)
            .zip(self.server.as_ref())
            .map(|(now, then)| {
                now.iter()
                    .map(|(pid, cpu)| {
                        cpu.saturating_sub(then.get(pid).copied().unwrap_or_default())
                    })
                    .sum()
            });
        Measured {
            wall,
            cpu,
            server_cpu,
        }
    }
}

/// CPU time so far of each PostgreSQL backend connected to the database,
/// when the server runs on this machine; `None` for SQLite or a remote server.
fn server_cpu(db: &TestDb) -> Option<BTreeMap<u32, Duration>> {
    let DbLocation::Postgres(_) = &db.location else {
        return None;
    };
    let pids = db.query_text(
        "SELECT string_agg(pid::text, ',') FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )?;
    pids.split(',')
        .map(|pid| {
            let pid: u32 = pid.parse().ok()?;
            Some((pid, process_cpu(&pid.to_string())?))
        })
        .collect()
}

/// User plus system CPU time of every thread of process `pid` so far, from
/// `/proc/PID/stat` (Linux; 10 ms ticks). `None` elsewhere.
fn process_cpu(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn run(name: &str, db: &TestDb, total: usize, per_anchor: usize, rounds: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = ObjectStore::Local(LocalDir::new(dir.path()));
    let store = rt
        .block_on(Store::open(&db.location, StoreOptions::default()))
        .unwrap();
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, "stele.bench");
    let signer = StandardSigner::new(&skey).unwrap();
    let key = HmacKey::new(KeyId::new("k1").unwrap(), &[1; 32]);
    let ring = Keyring::new(KeyId::new("k1").unwrap(), [key.clone()]).unwrap();
    let chain = ChainId::new("bench").unwrap();
    let policy = AnchorPolicy::default();
    let mut anchorer = Anchorer::new(store.clone(), &signer, &ring, &policy).unwrap();
    let build = Instant::now();
    let uploaded = rt.block_on(async {
        let mut n = 0;
        while n < total {
            for b in (0..per_anchor.min(total - n)).step_by(1000) {
                let count = 1000.min(per_anchor - b).min(total - n - b);
                store
                    .append(&chain, events(n + b, count), &key)
                    .await
                    .unwrap();
            }
            n += per_anchor.min(total - n);
            anchorer
                .build(&chain, Trigger::Volume, "k1", OffsetDateTime::now_utc())
                .await
                .unwrap();
        }
        let uploaded = anchorer.upload_pending(&target).await.unwrap();
        store.close().await;
        uploaded
    });
    assert!(uploaded.failed.is_empty());
    println!(
        "{name}: built {total} events and {} anchors in {:.1}s",
        uploaded.uploaded.len(),
        build.elapsed().as_secs_f64()
    );
    drop(anchorer);
    drop(store);
    if let DbLocation::Postgres(_) = &db.location {
        // A production server's autovacuum has long since visited a ledger's
        // older rows; without it the first scan after this bulk load would
        // also write every page's hint bits.
        db.exec("VACUUM (ANALYZE) audit_events");
    }

    // Each round opens the store afresh, so its first pass is what one
    // `stele verify log` run does: a new connection (a new server backend).
    let mut figures = Vec::new();
    let mut canonical_bytes = 0;
    for (transport, location) in readers(&rt, &db.location) {
        for _ in 0..rounds {
            // As `stele verify log` opens it.
            let store = rt
                .block_on(Store::open_read_only(&location, StoreOptions::default()))
                .unwrap();
            let run = Verification {
                db,
                rt: &rt,
                store: &store,
                anchors: dir.path(),
                chain: &chain,
                verifier_key: &vkey,
                ring: &ring,
                label: transport,
            };
            canonical_bytes = run.measure(&mut figures);
        }
    }

    // Baseline: raw SHA-256 over the same amount of data, in event-sized pieces.
    let piece = vec![0x5au8; canonical_bytes / total.max(1)];
    let start = Instant::now();
    let mut acc = 0u8;
    for _ in 0..total {
        acc ^= sha2::Sha256::digest(&piece)[0];
    }
    let sha_rate = total as f64 / start.elapsed().as_secs_f64();
    std::hint::black_box(acc);
    println!(
        "{name}: raw SHA-256 of the same bytes ({} bytes per event): {sha_rate:.0} events/s",
        piece.len()
    );

    assert!(
        figures.iter().all(|f| f.false_alarms == 0),
        "a clean ledger must verify clean"
    );
    let mut lines: Vec<&str> = Vec::new();
    for f in &figures {
        if !lines.contains(&f.what.as_str()) {
            lines.push(&f.what);
        }
    }
    for what in lines {
        let passes: Vec<&Figure> = figures.iter().filter(|f| f.what == what).collect();
        let (events, anchors) = (passes[0].events, passes[0].anchors);
        let per_event = |cpu: Duration| cpu.as_secs_f64() * 1e6 / events.max(1) as f64;
        let rates = median_and_range(
            passes
                .iter()
                .map(|f| events as f64 / f.took.wall.as_secs_f64()),
        );
        // stele's own CPU per event, and the server's: on one machine they
        // share the same cores, so their sum bounds the rate.
        let mut cpu = median_and_range(passes.iter().filter_map(|f| f.took.cpu.map(per_event)))
            .map_or_else(String::new, |(m, _, _)| {
                format!("; stele CPU {m:.2} us/event")
            });
        if let Some((m, _, _)) = median_and_range(
            passes
                .iter()
                .filter_map(|f| f.took.server_cpu.map(per_event)),
        ) {
            cpu += &format!(", PostgreSQL server CPU {m:.2} us/event");
        }
        let Some((median, low, high)) = rates else {
            continue;
        };
        println!(
            "{name} ({what}): {events} events against {anchors} anchors: {median:.0} events/s, median of {} (range {low:.0}-{high:.0}; ratio to raw SHA-256 {:.3}){cpu}; false alarms: 0",
            passes.len(),
            median / sha_rate,
        );
    }
}

/// Median, lowest and highest of some figures; `None` if there are none.
fn median_and_range(figures: impl Iterator<Item = f64>) -> Option<(f64, f64, f64)> {
    let mut sorted: Vec<f64> = figures.collect();
    sorted.sort_by(f64::total_cmp);
    let (low, high) = (*sorted.first()?, *sorted.last()?);
    let mid = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    };
    Some((median, low, high))
}

/// The ways the bench reads the database, each with a label: SQLite's
/// file; PostgreSQL over TCP in clear, over TCP with TLS (when the server
/// offers it) and over the server's Unix socket.
fn readers(rt: &tokio::runtime::Runtime, location: &DbLocation) -> Vec<(&'static str, DbLocation)> {
    let DbLocation::Postgres(url) = location else {
        return vec![("", location.clone())];
    };
    let with = |param: &str| {
        let joiner = if url.contains('?') { '&' } else { '?' };
        DbLocation::Postgres(format!("{url}{joiner}{param}"))
    };
    let mut readers = vec![("TCP, ", with("sslmode=disable"))];
    if rt
        .block_on(Store::open_read_only(
            &with("sslmode=require"),
            StoreOptions::default(),
        ))
        .is_ok()
    {
        readers.push(("TCP with TLS, ", with("sslmode=require")));
    }
    // The socket goes in the URL's host, percent-encoded: a `host=` query
    // parameter would only add it after the TCP host, which is tried first.
    let tcp_host = "@127.0.0.1:5432/";
    if url.contains(tcp_host) && std::path::Path::new("/var/run/postgresql/.s.PGSQL.5432").exists()
    {
        readers.push((
            "Unix socket, ",
            DbLocation::Postgres(url.replace(tcp_host, "@%2Fvar%2Frun%2Fpostgresql:5432/")),
        ));
    }
    readers
}

/// The auditor's run over one way of reading the database.
struct Verification<'a> {
    db: &'a TestDb,
    rt: &'a tokio::runtime::Runtime,
    store: &'a Store,
    anchors: &'a std::path::Path,
    chain: &'a ChainId,
    verifier_key: &'a str,
    ring: &'a Keyring,
    label: &'static str,
}

impl Verification<'_> {
    /// Anchors from the (offline) copy, then every event, with the HMAC key
    /// (every link checked) and without (an auditor who holds only public
    /// data); then the store's own recomputation (`stele verify log`
    /// without anchors). Returns the canonical bytes the events hash.
    fn measure(self, figures: &mut Vec<Figure>) -> usize {
        let Self {
            db,
            rt,
            store,
            anchors: anchor_dir,
            chain,
            verifier_key,
            ring,
            label,
        } = self;
        let mut canonical_bytes = 0;
        for keys in [Some(ring), None] {
            let watch = Stopwatch::start(db);
            let local = LocalDir::new(anchor_dir);
            let objects: Vec<StoredAnchor> = local
                .list(&format!("anchors/{chain}/"))
                .unwrap()
                .into_iter()
                .map(|k| StoredAnchor {
                    bytes: local.get(&k).unwrap(),
                    key: k,
                    unreadable: None,
                    storage: None,
                })
                .collect();
            let audit = audit_anchors(
                &objects,
                &AuditPolicy {
                    chain: chain.clone(),
                    verifier_key: verifier_key.to_owned(),
                    prefix: None,
                    interval: std::time::Duration::from_secs(3600),
                    grace: std::time::Duration::from_secs(900),
                    retention_days: None,
                    expected_mode: None,
                    from: None,
                    to: None,
                    now: OffsetDateTime::now_utc(),
                },
            );
            let anchors = audit.trusted.len();
            let mut log = AnchoredLog::new(
                chain.clone(),
                keys,
                audit.trusted.into_iter().map(|(a, _)| a).collect(),
            );
            let mut payload_bytes = 0usize;
            scan(rt, store, chain, &mut |e, nodes| {
                payload_bytes += e.payload.map_or(0, str::len);
                log.check(e, Some(nodes));
            });
            let (report, findings) = log.finish(None);
            let took = watch.stop();
            assert_eq!(report.hmac_checked, keys.is_some());
            // The fields around the payload add about 110 bytes of canonical JSON.
            let events = usize::try_from(report.events_checked).unwrap();
            canonical_bytes = payload_bytes + 110 * events;
            let what = if keys.is_some() { "HMAC key" } else { "no key" };
            figures.push(Figure {
                what: format!("{label}verified anchored, {what}"),
                events: report.events_checked,
                anchors,
                took,
                false_alarms: audit.report.findings.len() + findings.len(),
            });
        }

        let watch = Stopwatch::start(db);
        let report = rt
            .block_on(async {
                let mut snapshot = store.read_snapshot().await?;
                let report = stele_audit::verify_chain(
                    &mut snapshot,
                    chain,
                    Some(ring),
                    &mut (),
                    &mut |_| {},
                )
                .await?;
                snapshot.end().await?;
                Ok::<_, stele_store::StoreError>(report)
            })
            .unwrap();
        figures.push(Figure {
            what: format!("{label}verified by the store, HMAC key"),
            events: report.events_checked,
            anchors: 0,
            took: watch.stop(),
            false_alarms: report.findings.len(),
        });

        // What reading the rows alone costs, nothing checked: the floor the
        // database and the scan set under every figure above.
        let watch = Stopwatch::start(db);
        let mut rows = 0u64;
        let mut touched = 0usize;
        scan(rt, store, chain, &mut |e, nodes| {
            rows += 1;
            touched += e.payload.map_or(0, str::len) + nodes.len();
        });
        std::hint::black_box(touched);
        figures.push(Figure {
            what: format!("{label}read only, nothing checked"),
            events: rows,
            anchors: 0,
            took: watch.stop(),
            false_alarms: 0,
        });
        canonical_bytes
    }
}
/// Every row of `chain` to `visit`, from one read snapshot.
fn scan(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    chain: &ChainId,
    visit: &mut (dyn FnMut(stele_ledger::StoredEvent<'_>, &[u8]) + Send),
) {
    rt.block_on(async {
        let mut snapshot = store.read_snapshot().await?;
        snapshot
            .scan(chain, 0, None, &mut |e, nodes| {
                visit(e, nodes);
                Ok(())
            })
            .await?;
        snapshot.end().await
    })
    .expect("scan");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let total = numbers.first().copied().unwrap_or(1_000_000);
    let per_anchor = numbers.get(1).copied().unwrap_or(5_000);
    let rounds = numbers.get(2).copied().unwrap_or(3).max(1);
    let named: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| matches!(*a, "sqlite" | "postgres"))
        .collect();
    let wanted = |backend: &str| named.is_empty() || named.contains(&backend);
    if wanted("sqlite") {
        run("sqlite", &TestDb::sqlite(), total, per_anchor, rounds);
    }
    if !wanted("postgres") {
        return;
    }
    if postgres_available() {
        run("postgres", &TestDb::postgres(), total, per_anchor, rounds);
    } else {
        println!("postgres: skipped (no server)");
    }
}

fn postgres_available() -> bool {
    std::net::TcpStream::connect("127.0.0.1:5432").is_ok()
        || std::env::var("STELE_TEST_PG_URL").is_ok()
}
