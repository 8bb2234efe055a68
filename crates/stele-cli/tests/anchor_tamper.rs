//! `stele anchor` against an attacker, with the real binary: an unanchored
//! event rewritten in the database (leaf and Merkle nodes recomputed, no key)
//! is refused before signing on SQLite and PostgreSQL; an outbox anchor
//! edited to a far date is a named error, never a panic; a pre-created anchor
//! key in the RGW bucket does not block the chain; no anchor is written for
//! an unknown chain, nor a second pending one for an unchanged tree; no
//! checkpoint or proof is signed over such a rewrite.

mod common;

use common::{Ledger, blob, code, hmac_a_forger_needs, jsonl, rewrite_event, runtime, stderr};
use serde_json::Value;
use stele_store::testkit::TestDb;
use stele_worm::testkit::{create_bucket, env_required, rgw, unique_bucket};

fn s3_command(l: &Ledger, endpoint: &str, bucket: &str) -> std::process::Command {
    let mut cmd = l.command();
    common::with_rgw_anchors(&mut cmd, endpoint, bucket);
    cmd
}

fn anchor_list(l: &Ledger) -> Vec<Value> {
    l.json(&["anchor", "list"]).as_array().unwrap().clone()
}

fn rewritten_unanchored_event_is_not_anchored(db: TestDb) {
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("cli-presign")), true));
    let endpoint = env_required("STELE_TEST_RGW_ENDPOINT");
    let l = Ledger::new(db);
    l.run_stdin(
        &["append", "--chain", "pay", "--jsonl", "-"],
        &jsonl(0..10, "a"),
    );
    let out = s3_command(&l, &endpoint, s3.bucket())
        .args(["anchor", "now", "--chain", "pay"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    l.run_stdin(
        &["append", "--chain", "pay", "--jsonl", "-"],
        &jsonl(10..20, "a"),
    );

    rewrite_event(&l.db, "pay", 12, r#"{"n":12,"pad":"paid to acct-666"}"#);

    for _ in 0..2 {
        let out = s3_command(&l, &endpoint, s3.bucket())
            .args(["anchor", "now", "--chain", "pay"])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(code(&out), 1, "tampering is exit 1: {err}");
        assert!(
            err.contains("refusing to anchor")
                && err.contains("seq 12")
                && err.contains("HMAC")
                && err.contains("`stele verify log`"),
            "{err}"
        );
    }
    // Nothing signed: one anchor in the outbox and in the bucket.
    assert_eq!(anchor_list(&l).len(), 1);
    assert_eq!(
        rt.block_on(s3.list("anchors/pay/")).unwrap().len(),
        1,
        "nothing uploaded"
    );
}

#[test]
fn sqlite_rewritten_unanchored_event_is_not_anchored() {
    stele_store::testkit::live_or_skip!(Rgw);
    rewritten_unanchored_event_is_not_anchored(TestDb::sqlite());
}

#[test]
fn postgres_rewritten_unanchored_event_is_not_anchored() {
    stele_store::testkit::live_or_skip!(Rgw, Postgres);
    rewritten_unanchored_event_is_not_anchored(TestDb::postgres());
}

/// `stele checkpoint` and `stele proof inclusion` sign only what checks. An
/// event rewritten with its leaf and Merkle nodes (plain SHA-256, no key) is
/// served by storage under a root of its own; before this check, that root
/// was signed and the forgery's `tlog-proof` verified with the public key.
fn no_checkpoint_is_signed_over_a_rewritten_event(db: TestDb) {
    let l = Ledger::new(db);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().to_str().unwrap();
    for chain in ["pay", "ops"] {
        l.run_stdin(
            &["append", "--chain", chain, "--jsonl", "-"],
            &jsonl(0..10, "a"),
        );
    }
    let out = l.run(&["anchor", "now", "--local-dir", local]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for chain in ["pay", "ops"] {
        l.run_stdin(
            &["append", "--chain", chain, "--jsonl", "-"],
            &jsonl(10..20, "a"),
        );
    }
    // Unaltered, both sign.
    let signed = l.json(&["checkpoint", "--chain", "pay"]);
    assert_eq!(signed["tree_size"], 20, "{signed}");
    let out = l.run(&["proof", "inclusion", "--chain", "pay", "--seq", "12"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // After the last anchor: the HMAC link gives it away.
    rewrite_event(&l.db, "pay", 12, r#"{"n":12,"pad":"paid to acct-666"}"#);
    let needed = hmac_a_forger_needs(&l, "pay", 12);
    for args in [
        vec!["verify", "log", "--chain", "pay"],
        vec!["anchor", "now", "--local-dir", local],
        vec!["checkpoint", "--chain", "pay"],
        vec!["checkpoint", "--chain", "pay", "--tree-size", "20"],
        vec!["proof", "inclusion", "--chain", "pay", "--seq", "12"],
        vec![
            "proof",
            "inclusion",
            "--chain",
            "pay",
            "--seq",
            "12",
            "--format",
            "tlog-proof",
        ],
        vec!["proof", "inclusion", "--chain", "pay", "--seq", "3"],
    ] {
        let out = l.run(&args);
        let err = stderr(&out);
        let all = format!("{err}{}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(code(&out), 1, "{args:?}: tampering is exit 1: {err}");
        assert!(
            all.contains("seq 12") && all.contains("HMAC"),
            "{args:?}: {all}"
        );
        assert!(
            !all.contains(&needed),
            "{args:?} tells a forger the HMAC the row needs: {all}"
        );
        if args[0] != "verify" {
            assert!(out.stdout.is_empty(), "{args:?}: nothing signed is printed");
        }
    }
    // Before it: the stored frontier no longer gives the root the anchor signed.
    rewrite_event(&l.db, "ops", 4, r#"{"n":4,"pad":"paid to acct-666"}"#);
    let out = l.run(&["checkpoint", "--chain", "ops"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("anchored events give root") && err.contains("signed root"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn sqlite_no_checkpoint_is_signed_over_a_rewritten_event() {
    no_checkpoint_is_signed_over_a_rewritten_event(TestDb::sqlite());
}

#[test]
fn postgres_no_checkpoint_is_signed_over_a_rewritten_event() {
    stele_store::testkit::live_or_skip!(Postgres);
    no_checkpoint_is_signed_over_a_rewritten_event(TestDb::postgres());
}

#[test]
fn edited_outbox_anchor_is_a_named_error_not_a_panic() {
    let l = Ledger::new(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().to_str().unwrap();
    l.run_stdin(
        &["append", "--chain", "pay", "--jsonl", "-"],
        &jsonl(0..3, "a"),
    );
    let out = l.run(&["anchor", "now", "--local-dir", local]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let record = &anchor_list(&l)[0];
    let ts = record["ts_utc"].as_str().unwrap().to_owned();
    let body =
        l.db.query_text("SELECT CAST(body AS TEXT) FROM stele_anchors WHERE anchor_seq = 0")
            .unwrap();
    let forged = body.replace(&ts, "9999-12-31T23:30:00Z");
    l.db.exec(&format!(
        "UPDATE stele_anchors SET body = {} WHERE anchor_seq = 0",
        blob(&l.db, forged.as_bytes())
    ));
    l.run_stdin(
        &["append", "--chain", "pay", "--jsonl", "-"],
        &jsonl(3..5, "a"),
    );
    let before = std::fs::read_dir(dir.path()).unwrap().count();
    for args in [
        vec!["anchor", "now", "--local-dir", local],
        vec!["anchor", "now", "--local-dir", local],
        vec!["anchor", "run", "--once", "--local-dir", local],
    ] {
        let out = l.run(&args);
        let err = stderr(&out);
        assert_eq!(code(&out), 1, "{args:?}: {err}");
        assert!(
            err.contains("stele_anchors")
                && err.contains("anchor_seq 0")
                && err.contains("tampered"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_eq!(
        anchor_list(&l).len(),
        1,
        "nothing built on the forged anchor"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before);
}

/// The object key of an outbox row is not covered by the anchor's
/// signature: a pending row pointed at another seq's key is refused as
/// tampering before the genuine anchor is uploaded there.
#[test]
fn a_pending_anchor_pointed_at_another_key_is_not_uploaded() {
    let l = Ledger::new(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().to_str().unwrap();
    l.run_stdin(
        &["append", "--chain", "pay", "--jsonl", "-"],
        &jsonl(0..3, "a"),
    );
    // The store is unreachable: anchor #0 waits in the outbox.
    let mut cmd = l.command();
    common::with_rgw_anchors(&mut cmd, "http://127.0.0.1:9", "unreachable-bucket");
    let out = cmd.args(["anchor", "now"]).output().unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let key = anchor_list(&l)[0]["object_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let moved = key.replace("-0000000000.json", "-0000000007.json");
    l.db.exec(&format!(
        "UPDATE stele_anchors SET object_key = '{moved}' WHERE anchor_seq = 0"
    ));
    let out = l.run(&["anchor", "now", "--local-dir", local]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("object key") && err.contains("tampered"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn squatted_anchor_key_is_reported_and_does_not_block() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("cli-squat")), true));
    let endpoint = env_required("STELE_TEST_RGW_ENDPOINT");
    let l = Ledger::new(TestDb::sqlite());
    l.run_stdin(
        &["append", "--chain", "pay", "--jsonl", "-"],
        &jsonl(0..5, "a"),
    );
    // The store is unreachable: the anchor waits in the outbox under its key.
    let out = s3_command(&l, "http://127.0.0.1:9", s3.bucket())
        .args(["anchor", "now"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let key = anchor_list(&l)[0]["object_key"]
        .as_str()
        .unwrap()
        .to_owned();
    // Someone who may only PutObject takes that key.
    rt.block_on(
        s3.client()
            .put_object()
            .bucket(s3.bucket())
            .key(&key)
            .body(b"not an anchor".to_vec().into())
            .send(),
    )
    .unwrap();
    // More events arrive; the next `anchor now` uploads the waiting anchor and a new one.
    l.run_stdin(
        &["append", "--chain", "pay", "--jsonl", "-"],
        &jsonl(5..6, "a"),
    );

    let out = s3_command(&l, &endpoint, s3.bucket())
        .args(["anchor", "now"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert!(
        err.contains(&key) && err.contains("stele did not write"),
        "the squatter is reported: {err}"
    );
    let records = anchor_list(&l);
    assert_eq!(records.len(), 2);
    assert!(
        records.iter().all(|r| r["status"] == "verified"),
        "{records:?}"
    );
    assert_eq!(records[0]["squatted_key"], key.as_str());
    assert_ne!(records[0]["object_key"], key.as_str());
    assert!(records[1]["squatted_key"].is_null());
    for r in &records {
        let k = r["object_key"].as_str().unwrap();
        let bytes = rt.block_on(s3.get(k)).unwrap();
        assert_eq!(
            stele_worm::sha256_hex(&bytes),
            r["sha256"].as_str().unwrap()
        );
    }
    let text = l.run(&["anchor", "list"]);
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .contains(&format!("its intended key {key} was taken")),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
}

/// Anchors cannot be removed once written: none for a chain that does not
/// exist, and no second pending anchor for a tree that did not change.
#[test]
fn no_anchor_for_an_unknown_chain_nor_twice_for_an_unchanged_tree() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("cli-nope")), true));
    let endpoint = env_required("STELE_TEST_RGW_ENDPOINT");
    let l = Ledger::new(TestDb::sqlite());
    l.run_stdin(
        &["append", "--chain", "pay", "--jsonl", "-"],
        &jsonl(0..3, "a"),
    );
    let out = s3_command(&l, &endpoint, s3.bucket())
        .args(["anchor", "now", "--chain", "nope"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(
        err.contains("nope") && err.contains("nothing written"),
        "{err}"
    );
    assert!(anchor_list(&l).is_empty());
    assert!(rt.block_on(s3.list("anchors/")).unwrap().is_empty());

    // The bucket is unreachable: asking again does not pile up anchors.
    for _ in 0..3 {
        let out = s3_command(&l, "http://127.0.0.1:9", s3.bucket())
            .args(["anchor", "now", "--chain", "pay"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 3, "{}", stderr(&out));
    }
    assert_eq!(anchor_list(&l).len(), 1, "one pending anchor for one tree");
    l.run_stdin(
        &["append", "--chain", "pay", "--jsonl", "-"],
        &jsonl(3..4, "a"),
    );
    let out = s3_command(&l, "http://127.0.0.1:9", s3.bucket())
        .args(["anchor", "now", "--chain", "pay"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(anchor_list(&l).len(), 2, "a changed tree gets its anchor");
    let out = s3_command(&l, &endpoint, s3.bucket())
        .args(["anchor", "now", "--chain", "pay"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = anchor_list(&l);
    assert_eq!(records.len(), 2);
    assert!(
        records.iter().all(|r| r["status"] == "verified"),
        "{records:?}"
    );
}

/// One chain's tampered outbox row is that chain's problem: the other
/// chain's anchor is uploaded, and the command still ends with exit 1.
#[test]
fn a_tampered_row_of_one_chain_does_not_stop_the_others() {
    let l = Ledger::new(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().to_str().unwrap();
    for chain in ["alpha", "beta"] {
        l.run_stdin(
            &["append", "--chain", chain, "--jsonl", "-"],
            &jsonl(0..3, "a"),
        );
    }
    // The store is unreachable: both anchors wait in the outbox.
    let mut cmd = l.command();
    common::with_rgw_anchors(&mut cmd, "http://127.0.0.1:9", "unreachable-bucket");
    let out = cmd.args(["anchor", "now"]).output().unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let body =
        l.db.query_text(
            "SELECT CAST(body AS TEXT) FROM stele_anchors WHERE chain_id = 'alpha' AND anchor_seq = 0",
        )
        .unwrap();
    let root = serde_json::from_str::<Value>(&body).unwrap()["root_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = body.replace(&root, &"ab".repeat(32));
    l.db.exec(&format!(
        "UPDATE stele_anchors SET body = {} WHERE chain_id = 'alpha' AND anchor_seq = 0",
        blob(&l.db, forged.as_bytes())
    ));
    // beta's pending anchor covers its tree: nothing new is built, and the
    // pass uploads it while refusing alpha.
    let out = l.run(&["anchor", "now", "--chain", "beta", "--local-dir", local]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(err.contains("alpha") && err.contains("tampered"), "{err}");
    let rows = anchor_list(&l);
    let status = |chain: &str| {
        rows.iter()
            .find(|r| r["chain_id"] == chain)
            .map(|r| r["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(status("beta").as_deref(), Some("uploaded"), "{rows:?}");
    assert_eq!(status("alpha").as_deref(), Some("pending"), "{rows:?}");
}
