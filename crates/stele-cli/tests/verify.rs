//! The auditor's verification, with every tamper performed for real on the
//! real stores: SQLite, Ceph RGW (COMPLIANCE and GOVERNANCE buckets), an
//! offline mirror and an export file. Each case asserts the exact finding.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use aws_sdk_s3::primitives::ByteStream;
use common::{Ledger, code, jsonl, runtime, stderr};
use serde_json::Value;
use stele_store::DbLocation;
use stele_store::testkit::TestDb;
use stele_worm::S3Worm;
use stele_worm::testkit::{create_bucket, env_required, rgw, unique_bucket};

fn with_s3(cmd: &mut Command, bucket: &str) {
    common::with_rgw_anchors(cmd, &env_required("STELE_TEST_RGW_ENDPOINT"), bucket);
    cmd.env_remove("AUDIT_ANCHOR_INTERVAL_MINUTES");
}

fn stele(l: &Ledger, bucket: &str, args: &[&str]) -> Output {
    let mut cmd = l.command();
    with_s3(&mut cmd, bucket);
    cmd.args(args).output().unwrap()
}

/// Runs a verification with --json; returns (exit code, report).
fn verify(l: &Ledger, bucket: &str, args: &[&str]) -> (i32, Value) {
    let mut full = vec!["--json", "verify"];
    full.extend(args);
    let out = stele(l, bucket, &full);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} / {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        )
    });
    (code(&out), report)
}

fn kinds(report: &Value) -> Vec<(String, String, Option<u64>, Option<u64>)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["aspect"].as_str().unwrap().to_owned(),
                f["kind"].as_str().unwrap().to_owned(),
                f["seq"].as_u64(),
                f["anchor_seq"].as_u64(),
            )
        })
        .collect()
}

/// Whether the report lists `key` as an object that is not our anchor.
fn foreign(report: &Value, key: &str) -> bool {
    report["warnings"].as_array().is_some_and(|w| {
        w.iter()
            .any(|w| w["kind"] == "foreign_object" && w["subject"] == key)
    })
}

/// Appends `batches` batches of 50 events to `prod`, anchoring after each.
fn anchored_ledger(l: &Ledger, bucket: &str, batches: usize) {
    for b in 0..batches {
        let out = l.run_stdin(
            &["append", "--chain", "prod", "--jsonl", "-"],
            &jsonl(0..50, &format!("b{b}")),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let out = stele(l, bucket, &["anchor", "now"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
}

fn mirror(rt: &tokio::runtime::Runtime, s3: &S3Worm, dir: &Path) {
    for key in rt.block_on(s3.list("")).unwrap() {
        let path = dir.join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, rt.block_on(s3.get(&key)).unwrap()).unwrap();
    }
}

#[test]
fn a_clean_ledger_verifies_from_the_bucket_a_mirror_and_an_export() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("verify-clean")), true));
    let l = Ledger::new(TestDb::sqlite());
    anchored_ledger(&l, s3.bucket(), 4);
    let vkey = l.json(&["keys", "export-verifier"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();

    let (c, r) = verify(
        &l,
        s3.bucket(),
        &[
            "anchors",
            "--chain",
            "prod",
            "--bucket",
            s3.bucket(),
            "--verifier-key",
            &vkey,
        ],
    );
    assert_eq!(c, 0, "{r:#}");
    assert_eq!(
        (
            r["integrity"]["ok"].as_bool(),
            r["completeness"]["ok"].as_bool()
        ),
        (Some(true), Some(true))
    );
    assert_eq!(r["anchors_checked"], 4);

    let (c, r) = verify(
        &l,
        s3.bucket(),
        &[
            "log",
            "--chain",
            "prod",
            "--bucket",
            s3.bucket(),
            "--verifier-key",
            &vkey,
        ],
    );
    assert_eq!(c, 0, "{r:#}");
    assert_eq!(r["events_checked"], 200);

    let dir = tempfile::tempdir().unwrap();
    mirror(&rt, &s3, dir.path());
    let export = dir.path().join("prod.jsonl");
    let out = l.run(&[
        "log",
        "export",
        "--chain",
        "prod",
        "-o",
        export.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let m = dir.path().to_str().unwrap();
    let (c, r) = verify(
        &l,
        s3.bucket(),
        &[
            "log",
            "--chain",
            "prod",
            "--export",
            export.to_str().unwrap(),
            "--mirror",
            m,
            "--verifier-key",
            &vkey,
            "--no-hmac",
        ],
    );
    assert_eq!(c, 0, "{r:#}");

    // Bytes altered in the offline copy.
    let key = r["timeline"][2]["key"].as_str().unwrap().to_owned();
    let path = dir.path().join(&key);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"trigger\":\"manual\"", "\"trigger\":\"time\"");
    std::fs::write(&path, text).unwrap();
    let html = dir.path().join("report.html");
    let html_arg = html.to_str().unwrap();
    let (c, r) = verify(
        &l,
        s3.bucket(),
        &[
            "anchors",
            "--chain",
            "prod",
            "--mirror",
            m,
            "--verifier-key",
            &vkey,
            "--html",
            html_arg,
        ],
    );
    assert_eq!(c, 1);
    // Its signature no longer verifies: it is not an anchor of ours, and
    // anchor #2 is missing.
    assert!(
        kinds(&r).contains(&(
            "completeness".into(),
            "missing_anchor".into(),
            None,
            Some(2)
        )),
        "{r:#}"
    );
    assert!(foreign(&r, &key), "{r:#}");
    rendered_report_shows_every_finding(&html, &r);
    std::fs::write(&path, rt.block_on(s3.get(&key)).unwrap()).unwrap();

    // A trailing line appended to the export.
    let mut lines = std::fs::read_to_string(&export).unwrap();
    let last: Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    let mut forged = last.clone();
    forged["seq"] = Value::from(200);
    forged["payload"] = serde_json::json!({"approved": true});
    lines.push_str(&format!("{forged}\n"));
    std::fs::write(&export, lines).unwrap();
    let (c, r) = verify(
        &l,
        s3.bucket(),
        &[
            "log",
            "--chain",
            "prod",
            "--export",
            export.to_str().unwrap(),
            "--mirror",
            m,
            "--verifier-key",
            &vkey,
            "--no-hmac",
        ],
    );
    assert_eq!(c, 1);
    let k = kinds(&r);
    assert!(
        k.contains(&(
            "integrity".into(),
            "unanchored_events".into(),
            Some(200),
            None
        )),
        "{r:#}"
    );
    assert!(
        k.iter()
            .any(|(_, kind, seq, _)| kind == "content_altered" && *seq == Some(200)),
        "{r:#}"
    );
}

#[test]
fn database_tampering_is_named_against_the_anchors() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("verify-db")), true));
    let l = Ledger::new(TestDb::sqlite());
    anchored_ledger(&l, s3.bucket(), 3);
    let vkey = l.json(&["keys", "export-verifier"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let args = [
        "log",
        "--chain",
        "prod",
        "--bucket",
        s3.bucket(),
        "--verifier-key",
        vkey.as_str(),
    ];

    // Edit a payload.
    l.db.exec(
        "UPDATE audit_events SET payload = '{\"n\":77,\"pad\":\"edited\"}' WHERE chain_index = 77",
    );
    let (c, r) = verify(&l, s3.bucket(), &args);
    assert_eq!(c, 1);
    assert!(
        kinds(&r)
            .iter()
            .any(|(a, k, s, _)| a == "integrity" && k == "content_altered" && *s == Some(77)),
        "{r:#}"
    );
    assert!(
        kinds(&r)
            .iter()
            .any(|(_, k, _, a)| k == "anchor_root_mismatch" && *a == Some(1)),
        "{r:#}"
    );
}

/// Runs one SQL tamper on a fresh anchored ledger and returns the verification report.
fn tampered_report(name: &str, sql: &str) -> Value {
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket(name)), true));
    let l = Ledger::new(TestDb::sqlite());
    anchored_ledger(&l, s3.bucket(), 3);
    let vkey = l.json(&["keys", "export-verifier"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    l.db.exec(sql);
    let (c, r) = verify(
        &l,
        s3.bucket(),
        &[
            "log",
            "--chain",
            "prod",
            "--bucket",
            s3.bucket(),
            "--verifier-key",
            &vkey,
        ],
    );
    assert_eq!(c, 1, "{r:#}");
    r
}

#[test]
fn deleted_inserted_and_swapped_events_are_named() {
    stele_store::testkit::live_or_skip!(Rgw);
    let has = |r: &Value, aspect: &str, kind: &str, seq: u64| {
        kinds(r)
            .iter()
            .any(|(a, k, s, _)| a == aspect && k == kind && *s == Some(seq))
    };
    let r = tampered_report(
        "verify-del",
        "DELETE FROM audit_events WHERE chain_index = 60",
    );
    assert!(has(&r, "completeness", "missing_events", 60), "{r:#}");

    // Insert a row at seq 30, shifting the later ones up.
    let r = tampered_report(
        "verify-ins",
        "UPDATE audit_events SET chain_index = -chain_index - 1 WHERE chain_index >= 30;
         UPDATE audit_events SET chain_index = -chain_index WHERE chain_index < 0;
         INSERT INTO audit_events SELECT chain_id, 30, ts, event_type, 'mallory', payload, NULL, key_id, leaf_hash, event_hash, merkle_nodes
           FROM audit_events WHERE chain_index = 29;",
    );
    assert!(has(&r, "integrity", "content_altered", 30), "{r:#}");
    assert!(
        kinds(&r)
            .iter()
            .any(|(_, k, _, _)| k == "unaccounted_events" || k == "anchor_root_mismatch"),
        "{r:#}"
    );

    let r = tampered_report(
        "verify-swap",
        "UPDATE audit_events SET chain_index = -1 WHERE chain_index = 110;
         UPDATE audit_events SET chain_index = 110 WHERE chain_index = 111;
         UPDATE audit_events SET chain_index = 111 WHERE chain_index = -1;",
    );
    assert!(has(&r, "integrity", "content_altered", 110), "{r:#}");
    assert!(has(&r, "integrity", "content_altered", 111), "{r:#}");
}

#[test]
fn rewriting_with_the_hmac_key_and_truncating_are_caught_by_the_anchors() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("verify-rewrite")), true));
    let l = Ledger::new(TestDb::sqlite());
    anchored_ledger(&l, s3.bucket(), 3);
    let vkey = l.json(&["keys", "export-verifier"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();

    // The insider rebuilds the whole log with one event changed, recomputing every
    // leaf, HMAC link and Merkle node with the real keys, and swaps the database.
    let export = l.run(&["log", "export", "--chain", "prod"]);
    let forged = tempfile::tempdir().unwrap();
    let forged_db = forged.path().join("ledger.db");
    let mut lines = String::new();
    for line in String::from_utf8(export.stdout).unwrap().lines() {
        let mut e: Value = serde_json::from_str(line).unwrap();
        if e["seq"] == 120 {
            e["payload"] = serde_json::json!({"n": 20, "pad": "nothing to see"});
        }
        lines.push_str(
            &serde_json::json!({"type": e["type"], "actor": e["actor"], "payload": e["payload"]})
                .to_string(),
        );
        lines.push('\n');
    }
    let forged_cmd = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stele"));
        cmd.env_remove("STELE_DB")
            .arg("--data-dir")
            .arg(l.data_dir())
            .arg("--db")
            .arg(&forged_db);
        cmd
    };
    let out = forged_cmd()
        .args(["append", "--chain", "prod", "--jsonl", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            std::io::Write::write_all(&mut c.stdin.take().unwrap(), lines.as_bytes())?;
            c.wait_with_output()
        });
    assert!(out.unwrap().status.success());
    let mut cmd = forged_cmd();
    with_s3(&mut cmd, s3.bucket());
    let out = cmd
        .args([
            "--json",
            "verify",
            "log",
            "--chain",
            "prod",
            "--bucket",
            s3.bucket(),
            "--verifier-key",
            &vkey,
        ])
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(code(&out), 1, "{r:#}");
    let k = kinds(&r);
    assert!(
        !k.iter()
            .any(|(_, kind, _, _)| kind == "content_altered" || kind == "chain_link_broken"),
        "rows are self-consistent: {r:#}"
    );
    assert!(
        k.contains(&(
            "integrity".into(),
            "anchor_root_mismatch".into(),
            Some(100),
            Some(2)
        )),
        "seq 120 lies in anchor #2's span 100..=149: {r:#}"
    );

    // Truncate the tail after an anchor.
    l.db.exec("DELETE FROM audit_events WHERE chain_index >= 140; UPDATE stele_chains SET tree_size = 140");
    let (c, r) = verify(
        &l,
        s3.bucket(),
        &[
            "log",
            "--chain",
            "prod",
            "--bucket",
            s3.bucket(),
            "--verifier-key",
            &vkey,
        ],
    );
    assert_eq!(c, 1);
    assert!(
        kinds(&r).contains(&(
            "completeness".into(),
            "log_truncated".into(),
            Some(140),
            Some(2)
        )),
        "{r:#}"
    );
}

#[test]
fn governance_bypass_replacement_and_forks_are_caught_in_the_bucket() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("verify-gov")), true));
    let l = Ledger::new(TestDb::sqlite());
    let gov = |args: &[&str]| {
        let mut cmd = l.command();
        with_s3(&mut cmd, s3.bucket());
        cmd.env("AUDIT_ANCHOR_MODE", "GOVERNANCE")
            .args(args)
            .output()
            .unwrap()
    };
    for b in 0..3 {
        l.run_stdin(
            &["append", "--chain", "prod", "--jsonl", "-"],
            &jsonl(0..20, &format!("g{b}")),
        );
        assert_eq!(code(&gov(&["anchor", "now"])), 0);
    }
    let vkey = l.json(&["keys", "export-verifier"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let anchors = l.json(&["anchor", "list"]);
    let key1 = anchors[1]["object_key"].as_str().unwrap().to_owned();
    let v1 = anchors[1]["version_id"].as_str().unwrap().to_owned();
    let args = [
        "anchors",
        "--chain",
        "prod",
        "--bucket",
        s3.bucket(),
        "--verifier-key",
        vkey.as_str(),
        "--mode",
        "GOVERNANCE",
    ];
    assert_eq!(verify(&l, s3.bucket(), &args).0, 0);

    // Replace anchor #1 under GOVERNANCE with bypass, with a validly formatted
    // anchor signed by another key (another ledger's anchor #1).
    let other = Ledger::new(TestDb::sqlite());
    other.run_stdin(
        &["append", "--chain", "prod", "--jsonl", "-"],
        &jsonl(0..40, "x"),
    );
    let other_bucket = rt.block_on(create_bucket(rgw(&unique_bucket("verify-other")), true));
    for _ in 0..2 {
        assert_eq!(
            code(&stele(&other, other_bucket.bucket(), &["anchor", "now"])),
            0
        );
    }
    let forged_key = other.json(&["anchor", "list"])[1]["object_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = rt.block_on(other_bucket.get(&forged_key)).unwrap();
    rt.block_on(
        s3.client()
            .delete_object()
            .bucket(s3.bucket())
            .key(&key1)
            .version_id(&v1)
            .bypass_governance_retention(true)
            .send(),
    )
    .unwrap();
    rt.block_on(
        s3.client()
            .put_object()
            .bucket(s3.bucket())
            .key(&key1)
            .body(ByteStream::from(forged))
            .send(),
    )
    .unwrap();
    let (c, r) = verify(&l, s3.bucket(), &args);
    assert_eq!(c, 1);
    // The replacement claims nothing: anchor #1 is missing.
    let k = kinds(&r);
    assert!(
        k.iter().any(|(a, kind, _, s)| a == "completeness"
            && kind == "missing_anchor"
            && *s == Some(1)),
        "{r:#}"
    );
    assert!(foreign(&r, &key1), "{r:#}");

    // Two anchors claiming the same anchor_seq: a fork, signed with the real key.
    let fork_src = tempfile::tempdir().unwrap();
    let fork = Ledger {
        dir: fork_src,
        db: TestDb::sqlite(),
    };
    std::fs::create_dir_all(fork.data_dir()).unwrap();
    copy_dir(&l.data_dir().join("keys"), &fork.data_dir().join("keys"));
    std::fs::copy(
        l.data_dir().join("stele.toml"),
        fork.data_dir().join("stele.toml"),
    )
    .unwrap();
    fork.run_stdin(
        &["append", "--chain", "prod", "--jsonl", "-"],
        &jsonl(0..25, "fork"),
    );
    // `anchor now` refuses to fork the bucket's history, so the copy anchors
    // into a directory and its anchors are put into the bucket by hand.
    let fork_out = tempfile::tempdir().unwrap();
    let fork_dir = fork_out.path().to_str().unwrap().to_owned();
    for _ in 0..3 {
        let out = fork.run(&["anchor", "now", "--local-dir", &fork_dir]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    for r in fork.json(&["anchor", "list"]).as_array().unwrap() {
        let key = r["object_key"].as_str().unwrap();
        let body = std::fs::read(fork_out.path().join(key)).unwrap();
        rt.block_on(
            s3.client()
                .put_object()
                .bucket(s3.bucket())
                .key(key)
                .body(ByteStream::from(body))
                .send(),
        )
        .unwrap();
    }
    let (c, r) = verify(&l, s3.bucket(), &args);
    assert_eq!(c, 1);
    let k = kinds(&r);
    assert!(
        k.iter()
            .any(|(a, kind, _, s)| a == "integrity" && kind == "fork" && *s == Some(2)),
        "{r:#}"
    );
}

#[test]
fn one_event_is_verified_offline_against_an_anchor() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("verify-event")), true));
    let l = Ledger::new(TestDb::sqlite());
    anchored_ledger(&l, s3.bucket(), 2);
    let vkey = l.json(&["keys", "export-verifier"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let anchors = l.json(&["anchor", "list"]);
    let (key0, key1) = (
        anchors[0]["object_key"].as_str().unwrap().to_owned(),
        anchors[1]["object_key"].as_str().unwrap().to_owned(),
    );
    let dir = tempfile::tempdir().unwrap();
    let proof = dir.path().join("seq42.tlog-proof");
    let out = l.run(&[
        "proof",
        "inclusion",
        "--chain",
        "prod",
        "--seq",
        "42",
        "--tree-size",
        "100",
        "--format",
        "tlog-proof",
        "-o",
        proof.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let p = proof.to_str().unwrap();

    // Against anchor #1 fetched from the bucket by key: the same tree.
    let out = stele(
        &l,
        s3.bucket(),
        &[
            "--json",
            "verify",
            "event",
            "--proof",
            p,
            "--verifier-key",
            &vkey,
            "--anchor",
            &key1,
            "--bucket",
            s3.bucket(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    // Against a local copy of anchor #0, which covers only 50 events.
    let file0 = dir.path().join("anchor0.json");
    std::fs::write(&file0, rt.block_on(s3.get(&key0)).unwrap()).unwrap();
    let out = stele(
        &l,
        s3.bucket(),
        &[
            "--json",
            "verify",
            "event",
            "--proof",
            p,
            "--verifier-key",
            &vkey,
            "--anchor",
            file0.to_str().unwrap(),
        ],
    );
    // A wrong anchor for the proof is a usage error, not tampering.
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("covers 50 events; seq 42 is not among them")
            || r["error"].as_str().unwrap().contains("tree size 100"),
        "{r}"
    );
    // A proof at another size than the anchor's says how to make the right one.
    let proof2 = dir.path().join("seq7.tlog-proof");
    l.run(&[
        "proof",
        "inclusion",
        "--chain",
        "prod",
        "--seq",
        "7",
        "--tree-size",
        "60",
        "--format",
        "tlog-proof",
        "-o",
        proof2.to_str().unwrap(),
    ]);
    let out = stele(
        &l,
        s3.bucket(),
        &[
            "--json",
            "verify",
            "event",
            "--proof",
            proof2.to_str().unwrap(),
            "--verifier-key",
            &vkey,
            "--anchor",
            file0.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("--chain prod --seq 7 --tree-size 50"),
        "{r}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_deleted_newest_anchor_is_caught_by_cadence() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("verify-newest")), true));
    let l = Ledger::new(TestDb::sqlite());
    let gov = |args: &[&str]| {
        let mut cmd = l.command();
        with_s3(&mut cmd, s3.bucket());
        cmd.env("AUDIT_ANCHOR_MODE", "GOVERNANCE")
            .args(args)
            .output()
            .unwrap()
    };
    // Start just after a minute boundary, so the two anchors below fall in
    // consecutive one-minute intervals whatever second the test starts at.
    while !(1..=5).contains(&(time::OffsetDateTime::now_utc().second())) {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    l.run(&["append", "--chain", "prod", "--type", "a"]);
    assert_eq!(code(&gov(&["anchor", "now"])), 0);
    // The next anchor is due a minute later; it is written, then deleted with a governance bypass.
    std::thread::sleep(std::time::Duration::from_secs(62));
    l.run(&["append", "--chain", "prod", "--type", "b"]);
    assert_eq!(code(&gov(&["anchor", "now"])), 0);
    let vkey = l.json(&["keys", "export-verifier"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let args = [
        "anchors",
        "--chain",
        "prod",
        "--bucket",
        s3.bucket(),
        "--verifier-key",
        vkey.as_str(),
        "--mode",
        "GOVERNANCE",
        "--interval-minutes",
        "1",
        "--grace-minutes",
        "0",
    ];
    assert_eq!(verify(&l, s3.bucket(), &args).0, 0);
    let newest = l.json(&["anchor", "list"])[1].clone();
    rt.block_on(
        s3.client()
            .delete_object()
            .bucket(s3.bucket())
            .key(newest["object_key"].as_str().unwrap())
            .version_id(newest["version_id"].as_str().unwrap())
            .bypass_governance_retention(true)
            .send(),
    )
    .unwrap();
    let (c, r) = verify(&l, s3.bucket(), &args);
    assert_eq!(c, 1, "{r:#}");
    assert_eq!(
        (
            r["integrity"]["ok"].as_bool(),
            r["completeness"]["ok"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert!(
        kinds(&r)
            .iter()
            .any(|(a, k, _, _)| a == "completeness" && k == "stale"),
        "{r:#}"
    );
}

/// Loads the HTML report in headless Chromium: the script runs without errors
/// and every finding is on the rendered page.
fn rendered_report_shows_every_finding(html: &Path, report: &Value) {
    stele_store::testkit::live_or_skip!(Chromium);
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium (Debian package `chromium`, installed by scripts/test-services.sh)");
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        dom.contains("data-script=\"ok\""),
        "the report's script did not run"
    );
    for line in log.lines().filter(|l| l.contains("CONSOLE")) {
        assert!(
            !line.contains("Uncaught") && !line.contains("Error"),
            "script error in the report: {line}"
        );
    }
    let findings = report["findings"].as_array().unwrap();
    assert!(!findings.is_empty());
    for f in findings {
        for field in ["kind", "subject"] {
            let text = f[field]
                .as_str()
                .unwrap()
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            assert!(
                dom.contains(&text),
                "finding {field} {text:?} not on the rendered page"
            );
        }
    }
    assert!(dom.contains("<svg id=\"timeline\""), "timeline missing");
}

#[test]
fn a_replacement_anchor_for_another_history_is_not_an_extension() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("verify-ext")), true));
    let l = Ledger::new(TestDb::sqlite());
    let gov = |ledger: &Ledger, args: &[&str]| {
        let mut cmd = ledger.command();
        with_s3(&mut cmd, s3.bucket());
        cmd.env("AUDIT_ANCHOR_MODE", "GOVERNANCE")
            .args(args)
            .output()
            .unwrap()
    };
    for b in 0..2 {
        l.run_stdin(
            &["append", "--chain", "prod", "--jsonl", "-"],
            &jsonl(0..20, &format!("e{b}")),
        );
        assert_eq!(code(&gov(&l, &["anchor", "now"])), 0);
    }
    // The insider copies the database and keys as they are at anchor #1 ...
    let copy = Ledger {
        dir: tempfile::tempdir().unwrap(),
        db: TestDb::sqlite(),
    };
    std::fs::create_dir_all(copy.data_dir()).unwrap();
    copy_dir(&l.data_dir().join("keys"), &copy.data_dir().join("keys"));
    std::fs::copy(
        l.data_dir().join("stele.toml"),
        copy.data_dir().join("stele.toml"),
    )
    .unwrap();
    let DbLocation::Sqlite(to) = &copy.db.location else {
        unreachable!()
    };
    l.db.sqlite_backup(to);
    // ... the real history goes on and is anchored (#2) ...
    l.run_stdin(
        &["append", "--chain", "prod", "--jsonl", "-"],
        &jsonl(0..20, "real"),
    );
    assert_eq!(code(&gov(&l, &["anchor", "now"])), 0);
    // ... while in the copy the early history is rewritten (the Merkle node over
    // seqs 0..=31) and a different anchor #2 is signed with the real key.
    copy.db
        .exec("UPDATE audit_events SET merkle_nodes = zeroblob(160) WHERE chain_index = 31");
    copy.run_stdin(
        &["append", "--chain", "prod", "--jsonl", "-"],
        &jsonl(0..20, "other"),
    );
    // The insider signs anchor #2 over that tree with the real key and their
    // own code: stele's anchorer refuses to, since the stored nodes no longer
    // give anchor #1's signed root.
    let out = {
        let signer = stele_keys::KeyDir::new(copy.data_dir().join("keys"))
            .signer()
            .unwrap();
        let chain = stele_ledger::ChainId::new("prod").unwrap();
        let (prev, prev_anchor, head, root, proof) = rt.block_on(async {
            let store = copy.db.open().await;
            let prev = store.last_anchor(&chain).await.unwrap().unwrap();
            let prev_anchor = stele_anchor::Anchor::from_bytes(&prev.body).unwrap();
            let head = store.head(&chain).await.unwrap().unwrap();
            let (_, root) = store.tree_root(&chain, None).await.unwrap();
            let (_, _, proof) = store
                .consistency_proof(&chain, prev_anchor.tree_size, head.size)
                .await
                .unwrap();
            store.close().await;
            (prev, prev_anchor, head, root, proof)
        });
        let ts = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap()
            .max(prev_anchor.time().unwrap());
        let anchor = stele_anchor::Anchor::sign(
            &stele_anchor::AnchorInput {
                chain: &chain,
                anchor_seq: 2,
                trigger: stele_anchor::Trigger::Manual,
                tree_size: head.size,
                root,
                last_hash: Some(head.head_hash),
                key_id: &prev_anchor.key_id,
                ts,
                db_snapshot_lsn: None,
                prev_anchor_hash: Some(stele_anchor::object_hash(&prev.body)),
                consistency_proof: &proof,
            },
            &signer,
        )
        .unwrap();
        (
            stele_anchor::object_key(None, &chain, ts, 2).unwrap(),
            anchor.to_bytes().unwrap(),
        )
    };
    // Swap it in for the real #2 with a governance bypass.
    let real2 = l.json(&["anchor", "list"])[2].clone();
    rt.block_on(
        s3.client()
            .delete_object()
            .bucket(s3.bucket())
            .key(real2["object_key"].as_str().unwrap())
            .version_id(real2["version_id"].as_str().unwrap())
            .bypass_governance_retention(true)
            .send(),
    )
    .unwrap();
    rt.block_on(
        s3.client()
            .put_object()
            .bucket(s3.bucket())
            .key(&out.0)
            .body(ByteStream::from(out.1))
            .send(),
    )
    .unwrap();
    let vkey = l.json(&["keys", "export-verifier"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (c, r) = verify(
        &l,
        s3.bucket(),
        &[
            "anchors",
            "--chain",
            "prod",
            "--bucket",
            s3.bucket(),
            "--verifier-key",
            &vkey,
            "--mode",
            "GOVERNANCE",
        ],
    );
    assert_eq!(c, 1, "{r:#}");
    assert!(
        kinds(&r)
            .iter()
            .any(|(a, k, _, s)| a == "integrity" && k == "not_an_extension" && *s == Some(2)),
        "{r:#}"
    );
}
