//! Locks a store would silently lose, and uploads that race, through the
//! real `stele` binary against Ceph RGW: RGW keeps retain-until in 32 bits
//! (a date after 2106-02-07T06:28:15Z wraps to one near 1970 and the version
//! is unlocked) and ignores `If-None-Match` on versioned buckets.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{Ledger, code, runtime, stderr};
use serde_json::Value;
use stele_store::testkit::TestDb;
use stele_worm::S3Worm;
use stele_worm::testkit::{FaultyProxy, create_bucket, env_required, rgw, unique_bucket};

/// Points a command at an S3 endpoint through the standard AWS variables, as
/// a deployment would; clears the settings these tests do not set.
fn with_s3(cmd: &mut Command, endpoint: &str, bucket: &str) {
    cmd.env(
        "AWS_ACCESS_KEY_ID",
        env_required("STELE_TEST_RGW_ACCESS_KEY"),
    )
    .env(
        "AWS_SECRET_ACCESS_KEY",
        env_required("STELE_TEST_RGW_SECRET_KEY"),
    )
    .env("AWS_ENDPOINT_URL", endpoint)
    .env("AWS_REGION", "us-east-1")
    .env("STELE_EVIDENCE_BUCKET", bucket)
    .env("AUDIT_ANCHOR_BUCKET", bucket);
    for var in [
        "AUDIT_EVIDENCE_BUCKET",
        "STELE_EVIDENCE_KMS_KEY_ID",
        "AUDIT_EVIDENCE_KMS_KEY_ID",
        "STELE_EVIDENCE_RETRIES",
        "STELE_EVIDENCE_CHAIN",
        "STELE_EVIDENCE_RETENTION_DAYS",
        "STELE_EVIDENCE_MIN_RETENTION_DAYS",
        "STELE_EVIDENCE_MODE",
        "STELE_EVIDENCE_PART_SIZE_MIB",
        "STELE_EVIDENCE_CONCURRENCY",
        "AUDIT_ANCHOR_RETENTION_DAYS",
        "AUDIT_ANCHOR_MIN_RETENTION_DAYS",
        "AUDIT_ANCHOR_KMS_KEY_ID",
    ] {
        cmd.env_remove(var);
    }
}

fn evidence_command(l: &Ledger, endpoint: &str, bucket: &str, args: &[&str]) -> Command {
    let mut cmd = l.command();
    with_s3(&mut cmd, endpoint, bucket);
    cmd.arg("evidence").args(args);
    cmd
}

fn evidence(l: &Ledger, endpoint: &str, bucket: &str, args: &[&str]) -> Output {
    evidence_command(l, endpoint, bucket, args)
        .output()
        .unwrap()
}

fn rgw_endpoint() -> String {
    env_required("STELE_TEST_RGW_ENDPOINT")
}

/// Events of `event_type` in the ledger's evidence chain.
fn evidence_events(l: &Ledger, event_type: &str) -> Vec<Value> {
    if l.size("evidence") == 0 {
        return Vec::new();
    }
    let out = l.run(&["log", "export", "--chain", "evidence"]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|e| e["type"] == event_type)
        .collect()
}

fn file(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// The refusal everyone must see: names the latest date a store can hold.
fn assert_names_the_edge(out: &Output) {
    assert_eq!(code(out), 2, "{}", stderr(out));
    assert!(
        stderr(out).contains("2106-02-07T06:28:15Z"),
        "{}",
        stderr(out)
    );
}

#[test]
fn retain_until_after_2106_is_refused_before_anything_is_sent() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("ev-2106")), true));
    let l = Ledger::new(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let ep = rgw_endpoint();
    // Every refusal goes through this proxy: it counts connections.
    let proxy = FaultyProxy::start(&ep);

    // put --retain-days 30000 ends in 2109: refused, nothing stored or recorded.
    let f = file(dir.path(), "EB-LONG.json", br#"{"long":true}"#);
    let out = evidence(
        &l,
        &proxy.endpoint(),
        s3.bucket(),
        &[
            "put",
            f.to_str().unwrap(),
            "--client",
            "c1",
            "--retain-days",
            "30000",
        ],
    );
    assert_names_the_edge(&out);
    assert!(stderr(&out).contains("30000 days"), "{}", stderr(&out));
    assert_eq!(proxy.connections(), 0, "not one connection was made");
    assert!(rt.block_on(s3.list("evidence/")).unwrap().is_empty());
    assert!(evidence_events(&l, "evidence.uploaded").is_empty());

    // A COMPLIANCE version, recorded in the ledger, then `extend --until 2107-01-01`:
    // refused before any request; the lock stays as it was.
    let f = file(dir.path(), "EB-EXT.json", br#"{"extend":true}"#);
    let mut cmd = l.command();
    with_s3(&mut cmd, &ep, s3.bucket());
    let out = cmd
        .args(["--json", "evidence", "put", f.to_str().unwrap()])
        .args([
            "--client",
            "c1",
            "--retain-days",
            "1",
            "--min-retain-days",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stored: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = stored["record"]["key"].as_str().unwrap().to_owned();
    let version = stored["record"]["version_id"].as_str().unwrap().to_owned();
    let before = rt.block_on(s3.head(&key, Some(&version))).unwrap().unwrap();
    assert_eq!(before.lock_mode, Some(stele_worm::LockMode::Compliance));

    for until in ["2107-01-01", "2106-02-07T06:28:16Z", "9999-12-31"] {
        let out = evidence(
            &l,
            &proxy.endpoint(),
            s3.bucket(),
            &["extend", &key, "--until", until],
        );
        assert_names_the_edge(&out);
        assert_eq!(proxy.connections(), 0, "not one connection was made");
    }
    let after = rt.block_on(s3.head(&key, Some(&version))).unwrap().unwrap();
    assert_eq!(after.lock_mode, before.lock_mode);
    assert_eq!(after.retain_until, before.retain_until, "the lock changed");
    assert!(evidence_events(&l, "evidence.retention_extended").is_empty());

    // The edge itself is what RGW holds: extended, read back, recorded.
    let out = evidence(
        &l,
        &ep,
        s3.bucket(),
        &["extend", &key, "--until", "2106-02-07T06:28:15Z"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let after = rt.block_on(s3.head(&key, Some(&version))).unwrap().unwrap();
    assert_eq!(
        after.retain_until.map(|t| t.unix_timestamp()),
        Some(i64::from(u32::MAX))
    );
    let extended = evidence_events(&l, "evidence.retention_extended");
    assert_eq!(extended.len(), 1);
    assert_eq!(
        extended[0]["payload"]["retain_until"],
        "2106-02-07T06:28:15Z"
    );
}

#[test]
fn anchor_retention_of_30000_days_is_refused_when_the_config_is_read() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("anchor-2106")), true));
    let l = Ledger::new(TestDb::sqlite());
    l.run(&["append", "--chain", "prod", "--type", "a"]);
    let proxy = FaultyProxy::start(&rgw_endpoint());
    for days in ["30000", "36500"] {
        let mut cmd = l.command();
        with_s3(&mut cmd, &proxy.endpoint(), s3.bucket());
        let out = cmd
            .args(["anchor", "now"])
            .env("AUDIT_ANCHOR_RETENTION_DAYS", days)
            .output()
            .unwrap();
        assert_names_the_edge(&out);
        assert!(
            stderr(&out).contains("AUDIT_ANCHOR_RETENTION_DAYS"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(proxy.connections(), 0, "not one connection was made");
    let built = l.json(&["anchor", "list"]);
    assert!(
        built.as_array().unwrap().is_empty(),
        "refused before anything was built: {built}"
    );
    assert!(rt.block_on(s3.list("anchors/")).unwrap().is_empty());
}

/// Content versions of exactly `key`, as the store lists them (newest first).
fn listed_versions(rt: &tokio::runtime::Runtime, s3: &S3Worm, key: &str) -> Vec<String> {
    let out = rt
        .block_on(
            s3.client()
                .list_object_versions()
                .bucket(s3.bucket())
                .prefix(key)
                .send(),
        )
        .unwrap();
    out.versions()
        .iter()
        .filter(|v| v.key() == Some(key))
        .map(|v| v.version_id().unwrap().to_owned())
        .collect()
}

/// Runs two `stele evidence put` processes at once, each storing its own
/// file (different content, same name, so the same key) into one ledger.
/// Checks: exactly one succeeds; the ledger holds exactly one
/// `evidence.uploaded` for the key, naming the version that holds it (the
/// first stored) with that version's SHA-256. Returns whether both versions
/// were stored (the race was hit).
fn race_round(
    rt: &tokio::runtime::Runtime,
    s3: &S3Worm,
    l: &Ledger,
    dirs: (&Path, &Path),
    name: &str,
    bodies: (&[u8], &[u8]),
    extra: &[&str],
) -> bool {
    let fa = file(dirs.0, name, bodies.0);
    let fb = file(dirs.1, name, bodies.1);
    let spawn = |f: &Path| {
        let mut args = vec![
            "put",
            f.to_str().unwrap(),
            "--client",
            "race",
            "--mode",
            "GOVERNANCE",
            "--retain-days",
            "1",
            "--min-retain-days",
            "1",
        ];
        args.extend_from_slice(extra);
        evidence_command(l, &rgw_endpoint(), s3.bucket(), &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(&fa), spawn(&fb));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (loser, body) = match (code(&a), code(&b)) {
        (0, c) if c != 0 => (b, bodies.0),
        (c, 0) if c != 0 => (a, bodies.1),
        (x, y) => panic!(
            "{name}: exit codes {x} and {y}, expected exactly one success\nA: {}\nB: {}",
            stderr(&a),
            stderr(&b)
        ),
    };
    let uploads: Vec<Value> = evidence_events(l, "evidence.uploaded")
        .into_iter()
        .filter(|e| {
            e["payload"]["key"]
                .as_str()
                .is_some_and(|k| k.ends_with(&format!("/{name}")))
        })
        .collect();
    assert_eq!(uploads.len(), 1, "{name}: {uploads:?}");
    let record = &uploads[0]["payload"];
    let key = record["key"].as_str().unwrap();
    let versions = listed_versions(rt, s3, key);
    let first = versions.last().unwrap();
    assert_eq!(
        record["version_id"].as_str(),
        Some(first.as_str()),
        "{name}: the ledger names another version than the one holding the key ({versions:?})"
    );
    let held = rt.block_on(s3.get_version(key, Some(first))).unwrap();
    assert_eq!(
        held, body,
        "{name}: the winner's bytes are not the first version's"
    );
    assert_eq!(record["sha256"], stele_worm::sha256_hex(&held));

    let err = stderr(&loser);
    let raced = versions.len() > 1;
    eprintln!("{name}: the losing process exited {}: {err}", code(&loser));
    if raced {
        // Both versions are in the store: the loser names the winner's, its own, and what to do.
        assert_eq!(code(&loser), 3, "{err}");
        assert!(
            err.contains("another upload stored different content at this key first")
                && err.contains(first.as_str())
                && err.contains(versions[0].as_str())
                && err.contains("nothing was recorded"),
            "{err}"
        );
    } else {
        assert_eq!(code(&loser), 2, "{err}");
        assert!(
            err.contains("already exists with different content"),
            "{err}"
        );
    }
    raced
}

#[test]
fn two_concurrent_puts_of_different_content_exactly_one_wins_and_is_recorded() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("ev-race")), true));
    let l = Ledger::new(TestDb::sqlite());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Single PUTs: race until both processes have stored a version at least once.
    let mut raced = 0;
    let mut rounds = 0;
    while raced < 2 && rounds < 40 {
        let a = vec![b'a'; 256 * 1024];
        let b = vec![b'b'; 256 * 1024];
        if race_round(
            &rt,
            &s3,
            &l,
            (da.path(), db.path()),
            &format!("R-{rounds}.bin"),
            (&a, &b),
            &[],
        ) {
            raced += 1;
        }
        rounds += 1;
    }
    eprintln!("single PUT: {raced} of {rounds} rounds stored both versions");
    assert!(
        raced > 0,
        "no round raced in {rounds}: the test proved nothing"
    );

    // Multipart (5 MiB parts): both pass their HEAD long before either completes.
    let a: Vec<u8> = (0..12u32 << 20).map(|i| (i % 251) as u8).collect();
    let b: Vec<u8> = (0..12u32 << 20).map(|i| (i % 241) as u8).collect();
    let raced = race_round(
        &rt,
        &s3,
        &l,
        (da.path(), db.path()),
        "M-0.bin",
        (&a, &b),
        &["--part-size-mib", "5"],
    );
    eprintln!("multipart: raced {raced}");

    // Give RGW's memstore its space back.
    for key in rt.block_on(s3.list("evidence/")).unwrap() {
        for v in listed_versions(&rt, &s3, &key) {
            let _ = rt.block_on(
                s3.client()
                    .delete_object()
                    .bucket(s3.bucket())
                    .key(&key)
                    .version_id(v)
                    .bypass_governance_retention(true)
                    .send(),
            );
        }
    }
}
