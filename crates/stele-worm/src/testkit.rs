//! Fixtures for stele's live-service tests: configurations for the Ceph RGW
//! and ministack started by `scripts/test.sh`, and fresh buckets on them.
//! Built only with the `testkit` feature.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::{RetryPolicy, S3Config, S3Worm};

const HOW_TO_RUN: &str = "run the live-service tests with `scripts/test.sh` \
     (or `scripts/test-services.sh start` and `source .test-services/env` first)";

/// A variable written by `scripts/test-services.sh`; panics if missing, so a
/// test without its service fails instead of passing silently. Live tests
/// call [`live`] (or [`live_or_skip!`](crate::live_or_skip)) first, so on a
/// machine without the services this is only reached when a test forgot to.
pub fn env_required(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{name} is not set: {HOW_TO_RUN}"),
    }
}

/// A live service some tests need. Plain `cargo test` runs without them
/// (pure and SQLite tests only); `scripts/test.sh` starts them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Ceph RGW with Object Lock (`STELE_TEST_RGW_*`).
    Rgw,
    /// ministack, the AWS emulator (`STELE_TEST_MINISTACK_ENDPOINT`).
    Ministack,
    /// The test PostgreSQL server (`STELE_TEST_PG_URL`).
    Postgres,
    /// A headless Chromium on `PATH` (the HTML report test).
    Chromium,
    /// The `schemathesis` API tester (`STELE_TEST_SCHEMATHESIS`, its path).
    Schemathesis,
    /// Go with `golang.org/x/mod` in a GOPATH (`STELE_TEST_GO`, the `go`
    /// binary; `STELE_TEST_GOPATH`): proofs checked by Go's sumdb packages.
    Go,
}

/// Set by `scripts/test.sh`: every live service must be there, and a missing
/// one fails the test instead of skipping it, so CI never skips silently.
pub const REQUIRE_LIVE_VAR: &str = "STELE_TEST_REQUIRE_LIVE";

impl Service {
    /// What the service is called in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rgw => "Ceph RGW",
            Self::Ministack => "ministack",
            Self::Postgres => "PostgreSQL",
            Self::Chromium => "Chromium",
            Self::Schemathesis => "schemathesis",
            Self::Go => "Go with golang.org/x/mod",
        }
    }

    /// Why the service is unavailable, or `None` when the test can use it.
    fn missing(self) -> Option<String> {
        let unset = |vars: &[&str]| {
            let unset: Vec<&str> = vars
                .iter()
                .copied()
                .filter(|v| std::env::var_os(v).is_none_or(|x| x.is_empty()))
                .collect();
            (!unset.is_empty()).then(|| format!("{} not set", unset.join(", ")))
        };
        match self {
            Self::Rgw => unset(&[
                "STELE_TEST_RGW_ENDPOINT",
                "STELE_TEST_RGW_ACCESS_KEY",
                "STELE_TEST_RGW_SECRET_KEY",
            ]),
            Self::Ministack => unset(&["STELE_TEST_MINISTACK_ENDPOINT"]),
            Self::Postgres => unset(&["STELE_TEST_PG_URL"]),
            Self::Schemathesis => unset(&["STELE_TEST_SCHEMATHESIS"]),
            Self::Go => unset(&["STELE_TEST_GO", "STELE_TEST_GOPATH"]),
            Self::Chromium => {
                let on_path = std::env::var_os("PATH").is_some_and(|path| {
                    std::env::split_paths(&path).any(|dir| dir.join("chromium").is_file())
                });
                (!on_path).then(|| "no `chromium` on PATH".to_owned())
            }
        }
    }
}

/// Whether a live test may run: true when every service in `needs` is
/// configured. Otherwise, with `STELE_TEST_REQUIRE_LIVE=1` (set by
/// `scripts/test.sh`) it panics, naming the missing service; without it,
/// it prints one line on stderr saying what the test needs and returns false,
/// and the test returns early. The one place that decides skip or fail.
pub fn live(test: &str, needs: &[Service]) -> bool {
    // An async test's body is a closure: `s3::name::{{closure}}` names `s3::name`.
    let test = test.trim_end_matches("::{{closure}}");
    let missing: Vec<String> = needs
        .iter()
        .filter_map(|s| s.missing().map(|why| format!("{} ({why})", s.name())))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join(", ");
    if std::env::var(REQUIRE_LIVE_VAR).is_ok_and(|v| v == "1") {
        panic!(
            "{test} needs {missing}, and {REQUIRE_LIVE_VAR}=1 makes a missing service a failure: {HOW_TO_RUN}"
        );
    }
    eprintln!("SKIPPED {test}: needs {missing}; `scripts/test.sh` runs it");
    false
}

/// Returns from the calling test (skipped, one line on stderr) unless every
/// named [`Service`] is available; see [`live`].
/// `live_or_skip!(Rgw, Postgres);`
#[macro_export]
macro_rules! live_or_skip {
    ($($service:ident),+ $(,)?) => {
        if !$crate::testkit::live(
            {
                fn here() {}
                let name = ::std::any::type_name_of_val(&here);
                name.strip_suffix("::here").unwrap_or(name)
            },
            &[$($crate::testkit::Service::$service),+],
        ) {
            return;
        }
    };
}

/// Fast retries, so outage tests finish quickly.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: std::time::Duration::from_millis(20),
        max_delay: std::time::Duration::from_millis(100),
    }
}

/// The RGW owner's configuration for `bucket`.
pub fn rgw(bucket: &str) -> S3Config {
    S3Config {
        bucket: bucket.to_owned(),
        endpoint: Some(env_required("STELE_TEST_RGW_ENDPOINT")),
        region: Some("us-east-1".into()),
        path_style: Some(true),
        static_credentials: Some((
            env_required("STELE_TEST_RGW_ACCESS_KEY"),
            env_required("STELE_TEST_RGW_SECRET_KEY"),
        )),
        kms_key_id: None,
        retry: quick_retry(),
    }
}

/// ministack's configuration for `bucket`.
pub fn ministack(bucket: &str) -> S3Config {
    S3Config {
        bucket: bucket.to_owned(),
        endpoint: Some(env_required("STELE_TEST_MINISTACK_ENDPOINT")),
        region: Some("us-east-1".into()),
        path_style: Some(true),
        static_credentials: Some(("test".into(), "test".into())),
        kms_key_id: None,
        retry: quick_retry(),
    }
}

/// A configuration for a store that is never there (a closed port on
/// loopback, dummy credentials): for outage tests that need no service.
pub fn unreachable(bucket: &str) -> S3Config {
    S3Config {
        bucket: bucket.to_owned(),
        endpoint: Some("http://127.0.0.1:9".into()),
        region: Some("us-east-1".into()),
        path_style: Some(true),
        static_credentials: Some(("test".into(), "test".into())),
        kms_key_id: None,
        retry: quick_retry(),
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A bucket name unique to this process and call.
pub fn unique_bucket(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Creates the configured bucket (with Object Lock when `object_lock`) and returns a store for it.
pub async fn create_bucket(cfg: S3Config, object_lock: bool) -> S3Worm {
    let store = S3Worm::connect(cfg).await.expect("client");
    store
        .client()
        .create_bucket()
        .bucket(store.bucket())
        .object_lock_enabled_for_bucket(object_lock)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {}: {e:?}", store.bucket()));
    store
}

/// A loopback TCP proxy in front of a store, for outage tests: while it is
/// down it refuses new connections and cuts the open ones. It can also cut
/// connections mid-transfer ([`drop_after_bytes`](Self::drop_after_bytes))
/// and flip a byte of a response ([`corrupt_response_byte`](Self::corrupt_response_byte)).
pub struct FaultyProxy {
    addr: std::net::SocketAddr,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    faults: std::sync::Arc<Faults>,
}

/// Faults to inject into upcoming connections.
#[derive(Default)]
struct Faults {
    /// Connections accepted so far.
    accepted: AtomicU32,
    /// How many more connections to cut once they reach `drop_after`.
    drops_left: AtomicU32,
    /// Client bytes a connection forwards before it is cut.
    drop_after: std::sync::atomic::AtomicU64,
    /// Connections cut so far by `drop_after_bytes`.
    dropped: AtomicU32,
    /// Offset (1-based; 0 = off) in a connection's response stream whose
    /// byte is flipped, once, on the first connection to get that far.
    corrupt_at: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl FaultyProxy {
    /// Starts a proxy on 127.0.0.1 (any free port) forwarding to `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Self {
        use std::net::{TcpListener, TcpStream};
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::<TcpStream>::new()));
        let faults = std::sync::Arc::new(Faults::default());
        let (down2, open2, faults2) = (down.clone(), open.clone(), faults.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if down2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                };
                faults2.accepted.fetch_add(1, Ordering::SeqCst);
                if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone())
                    && let Ok(mut list) = open2.lock()
                {
                    list.push(c2);
                    list.push(s2);
                }
                // Armed while cuts are left; the cut itself is taken when the
                // upload reaches the limit, so a connection that never sends
                // that much (a small request first) does not use one up.
                let cut_upload_after = (faults2.drops_left.load(Ordering::SeqCst) > 0)
                    .then(|| faults2.drop_after.load(Ordering::SeqCst));
                let corrupt_at = faults2.corrupt_at.clone();
                let (Ok(c_read), Ok(s_write), Ok(s_read), Ok(c_write)) = (
                    client.try_clone(),
                    server.try_clone(),
                    server.try_clone(),
                    client.try_clone(),
                ) else {
                    continue;
                };
                let faults3 = faults2.clone();
                std::thread::spawn(move || {
                    let cut = pump(
                        c_read,
                        s_write,
                        cut_upload_after.map(|limit| (limit, &faults3.drops_left)),
                        None,
                    );
                    if cut {
                        faults3.dropped.fetch_add(1, Ordering::SeqCst);
                        let _ = client.shutdown(std::net::Shutdown::Both);
                        let _ = server.shutdown(std::net::Shutdown::Both);
                    }
                });
                std::thread::spawn(move || {
                    pump(s_read, c_write, None, Some(&corrupt_at));
                });
            }
        });
        Self {
            addr,
            down,
            open,
            faults,
        }
    }

    /// The endpoint URL to give stele.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Takes the store "down" (refuse and cut connections) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
        if down && let Ok(mut list) = self.open.lock() {
            for s in list.drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Cuts the next `connections` connections whose client sends `bytes`
    /// bytes through them, each once it has (a transfer dropped mid-upload);
    /// connections that send less pass untouched.
    pub fn drop_after_bytes(&self, bytes: u64, connections: u32) {
        self.faults.drop_after.store(bytes, Ordering::SeqCst);
        self.faults.drops_left.store(connections, Ordering::SeqCst);
    }

    /// Flips the byte at `offset` (0-based) of a server-to-client stream
    /// (headers included), once: on the first connection whose responses
    /// reach that far, so small answers on other connections pass untouched.
    pub fn corrupt_response_byte(&self, offset: u64) {
        self.faults.corrupt_at.store(offset + 1, Ordering::SeqCst);
    }

    /// Connections forwarded so far.
    pub fn connections(&self) -> u32 {
        self.faults.accepted.load(Ordering::SeqCst)
    }

    /// Connections cut so far by [`drop_after_bytes`](Self::drop_after_bytes).
    pub fn dropped(&self) -> u32 {
        self.faults.dropped.load(Ordering::SeqCst)
    }
}

/// Decrements `counter` if positive; true if it did.
fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Copies `from` to `to` until EOF or error. Returns true if it stopped because
/// `cut_after` bytes were forwarded. With `corrupt`, flips the byte at offset
/// `corrupt - 1` of this stream if no other stream has taken that fault yet.
fn pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    mut cut_after: Option<(u64, &AtomicU32)>,
    corrupt: Option<&std::sync::atomic::AtomicU64>,
) -> bool {
    use std::io::{Read as _, Write as _};
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &mut buf[..n];
        if let Some((limit, cuts_left)) = cut_after {
            let room = usize::try_from(limit.saturating_sub(sent)).unwrap_or(usize::MAX);
            if room < chunk.len() {
                if take_one(cuts_left) {
                    let _ = to.write_all(&chunk[..room]);
                    return true;
                }
                // Every cut was taken by other connections meanwhile.
                cut_after = None;
            }
        }
        if let Some(fault) = corrupt {
            let at = fault.load(Ordering::SeqCst);
            if at > 0
                && (sent..sent + n as u64).contains(&(at - 1))
                && fault
                    .compare_exchange(at, 0, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                chunk[usize::try_from(at - 1 - sent).unwrap_or(0)] ^= 0x01;
            }
        }
        if to.write_all(chunk).is_err() {
            break;
        }
        sent += n as u64;
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
    false
}

/// Creates a key in ministack's KMS (one unsigned JSON-protocol call) and returns its id.
pub async fn create_ministack_kms_key() -> String {
    let endpoint = env_required("STELE_TEST_MINISTACK_ENDPOINT");
    // ministack speaks the KMS JSON protocol; one unsigned call creates a key.
    let body = r#"{"Description":"stele anchors"}"#;
    let out = tokio::task::spawn_blocking(move || {
        let addr = endpoint.trim_start_matches("http://").to_owned();
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        use std::io::{Read as _, Write as _};
        let req = format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: TrentService.CreateKey\r\nAuthorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(req.as_bytes()).unwrap();
        let mut resp = String::new();
        conn.read_to_string(&mut resp).unwrap();
        resp
    })
    .await
    .unwrap();
    let json = out.split("\r\n\r\n").nth(1).unwrap_or_default();
    let start = json.find('{').unwrap_or(0);
    // Avoids a JSON dependency: the answer is `{"KeyMetadata": {... "KeyId": "…" ...}}`.
    let json = &json[start..];
    let at = json
        .find("\"KeyId\"")
        .unwrap_or_else(|| panic!("KMS CreateKey answer: {out}"));
    json[at + 7..]
        .split('"')
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

/// Bytes free in the test RGW's memstore OSD (it keeps objects in RAM, 2 GiB
/// by default), read from the OSD's admin socket; `None` when that cannot be
/// asked (no `ceph` command, or services started elsewhere).
pub fn memstore_free_bytes() -> Option<u64> {
    let dir = std::path::PathBuf::from(std::env::var_os("STELE_SERVICES_DIR")?);
    let conf = dir.join("ceph/ceph.conf");
    let socket = dir.join("ceph/run/osd.0.asok");
    if !conf.exists() || !socket.exists() {
        return None;
    }
    let out = std::process::Command::new("timeout")
        .args(["10", "ceph", "--admin-daemon"])
        .arg(&socket)
        .args(["perf", "dump"])
        .env("CEPH_CONF", &conf)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Avoids a JSON dependency: `"stat_bytes": N, "stat_bytes_used": M` in the "osd" section.
    let number = |name: &str| -> Option<u64> {
        let at = text.find(&format!("\"{name}\":"))? + name.len() + 3;
        text[at..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some(number("stat_bytes")?.saturating_sub(number("stat_bytes_used")?))
}

/// Waits up to `patience` for the memstore to have `bytes` free, so a large
/// upload does not fill the shared test OSD (a full OSD blocks every writer).
/// Panics with what to do if the space does not come.
pub fn wait_for_memstore_space(bytes: u64, patience: std::time::Duration) {
    let started = std::time::Instant::now();
    loop {
        match memstore_free_bytes() {
            None => return,
            Some(free) if free >= bytes => return,
            Some(free) if started.elapsed() >= patience => panic!(
                "the test RGW's memstore has {} MiB free, this test needs {} MiB: wait for other tests to finish, or restart the services with a larger STELE_MEMSTORE_BYTES",
                free >> 20,
                bytes >> 20
            ),
            Some(_) => std::thread::sleep(std::time::Duration::from_secs(1)),
        }
    }
}

/// A two-part multipart upload (5 MiB + a few bytes) made with the raw SDK,
/// as another S3 client would, to see what a bucket policy lets through.
/// The SSE-KMS headers with `kms_key`, if given, go on
/// CreateMultipartUpload only, as S3 wants. `Ok` is the stored object's
/// (algorithm, KMS key id); `Err` names the refused call and its code.
///
/// # Panics
///
/// Never on a refusal: that is the `Err`.
pub async fn raw_multipart_upload(
    s3: &S3Worm,
    bucket: &str,
    key: &str,
    kms_key: Option<&str>,
) -> Result<(Option<String>, Option<String>), String> {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
    let client = s3.client();
    let code = |e: &dyn ProvideErrorMetadata| e.code().unwrap_or("(no code)").to_owned();
    let mut create = client.create_multipart_upload().bucket(bucket).key(key);
    if let Some(kms_key) = kms_key {
        create = create
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(kms_key);
    }
    let created = create
        .send()
        .await
        .map_err(|e| format!("CreateMultipartUpload {}", code(&e)))?;
    let upload_id = created.upload_id().unwrap_or_default().to_owned();
    let mut parts = Vec::new();
    for (number, body) in [(1, vec![b'p'; 5 * 1024 * 1024]), (2, b"tail".to_vec())] {
        let part = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| format!("UploadPart {}", code(&e)))?;
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(part.e_tag().map(str::to_owned))
                .build(),
        );
    }
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(|e| format!("CompleteMultipartUpload {}", code(&e)))?;
    let head = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("HeadObject {}", code(&e)))?;
    Ok((
        head.server_side_encryption().map(|s| s.as_str().to_owned()),
        head.ssekms_key_id().map(str::to_owned),
    ))
}
