//! Shared fixtures for the binary's tests.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
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

pub fn jsonl(range: std::ops::Range<usize>, prefix: &str) -> String {
    range
        .map(|i| {
            let payload = serde_json::json!({"n": i, "pad": "x".repeat(200)});
            format!("{{\"type\":\"test.event\",\"actor\":\"{prefix}\",\"payload\":{payload},\"idempotency_key\":\"{prefix}-{i}\"}}\n")
        })
        .collect()
}
