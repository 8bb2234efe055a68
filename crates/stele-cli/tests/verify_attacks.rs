//! Attacks on the auditor's verification, performed for real against the
//! `stele` binary, Ceph RGW and files an audit package could ship: each
//! asserts the refusal or the finding, never a PASS.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockMode};
use common::{Ledger, code, jsonl, runtime, stderr};
use serde_json::Value;
use stele_store::testkit::TestDb;
use stele_worm::S3Worm;
use stele_worm::testkit::{create_bucket, env_required, rgw, unique_bucket};

fn with_s3(cmd: &mut Command, bucket: &str, user2: bool) {
    let (id, secret) = if user2 {
        (
            env_required("STELE_TEST_RGW_USER2_ACCESS_KEY"),
            env_required("STELE_TEST_RGW_USER2_SECRET_KEY"),
        )
    } else {
        (
            env_required("STELE_TEST_RGW_ACCESS_KEY"),
            env_required("STELE_TEST_RGW_SECRET_KEY"),
        )
    };
    cmd.env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_ENDPOINT_URL", env_required("STELE_TEST_RGW_ENDPOINT"))
        .env("AWS_REGION", "us-east-1")
        .env("AUDIT_ANCHOR_BUCKET", bucket)
        .env_remove("AUDIT_ANCHOR_RETENTION_DAYS")
        .env_remove("AUDIT_ANCHOR_INTERVAL_MINUTES")
        .env_remove("STELE_EVIDENCE_BUCKET");
}

fn stele(l: &Ledger, bucket: &str, args: &[&str]) -> Output {
    let mut cmd = l.command();
    with_s3(&mut cmd, bucket, false);
    cmd.args(args).output().unwrap()
}

/// Parses the JSON report on stdout.
fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} / {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
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

/// Whether the report has a warning of this kind.
fn warned(r: &Value, kind: &str) -> bool {
    r["warnings"]
        .as_array()
        .is_some_and(|a| a.iter().any(|w| w["kind"] == kind))
}

/// (kind, subject, message) of every warning.
fn warnings(r: &Value) -> Vec<(String, String, String)> {
    r["warnings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| {
                    (
                        w["kind"].as_str().unwrap_or_default().to_owned(),
                        w["subject"].as_str().unwrap_or_default().to_owned(),
                        w["message"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn vkey(l: &Ledger) -> String {
    l.json(&["keys", "export-verifier"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A ledger with `batches` batches of 20 events on `prod`, anchored after each.
fn anchored(l: &Ledger, bucket: &str, batches: usize, tag: &str) {
    for b in 0..batches {
        let out = l.run_stdin(
            &["append", "--chain", "prod", "--jsonl", "-"],
            &jsonl(0..20, &format!("{tag}{b}")),
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

/// A ledger, its anchors in RGW, a mirror of them and an export of `prod`.
struct Package {
    ledger: Ledger,
    s3: S3Worm,
    dir: tempfile::TempDir,
    key: String,
}

impl Package {
    fn new(rt: &tokio::runtime::Runtime, name: &str) -> Self {
        let s3 = rt.block_on(create_bucket(rgw(&unique_bucket(name)), true));
        let ledger = Ledger::new(TestDb::sqlite());
        anchored(&ledger, s3.bucket(), 2, name);
        let dir = tempfile::tempdir().unwrap();
        mirror(rt, &s3, &dir.path().join("mirror"));
        let export = dir.path().join("prod.jsonl");
        let out = ledger.run(&[
            "log",
            "export",
            "--chain",
            "prod",
            "-o",
            export.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let key = vkey(&ledger);
        Self {
            ledger,
            s3,
            dir,
            key,
        }
    }

    fn mirror(&self) -> PathBuf {
        self.dir.path().join("mirror")
    }

    fn mirror_arg(&self) -> String {
        self.mirror().display().to_string()
    }

    fn export(&self) -> String {
        self.dir.path().join("prod.jsonl").display().to_string()
    }

    /// The anchor files of `prod` in the mirror, in key order.
    fn anchor_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.mirror().join("anchors/prod")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// `stele --json verify anchors --mirror` with the package's own key.
    fn verify_mirror(&self, extra: &[&str]) -> (i32, Value) {
        let mirror = self.mirror_arg();
        let mut args = vec![
            "--json",
            "verify",
            "anchors",
            "--chain",
            "prod",
            "--mirror",
            mirror.as_str(),
            "--verifier-key",
            self.key.as_str(),
        ];
        args.extend(extra);
        let out = self.ledger.run(&args);
        (code(&out), report(&out))
    }
}

/// A data directory whose verifier key contains `/` (about half do).
fn ledger_with_slash_in_key() -> (Ledger, String) {
    for _ in 0..40 {
        let l = Ledger::new(TestDb::sqlite());
        let k = vkey(&l);
        if k.contains('/') && !k.ends_with('/') && !k.contains("//") {
            return (l, k);
        }
    }
    panic!("no verifier key with a '/' in 40 tries");
}

/// Item 2: the audit package ships a file named after the real verifier key,
/// holding the attacker's key. The auditor types the real key; the forged
/// export, mirror and proof must not PASS.
#[test]
fn a_file_named_after_the_verifier_key_is_not_read_as_the_key() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let (_victim, real_key) = ledger_with_slash_in_key();
    let forged = Package::new(&rt, "vk-forged");
    let cwd = tempfile::tempdir().unwrap();
    let planted = cwd.path().join(&real_key);
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    std::fs::write(&planted, format!("{}\n", forged.key)).unwrap();
    assert!(planted.is_file());
    let auditor = Ledger::new(TestDb::sqlite());
    let run = |args: &[&str]| {
        let mut cmd = auditor.command();
        with_s3(&mut cmd, forged.s3.bucket(), false);
        cmd.current_dir(cwd.path()).args(args).output().unwrap()
    };
    let mirror = forged.mirror_arg();
    let export = forged.export();

    let out = run(&[
        "--json",
        "verify",
        "log",
        "--chain",
        "prod",
        "--export",
        &export,
        "--mirror",
        &mirror,
        "--verifier-key",
        &real_key,
        "--no-hmac",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let r = report(&out);
    // Nothing in the forged package is signed by the real key: no anchors,
    // every object a foreign one.
    assert!(kinds(&r).contains(&"no_anchors".to_owned()), "{r:#}");
    assert!(warned(&r, "foreign_object"), "{r:#}");
    assert_eq!(r["verdict"], "fail");

    let out = run(&[
        "--json",
        "verify",
        "anchors",
        "--chain",
        "prod",
        "--mirror",
        &mirror,
        "--verifier-key",
        &real_key,
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(kinds(&report(&out)).contains(&"no_anchors".to_owned()));
    assert!(warned(&report(&out), "foreign_object"));

    // verify event: a proof and an anchor file from the forged package.
    let proof = cwd.path().join("seq3.tlog-proof");
    let out = forged.ledger.run(&[
        "proof",
        "inclusion",
        "--chain",
        "prod",
        "--seq",
        "3",
        "--tree-size",
        "40",
        "--format",
        "tlog-proof",
        "-o",
        proof.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let anchor = forged.anchor_files()[1].display().to_string();
    let out = run(&[
        "verify",
        "event",
        "--proof",
        proof.to_str().unwrap(),
        "--verifier-key",
        &real_key,
        "--anchor",
        &anchor,
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));

    // The key given as a file, by its own flag, is read.
    let out = run(&[
        "--json",
        "verify",
        "anchors",
        "--chain",
        "prod",
        "--mirror",
        &mirror,
        "--verifier-key-file",
        planted.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // A key that does not parse is exit 2 before anything is fetched (the
    // bucket does not exist: a fetch would be exit 3), and says so once.
    for cmd in [
        vec![
            "verify",
            "anchors",
            "--chain",
            "prod",
            "--bucket",
            "no-such-bucket-vk",
        ],
        vec![
            "verify",
            "log",
            "--chain",
            "prod",
            "--export",
            export.as_str(),
            "--no-hmac",
            "--bucket",
            "no-such-bucket-vk",
        ],
        vec!["verify", "event", "--proof", "/nonexistent.tlog-proof"],
    ] {
        let mut args = cmd.clone();
        args.extend(["--verifier-key", "not-a-key/at+all"]);
        common::assert_key_refused(&run(&args), &format!("{args:?}"));
    }
}

/// Item 4: an auditor identity without `s3:ListBucketVersions` cannot see a
/// replacement version of an anchor; the report says NOT CHECKED, exit 3,
/// unless the auditor waives `versions` by name.
#[test]
fn versions_that_cannot_be_listed_are_not_checked_not_passed() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("vk-noversions")), true));
    let l = Ledger::new(TestDb::sqlite());
    let gov = |args: &[&str]| {
        let mut cmd = l.command();
        with_s3(&mut cmd, s3.bucket(), false);
        cmd.env("AUDIT_ANCHOR_MODE", "GOVERNANCE")
            .args(args)
            .output()
            .unwrap()
    };
    for b in 0..2 {
        l.run_stdin(
            &["append", "--chain", "prod", "--jsonl", "-"],
            &jsonl(0..20, &format!("nv{b}")),
        );
        assert_eq!(code(&gov(&["anchor", "now"])), 0);
    }
    let key = vkey(&l);
    let newest = l.json(&["anchor", "list"])[1]["object_key"]
        .as_str()
        .unwrap()
        .to_owned();
    // The replacement: a second version of the newest anchor's key, locked,
    // with matching checksum and metadata (the bytes themselves verify).
    let bytes = rt.block_on(s3.get(&newest)).unwrap();
    let sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    rt.block_on(
        s3.client()
            .put_object()
            .bucket(s3.bucket())
            .key(&newest)
            .body(ByteStream::from(bytes))
            .metadata("sha256", &sha)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .object_lock_mode(ObjectLockMode::Governance)
            .object_lock_retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                time::OffsetDateTime::now_utc().unix_timestamp() + 500 * 86_400,
            ))
            .send(),
    )
    .unwrap();
    // user2 may read everything but not list versions.
    let user2 = env_required("STELE_TEST_RGW_USER2_ID");
    let bucket = s3.bucket();
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": [format!("arn:aws:iam:::user/{user2}")]},
             "Action": ["s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention"],
             "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")]},
            {"Effect": "Deny", "Principal": {"AWS": [format!("arn:aws:iam:::user/{user2}")]},
             "Action": ["s3:ListBucketVersions"],
             "Resource": [format!("arn:aws:s3:::{bucket}")]}
        ]
    });
    rt.block_on(
        s3.client()
            .put_bucket_policy()
            .bucket(bucket)
            .policy(policy.to_string())
            .send(),
    )
    .unwrap();
    let args = [
        "--json",
        "verify",
        "anchors",
        "--chain",
        "prod",
        "--bucket",
        bucket,
        "--verifier-key",
        key.as_str(),
        "--mode",
        "GOVERNANCE",
    ];
    // With versions listed (the owner), the replacement is a finding.
    let out = stele(&l, bucket, &args);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(kinds(&report(&out)).contains(&"extra_versions".to_owned()));

    let as_user2 = |extra: &[&str]| {
        let mut cmd = l.command();
        with_s3(&mut cmd, bucket, true);
        cmd.args(args).args(extra).output().unwrap()
    };
    let out = as_user2(&[]);
    let r = report(&out);
    assert_eq!(code(&out), 3, "{r:#} {}", stderr(&out));
    assert_eq!(r["verdict"], "not_checked", "{r:#}");
    let nc = &r["not_checked"][0];
    assert_eq!(
        (nc["check"].as_str(), nc["waived"].as_bool()),
        (Some("versions"), Some(false)),
        "{r:#}"
    );
    assert!(
        !r["checked"]
            .to_string()
            .contains("no other versions or delete markers"),
        "{r:#}"
    );
    assert!(
        stderr(&out).contains("--waive versions"),
        "{}",
        stderr(&out)
    );

    // Text and HTML say so too.
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("r.html");
    let mut cmd = l.command();
    with_s3(&mut cmd, bucket, true);
    let out = cmd
        .args(&args[1..])
        .args(["--html", html.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NOT CHECKED  versions"), "{text}");
    assert!(!text.contains("verdict      PASS"), "{text}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("id=\"not-checked\"") && page.contains("NOT CHECKED"));

    // Waived by name: passes, and the report still shows the waiver.
    let out = as_user2(&["--waive", "versions"]);
    let r = report(&out);
    assert_eq!(code(&out), 0, "{r:#} {}", stderr(&out));
    assert_eq!(r["not_checked"][0]["waived"], true);
    assert_eq!(r["verdict"], "pass");
}

/// Item 13: an export checked against nothing is not a PASS.
#[test]
fn an_export_with_no_anchors_and_no_key_is_not_checked() {
    let l = Ledger::new(TestDb::sqlite());
    l.run_stdin(
        &["append", "--chain", "prod", "--jsonl", "-"],
        &jsonl(0..5, "fab"),
    );
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("fabricated.jsonl");
    assert!(
        l.run(&[
            "log",
            "export",
            "--chain",
            "prod",
            "-o",
            export.to_str().unwrap()
        ])
        .status
        .success()
    );
    // An auditor's data directory: no HMAC keys, no anchors given.
    let auditor = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stele"));
        cmd.env_remove("STELE_DB")
            .env_remove("STELE_DATA_DIR")
            .env_remove("STELE_EVIDENCE_BUCKET")
            .arg("--data-dir")
            .arg(auditor.path())
            .args(["--json", "verify", "log", "--chain", "prod", "--export"])
            .arg(&export)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let r = report(&out);
    assert_eq!(code(&out), 3, "{r:#} {}", stderr(&out));
    assert_eq!(r["verdict"], "not_checked");
    let names: Vec<&str> = r["not_checked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["check"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"anchors") && names.contains(&"hmac"),
        "{r:#}"
    );
    let out = run(&["--no-hmac", "--waive", "anchors"]);
    let r = report(&out);
    assert_eq!(code(&out), 0, "{r:#} {}", stderr(&out));
    assert!(
        r["not_checked"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["waived"] == true)
    );
}

/// Item 6: an anchor claiming 9999-12-31T23:30:00Z under the chain prefix
/// (cadence and retention), and an absurd --grace-minutes: no panic.
#[test]
fn an_anchor_dated_9999_and_absurd_flags_do_not_panic() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let p = Package::new(&rt, "vk-9999");
    let first = std::fs::read(&p.anchor_files()[0]).unwrap();
    let mut anchor: Value = serde_json::from_slice(&first).unwrap();
    anchor["ts_utc"] = "9999-12-31T23:30:00Z".into();
    anchor["anchor_seq"] = 7.into();
    let bytes = serde_json_canonicalizer::to_vec(&anchor).unwrap();
    let key = "anchors/prod/9999/12/31/23/anchor-99991231T233000Z-0000000007.json";
    rt.block_on(
        p.s3.client()
            .put_object()
            .bucket(p.s3.bucket())
            .key(key)
            .body(ByteStream::from(bytes.clone()))
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                time::OffsetDateTime::now_utc().unix_timestamp() + 86_400,
            ))
            .send(),
    )
    .unwrap();
    let path = p.mirror().join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let bucket = p.s3.bucket();
    let out = stele(
        &p.ledger,
        bucket,
        &[
            "--json",
            "verify",
            "anchors",
            "--chain",
            "prod",
            "--bucket",
            bucket,
            "--verifier-key",
            &p.key,
        ],
    );
    // Not signed by the key (its ts_utc was edited): an object that claims
    // no anchor, named as a warning; no panic. (The date arithmetic on a
    // signed anchor dated 9999 is covered in stele-verify's audit tests.)
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = report(&out);
    assert!(
        warnings(&r)
            .iter()
            .any(|(k, s, _)| k == "foreign_object" && s.as_str() == key),
        "{r:#}"
    );
    let (c, r) = p.verify_mirror(&[]);
    assert_eq!(c, 0, "{r:#}");
    for grace in ["153722867280912930", "18446744073709551615"] {
        let out = p.ledger.run(&[
            "verify",
            "anchors",
            "--chain",
            "prod",
            "--mirror",
            &p.mirror_arg(),
            "--verifier-key",
            &p.key,
            "--grace-minutes",
            grace,
        ]);
        assert_eq!(code(&out), 2, "{}", stderr(&out));
    }
    // A range from year 1 with a one-minute cadence is bounded work.
    let started = Instant::now();
    let (c, r) = p.verify_mirror(&["--from", "0001-01-01T00:00:00Z", "--interval-minutes", "1"]);
    assert_eq!(c, 1, "{r:#}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// Item 15: an anchor re-serialized with indentation is not RFC 8785 form.
#[test]
fn a_reserialized_anchor_is_a_finding() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let p = Package::new(&rt, "vk-canon");
    assert_eq!(p.verify_mirror(&[]).0, 0);
    let file = &p.anchor_files()[1];
    let v: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    std::fs::write(file, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let (c, r) = p.verify_mirror(&[]);
    assert_eq!(c, 1, "{r:#}");
    let f = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "not_canonical")
        .unwrap_or_else(|| panic!("{r:#}"));
    assert_eq!(f["anchor_seq"], 1);
}

/// Spawns `cmd` and waits at most `limit`; kills it past that.
fn run_within(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            panic!("stele did not finish within {limit:?}");
        }
    }
}

/// Item 7: a mirror with a chain of symlinked directories, a symlink to
/// /dev/zero, a FIFO and an oversized file under the chain prefix; a bucket
/// with oversized objects under it. Each is a finding naming it; none is
/// followed or read whole, and the run ends promptly.
#[test]
fn a_hostile_mirror_and_bucket_are_bounded_work() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let p = Package::new(&rt, "vk-hostile");
    let base = p.mirror().join("anchors/prod/2030");
    std::fs::create_dir_all(&base).unwrap();
    // Each level links twice to the next: 2^20 paths if followed.
    let mut prev = base.join("l0");
    std::fs::create_dir_all(&prev).unwrap();
    for i in 1..=20 {
        let d = base.join(format!("l{i}"));
        std::fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::symlink(&prev, d.join("a")).unwrap();
        std::os::unix::fs::symlink(&prev, d.join("b")).unwrap();
        prev = d;
    }
    std::fs::write(base.join("l0/anchor.json"), b"{}").unwrap();
    std::os::unix::fs::symlink("/dev/zero", base.join("zero.json")).unwrap();
    let fifo = base.join("fifo.json");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(base.join("big.json"), vec![b' '; 64 * 1024 + 1]).unwrap();
    let mut cmd = p.ledger.command();
    cmd.args([
        "--json",
        "verify",
        "anchors",
        "--chain",
        "prod",
        "--mirror",
        &p.mirror_arg(),
        "--verifier-key",
        &p.key,
    ]);
    let out = run_within(cmd, Duration::from_secs(60));
    // None of them is an anchor: each is named, none is read, none fails
    // the run (the real anchors are all there).
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = report(&out);
    let named = warnings(&r);
    for name in ["zero.json", "fifo.json", "l1/a", "l20/b"] {
        assert!(
            named.iter().any(|(k, s, m)| k == "foreign_object"
                && s.ends_with(name)
                && m.contains("not read")),
            "{name}: {named:?}"
        );
    }
    assert!(
        named.iter().any(|(k, s, m)| k == "foreign_object"
            && s.ends_with("big.json")
            && m.contains("more than")),
        "{named:?}"
    );

    // A FIFO given as the export or the proof is refused, not waited on.
    for args in [
        vec![
            "verify",
            "log",
            "--chain",
            "prod",
            "--no-hmac",
            "--waive",
            "anchors",
            "--export",
        ],
        vec![
            "verify",
            "event",
            "--verifier-key",
            p.key.as_str(),
            "--proof",
        ],
    ] {
        let mut cmd = p.ledger.command();
        cmd.args(&args).arg(&fifo);
        let out = run_within(cmd, Duration::from_secs(60));
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not a regular file"),
            "{}",
            stderr(&out)
        );
    }

    // In the bucket: objects over the limit are named, not downloaded.
    for i in 0..3 {
        rt.block_on(
            p.s3.client()
                .put_object()
                .bucket(p.s3.bucket())
                .key(format!("anchors/prod/2030/big-{i}.json"))
                .body(ByteStream::from(vec![b'{'; 1024 * 1024]))
                .object_lock_mode(ObjectLockMode::Compliance)
                .object_lock_retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                    time::OffsetDateTime::now_utc().unix_timestamp() + 86_400,
                ))
                .send(),
        )
        .unwrap();
    }
    let bucket = p.s3.bucket();
    let out = stele(
        &p.ledger,
        bucket,
        &[
            "--json",
            "verify",
            "anchors",
            "--chain",
            "prod",
            "--bucket",
            bucket,
            "--verifier-key",
            &p.key,
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = report(&out);
    let big = warnings(&r)
        .iter()
        .filter(|(k, s, m)| k == "foreign_object" && s.contains("/big-") && m.contains("more than"))
        .count();
    assert_eq!(big, 3, "{r:#}");
}

/// Item 8: oversized lines and files are refused while reading.
#[test]
fn oversized_lines_and_proofs_are_refused_while_reading() {
    // 64 KiB payloads, six times for escapes, plus 64 KiB: the line limit.
    let limit = 64 * 1024 * 6 + 64 * 1024;
    let l = Ledger::new(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.jsonl");
    let mut line = String::from("{\"type\":\"t\",\"payload\":\"");
    line.push_str(&"x".repeat(limit + 1 - line.len() - 2));
    line.push_str("\"}");
    assert_eq!(line.len(), limit + 1);
    std::fs::write(&big, format!("{line}\n")).unwrap();
    let out = l.run(&[
        "append",
        "--chain",
        "prod",
        "--jsonl",
        big.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("line 1: longer than"),
        "{}",
        stderr(&out)
    );
    assert_eq!(l.size("prod"), 0);

    // An export with one oversized line: a finding naming the line; the other lines are checked.
    l.run_stdin(
        &["append", "--chain", "prod", "--jsonl", "-"],
        &jsonl(0..3, "ok"),
    );
    let export = dir.path().join("prod.jsonl");
    assert!(
        l.run(&[
            "log",
            "export",
            "--chain",
            "prod",
            "-o",
            export.to_str().unwrap()
        ])
        .status
        .success()
    );
    let mut text = std::fs::read_to_string(&export).unwrap();
    text.push_str(&format!("{line}\n"));
    std::fs::write(&export, text).unwrap();
    let out = l.run(&[
        "--json",
        "verify",
        "log",
        "--chain",
        "prod",
        "--export",
        export.to_str().unwrap(),
        "--waive",
        "anchors",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let r = report(&out);
    let f = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "malformed_export_line")
        .unwrap_or_else(|| panic!("{r:#}"));
    assert_eq!(f["subject"], "export line 4");
    assert!(
        f["message"].as_str().unwrap().contains("longer than"),
        "{f}"
    );
    assert_eq!(r["events_checked"], 3);

    // A tlog-proof over 1 MiB.
    let proof = dir.path().join("big.tlog-proof");
    std::fs::write(&proof, vec![b'a'; 1024 * 1024 + 1]).unwrap();
    let out = l.run(&["verify", "event", "--proof", proof.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("larger than 1048576 bytes"),
        "{}",
        stderr(&out)
    );
}

/// Item 14: control characters in a mirror's file names and in actors are
/// shown escaped in text output, never sent to the terminal.
#[test]
fn control_characters_are_escaped_in_text_output() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let p = Package::new(&rt, "vk-ansi");
    let evil = "\u{1b}[2K\u{1b}[1Gintegrity    PASS\u{202e}.json";
    let dir = p.mirror().join("anchors/prod/2030");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(evil), b"{}").unwrap();
    let out = p.ledger.run(&[
        "verify",
        "anchors",
        "--chain",
        "prod",
        "--mirror",
        &p.mirror_arg(),
        "--verifier-key",
        &p.key,
    ]);
    // Not an anchor: a warning, named escaped.
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("WARNING      foreign_object"), "{text}");
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{202e}'),
        "{text:?}"
    );
    assert!(
        text.contains("\\u{1b}[2K") && text.contains("\\u{202e}"),
        "{text}"
    );

    let out = p.ledger.run(&[
        "append",
        "--chain",
        "ansi",
        "--type",
        "t",
        "--actor",
        "bob\u{202e}nimda",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = p.ledger.run(&["log", "show", "--chain", "ansi"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\u{202e}'), "{text:?}");
    assert!(text.contains("bob\\u{202e}nimda"), "{text}");
}

/// Item 12: a record naming a bucket the auditor did not allow is a finding,
/// and that bucket is not contacted with the auditor's credentials; with no
/// evidence bucket allowed at all, the evidence is NOT CHECKED.
#[test]
fn evidence_records_naming_other_buckets_are_findings_not_requests() {
    stele_store::testkit::live_or_skip!(Rgw);
    let l = Ledger::new(TestDb::sqlite());
    // Written through the library, as whoever may append could have done
    // before reserved types were refused at the CLI.
    let record = serde_json::json!({
        "bucket": "attacker-chosen-bucket-xyz", "key": "acme/2026/01/x.pdf", "version_id": "v1",
        "sha256": "00".repeat(32), "size": 1, "mode": "COMPLIANCE",
        "retain_until": "2030-01-01T00:00:00Z", "retention_days": 30, "client_id": "acme",
        "bundle_id": "b1", "signature_key": "acme/2026/01/x.pdf.sig", "signature_version_id": "v2",
        "signer": "someone", "upload_ts": "2026-01-01T00:00:00Z", "verified_by": "someone",
        "original_path": "x.pdf"
    });
    let input = stele_ledger::event::EventInput {
        event_type: "evidence.uploaded".into(),
        actor: None,
        payload: Some(record),
        idempotency_key: None,
    }
    // Clients are refused reserved types now; a database writer is not
    // stopped by that, so the record goes in through stele's own path.
    .validate_internal(&stele_ledger::Limits::default())
    .unwrap();
    let keyring = stele_keys::KeyDir::new(l.data_dir().join("keys"))
        .keyring()
        .unwrap();
    let chain = stele_ledger::ChainId::new("evidence").unwrap();
    runtime().block_on(async {
        let store = l.db.open().await;
        store
            .append(&chain, vec![input], keyring.active())
            .await
            .unwrap();
        store.close().await;
    });
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("evidence.jsonl");
    assert!(
        l.run(&[
            "log",
            "export",
            "--chain",
            "evidence",
            "-o",
            export.to_str().unwrap()
        ])
        .status
        .success()
    );
    let run = |extra: &[&str]| {
        let mut cmd = l.command();
        // The auditor's credentials: a request would reach RGW.
        with_s3(&mut cmd, "unused", false);
        cmd.args(["--json", "verify", "log", "--chain", "evidence", "--export"])
            .arg(&export)
            .args(["--waive", "anchors"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--evidence-bucket", "the-real-evidence-bucket"]);
    let r = report(&out);
    assert_eq!(code(&out), 1, "{r:#} {}", stderr(&out));
    let f = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "evidence_bucket_not_allowed")
        .unwrap_or_else(|| panic!("{r:#}"));
    assert_eq!(f["seq"], 0);
    assert!(
        !r["checked"]
            .to_string()
            .contains("attacker-chosen-bucket-xyz re-checked")
    );

    // No bucket allowed: NOT CHECKED, exit 3; waived by name: passes, shown as waived.
    let out = run(&[]);
    let r = report(&out);
    assert_eq!(code(&out), 3, "{r:#} {}", stderr(&out));
    assert!(
        r["not_checked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["check"] == "evidence")
    );
    let out = run(&["--waive", "evidence"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // The same from the database (`verify log` without --export).
    let mut cmd = l.command();
    with_s3(&mut cmd, "unused", false);
    let out = cmd
        .args([
            "verify",
            "log",
            "--chain",
            "evidence",
            "--evidence-bucket",
            "the-real-evidence-bucket",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("evidence_bucket_not_allowed"));
}

/// Item 2, the evidence commands: a verifier key that does not parse is
/// refused (exit 2) before the bucket is asked, and is never read as a path.
#[test]
fn evidence_commands_refuse_a_malformed_verifier_key() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("vk-evidence")), true));
    let l = Ledger::new(TestDb::sqlite());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doc.json");
    std::fs::write(&file, b"{\"n\":1}").unwrap();
    let evidence = |args: &[&str]| {
        let mut cmd = l.command();
        with_s3(&mut cmd, s3.bucket(), false);
        cmd.env("STELE_EVIDENCE_BUCKET", s3.bucket())
            .env_remove("STELE_VERIFIER_KEY")
            .current_dir(dir.path())
            .arg("evidence")
            .args(args)
            .output()
            .unwrap()
    };
    let out = evidence(&[
        "--json",
        "put",
        file.to_str().unwrap(),
        "--client",
        "c1",
        "--mode",
        "GOVERNANCE",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let put: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    let key = put["record"]["key"].as_str().unwrap().to_owned();
    // A file named like the "key" exists in the working directory.
    std::fs::create_dir_all(dir.path().join("not-a-key")).unwrap();
    std::fs::write(dir.path().join("not-a-key/at+all"), vkey(&l)).unwrap();
    for args in [
        vec!["check", file.to_str().unwrap(), key.as_str()],
        vec!["get", key.as_str(), "-o", "-"],
    ] {
        let mut args = args.clone();
        args.extend(["--verifier-key", "not-a-key/at+all"]);
        common::assert_key_refused(&evidence(&args), &format!("{args:?}"));
    }
}

/// A plain DELETE (no version id) on a locked anchor leaves its version in
/// place but hides it behind a delete marker: the newest anchor disappears
/// from view. The verdict names the delete marker.
#[test]
fn a_newest_anchor_hidden_behind_a_delete_marker_is_a_finding() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("vk-delmarker")), true));
    let l = Ledger::new(TestDb::sqlite());
    anchored(&l, s3.bucket(), 2, "dm");
    let newest = l.json(&["anchor", "list"])[1]["object_key"]
        .as_str()
        .unwrap()
        .to_owned();
    rt.block_on(
        s3.client()
            .delete_object()
            .bucket(s3.bucket())
            .key(&newest)
            .send(),
    )
    .unwrap();
    let key = vkey(&l);
    let out = stele(
        &l,
        s3.bucket(),
        &[
            "--json",
            "verify",
            "anchors",
            "--chain",
            "prod",
            "--bucket",
            s3.bucket(),
            "--verifier-key",
            &key,
        ],
    );
    let r = report(&out);
    assert_eq!(code(&out), 1, "{r}");
    assert!(kinds(&r).iter().any(|k| k == "delete_marker"), "{r}");
}
