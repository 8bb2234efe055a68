//! A gateway receipt's proof (`?proof=true`, a C2SP tlog-proof) checked by
//! an independent implementation: Go's `golang.org/x/mod/sumdb/note` and
//! `sumdb/tlog`, through `tests/go/verify_tlog_proof`, built offline in
//! GOPATH mode. What it accepts and refuses must match `stele verify event`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::http::{Gateway, token};
use common::{Ledger, code, stderr};
use serde_json::{Value, json};
use stele_ledger::checkpoint::{self, TlogProof};
use stele_store::testkit::TestDb;
use stele_worm::testkit::env_required;

/// Builds the Go verifier into `dir` and returns its path. Offline: GOPATH
/// mode against the Debian sources of `golang.org/x/mod`, no module proxy.
fn build_go_verifier(dir: &Path) -> PathBuf {
    let go = env_required("STELE_TEST_GO");
    let gopath = env_required("STELE_TEST_GOPATH");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/verify_tlog_proof");
    let binary = dir.join("verify_tlog_proof");
    let out = Command::new(&go)
        .current_dir(&source)
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .env("GO111MODULE", "off")
        .env("GOPATH", &gopath)
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        // Kept between runs, in the build's target directory.
        .env(
            "GOCACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-build-cache"),
        )
        .output()
        .unwrap_or_else(|e| panic!("cannot run {go}: {e}"));
    assert!(
        out.status.success(),
        "go build of {} failed: {}",
        source.display(),
        stderr(&out)
    );
    binary
}

/// What one verifier said about one proof.
struct Verdict {
    go: Output,
    stele: Output,
}

/// Runs the Go verifier and `stele verify event` (offline, an empty data
/// directory and only the key) on `proof` with `vkey`.
fn verify_both(go_bin: &Path, work: &Path, proof: &str, vkey: &str, origin: &str) -> Verdict {
    let proof_file = work.join("receipt.tlog-proof");
    let vkey_file = work.join("verifier.vkey");
    std::fs::write(&proof_file, proof).expect("write proof");
    std::fs::write(&vkey_file, vkey).expect("write verifier key");
    let go = Command::new(go_bin)
        .args(["-origin", origin])
        .arg(&proof_file)
        .arg(&vkey_file)
        .output()
        .expect("run the Go verifier");
    let offline = tempfile::tempdir().expect("tempdir");
    let stele = Command::new(env!("CARGO_BIN_EXE_stele"))
        .env_remove("STELE_DB")
        .env_remove("STELE_DATA_DIR")
        .arg("--data-dir")
        .arg(offline.path())
        .args(["verify", "event", "--proof"])
        .arg(&proof_file)
        .args(["--verifier-key", vkey.trim()])
        .output()
        .expect("run stele verify event");
    Verdict { go, stele }
}

/// Appends `events` to `chain` with `?proof=true`; returns the receipts.
fn append_with_proofs(gw: &Gateway, t: &str, chain: &str, events: Vec<Value>) -> Vec<Value> {
    let r = gw.request(
        "POST",
        &format!("/v1/chains/{chain}/events?proof=true"),
        Some(t),
        &[("Content-Type", "application/json")],
        Value::Array(events).to_string().as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["receipts"].as_array().expect("receipts").clone()
}

/// Flips one bit of the `n`-th hash of the proof's audit path.
fn flip_path_hash(proof: &TlogProof, n: usize) -> String {
    let mut tampered = proof.clone();
    tampered.hashes[n].0[7] ^= 0x01;
    tampered.to_text()
}

#[test]
fn gateway_receipts_verify_with_go_sumdb_and_tampered_ones_do_not() {
    stele_store::testkit::live_or_skip!(Go);
    let work = tempfile::tempdir().expect("tempdir");
    let go_bin = build_go_verifier(work.path());
    let ledger = Ledger::new(TestDb::sqlite());
    let t = token(&ledger, "append,read", "*");
    let gw = Gateway::start(&ledger);
    let vkey = std::fs::read_to_string(ledger.data_dir().join("keys/verifier.vkey"))
        .expect("verifier key");
    let origin = "stele.test/orders";

    // Two commits, so proofs are against trees of several shapes (5, then 13).
    let event = |i: usize| json!({"type": "order.placed", "actor": format!("user{i}@example.com"), "payload": {"order": i, "total": "12.50"}});
    let mut receipts = append_with_proofs(&gw, &t, "orders", (0..5).map(event).collect());
    receipts.extend(append_with_proofs(
        &gw,
        &t,
        "orders",
        (5..13).map(event).collect(),
    ));
    let proofs: Vec<String> = receipts
        .iter()
        .map(|r| r["tlog_proof"].as_str().expect("tlog_proof").to_owned())
        .collect();
    for (seq, proof) in proofs.iter().enumerate() {
        let v = verify_both(&go_bin, work.path(), proof, &vkey, origin);
        assert_eq!(code(&v.go), 0, "Go refused seq {seq}: {}", stderr(&v.go));
        assert!(
            String::from_utf8_lossy(&v.go.stdout)
                .starts_with(&format!("OK index {seq} is in {origin}")),
            "{}",
            String::from_utf8_lossy(&v.go.stdout)
        );
        assert_eq!(
            code(&v.stele),
            0,
            "stele refused seq {seq}: {}",
            stderr(&v.stele)
        );
    }

    // Seq 6 in the tree of 13: an audit path of several hashes.
    let original = TlogProof::parse(&proofs[6]).expect("stele's own proof parses");
    assert!(original.hashes.len() >= 3, "{original:?}");
    let other_ledger = Ledger::new(TestDb::sqlite());
    let other_key = std::fs::read_to_string(other_ledger.data_dir().join("keys/verifier.vkey"))
        .expect("the other ledger's verifier key");
    let forged_seq = {
        // A proof signed with the real key, of a one-event tree whose event
        // says it is seq 7 while the proof puts it at index 0: only the
        // key's holder can make it, and the seq check catches it.
        let extra = String::from_utf8(original.extra.clone().expect("extra"))
            .expect("canonical bytes are UTF-8")
            .replacen("\"seq\":6", "\"seq\":7", 1);
        assert!(extra.contains("\"seq\":7"), "{extra}");
        let signer = stele_keys::KeyDir::new(ledger.data_dir().join("keys"))
            .signer()
            .expect("signing key");
        let leaf = stele_ledger::hashing::leaf_hash(extra.as_bytes());
        TlogProof {
            extra: Some(extra.into_bytes()),
            index: 0,
            hashes: Vec::new(),
            checkpoint: checkpoint::sign(origin, 1, leaf, &signer).expect("sign"),
        }
        .to_text()
    };
    let edited_event = {
        let mut p = original.clone();
        let extra = String::from_utf8(p.extra.take().expect("extra")).expect("UTF-8");
        p.extra = Some(extra.replacen("user6@", "user9@", 1).into_bytes());
        p.to_text()
    };
    let edited_checkpoint = {
        let mut p = original.clone();
        p.checkpoint = p.checkpoint.replacen("\n13\n", "\n14\n", 1);
        p.to_text()
    };
    // (what, proof, key, origin, what Go's message names)
    let refused: Vec<(&str, String, &str, &str, &str)> = vec![
        (
            "a flipped bit in the first path hash",
            flip_path_hash(&original, 0),
            &vkey,
            origin,
            "inclusion proof",
        ),
        (
            "a flipped bit in the last path hash",
            flip_path_hash(&original, original.hashes.len() - 1),
            &vkey,
            origin,
            "inclusion proof",
        ),
        (
            "the proof moved to another index",
            proofs[6].replacen("\nindex 6\n", "\nindex 5\n", 1),
            &vkey,
            origin,
            "inclusion proof",
        ),
        (
            "another ledger's key of the same log name",
            proofs[6].clone(),
            &other_key,
            origin,
            "signature",
        ),
        (
            "a checkpoint edited after signing",
            edited_checkpoint,
            &vkey,
            origin,
            "signature",
        ),
        (
            "edited event bytes",
            edited_event,
            &vkey,
            origin,
            "inclusion proof",
        ),
        (
            "a signed proof whose event carries another seq",
            forged_seq,
            &vkey,
            origin,
            "carries seq 7",
        ),
    ];
    for (what, proof, key, origin, named) in &refused {
        let v = verify_both(&go_bin, work.path(), proof, key, origin);
        assert_eq!(
            code(&v.go),
            1,
            "Go accepted {what}: {}",
            String::from_utf8_lossy(&v.go.stdout)
        );
        assert!(
            stderr(&v.go).contains(named),
            "Go refused {what}, but not naming {named:?}: {}",
            stderr(&v.go)
        );
        assert!(v.go.stdout.is_empty(), "{what}");
        assert_eq!(code(&v.stele), 1, "stele on {what}: {}", stderr(&v.stele));
    }

    // Go only: the origin it is told to expect, and the format read
    // strictly (c2sp.org/tlog-proof: a decimal index with no leading zeroes).
    let go_refused: Vec<(&str, String, &str, &str)> = vec![
        (
            "a checkpoint of another chain",
            proofs[6].clone(),
            "stele.test/refunds",
            "origin",
        ),
        (
            "an index with a leading zero",
            proofs[6].replacen("\nindex 6\n", "\nindex 06\n", 1),
            origin,
            "leading zeroes",
        ),
        (
            "no tlog-proof header",
            proofs[6].replacen("c2sp.org/tlog-proof@v1\n", "", 1),
            origin,
            "malformed tlog-proof",
        ),
    ];
    for (what, proof, origin, named) in &go_refused {
        let v = verify_both(&go_bin, work.path(), proof, &vkey, origin);
        assert_eq!(code(&v.go), 1, "Go accepted {what}");
        assert!(
            stderr(&v.go).contains(named),
            "Go refused {what}, but not naming {named:?}: {}",
            stderr(&v.go)
        );
    }
}
