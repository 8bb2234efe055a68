//! The `stele` binary, driven as a user or a script would, against SQLite and
//! the real PostgreSQL: bad input, receipts, proofs, exports, exit codes,
//! several processes appending at once, and kill -9.

mod common;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};

use common::{Ledger, code, jsonl, stderr};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use stele_store::testkit::TestDb;

macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $case() { super::$case(super::Ledger::new(super::TestDb::sqlite())); })*
        }
        mod postgres {
            $(#[test] fn $case() {
                stele_store::testkit::live_or_skip!(Postgres);
                super::$case(super::Ledger::new(super::TestDb::postgres()));
            })*
        }
    };
}

on_every_backend!(
    bad_input_is_refused_and_writes_nothing,
    receipts_batches_and_idempotent_retries,
    tampering_exits_1_and_names_the_seq,
    key_rotation_keeps_the_log_verifiable,
    concurrent_processes_append_one_gap_free_chain,
    kill_9_never_loses_an_acknowledged_event,
    an_auditor_verifies_with_db_alone,
);

fn bad_input_is_refused_and_writes_nothing(l: Ledger) {
    assert!(
        l.run(&["append", "--chain", "prod", "--type", "seed"])
            .status
            .success()
    );
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--chain".into(),
                "prod".into(),
                "--type".into(),
                "a".into(),
                "--payload".into(),
                "{\"unterminated\": ".into(),
            ],
            "malformed event JSON",
        ),
        (
            vec![
                "--chain".into(),
                "prod".into(),
                "--type".into(),
                "a".into(),
                "--payload".into(),
                format!("{{\"blob\":\"{}\"}}", "x".repeat(70_000)),
            ],
            "over the limit of 65536 bytes",
        ),
        (
            vec![
                "--chain".into(),
                "Prod/../x".into(),
                "--type".into(),
                "a".into(),
            ],
            "invalid chain id",
        ),
        (
            vec![
                "--chain".into(),
                "prod".into(),
                "--type".into(),
                "has space".into(),
            ],
            "invalid event type",
        ),
        (
            vec![
                "--chain".into(),
                "prod".into(),
                "--type".into(),
                "a".into(),
                "--payload".into(),
                "{\"n\": 18446744073709551615}".into(),
            ],
            "lose precision",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["append".to_owned()];
        full.extend(args);
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let out = l.run(&full);
        assert_eq!(code(&out), 2, "{full:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{full:?}: expected {expected:?} in {}",
            stderr(&out)
        );
    }

    // One bad line in a batch: the whole batch is refused, the line named.
    let mut batch = jsonl(0..5, "b");
    batch = batch.replacen(
        "{\"type\":\"test.event\"",
        "{\"type\":\"test.event\",\"typo\":1",
        3,
    );
    let out = l.run_stdin(&["append", "--chain", "prod", "--jsonl", "-"], &batch);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("line 1:") && stderr(&out).contains("nothing was appended"),
        "{}",
        stderr(&out)
    );
    assert_eq!(l.size("prod"), 1);

    // An unknown active key id in the keyring.
    let keyring = l.data_dir().join("keys/hmac-keyring.json");
    let original = std::fs::read_to_string(&keyring).unwrap();
    std::fs::write(
        &keyring,
        original.replace("\"active\": \"k1\"", "\"active\": \"k9\""),
    )
    .unwrap();
    let out = l.run(&["append", "--chain", "prod", "--type", "a"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("unknown HMAC key id \"k9\""),
        "{}",
        stderr(&out)
    );
    std::fs::write(&keyring, &original).unwrap();

    // A key file others can read.
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = l.run(&["append", "--chain", "prod", "--type", "a"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("mode 0644") && stderr(&out).contains("chmod 600"),
        "{}",
        stderr(&out)
    );
    let secret: Value = serde_json::from_str(&original).unwrap();
    assert!(!stderr(&out).contains(secret["keys"][0]["secret"].as_str().unwrap()));
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Unreadable key file.
    let signing = l.data_dir().join("keys/signing.key");
    std::fs::remove_file(&signing).unwrap();
    let out = l.run(&["checkpoint", "--chain", "prod"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("signing.key not found"),
        "{}",
        stderr(&out)
    );
    // The key library says what is missing; the CLI says what to run.
    assert!(stderr(&out).contains("`stele init`"), "{}", stderr(&out));

    // Reading an unknown chain.
    let out = l.run(&["verify", "log", "--chain", "nope"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("unknown chain \"nope\""),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("`stele log chains`"),
        "{}",
        stderr(&out)
    );

    assert_eq!(l.size("prod"), 1, "nothing above may have written");
    let out = l.run(&["verify", "log"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
}

fn receipts_batches_and_idempotent_retries(l: Ledger) {
    let r = l.json(&[
        "append",
        "--chain",
        "prod",
        "--type",
        "user.login",
        "--actor",
        "alice@example.com",
        "--payload",
        "{\"mfa\":true,\"ip\":\"10.0.0.7\"}",
        "--idempotency-key",
        "req-1",
    ]);
    assert_eq!(r["appended"], 1);
    let first = &r["receipts"][0];
    assert_eq!(first["seq"], 0);
    assert_eq!(first["event_hash"].as_str().unwrap().len(), 64);

    let out = l.run_stdin(
        &["--json", "append", "--chain", "prod", "--jsonl", "-"],
        &jsonl(0..100, "batch"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["appended"], 100);
    assert_eq!(r["receipts"][99]["seq"], 100);

    // The same request again: original receipt, nothing appended.
    let again = l.json(&[
        "append",
        "--chain",
        "prod",
        "--type",
        "user.login",
        "--actor",
        "alice@example.com",
        "--payload",
        "{\"ip\":\"10.0.0.7\",\"mfa\":true}",
        "--idempotency-key",
        "req-1",
    ]);
    assert_eq!(again["appended"], 0);
    assert_eq!(again["receipts"][0]["event_hash"], first["event_hash"]);
    assert_eq!(again["receipts"][0]["duplicate"], true);
    // The same key for different content is refused.
    let out = l.run(&[
        "append",
        "--chain",
        "prod",
        "--type",
        "user.logout",
        "--idempotency-key",
        "req-1",
    ]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("already used for a different event"),
        "{}",
        stderr(&out)
    );
    assert_eq!(l.size("prod"), 101);

    // Export: every line recomputes to its leaf hash with an independent JCS pass.
    let out = l.run(&[
        "log", "export", "--chain", "prod", "--from", "0", "--to", "10",
    ]);
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 11);
    for e in &lines {
        let committed = serde_json::json!({
            "chain_id": e["chain_id"], "seq": e["seq"], "ts": e["ts"], "type": e["type"],
            "actor": e["actor"], "payload": e["payload"],
        });
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(serde_json_canonicalizer::to_vec(&committed).unwrap());
        assert_eq!(
            hex::encode(h.finalize()),
            e["leaf_hash"].as_str().unwrap(),
            "seq {}",
            e["seq"]
        );
    }
    assert_eq!(
        lines[0]["payload"],
        serde_json::json!({"ip": "10.0.0.7", "mfa": true})
    );
}

fn tampering_exits_1_and_names_the_seq(l: Ledger) {
    let out = l.run_stdin(
        &["append", "--chain", "prod", "--jsonl", "-"],
        &jsonl(0..300, "t"),
    );
    assert!(out.status.success());
    assert_eq!(code(&l.run(&["verify", "log", "--chain", "prod"])), 0);
    l.db.exec(
        "UPDATE audit_events SET actor = 'mallory' WHERE chain_id = 'prod' AND chain_index = 123",
    );
    let out = l
        .command()
        .args(["--json", "verify", "log", "--chain", "prod"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["chains"][0]["first_bad_seq"], 123);
    assert_eq!(
        report["chains"][0]["findings"][0]["kind"],
        "content_altered"
    );
    let text = l.run(&["verify", "log", "--chain", "prod"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("seq 123: event content altered"));
}

fn key_rotation_keeps_the_log_verifiable(l: Ledger) {
    l.run_stdin(
        &["append", "--chain", "prod", "--jsonl", "-"],
        &jsonl(0..10, "a"),
    );
    let rotated = l.json(&["keys", "rotate"]);
    assert_eq!(
        (
            rotated["previous_key_id"].as_str(),
            rotated["active_key_id"].as_str()
        ),
        (Some("k1"), Some("k2"))
    );
    let r = l.json(&["append", "--chain", "prod", "--type", "after.rotation"]);
    assert_eq!(r["receipts"][0]["key_id"], "k2");
    let keys = l.json(&["keys", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert!(!keys.to_string().contains("secret"));
    assert_eq!(code(&l.run(&["verify", "log"])), 0);
    let out = l.run(&["keys", "rotate", "--key-id", "k1"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

fn concurrent_processes_append_one_gap_free_chain(l: Ledger) {
    let l = &l;
    std::thread::scope(|s| {
        for w in 0..4 {
            s.spawn(move || {
                for b in 0..6 {
                    let out = l.run_stdin(
                        &["append", "--chain", "busy", "--jsonl", "-"],
                        &jsonl(0..50, &format!("w{w}b{b}")),
                    );
                    assert!(out.status.success(), "writer {w}: {}", stderr(&out));
                }
            });
        }
    });
    assert_eq!(l.size("busy"), 1200);
    let out = l
        .command()
        .args(["--json", "verify", "log", "--chain", "busy"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(code(&out), 0, "{report}");
    assert_eq!(report["chains"][0]["events_checked"], 1200);
}

fn kill_9_never_loses_an_acknowledged_event(l: Ledger) {
    use std::os::unix::process::ExitStatusExt as _;
    const BIG: usize = 8_000;
    let mut acknowledged = Vec::new();
    let mut ack = |l: &Ledger, i: usize| {
        let r = l.json(&[
            "append",
            "--chain",
            "prod",
            "--type",
            "ack.test",
            "--idempotency-key",
            &format!("ack-{i}"),
        ]);
        acknowledged.push(r["receipts"][0].clone());
    };
    for i in 0..5 {
        ack(&l, i);
    }
    // Kill large batch appends with SIGKILL at different points of their life
    // (reading input, validating, inside the transaction, committing).
    let mut killed = 0;
    for (round, delay_ms) in [10u64, 60, 150, 300, 600, 1000].into_iter().enumerate() {
        let before = l.size("prod");
        let mut child = l
            .command()
            .args(["append", "--chain", "prod", "--jsonl", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = jsonl(0..BIG, &format!("big{round}"));
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let _ = writer.join();
        if status.signal() == Some(9) {
            killed += 1;
        }
        let after = l.size("prod");
        assert!(
            after == before || after == before + BIG as u64,
            "round {round}: a killed batch half-landed ({before} -> {after})"
        );
        ack(&l, 100 + round);
    }
    assert!(
        killed > 0,
        "no append was killed in flight; the test proved nothing"
    );
    for r in &acknowledged {
        let seq = r["seq"].as_u64().unwrap().to_string();
        let shown = l.json(&[
            "log", "show", "--chain", "prod", "--from", &seq, "--to", &seq,
        ]);
        assert_eq!(
            shown[0]["event_hash"], r["event_hash"],
            "acknowledged seq {seq} lost or changed"
        );
    }
    let out = l.run(&["verify", "log", "--chain", "prod"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn init_keeps_keys_private_and_refuses_to_reinitialize() {
    let l = Ledger::new(TestDb::sqlite());
    for f in ["keys/hmac-keyring.json", "keys/signing.key"] {
        let mode = std::fs::metadata(l.data_dir().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let out = l.run(&["init"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("already initialized"),
        "{}",
        stderr(&out)
    );
    let vkey = l.json(&["keys", "export-verifier"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(vkey.starts_with("stele.test+"), "{vkey}");
    // An uninitialized directory is refused rather than silently created.
    let out = Command::new(env!("CARGO_BIN_EXE_stele"))
        .args(["--data-dir"])
        .arg(l.dir.path().join("elsewhere"))
        .args(["append", "--chain", "c", "--type", "t"])
        .env_remove("STELE_DB")
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("not initialized"), "{}", stderr(&out));
    assert!(
        !l.dir.path().join("elsewhere").exists(),
        "nothing was created"
    );
}

/// An auditor verifies a ledger named with `--db` (an existing file, a
/// PostgreSQL server) from a directory that was never initialized: public
/// data only, nothing written there.
fn an_auditor_verifies_with_db_alone(l: Ledger) {
    l.run_stdin(
        &["append", "--chain", "prod", "--jsonl", "-"],
        &jsonl(0..12, "a"),
    );
    let auditor = l.dir.path().join("auditor");
    let out = Command::new(env!("CARGO_BIN_EXE_stele"))
        .env_remove("STELE_DB")
        .env_remove("STELE_DATA_DIR")
        .arg("--data-dir")
        .arg(&auditor)
        .args([
            "--db",
            &l.db_arg(),
            "--json",
            "verify",
            "log",
            "--chain",
            "prod",
            "--no-hmac",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["chains"][0]["events_checked"], 12, "{report}");
    assert!(!auditor.exists(), "the auditor's directory stays untouched");
}

#[test]
fn proofs_and_checkpoints_verify_offline() {
    let l = Ledger::new(TestDb::sqlite());
    l.run_stdin(
        &["append", "--chain", "prod", "--jsonl", "-"],
        &jsonl(0..77, "p"),
    );
    let vkey = l.json(&["keys", "export-verifier"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();

    let cp = l.json(&["checkpoint", "--chain", "prod"]);
    let verified =
        stele_ledger::checkpoint::verify(cp["checkpoint"].as_str().unwrap(), &vkey).unwrap();
    assert_eq!(
        (verified.origin.as_str(), verified.size),
        ("stele.test/prod", 77)
    );

    let inc = l.json(&[
        "proof",
        "inclusion",
        "--chain",
        "prod",
        "--seq",
        "40",
        "--tree-size",
        "60",
    ]);
    let hashes: Vec<stele_ledger::Hash> = inc["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| stele_ledger::parse_hex_hash(h.as_str().unwrap()).unwrap())
        .collect();
    let root = stele_ledger::parse_hex_hash(inc["root_hash"].as_str().unwrap()).unwrap();
    let leaf = stele_ledger::parse_hex_hash(inc["leaf_hash"].as_str().unwrap()).unwrap();
    stele_ledger::merkle::verify_inclusion(&hashes, 60, root, 40, leaf).unwrap();

    let cons = l.json(&[
        "proof",
        "consistency",
        "--chain",
        "prod",
        "--from",
        "13",
        "--to",
        "77",
    ]);
    let proof: Vec<stele_ledger::Hash> = cons["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| stele_ledger::parse_hex_hash(h.as_str().unwrap()).unwrap())
        .collect();
    let from_root = stele_ledger::parse_hex_hash(cons["from_root"].as_str().unwrap()).unwrap();
    let to_root = stele_ledger::parse_hex_hash(cons["to_root"].as_str().unwrap()).unwrap();
    assert_eq!(to_root, verified.root);
    stele_ledger::merkle::verify_consistency(&proof, 13, from_root, 77, to_root).unwrap();

    let proof_file = l.dir.path().join("seq40.tlog-proof");
    let out = l.run(&[
        "proof",
        "inclusion",
        "--chain",
        "prod",
        "--seq",
        "40",
        "--format",
        "tlog-proof",
        "-o",
        proof_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&proof_file).unwrap();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
    let ok = l.json(&[
        "verify",
        "event",
        "--proof",
        proof_file.to_str().unwrap(),
        "--verifier-key",
        &vkey,
    ]);
    assert_eq!(
        (ok["ok"].as_bool(), ok["seq"].as_u64()),
        (Some(true), Some(40))
    );

    // Change one hash of the audit path: verification fails with exit 1.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[3] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    let bad = l.dir.path().join("bad.tlog-proof");
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    let out = l.run(&["verify", "event", "--proof", bad.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stdout));
    // A verifier key of another log fails too.
    let other = "other.log+00000000+AWB3NPYEZqDXC7Oll2ddYB5fogskk7cKAWpEeUudir9H";
    let out = l.run(&[
        "verify",
        "event",
        "--proof",
        proof_file.to_str().unwrap(),
        "--verifier-key",
        other,
    ]);
    assert_ne!(code(&out), 0);
}

#[test]
fn demo_runs_and_names_the_tampered_event() {
    let out = Command::new(env!("CARGO_BIN_EXE_stele"))
        .args(["demo", "--events", "300"])
        .env_remove("STELE_DB")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("OK   chain production: 300 events"), "{text}");
    // The events went through a real gateway over HTTP.
    assert!(
        text.contains("appended 300 events through the gateway at http://127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("FAIL chain production"), "{text}");
    assert!(text.contains("Demo complete: the edit to seq"), "{text}");
}
