//! A verification's exit code survives its reader closing the pipe:
//! `stele verify log … | head` on a tampered ledger exits 1 every time,
//! with stdout a real pipe whose reading end is closed before the command
//! writes a byte.

mod common;

use std::process::Stdio;

use common::{Ledger, code, jsonl, stderr};
use stele_store::testkit::TestDb;

/// Runs `stele args` with stdout a pipe nobody reads (closed before spawn).
fn run_into_closed_pipe(l: &Ledger, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    l.command()
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_pipe_does_not_turn_a_finding_into_success() {
    let l = Ledger::new(TestDb::sqlite());
    let out = l.run_stdin(
        &["append", "--chain", "prod", "--jsonl", "-"],
        &jsonl(0..200, "p"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let export = l.dir.path().join("prod.jsonl");
    let out = l.run(&[
        "log",
        "export",
        "--chain",
        "prod",
        "-o",
        export.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Nothing to report: a closed pipe is fine.
    for args in [
        &["log", "export", "--chain", "prod"][..],
        &["log", "chains"][..],
    ] {
        let out = run_into_closed_pipe(&l, args);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    }

    // Could not finish (an export checked against nothing): 3, every time.
    for _ in 0..5 {
        let out = run_into_closed_pipe(
            &l,
            &[
                "verify",
                "log",
                "--chain",
                "prod",
                "--export",
                export.to_str().unwrap(),
            ],
        );
        assert_eq!(code(&out), 3, "{}", stderr(&out));
    }

    l.db.exec(
        "UPDATE audit_events SET actor = 'mallory' WHERE chain_id = 'prod' AND chain_index = 17",
    );
    for run in 0..15 {
        for args in [
            &["verify", "log", "--chain", "prod"][..],
            &["--json", "verify", "log", "--chain", "prod"][..],
            &["verify", "log"][..],
        ] {
            let out = run_into_closed_pipe(&l, args);
            assert_eq!(
                code(&out),
                1,
                "run {run}, {args:?}: a tampered ledger must exit 1: {}",
                stderr(&out)
            );
        }
    }
}
