//! A WORM history is never forked: a second ledger anchoring the same chain
//! id into the same bucket and prefix is refused before anything is signed
//! or uploaded (the first ledger's `verify anchors` still passes), and so is
//! a ledger whose database was restored from a backup older than the
//! bucket's newest anchor of its own.

mod common;

use common::{Ledger, code, jsonl, stderr};
use stele_store::DbLocation;
use stele_store::testkit::TestDb;
use stele_worm::testkit::{create_bucket, env_required, rgw, unique_bucket};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn s3_command(l: &Ledger, bucket: &str) -> std::process::Command {
    let mut cmd = l.command();
    cmd.env(
        "AWS_ACCESS_KEY_ID",
        env_required("STELE_TEST_RGW_ACCESS_KEY"),
    )
    .env(
        "AWS_SECRET_ACCESS_KEY",
        env_required("STELE_TEST_RGW_SECRET_KEY"),
    )
    .env("AWS_ENDPOINT_URL", env_required("STELE_TEST_RGW_ENDPOINT"))
    .env("AWS_REGION", "us-east-1")
    .env("AUDIT_ANCHOR_BUCKET", bucket)
    .env_remove("AUDIT_ANCHOR_PREFIX")
    .env_remove("AUDIT_ANCHOR_RETENTION_DAYS")
    .env_remove("AUDIT_ANCHOR_KMS_KEY_ID");
    cmd
}

fn anchor_now(l: &Ledger, bucket: &str) -> std::process::Output {
    s3_command(l, bucket)
        .args(["anchor", "now", "--chain", "shared"])
        .output()
        .unwrap()
}

fn verify_anchors(l: &Ledger, bucket: &str) -> std::process::Output {
    let vkey = l.json(&["keys", "export-verifier"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    s3_command(l, bucket)
        .args([
            "verify",
            "anchors",
            "--chain",
            "shared",
            "--bucket",
            bucket,
            "--verifier-key",
            &vkey,
        ])
        .output()
        .unwrap()
}

fn sqlite_path(l: &Ledger) -> std::path::PathBuf {
    let DbLocation::Sqlite(p) = &l.db.location else {
        unreachable!()
    };
    p.clone()
}

#[test]
fn a_second_ledger_cannot_fork_a_chains_anchor_history() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("i13-fork")), true));
    let bucket = s3.bucket().to_owned();
    let objects = || rt.block_on(s3.list("")).unwrap();

    let first = Ledger::new(TestDb::sqlite());
    first.run_stdin(
        &["append", "--chain", "shared", "--jsonl", "-"],
        &jsonl(0..3, "a"),
    );
    let out = anchor_now(&first, &bucket);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let after_first = objects();
    assert_eq!(after_first.len(), 1, "{after_first:?}");
    // A backup of the first ledger's database, taken now.
    let backup = first.dir.path().join("backup.db");
    std::fs::copy(sqlite_path(&first), &backup).unwrap();

    // Another ledger (its own data directory and keys), same chain id, same bucket.
    let second = Ledger::new(TestDb::sqlite());
    second.run_stdin(
        &["append", "--chain", "shared", "--jsonl", "-"],
        &jsonl(0..2, "b"),
    );
    let out = anchor_now(&second, &bucket);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(
        err.contains("did not sign") && err.contains("another chain id"),
        "the refusal says what to do: {err}"
    );
    assert_eq!(objects(), after_first, "nothing was uploaded");
    let out = verify_anchors(&first, &bucket);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // The first ledger anchors on as before.
    first.run_stdin(
        &["append", "--chain", "shared", "--jsonl", "-"],
        &jsonl(3..5, "a"),
    );
    let out = anchor_now(&first, &bucket);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let after_second = objects();
    assert_eq!(after_second.len(), 2, "{after_second:?}");

    // Its database restored from the older backup: the bucket's newest
    // anchor is its own but unknown to the outbox. Refused, with its own message.
    let db = sqlite_path(&first);
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(&backup, &db).unwrap();
    first.run_stdin(
        &["append", "--chain", "shared", "--jsonl", "-"],
        &jsonl(10..12, "c"),
    );
    let out = anchor_now(&first, &bucket);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(err.contains("older backup"), "{err}");
    assert_eq!(objects(), after_second, "nothing was uploaded");
}
