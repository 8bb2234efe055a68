//! `stele verify log` against a ledger that other processes are appending
//! to, as the README recommends (verifying straight against production):
//! several real `stele append` processes write in loops while the real
//! binary verifies — on its own, and against anchors (the auditor's
//! `--mirror` of the anchor objects). Every verification must read one consistent state of
//! the chain — its head, its rows and its stored hashes from one snapshot —
//! so a live ledger is never reported as tampered, and a real edit made
//! during the appends is still named by seq.

mod common;

use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Ledger, code, jsonl, stderr};
use serde_json::Value;
use stele_store::DbLocation;
use stele_store::testkit::TestDb;

#[test]
fn sqlite_live_verification_has_no_false_alarms_and_names_an_edit() {
    live_verification(Ledger::new(TestDb::sqlite()));
}

#[test]
fn postgres_live_verification_has_no_false_alarms_and_names_an_edit() {
    stele_store::testkit::live_or_skip!(Postgres);
    live_verification(Ledger::new(TestDb::postgres()));
}

/// Writer processes running at once, each a loop of `stele append`.
const WRITERS: usize = 4;
/// Verifications while the writers run and nothing was edited; every
/// [`ANCHORED_EVERY`]th is followed by an anchored one.
const CLEAN_RUNS: usize = 20;
/// How often an anchored verification runs beside the plain ones.
const ANCHORED_EVERY: usize = 2;
/// Verifications after the edit, writers still running.
const RUNS_AFTER_EDIT: usize = 3;
/// The row edited: well below the head (the ledger is seeded past it).
const EDITED_SEQ: u64 = 150;

fn live_verification(l: Ledger) {
    let seeded = l.run_stdin(
        &["append", "--chain", "live", "--jsonl", "-"],
        &jsonl(0..500, "seed"),
    );
    assert!(seeded.status.success(), "seed: {}", stderr(&seeded));
    // Anchor the seeded events, for the anchored verification.
    let mirror = l.dir.path().join("anchors");
    let anchored = l.run(&["anchor", "now", "--local-dir", mirror.to_str().unwrap()]);
    assert!(anchored.status.success(), "anchor: {}", stderr(&anchored));
    let vkey = l.data_dir().join("keys").join("verifier.vkey");
    let anchored_args = [
        "--json",
        "verify",
        "log",
        "--chain",
        "live",
        "--mirror",
        mirror.to_str().unwrap(),
        "--verifier-key-file",
        vkey.to_str().unwrap(),
    ];
    let verify_anchored = |l: &Ledger| l.command().args(anchored_args).output().unwrap();

    let stop = AtomicBool::new(false);
    let appended = AtomicU64::new(0);
    let l = &l;
    let (clean_runs, edited_runs) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (stop, appended) = (&stop, &appended);
                s.spawn(move || {
                    let mut batch = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        // Small batches: many commits, each moving the head.
                        let out = l.run_stdin(
                            &["append", "--chain", "live", "--jsonl", "-"],
                            &jsonl(0..3, &format!("w{w}b{batch}")),
                        );
                        assert!(out.status.success(), "writer {w}: {}", stderr(&out));
                        appended.fetch_add(1, Ordering::Relaxed);
                        batch += 1;
                    }
                })
            })
            .collect();
        // Let every writer get going before the first verification.
        while appended.load(Ordering::Relaxed) < 2 * WRITERS as u64 {
            std::thread::sleep(Duration::from_millis(5));
        }

        let started = appended.load(Ordering::Relaxed);
        let clean_runs: Vec<(Output, Option<Output>)> = (0..CLEAN_RUNS)
            .map(|i| {
                let plain = verify(l);
                (
                    plain,
                    i.is_multiple_of(ANCHORED_EVERY).then(|| verify_anchored(l)),
                )
            })
            .collect();
        let during_clean = appended.load(Ordering::Relaxed);

        // The edit, made while the writers keep going: an old payload rewritten.
        edit_payload(&l.db, EDITED_SEQ);
        let edited_runs: Vec<(Output, Output)> = (0..RUNS_AFTER_EDIT)
            .map(|_| (verify(l), verify_anchored(l)))
            .collect();
        let after_edit = appended.load(Ordering::Relaxed);

        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        // The writers must really have appended during the verifications,
        // or the test proved nothing.
        assert!(
            during_clean >= started + CLEAN_RUNS as u64,
            "only {} appends during {CLEAN_RUNS} verifications",
            during_clean - started
        );
        assert!(
            after_edit > during_clean,
            "no append during the verifications after the edit"
        );
        (clean_runs, edited_runs)
    });

    let false_alarms: Vec<String> = clean_runs
        .iter()
        .enumerate()
        .flat_map(|(i, (plain, anchored))| {
            [
                Some((i, "plain", plain)),
                anchored.as_ref().map(|a| (i, "anchored", a)),
            ]
        })
        .flatten()
        .filter(|(_, _, out)| code(out) != 0)
        .map(|(i, kind, out)| {
            format!(
                "run {i} ({kind}): exit {}: {}{}",
                code(out),
                String::from_utf8_lossy(&out.stdout),
                stderr(out)
            )
        })
        .collect();
    assert!(
        false_alarms.is_empty(),
        "{} of {} verifications of an untouched live ledger failed:\n{}",
        false_alarms.len(),
        CLEAN_RUNS + CLEAN_RUNS.div_ceil(ANCHORED_EVERY),
        false_alarms.join("\n")
    );
    for (i, (plain, anchored)) in clean_runs.iter().enumerate() {
        let report = report_of(plain);
        assert_eq!(report["ok"], true, "run {i}: {report}");
        if let Some(anchored) = anchored {
            let report = report_of(anchored);
            assert_eq!(report["verdict"], "pass", "anchored run {i}: {report}");
        }
    }

    for (i, (out, anchored)) in edited_runs.iter().enumerate() {
        edit_named_in_anchored_report(i, anchored);
        assert_eq!(
            code(out),
            1,
            "run {i} after the edit: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        );
        let report = report_of(out);
        let chain = &report["chains"][0];
        assert_eq!(chain["first_bad_seq"], EDITED_SEQ, "run {i}: {report}");
        let findings = chain["findings"].as_array().expect("findings");
        assert!(
            findings
                .iter()
                .any(|f| f["kind"] == "content_altered" && f["seq"] == EDITED_SEQ),
            "run {i}: the edit is not named: {report}"
        );
        // The edit and what follows from it (the root over the altered leaf
        // no longer matches the stored one) are all that is found: the
        // appends around it raise no alarm.
        for f in findings {
            let expected = match f["kind"].as_str() {
                Some("content_altered") => f["seq"] == EDITED_SEQ,
                Some("tree_mismatch") => f["size"] == chain["tree_size"],
                _ => false,
            };
            assert!(
                expected,
                "run {i}: a finding beyond the edit: {f}\n{report}"
            );
        }
    }
}

/// The anchored verification names the edit by seq, and nothing about the
/// appends made around it.
fn edit_named_in_anchored_report(run: usize, out: &Output) {
    assert_eq!(
        code(out),
        1,
        "anchored run {run} after the edit: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
    let report = report_of(out);
    let findings = report["findings"].as_array().expect("findings");
    assert!(
        findings
            .iter()
            .any(|f| f["kind"] == "content_altered" && f["seq"] == EDITED_SEQ),
        "anchored run {run}: the edit is not named: {report}"
    );
    for f in findings {
        assert!(
            !matches!(
                f["kind"].as_str(),
                Some("unaccounted_events" | "missing_events" | "head_mismatch")
            ),
            "anchored run {run}: a finding about the appends, not the edit: {f}\n{report}"
        );
    }
}

fn verify(l: &Ledger) -> Output {
    l.command()
        .args(["--json", "verify", "log", "--chain", "live"])
        .output()
        .unwrap()
}

fn report_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not a JSON report ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

/// Rewrites the payload of `seq` with SQL, as someone holding the database
/// would, while writers hold the database busy.
fn edit_payload(db: &TestDb, seq: u64) {
    let sql = format!(
        "UPDATE audit_events SET payload = '{{\"n\":0,\"pad\":\"forged\"}}' \
         WHERE chain_id = 'live' AND chain_index = {seq}"
    );
    match &db.location {
        DbLocation::Sqlite(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            // The writers hold the write lock in turns: wait for it.
            conn.busy_timeout(Duration::from_secs(30)).unwrap();
            assert_eq!(
                conn.execute(&sql, []).unwrap(),
                1,
                "the edit changed no row"
            );
        }
        DbLocation::Postgres(_) => db.exec(&sql),
    }
    let payload = db.query_text(&format!(
        "SELECT payload FROM audit_events WHERE chain_id = 'live' AND chain_index = {seq}"
    ));
    assert_eq!(payload.as_deref(), Some(r#"{"n":0,"pad":"forged"}"#));
}
