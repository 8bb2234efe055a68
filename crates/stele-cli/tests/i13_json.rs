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
