//! Exit codes that one mapping (`error.rs`) decides, checked through the
//! real binary where a command used to decide them itself: 1 tampering or
//! something missing, 2 refused with nothing written, 3 could not complete
//! or check.

mod common;

use common::{Ledger, code, stderr};
use stele_store::testkit::TestDb;

/// 50 events on `prod`, anchored at 30 and 50 into `anchors` (a local
/// directory, read back as a mirror).
fn anchored(l: &Ledger, anchors: &std::path::Path) {
    for range in [0..30, 30..50] {
        l.append_jsonl("prod", range, "x");
        let out = l.run(&["anchor", "now", "--local-dir", anchors.to_str().unwrap()]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A proof whose parts disagree was tampered with: exit 1 and FAIL, not a
/// usage error. Only a proof that cannot be used at all is refused (2).
#[test]
fn a_proof_whose_parts_disagree_is_tampering() {
    let l = Ledger::new(TestDb::sqlite());
    l.append_jsonl("prod", 0..20, "p");
    let dir = tempfile::tempdir().unwrap();
    let proof = dir.path().join("seq7.tlog-proof");
    l.tlog_proof("prod", 7, &proof);
    let verify =
        |path: &std::path::Path| l.run(&["verify", "event", "--proof", path.to_str().unwrap()]);
    let out = verify(&proof);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // The event moved to another index: its seq no longer matches, and
    // the inclusion proof does not hold there either.
    let original = std::fs::read_to_string(&proof).unwrap();
    let moved = original.replace("\nindex 7\n", "\nindex 8\n");
    assert_ne!(moved, original);
    let forged = dir.path().join("moved.tlog-proof");
    std::fs::write(&forged, moved).unwrap();
    let out = verify(&forged);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("FAIL event seq 8"),
        "{}",
        stdout(&out)
    );

    // A file that is no proof: refused, exit 2, nothing reported as FAIL.
    let junk = dir.path().join("junk.tlog-proof");
    std::fs::write(&junk, "not a proof\n").unwrap();
    let out = verify(&junk);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(!stdout(&out).contains("FAIL"));

    // A malformed verifier key: exit 2 before the proof is read (it
    // does not even exist), and never FAIL.
    let out = l.run(&[
        "verify",
        "event",
        "--proof",
        dir.path().join("absent").to_str().unwrap(),
        "--verifier-key",
        "not-a-key",
    ]);
    common::assert_key_refused(&out, "verify event");
}

/// A malformed `--verifier-key` for `verify anchors` is one refusal (exit
/// 2) before any anchor is read, not one failed signature per anchor.
#[test]
fn a_malformed_verifier_key_is_one_refusal_for_every_anchor() {
    let l = Ledger::new(TestDb::sqlite());
    let anchors = l.dir.path().join("anchors");
    anchored(&l, &anchors);
    let out = l.run(&[
        "verify",
        "anchors",
        "--chain",
        "prod",
        "--mirror",
        anchors.to_str().unwrap(),
        "--verifier-key",
        "stele.test+0000+not-base64",
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    assert_eq!(
        stderr(&out)
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1,
        "{}",
        stderr(&out)
    );
}

/// `anchor now` signs and stores the anchor before uploading it: when the
/// upload then fails, something was written, so the exit code is 3 (the
/// anchor waits in the outbox), never 2 ("refused, nothing written"),
/// even for a failure that alone would be a refusal.
#[test]
fn an_anchor_stored_but_not_uploaded_is_not_a_refusal() {
    let l = Ledger::new(TestDb::sqlite());
    l.append_jsonl("prod", 0..5, "a");
    // A directory that cannot be created (its parent is a file), even by root.
    let blocker = l.dir.path().join("blocker");
    std::fs::write(&blocker, "a file, not a directory").unwrap();
    let target = blocker.join("anchors");
    let out = l.run(&["anchor", "now", "--local-dir", target.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("kept pending"), "{}", stderr(&out));
    let list = l.json(&["anchor", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");
    assert_eq!(list[0]["status"], "pending", "{list:#}");

    // The next run uploads it.
    let good = l.dir.path().join("anchors");
    let out = l.run(&["anchor", "now", "--local-dir", good.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

/// An `--html` report that cannot be written is said on stderr, and
/// never turns a finding (exit 1) into 3; after a clean verification it
/// is the failure (3). The report still reaches stdout.
#[test]
fn an_unwritable_html_report_keeps_the_verdict() {
    let l = Ledger::new(TestDb::sqlite());
    let anchors = l.dir.path().join("anchors");
    anchored(&l, &anchors);
    let nowhere = l.dir.path().join("no-such-dir").join("report.html");
    let nowhere = nowhere.to_str().unwrap();
    let mirror = anchors.to_str().unwrap();
    let db_only = ["verify", "log", "--chain", "prod", "--html", nowhere];
    let with_anchors = [
        "verify", "log", "--chain", "prod", "--mirror", mirror, "--html", nowhere,
    ];

    let out = l.run(&db_only);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot write the HTML report"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("OK   chain prod"), "{}", stdout(&out));

    l.db.exec(
        "UPDATE audit_events SET actor = 'mallory' WHERE chain_id = 'prod' AND chain_index = 17",
    );
    for args in [&db_only[..], &with_anchors[..]] {
        let out = l.run(args);
        assert_eq!(code(&out), 1, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("cannot write the HTML report"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).contains("FAIL"), "{args:?}: {}", stdout(&out));
    }
}

/// Stored data that is not what stele wrote is damage found (exit 1),
/// whichever command finds it, not a failure to complete (3).
#[test]
fn corrupt_stored_data_is_exit_1_in_any_command() {
    let l = Ledger::new(TestDb::sqlite());
    let anchors = l.dir.path().join("anchors");
    anchored(&l, &anchors);
    l.db.exec(
        "UPDATE stele_anchors SET body = CAST('{}' AS BLOB) WHERE chain_id = 'prod' AND anchor_seq = 0",
    );
    let out = l.run(&["anchor", "show", "--chain", "prod", "--seq", "0"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stele_anchors") && stderr(&out).contains("stele verify log"),
        "{}",
        stderr(&out)
    );
}
