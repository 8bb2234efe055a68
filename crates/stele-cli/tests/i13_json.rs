//! Ambiguous event JSON (a key repeated in an object) is refused wherever an
//! event enters, naming the key, with nothing appended.

mod common;

use common::{Ledger, code, stderr};
use stele_store::testkit::TestDb;

fn assert_refused(l: &Ledger, out: &std::process::Output, key: &str) {
    let err = stderr(out);
    assert_eq!(code(out), 2, "{err}");
    assert!(
        err.contains(&format!("key \"{key}\" appears twice")),
        "the key is named: {err}"
    );
    assert!(
        err.matches("nothing was appended").count() <= 1,
        "the outcome is said at most once: {err}"
    );
    let chains = l.json(&["log", "chains"]);
    assert!(
        chains.to_string().find("\"dup\"").is_none(),
        "nothing was appended: {chains}"
    );
}

#[test]
fn repeated_keys_in_event_json_are_refused_with_the_key_named() {
    let l = Ledger::new(TestDb::sqlite());
    // --payload, top level.
    let out = l.run(&[
        "append",
        "--chain",
        "dup",
        "--type",
        "t.x",
        "--payload",
        r#"{"a":1,"a":2}"#,
    ]);
    assert_refused(&l, &out, "a");
    // --payload, nested inside an array inside an object.
    let out = l.run(&[
        "append",
        "--chain",
        "dup",
        "--type",
        "t.x",
        "--payload",
        r#"{"o":[0,{"amount":1,"amount":1000}]}"#,
    ]);
    assert_refused(&l, &out, "amount");
    // A --jsonl line whose payload repeats a key, after a good line: the
    // batch is refused whole.
    let lines = concat!(
        r#"{"type":"t.x","payload":{"ok":1}}"#,
        "\n",
        r#"{"type":"t.x","payload":{"user":{"role":"viewer","role":"admin"}}}"#,
        "\n"
    );
    let out = l.run_stdin(&["append", "--chain", "dup", "--jsonl", "-"], lines);
    assert_refused(&l, &out, "role");
    assert!(stderr(&out).contains("line 2:"), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).matches("nothing was appended").count(),
        1,
        "{}",
        stderr(&out)
    );
    // A repeated member of the event object itself.
    let out = l.run_stdin(
        &["append", "--chain", "dup", "--jsonl", "-"],
        "{\"type\":\"t.x\",\"actor\":\"a\",\"actor\":\"b\"}\n",
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    // A lone surrogate never becomes a payload.
    let out = l.run(&[
        "append",
        "--chain",
        "dup",
        "--type",
        "t.x",
        "--payload",
        r#"{"s":"\ud800"}"#,
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let chains = l.json(&["log", "chains"]);
    assert!(!chains.to_string().contains("\"dup\""), "{chains}");
    // The same events without the repetition are accepted.
    let out = l.run(&[
        "append",
        "--chain",
        "dup",
        "--type",
        "t.x",
        "--payload",
        r#"{"a":1,"b":2}"#,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

/// A stored or exported payload edited to repeat a key whose last value is
/// the committed one (`{"a":0,"a":1}` reads as `{"a":1}` to `serde_json`)
/// is a finding that names the repeated key, not a merged value.
#[test]
fn a_repeated_key_in_a_stored_or_exported_payload_is_a_finding() {
    let l = Ledger::new(TestDb::sqlite());
    let out = l.run(&[
        "append",
        "--chain",
        "prod",
        "--type",
        "t.x",
        "--payload",
        r#"{"a":1}"#,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let export = l.dir.path().join("export.jsonl");
    let out = l.run(&[
        "log",
        "export",
        "--chain",
        "prod",
        "-o",
        export.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    l.db.exec(r#"UPDATE audit_events SET payload = '{"a":0,"a":1}' WHERE chain_id = 'prod'"#);
    let out = l.run(&["verify", "log", "--chain", "prod"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
    assert_eq!(code(&out), 1, "{text}");
    assert!(text.contains("repeats key \"a\""), "{text}");
    l.db.exec(r#"UPDATE audit_events SET payload = '{"a":1}' WHERE chain_id = 'prod'"#);
    assert_eq!(code(&l.run(&["verify", "log", "--chain", "prod"])), 0);

    let exported = std::fs::read_to_string(&export).unwrap();
    let forged = l.dir.path().join("forged.jsonl");
    std::fs::write(
        &forged,
        exported.replace(r#""payload":{"a":1}"#, r#""payload":{"a":0,"a":1}"#),
    )
    .unwrap();
    let out = l
        .command()
        .args(["verify", "log", "--chain", "prod", "--export"])
        .arg(&forged)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
    assert_eq!(code(&out), 1, "{text}");
    assert!(text.contains("repeats key \"a\""), "{text}");
}
