//! A WORM history is never forked: a second ledger anchoring the same chain
//! id into the same bucket and prefix is refused before anything is signed
//! or uploaded (the first ledger's `verify anchors` still passes), and so is
//! a ledger whose database was restored from a backup older than the
//! bucket's newest anchor of its own.

mod common;

use common::{Ledger, code, jsonl, runtime, stderr};
use stele_store::DbLocation;
use stele_store::testkit::TestDb;
use stele_worm::testkit::{create_bucket, env_required, rgw, unique_bucket};

fn s3_command(l: &Ledger, bucket: &str) -> std::process::Command {
    let mut cmd = l.command();
    common::with_rgw_anchors(&mut cmd, &env_required("STELE_TEST_RGW_ENDPOINT"), bucket);
    cmd.env_remove("AUDIT_ANCHOR_PREFIX");
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
    first.db.sqlite_backup(&backup);

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
        err.contains("did not sign")
            && err.contains("another chain id")
            && err.contains("AUDIT_ANCHOR_PREFIX"),
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
    assert!(err.contains("`stele verify anchors`"), "{err}");
    assert_eq!(objects(), after_second, "nothing was uploaded");
}

/// Once a ledger's anchors of a chain are in the bucket, an anchor of that
/// chain signed by another key that shows up there is a squatter (anyone
/// who may PutObject can write one), not another ledger: it must not stop
/// the chain, and the ledger's own history still verifies.
#[test]
fn a_foreign_anchor_after_ours_is_a_squatter_not_a_reason_to_stop() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("i13-squat")), true));
    let bucket = s3.bucket().to_owned();

    let first = Ledger::new(TestDb::sqlite());
    first.run_stdin(
        &["append", "--chain", "shared", "--jsonl", "-"],
        &jsonl(0..3, "a"),
    );
    let out = anchor_now(&first, &bucket);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ours = rt.block_on(s3.list("")).unwrap();
    assert_eq!(ours.len(), 1, "{ours:?}");

    // A real anchor of chain "shared", signed by another ledger's key,
    // written by someone who may PutObject at the key of our next seq.
    let other = Ledger::new(TestDb::sqlite());
    other.run_stdin(
        &["append", "--chain", "shared", "--jsonl", "-"],
        &jsonl(0..2, "b"),
    );
    let local = other.dir.path().join("anchors-out");
    let out = other
        .command()
        .args(["anchor", "now", "--chain", "shared", "--local-dir"])
        .arg(&local)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let foreign = walk_files(&local);
    assert_eq!(foreign.len(), 1, "{foreign:?}");
    let squat_key = ours[0].replace("-0000000000.json", "-0000000001.json");
    rt.block_on(
        s3.client()
            .put_object()
            .bucket(&bucket)
            .key(&squat_key)
            .body(std::fs::read(&foreign[0]).unwrap().into())
            .send(),
    )
    .unwrap();

    first.run_stdin(
        &["append", "--chain", "shared", "--jsonl", "-"],
        &jsonl(3..6, "a"),
    );
    let out = anchor_now(&first, &bucket);
    assert_eq!(
        code(&out),
        0,
        "the squatter must not stop the chain: {}",
        stderr(&out)
    );
    let all = rt.block_on(s3.list("")).unwrap();
    assert_eq!(all.len(), 3, "ours #0, the squatter, ours #1: {all:?}");
    let out = verify_anchors(&first, &bucket);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    assert!(text.contains(&squat_key), "the squatter is named: {text}");
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}
