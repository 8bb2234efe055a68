//! `stele verify event` keeps usage errors apart from tampering: a missing
//! anchor file or an anchor at another tree size is exit 2 (nothing was
//! checked), a forged anchor or a proof against another root is exit 1.

mod common;

use common::{Ledger, code, jsonl, stderr};
use stele_store::testkit::TestDb;

#[test]
fn usage_errors_are_not_tampering() {
    let l = Ledger::new(TestDb::sqlite());
    let anchors = l.dir.path().join("anchors");
    for range in [0..30, 30..50] {
        let out = l.run_stdin(
            &["append", "--chain", "prod", "--jsonl", "-"],
            &jsonl(range, "e"),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let out = l.run(&["anchor", "now", "--local-dir", anchors.to_str().unwrap()]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let list = l.json(&["anchor", "list"]);
    let key0 = list[0]["object_key"].as_str().unwrap().to_owned();
    let key1 = list[1]["object_key"].as_str().unwrap().to_owned();
    // The README's example anchor name has the real shape.
    assert!(
        key1.rsplit('/').next().unwrap().starts_with("anchor-")
            && key1.ends_with("Z-0000000001.json"),
        "{key1}"
    );
    let anchor0 = anchors.join(&key0);
    let anchor1 = anchors.join(&key1);
    assert!(anchor1.is_file(), "{}", anchor1.display());

    let dir = tempfile::tempdir().unwrap();
    let proof = dir.path().join("seq7.tlog-proof");
    let out = l.run(&[
        "proof",
        "inclusion",
        "--chain",
        "prod",
        "--seq",
        "7",
        "--tree-size",
        "50",
        "--format",
        "tlog-proof",
        "-o",
        proof.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let p = proof.to_str().unwrap();
    let verify = |anchor: &str| l.run(&["verify", "event", "--proof", p, "--anchor", anchor]);

    // The right anchor: OK.
    let out = verify(anchor1.to_str().unwrap());
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // A missing anchor file: usage, exit 2.
    let out = verify(dir.path().join("nope.json").to_str().unwrap());
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("nope.json"), "{}", stderr(&out));

    // An anchor at another tree size: usage, exit 2, and the fix names the chain.
    let out = verify(anchor0.to_str().unwrap());
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stele proof inclusion --chain prod --seq 7 --tree-size 30"),
        "{}",
        stderr(&out)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("FAIL"));

    // A file that is no anchor at all: usage, exit 2.
    let out = verify(p);
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    // A forged anchor (its bytes changed, so its signature fails): tampering, exit 1.
    let forged = dir.path().join("forged.json");
    let original = std::fs::read_to_string(&anchor1).unwrap();
    let text = original.replace("\"tree_size\":50", "\"tree_size\":51");
    assert_ne!(text, original);
    std::fs::write(&forged, text).unwrap();
    let out = verify(forged.to_str().unwrap());
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));

    // The README's example anchor name has the real shape.
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap();
    assert!(
        !readme.contains("--anchor anchor-0000000012.json"),
        "the README names an anchor file no one has"
    );
    assert!(
        readme.contains("Z-0000000012.json"),
        "README example anchor"
    );
}
