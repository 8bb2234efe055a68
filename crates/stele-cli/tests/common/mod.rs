//! Shared fixtures for the binary's tests.

#![allow(dead_code)]

pub mod http;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use stele_ledger::hashing::leaf_hash;
use stele_ledger::merkle::TreeAppender;
use stele_ledger::{ChainId, Event, Hash, StoredEvent};
use stele_store::DbLocation;
use stele_store::testkit::TestDb;

/// An initialized data directory on one backend.
pub struct Ledger {
    pub dir: tempfile::TempDir,
    pub db: TestDb,
}

impl Ledger {
    pub fn new(db: TestDb) -> Self {
        let ledger = Self {
            dir: tempfile::tempdir().unwrap(),
            db,
        };
        let out = ledger.run(&["init", "--log-name", "stele.test"]);
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ledger
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn db_arg(&self) -> String {
        match &self.db.location {
            DbLocation::Sqlite(p) => p.display().to_string(),
            DbLocation::Postgres(url) => url.clone(),
        }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stele"));
        cmd.env_remove("STELE_DB").env_remove("STELE_DATA_DIR");
        cmd.arg("--data-dir")
            .arg(self.data_dir())
            .arg("--db")
            .arg(self.db_arg());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    pub fn run_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs with --json, asserts success, parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.command().arg("--json").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "stele {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stele {args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Appends `jsonl(range, prefix)` to `chain`; asserts it succeeded.
    pub fn append_jsonl(&self, chain: &str, range: std::ops::Range<usize>, prefix: &str) {
        let out = self.run_stdin(
            &["append", "--chain", chain, "--jsonl", "-"],
            &jsonl(range, prefix),
        );
        assert!(out.status.success(), "append: {}", stderr(&out));
    }

    /// Writes a tlog-proof of `seq` in `chain` (at the current size) to `path`.
    pub fn tlog_proof(&self, chain: &str, seq: u64, path: &std::path::Path) {
        let out = self.run(&[
            "proof",
            "inclusion",
            "--chain",
            chain,
            "--seq",
            &seq.to_string(),
            "--format",
            "tlog-proof",
            "-o",
            path.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "proof: {}", stderr(&out));
    }

    pub fn size(&self, chain: &str) -> u64 {
        let chains = self.json(&["log", "chains"]);
        chains
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["chain_id"] == chain)
            .map_or(0, |c| c["size"].as_u64().unwrap())
    }
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A malformed verifier key was refused (exit 2) before anything was
/// read or fetched, and nothing was reported on stdout.
pub fn assert_key_refused(out: &Output, what: &str) {
    assert_eq!(code(out), 2, "{what}: {}", stderr(out));
    assert!(
        stderr(out).contains("not a signed-note verifier key"),
        "{what}: {}",
        stderr(out)
    );
    assert!(out.stdout.is_empty(), "{what}");
}

pub fn jsonl(range: std::ops::Range<usize>, prefix: &str) -> String {
    range
        .map(|i| {
            let payload = serde_json::json!({"n": i, "pad": "x".repeat(200)});
            format!("{{\"type\":\"test.event\",\"actor\":\"{prefix}\",\"payload\":{payload},\"idempotency_key\":\"{prefix}-{i}\"}}\n")
        })
        .collect()
}

/// A one-worker Tokio runtime for a test's own S3 calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Points a `stele` command at RGW (or a proxy in front of it) through the
/// standard AWS variables, as a deployment would, with `bucket` as the
/// anchor bucket; the test environment's anchor retention and KMS key are
/// removed so they cannot change what the test does.
pub fn with_rgw_anchors(cmd: &mut Command, endpoint: &str, bucket: &str) {
    use stele_worm::testkit::env_required;
    cmd.env(
        "AWS_ACCESS_KEY_ID",
        env_required("STELE_TEST_RGW_ACCESS_KEY"),
    )
    .env(
        "AWS_SECRET_ACCESS_KEY",
        env_required("STELE_TEST_RGW_SECRET_KEY"),
    )
    .env("AWS_ENDPOINT_URL", endpoint)
    .env("AWS_REGION", "us-east-1")
    .env("AUDIT_ANCHOR_BUCKET", bucket)
    .env_remove("AUDIT_ANCHOR_RETENTION_DAYS")
    .env_remove("AUDIT_ANCHOR_KMS_KEY_ID");
}

pub fn blob(db: &TestDb, bytes: &[u8]) -> String {
    match db.location {
        DbLocation::Sqlite(_) => format!("X'{}'", hex::encode(bytes)),
        DbLocation::Postgres(_) => format!("decode('{}', 'hex')", hex::encode(bytes)),
    }
}

/// Rewrites `seq`'s payload as an attacker with the database and no keys
/// would: new leaf hash, every stored Merkle node recomputed, `event_hash` kept.
pub fn rewrite_event(db: &TestDb, chain: &str, seq: u64, payload: &str) {
    let chain_id = ChainId::new(chain).unwrap();
    let mut rows: Vec<(Event, Vec<u8>)> = Vec::new();
    runtime().block_on(async {
        let store = db.open().await;
        let mut snapshot = store.read_snapshot().await.unwrap();
        snapshot
            .scan(&chain_id, 0, None, &mut |e, nodes| {
                rows.push((e.to_event(), nodes.to_vec()));
                Ok(())
            })
            .await
            .unwrap();
        snapshot.end().await.unwrap();
        store.close().await;
    });
    let mut sql = String::new();
    let mut tree = TreeAppender::empty();
    for (e, stored_nodes) in &mut rows {
        let mut leaf = Hash(hex::decode(&e.leaf_hash).unwrap().try_into().unwrap());
        if e.seq == seq {
            e.payload = Some(payload.to_owned());
            leaf = leaf_hash(
                &StoredEvent::from(&*e)
                    .committed_as_stored()
                    .canonical_bytes(),
            );
            sql.push_str(&format!(
                "UPDATE audit_events SET payload = '{payload}', leaf_hash = {} WHERE chain_id = '{chain}' AND chain_index = {seq};\n",
                blob(db, &leaf.0)
            ));
        }
        let nodes: Vec<u8> = tree.push(leaf).iter().flat_map(|h| h.0).collect();
        if nodes != *stored_nodes {
            sql.push_str(&format!(
                "UPDATE audit_events SET merkle_nodes = {} WHERE chain_id = '{chain}' AND chain_index = {};\n",
                blob(db, &nodes),
                e.seq
            ));
        }
    }
    db.exec(&sql);
}

/// The `event_hash` a forger who rewrote `seq` would need next: the HMAC,
/// under the key that wrote it, of the previous row's stored `event_hash`
/// and `seq`'s stored leaf. No answer, report or log line may hold it.
pub fn hmac_a_forger_needs(l: &Ledger, chain: &str, seq: u64) -> String {
    let chain_id = ChainId::new(chain).unwrap();
    let (prev, event) = runtime().block_on(async {
        let store = l.db.open().await;
        let prev = store.event(&chain_id, seq - 1).await.unwrap();
        let event = store.event(&chain_id, seq).await.unwrap();
        store.close().await;
        (prev, event)
    });
    let keyring = stele_keys::KeyDir::new(l.data_dir().join("keys"))
        .keyring()
        .unwrap();
    let key = keyring.get(&event.key_id).expect("the key that wrote it");
    let hash = |hex_text: &str| Hash(hex::decode(hex_text).unwrap().try_into().unwrap());
    hex::encode(
        key.chain_hash(&hash(&prev.event_hash), &hash(&event.leaf_hash))
            .0,
    )
}
