//! Fixtures for stele's live-service tests: configurations for the Ceph RGW
//! and ministack started by `scripts/test.sh`, and fresh buckets on them.
//! Built only with the `testkit` feature.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::{RetryPolicy, S3Config, S3Worm};

const HOW_TO_RUN: &str = "run the live-service tests with `scripts/test.sh` \
     (or `scripts/test-services.sh start` and `source .test-services/env` first)";

/// A variable written by `scripts/test-services.sh`; panics if missing, so a
/// test without its service fails instead of passing silently.
pub fn env_required(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{name} is not set: {HOW_TO_RUN}"),
    }
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
/// down it refuses new connections and cuts the open ones.
pub struct FaultyProxy {
    addr: std::net::SocketAddr,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl FaultyProxy {
    /// Starts a proxy on 127.0.0.1 (any free port) forwarding to `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Self {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::<TcpStream>::new()));
        let (down2, open2) = (down.clone(), open.clone());
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
                if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone())
                    && let Ok(mut list) = open2.lock()
                {
                    list.push(c2);
                    list.push(s2);
                }
                for (mut from, mut to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Self { addr, down, open }
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
