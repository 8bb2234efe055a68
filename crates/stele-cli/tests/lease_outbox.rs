//! Two `stele anchor run` processes on one database while the anchor store
//! (the real Ceph RGW) is unreachable and then reachable again: the outbox
//! lease lets exactly one process upload each anchor, and each outbox row's
//! `attempts` equals the tries really made.
//!
//! Tries are counted independently of the database: every try a process makes
//! ends in exactly one `anchor_stored` or `anchor_upload_failed` line on its
//! stdout, and every PUT that reaches the store is seen on the wire by a
//! request-logging proxy in front of the fault-injecting one.

mod common;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Ledger, jsonl, runtime};
use serde_json::Value;
use stele_store::testkit::TestDb;
use stele_worm::testkit::{FaultyProxy, create_bucket, env_required, rgw, unique_bucket};

const CHAINS: [&str; 2] = ["prod", "ops"];

/// The request line of each HTTP/1.1 request in what a client sent on one
/// connection, bodies skipped by their `Content-Length` (a request line
/// right after a body is not at the start of a line: on a reused
/// connection a PUT follows the last PUT's body).
fn request_lines(sent: &[u8]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut rest = sent;
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]);
        let mut head_lines = head.split("\r\n");
        lines.extend(head_lines.next().map(str::to_owned));
        let body: usize = head_lines
            .filter_map(|h| h.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse().ok())
            .unwrap_or(0);
        rest = rest.get(end + 4 + body..).unwrap_or_default();
    }
    lines
}

#[test]
fn request_lines_are_found_after_a_body() {
    let sent = b"PUT /b/one HTTP/1.1\r\nHost: h\r\ncontent-length: 7\r\n\r\n{\"a\":1}PUT /b/two HTTP/1.1\r\nContent-Length: 0\r\n\r\nHEAD /b/two HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_eq!(
        request_lines(sent),
        [
            "PUT /b/one HTTP/1.1",
            "PUT /b/two HTTP/1.1",
            "HEAD /b/two HTTP/1.1"
        ]
    );
}

/// A TCP proxy that records the request line of every HTTP request a client
/// sends through it.
struct RequestLog {
    addr: std::net::SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    open: Arc<AtomicUsize>,
}

impl RequestLog {
    fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(AtomicUsize::new(0));
        let (lines2, open2) = (lines.clone(), open.clone());
        let target = upstream.trim_start_matches("http://").to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                open2.fetch_add(1, Ordering::SeqCst);
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_read, mut c_write) = (server, client);
                let (lines3, open3) = (lines2.clone(), open2.clone());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = c_read.read(&mut buf) {
                        if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        seen.extend_from_slice(&buf[..n]);
                    }
                    let _ = s_write.shutdown(Shutdown::Write);
                    lines3.lock().unwrap().extend(request_lines(&seen));
                    open3.fetch_sub(1, Ordering::SeqCst);
                });
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = s_read.read(&mut buf) {
                        if n == 0 || c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_write.shutdown(Shutdown::Write);
                });
            }
        });
        Self { addr, lines, open }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request lines so far, once every connection has closed.
    fn lines(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.open.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "proxy connections never closed");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.lines.lock().unwrap().clone()
    }
}

fn with_s3(cmd: &mut Command, endpoint: &str, bucket: &str) {
    common::with_rgw_anchors(cmd, endpoint, bucket);
    cmd.env("AUDIT_ANCHOR_VOLUME", "25")
        .env_remove("AUDIT_ANCHOR_CHAIN_ID")
        .env_remove("AUDIT_ANCHOR_PREFIX");
}

/// What the anchoring processes said about their tries, per (chain, seq).
#[derive(Default)]
struct Tries {
    stored: BTreeMap<(String, u64), u32>,
    failed: BTreeMap<(String, u64), u32>,
}

impl Tries {
    fn add(&mut self, stdout: &[u8]) {
        for line in String::from_utf8_lossy(stdout).lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let key = (
                v["anchor"]["chain_id"].as_str().unwrap_or("").to_owned(),
                v["anchor"]["anchor_seq"].as_u64().unwrap_or(u64::MAX),
            );
            match v["event"].as_str() {
                Some("anchor_stored") => *self.stored.entry(key).or_default() += 1,
                Some("anchor_upload_failed") => *self.failed.entry(key).or_default() += 1,
                _ => {}
            }
        }
    }
}

/// Starts two `stele anchor run --once` processes at the same moment and
/// waits for both; their reports go into `tries`.
fn two_anchorers_at_once(l: &Ledger, endpoint: &str, bucket: &str, tries: &mut Tries) {
    let spawn = || -> Child {
        let mut cmd = l.command();
        with_s3(&mut cmd, endpoint, bucket);
        cmd.args(["--json", "anchor", "run", "--once"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = [spawn(), spawn()];
    for child in children {
        let out = child.wait_with_output().unwrap();
        // 0, or 3 while the store is down; never a refusal or a finding.
        let code = out.status.code().unwrap_or(-1);
        assert!(
            code == 0 || code == 3,
            "anchor run exited {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tries.add(&out.stdout);
    }
}

fn append(l: &Ledger, chain: &str, batch: usize) {
    let out = l.run_stdin(
        &["append", "--chain", chain, "--jsonl", "-"],
        &jsonl(0..30, &format!("{chain}-{batch}")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn two_anchorers_upload_each_anchor_exactly_once(db: TestDb) {
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("cli-lease")), true));
    let faulty = FaultyProxy::start(&env_required("STELE_TEST_RGW_ENDPOINT"));
    let wire = RequestLog::start(faulty.endpoint());
    let l = Ledger::new(db);
    let mut tries = Tries::default();

    // The store is unreachable: anchors are built and wait in the outbox.
    faulty.set_down(true);
    for batch in 0..4 {
        for chain in CHAINS {
            append(&l, chain, batch);
        }
        two_anchorers_at_once(&l, &wire.endpoint(), s3.bucket(), &mut tries);
    }
    let outbox = l.json(&["anchor", "list", "--status", "pending"]);
    let pending = outbox.as_array().unwrap().len();
    assert!(pending >= 8, "anchors waited in the outbox: {outbox}");
    assert!(
        !tries.failed.is_empty(),
        "uploads were tried during the outage"
    );

    // Reachable again: both processes upload, at the same moments.
    faulty.set_down(false);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        two_anchorers_at_once(&l, &wire.endpoint(), s3.bucket(), &mut tries);
        let pending = l.json(&["anchor", "list", "--status", "pending"]);
        if pending.as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "anchors still pending: {pending}"
        );
    }

    let rows = l.json(&["anchor", "list"]);
    let rows = rows.as_array().unwrap();
    let puts = wire.lines();
    for row in rows {
        let chain = row["chain_id"].as_str().unwrap().to_owned();
        let seq = row["anchor_seq"].as_u64().unwrap();
        let key = row["object_key"].as_str().unwrap();
        let id = (chain.clone(), seq);
        let stored = tries.stored.get(&id).copied().unwrap_or(0);
        let failed = tries.failed.get(&id).copied().unwrap_or(0);
        assert_eq!(row["status"], "verified", "{row}");
        assert_eq!(
            stored, 1,
            "{chain} #{seq} was reported stored by {stored} tries: uploaded more than once"
        );
        assert_eq!(
            row["attempts"].as_u64().unwrap(),
            u64::from(stored + failed),
            "{chain} #{seq}: attempts must count each real try once ({stored} stored + {failed} failed)"
        );
        let on_wire = puts
            .iter()
            .filter(|l| l.starts_with("PUT ") && l.contains(&format!("/{key}")))
            .count();
        assert_eq!(
            on_wire, 1,
            "{chain} #{seq}: PUTs of {key} that reached the store"
        );
    }
    // No try was made (or reported) for anchors the outbox does not hold.
    let known: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["chain_id"].as_str().unwrap().to_owned(),
                r["anchor_seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        tries
            .stored
            .keys()
            .chain(tries.failed.keys())
            .all(|k| known.contains(k))
    );

    // The bucket: one object and one version per anchor, nothing dropped.
    for chain in CHAINS {
        let in_outbox = rows.iter().filter(|r| r["chain_id"] == chain).count();
        let keys = rt.block_on(s3.list(&format!("anchors/{chain}/"))).unwrap();
        assert_eq!(keys.len(), in_outbox, "{chain}: one object per anchor");
        let versions = rt
            .block_on(
                s3.client()
                    .list_object_versions()
                    .bucket(s3.bucket())
                    .prefix(format!("anchors/{chain}/"))
                    .send(),
            )
            .unwrap();
        assert_eq!(
            versions.versions().len(),
            keys.len(),
            "{chain}: no anchor written twice"
        );
    }
}

#[test]
fn postgres_two_anchorers_upload_each_anchor_exactly_once() {
    stele_store::testkit::live_or_skip!(Rgw, Postgres);
    two_anchorers_upload_each_anchor_exactly_once(TestDb::postgres());
}

#[test]
fn sqlite_two_anchorers_upload_each_anchor_exactly_once() {
    stele_store::testkit::live_or_skip!(Rgw);
    two_anchorers_upload_each_anchor_exactly_once(TestDb::sqlite());
}
