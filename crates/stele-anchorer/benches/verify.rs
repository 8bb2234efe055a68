//! Full re-verification of a large anchored ledger, next to the machine's raw
//! SHA-256 throughput over the same bytes, measured in the same run; and the
//! false-alarm count, which must be zero. Measured with the HMAC key (every
//! chain link checked) and without it (public data only), and through the
//! store's own `verify_chain` (`stele verify log` without anchors).
//!
//! `cargo bench -p stele-anchorer --bench verify [-- EVENTS [EVENTS_PER_ANCHOR]]`
//! (defaults 1,000,000 and 5,000). PostgreSQL is measured too when
//! `STELE_TEST_PG_URL` or the local server answers.

use std::time::Instant;

use sha2::Digest as _;
use signed_note::StandardSigner;
use stele_anchor::Trigger;
use stele_anchorer::{AnchorPolicy, Anchorer};
use stele_ledger::event::{EventInput, Limits, ValidEvent};
use stele_ledger::{ChainId, HmacKey, KeyId, Keyring};
use stele_store::testkit::TestDb;
use stele_store::verify_chain;
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

fn run(name: &str, db: &TestDb, total: usize, per_anchor: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = ObjectStore::Local(LocalDir::new(dir.path()));
    let mut store = db.open();
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, "stele.bench");
    let signer = StandardSigner::new(&skey).unwrap();
    let key = HmacKey::new(KeyId::new("k1").unwrap(), &[1; 32]);
    let ring = Keyring::new(KeyId::new("k1").unwrap(), [key.clone()]).unwrap();
    let chain = ChainId::new("bench").unwrap();
    let policy = AnchorPolicy::default();
    let mut anchorer = Anchorer::new(store.as_mut(), &signer, &policy).unwrap();
    let build = Instant::now();
    let mut n = 0;
    while n < total {
        for b in (0..per_anchor.min(total - n)).step_by(1000) {
            let count = 1000.min(per_anchor - b).min(total - n - b);
            anchorer
                .store()
                .append(&chain, events(n + b, count), &key)
                .unwrap();
        }
        n += per_anchor.min(total - n);
        anchorer
            .build(&chain, Trigger::Volume, "k1", OffsetDateTime::now_utc())
            .unwrap();
    }
    let uploaded = anchorer.upload_pending(&target, rt.handle()).unwrap();
    assert!(uploaded.failed.is_empty());
    println!(
        "{name}: built {total} events and {} anchors in {:.1}s",
        uploaded.uploaded.len(),
        build.elapsed().as_secs_f64()
    );

    // The auditor's run: anchors from the (offline) copy, then every event,
    // with the HMAC key (every link checked) and without (an auditor who
    // holds only public data).
    let mut canonical_bytes = 0usize;
    let mut figures = Vec::new();
    for keys in [Some(&ring), None] {
        let start = Instant::now();
        let local = LocalDir::new(dir.path());
        let objects: Vec<StoredAnchor> = local
            .list("anchors/bench/")
            .unwrap()
            .into_iter()
            .map(|k| StoredAnchor {
                bytes: local.get(&k).unwrap(),
                key: k,
                storage: None,
            })
            .collect();
        let audit = audit_anchors(
            &objects,
            &AuditPolicy {
                chain: chain.clone(),
                verifier_key: vkey.clone(),
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
        store
            .scan_stored(&chain, 0, None, &mut |e, nodes| {
                payload_bytes += e.payload.map_or(0, str::len);
                log.check(e, Some(nodes));
                Ok(())
            })
            .unwrap();
        let (report, findings) = log.finish(None);
        let elapsed = start.elapsed();
        assert_eq!(report.hmac_checked, keys.is_some());
        let false_alarms = audit.report.findings.len() + findings.len();
        // The fields around the payload add about 110 bytes of canonical JSON.
        canonical_bytes = payload_bytes + 110 * total;
        let what = if keys.is_some() {
            "anchored, HMAC key"
        } else {
            "anchored, no key"
        };
        figures.push((what, report.events_checked, anchors, elapsed, false_alarms));
    }

    // `stele verify log` without anchors: the store's own recomputation.
    let start = Instant::now();
    let report = verify_chain(store.as_mut(), &chain, Some(&ring), &mut |_| {}).unwrap();
    figures.push((
        "store, HMAC key",
        report.events_checked,
        0,
        start.elapsed(),
        report.findings.len(),
    ));

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

    for (what, events, anchors, elapsed, false_alarms) in figures {
        let rate = events as f64 / elapsed.as_secs_f64();
        println!(
            "{name} ({what}): verified {events} events against {anchors} anchors in {:.2}s = {rate:.0} events/s (ratio to raw SHA-256 {:.3}); false alarms: {false_alarms}",
            elapsed.as_secs_f64(),
            rate / sha_rate
        );
        assert_eq!(false_alarms, 0, "a clean ledger must verify clean");
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let total = args.first().copied().unwrap_or(1_000_000);
    let per_anchor = args.get(1).copied().unwrap_or(5_000);
    run("sqlite", &TestDb::sqlite(), total, per_anchor);
    if postgres_available() {
        run("postgres", &TestDb::postgres(), total, per_anchor);
    } else {
        println!("postgres: skipped (no server)");
    }
}

fn postgres_available() -> bool {
    std::net::TcpStream::connect("127.0.0.1:5432").is_ok()
        || std::env::var("STELE_TEST_PG_URL").is_ok()
}
