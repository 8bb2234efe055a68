//! The stele gateway: the HTTP service applications send audit events to.
//!
//! `serve` runs an axum server over a shared [`stele_store::Store`]: appends
//! from every connection coalesce into group commits, each request answered
//! with its own receipts (optionally with a self-contained C2SP `tlog-proof`
//! signed at commit). Bearer tokens ([`auth`]) scope every route; every error
//! is a JSON body with a stable code ([`error`]); `/openapi.json` describes
//! exactly the routes served ([`app::ROUTES`]).

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

pub use app::{ApiLimits, AppState, ROUTES};
pub use auth::{Scope, TokenFile, Tokens};

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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            allow_plain_http: false,
            limits: ApiLimits::default(),
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
    Arc::new(AppState {
        anchoring: ledger
            .anchoring
            .map(|setup| anchoring::Anchoring::start(setup, runtime)),
        verification: ledger.verification.map(verification::start),
        appends: tokio::sync::Semaphore::new(limits.max_in_flight_appends.max(1)),
        store: ledger.store,
        keyring: ledger.keyring,
        signer: ledger.signer,
        tokens: ledger.tokens,
        metrics: metrics::Metrics::default(),
        limits,
    })
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
    if !config.listen.ip().is_loopback() && !config.allow_plain_http {
        return Err(ServeError::Refused(format!(
            "{} is not a loopback address and this server speaks plain HTTP: bearer tokens and \
             events would cross the network in clear. Put a TLS-terminating proxy in front and \
             allow plain HTTP explicitly, or listen on 127.0.0.1",
            config.listen
        )));
    }
    let store = ledger.store.clone();
    let state = state(ledger, config.limits, tokio::runtime::Handle::current());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Io {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Io {
        addr: config.listen,
        source,
    })?;
    ready(addr);
    let served = axum::serve(listener, app::router(Arc::clone(&state)))
        .with_graceful_shutdown(shutdown)
        .await;
    // Every request has been answered; commit whatever is still queued,
    // then anchor it: the shutdown anchors, uploaded if the store answers
    // in time, else left in the outbox for the next start.
    store.close().await;
    if state.anchoring.is_some() {
        let anchoring_state = Arc::clone(&state);
        let finished = tokio::task::spawn_blocking(move || {
            anchoring_state
                .anchoring
                .as_ref()
                .is_none_or(|a| a.stop(SHUTDOWN_ANCHOR_PATIENCE))
        })
        .await
        .unwrap_or(false);
        if !finished {
            tracing::warn!(
                "the shutdown anchors were not uploaded in time; they wait in the outbox for the next start"
            );
        }
    }
    served.map_err(|source| ServeError::Io { addr, source })
}
