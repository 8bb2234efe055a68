//! `stele serve` end to end, over real HTTP against the real binary, on
//! SQLite and the real PostgreSQL: appends (one, array, JSON Lines), reads,
//! proofs verified offline with only the verifier key, idempotent retries,
//! every rejection path with the ledger unchanged after it, tokens revoked
//! while running, graceful shutdown, and `kill -9` at random moments under
//! concurrent appenders with nothing acknowledged lost; no checkpoint or
//! proof signed over an event rewritten behind the server's back.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::http::{Gateway, HeldRequest, request, token};
use common::{Ledger, code, hmac_a_forger_needs, rewrite_event, stderr};
use serde_json::{Value, json};
use stele_store::testkit::TestDb;

fn both_backends(test: &str) -> Vec<TestDb> {
    stele_store::testkit::every_backend(test)
}

/// What a rejection test sends and expects: what it is, method, path,
/// token, headers, body, status, error code.
type RejectionCase<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Vec<(&'a str, &'a str)>,
    Vec<u8>,
    u16,
    &'a str,
);

/// A gateway that anchors every 100 events (to its local anchor directory).
fn volume_anchors(cmd: &mut std::process::Command) {
    cmd.env("AUDIT_ANCHOR_VOLUME", "100");
}

/// Starts a verification run and waits until it is the `runs`-th one
/// finished; returns its result.
fn run_verification(gw: &Gateway, admin: &str, runs: u64) -> Value {
    let r = gw.request("POST", "/v1/verification/run", Some(admin), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = gw.get("/v1/verification", admin).json();
        if v["runs"].as_u64() == Some(runs) {
            return v["latest"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "verification run {runs} did not finish: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `n` events of `event_type` as one JSON array body.
fn batch_of(n: usize, event_type: &str) -> String {
    Value::Array(
        (0..n)
            .map(|i| json!({"type": event_type, "payload": {"i": i}}))
            .collect(),
    )
    .to_string()
}

/// Adds a `[server]` section with `settings` (TOML lines) to the ledger's
/// `stele.toml`.
fn server_settings(ledger: &Ledger, settings: &str) {
    let config = ledger.data_dir().join("stele.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!("\n[server]\n{settings}\n"));
    std::fs::write(&config, text).expect("config");
}

fn size_over_api(gw: &Gateway, token: &str, chain: &str) -> u64 {
    let r = gw.get(&format!("/v1/chains/{chain}"), token);
    match r.status {
        200 => r.json()["size"].as_u64().expect("size"),
        404 => 0,
        other => panic!("head: {other} {}", r.text()),
    }
}

#[test]
fn the_gateway_appends_reads_and_proves_over_http() {
    for db in both_backends("the_gateway_appends_reads_and_proves_over_http") {
        let ledger = Ledger::new(db);
        let t = token(&ledger, "append,read", "*");
        let gw = Gateway::start(&ledger);

        // One event, with its self-contained proof.
        let r = gw.request(
            "POST",
            "/v1/chains/orders/events?proof=true",
            Some(&t),
            &[("Content-Type", "application/json")],
            br#"{"type":"order.placed","actor":"alice@example.com","payload":{"order":1,"total":"12.50"}}"#,
        );
        assert_eq!(r.status, 201, "{}", r.text());
        assert!(r.header("x-request-id").is_some());
        let receipt = &r.json()["receipts"][0];
        assert_eq!(receipt["seq"], 0);
        let proof_file = ledger.dir.path().join("receipt.tlog");
        std::fs::write(
            &proof_file,
            receipt["tlog_proof"].as_str().expect("tlog_proof"),
        )
        .expect("write proof");
        // Offline: an empty directory, only the verifier key.
        let vkey = std::fs::read_to_string(ledger.data_dir().join("keys/verifier.vkey"))
            .expect("verifier key");
        let offline = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stele"))
            .env_remove("STELE_DB")
            .args(["--data-dir", offline.path().to_str().unwrap()])
            .args(["verify", "event", "--proof", proof_file.to_str().unwrap()])
            .args(["--verifier-key", vkey.trim()])
            .output()
            .expect("verify event");
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        // The proof is of this event, not any event: flip a byte of it.
        let tampered = receipt["tlog_proof"]
            .as_str()
            .unwrap()
            .replacen("index 0", "index 1", 1);
        std::fs::write(&proof_file, tampered).expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stele"))
            .env_remove("STELE_DB")
            .args(["--data-dir", offline.path().to_str().unwrap()])
            .args(["verify", "event", "--proof", proof_file.to_str().unwrap()])
            .args(["--verifier-key", vkey.trim()])
            .output()
            .expect("verify event");
        assert_ne!(
            code(&out),
            0,
            "a proof moved to another index must not verify"
        );

        // A batch as a JSON array, and JSON Lines.
        let batch: Vec<Value> = (1..=5)
            .map(|i| json!({"type": "order.placed", "payload": {"order": i + 1}}))
            .collect();
        let r = gw.append("orders", &t, &Value::Array(batch).to_string());
        assert_eq!(r.status, 201, "{}", r.text());
        let seqs: Vec<u64> = r.json()["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        let lines: String = (7..10)
            .map(|i| format!("{{\"type\":\"order.shipped\",\"payload\":{{\"order\":{i}}}}}\n"))
            .collect();
        let r = gw.request(
            "POST",
            "/v1/chains/orders/events",
            Some(&t),
            &[("Content-Type", "application/x-ndjson")],
            lines.as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["appended"], 3);

        // Idempotency: a retry returns the original receipt and appends nothing.
        let retry = |body: &str| {
            gw.request(
                "POST",
                "/v1/chains/orders/events",
                Some(&t),
                &[
                    ("Content-Type", "application/json"),
                    ("Idempotency-Key", "req-42"),
                ],
                body.as_bytes(),
            )
        };
        let first = retry(r#"{"type":"refund.issued","payload":{"order":3}}"#);
        assert_eq!(first.status, 201, "{}", first.text());
        let again = retry(r#"{"type":"refund.issued","payload":{"order":3}}"#);
        assert_eq!(again.status, 200, "{}", again.text());
        assert_eq!(again.json()["appended"], 0);
        assert_eq!(again.json()["receipts"][0]["duplicate"], true);
        assert_eq!(
            again.json()["receipts"][0]["seq"],
            first.json()["receipts"][0]["seq"]
        );
        let conflict = retry(r#"{"type":"refund.issued","payload":{"order":4}}"#);
        assert_eq!(
            (conflict.status, conflict.code().as_str()),
            (409, "idempotency_conflict")
        );
        assert_eq!(size_over_api(&gw, &t, "orders"), 10);

        // Proofs are answered for small requests only, refused before anything is appended.
        let many = batch_of(101, "bulk.event");
        let r = gw.request(
            "POST",
            "/v1/chains/orders/events?proof=true",
            Some(&t),
            &[("Content-Type", "application/json")],
            many.as_bytes(),
        );
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "invalid_request"),
            "{}",
            r.text()
        );
        assert_eq!(size_over_api(&gw, &t, "orders"), 10);

        // Reads.
        let chains = gw.get("/v1/chains", &t).json();
        assert_eq!(chains["chains"][0]["chain_id"], "orders");
        let page = gw.get("/v1/chains/orders/events?from=8&limit=5", &t).json();
        let page_seqs: Vec<u64> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(page_seqs, [8, 9]);
        let one = gw.get("/v1/chains/orders/events/4", &t).json();
        assert_eq!(one["event"]["payload"], json!({"order": 5}));

        // Proofs over the API agree with the CLI's, and verify.
        let inclusion = gw
            .get("/v1/chains/orders/proofs/inclusion/4?tree_size=7", &t)
            .json();
        let cli = ledger.json(&[
            "proof",
            "inclusion",
            "--chain",
            "orders",
            "--seq",
            "4",
            "--tree-size",
            "7",
        ]);
        assert_eq!(inclusion["root_hash"], cli["root_hash"]);
        assert_eq!(inclusion["proof"], cli["proof"]);
        let consistency = gw
            .get("/v1/chains/orders/proofs/consistency?from=3&to=10", &t)
            .json();
        let hashes: Vec<stele_ledger::Hash> = consistency["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                stele_ledger::Hash(
                    hex::decode(h.as_str().unwrap())
                        .unwrap()
                        .try_into()
                        .unwrap(),
                )
            })
            .collect();
        let root = |v: &Value| {
            stele_ledger::Hash(
                hex::decode(v.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap(),
            )
        };
        stele_ledger::merkle::verify_consistency(
            &hashes,
            3,
            root(&consistency["from_root"]),
            10,
            root(&consistency["to_root"]),
        )
        .expect("consistency proof verifies");
        let checkpoint = gw.get("/v1/chains/orders/checkpoint", &t).json();
        let verified = stele_ledger::checkpoint::verify(
            checkpoint["checkpoint"].as_str().unwrap(),
            vkey.trim(),
        )
        .expect("checkpoint verifies with the verifier key");
        assert_eq!(verified.size, 10);
        let anchors = gw.get("/v1/anchors", &t).json();
        assert_eq!(anchors["backlog"], 0);

        // What the gateway wrote verifies like any ledger.
        drop(gw);
        let out = ledger.run(&["verify", "log", "--chain", "orders"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
}

#[test]
fn every_rejection_has_its_status_and_code_and_changes_nothing() {
    for db in both_backends("every_rejection_has_its_status_and_code_and_changes_nothing") {
        let ledger = Ledger::new(db);
        // Small limits, so "too large" is cheap to reach.
        let config = ledger.data_dir().join("stele.toml");
        let text = std::fs::read_to_string(&config).expect("config");
        let text: String = text
            .lines()
            .map(|l| {
                if l.starts_with("max_payload_bytes") {
                    "max_payload_bytes = 1000"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&config, text).expect("config");
        server_settings(
            &ledger,
            "max_request_bytes = 65536\nmax_events_per_request = 10",
        );
        let appender = token(&ledger, "append", "orders");
        let reader = token(&ledger, "read", "*");
        let gw = Gateway::start(&ledger);
        assert_eq!(
            gw.append("orders", &appender, r#"{"type":"seed.event"}"#)
                .status,
            201
        );

        let json_ct = ("Content-Type", "application/json");
        let deep = "[".repeat(5000) + &"]".repeat(5000);
        let huge_payload = format!(
            r#"{{"type":"big.event","payload":{{"blob":"{}"}}}}"#,
            "x".repeat(5_000)
        );
        let too_many = batch_of(11, "a.b");
        let body_too_large = "y".repeat(70_000);
        let cases: Vec<RejectionCase<'_>> = vec![
            (
                "no token",
                "POST",
                "/v1/chains/orders/events",
                None,
                vec![json_ct],
                br#"{"type":"a.b"}"#.to_vec(),
                401,
                "unauthenticated",
            ),
            (
                "no token, and a query that does not parse",
                "GET",
                "/v1/anchors?status=pending&bogus=1",
                None,
                vec![],
                Vec::new(),
                401,
                "unauthenticated",
            ),
            (
                "bad token",
                "POST",
                "/v1/chains/orders/events",
                Some("stl_0000_ffff"),
                vec![json_ct],
                br#"{"type":"a.b"}"#.to_vec(),
                401,
                "unauthenticated",
            ),
            (
                "wrong scope",
                "POST",
                "/v1/chains/orders/events",
                Some(&reader),
                vec![json_ct],
                br#"{"type":"a.b"}"#.to_vec(),
                403,
                "forbidden",
            ),
            (
                "wrong chain",
                "POST",
                "/v1/chains/payroll/events",
                Some(&appender),
                vec![json_ct],
                br#"{"type":"a.b"}"#.to_vec(),
                403,
                "forbidden",
            ),
            (
                "invalid chain name",
                "POST",
                "/v1/chains/Bad%20Name/events",
                Some(&appender),
                vec![json_ct],
                br#"{"type":"a.b"}"#.to_vec(),
                400,
                "invalid_chain",
            ),
            (
                "malformed JSON",
                "POST",
                "/v1/chains/orders/events",
                Some(&appender),
                vec![json_ct],
                br#"{"type":"a.b""#.to_vec(),
                400,
                "invalid_json",
            ),
            (
                "repeated key",
                "POST",
                "/v1/chains/orders/events",
                Some(&appender),
                vec![json_ct],
                br#"{"type":"a.b","type":"c.d"}"#.to_vec(),
                400,
                "invalid_json",
            ),
            (
                "invalid UTF-8",
                "POST",
                "/v1/chains/orders/events",
                Some(&appender),
                vec![json_ct],
                b"{\"type\":\"a.\xff\"}".to_vec(),
                400,
                "invalid_utf8",
            ),
            (
                "deeply nested JSON",
                "POST",
                "/v1/chains/orders/events",
                Some(&appender),
                vec![json_ct],
                deep.into_bytes(),
                400,
                "invalid_json",
            ),
            (
                "oversized event",
                "POST",
                "/v1/chains/orders/events",
                Some(&appender),
                vec![json_ct],
                huge_payload.into_bytes(),
                422,
                "invalid_events",
            ),
            (
                "oversized body",
                "POST",
                "/v1/chains/orders/events",
                Some(&appender),
                vec![json_ct],
                body_too_large.into_bytes(),
                413,
                "body_too_large",
            ),
            (
                "too many events",
                "POST",
                "/v1/chains/orders/events",
                Some(&appender),
                vec![json_ct],
                too_many.into_bytes(),
                413,
                "too_many_events",
            ),
            (
                "one bad event in a batch",
                "POST",
                "/v1/chains/orders/events",
                Some(&appender),
                vec![json_ct],
                br#"[{"type":"a.b"},{"type":"stele.forged"}]"#.to_vec(),
                422,
                "invalid_events",
            ),
            (
                "unsupported content type",
                "POST",
                "/v1/chains/orders/events",
                Some(&appender),
                vec![("Content-Type", "text/plain")],
                br#"{"type":"a.b"}"#.to_vec(),
                415,
                "unsupported_media_type",
            ),
            (
                "unknown route",
                "GET",
                "/v1/nothing-here",
                Some(&reader),
                vec![],
                Vec::new(),
                404,
                "not_found",
            ),
            (
                "wrong method",
                "DELETE",
                "/v1/chains/orders/events",
                Some(&appender),
                vec![],
                Vec::new(),
                405,
                "method_not_allowed",
            ),
            (
                "unknown query parameter",
                "POST",
                "/v1/chains/orders/events?prove=yes",
                Some(&appender),
                vec![json_ct],
                br#"{"type":"a.b"}"#.to_vec(),
                400,
                "invalid_request",
            ),
        ];
        // Every chain's head, so an append leaking into another chain shows.
        let heads = |gw: &Gateway| {
            let r = gw.get("/v1/chains", &reader);
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()
        };
        for (what, method, path, tok, headers, body, status, code) in cases {
            let before = heads(&gw);
            let r = gw.request(method, path, tok, &headers, &body);
            assert_eq!(r.status, status, "{what}: {}", r.text());
            let error = &r.json()["error"];
            assert_eq!(error["code"], code, "{what}: {}", r.text());
            assert!(
                !error["message"].as_str().unwrap_or("").is_empty(),
                "{what}"
            );
            assert_eq!(
                error["request_id"].as_str(),
                r.header("x-request-id"),
                "{what}: the body names the request"
            );
            assert_eq!(heads(&gw), before, "{what} changed the ledger");
        }
        // The one bad event named by index, nothing of the batch appended.
        let r = gw.append(
            "orders",
            &appender,
            r#"[{"type":"a.b"},{"type":"stele.forged"},{"type":"c.d"}]"#,
        );
        let rejected = &r.json()["error"]["details"]["rejected"];
        assert_eq!(rejected.as_array().map(Vec::len), Some(1), "{}", r.text());
        assert_eq!(rejected[0]["index"], 1);
        assert_eq!(size_over_api(&gw, &reader, "orders"), 1);
        // No secret in any answer.
        let r = gw.request(
            "POST",
            "/v1/chains/orders/events",
            Some(&format!("{appender}x")),
            &[json_ct],
            b"{}",
        );
        assert!(!r.text().contains(&appender[10..]), "a token echoed back");
    }
}

#[test]
fn acknowledged_appends_survive_sigkill_and_restart() {
    for db in both_backends("acknowledged_appends_survive_sigkill_and_restart") {
        sigkill_rounds(db, None);
    }
}

/// The same kills with the anchors going to Ceph RGW under Object Lock: an
/// anchor whose upload a kill cut short is uploaded after the restart, and
/// the bucket's anchors vouch for the whole chain.
#[test]
fn acknowledged_appends_and_their_anchors_survive_sigkill_with_anchors_in_rgw() {
    stele_store::testkit::live_or_skip!(Rgw);
    use stele_worm::testkit::{create_bucket, env_required, rgw, unique_bucket};
    let endpoint = env_required("STELE_TEST_RGW_ENDPOINT");
    for db in
        both_backends("acknowledged_appends_and_their_anchors_survive_sigkill_with_anchors_in_rgw")
    {
        let s3 = common::runtime().block_on(create_bucket(rgw(&unique_bucket("gw-crash")), true));
        sigkill_rounds(db, Some((&endpoint, s3.bucket())));
    }
}

/// 20 rounds of concurrent HTTP appenders and a SIGKILL at a random
/// moment; then every acknowledged event is there exactly once, the chain
/// verifies, and every anchor built is uploaded — to the local anchor
/// directory, or to `rgw` (endpoint, bucket).
fn sigkill_rounds(db: TestDb, rgw: Option<(&str, &str)>) {
    const KILLS: usize = 20;
    const WRITERS: usize = 8;
    let anchored = |cmd: &mut std::process::Command| {
        volume_anchors(cmd);
        if let Some((endpoint, bucket)) = rgw {
            common::with_rgw_anchors(cmd, endpoint, bucket);
        }
    };
    {
        let ledger = Ledger::new(db);
        let t = token(&ledger, "append,read", "*");
        // key -> seq of every acknowledged event.
        let acknowledged: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let mut rng_state = 0x9e37_79b9_u64;
        for round in 0..KILLS {
            let gw = Gateway::start_with(&ledger, anchored);
            let stop = Arc::new(AtomicBool::new(false));
            let writers: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let (addr, t, stop, acked) = (gw.addr.clone(), t.clone(), Arc::clone(&stop), Arc::clone(&acknowledged));
                    std::thread::spawn(move || {
                        let mut i = 0;
                        while !stop.load(Ordering::Relaxed) {
                            let key = format!("r{round}-w{w}-{i}");
                            let body = format!(r#"{{"type":"crash.test","idempotency_key":"{key}","payload":{{"w":{w},"i":{i}}}}}"#);
                            let auth = format!("Bearer {t}");
                            let sent = request(&addr, "POST", "/v1/chains/crash/events", &[("Authorization", &auth), ("Content-Type", "application/json")], body.as_bytes());
                            match sent {
                                Ok(r) if r.status == 201 => {
                                    let seq = r.json()["receipts"][0]["seq"].as_u64().expect("seq");
                                    acked.lock().unwrap().insert(key, seq);
                                }
                                // Killed mid-request: not acknowledged, may or may not be there.
                                Ok(_) | Err(_) => {}
                            }
                            i += 1;
                        }
                    })
                })
                .collect();
            // Kill at a random moment 50-400 ms in.
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            std::thread::sleep(Duration::from_millis(50 + rng_state % 350));
            gw.kill();
            stop.store(true, Ordering::Relaxed);
            for w in writers {
                w.join().expect("writer");
            }
        }
        let acknowledged = acknowledged.lock().unwrap().clone();
        assert!(
            acknowledged.len() > KILLS,
            "the writers got appends through: {}",
            acknowledged.len()
        );

        // Every acknowledged event is there exactly once, at its seq.
        let gw = Gateway::start_with(&ledger, anchored);
        let size = size_over_api(&gw, &t, "crash");
        let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut from = 0;
        while from < size {
            let page = gw
                .get(
                    &format!("/v1/chains/crash/events?from={from}&limit=1000"),
                    &t,
                )
                .json();
            for e in page["events"].as_array().unwrap() {
                by_key
                    .entry(e["idempotency_key"].as_str().unwrap().to_owned())
                    .or_default()
                    .push(e["seq"].as_u64().unwrap());
            }
            from = page["next_from"].as_u64().unwrap_or(size);
        }
        for (key, seq) in &acknowledged {
            assert_eq!(
                by_key.get(key),
                Some(&vec![*seq]),
                "acknowledged {key} at seq {seq}"
            );
        }
        let seqs: BTreeSet<u64> = by_key.values().flatten().copied().collect();
        assert_eq!(seqs.len() as u64, size, "no seq twice, no gap");

        // Every anchor built before a kill is uploaded after it: the
        // outbox empties, and no anchor is left pending.
        let deadline = Instant::now() + Duration::from_secs(60);
        let anchors = loop {
            let anchors = gw.get("/v1/anchors?chain=crash", &t).json();
            if anchors["backlog"] == 0 {
                break anchors;
            }
            assert!(
                Instant::now() < deadline,
                "anchors left pending: {anchors:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let built = anchors["anchors"].as_array().map_or(0, Vec::len);
        assert!(
            built >= 2,
            "volume anchors were built during the kills: {anchors:#}"
        );
        assert!(gw.terminate().success());
        let out = ledger.run(&["verify", "log", "--chain", "crash"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        // And the anchors — in the bucket, or in the (local, not WORM)
        // anchor directory — vouch for the whole chain.
        let out = match rgw {
            Some((endpoint, bucket)) => {
                let mut cmd = ledger.command();
                common::with_rgw_anchors(&mut cmd, endpoint, bucket);
                cmd.args(["verify", "log", "--chain", "crash", "--bucket", bucket])
                    .output()
                    .expect("verify")
            }
            None => {
                let mirror = ledger.data_dir().join("anchors");
                ledger.run(&[
                    "verify",
                    "log",
                    "--chain",
                    "crash",
                    "--mirror",
                    mirror.to_str().unwrap(),
                ])
            }
        };
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        eprintln!(
            "{} acknowledged of {size} stored across {KILLS} kills; {built} anchors, all uploaded",
            acknowledged.len()
        );
    }
}

#[test]
fn openapi_describes_exactly_the_routes_served() {
    let ledger = Ledger::new(TestDb::sqlite());
    let admin = token(&ledger, "admin", "*");
    let gw = Gateway::start(&ledger);
    let append = gw.append("docs", &admin, r#"{"type":"a.b"}"#);
    assert_eq!(append.status, 201);
    let doc = gw.request("GET", "/openapi.json", None, &[], b"").json();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(|m| (m.to_ascii_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let served: BTreeSet<(String, String)> = stele_server::routes()
        .into_iter()
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
    assert_eq!(documented, served);
    for (method, path) in &served {
        let concrete = path
            .replace("{chain}", "docs")
            .replace("{seq}", "0")
            .replace("consistency", "consistency?from=0");
        let r = gw.request(
            method,
            &concrete,
            Some(&admin),
            &[("Content-Type", "application/json")],
            br#"{"type":"c.d"}"#,
        );
        assert!(
            r.status < 400,
            "{method} {path} is documented but answers {}: {}",
            r.status,
            r.text()
        );
    }
    let r = gw.request(
        "POST",
        "/v1/chains/docs/events?wait=anchored&timeout=20",
        Some(&admin),
        &[("Content-Type", "application/json")],
        br#"{"type":"e.f"}"#,
    );
    assert_eq!(r.json()["anchored"], true, "{}", r.text());
    let metrics = gw.get("/metrics", &admin).text();
    assert!(
        metrics.contains("stele_appended_events_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stele_newest_anchor_age_seconds{chain=\"docs\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stele_http_responses_total{status=\"200\""),
        "{metrics}"
    );
}

#[test]
fn a_revoked_token_is_refused_by_the_running_gateway() {
    let ledger = Ledger::new(TestDb::sqlite());
    let t = token(&ledger, "append", "*");
    let gw = Gateway::start(&ledger);
    assert_eq!(gw.append("audit", &t, r#"{"type":"a.b"}"#).status, 201);
    let listed = ledger.json(&["token", "list"]);
    let id = listed["tokens"][0]["id"].as_str().expect("id").to_owned();
    assert!(
        !listed.to_string().contains(&t[20..]),
        "list shows no secret"
    );
    let out = ledger.run(&["token", "revoke", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = gw.append("audit", &t, r#"{"type":"a.b"}"#);
        if r.status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "revoked token still accepted: {}",
            r.status
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `metrics` token (what a Prometheus scraper holds) reads `/metrics`
/// and nothing else; an append or read token cannot read `/metrics`.
#[test]
fn a_metrics_token_reads_metrics_and_nothing_else() {
    let ledger = Ledger::new(TestDb::sqlite());
    let created = ledger.json(&["token", "create", "--name", "scraper", "--scope", "metrics"]);
    let scraper = created["token"].as_str().expect("token").to_owned();
    let appender = token(&ledger, "append,read", "*");
    let gw = Gateway::start(&ledger);
    assert_eq!(gw.append("ops", &appender, r#"{"type":"a.b"}"#).status, 201);
    let metrics = gw.get("/metrics", &scraper);
    assert_eq!(metrics.status, 200, "{}", metrics.text());
    assert!(metrics.text().contains("stele_appended_events_total 1"));
    for (method, path, body) in [
        ("POST", "/v1/chains/ops/events", r#"{"type":"a.b"}"#),
        ("GET", "/v1/chains", ""),
        ("GET", "/v1/chains/ops/events/0", ""),
        ("GET", "/v1/anchors", ""),
        ("POST", "/v1/verification/run", ""),
    ] {
        let r = gw.request(
            method,
            path,
            Some(&scraper),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(
            (r.status, r.code()),
            (403, "forbidden".to_owned()),
            "{path}"
        );
    }
    let r = gw.get("/metrics", &appender);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(size_over_api(&gw, &appender, "ops"), 1);
}

/// `stele token create` and `stele token revoke` run at once, as separate
/// processes, lose nothing: every token created is listed and every
/// revocation holds (each reads and writes the file under a lock).
#[test]
fn concurrent_token_commands_lose_no_creation_and_no_revocation() {
    let ledger = Ledger::new(TestDb::sqlite());
    let doomed: Vec<String> = (0..6)
        .map(|i| {
            let created = ledger.json(&[
                "token",
                "create",
                "--name",
                &format!("old{i}"),
                "--scope",
                "read",
                "--chain",
                "*",
            ]);
            created["record"]["id"].as_str().expect("id").to_owned()
        })
        .collect();
    let ledger = Arc::new(ledger);
    let mut workers = Vec::new();
    for (i, id) in doomed.iter().enumerate() {
        let (l, id) = (Arc::clone(&ledger), id.clone());
        workers.push(std::thread::spawn(move || l.run(&["token", "revoke", &id])));
        let l = Arc::clone(&ledger);
        workers.push(std::thread::spawn(move || {
            l.run(&[
                "token",
                "create",
                "--name",
                &format!("new{i}"),
                "--scope",
                "append",
                "--chain",
                "*",
            ])
        }));
    }
    for worker in workers {
        let out = worker.join().expect("worker");
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let listed = ledger.json(&["token", "list"]);
    let tokens = listed["tokens"].as_array().expect("tokens");
    for i in 0..6 {
        let named = |name: String| {
            tokens
                .iter()
                .find(|t| t["name"] == name.as_str())
                .unwrap_or_else(|| panic!("{name} lost: {listed:#}"))
        };
        assert!(
            named(format!("old{i}"))["revoked_at"].is_string(),
            "revocation of old{i} lost: {listed:#}"
        );
        assert!(named(format!("new{i}")).get("revoked_at").is_none());
    }
}

#[test]
fn sigterm_answers_appends_in_progress_and_exits_cleanly() {
    let ledger = Ledger::new(TestDb::sqlite());
    let t = token(&ledger, "append,read", "*");
    let gw = Gateway::start(&ledger);
    let addr = gw.addr.clone();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (addr, t) = (addr.clone(), t.clone());
            std::thread::spawn(move || {
                let mut acknowledged = 0u64;
                for i in 0..10_000 {
                    let body =
                        format!(r#"{{"type":"shutdown.test","payload":{{"w":{w},"i":{i}}}}}"#);
                    let auth = format!("Bearer {t}");
                    match request(
                        &addr,
                        "POST",
                        "/v1/chains/s/events",
                        &[
                            ("Authorization", &auth),
                            ("Content-Type", "application/json"),
                        ],
                        body.as_bytes(),
                    ) {
                        Ok(r) if r.status == 201 => acknowledged += 1,
                        _ => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let status = gw.terminate();
    assert!(status.success(), "stele serve exited with {status}");
    let acknowledged: u64 = writers.into_iter().map(|w| w.join().expect("writer")).sum();
    assert!(acknowledged > 0);
    assert_eq!(
        ledger.size("s"),
        acknowledged,
        "every acknowledged append, and only those"
    );
}

#[test]
fn a_connection_stalled_in_its_request_head_is_closed_and_crowds_out_no_one() {
    use std::io::{Read as _, Write as _};
    let ledger = Ledger::new(TestDb::sqlite());
    let t = token(&ledger, "append,read", "*");
    let gw = Gateway::start(&ledger);
    // Slowloris: many connections that send part of a request head, or
    // nothing at all, and then wait.
    let stalled: Vec<std::net::TcpStream> = (0..300)
        .map(|i| {
            let mut stream = std::net::TcpStream::connect(&gw.addr).expect("connect");
            if i % 3 != 0 {
                stream
                    .write_all(b"POST /v1/chains/slow/events HTTP/1.1\r\nHost: x\r\nContent-Le")
                    .expect("a partial head");
            }
            stream
        })
        .collect();
    let started = Instant::now();
    // Meanwhile everyone else is served at once.
    assert_eq!(gw.append("fast", &t, r#"{"type":"a.b"}"#).status, 201);
    assert_eq!(gw.request("GET", "/healthz", None, &[], b"").status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a request waited {:?} behind stalled connections",
        started.elapsed()
    );
    // The gateway closes each stalled connection once the head timeout
    // (10 s) has passed.
    let patience = Duration::from_secs(25);
    for (i, mut stream) in stalled.into_iter().enumerate() {
        let left = patience
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(10));
        stream.set_read_timeout(Some(left)).expect("read timeout");
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!(
                "stalled connection {i} was still open after {:?} ({e})",
                started.elapsed()
            ),
        }
    }
    assert_eq!(gw.append("fast", &t, r#"{"type":"a.b"}"#).status, 201);
    // A connection stalled in its head does not hold up a shutdown.
    let _stalled = std::net::TcpStream::connect(&gw.addr)
        .and_then(|mut s| s.write_all(b"GET /healthz HTTP/1.1\r\n").map(|()| s))
        .expect("a stalled connection");
    std::thread::sleep(Duration::from_millis(200));
    let status = gw
        .terminate_within(Duration::from_secs(20))
        .expect("stele serve did not stop within 20 s of SIGTERM");
    assert!(status.success(), "stele serve exited with {status}");
    assert_eq!(ledger.size("fast"), 2);
}

#[test]
fn bodies_in_flight_are_bounded_in_bytes_and_those_refused_append_nothing() {
    for db in
        both_backends("bodies_in_flight_are_bounded_in_bytes_and_those_refused_append_nothing")
    {
        let ledger = Ledger::new(db);
        const MAX_BODY: usize = 512 * 1024;
        server_settings(
            &ledger,
            &format!(
                "max_request_bytes = {MAX_BODY}\nmax_in_flight_body_bytes = {}",
                2 * MAX_BODY
            ),
        );
        let t = token(&ledger, "append,read", "*");
        let gw = Gateway::start(&ledger);
        assert_eq!(
            gw.append("held", &t, r#"{"type":"seed.event"}"#).status,
            201
        );

        // Slow senders fill the budget: a chunked body (which counts as the
        // largest allowed), then two whose Content-Length is half of that.
        let headers = [
            ("Authorization", format!("Bearer {t}")),
            ("Content-Type", "application/json".to_owned()),
        ];
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let path = "/v1/chains/held/events";
        let chunked = batch_of(10, "held.chunked").into_bytes();
        let mut held = vec![(
            chunked,
            HeldRequest::start(&gw.addr, "POST", path, &headers, None).expect("chunked"),
        )];
        for name in ["held.first", "held.second"] {
            let mut body = batch_of(10, name).into_bytes();
            body.resize(MAX_BODY / 2, b' ');
            // Let in only if its Content-Length, not the largest body, is counted.
            let request = HeldRequest::start(&gw.addr, "POST", path, &headers, Some(body.len()))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            held.push((body, request));
        }
        for (body, request) in &mut held {
            request.send(&body[..100]).expect("part of a body");
        }

        // A further append, however small, is refused, and says when to retry.
        let refused = gw.append("held", &t, r#"{"type":"refused.event"}"#);
        assert_eq!(refused.status, 429, "{}", refused.text());
        assert_eq!(refused.code(), "too_many_requests");
        assert_eq!(refused.header("retry-after"), Some("1"));
        // Reads take no body and are served.
        assert_eq!(size_over_api(&gw, &t, "held"), 1);

        // Once the slow bodies arrive they are appended, and the budget is
        // free again.
        for (body, mut request) in held {
            request.send(&body[100..]).expect("the rest of a body");
            let r = request.finish().expect("the answer");
            assert_eq!(r.status, 201, "{}", r.text());
            assert_eq!(r.json()["appended"], 10, "{}", r.text());
        }
        let r = gw.append("held", &t, r#"{"type":"after.event"}"#);
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(size_over_api(&gw, &t, "held"), 32);
        assert_eq!(ledger.size("held"), 32, "the refused append wrote nothing");
    }
}

#[test]
fn schemathesis_finds_no_server_error_and_no_response_outside_the_schema() {
    stele_store::testkit::live_or_skip!(Schemathesis);
    let schemathesis = std::env::var("STELE_TEST_SCHEMATHESIS").expect("set by live_or_skip");
    let ledger = Ledger::new(TestDb::sqlite());
    let admin = token(&ledger, "admin", "*");
    let gw = Gateway::start(&ledger);
    // Data for the generated requests to reach: chain "default", seqs 0..20.
    let seed = batch_of(20, "seed.event");
    assert_eq!(gw.append("default", &admin, &seed).status, 201);
    // Its cache goes into a temporary directory, not the source tree.
    let work = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(schemathesis)
        .current_dir(work.path())
        .arg("run")
        .arg(format!("http://{}/openapi.json", gw.addr))
        .args(["-H", &format!("Authorization: Bearer {admin}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "40", "--workers", "1"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
    // The server answered everything and is still up.
    assert_eq!(gw.get("/v1/chains/default", &admin).status, 200);
}

#[test]
fn stele_append_sends_through_the_gateway_with_the_same_receipts() {
    let ledger = Ledger::new(TestDb::sqlite());
    let t = token(&ledger, "append,read", "app-*");
    let gw = Gateway::start(&ledger);
    let url = format!("http://{}", gw.addr);
    // A client with no data directory of its own: only the URL and the token.
    let client_dir = tempfile::tempdir().expect("tempdir");
    let client = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stele"))
            .env_remove("STELE_DB")
            .env("STELE_TOKEN", &t)
            .args(["--data-dir", client_dir.path().to_str().unwrap(), "--json"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("stele append");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().expect("output")
    };
    let out = client(
        &[
            "append",
            "--server",
            &url,
            "--chain",
            "app-billing",
            "--type",
            "invoice.sent",
            "--payload",
            r#"{"n":1}"#,
        ],
        "",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let receipt: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(receipt["receipts"][0]["seq"], 0);
    let lines = "{\"type\":\"invoice.paid\",\"idempotency_key\":\"p1\"}\n{\"type\":\"invoice.paid\",\"idempotency_key\":\"p2\"}\n";
    let out = client(
        &[
            "append",
            "--server",
            &url,
            "--chain",
            "app-billing",
            "--jsonl",
            "-",
        ],
        lines,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["appended"],
        2
    );
    // A retry of the same file appends nothing.
    let out = client(
        &[
            "append",
            "--server",
            &url,
            "--chain",
            "app-billing",
            "--jsonl",
            "-",
        ],
        lines,
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["duplicates"],
        2
    );

    // Refusals by the gateway are exit 2 and name the problem; the token never shows.
    let out = client(
        &[
            "append", "--server", &url, "--chain", "payroll", "--type", "a.b",
        ],
        "",
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("forbidden"), "{}", stderr(&out));
    let out = client(
        &[
            "append",
            "--server",
            &url,
            "--chain",
            "app-billing",
            "--type",
            "stele.forged",
        ],
        "",
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("reserved_type"), "{}", stderr(&out));
    assert!(!stderr(&out).contains(&t[20..]));
    // An unreachable gateway could not complete: exit 3.
    let out = client(
        &[
            "append",
            "--server",
            "http://127.0.0.1:9",
            "--chain",
            "app-billing",
            "--type",
            "a.b",
        ],
        "",
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(size_over_api(&gw, &t, "app-billing"), 3);
}

#[test]
fn wait_anchored_answers_with_a_locked_anchor_covering_the_event() {
    stele_store::testkit::live_or_skip!(Rgw);
    use stele_worm::testkit::{create_bucket, env_required, rgw, unique_bucket};
    let endpoint = env_required("STELE_TEST_RGW_ENDPOINT");
    for db in both_backends("wait_anchored_answers_with_a_locked_anchor_covering_the_event") {
        let rt = common::runtime();
        let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("gw-anchor")), true));
        let ledger = Ledger::new(db);
        let t = token(&ledger, "append,read", "*");
        let anchored_env = |cmd: &mut std::process::Command| {
            common::with_rgw_anchors(cmd, &endpoint, s3.bucket());
        };
        let gw = Gateway::start_with(&ledger, anchored_env);
        for i in 0..3 {
            assert_eq!(
                gw.append(
                    "ledger",
                    &t,
                    &format!(r#"{{"type":"warmup.event","payload":{{"i":{i}}}}}"#)
                )
                .status,
                201
            );
        }
        let r = gw.request(
            "POST",
            "/v1/chains/ledger/events?wait=anchored&timeout=20",
            Some(&t),
            &[("Content-Type", "application/json")],
            br#"{"type":"payment.approved","payload":{"amount":"250.00"}}"#,
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let body = r.json();
        assert_eq!(body["anchored"], true, "{body:#}");
        let seq = body["receipts"][0]["seq"].as_u64().expect("seq");
        let anchor = &body["anchor"];
        assert!(
            anchor["tree_size"].as_u64().expect("tree size") > seq,
            "{anchor:#}"
        );
        assert_eq!(anchor["status"], "verified", "{anchor:#}");
        assert_eq!(anchor["lock_mode"], "COMPLIANCE");
        assert!(anchor["version_id"].is_string(), "{anchor:#}");
        assert!(
            anchor["object_key"].as_str().unwrap().contains("ledger"),
            "{anchor:#}"
        );
        // Many waiters at once share anchors rather than each locking its own.
        let waiters: Vec<_> = (0..8)
            .map(|i| {
                let (addr, t) = (gw.addr.clone(), t.clone());
                std::thread::spawn(move || {
                    let auth = format!("Bearer {t}");
                    let body = format!(r#"{{"type":"burst.event","payload":{{"i":{i}}}}}"#);
                    request(
                        &addr,
                        "POST",
                        "/v1/chains/ledger/events?wait=anchored&timeout=20",
                        &[
                            ("Authorization", &auth),
                            ("Content-Type", "application/json"),
                        ],
                        body.as_bytes(),
                    )
                    .expect("request")
                    .json()
                })
            })
            .collect();
        for w in waiters {
            assert_eq!(w.join().expect("waiter")["anchored"], true);
        }
        let anchors = gw.get("/v1/anchors?chain=ledger", &t).json();
        let count = anchors["anchors"].as_array().map_or(0, Vec::len);
        assert!(count < 1 + 8, "8 concurrent waiters made {count} anchors");
        assert_eq!(
            anchors["anchoring"]["last_error"],
            Value::Null,
            "{anchors:#}"
        );

        // A clean stop writes and uploads the shutdown anchor.
        let status = gw.terminate();
        assert!(status.success());
        let listed = ledger.json(&["anchor", "list", "--chain", "ledger"]);
        let last = listed
            .as_array()
            .and_then(|a| a.last())
            .cloned()
            .expect("anchors");
        assert_eq!(last["trigger"], "shutdown", "{listed:#}");
        assert_eq!(last["status"], "verified", "{listed:#}");
        // And an auditor's verification against the bucket passes.
        let mut verify = ledger.command();
        anchored_env(&mut verify);
        let out = verify
            .args(["verify", "log", "--chain", "ledger"])
            .output()
            .expect("verify");
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
}

/// A webhook receiver: answers 200 to every POST and hands over its
/// headers and body.
/// A received webhook: its headers (lowercase names) and body.
type Delivery = (Vec<(String, String)>, Vec<u8>);

fn webhook_listener() -> (String, std::sync::mpsc::Receiver<Delivery>) {
    use std::io::{BufRead as _, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some((n, v)) = h.trim_end().split_once(':') {
                    headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if tx.send((headers, body)).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

/// The signature a receiver expects: HMAC-SHA256 over `<timestamp>.<body>`,
/// with the timestamp from `X-Stele-Timestamp`, which must be recent.
fn hmac_hex(secret: &[u8], headers: &[(String, String)], body: &[u8]) -> String {
    use hmac::Mac as _;
    let timestamp = headers
        .iter()
        .find(|(n, _)| n == "x-stele-timestamp")
        .map(|(_, v)| v.clone())
        .expect("X-Stele-Timestamp");
    let sent: i64 = timestamp.parse().expect("a Unix time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(
        (now - sent).abs() < 300,
        "a fresh delivery: {sent} vs {now}"
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("hmac key");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn scheduled_verification_reports_an_edit_behind_the_servers_back() {
    for db in both_backends("scheduled_verification_reports_an_edit_behind_the_servers_back") {
        let ledger = Ledger::new(db);
        let (hook, received) = webhook_listener();
        server_settings(
            &ledger,
            &format!("verify_interval_secs = 3600\nwebhook_url = \"{hook}\""),
        );
        let secret = "whsec-test-0123456789";
        let admin = token(&ledger, "admin", "*");
        let gw = Gateway::start_with(&ledger, |cmd| {
            cmd.env("STELE_WEBHOOK_SECRET", secret);
        });
        let batch = batch_of(10, "ops.change");
        assert_eq!(gw.append("ops", &admin, &batch).status, 201);

        let clean = run_verification(&gw, &admin, 1);
        assert_eq!(clean["ok"], true, "{clean:#}");
        assert_eq!(clean["chains"][0]["events_checked"], 10);
        let (headers, body) = received
            .recv_timeout(Duration::from_secs(30))
            .expect("first webhook");
        let signature = headers
            .iter()
            .find(|(n, _)| n == "x-stele-signature")
            .map(|(_, v)| v.clone());
        assert_eq!(
            signature,
            Some(format!(
                "sha256={}",
                hmac_hex(secret.as_bytes(), &headers, &body)
            ))
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap()["result"]["ok"],
            true
        );

        // An insider edits seq 4 in the database, behind the server's back.
        ledger.db.exec(
            "UPDATE audit_events SET payload = '{\"i\":999}' WHERE chain_id = 'ops' AND chain_index = 4",
        );
        let found = run_verification(&gw, &admin, 2);
        assert_eq!(found["ok"], false, "{found:#}");
        assert_eq!(found["chains"][0]["first_bad_seq"], 4, "{found:#}");
        let (headers, body) = received
            .recv_timeout(Duration::from_secs(30))
            .expect("second webhook");
        let signature = headers
            .iter()
            .find(|(n, _)| n == "x-stele-signature")
            .map(|(_, v)| v.clone())
            .expect("signed");
        assert_eq!(
            signature,
            format!("sha256={}", hmac_hex(secret.as_bytes(), &headers, &body))
        );
        assert_ne!(
            signature,
            format!("sha256={}", hmac_hex(b"another key", &headers, &body))
        );
        let posted: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(posted["result"]["ok"], false);
        assert_eq!(posted["result"]["chains"][0]["first_bad_seq"], 4);
        let metrics = gw.get("/metrics", &admin).text();
        assert!(metrics.contains("stele_verification_ok 0"), "{metrics}");
        assert!(
            metrics.contains("stele_verification_failed_runs_total 1"),
            "{metrics}"
        );
        assert!(
            !metrics.contains(secret)
                && !body.windows(secret.len()).any(|w| w == secret.as_bytes())
        );
    }
}

#[test]
fn a_webhook_without_a_signing_key_is_refused_at_start() {
    let ledger = Ledger::new(TestDb::sqlite());
    server_settings(&ledger, "webhook_url = \"http://127.0.0.1:9/hook\"");
    let out = ledger
        .command()
        .env_remove("STELE_WEBHOOK_SECRET")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .expect("serve");
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("STELE_WEBHOOK_SECRET"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn https_with_a_certificate_and_plain_http_only_on_loopback() {
    let ledger = Ledger::new(TestDb::sqlite());
    let t = token(&ledger, "append,read", "*");
    let dir = ledger.dir.path();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args([
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian: openssl)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    // Plain HTTP off loopback: refused before binding, exit 2.
    let out = ledger.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("loopback"), "{}", stderr(&out));
    // A key that is not a key: refused, named, its bytes not shown.
    let bad_key = dir.join("bad.pem");
    std::fs::write(
        &bad_key,
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = ledger.run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        bad_key.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("bad.pem") && !stderr(&out).contains("c2VjcmV0"),
        "{}",
        stderr(&out)
    );

    // HTTPS, on every address.
    let mut child = ledger
        .command()
        .args(["--json", "serve", "--listen", "0.0.0.0:0"])
        .args([
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    use std::io::BufRead as _;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let listening: Value = serde_json::from_str(&line).expect("listening line");
    let url = listening["listening"].as_str().unwrap().to_owned();
    assert!(url.starts_with("https://0.0.0.0:"), "{url}");
    let port = url.rsplit(':').next().unwrap().to_owned();
    let curl = |args: &[&str]| {
        std::process::Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "10",
                "--resolve",
                &format!("localhost:{port}:127.0.0.1"),
            ])
            .args(args)
            .output()
            .expect("curl")
    };
    let ca = cert.to_str().unwrap();
    let out = curl(&["--cacert", ca, &format!("https://localhost:{port}/healthz")]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"{"status":"alive"}"#
    );
    let out = curl(&[
        "--cacert",
        ca,
        "-H",
        &format!("Authorization: Bearer {t}"),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"type":"tls.event"}"#,
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        &format!("https://localhost:{port}/v1/chains/secure/events"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201");
    // Not trusted without the CA; no plain HTTP on the TLS port.
    assert!(
        !curl(&[&format!("https://localhost:{port}/healthz")])
            .status
            .success()
    );
    let plain = curl(&[
        "-w",
        "%{http_code}",
        &format!("http://localhost:{port}/healthz"),
    ]);
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ledger.size("secure"), 1);
}

#[test]
fn serve_with_no_flags_on_a_fresh_machine_starts_ready_to_use() {
    use std::io::BufRead as _;
    use std::os::unix::fs::PermissionsExt as _;
    let cwd = tempfile::tempdir().expect("tempdir");
    let start = || {
        let log = std::fs::File::create(cwd.path().join("serve.log")).expect("log");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stele"))
            .current_dir(cwd.path())
            .env_remove("STELE_DB")
            .env_remove("STELE_DATA_DIR")
            .env_remove("AUDIT_ANCHOR_BUCKET")
            .args(["--json", "serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let listening: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let addr = listening["listening"]
            .as_str()
            .unwrap()
            .trim_start_matches("http://")
            .to_owned();
        (child, addr)
    };
    let (mut child, addr) = start();
    let data = cwd.path().join("stele-data");
    let token_file = data.join("first-token");
    let mode = std::fs::metadata(&token_file)
        .expect("first-token")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    let auth = format!("Bearer {token}");
    let r = request(
        &addr,
        "POST",
        "/v1/chains/default/events?proof=true",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        br#"{"type":"user.login"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(cwd.path().join("serve.log")).unwrap();
    assert!(!log.contains(&token), "the token must not reach the log");
    assert!(log.contains("NOT WORM"), "{log}");
    assert!(log.contains("first-token"), "{log}");
    // A second start reuses the ledger and makes no new token.
    let (mut child, addr) = start();
    let r = request(
        &addr,
        "GET",
        "/v1/chains/default",
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(r.json()["size"], 1);
    let _ = child.kill();
    let _ = child.wait();
    let tokens: Value =
        serde_json::from_slice(&std::fs::read(data.join("tokens.json")).unwrap()).unwrap();
    assert_eq!(tokens.as_array().map(Vec::len), Some(1));
}

#[test]
fn scheduled_verification_catches_a_careful_truncation_by_the_store_s_anchor() {
    for db in
        both_backends("scheduled_verification_catches_a_careful_truncation_by_the_store_s_anchor")
    {
        let ledger = Ledger::new(db);
        let admin = token(&ledger, "admin", "*");
        let gw = Gateway::start(&ledger);
        let batch = batch_of(10, "ops.change");
        let r = gw.request(
            "POST",
            "/v1/chains/ops/events?wait=anchored&timeout=20",
            Some(&admin),
            &[("Content-Type", "application/json")],
            batch.as_bytes(),
        );
        assert_eq!(r.json()["anchored"], true, "{}", r.text());
        let clean = run_verification(&gw, &admin, 1);
        assert_eq!(clean["ok"], true, "{clean:#}");
        assert_eq!(
            clean["chains"][0]["newest_anchor"]["in_database"], "matches",
            "{clean:#}"
        );

        // A careful insider: the newest events, their anchor records and the
        // head all rewritten to a consistent shorter chain. The database
        // alone now verifies clean; the anchor in the store does not agree.
        ledger.db.exec(
            "DELETE FROM audit_events WHERE chain_id = 'ops' AND chain_index >= 6; \
             DELETE FROM stele_anchors WHERE chain_id = 'ops'; \
             UPDATE stele_chains SET tree_size = 6, \
               head_hash = (SELECT event_hash FROM audit_events WHERE chain_id = 'ops' AND chain_index = 5), \
               last_ts = (SELECT ts FROM audit_events WHERE chain_id = 'ops' AND chain_index = 5) \
             WHERE chain_id = 'ops'",
        );
        let out = ledger.run(&["verify", "log", "--chain", "ops"]);
        assert_eq!(
            code(&out),
            0,
            "the database alone cannot see this: {}",
            stderr(&out)
        );
        let found = run_verification(&gw, &admin, 2);
        assert_eq!(found["ok"], false, "{found:#}");
        let said = found["chains"][0]["newest_anchor"]["in_database"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(said.contains("fewer than the 10"), "{found:#}");
    }
}

/// The gateway signs checkpoints and proofs only over trees it has checked
/// (canonical bytes, leaves, HMAC links, Merkle nodes). An event rewritten
/// in the database with its leaf and Merkle nodes (plain SHA-256, no key)
/// gets no signed proof, from the running gateway or a restarted one; a
/// checkpoint of the tree already checked keeps its genuine root.
#[test]
fn no_checkpoint_or_proof_is_signed_over_an_event_rewritten_behind_the_servers_back() {
    for db in both_backends(
        "no_checkpoint_or_proof_is_signed_over_an_event_rewritten_behind_the_servers_back",
    ) {
        let ledger = Ledger::new(db);
        let reader = token(&ledger, "append,read", "*");
        let admin = token(&ledger, "admin", "*");
        let gw = Gateway::start(&ledger);
        // Ten anchored events, ten after the anchor.
        let r = gw.request(
            "POST",
            "/v1/chains/pay/events?wait=anchored&timeout=20",
            Some(&reader),
            &[("Content-Type", "application/json")],
            batch_of(10, "pay.sent").as_bytes(),
        );
        assert_eq!(r.json()["anchored"], true, "{}", r.text());
        assert_eq!(
            gw.append("pay", &reader, &batch_of(10, "pay.sent")).status,
            201
        );
        let genuine = gw.get("/v1/chains/pay/checkpoint", &reader);
        assert_eq!(genuine.status, 200, "{}", genuine.text());
        let genuine_root = genuine.json()["root_hash"].clone();
        let proved = gw.get("/v1/chains/pay/events/12?proof=true", &reader);
        assert_eq!(proved.status, 200, "{}", proved.text());

        rewrite_event(&ledger.db, "pay", 12, r#"{"i":12,"to":"acct-666"}"#);
        let needed = hmac_a_forger_needs(&ledger, "pay", 12);

        let refused = |gw: &Gateway, path: &str| {
            let r = gw.get(path, &reader);
            assert_eq!(
                (r.status, r.code()),
                (500, "ledger_check_failed".to_owned()),
                "{path}: {}",
                r.text()
            );
            assert!(!r.text().contains("\u{2014} "), "{path}: no signature line");
            assert!(
                !r.text().contains(&needed),
                "{path} tells a forger the HMAC the row needs: {}",
                r.text()
            );
        };
        for path in [
            "/v1/chains/pay/events/12?proof=true",
            "/v1/chains/pay/proofs/inclusion/12",
            "/v1/chains/pay/proofs/inclusion/12?format=tlog-proof",
            "/v1/chains/pay/proofs/inclusion/3?tree_size=20",
        ] {
            refused(&gw, path);
        }
        let again = gw.get("/v1/chains/pay/checkpoint", &reader);
        assert_eq!(again.status, 200, "{}", again.text());
        assert_eq!(again.json()["root_hash"], genuine_root, "the genuine root");
        // The scheduled job finds the edit, and names no HMAC either.
        let found = run_verification(&gw, &admin, 1);
        assert_eq!(found["ok"], false, "{found:#}");
        assert!(!found.to_string().contains(&needed), "{found:#}");

        // Restarted, the check starts at the anchor and stops at seq 12.
        gw.kill();
        let gw = Gateway::start(&ledger);
        for path in [
            "/v1/chains/pay/checkpoint",
            "/v1/chains/pay/events/3?proof=true",
            "/v1/chains/pay/proofs/consistency?from=10",
        ] {
            refused(&gw, path);
        }
    }
}

/// The scheduled job reads each anchor key's first version, the one the
/// create-only writer stored and Object Lock keeps, and checks what the
/// bucket says of it (checksum, lock). An insider holding the database and
/// write access to the bucket cuts the chain back to an older anchor and
/// hides the newest one behind a junk version and a delete marker: a job
/// reading current versions would settle on the older anchor and pass.
#[test]
fn scheduled_verification_reads_the_first_version_of_each_anchor_key() {
    stele_store::testkit::live_or_skip!(Rgw);
    use stele_worm::testkit::{create_bucket, env_required, rgw, unique_bucket};
    let endpoint = env_required("STELE_TEST_RGW_ENDPOINT");
    for db in both_backends("scheduled_verification_reads_the_first_version_of_each_anchor_key") {
        let rt = common::runtime();
        let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("gw-readback")), true));
        let ledger = Ledger::new(db);
        let admin = token(&ledger, "admin", "*");
        let gw = Gateway::start_with(&ledger, |cmd| {
            common::with_rgw_anchors(cmd, &endpoint, s3.bucket());
        });
        let mut anchors = Vec::new();
        for round in 0..2 {
            let r = gw.request(
                "POST",
                "/v1/chains/ops/events?wait=anchored&timeout=20",
                Some(&admin),
                &[("Content-Type", "application/json")],
                batch_of(10, &format!("ops.round{round}")).as_bytes(),
            );
            assert_eq!(r.json()["anchored"], true, "{}", r.text());
            anchors.push(r.json()["anchor"].clone());
        }
        let newest = &anchors[1];
        assert_eq!(newest["tree_size"], 20, "{newest:#}");
        let clean = run_verification(&gw, &admin, 1);
        assert_eq!(clean["ok"], true, "{clean:#}");
        let read = &clean["chains"][0]["newest_anchor"];
        assert_eq!(read["object_key"], newest["object_key"], "{clean:#}");
        assert_eq!(read["version_id"], newest["version_id"], "{clean:#}");
        assert_eq!(read["in_database"], "matches", "{clean:#}");
        let in_store = read["in_store"].as_str().unwrap_or("");
        assert!(
            in_store.starts_with("matches") && in_store.contains("locked COMPLIANCE until"),
            "{clean:#}"
        );

        // The database cut back to the first anchor, consistently.
        ledger.db.exec(
            "DELETE FROM audit_events WHERE chain_id = 'ops' AND chain_index >= 10; \
             DELETE FROM stele_anchors WHERE chain_id = 'ops' AND anchor_seq >= 1; \
             UPDATE stele_chains SET tree_size = 10, \
               head_hash = (SELECT event_hash FROM audit_events WHERE chain_id = 'ops' AND chain_index = 9), \
               last_ts = (SELECT ts FROM audit_events WHERE chain_id = 'ops' AND chain_index = 9) \
             WHERE chain_id = 'ops'",
        );
        // The newest anchor hidden: junk over its key, then a delete marker.
        let key = newest["object_key"].as_str().expect("key").to_owned();
        rt.block_on(
            s3.client()
                .put_object()
                .bucket(s3.bucket())
                .key(&key)
                .body(b"not an anchor".to_vec().into())
                .send(),
        )
        .expect("junk version");
        rt.block_on(
            s3.client()
                .delete_object()
                .bucket(s3.bucket())
                .key(&key)
                .send(),
        )
        .expect("delete marker");
        assert!(
            !rt.block_on(s3.list("anchors/ops/"))
                .expect("list")
                .contains(&key),
            "the key no longer lists"
        );

        let found = run_verification(&gw, &admin, 2);
        assert_eq!(found["ok"], false, "{found:#}");
        let read = &found["chains"][0]["newest_anchor"];
        assert_eq!(read["anchor_seq"], 1, "{found:#}");
        assert_eq!(read["version_id"], newest["version_id"], "{found:#}");
        assert!(
            read["in_database"]
                .as_str()
                .unwrap_or("")
                .contains("fewer than the 20"),
            "{found:#}"
        );
    }
}

/// A stop that arrives while anchoring waits to start again after an error
/// still writes the shutdown anchors. Here the error is the HMAC keyring,
/// made unreadable (0644 is refused) while the server runs; it is mended,
/// and SIGTERM arrives during the pause before the next attempt.
#[test]
fn sigterm_during_an_anchoring_error_pause_still_writes_the_shutdown_anchor() {
    use std::os::unix::fs::PermissionsExt as _;
    let ledger = Ledger::new(TestDb::sqlite());
    let admin = token(&ledger, "admin", "*");
    let gw = Gateway::start(&ledger);
    assert_eq!(
        gw.append("ops", &admin, &batch_of(5, "ops.change")).status,
        201
    );
    let keyring = ledger.data_dir().join("keys").join("hmac-keyring.json");
    let mode = |m: u32| {
        std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(m)).expect("chmod")
    };
    mode(0o644);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = gw.get("/v1/anchors", &admin).json();
        if status["anchoring"]["last_error"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "no anchoring error: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The pauses after errors are 1 s, then 2 s, then 4 s: 3.5 s after the
    // first error, anchoring waits in its third pause.
    std::thread::sleep(Duration::from_millis(3500));
    mode(0o600);
    let status = gw.terminate();
    assert!(status.success(), "stele serve exited with {status}");
    let anchors = ledger.json(&["anchor", "list"]);
    let shutdown: Vec<_> = anchors
        .as_array()
        .expect("anchors")
        .iter()
        .filter(|a| a["trigger"] == "shutdown" && a["chain_id"] == "ops")
        .collect();
    assert_eq!(shutdown.len(), 1, "{anchors:#}");
    assert_eq!(shutdown[0]["tree_size"], 5, "{anchors:#}");
}

/// An append whose commit is not confirmed before the request timeout is
/// answered 504 `commit_unconfirmed`, never 408 (which says the request was
/// stopped): the events may be written, and they are here, once another
/// process lets go of SQLite's write lock. The same request again, with
/// its Idempotency-Key, returns their receipt and appends nothing.
#[test]
fn an_append_whose_commit_outlasts_the_request_timeout_is_unconfirmed_not_stopped() {
    let ledger = Ledger::new(TestDb::sqlite());
    server_settings(&ledger, "request_timeout_secs = 3");
    let t = token(&ledger, "append,read", "*");
    let gw = Gateway::start(&ledger);
    assert_eq!(gw.append("held", &t, r#"{"type":"a.b"}"#).status, 201);
    let stele_store::DbLocation::Sqlite(path) = ledger.db.location.clone() else {
        panic!("a SQLite ledger");
    };
    let (locked, is_locked) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch("BEGIN IMMEDIATE").expect("write lock");
        locked.send(()).expect("signal");
        std::thread::sleep(Duration::from_secs(5));
        conn.execute_batch("COMMIT").expect("release");
    });
    is_locked.recv().expect("locked");
    let send = || {
        gw.request(
            "POST",
            "/v1/chains/held/events",
            Some(&t),
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", "pay-77"),
            ],
            br#"{"type":"payment.sent","payload":{"n":77}}"#,
        )
    };
    let first = send();
    assert_eq!(
        (first.status, first.code()),
        (504, "commit_unconfirmed".to_owned()),
        "{}",
        first.text()
    );
    assert!(first.header("retry-after").is_none());
    holder.join().expect("holder");
    let retry = send();
    assert_eq!(retry.status, 200, "{}", retry.text());
    assert_eq!(
        retry.json()["receipts"][0]["duplicate"],
        true,
        "{}",
        retry.text()
    );
    assert_eq!(size_over_api(&gw, &t, "held"), 2, "written once");
}

/// `/readyz` answers 503 `anchor_backlog` while more anchors wait for the
/// anchor store than `max_anchor_backlog`, and ready again once they land:
/// an anchor that could not be written is retried, not dropped.
#[test]
fn readyz_reports_an_anchor_backlog_over_its_limit_until_it_drains() {
    let ledger = Ledger::new(TestDb::sqlite());
    server_settings(&ledger, "max_anchor_backlog = 0");
    let admin = token(&ledger, "admin", "*");
    let gw = Gateway::start_with(&ledger, volume_anchors);
    let ready = gw.request("GET", "/readyz", None, &[], b"");
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["anchor_backlog"], 0);
    // The anchor directory turned into a file: writes to it fail.
    let anchors = ledger.data_dir().join("anchors");
    let moved = ledger.data_dir().join("anchors.moved");
    if anchors.exists() {
        std::fs::rename(&anchors, &moved).expect("move the anchor directory");
    }
    std::fs::write(&anchors, b"not a directory").expect("block it");
    assert_eq!(
        gw.append("ops", &admin, &batch_of(100, "ops.change"))
            .status,
        201
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let r = gw.request("GET", "/readyz", None, &[], b"");
        if r.status == 503 {
            break r;
        }
        assert!(Instant::now() < deadline, "still ready: {}", r.text());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(refused.code(), "anchor_backlog", "{}", refused.text());
    assert!(refused.header("retry-after").is_some());
    std::fs::remove_file(&anchors).expect("unblock");
    if moved.exists() {
        std::fs::rename(&moved, &anchors).expect("move it back");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = gw.request("GET", "/readyz", None, &[], b"");
        if r.status == 200 {
            assert_eq!(r.json()["anchor_backlog"], 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backlog did not drain: {}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let listed = gw.get("/v1/anchors?chain=ops", &admin).json();
    assert!(
        listed["anchors"]
            .as_array()
            .expect("anchors")
            .iter()
            .any(|a| a["tree_size"] == 100 && a["status"] != "pending"),
        "{listed:#}"
    );
}

/// `/readyz` answers 503 `schema_mismatch` once the database's schema is no
/// longer the one the running gateway writes (a newer stele migrated it),
/// and ready again when it is.
#[test]
fn readyz_reports_a_schema_migrated_behind_the_servers_back() {
    for db in both_backends("readyz_reports_a_schema_migrated_behind_the_servers_back") {
        let ledger = Ledger::new(db);
        let gw = Gateway::start(&ledger);
        let ready = gw.request("GET", "/readyz", None, &[], b"");
        assert_eq!(ready.status, 200, "{}", ready.text());
        ledger.db.exec(
            "INSERT INTO stele_schema (version, applied_at) \
             SELECT MAX(version) + 1, '2026-12-07T00:00:00Z' FROM stele_schema",
        );
        let r = gw.request("GET", "/readyz", None, &[], b"");
        assert_eq!(
            (r.status, r.code()),
            (503, "schema_mismatch".to_owned()),
            "{}",
            r.text()
        );
        ledger.db.exec(
            "DELETE FROM stele_schema WHERE version = (SELECT MAX(version) FROM stele_schema)",
        );
        let r = gw.request("GET", "/readyz", None, &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

/// A chain cut back below what the gateway checked stays refused: the
/// checked tree is kept, not dropped, when a check fails, so a second
/// request cannot start over from an older state and sign the shorter tree.
#[test]
fn a_chain_cut_back_below_its_checked_tree_stays_refused() {
    for db in both_backends("a_chain_cut_back_below_its_checked_tree_stays_refused") {
        let ledger = Ledger::new(db);
        let reader = token(&ledger, "append,read", "*");
        let gw = Gateway::start(&ledger);
        assert_eq!(
            gw.append("cut", &reader, &batch_of(20, "cut.event")).status,
            201
        );
        assert_eq!(gw.get("/v1/chains/cut/checkpoint", &reader).status, 200);
        ledger.db.exec(
            "DELETE FROM audit_events WHERE chain_id = 'cut' AND chain_index >= 10; \
             UPDATE stele_chains SET tree_size = 10, \
               head_hash = (SELECT event_hash FROM audit_events WHERE chain_id = 'cut' AND chain_index = 9), \
               last_ts = (SELECT ts FROM audit_events WHERE chain_id = 'cut' AND chain_index = 9) \
             WHERE chain_id = 'cut'",
        );
        for attempt in 0..3 {
            let r = gw.get("/v1/chains/cut/checkpoint", &reader);
            assert_eq!(
                (r.status, r.code()),
                (500, "ledger_check_failed".to_owned()),
                "attempt {attempt}: {}",
                r.text()
            );
            assert!(r.text().contains("fewer than the 20"), "{}", r.text());
        }
    }
}

/// A key rotated in while the gateway serves (`stele keys rotate`, then an
/// append by another process with the new key) is read again by the
/// gateway's checker: its checkpoints and proofs go on, no false alarm.
#[test]
fn checkpoints_go_on_after_a_key_rotation_while_serving() {
    let ledger = Ledger::new(TestDb::sqlite());
    let reader = token(&ledger, "append,read", "*");
    let gw = Gateway::start(&ledger);
    assert_eq!(
        gw.append("rot", &reader, &batch_of(5, "rot.event")).status,
        201
    );
    assert_eq!(gw.get("/v1/chains/rot/checkpoint", &reader).status, 200);
    assert_eq!(code(&ledger.run(&["keys", "rotate"])), 0);
    let out = ledger.run(&["append", "--chain", "rot", "--type", "rot.rotated"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = gw.get("/v1/chains/rot/checkpoint", &reader);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["tree_size"], 6);
    let r = gw.get("/v1/chains/rot/events/5?proof=true", &reader);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["tlog_proof"].is_string(), "{}", r.text());
}
