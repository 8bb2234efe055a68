//! A squatted anchor key, for real: someone who may PutObject takes the key
//! the next anchor was going to be written at, the anchorer writes it at its
//! alternate key, and `stele verify anchors` (the real binary, Ceph RGW)
//! passes with the squatter named as a warning — while a real anchor that
//! is replaced or mislabelled still fails.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Ledger, code, jsonl, runtime, stderr};
use serde_json::Value;
use stele_store::testkit::TestDb;
use stele_worm::S3Worm;
use stele_worm::testkit::{create_bucket, env_required, rgw, unique_bucket};

fn s3_command(l: &Ledger, endpoint: &str, bucket: &str) -> Command {
    let mut cmd = l.command();
    common::with_rgw_anchors(&mut cmd, endpoint, bucket);
    cmd.env_remove("AUDIT_ANCHOR_INTERVAL_MINUTES")
        .env_remove("AUDIT_ANCHOR_PREFIX")
        .env_remove("STELE_EVIDENCE_BUCKET");
    cmd
}

fn anchor_list(l: &Ledger) -> Vec<Value> {
    l.json(&["anchor", "list"]).as_array().unwrap().clone()
}

fn vkey(l: &Ledger) -> String {
    l.json(&["keys", "export-verifier"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A ledger with anchors #0 and #1 in a new bucket, where anchor #0's
/// intended key was taken by `squatter` before it could be written.
/// Returns the ledger, the bucket and the squatted key.
fn squatted(rt: &tokio::runtime::Runtime, name: &str, squatter: &[u8]) -> (Ledger, S3Worm, String) {
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket(name)), true));
    let endpoint = env_required("STELE_TEST_RGW_ENDPOINT");
    let l = Ledger::new(TestDb::sqlite());
    l.run_stdin(
        &["append", "--chain", "pay", "--jsonl", "-"],
        &jsonl(0..5, "a"),
    );
    // The store is unreachable: anchor #0 waits in the outbox under its key.
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
            .body(squatter.to_vec().into())
            .send(),
    )
    .unwrap();
    l.run_stdin(
        &["append", "--chain", "pay", "--jsonl", "-"],
        &jsonl(5..8, "a"),
    );
    let out = s3_command(&l, &endpoint, s3.bucket())
        .args(["anchor", "now"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = anchor_list(&l);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["squatted_key"], key.as_str(), "{records:?}");
    (l, s3, key)
}

fn verify_anchors(l: &Ledger, bucket: &str, source: &[&str]) -> (i32, Value) {
    let key = vkey(l);
    let endpoint = env_required("STELE_TEST_RGW_ENDPOINT");
    let out = s3_command(l, &endpoint, bucket)
        .args(["--json", "verify", "anchors", "--chain", "pay"])
        .args(source)
        .args(["--verifier-key", &key])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} / {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        )
    });
    (code(&out), report)
}

fn has(r: &Value, list: &str, kind: &str, subject: Option<&str>) -> bool {
    r[list].as_array().is_some_and(|a| {
        a.iter()
            .any(|f| f["kind"] == kind && subject.is_none_or(|s| f["subject"].as_str() == Some(s)))
    })
}

fn kinds(r: &Value) -> Vec<String> {
    r["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["kind"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn mirror(rt: &tokio::runtime::Runtime, s3: &S3Worm, dir: &Path) {
    for key in rt.block_on(s3.list("")).unwrap() {
        let path = dir.join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, rt.block_on(s3.get(&key)).unwrap()).unwrap();
    }
}

fn assert_passes_with_the_squatter_named(l: &Ledger, s3: &S3Worm, key: &str) {
    let (c, r) = verify_anchors(l, s3.bucket(), &["--bucket", s3.bucket()]);
    assert_eq!(c, 0, "{r:#}");
    assert_eq!(r["verdict"], "pass", "{r:#}");
    assert_eq!(r["anchors_checked"], 2, "{r:#}");
    assert!(has(&r, "warnings", "foreign_object", Some(key)), "{r:#}");
    let relocated = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == "relocated_anchor")
        .unwrap_or_else(|| panic!("{r:#}"));
    assert!(
        relocated["message"].as_str().unwrap().contains(key),
        "the note names the taken key: {r:#}"
    );
    // The text report shows the warning and still says PASS.
    let endpoint = env_required("STELE_TEST_RGW_ENDPOINT");
    let html = l.dir.path().join("anchors.html");
    let out = s3_command(l, &endpoint, s3.bucket())
        .args([
            "verify",
            "anchors",
            "--chain",
            "pay",
            "--bucket",
            s3.bucket(),
        ])
        .args(["--verifier-key", &vkey(l), "--html"])
        .arg(&html)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{text}");
    assert!(
        text.contains("WARNING      foreign_object") && text.contains(key),
        "{text}"
    );
    assert!(text.contains("verdict      PASS"), "{text}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("id=\"warnings\"") && page.contains(key),
        "{page}"
    );
}

#[test]
fn a_garbage_squatter_on_the_anchor_key_is_a_warning_not_a_failure() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let (l, s3, key) = squatted(&rt, "v13-squat-junk", b"not an anchor");
    assert_passes_with_the_squatter_named(&l, &s3, &key);

    // An offline copy gives the same verdict.
    let dir = tempfile::tempdir().unwrap();
    mirror(&rt, &s3, dir.path());
    let (c, r) = verify_anchors(&l, s3.bucket(), &["--mirror", dir.path().to_str().unwrap()]);
    assert_eq!(c, 0, "{r:#}");
    assert!(has(&r, "warnings", "foreign_object", Some(&key)), "{r:#}");

    // A copy of our anchor #1 at an alternate-looking key whose suffix is not
    // the hash of its bytes is ours in the wrong place: moved, and a fork.
    let records = anchor_list(&l);
    let real1 = records[1]["object_key"].as_str().unwrap().to_owned();
    let fake = real1.replace(".json", "-0123456789abcdef.json");
    std::fs::copy(dir.path().join(&real1), dir.path().join(&fake)).unwrap();
    let (c, r) = verify_anchors(&l, s3.bucket(), &["--mirror", dir.path().to_str().unwrap()]);
    assert_eq!(c, 1, "{r:#}");
    assert!(has(&r, "findings", "fork", None), "{r:#}");
    assert!(kinds(&r).contains(&"moved".to_owned()), "{r:#}");
    std::fs::remove_file(dir.path().join(&fake)).unwrap();

    // Our relocated anchor #0 replaced in the copy by junk (the squatter
    // cannot stand in for it): #0 is missing.
    let real0 = records[0]["object_key"].as_str().unwrap().to_owned();
    assert_ne!(real0, key);
    std::fs::write(dir.path().join(&real0), b"{}").unwrap();
    let (c, r) = verify_anchors(&l, s3.bucket(), &["--mirror", dir.path().to_str().unwrap()]);
    assert_eq!(c, 1, "{r:#}");
    assert!(has(&r, "findings", "missing_anchor", None), "{r:#}");
    assert!(has(&r, "warnings", "foreign_object", Some(&real0)), "{r:#}");

    // In the bucket: a new version written over our anchor #0 (Object Lock
    // protects versions, not keys) does not hide it.
    rt.block_on(
        s3.client()
            .put_object()
            .bucket(s3.bucket())
            .key(&real0)
            .body(b"replaced".to_vec().into())
            .send(),
    )
    .unwrap();
    let (c, r) = verify_anchors(&l, s3.bucket(), &["--bucket", s3.bucket()]);
    assert_eq!(c, 1, "{r:#}");
    assert!(has(&r, "findings", "missing_anchor", None), "{r:#}");
    assert!(has(&r, "findings", "extra_versions", Some(&real0)), "{r:#}");
    assert_ne!(r["verdict"], "pass");
}

#[test]
fn a_squatter_signed_by_another_key_claims_no_seq() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    // Another ledger's real anchor #0 of a chain with the same name: it
    // parses, it is signed, just not by our key.
    let other_bucket = rt.block_on(create_bucket(rgw(&unique_bucket("v13-squat-other")), true));
    let other = Ledger::new(TestDb::sqlite());
    other.run_stdin(
        &["append", "--chain", "pay", "--jsonl", "-"],
        &jsonl(0..3, "o"),
    );
    let out = s3_command(
        &other,
        &env_required("STELE_TEST_RGW_ENDPOINT"),
        other_bucket.bucket(),
    )
    .args(["anchor", "now"])
    .output()
    .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let other_key = anchor_list(&other)[0]["object_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = rt.block_on(other_bucket.get(&other_key)).unwrap();

    let (l, s3, key) = squatted(&rt, "v13-squat-signed", &forged);
    assert_passes_with_the_squatter_named(&l, &s3, &key);
    let (_, r) = verify_anchors(&l, s3.bucket(), &["--bucket", s3.bucket()]);
    let why = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == "foreign_object")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(why.contains("signature does not verify"), "{why}");
}
