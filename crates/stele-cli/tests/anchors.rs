//! `stele anchor` against the real Ceph RGW: anchors land locked and verified,
//! bad targets are refused with clear errors, and a running anchorer rides out
//! an outage while events keep arriving — nothing lost, nothing duplicated.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Ledger, code, jsonl, runtime, stderr};
use serde_json::Value;
use stele_anchor::{Anchor, check_link};
use stele_store::testkit::TestDb;
use stele_worm::S3Worm;
use stele_worm::testkit::{FaultyProxy, create_bucket, env_required, rgw, unique_bucket};

/// Points a `stele` command at RGW (or a proxy in front of it) through the
/// standard AWS variables, as a deployment would.
fn with_s3(cmd: &mut Command, endpoint: &str, bucket: &str) {
    common::with_rgw_anchors(cmd, endpoint, bucket);
}

fn anchors(l: &Ledger, status: Option<&str>) -> Vec<Value> {
    let mut args = vec!["anchor", "list"];
    if let Some(s) = status {
        args.extend(["--status", s]);
    }
    l.json(&args).as_array().unwrap().clone()
}

/// Reads every anchor back from the bucket in key order, checks signatures and
/// links, and compares each object with the outbox.
fn check_bucket(rt: &tokio::runtime::Runtime, s3: &S3Worm, l: &Ledger, chain: &str) -> Vec<Anchor> {
    let vkey = l.json(&["keys", "export-verifier"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let records = anchors(l, None);
    let keys = rt.block_on(s3.list(&format!("anchors/{chain}/"))).unwrap();
    assert_eq!(
        keys.len(),
        records.len(),
        "one object per anchor, none missing, none extra"
    );
    let mut out: Vec<(Anchor, Vec<u8>)> = Vec::new();
    for (k, r) in keys.iter().zip(&records) {
        assert_eq!(k, r["object_key"].as_str().unwrap());
        assert_eq!(r["status"], "verified");
        let bytes = rt.block_on(s3.get(k)).unwrap();
        assert_eq!(
            stele_worm::sha256_hex(&bytes),
            r["sha256"].as_str().unwrap()
        );
        let a = Anchor::from_bytes(&bytes).unwrap();
        a.verify(&vkey).unwrap();
        if let Some((prev, prev_bytes)) = out.last() {
            check_link(prev, prev_bytes, &a).unwrap();
        } else {
            assert_eq!(a.anchor_seq, 0);
        }
        out.push((a, bytes));
    }
    // No key holds more than one version: nothing was written twice.
    let versions = rt
        .block_on(
            s3.client()
                .list_object_versions()
                .bucket(s3.bucket())
                .prefix(format!("anchors/{chain}/"))
                .send(),
        )
        .unwrap();
    assert_eq!(versions.versions().len(), keys.len());
    out.into_iter().map(|(a, _)| a).collect()
}

#[test]
fn anchor_now_writes_locked_verified_anchors() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("cli-anchor")), true));
    let l = Ledger::new(TestDb::sqlite());
    l.run_stdin(
        &["append", "--chain", "prod", "--jsonl", "-"],
        &jsonl(0..40, "a"),
    );
    let mut cmd = l.command();
    with_s3(
        &mut cmd,
        &env_required("STELE_TEST_RGW_ENDPOINT"),
        s3.bucket(),
    );
    let out = cmd.args(["--json", "anchor", "now"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["anchor"]["status"], "verified");
    assert_eq!(line["anchor"]["lock_mode"], "COMPLIANCE");
    assert!(line["anchor"]["version_id"].is_string());

    let show = l.json(&["anchor", "show", "--chain", "prod", "--seq", "0"]);
    assert_eq!(show["anchor"]["tree_size"], 40);
    assert_eq!(show["anchor"]["trigger"], "manual");
    assert_eq!(show["anchor"]["version"], "stele.anchor/v1");
    let anchors = check_bucket(&rt, &s3, &l, "prod");
    assert_eq!(anchors.len(), 1);
}

#[test]
fn bad_anchor_targets_are_refused_clearly() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let l = Ledger::new(TestDb::sqlite());
    l.run(&["append", "--chain", "prod", "--type", "a"]);
    let endpoint = env_required("STELE_TEST_RGW_ENDPOINT");

    let out = l
        .command()
        .args(["anchor", "now"])
        .env_remove("AUDIT_ANCHOR_BUCKET")
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("no anchor target"),
        "{}",
        stderr(&out)
    );

    let nolock = rt.block_on(create_bucket(rgw(&unique_bucket("cli-nolock")), false));
    let mut cmd = l.command();
    with_s3(&mut cmd, &endpoint, nolock.bucket());
    let out = cmd.args(["anchor", "now"]).output().unwrap();
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("does not have Object Lock enabled"),
        "{}",
        stderr(&out)
    );
    // The library says what is wrong; the CLI adds what to type.
    assert!(
        stderr(&out).contains("`stele bucket init`"),
        "{}",
        stderr(&out)
    );

    let locked = rt.block_on(create_bucket(rgw(&unique_bucket("cli-bad")), true));
    let mut cmd = l.command();
    with_s3(&mut cmd, &endpoint, locked.bucket());
    let out = cmd
        .args(["anchor", "now"])
        .env("AUDIT_ANCHOR_RETENTION_DAYS", "30")
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("30 days is below the configured minimum of 365"),
        "{}",
        stderr(&out)
    );

    let mut cmd = l.command();
    with_s3(&mut cmd, &endpoint, locked.bucket());
    let out = cmd
        .args(["anchor", "now"])
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("credentials were rejected"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("AWS_ACCESS_KEY_ID"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("not-the-secret"));

    assert!(
        anchors(&l, None).is_empty(),
        "refused before anything was built"
    );

    // An unknown KMS key is only discovered by the PUT: the anchor waits in
    // the outbox. It was signed and stored, so this is not "refused,
    // nothing written" (2) but could not complete (3).
    let mut cmd = l.command();
    with_s3(&mut cmd, &endpoint, locked.bucket());
    let out = cmd
        .args(["anchor", "now"])
        .env("AUDIT_ANCHOR_KMS_KEY_ID", "no-such-key")
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("SSE-KMS key \"no-such-key\" was refused")
            && stderr(&out).contains("kept pending"),
        "{}",
        stderr(&out)
    );
    assert_eq!(anchors(&l, Some("pending")).len(), 1);
    assert!(
        rt.block_on(locked.list("")).unwrap().is_empty(),
        "nothing half-written"
    );

    // Fixed settings: the same anchor, byte for byte, lands.
    let body_before =
        l.json(&["anchor", "show", "--chain", "prod", "--seq", "0"])["record"]["sha256"].clone();
    let mut cmd = l.command();
    with_s3(&mut cmd, &endpoint, locked.bucket());
    let out = cmd.args(["anchor", "run", "--once"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let after = l.json(&["anchor", "show", "--chain", "prod", "--seq", "0"]);
    assert_eq!(after["record"]["status"], "verified");
    assert_eq!(
        after["record"]["sha256"], body_before,
        "never re-signed differently"
    );
}

#[test]
fn anchor_run_rides_out_an_outage_while_events_keep_coming() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("cli-outage")), true));
    let proxy = FaultyProxy::start(&env_required("STELE_TEST_RGW_ENDPOINT"));
    let l = Ledger::new(TestDb::sqlite());
    let setup = |cmd: &mut Command| {
        with_s3(cmd, &proxy.endpoint(), s3.bucket());
        cmd.env("AUDIT_ANCHOR_VOLUME", "100");
    };

    let mut runner = l.command();
    setup(&mut runner);
    let runner = runner
        .args(["anchor", "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let mut saw_pending = false;
    for batch in 0..20 {
        if batch == 6 {
            proxy.set_down(true);
        }
        if batch == 15 {
            saw_pending = !anchors(&l, Some("pending")).is_empty();
            proxy.set_down(false);
        }
        let mut cmd = l.command();
        setup(&mut cmd);
        let mut child = cmd
            .args(["append", "--chain", "prod", "--jsonl", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(
            &mut child.stdin.take().unwrap(),
            jsonl(0..50, &format!("b{batch}")).as_bytes(),
        )
        .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(
        saw_pending,
        "anchors accumulated in the outbox while the store was down"
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    while !anchors(&l, Some("pending")).is_empty() {
        assert!(
            Instant::now() < deadline,
            "pending anchors did not land: {:?}",
            anchors(&l, Some("pending"))
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // A clean shutdown writes a shutdown anchor and exits 0.
    Command::new("kill")
        .args(["-TERM", &runner.id().to_string()])
        .status()
        .unwrap();
    let out = runner.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let anchors = check_bucket(&rt, &s3, &l, "prod");
    let last = anchors.last().unwrap();
    assert_eq!((last.trigger.as_str(), last.tree_size), ("shutdown", 1000));
    let volume = anchors
        .iter()
        .filter(|a| a.trigger == stele_anchor::Trigger::Volume)
        .count();
    assert!(
        volume >= 9,
        "about one volume anchor per 100 events, got {volume}"
    );
    let out = l.run(&["verify", "log", "--chain", "prod"]);
    assert_eq!(code(&out), 0);
}

#[test]
fn anchor_run_anchors_on_the_minute_even_when_idle_and_on_key_rotation() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("cli-cadence")), true));
    let l = Ledger::new(TestDb::sqlite());
    l.run(&["append", "--chain", "quiet", "--type", "a"]);
    let mut cmd = l.command();
    with_s3(
        &mut cmd,
        &env_required("STELE_TEST_RGW_ENDPOINT"),
        s3.bucket(),
    );
    let runner = cmd
        .args(["anchor", "run"])
        .env("AUDIT_ANCHOR_INTERVAL_MINUTES", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let wait_for = |n: usize, within: Duration| {
        let deadline = Instant::now() + within;
        loop {
            let verified = anchors(&l, Some("verified"));
            if verified.len() >= n {
                return verified;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} anchors, have {verified:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    // A chain never anchored is anchored at once.
    let first = wait_for(1, Duration::from_secs(20));
    assert_eq!(first[0]["trigger"], "time");
    // Rotating the HMAC key is noticed by the running anchorer.
    assert_eq!(code(&l.run(&["keys", "rotate"])), 0);
    let rotated = wait_for(2, Duration::from_secs(20));
    assert_eq!(rotated[1]["trigger"], "key_rotation");
    // The next minute boundary anchors again, though nothing happened: silence is evidence too.
    let idle = wait_for(3, Duration::from_secs(75));
    assert_eq!(
        (idle[2]["trigger"].as_str(), idle[2]["tree_size"].as_u64()),
        (Some("time"), Some(1))
    );
    let minute = |v: &Value| v["ts_utc"].as_str().unwrap()[..16].to_owned();
    assert!(
        minute(&idle[2]) > minute(&first[0]),
        "the idle anchor falls in a later minute"
    );

    Command::new("kill")
        .args(["-TERM", &runner.id().to_string()])
        .status()
        .unwrap();
    let out = runner.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = check_bucket(&rt, &s3, &l, "quiet");
    assert_eq!(all.last().unwrap().trigger, stele_anchor::Trigger::Shutdown);
    assert_eq!(all[1].key_id, "k2");
}
