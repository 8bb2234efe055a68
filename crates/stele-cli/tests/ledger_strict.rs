//! The binary's input rules hold on both sides: what append refuses, every
//! verifier refuses too. Stored rows (SQLite and PostgreSQL, edited with SQL)
//! and export files must hold the exact text append wrote; reserved event
//! types are refused from clients; one nesting limit for append and every
//! verifier.

mod common;

use common::{Ledger, code, stderr};
use serde_json::Value;
use stele_store::testkit::TestDb;

macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $case() { super::$case(super::Ledger::new(super::TestDb::sqlite())); })*
        }
        mod postgres {
            $(#[test] fn $case() {
                stele_store::testkit::live_or_skip!(Postgres);
                super::$case(super::Ledger::new(super::TestDb::postgres()));
            })*
        }
    };
}

on_every_backend!(
    another_spelling_of_a_committed_number_is_named,
    reserved_event_types_are_refused_and_nothing_is_appended,
    the_deepest_payload_append_accepts_verifies_everywhere,
);

/// Each stored number, and a text that rounds to the same IEEE double (so
/// RFC 8785 canonicalization maps both to the committed bytes).
const SPELLINGS: [(&str, &str); 5] = [
    ("9007199254740992", "9007199254740993"),
    ("1e+21", "1000000000000000000001"),
    ("0.1", "0.10000000000000001"),
    ("0", "-0.0"),
    ("1", "1.0"),
];

fn findings_of(report: &Value) -> Vec<(String, Option<u64>, String)> {
    report["findings"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or_default().to_owned(),
                f["seq"].as_u64(),
                f["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn another_spelling_of_a_committed_number_is_named(l: Ledger) {
    let batch: String = SPELLINGS
        .iter()
        .map(|(committed, _)| {
            format!("{{\"type\":\"num.test\",\"payload\":{{\"n\":{committed}}}}}\n")
        })
        .collect();
    let out = l.run_stdin(&["append", "--chain", "prod", "--jsonl", "-"], &batch);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(code(&l.run(&["verify", "log", "--chain", "prod"])), 0);
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
    let exported = std::fs::read_to_string(&export).unwrap();

    for (seq, (committed, respelled)) in SPELLINGS.iter().enumerate() {
        let stored = format!("{{\"n\":{committed}}}");
        let edited = format!("{{\"n\":{respelled}}}");
        let row = format!("chain_id = 'prod' AND chain_index = {seq}");
        assert_eq!(
            l.db.query_text(&format!("SELECT payload FROM audit_events WHERE {row}"))
                .as_deref(),
            Some(stored.as_str())
        );

        // The stored row, edited with SQL.
        l.db.exec(&format!(
            "UPDATE audit_events SET payload = '{edited}' WHERE {row}"
        ));
        let out = l
            .command()
            .args(["--json", "verify", "log", "--chain", "prod"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 1, "{respelled}: {}", stderr(&out));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let chain = &report["chains"][0];
        assert_eq!(chain["first_bad_seq"], seq, "{respelled}: {chain:#}");
        assert_eq!(chain["findings"][0]["kind"], "not_canonical", "{chain:#}");
        assert_eq!(chain["findings"][0]["seq"], seq, "{chain:#}");
        let text = l.run(&["verify", "log", "--chain", "prod"]);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains(&format!(
                "seq {seq}: payload text is not in RFC 8785 canonical form"
            )) && text.contains(respelled),
            "{text}"
        );
        l.db.exec(&format!(
            "UPDATE audit_events SET payload = '{stored}' WHERE {row}"
        ));
        assert_eq!(code(&l.run(&["verify", "log", "--chain", "prod"])), 0);

        // The export file, edited.
        let from = format!("\"payload\":{stored}");
        assert_eq!(exported.matches(&from).count(), 1, "{exported}");
        let forged = l.dir.path().join(format!("forged-{seq}.jsonl"));
        std::fs::write(
            &forged,
            exported.replace(&from, &format!("\"payload\":{edited}")),
        )
        .unwrap();
        let out = l
            .command()
            .args(["--json", "verify", "log", "--chain", "prod", "--export"])
            .arg(&forged)
            .output()
            .unwrap();
        assert_eq!(code(&out), 1, "{respelled}: {}", stderr(&out));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let findings = findings_of(&report);
        assert!(
            findings
                .iter()
                .any(|(kind, s, message)| kind == "not_canonical"
                    && *s == Some(seq as u64)
                    && message.contains(respelled)),
            "{respelled}: {report:#}"
        );
    }
    // The untouched export names nothing.
    let out = l
        .command()
        .args(["--json", "verify", "log", "--chain", "prod", "--export"])
        .arg(&export)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        findings_of(&report)
            .iter()
            .all(|(kind, _, _)| kind != "not_canonical" && kind != "content_altered"),
        "{report:#}"
    );
}

fn reserved_event_types_are_refused_and_nothing_is_appended(l: Ledger) {
    let out = l.run(&["append", "--chain", "prod", "--type", "seed"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let forged =
        r#"{"bucket":"attacker-bucket","key":"evidence/x","version_id":"v1","sha256":"00"}"#;
    for event_type in ["evidence.uploaded", "Evidence.Uploaded", "stele.anchor"] {
        let out = l.run(&[
            "append",
            "--chain",
            "prod",
            "--type",
            event_type,
            "--payload",
            forged,
        ]);
        assert_eq!(code(&out), 2, "{event_type}: {}", stderr(&out));
        assert!(stderr(&out).contains("reserved"), "{}", stderr(&out));
        // The evidence chain is no exception.
        let out = l.run(&["append", "--chain", "evidence", "--type", event_type]);
        assert_eq!(code(&out), 2, "{event_type}: {}", stderr(&out));
    }
    let batch = format!(
        "{{\"type\":\"user.login\"}}\n{{\"type\":\"evidence.legal_hold\",\"payload\":{forged}}}\n"
    );
    let out = l.run_stdin(&["append", "--chain", "prod", "--jsonl", "-"], &batch);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("line 2") && stderr(&out).contains("reserved"),
        "{}",
        stderr(&out)
    );
    assert_eq!(l.size("prod"), 1);
    assert_eq!(l.size("evidence"), 0);
}

/// `[[...{"x":1}...]]`, `depth` arrays and objects deep.
fn nested(depth: usize) -> String {
    format!(
        "{}{{\"x\":1}}{}",
        "[".repeat(depth - 1),
        "]".repeat(depth - 1)
    )
}

fn the_deepest_payload_append_accepts_verifies_everywhere(l: Ledger) {
    let deepest = stele_ledger::event::MAX_PAYLOAD_DEPTH;
    for (i, payload) in [nested(1), nested(deepest)].iter().enumerate() {
        let out = l.run(&[
            "append",
            "--chain",
            "deep",
            "--type",
            "deep.payload",
            "--payload",
            payload,
        ]);
        assert!(out.status.success(), "{i}: {}", stderr(&out));
    }
    let vkey = l.json(&["keys", "export-verifier"])["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let proof = l.dir.path().join("deep.tlog-proof");
    let out = l.run(&[
        "proof",
        "inclusion",
        "--chain",
        "deep",
        "--seq",
        "1",
        "--format",
        "tlog-proof",
        "-o",
        proof.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = l
        .command()
        .args([
            "--json",
            "verify",
            "event",
            "--verifier-key",
            &vkey,
            "--proof",
        ])
        .arg(&proof)
        .output()
        .unwrap();
    assert_eq!(
        code(&out),
        0,
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    assert_eq!(code(&l.run(&["verify", "log", "--chain", "deep"])), 0);
    let export = l.dir.path().join("deep.jsonl");
    let out = l.run(&[
        "log",
        "export",
        "--chain",
        "deep",
        "-o",
        export.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = l
        .command()
        .args(["--json", "verify", "log", "--chain", "deep", "--export"])
        .arg(&export)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // No event is named (a verdict about the absence of anchors is not this test's business).
    assert!(
        findings_of(&report).iter().all(|(_, seq, _)| seq.is_none()),
        "{report:#}"
    );

    // One level deeper is refused at append, and nothing is written.
    let out = l.run(&[
        "append",
        "--chain",
        "deep",
        "--type",
        "deep.payload",
        "--payload",
        &nested(deepest + 1),
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("deep"), "{}", stderr(&out));
    let line = format!(
        "{{\"type\":\"deep.payload\",\"payload\":{}}}\n",
        nested(deepest + 1)
    );
    let out = l.run_stdin(&["append", "--chain", "deep", "--jsonl", "-"], &line);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(l.size("deep"), 2);
}
