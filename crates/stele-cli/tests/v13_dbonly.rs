//! `stele verify log` on the database alone, attacked for real on SQLite
//! and PostgreSQL with SQL and no key: rows deleted and `stele_chains`
//! fixed up. Inside a range the ledger itself anchored (stele_anchors) it
//! is a finding; after the last anchor it cannot be proven, and the verdict
//! says completeness was not checked instead of passing.

mod common;

use common::{Ledger, code, jsonl, stderr};
use serde_json::Value;
use stele_store::testkit::TestDb;

/// 60 events on `prod`: anchors #0 (tree size 30) and #1 (50) in a local
/// directory, and 10 events after the last anchor.
fn anchored_ledger(db: TestDb) -> Ledger {
    let l = Ledger::new(db);
    let anchors = l.dir.path().join("anchors");
    for (range, anchor) in [(0..30, true), (30..50, true), (50..60, false)] {
        let out = l.run_stdin(
            &["append", "--chain", "prod", "--jsonl", "-"],
            &jsonl(range, "d"),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        if anchor {
            let out = l.run(&["anchor", "now", "--local-dir", anchors.to_str().unwrap()]);
            assert_eq!(code(&out), 0, "{}", stderr(&out));
        }
    }
    l
}

/// Deletes every event from `from` on and fixes up stele_chains, as
/// someone with write access to the database and no key can.
fn truncate(l: &Ledger, from: u64) {
    l.db.exec(&format!(
        "DELETE FROM audit_events WHERE chain_id = 'prod' AND chain_index >= {from}"
    ));
    l.db.exec(&format!(
        "UPDATE stele_chains SET tree_size = {from}, head_hash = (SELECT event_hash FROM audit_events WHERE chain_id = 'prod' AND chain_index = {}) WHERE chain_id = 'prod'",
        from - 1
    ));
}

fn verify_json(l: &Ledger) -> (i32, Value) {
    let out = l
        .command()
        .args(["--json", "verify", "log", "--chain", "prod"])
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} / {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        )
    });
    (code(&out), v)
}

fn truncation_inside_an_anchored_range_is_a_finding(db: TestDb) {
    let l = anchored_ledger(db);
    let (c, r) = verify_json(&l);
    assert_eq!(c, 0, "{r:#}");

    // Rows 40.. deleted: anchor #1 recorded tree size 50.
    truncate(&l, 40);
    let (c, r) = verify_json(&l);
    assert_eq!(c, 1, "deleting anchored rows must be a finding: {r:#}");
    assert_eq!(r["recorded_anchors"][0]["compared"], 2, "{r:#}");
    assert_eq!(r["ok"], false);
    let findings = r["recorded_anchors"][0]["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["kind"] == "log_truncated" && f["anchor_seq"] == 1),
        "{r:#}"
    );
    let text = l.run(&["verify", "log", "--chain", "prod"]);
    assert_eq!(code(&text), 1);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("events from seq 40 were removed"), "{text}");

    // A recorded anchor whose body was edited to match does not verify.
    let empty_body = match l.db.location {
        stele_store::DbLocation::Postgres(_) => "convert_to('{}', 'UTF8')",
        stele_store::DbLocation::Sqlite(_) => "CAST('{}' AS BLOB)",
    };
    l.db.exec(&format!(
        "UPDATE stele_anchors SET body = {empty_body} WHERE chain_id = 'prod' AND anchor_seq = 1"
    ));
    let (c, r) = verify_json(&l);
    assert_eq!(c, 1, "{r:#}");
    let findings = r["recorded_anchors"][0]["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["kind"] == "recorded_anchor_altered"),
        "{r:#}"
    );
}

fn truncation_after_the_last_anchor_is_not_passed(db: TestDb) {
    let l = anchored_ledger(db);
    truncate(&l, 55);
    // Cannot be proven from the database: no finding, but no PASS either.
    let (c, r) = verify_json(&l);
    assert_eq!(c, 0, "{r:#}");
    assert_eq!(r["scope"], "database_only", "{r:#}");
    assert_eq!(r["completeness"]["checked_against_anchors"], false, "{r:#}");
    let out = l.run(&["verify", "log", "--chain", "prod"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("completeness NOT CHECKED against anchors")
            && text.contains("can remove the newest events")
            && text.contains("add --bucket or --mirror")
            && text.contains("not an audit verdict"),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.trim_end().ends_with(" PASS")),
        "{text}"
    );

    // --html writes the report, completeness listed as not checked.
    let html = l.dir.path().join("db.html");
    let out = l.run(&[
        "verify",
        "log",
        "--chain",
        "prod",
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = std::fs::read_to_string(&html)
        .unwrap_or_else(|e| panic!("verify log --html without anchors wrote no report: {e}"));
    assert!(page.contains("id=\"not-checked\""), "{page}");
    assert!(page.contains("can remove the newest events"), "{page}");
    assert!(page.contains("55 events"), "{page}");
    // The verdict table does not call completeness passed.
    let completeness = page
        .split("id=\"completeness\">")
        .nth(1)
        .and_then(|rest| rest.split("</td>").next())
        .unwrap_or_else(|| panic!("no completeness cell: {page}"));
    assert!(completeness.contains("NOT CHECKED"), "{completeness}");
    assert!(!completeness.contains("PASS"), "{completeness}");
    // Worded as the text words it: database only by design (exit 0), not
    // an audit whose check could not be performed (exit 3).
    for said in [
        "completeness NOT CHECKED against anchors (database only)",
        "not an audit verdict",
    ] {
        assert!(text.contains(said), "text: {said:?} in {text}");
        assert!(page.contains(said), "html: {said:?} in {page}");
    }
}

#[test]
fn sqlite_truncation_inside_an_anchored_range_is_a_finding() {
    truncation_inside_an_anchored_range_is_a_finding(TestDb::sqlite());
}

#[test]
fn postgres_truncation_inside_an_anchored_range_is_a_finding() {
    stele_store::testkit::live_or_skip!(Postgres);
    truncation_inside_an_anchored_range_is_a_finding(TestDb::postgres());
}

#[test]
fn sqlite_truncation_after_the_last_anchor_is_not_passed() {
    truncation_after_the_last_anchor_is_not_passed(TestDb::sqlite());
}

#[test]
fn postgres_truncation_after_the_last_anchor_is_not_passed() {
    stele_store::testkit::live_or_skip!(Postgres);
    truncation_after_the_last_anchor_is_not_passed(TestDb::postgres());
}

/// `verify log --html` without anchors used to write nothing and say nothing.
#[test]
fn html_without_anchors_writes_the_report() {
    let l = Ledger::new(TestDb::sqlite());
    let out = l.run_stdin(
        &["append", "--chain", "prod", "--jsonl", "-"],
        &jsonl(0..12, "h"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let html = l.dir.path().join("report.html");
    let out = l.run(&["verify", "log", "--html", html.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = std::fs::read_to_string(&html)
        .unwrap_or_else(|e| panic!("verify log --html without anchors wrote no report: {e}"));
    assert!(page.contains("12 events recomputed"), "{page}");
    assert!(page.contains("id=\"not-checked\""), "{page}");
}
