//! The stele gateway: the HTTP service applications send audit events to.
//!
//! `serve` runs an axum server over a shared [`stele_store::Store`]: appends
//! from every connection coalesce into group commits, each request answered
//! with its own receipts (optionally with a self-contained C2SP `tlog-proof`
//! against a checkpoint of a tree it checked). Bearer tokens ([`auth`])
//! scope every route; every error is a JSON body with a stable code
//! ([`error`]); `/openapi.json` describes exactly the routes served
//! ([`app::routes`]).

pub mod anchoring;
pub mod app;
pub mod auth;
pub mod error;
pub mod ingest;
pub mod metrics;
pub mod openapi;
pub mod verification;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use stele_ledger::Keyring;
use stele_store::Store;
use thiserror::Error;

pub use app::{ApiLimits, AppState, routes};
pub use auth::{Scope, TokenFile, Tokens};

/// How long a client may take to send a request's head, the first on a
/// connection or the next one on a kept-alive connection.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a stopping server waits for its shutdown anchors to upload.
const SHUTDOWN_ANCHOR_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Where and how to listen.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Serve plain HTTP on an address other than loopback. Without it such
    /// an address is refused: tokens and events would cross the network in
    /// clear.
    pub allow_plain_http: bool,
    /// Request limits.
    pub limits: ApiLimits,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
}

/// A certificate chain and its private key, PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

/// The rustls configuration for `files` (TLS 1.2 and 1.3, aws-lc-rs).
fn tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig, ServeError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let refused = |what: &std::path::Path, why: String| {
        ServeError::Refused(format!("TLS: cannot use {}: {why}", what.display()))
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| refused(&files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(refused(&files.cert, "no certificate in it".into()));
    }
    // The key's bytes are never shown, only that it could not be used.
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|_| refused(&files.key, "not a PEM private key".into()))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
    .map_err(|e| {
        ServeError::Refused(format!(
            "TLS: the certificate {} and the key {} do not make a TLS configuration: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            allow_plain_http: false,
            limits: ApiLimits::default(),
            tls: None,
        }
    }
}

/// The server could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum ServeError {
    /// Refused before binding.
    #[error("{0}")]
    Refused(String),
    /// Binding or serving failed.
    #[error("cannot serve on {addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What the server needs besides its configuration.
pub struct Ledger {
    /// The shared store.
    pub store: Store,
    /// HMAC keys; the active one chains new events.
    pub keyring: Keyring,
    /// Signs checkpoints.
    pub signer: signed_note::StandardSigner,
    /// The signer's public key: the outbox anchors that verify with it are
    /// where the check of a chain before a checkpoint is signed may start.
    pub verifier_key: String,
    /// Bearer tokens.
    pub tokens: Tokens,
    /// Anchoring inside the server (`None`: none — a test, or anchoring
    /// run elsewhere).
    pub anchoring: Option<anchoring::AnchoringSetup>,
    /// The scheduled verification job (`None`: none).
    pub verification: Option<verification::VerificationSetup>,
}

/// Builds the shared state, starting anchoring on `runtime`.
pub fn state(ledger: Ledger, limits: ApiLimits, runtime: tokio::runtime::Handle) -> Arc<AppState> {
    // The checker learns keys rotated in while serving from where anchoring
    // reads them.
    let keyring_source = ledger.anchoring.as_ref().map(|a| a.keyring.clone());
    Arc::new(AppState {
        anchoring: ledger
            .anchoring
            .map(|setup| anchoring::Anchoring::start(setup, ledger.store.clone(), &runtime)),
        verification: ledger.verification.map(verification::start),
        appends: tokio::sync::Semaphore::new(limits.max_in_flight_appends.max(1)),
        bodies: app::BodyBudget::new(limits.max_in_flight_body_bytes),
        trees: match keyring_source {
            Some(source) => stele_anchorer::TreeChecker::reloading(
                ledger.store.clone(),
                ledger.keyring.clone(),
                source,
                ledger.verifier_key,
            ),
            None => stele_anchorer::TreeChecker::new(
                ledger.store.clone(),
                ledger.keyring.clone(),
                ledger.verifier_key,
            ),
        },
        store: ledger.store,
        keyring: ledger.keyring,
        signer: ledger.signer,
        tokens: ledger.tokens,
        metrics: metrics::Metrics::default(),
        limits,
    })
}

/// How plain HTTP and HTTPS are both served: HTTP/1.1 only (no protocol
/// sniffing, which no timeout covers), each request head within
/// [`HEADER_READ_TIMEOUT`], so a connection that trickles bytes, or sends
/// none, cannot hold its slot for ever.
fn bounded<A>(
    server: axum_server::Server<SocketAddr, A>,
    handle: axum_server::Handle<SocketAddr>,
) -> axum_server::Server<SocketAddr, A> {
    let mut server = server.http1_only().handle(handle);
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    server
}

/// Serves until `shutdown` resolves, then stops accepting, lets requests in
/// progress finish, and waits until every queued append is committed.
/// `ready` gets the bound address (port 0 picks a free one).
///
/// # Errors
///
/// [`ServeError::Refused`] for plain HTTP off loopback without
/// `allow_plain_http`; [`ServeError::Io`] if the address cannot be bound.
pub async fn serve(
    config: ServerConfig,
    ledger: Ledger,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    if config.tls.is_none() && !config.listen.ip().is_loopback() && !config.allow_plain_http {
        return Err(ServeError::Refused(format!(
            "{} is not a loopback address and this server speaks plain HTTP: bearer tokens and \
             events would cross the network in clear. Put a TLS-terminating proxy in front and \
             allow plain HTTP explicitly, or listen on 127.0.0.1",
            config.listen
        )));
    }
    let tls = config.tls.as_ref().map(tls_config).transpose()?;
    let io = |source| ServeError::Io {
        addr: config.listen,
        source,
    };
    let listener = std::net::TcpListener::bind(config.listen).map_err(io)?;
    listener.set_nonblocking(true).map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let store = ledger.store.clone();
    // A request in progress when the signal comes is answered: its head
    // arrives within HEADER_READ_TIMEOUT, its answer within the request
    // timeout. A connection still open after that is closed.
    let shutdown_patience = HEADER_READ_TIMEOUT + config.limits.request_timeout;
    let state = state(ledger, config.limits, tokio::runtime::Handle::current());
    let router = app::router(Arc::clone(&state)).into_make_service();
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(shutdown_patience));
    });
    ready(addr);
    let served = match tls {
        None => {
            let server = axum_server::from_tcp(listener).map_err(io)?;
            bounded(server, handle).serve(router).await
        }
        Some(tls) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
            let server = axum_server::tls_rustls::from_tcp_rustls(listener, config).map_err(io)?;
            bounded(server, handle).serve(router).await
        }
    };
    // Every request has been answered; commit whatever is still queued,
    // then anchor it: the shutdown anchors, uploaded if the store answers
    // in time, else left in the outbox for the next start.
    store.close().await;
    if let Some(anchoring) = &state.anchoring {
        let finished = anchoring.stop(SHUTDOWN_ANCHOR_PATIENCE).await;
        if !finished {
            tracing::warn!(
                "the shutdown anchors were not written and uploaded in time; what was written waits in the outbox, and the next start anchors the rest"
            );
        }
    }
    served.map_err(|source| ServeError::Io { addr, source })
}
