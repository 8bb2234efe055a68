//! `stele evidence` against the real stores: Ceph RGW (Object Lock enforced,
//! no checksum API) and ministack (checksum API, KMS). Files land locked and
//! signed, are verified before anything is recorded, survive dropped
//! connections, and an unreachable store records nothing.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use aws_sdk_s3::error::ProvideErrorMetadata as _;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumMode, ObjectLockLegalHoldStatus};
use common::{Ledger, code, runtime, stderr};
use serde_json::Value;
use stele_store::testkit::TestDb;
use stele_worm::S3Worm;
use stele_worm::testkit::{
    FaultyProxy, create_bucket, create_ministack_kms_key, env_required, ministack, rgw,
    unique_bucket,
};

/// Points a command at an S3 endpoint through the standard AWS variables and
/// the evidence bucket variable, as a deployment would; clears other settings.
fn with_s3(cmd: &mut Command, endpoint: &str, bucket: &str, keys: (&str, &str)) {
    cmd.env("AWS_ACCESS_KEY_ID", keys.0)
        .env("AWS_SECRET_ACCESS_KEY", keys.1)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("STELE_EVIDENCE_BUCKET", bucket);
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
        "STELE_VERIFIER_KEY",
    ] {
        cmd.env_remove(var);
    }
}

fn rgw_keys() -> (String, String) {
    (
        env_required("STELE_TEST_RGW_ACCESS_KEY"),
        env_required("STELE_TEST_RGW_SECRET_KEY"),
    )
}

/// Runs `stele evidence ARGS` against `endpoint`/`bucket` on RGW.
fn evidence(l: &Ledger, endpoint: &str, bucket: &str, args: &[&str]) -> Output {
    let (id, secret) = rgw_keys();
    let mut cmd = l.command();
    with_s3(&mut cmd, endpoint, bucket, (&id, &secret));
    cmd.arg("evidence").args(args).output().unwrap()
}

/// Like [`evidence`] with `--json`; asserts success and parses each stdout line.
fn evidence_json(l: &Ledger, endpoint: &str, bucket: &str, args: &[&str]) -> Vec<Value> {
    let (id, secret) = rgw_keys();
    let mut cmd = l.command();
    with_s3(&mut cmd, endpoint, bucket, (&id, &secret));
    let out = cmd
        .args(["--json", "evidence"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "evidence {args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn rgw_endpoint() -> String {
    env_required("STELE_TEST_RGW_ENDPOINT")
}

/// Writes `size` bytes to `path` without holding them in memory: a random
/// MiB, each copy stamped with its index so no two MiB are alike.
fn write_file(path: &Path, size: u64) {
    let mut block: Vec<u8> = (0..1 << 20).map(|_| rand_byte()).collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut left = size;
    let mut index = 0u64;
    while left > 0 {
        block[..8].copy_from_slice(&index.to_le_bytes());
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).unwrap();
        left -= n as u64;
        index += 1;
    }
    f.flush().unwrap();
}

fn rand_byte() -> u8 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x >> 24) as u8
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

fn sha256_file(path: &Path) -> String {
    stele_worm::FileDigest::of_file(path).unwrap().sha256
}

/// `evidence.uploaded` events in the ledger's evidence chain.
fn uploaded_events(l: &Ledger) -> Vec<Value> {
    if l.size("evidence") == 0 {
        return Vec::new();
    }
    let out = l.run(&["log", "export", "--chain", "evidence"]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|e| e["type"] == "evidence.uploaded")
        .collect()
}

fn version_count(rt: &tokio::runtime::Runtime, s3: &S3Worm, key: &str) -> usize {
    rt.block_on(s3.versions(key))
        .unwrap()
        .iter()
        .filter(|v| !v.delete_marker)
        .count()
}

/// Deletes GOVERNANCE-locked versions (bypass) so RGW's memstore gets its space back.
fn remove_governance(rt: &tokio::runtime::Runtime, s3: &S3Worm, key: &str) {
    for v in rt.block_on(s3.versions(key)).unwrap() {
        rt.block_on(
            s3.client()
                .delete_object()
                .bucket(s3.bucket())
                .key(key)
                .set_version_id(v.version_id)
                .bypass_governance_retention(true)
                .send(),
        )
        .unwrap();
    }
}

fn small_file(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// The small-file story on one ledger backend: stored locked, signed,
/// verified, recorded; delete and overwrite refused; get verifies; a changed
/// byte in a copy is caught; the next anchor covers the upload.
fn small_file_story(db: TestDb) {
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("ev-small")), true));
    let l = Ledger::new(db);
    let dir = tempfile::tempdir().unwrap();
    let file = small_file(
        dir.path(),
        "EB-20261101-0001.json",
        br#"{"incident":"I-1","steps":[1,2,3]}"#,
    );
    let file_sha = sha256_file(&file);
    let ep = rgw_endpoint();

    let lines = evidence_json(
        &l,
        &ep,
        s3.bucket(),
        &["put", file.to_str().unwrap(), "--client", "clinic-001"],
    );
    let rec = &lines[0]["record"];
    let key = rec["key"].as_str().unwrap().to_owned();
    let now = time::OffsetDateTime::now_utc();
    assert_eq!(
        key,
        format!(
            "evidence/clinic-001/{:04}/{:02}/EB-20261101-0001.json",
            now.year(),
            u8::from(now.month())
        )
    );
    assert_eq!(rec["sha256"], file_sha.as_str());
    assert_eq!(rec["mode"], "COMPLIANCE");
    assert_eq!(rec["retention_days"], 90);
    assert_eq!(rec["verified_by"], "bytes", "RGW has no checksum API");
    assert_eq!(rec["signature_key"], format!("{key}.sig"));
    assert_eq!(lines[0]["ledger"]["chain_id"], "evidence");
    let version = rec["version_id"].as_str().unwrap().to_owned();

    // Putting the same file again verifies it again and records nothing new.
    let again = evidence_json(
        &l,
        &ep,
        s3.bucket(),
        &["put", file.to_str().unwrap(), "--client", "clinic-001"],
    );
    assert_eq!(again[0]["already_present"], true);
    assert_eq!(again[0]["ledger"]["newly_recorded"], false);
    assert_eq!(again[0]["record"]["version_id"], version.as_str());

    // The store holds it locked COMPLIANCE for 90 days, with the metadata docs/contracts.md §3 lists.
    let facts = rt
        .block_on(s3.head_details(&key, Some(&version)))
        .unwrap()
        .unwrap();
    assert_eq!(
        facts.facts.lock_mode,
        Some(stele_worm::LockMode::Compliance)
    );
    let until = facts.facts.retain_until.unwrap();
    let days = (until - now).whole_days();
    assert!(
        (89..=90).contains(&days),
        "retain-until {until} is {days} days away"
    );
    for name in ["sha256", "upload-ts", "retention-days", "original-path"] {
        assert!(
            facts.metadata.contains_key(name),
            "metadata {name} missing: {:?}",
            facts.metadata
        );
    }
    assert_eq!(facts.metadata["sha256"], file_sha);
    assert_eq!(facts.metadata["retention-days"], "90");
    assert_eq!(
        facts.metadata["original-path"],
        file.display().to_string(),
        "the absolute path it came from"
    );

    // The detached signature verifies with the exported verifier key alone.
    let vkey = l.json(&["keys", "export-verifier"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let sig = rt.block_on(s3.get(&format!("{key}.sig"))).unwrap();
    let statement = stele_evidence::Statement::verify(&sig, &vkey).unwrap();
    assert_eq!(statement.key, key);
    assert_eq!(statement.sha256, file_sha);

    // Recorded once in the ledger, with the payload an auditor needs.
    let events = uploaded_events(&l);
    assert_eq!(events.len(), 1);
    let payload = &events[0]["payload"];
    for field in [
        "key",
        "version_id",
        "sha256",
        "size",
        "retain_until",
        "mode",
        "client_id",
        "bundle_id",
        "signature_key",
        "signer",
    ] {
        assert!(
            !payload[field].is_null(),
            "payload lacks {field}: {payload}"
        );
    }
    assert_eq!(payload["version_id"], version.as_str());

    // Delete and overwrite of the locked version are refused by the store.
    let err = rt
        .block_on(
            s3.client()
                .delete_object()
                .bucket(s3.bucket())
                .key(&key)
                .version_id(&version)
                .send(),
        )
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
    let err = rt
        .block_on(
            s3.client()
                .delete_object()
                .bucket(s3.bucket())
                .key(&key)
                .version_id(&version)
                .bypass_governance_retention(true)
                .send(),
        )
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some("AccessDenied"),
        "COMPLIANCE ignores bypass: {err:?}"
    );
    // A raw overwrite only adds a version; the locked one stays intact and stele still verifies it.
    rt.block_on(
        s3.client()
            .put_object()
            .bucket(s3.bucket())
            .key(&key)
            .body(ByteStream::from_static(b"forged"))
            .send(),
    )
    .unwrap();
    // stele itself never overwrites: other content for the same key is refused, nothing recorded.
    let other = small_file(&dir.path().join(""), "other.json", b"{}");
    let renamed = dir.path().join("sub");
    std::fs::create_dir(&renamed).unwrap();
    let clash = renamed.join("EB-20261101-0001.json");
    std::fs::copy(&other, &clash).unwrap();
    let out = evidence(
        &l,
        &ep,
        s3.bucket(),
        &["put", clash.to_str().unwrap(), "--client", "clinic-001"],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already exists with different content"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        uploaded_events(&l).len(),
        1,
        "a refused put records nothing"
    );

    // get: by bundle id, the recorded version (not the forged current one), verified.
    let copy = dir.path().join("copy.json");
    let lines = evidence_json(
        &l,
        &ep,
        s3.bucket(),
        &["get", "EB-20261101-0001", "-o", copy.to_str().unwrap()],
    );
    assert_eq!(lines[0]["sha256"], file_sha.as_str());
    assert_eq!(lines[0]["version_id"], version.as_str());
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&file).unwrap());

    // A byte changed in the downloaded copy is caught (exit 1), by every statement about it.
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes[3] ^= 0x20;
    std::fs::write(&copy, &bytes).unwrap();
    let out = evidence(
        &l,
        &ep,
        s3.bucket(),
        &["check", copy.to_str().unwrap(), &key],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let msg = stderr(&out);
    assert!(
        msg.contains("is not an intact copy")
            && msg.contains("the ledger (evidence seq")
            && msg.contains("the detached signature states sha256"),
        "{msg}"
    );
    let out = evidence(
        &l,
        &ep,
        s3.bucket(),
        &["check", file.to_str().unwrap(), &key],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // The next anchor covers the upload.
    let (id, secret) = rgw_keys();
    let anchors = rt.block_on(create_bucket(rgw(&unique_bucket("ev-anchor")), true));
    let mut cmd = l.command();
    with_s3(&mut cmd, &ep, s3.bucket(), (&id, &secret));
    let out = cmd
        .env("AUDIT_ANCHOR_BUCKET", anchors.bucket())
        .env_remove("AUDIT_ANCHOR_RETENTION_DAYS")
        .env_remove("AUDIT_ANCHOR_KMS_KEY_ID")
        .args(["--json", "anchor", "now", "--chain", "evidence"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let anchor: Value = serde_json::from_slice(&out.stdout).unwrap();
    let seq = events[0]["seq"].as_u64().unwrap();
    assert!(anchor["anchor"]["tree_size"].as_u64().unwrap() > seq);
    assert_eq!(anchor["anchor"]["status"], "verified");
}

#[test]
fn small_file_story_sqlite() {
    stele_store::testkit::live_or_skip!(Rgw);
    small_file_story(TestDb::sqlite());
}

#[test]
fn small_file_story_postgres() {
    stele_store::testkit::live_or_skip!(Rgw, Postgres);
    small_file_story(TestDb::postgres());
}

#[test]
fn a_1_gib_file_goes_multipart_lands_locked_and_is_verified() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("ev-gib")), true));
    let l = Ledger::new(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scan-2026.img");
    let size = 1u64 << 30;
    write_file(&path, size);
    // sha256sum rather than this (unoptimized) test build's SHA-256, for speed.
    let file_sha = sha256sum(&path);
    // A gigabyte and a margin: a full memstore OSD would stall every test using it.
    stele_worm::testkit::wait_for_memstore_space(
        size + (256 << 20),
        std::time::Duration::from_secs(120),
    );
    let started = Instant::now();
    // GOVERNANCE so the test can give RGW's memstore its gigabyte back afterwards.
    let lines = evidence_json(
        &l,
        &rgw_endpoint(),
        s3.bucket(),
        &[
            "put",
            path.to_str().unwrap(),
            "--client",
            "imaging",
            "--mode",
            "GOVERNANCE",
        ],
    );
    let elapsed = started.elapsed();
    eprintln!(
        "1 GiB evidence put (upload + read-back verification) took {:.1} s ({:.0} MiB/s)",
        elapsed.as_secs_f64(),
        1024.0 / elapsed.as_secs_f64()
    );
    let rec = &lines[0]["record"];
    let key = rec["key"].as_str().unwrap().to_owned();
    let version = rec["version_id"].as_str().unwrap().to_owned();
    assert_eq!(rec["size"], size);
    assert_eq!(rec["sha256"], file_sha.as_str());
    assert_eq!(rec["mode"], "GOVERNANCE");
    assert_eq!(rec["verified_by"], "bytes");

    // Multipart (an ETag with a part count), locked, one version.
    let head = rt
        .block_on(
            s3.client()
                .head_object()
                .bucket(s3.bucket())
                .key(&key)
                .send(),
        )
        .unwrap();
    assert!(
        head.e_tag().unwrap_or_default().contains('-'),
        "not multipart: {:?}",
        head.e_tag()
    );
    assert_eq!(
        head.object_lock_mode().map(|m| m.as_str()),
        Some("GOVERNANCE")
    );
    assert_eq!(version_count(&rt, &s3, &key), 1);
    assert_eq!(uploaded_events(&l).len(), 1);

    // Delete without bypass is refused; an overwrite only adds a version.
    let err = rt
        .block_on(
            s3.client()
                .delete_object()
                .bucket(s3.bucket())
                .key(&key)
                .version_id(&version)
                .send(),
        )
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
    let out = evidence(&l, &rgw_endpoint(), s3.bucket(), &["status", &key]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.contains("GOVERNANCE until") && status.contains("evidence seq 0"),
        "{status}"
    );

    remove_governance(&rt, &s3, &key);
    remove_governance(&rt, &s3, &format!("{key}.sig"));
}

#[test]
fn a_legal_hold_blocks_even_a_governance_bypass_delete() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("ev-hold")), true));
    let l = Ledger::new(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let file = small_file(dir.path(), "held.json", b"{\"hold\":true}");
    let ep = rgw_endpoint();
    let lines = evidence_json(
        &l,
        &ep,
        s3.bucket(),
        &[
            "put",
            file.to_str().unwrap(),
            "--client",
            "c1",
            "--mode",
            "GOVERNANCE",
        ],
    );
    let key = lines[0]["record"]["key"].as_str().unwrap().to_owned();
    let version = lines[0]["record"]["version_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let held = evidence_json(&l, &ep, s3.bucket(), &["hold", "on", &key]);
    assert_eq!(held[0]["legal_hold"], true);
    let hold = rt
        .block_on(
            s3.client()
                .get_object_legal_hold()
                .bucket(s3.bucket())
                .key(&key)
                .version_id(&version)
                .send(),
        )
        .unwrap();
    assert_eq!(
        hold.legal_hold().and_then(|h| h.status()),
        Some(&ObjectLockLegalHoldStatus::On)
    );
    // A governance-bypass delete of the version; the error code if refused.
    let delete = || {
        rt.block_on(
            s3.client()
                .delete_object()
                .bucket(s3.bucket())
                .key(&key)
                .version_id(&version)
                .bypass_governance_retention(true)
                .send(),
        )
        .map(|_| ())
        .map_err(|e| e.code().unwrap_or("no code").to_owned())
    };
    assert_eq!(
        delete(),
        Err("AccessDenied".to_owned()),
        "the hold must block a bypass delete"
    );

    let status = evidence_json(&l, &ep, s3.bucket(), &["status", &key]);
    assert_eq!(status[0]["legal_hold"], true);
    let released = evidence_json(&l, &ep, s3.bucket(), &["hold", "off", &key]);
    assert_eq!(released[0]["legal_hold"], false);
    // Without the hold, GOVERNANCE yields to an explicit bypass (which is how this test cleans up).
    delete().unwrap();
    remove_governance(&rt, &s3, &format!("{key}.sig"));
    let types: Vec<String> = {
        let out = l.run(&["log", "export", "--chain", "evidence"]);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        types,
        [
            "evidence.uploaded",
            "evidence.legal_hold",
            "evidence.legal_hold"
        ]
    );
}

#[test]
fn retention_is_only_extended_and_shortening_is_refused_before_any_request() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("ev-extend")), true));
    let l = Ledger::new(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let file = small_file(dir.path(), "ext.json", b"{}");
    let ep = rgw_endpoint();
    let lines = evidence_json(
        &l,
        &ep,
        s3.bucket(),
        &["put", file.to_str().unwrap(), "--client", "c1"],
    );
    let key = lines[0]["record"]["key"].as_str().unwrap().to_owned();

    // With the store unreachable, a shortening is still refused: no request was needed.
    let proxy = FaultyProxy::start(&ep);
    proxy.set_down(true);
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::days(10))
        .date()
        .to_string();
    let out = evidence(
        &l,
        &proxy.endpoint(),
        s3.bucket(),
        &["extend", &key, "--until", &soon],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("can only be extended, never shortened")
            && stderr(&out).contains("Nothing was sent to the store"),
        "{}",
        stderr(&out)
    );
    assert_eq!(proxy.connections(), 0, "not one connection was made");

    let later = (time::OffsetDateTime::now_utc() + time::Duration::days(200))
        .date()
        .to_string();
    let out = evidence_json(&l, &ep, s3.bucket(), &["extend", &key, "--until", &later]);
    assert_eq!(
        out[0]["extension"]["retain_until"],
        format!("{later}T00:00:00Z")
    );
    let status = evidence_json(&l, &ep, s3.bucket(), &["status", &key]);
    assert_eq!(status[0]["retain_until"], format!("{later}T00:00:00Z"));
    // The ledger now knows the later date: going back to the original is refused locally too.
    let out = evidence(
        &l,
        &proxy.endpoint(),
        s3.bucket(),
        &["extend", &key, "--until", &soon],
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains(&format!("until {later}T00:00:00Z")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn connections_dropped_mid_upload_are_retried_and_the_evidence_lands_once() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("ev-drop")), true));
    let l = Ledger::new(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drop.bin");
    write_file(&path, 24 << 20);
    let proxy = FaultyProxy::start(&rgw_endpoint());
    // The first two connections die after 2 MiB, in the middle of a part.
    proxy.drop_after_bytes(2 << 20, 2);
    let lines = evidence_json(
        &l,
        &proxy.endpoint(),
        s3.bucket(),
        &[
            "put",
            path.to_str().unwrap(),
            "--client",
            "c1",
            "--mode",
            "GOVERNANCE",
            "--part-size-mib",
            "5",
        ],
    );
    assert_eq!(proxy.dropped(), 2, "both faults were injected");
    let rec = &lines[0]["record"];
    let key = rec["key"].as_str().unwrap().to_owned();
    assert_eq!(rec["sha256"], sha256_file(&path).as_str());
    assert_eq!(version_count(&rt, &s3, &key), 1, "landed once");
    assert_eq!(uploaded_events(&l).len(), 1, "recorded once");
    let uploads = rt
        .block_on(
            s3.client()
                .list_multipart_uploads()
                .bucket(s3.bucket())
                .send(),
        )
        .unwrap();
    assert!(uploads.uploads().is_empty(), "no parts left behind");
    remove_governance(&rt, &s3, &key);
    remove_governance(&rt, &s3, &format!("{key}.sig"));
}

#[test]
fn an_unreachable_store_fails_after_its_retries_and_nothing_is_recorded() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("ev-down")), true));
    let l = Ledger::new(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let file = small_file(dir.path(), "lost.json", b"{}");
    let proxy = FaultyProxy::start(&rgw_endpoint());
    proxy.set_down(true);
    let out = evidence(
        &l,
        &proxy.endpoint(),
        s3.bucket(),
        &[
            "put",
            file.to_str().unwrap(),
            "--client",
            "c1",
            "--retries",
            "3",
        ],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let msg = stderr(&out);
    assert!(msg.contains("after 3 attempts"), "{msg}");
    assert!(!msg.contains(&rgw_keys().1), "no secrets in errors");
    assert_eq!(l.size("evidence"), 0, "nothing recorded");

    // Mid-upload: the store goes away after the bucket check; still nothing recorded.
    let big = dir.path().join("big.bin");
    write_file(&big, 12 << 20);
    proxy.set_down(false);
    proxy.drop_after_bytes(1 << 20, 1_000);
    let out = evidence(
        &l,
        &proxy.endpoint(),
        s3.bucket(),
        &[
            "put",
            big.to_str().unwrap(),
            "--client",
            "c1",
            "--part-size-mib",
            "5",
        ],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was recorded"),
        "{}",
        stderr(&out)
    );
    assert_eq!(l.size("evidence"), 0, "nothing recorded");
    assert!(
        rt.block_on(s3.list("evidence/")).unwrap().is_empty(),
        "nothing stored"
    );
}

#[test]
fn bad_input_and_unsafe_buckets_are_refused_before_anything_is_stored() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let l = Ledger::new(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let file = small_file(dir.path(), "ok.json", b"{}");
    let f = file.to_str().unwrap();
    // An endpoint nobody listens on: every refusal below must come before any request.
    let nowhere = "http://127.0.0.1:9";
    let long_client = "x".repeat(65);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["put", f, "--client", "../etc"], "invalid client id"),
        (vec!["put", f, "--client", "a/b"], "invalid client id"),
        (vec!["put", f, "--client", "c\u{7}"], "invalid client id"),
        (
            vec!["put", f, "--client", &long_client],
            "invalid client id",
        ),
        (
            vec!["put", f, "--client", "c", "--bundle-id", ".."],
            "invalid bundle id",
        ),
        (
            vec!["put", f, "--client", "c", "--bundle-id", "a/../b"],
            "invalid bundle id",
        ),
        (
            vec!["put", f, "--client", "c", "--retain-days", "30"],
            "below the minimum of 90 days",
        ),
        (
            vec!["put", f, "--client", "c", "--retain-days", "30"],
            "--min-retain-days / STELE_EVIDENCE_MIN_RETENTION_DAYS",
        ),
        (
            vec!["put", f, "--client", "c", "--mode", "LOOSE"],
            "not a lock mode",
        ),
        (
            vec!["put", f, f, "--client", "c", "--bundle-id", "b"],
            "--bundle-id names one file",
        ),
        (
            vec!["put", "/no/such/file.json", "--client", "c"],
            "cannot read /no/such/file.json",
        ),
        (
            vec!["get", "evidence/../2026/11/a.json"],
            "invalid client id",
        ),
        (
            vec!["get", "evidence/c/../2026/11/a.json"],
            "is not an evidence key",
        ),
        (
            vec!["status", "evidence/c/2026/11/a.json.sig"],
            "detached signature",
        ),
    ];
    for (args, expect) in cases {
        let out = evidence(&l, nowhere, "some-bucket", &args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(expect), "{args:?}: {}", stderr(&out));
    }
    let sig = small_file(dir.path(), "x.sig", b"{}");
    let out = evidence(
        &l,
        nowhere,
        "b",
        &["put", sig.to_str().unwrap(), "--client", "c"],
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("reserved"), "{}", stderr(&out));
    let spaced = small_file(dir.path(), "my scan.json", b"{}");
    let out = evidence(
        &l,
        nowhere,
        "b",
        &["put", spaced.to_str().unwrap(), "--client", "c"],
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("pass --bundle-id"),
        "{}",
        stderr(&out)
    );
    let (id, secret) = rgw_keys();
    let mut cmd = l.command();
    with_s3(&mut cmd, nowhere, "x", (&id, &secret));
    let out = cmd
        .env_remove("STELE_EVIDENCE_BUCKET")
        .args(["evidence", "put", f, "--client", "c"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("no evidence bucket"),
        "{}",
        stderr(&out)
    );

    // A bucket without Object Lock is refused.
    let plain = rt.block_on(create_bucket(rgw(&unique_bucket("ev-nolock")), false));
    let out = evidence(
        &l,
        &rgw_endpoint(),
        plain.bucket(),
        &["put", f, "--client", "c"],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not have Object Lock enabled"),
        "{}",
        stderr(&out)
    );
    assert!(rt.block_on(plain.list("")).unwrap().is_empty());

    // A shorter retention is accepted once the operator lowers the floor.
    let locked = rt.block_on(create_bucket(rgw(&unique_bucket("ev-floor")), true));
    let lines = evidence_json(
        &l,
        &rgw_endpoint(),
        locked.bucket(),
        &[
            "put",
            f,
            "--client",
            "c",
            "--retain-days",
            "2",
            "--min-retain-days",
            "1",
            "--mode",
            "GOVERNANCE",
        ],
    );
    assert_eq!(lines[0]["record"]["retention_days"], 2);
    assert_eq!(l.size("evidence"), 1, "only the accepted put is recorded");
    let key = lines[0]["record"]["key"].as_str().unwrap().to_owned();
    remove_governance(&rt, &locked, &key);
    remove_governance(&rt, &locked, &format!("{key}.sig"));
}

#[test]
fn a_download_corrupted_in_transit_is_caught_and_not_kept() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("ev-corrupt")), true));
    let l = Ledger::new(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scan.bin");
    write_file(&path, 3 << 20);
    let lines = evidence_json(
        &l,
        &rgw_endpoint(),
        s3.bucket(),
        &[
            "put",
            path.to_str().unwrap(),
            "--client",
            "c1",
            "--mode",
            "GOVERNANCE",
        ],
    );
    let key = lines[0]["record"]["key"].as_str().unwrap().to_owned();
    let proxy = FaultyProxy::start(&rgw_endpoint());
    // 2 MiB into the first connection's responses: inside the object's body.
    proxy.corrupt_response_byte(2 << 20);
    let out_path = dir.path().join("copy.bin");
    let out = evidence(
        &l,
        &proxy.endpoint(),
        s3.bucket(),
        &["get", &key, "-o", out_path.to_str().unwrap()],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("failed verification"),
        "{}",
        stderr(&out)
    );
    assert!(
        !out_path.exists(),
        "a copy that fails verification is not kept"
    );
    // Without the fault the same get verifies.
    let out = evidence(
        &l,
        &proxy.endpoint(),
        s3.bucket(),
        &["get", &key, "-o", out_path.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sha256_file(&out_path), sha256_file(&path));
    remove_governance(&rt, &s3, &key);
    remove_governance(&rt, &s3, &format!("{key}.sig"));
}

#[test]
fn list_shows_a_clients_evidence_by_period_with_its_ledger_entries() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("ev-list")), true));
    let l = Ledger::new(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let a = small_file(dir.path(), "a.json", b"{\"a\":1}");
    let b = small_file(dir.path(), "b.txt", b"b");
    let ep = rgw_endpoint();
    evidence_json(
        &l,
        &ep,
        s3.bucket(),
        &[
            "put",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--client",
            "c1",
        ],
    );
    evidence_json(
        &l,
        &ep,
        s3.bucket(),
        &["put", a.to_str().unwrap(), "--client", "c2"],
    );
    let listed = evidence_json(&l, &ep, s3.bucket(), &["list", "--client", "c1"]);
    let rows = listed[0].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{listed:?}");
    assert!(
        rows.iter()
            .all(|r| r["signature"] == true && r["ledger_seq"].is_u64())
    );
    let today = time::OffsetDateTime::now_utc().date();
    let month = format!("{:04}-{:02}", today.year(), u8::from(today.month()));
    let listed = evidence_json(
        &l,
        &ep,
        s3.bucket(),
        &["list", "--client", "c1", "--from", &month, "--to", &month],
    );
    assert_eq!(listed[0].as_array().unwrap().len(), 2);
    let listed = evidence_json(
        &l,
        &ep,
        s3.bucket(),
        &["list", "--client", "c1", "--to", "2000-01"],
    );
    assert!(listed[0].as_array().unwrap().is_empty());
}

#[test]
fn ministack_stores_the_files_sha256_as_its_checksum_and_applies_sse_kms() {
    stele_store::testkit::live_or_skip!(Ministack);
    let rt = runtime();
    let key_id = rt.block_on(create_ministack_kms_key());
    let bucket = unique_bucket("ev-ms");
    let s3 = rt.block_on(create_bucket(ministack(&bucket), true));
    let l = Ledger::new(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let file = small_file(dir.path(), "kms.json", br#"{"sse":"kms"}"#);
    let mut cmd = l.command();
    with_s3(
        &mut cmd,
        &env_required("STELE_TEST_MINISTACK_ENDPOINT"),
        &bucket,
        ("test", "test"),
    );
    let out = cmd
        .args([
            "--json",
            "evidence",
            "put",
            file.to_str().unwrap(),
            "--client",
            "c1",
            "--kms-key-id",
            &key_id,
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["record"]["verified_by"], "checksum-api");
    let key = line["record"]["key"].as_str().unwrap();
    // The stored ChecksumSHA256 (decoded by stele-worm from the HEAD answer) is the file's SHA-256.
    let facts = rt.block_on(s3.head(key, None)).unwrap().unwrap();
    assert_eq!(
        facts.checksum_sha256.as_deref(),
        Some(sha256_file(&file).as_str())
    );
    let head = rt
        .block_on(
            s3.client()
                .head_object()
                .bucket(&bucket)
                .key(key)
                .checksum_mode(ChecksumMode::Enabled)
                .send(),
        )
        .unwrap();
    assert!(
        head.checksum_sha256().is_some(),
        "ministack returns ChecksumSHA256"
    );
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("aws:kms")
    );
    assert!(head.ssekms_key_id().unwrap_or_default().contains(&key_id));
}

/// Runs `stele [--json] verify log ARGS` with read access to RGW.
fn verify_log(l: &Ledger, bucket: &str, json: bool, args: &[&str]) -> Output {
    let (id, secret) = rgw_keys();
    let mut cmd = l.command();
    // The auditor allows the evidence bucket (STELE_EVIDENCE_BUCKET, set by with_s3).
    with_s3(&mut cmd, &rgw_endpoint(), bucket, (&id, &secret));
    if json {
        cmd.arg("--json");
    }
    cmd.args(["verify", "log"]).args(args).output().unwrap()
}

/// `stele verify log` re-checks every object the ledger records, in the
/// bucket the record names (the auditor allows that bucket), and names
/// each one that was removed or stripped of its signature.
#[test]
fn verify_log_rechecks_each_recorded_evidence_object() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("ev-verify")), true));
    let l = Ledger::new(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let ep = rgw_endpoint();
    let mut keys = Vec::new();
    for (name, body) in [
        ("kept.json", "{\"n\":1}"),
        ("removed.json", "{\"n\":2}"),
        ("unsigned.json", "{\"n\":3}"),
    ] {
        let file = small_file(dir.path(), name, body.as_bytes());
        let lines = evidence_json(
            &l,
            &ep,
            s3.bucket(),
            &[
                "put",
                file.to_str().unwrap(),
                "--client",
                "c1",
                "--mode",
                "GOVERNANCE",
            ],
        );
        keys.push((
            lines[0]["record"]["key"].as_str().unwrap().to_owned(),
            lines[0]["record"]["version_id"]
                .as_str()
                .unwrap()
                .to_owned(),
            lines[0]["ledger"]["seq"].as_u64().unwrap(),
        ));
    }

    // Clean: the three objects are re-checked and nothing is found.
    let out = verify_log(&l, s3.bucket(), true, &["--chain", "evidence"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let checked = report["evidence"]["checked"][0].as_str().unwrap();
    assert!(
        checked.contains(s3.bucket())
            && checked.contains("3 recorded upload(s)")
            && checked.contains("detached signature"),
        "{checked}"
    );
    assert_eq!(report["evidence"]["findings"], Value::Array(Vec::new()));

    // Tamper: remove one object version and another's signature (GOVERNANCE
    // yields to an explicit bypass, which is what an insider with that right would do).
    let bypass_delete = |key: &str, version: Option<String>| {
        rt.block_on(
            s3.client()
                .delete_object()
                .bucket(s3.bucket())
                .key(key)
                .set_version_id(version)
                .bypass_governance_retention(true)
                .send(),
        )
        .unwrap();
    };
    bypass_delete(&keys[1].0, Some(keys[1].1.clone()));
    let sig = format!("{}.sig", keys[2].0);
    for v in rt.block_on(s3.versions(&sig)).unwrap() {
        bypass_delete(&sig, v.version_id);
    }

    let out = verify_log(&l, s3.bucket(), true, &["--chain", "evidence"]);
    assert_eq!(code(&out), 1, "tampering exits 1: {}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let findings = report["evidence"]["findings"].as_array().unwrap();
    let named: Vec<(String, u64, String)> = findings
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["seq"].as_u64().unwrap(),
                f["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(named.len(), 2, "{findings:?}");
    assert_eq!(named[0].0, "evidence_missing");
    assert_eq!(named[0].1, keys[1].2);
    assert!(named[0].2.starts_with(&keys[1].0), "{:?}", named[0]);
    assert_eq!(findings[0]["aspect"], "completeness");
    assert_eq!(named[1].0, "evidence_bad_signature");
    assert_eq!(named[1].1, keys[2].2);
    assert!(named[1].2.starts_with(&keys[2].0), "{:?}", named[1]);

    // The terse summary names them too; HEAD-only still finds the missing one.
    let out = verify_log(
        &l,
        s3.bucket(),
        false,
        &["--chain", "evidence", "--evidence", "metadata"],
    );
    assert_eq!(code(&out), 1);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("FAIL evidence bucket"), "{text}");
    assert!(
        text.contains(&format!("evidence_missing: seq {}", keys[1].2)),
        "{text}"
    );
    // The log itself is intact: skipping evidence passes.
    let out = verify_log(
        &l,
        s3.bucket(),
        false,
        &["--chain", "evidence", "--evidence", "skip"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("WAIVED evidence: 3 recorded upload(s) not re-checked"),
        "{text}"
    );

    for (key, _, _) in &keys {
        remove_governance(&rt, &s3, key);
        remove_governance(&rt, &s3, &format!("{key}.sig"));
    }
}
