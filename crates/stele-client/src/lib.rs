//! A typed client for the stele gateway (`stele serve`).
//!
//! ```no_run
//! # async fn run() -> Result<(), stele_client::ClientError> {
//! use stele_client::{AppendOptions, Client};
//! use stele_ledger::EventInput;
//!
//! let client = Client::new("http://127.0.0.1:7070", "stl_…")?;
//! let event = EventInput {
//!     event_type: "user.login".into(),
//!     actor: Some("alice@example.com".into()),
//!     ..EventInput::default()
//! };
//! let appended = client
//!     .append("production", &[event], &AppendOptions { proof: true, ..Default::default() })
//!     .await?;
//! println!("seq {}", appended.receipts[0].seq);
//! # Ok(()) }
//! ```
//!
//! Every error says whether retrying may help ([`ClientError::is_retryable`]);
//! with an idempotency key a retry never appends twice. The token never
//! appears in `Debug` output or errors.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::Value;
use stele_ledger::EventInput;
use thiserror::Error;

/// Largest response body read, in bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// What went wrong talking to the gateway.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The gateway refused the request with a JSON error.
    #[error("the gateway answered {status} {code}: {message} (request {request_id})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The stable error code (`unauthenticated`, `invalid_events`, `busy`, …).
        code: String,
        /// The gateway's message.
        message: String,
        /// The request id, for the gateway's log.
        request_id: String,
        /// Structured detail (e.g. the rejected items of a batch).
        details: Option<Box<Value>>,
        /// The gateway's `Retry-After`, in seconds.
        retry_after: Option<u64>,
    },
    /// The gateway could not be reached, or the connection broke.
    #[error("cannot reach the gateway at {url}: {reason}")]
    Transport {
        /// Where (no credentials).
        url: String,
        /// Why.
        reason: String,
    },
    /// The base URL is not an http(s) URL.
    #[error("invalid gateway URL: {0}")]
    InvalidUrl(String),
    /// The answer was not what the API describes.
    #[error("unexpected answer from the gateway: {0}")]
    Decode(String),
}

impl ClientError {
    /// True when the same request may succeed later: the gateway was
    /// unreachable, busy, overloaded, shutting down, or its storage was.
    /// (Retry appends with an idempotency key: a broken connection can
    /// hide a commit.)
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Api { status, .. } => matches!(status, 408 | 429 | 502 | 503 | 504),
            Self::InvalidUrl(_) | Self::Decode(_) => false,
        }
    }
}

/// Options of an append.
#[derive(Clone, Debug, Default)]
pub struct AppendOptions {
    /// Ask for each receipt's self-contained `tlog-proof`.
    pub proof: bool,
    /// `Idempotency-Key`: a retry with the same key returns the original
    /// receipts and appends nothing (events of a batch get `<key>#<index>`).
    pub idempotency_key: Option<String>,
}

/// One event's receipt.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Receipt {
    /// Chain.
    pub chain_id: String,
    /// Assigned seq.
    pub seq: u64,
    /// Assigned time.
    pub ts: String,
    /// Hex leaf hash.
    pub leaf_hash: String,
    /// Hex chain hash.
    pub event_hash: String,
    /// HMAC key id.
    pub key_id: String,
    /// True for the original receipt of a repeated idempotency key.
    pub duplicate: bool,
    /// The C2SP `tlog-proof`, when asked for.
    #[serde(default)]
    pub tlog_proof: Option<String>,
    /// The tree size the proof is against.
    #[serde(default)]
    pub tree_size: Option<u64>,
}

/// The answer to an append.
#[derive(Clone, Debug, Deserialize)]
pub struct Appended {
    /// Chain.
    pub chain_id: String,
    /// Events written.
    pub appended: u64,
    /// Events that repeated an idempotency key.
    pub duplicates: u64,
    /// One per event, in order.
    pub receipts: Vec<Receipt>,
}

/// A chain's head.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Head {
    /// Chain.
    pub chain_id: String,
    /// Events in it.
    pub size: u64,
    /// Hex chain hash of the last event.
    pub head_hash: String,
    /// Time of the last event.
    pub last_ts: Option<String>,
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A gateway client; cheap to clone, safe to share.
#[derive(Clone)]
pub struct Client {
    base: String,
    authorization: String,
    http: HttpClient<Https, Full<Bytes>>,
    timeout: std::time::Duration,
}

/// How long one call may take, answer included, unless set otherwise.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the gateway at `base_url` (`http://host:port` or
    /// `https://…`, checked against the system's root certificates).
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidUrl`]; [`ClientError::Transport`] if the
    /// system's root certificates cannot be loaded.
    pub fn new(base_url: &str, token: &str) -> Result<Self, ClientError> {
        let url = url::Url::parse(base_url)
            .map_err(|e| ClientError::InvalidUrl(format!("{e} (expected http://host:port)")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ClientError::InvalidUrl(
                "expected an http:// or https:// URL with a host".into(),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ClientError::InvalidUrl(
                "credentials do not belong in the URL; pass the token separately".into(),
            ));
        }
        if token.chars().any(|c| c.is_control() || c == ' ') || token.is_empty() {
            return Err(ClientError::InvalidUrl(
                "the token is empty or holds spaces or control characters".into(),
            ));
        }
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| ClientError::Transport {
                url: base_url.to_owned(),
                reason: format!("cannot load the system's root certificates: {e}"),
            })?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            base: url.as_str().trim_end_matches('/').to_owned(),
            authorization: format!("Bearer {token}"),
            // The gateway closes a connection idle for 10 s (its request-head
            // timeout); dropping ours sooner means a request is never sent
            // on a connection the gateway is closing at that moment.
            http: HttpClient::builder(TokioExecutor::new())
                .pool_idle_timeout(std::time::Duration::from_secs(5))
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .build(https),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sets how long one call may take, answer included (default
    /// [`DEFAULT_TIMEOUT`]). A call that runs out is a retryable
    /// [`ClientError::Transport`]; an append may still have been committed,
    /// so retry appends with idempotency keys.
    #[must_use]
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Appends events to `chain` in one request (validated whole by the
    /// gateway: one bad event refuses the batch and names it by index).
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] with the gateway's code; transport errors.
    pub async fn append(
        &self,
        chain: &str,
        events: &[EventInput],
        options: &AppendOptions,
    ) -> Result<Appended, ClientError> {
        let body = if let [one] = events {
            serde_json::to_vec(one)
        } else {
            serde_json::to_vec(events)
        }
        .map_err(|e| ClientError::Decode(e.to_string()))?;
        let path = format!(
            "/v1/chains/{}/events{}",
            segment(chain),
            if options.proof { "?proof=true" } else { "" }
        );
        let mut headers = vec![(header::CONTENT_TYPE, "application/json".to_owned())];
        if let Some(key) = &options.idempotency_key {
            headers.push((
                header::HeaderName::from_static("idempotency-key"),
                key.clone(),
            ));
        }
        self.call(Method::POST, &path, headers, body).await
    }

    /// A chain's head.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] (`unknown_chain` for a chain with no events); transport errors.
    pub async fn head(&self, chain: &str) -> Result<Head, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/chains/{}", segment(chain)),
            Vec::new(),
            Vec::new(),
        )
        .await
    }

    /// One event, with its `tlog-proof` if `proof`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`]; transport errors.
    pub async fn event(&self, chain: &str, seq: u64, proof: bool) -> Result<Value, ClientError> {
        let path = format!(
            "/v1/chains/{}/events/{seq}{}",
            segment(chain),
            if proof { "?proof=true" } else { "" }
        );
        self.call(Method::GET, &path, Vec::new(), Vec::new()).await
    }

    /// A signed C2SP checkpoint of the chain's current tree.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`]; transport errors.
    pub async fn checkpoint(&self, chain: &str) -> Result<String, ClientError> {
        let answer: Value = self
            .call(
                Method::GET,
                &format!("/v1/chains/{}/checkpoint", segment(chain)),
                Vec::new(),
                Vec::new(),
            )
            .await?;
        answer["checkpoint"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Decode("no checkpoint in the answer".into()))
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        headers: Vec<(header::HeaderName, String)>,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        match tokio::time::timeout(self.timeout, self.exchange(method, &url, headers, body)).await {
            Ok(answer) => answer,
            Err(_) => Err(ClientError::Transport {
                url,
                reason: format!("no complete answer within {:?}", self.timeout),
            }),
        }
    }

    async fn exchange<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        headers: Vec<(header::HeaderName, String)>,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .header(header::AUTHORIZATION, &self.authorization)
            .header(header::ACCEPT, "application/json");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::InvalidUrl(e.to_string()))?;
        let transport = |reason: String| ClientError::Transport {
            url: url.to_owned(),
            reason,
        };
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| transport(e.to_string()))?
            .to_bytes();
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()));
        }
        Err(api_error(status, &body, retry_after))
    }
}

fn api_error(status: StatusCode, body: &[u8], retry_after: Option<u64>) -> ClientError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = &parsed["error"];
    let text = |v: &Value, fallback: &str| v.as_str().unwrap_or(fallback).to_owned();
    ClientError::Api {
        status: status.as_u16(),
        code: text(&error["code"], "http_error"),
        message: text(
            &error["message"],
            status.canonical_reason().unwrap_or("no message"),
        ),
        request_id: text(&error["request_id"], "-"),
        details: error.get("details").cloned().map(Box::new),
        retry_after,
    }
}

/// A chain name as one path segment (names are already URL-safe; anything
/// else is percent-encoded so it cannot change the path).
fn segment(chain: &str) -> String {
    url::form_urlencoded::byte_serialize(chain.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_and_tokens_are_refused_and_the_token_is_never_shown() {
        for url in ["ftp://x", "not a url", "http://user:pw@host:1"] {
            assert!(
                matches!(Client::new(url, "stl_a_b"), Err(ClientError::InvalidUrl(_))),
                "{url}"
            );
        }
        assert!(Client::new("http://h:1", "stl_a b").is_err());
        let client = Client::new("http://127.0.0.1:1", "stl_id_secretsecret").unwrap();
        assert!(!format!("{client:?}").contains("secretsecret"));
    }

    #[test]
    fn chain_names_cannot_change_the_path() {
        assert_eq!(segment("prod"), "prod");
        assert_eq!(segment("../admin?x=1"), "..%2Fadmin%3Fx%3D1");
    }

    #[test]
    fn error_bodies_are_read_into_codes() {
        let e = api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"error":{"code":"busy","message":"m","request_id":"r1"}}"#,
            Some(1),
        );
        assert!(e.is_retryable());
        assert!(
            matches!(&e, ClientError::Api { code, request_id, .. } if code == "busy" && request_id == "r1")
        );
        let e = api_error(StatusCode::UNAUTHORIZED, b"not json", None);
        assert!(!e.is_retryable());
        assert!(matches!(&e, ClientError::Api { code, .. } if code == "http_error"));
    }

    #[tokio::test]
    async fn a_gateway_that_never_answers_is_a_timeout() {
        // Accepts the connection, then says nothing.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let client = Client::new(&format!("http://{addr}"), "stl_a_b")
            .unwrap()
            .with_timeout(std::time::Duration::from_millis(300));
        let e = client.head("x").await.unwrap_err();
        assert!(
            matches!(&e, ClientError::Transport { reason, .. } if reason.contains("no complete answer")),
            "{e:?}"
        );
        assert!(e.is_retryable());
    }

    #[tokio::test]
    async fn an_unreachable_gateway_is_a_retryable_transport_error() {
        let client = Client::new("http://127.0.0.1:9", "stl_a_b").unwrap();
        let e = client.head("x").await.unwrap_err();
        assert!(matches!(e, ClientError::Transport { .. }), "{e:?}");
        assert!(e.is_retryable());
        assert!(!e.to_string().contains("stl_a_b"));
    }
}
