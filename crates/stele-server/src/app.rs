//! The routes and their handlers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::{Path, Query, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use signed_note::Signer as _;
use stele_anchor::AnchorStatus;
use stele_anchorer::{AnchorerError, CheckedRoot, RootWanted, TreeChecker};
use stele_ledger::append::{HashText, ReceiptRef};
use stele_ledger::canonical::event_canonical_bytes;
use stele_ledger::checkpoint::{self, TlogProof};
use stele_ledger::hashing::leaf_hash;
use stele_ledger::{ChainId, Hash, Keyring, hex_hash, merkle};
use stele_store::Store;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::auth::{Denied, Scope, Tokens};
use crate::error::{ApiError, ErrorCode, REQUEST_ID};
use crate::ingest::{BatchLimits, Framing, parse_events};
use crate::metrics::Metrics;

/// Limits on what one request may ask for.
#[derive(Clone, Debug)]
pub struct ApiLimits {
    /// Largest request body, in bytes.
    pub max_request_bytes: usize,
    /// Most events in one append request.
    pub max_events_per_request: usize,
    /// Event limits (payload size, in canonical bytes).
    pub event: stele_ledger::Limits,
    /// Most events one page returns.
    pub max_page: u64,
    /// Longest a request may take, body included.
    pub request_timeout: Duration,
    /// Append requests being processed at once; more get 429.
    pub max_in_flight_appends: usize,
    /// Bytes of append bodies being read or processed at once; a request
    /// that would pass it gets 429 (see [`BodyBudget`]).
    pub max_in_flight_body_bytes: usize,
    /// Pending anchors above which `/readyz` reports not ready.
    pub max_anchor_backlog: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: 8 * 1024 * 1024,
            max_events_per_request: 10_000,
            event: stele_ledger::Limits::default(),
            max_page: 1000,
            request_timeout: Duration::from_secs(30),
            max_in_flight_appends: 256,
            // The count alone would let 256 x 8 MiB = 2 GiB of bodies in.
            max_in_flight_body_bytes: 256 * 1024 * 1024,
            max_anchor_backlog: 100,
        }
    }
}

/// What every handler shares.
pub struct AppState {
    pub(crate) store: Store,
    pub(crate) keyring: Keyring,
    pub(crate) signer: signed_note::StandardSigner,
    /// The only source of roots that are signed.
    pub(crate) trees: TreeChecker,
    pub(crate) tokens: Tokens,
    pub(crate) limits: ApiLimits,
    pub(crate) metrics: Metrics,
    pub(crate) appends: Semaphore,
    pub(crate) bodies: BodyBudget,
    pub(crate) anchoring: Option<crate::anchoring::Anchoring>,
    pub(crate) verification: Option<Arc<crate::verification::Verification>>,
}

type Shared = State<Arc<AppState>>;

/// One route: its method, its path and its handler, made together so the
/// method said is the method served.
struct Served {
    method: &'static str,
    path: &'static str,
    handler: MethodRouter<Arc<AppState>>,
}

fn get_route<H, T>(path: &'static str, handler: H) -> Served
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    Served {
        method: "GET",
        path,
        handler: get(handler),
    }
}

fn post_route<H, T>(path: &'static str, handler: H) -> Served
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    Served {
        method: "POST",
        path,
        handler: post(handler),
    }
}

/// Every route the server serves. The router and `/openapi.json` are both
/// built from this one table, so neither holds a route the other lacks.
fn served() -> Vec<Served> {
    vec![
        get_route("/healthz", healthz),
        get_route("/readyz", readyz),
        get_route("/metrics", metrics),
        get_route("/openapi.json", openapi),
        get_route("/v1/chains", chains),
        get_route("/v1/chains/{chain}", chain_head),
        post_route("/v1/chains/{chain}/events", append),
        get_route("/v1/chains/{chain}/events", events_page),
        get_route("/v1/chains/{chain}/events/{seq}", event),
        get_route("/v1/chains/{chain}/checkpoint", checkpoint_of),
        get_route("/v1/chains/{chain}/proofs/inclusion/{seq}", inclusion),
        get_route("/v1/chains/{chain}/proofs/consistency", consistency),
        get_route("/v1/anchors", anchors),
        get_route("/v1/verification", verification_result),
        post_route("/v1/verification/run", verification_run),
    ]
}

/// Every route the server serves, as (method, path).
pub fn routes() -> Vec<(&'static str, &'static str)> {
    served().iter().map(|r| (r.method, r.path)).collect()
}

/// The router, with the request middleware (request ids, uniform JSON
/// errors, metrics) and the request timeout around every route.
pub fn router(state: Arc<AppState>) -> axum::Router {
    let timeout = state.limits.request_timeout;
    // Routes on one path merge their methods.
    served()
        .into_iter()
        .fold(axum::Router::new(), |router, r| {
            router.route(r.path, r.handler)
        })
        .fallback(not_found)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            around_request,
        ))
        .with_state(state)
}

/// Gives each request an id (the client's `X-Request-Id` if it is sane),
/// renders every error as the JSON error body, and counts the response.
async fn around_request(State(state): Shared, request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(new_request_id, str::to_owned);
    let span = tracing::info_span!(
        "request",
        id = %request_id,
        method = %request.method(),
        path = %request.uri().path()
    );
    let started = Instant::now();
    let mut response = REQUEST_ID
        .scope(request_id.clone(), async move {
            let response = next.run(request).await;
            let failed = response.status().is_client_error() || response.status().is_server_error();
            if failed && response.extensions().get::<ErrorCode>().is_none() {
                // Not one of ours (an unknown method, a timeout): the same body shape.
                return plain_error(response.status()).into_response();
            }
            response
        })
        .await;
    let code = response
        .extensions()
        .get::<ErrorCode>()
        .map_or("ok", |c| c.0);
    state.metrics.response(response.status().as_u16(), code);
    span.in_scope(|| {
        let status = response.status().as_u16();
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if status >= 500 {
            tracing::error!(status, code, micros, "request failed");
        } else {
            tracing::debug!(status, code, micros, "request");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn new_request_id() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn plain_error(status: StatusCode) -> ApiError {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route; /openapi.json lists them"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this route does not take that method; /openapi.json lists them",
        ),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long and was stopped"),
        StatusCode::PAYLOAD_TOO_LARGE => ("body_too_large", "the request body is too large"),
        _ => ("http_error", "the request could not be served"),
    };
    ApiError::new(status, code, message)
}

async fn not_found() -> ApiError {
    plain_error(StatusCode::NOT_FOUND)
}

impl AppState {
    fn authorize(
        &self,
        headers: &HeaderMap,
        scope: Scope,
        chain: Option<&ChainId>,
    ) -> Result<(), ApiError> {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        self.tokens
            .authorize(authorization, scope, chain)
            .map(|_| ())
            .map_err(|denied| match denied {
                Denied::Unauthenticated => ApiError::unauthenticated(),
                Denied::Forbidden => {
                    ApiError::forbidden(scope.as_str(), chain.map(ChainId::as_str))
                }
            })
    }

    /// 401 unless the request carries a valid token (of any scope on any
    /// chain): checked before anything of the request is read.
    fn authenticate(&self, headers: &HeaderMap, scope: Scope) -> Result<(), ApiError> {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match self.tokens.authorize(authorization, scope, None) {
            Err(Denied::Unauthenticated) => Err(ApiError::unauthenticated()),
            _ => Ok(()),
        }
    }

    /// Authenticates first (a request without a valid token learns nothing,
    /// not even whether the chain name is valid), then checks the chain
    /// name, then the scope on that chain.
    fn authorize_chain(
        &self,
        headers: &HeaderMap,
        scope: Scope,
        chain: &str,
    ) -> Result<ChainId, ApiError> {
        self.authenticate(headers, scope)?;
        let chain = ChainId::new(chain)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_chain", e.to_string()))?;
        self.authorize(headers, scope, Some(&chain))?;
        Ok(chain)
    }

    /// A checked root of `chain` (see [`TreeChecker`]): the only kind a
    /// checkpoint is signed over.
    async fn checked_root(
        &self,
        chain: &ChainId,
        wanted: RootWanted,
    ) -> Result<CheckedRoot, ApiError> {
        self.trees
            .root(chain, wanted)
            .await
            .map_err(|e| check_failed(chain, e))
    }

    /// A C2SP checkpoint of `chain` over a checked root, signed now.
    fn checkpoint(&self, chain: &ChainId, checked: CheckedRoot) -> Result<String, ApiError> {
        let origin = checkpoint::origin(self.signer.name(), chain);
        checkpoint::sign(&origin, checked.size(), checked.root(), &self.signer).map_err(|e| {
            tracing::error!(error = %e, "signing a checkpoint");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "signing_failed",
                "the checkpoint could not be signed; the server log has the cause",
            )
        })
    }

    /// An inclusion proof of `seq` in a checked tree (`size`, or any
    /// checked one holding it), checked before it is handed out: the
    /// event's canonical bytes, its leaf computed from them, the proof and
    /// the root.
    async fn checked_inclusion(
        &self,
        chain: &ChainId,
        seq: u64,
        size: Option<u64>,
    ) -> Result<CheckedInclusion, ApiError> {
        let wanted = size.map_or(RootWanted::Holding(seq), RootWanted::Size);
        let root = self.checked_root(chain, wanted).await?;
        let (_, _, proof) = self
            .store
            .inclusion_proof(chain, seq, Some(root.size()))
            .await?;
        let event = self.store.event(chain, seq).await?;
        let canonical = event_canonical_bytes(&event).map_err(|e| {
            tracing::error!(error = %e, seq, "stored event has no canonical form");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_error",
                "a stored event could not be encoded; verify the log",
            )
        })?;
        let leaf = leaf_hash(&canonical);
        root.check_inclusion(chain, seq, leaf, &proof)
            .map_err(|e| check_failed(chain, e))?;
        Ok(CheckedInclusion {
            root,
            canonical,
            leaf,
            proof,
        })
    }

    /// A self-contained C2SP `tlog-proof` of `seq` against a checkpoint of
    /// a checked tree, signed now.
    async fn tlog_proof(
        &self,
        chain: &ChainId,
        seq: u64,
        size: Option<u64>,
    ) -> Result<(String, u64), ApiError> {
        let included = self.checked_inclusion(chain, seq, size).await?;
        let checkpoint = self.checkpoint(chain, included.root)?;
        Ok((
            TlogProof {
                extra: Some(included.canonical),
                index: seq,
                hashes: included.proof,
                checkpoint,
            }
            .to_text(),
            included.root.size(),
        ))
    }
}

/// An event's inclusion in a checked tree, checked.
struct CheckedInclusion {
    root: CheckedRoot,
    canonical: Vec<u8>,
    leaf: Hash,
    proof: Vec<Hash>,
}

/// 500 `ledger_check_failed` when the ledger does not check (nothing is
/// signed); store errors as they are.
fn check_failed(chain: &ChainId, e: AnchorerError) -> ApiError {
    match e {
        AnchorerError::Store(e) => e.into(),
        AnchorerError::UnanchoredTampering { .. }
        | AnchorerError::CheckFailed { .. }
        | AnchorerError::UnknownHmacKey { .. } => {
            tracing::error!(chain = %chain, error = %e, "NOT SIGNED: the ledger does not check");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ledger_check_failed",
                e.to_string(),
            )
        }
        e => {
            tracing::error!(chain = %chain, error = %e, "checking the ledger before signing");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_error",
                "the ledger could not be checked before signing; the server log has the cause",
            )
        }
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

async fn readyz(State(state): Shared) -> Result<Json<Value>, ApiError> {
    if !state.store.is_accepting() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the ledger's committer is not running; appends cannot be taken",
        ));
    }
    state.store.chains().await.map_err(|e| {
        // The cause is for the operator's log, not for whoever asks.
        tracing::warn!(error = %e, "not ready: the database is not answering");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the database is not answering; the server log has the cause",
        )
        .retry_after(5)
    })?;
    state.store.check_schema().await.map_err(|e| {
        tracing::error!(error = %e, "not ready: the database's schema is not this gateway's");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "schema_mismatch",
            "the database's schema is not the one this gateway writes (migrated by another stele, or replaced); the server log has the versions",
        )
        .retry_after(30)
    })?;
    let backlog = state
        .store
        .anchors(None, Some(AnchorStatus::Pending))
        .await?
        .len();
    if backlog > state.limits.max_anchor_backlog {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "anchor_backlog",
            format!(
                "{backlog} anchors wait to be uploaded (more than {}): WORM storage is behind",
                state.limits.max_anchor_backlog
            ),
        )
        .retry_after(30));
    }
    Ok(Json(
        json!({ "status": "ready", "anchor_backlog": backlog }),
    ))
}

async fn metrics(State(state): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    state.authorize(&headers, Scope::Metrics, None)?;
    let backlog = state
        .store
        .anchors(None, Some(AnchorStatus::Pending))
        .await
        .ok()
        .map(|a| a.len());
    let mut text = state.metrics.render(&state.store.stats(), backlog);
    if let Some(job) = &state.verification {
        text.push_str(&crate::metrics::verification(job));
    }
    if let Some(anchoring) = &state.anchoring {
        text.push_str(&crate::metrics::anchoring(&anchoring.status()));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

async fn chains(State(state): Shared, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    state.authorize(&headers, Scope::Read, None)?;
    let heads = state.store.chains().await?;
    Ok(Json(
        json!({ "chains": heads.iter().map(head_json).collect::<Vec<_>>() }),
    ))
}

fn head_json(h: &stele_store::ChainHead) -> Value {
    json!({
        "chain_id": h.chain_id,
        "size": h.size,
        "head_hash": hex_hash(&h.head_hash),
        "last_ts": h.last_ts,
    })
}

async fn chain_head(
    State(state): Shared,
    Path(chain): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let chain = state.authorize_chain(&headers, Scope::Read, &chain)?;
    let head = state
        .store
        .head(&chain)
        .await?
        .ok_or_else(|| stele_store::StoreError::UnknownChain(chain.to_string()))?;
    Ok(Json(head_json(&head)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppendQuery {
    #[serde(default)]
    proof: bool,
    /// `anchored`: answer once an anchor covering the events is locked in
    /// the anchor store (or `timeout` seconds pass).
    wait: Option<WaitFor>,
    /// Seconds to wait (default 30, at most the request timeout).
    timeout: Option<u64>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum WaitFor {
    Anchored,
}

async fn append(
    State(state): Shared,
    Path(chain): Path<String>,
    query: Result<Query<AppendQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let chain = state.authorize_chain(&headers, Scope::Append, &chain)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let _permit = state
        .appends
        .try_acquire()
        .map_err(|_| too_many_requests("too many appends are in progress"))?;
    // Reserved before a byte is read: what a body may take is known from
    // its Content-Length, or is the largest body allowed without one.
    let body_bytes = body
        .size_hint()
        .exact()
        .unwrap_or(u64::MAX)
        .min(u64::try_from(state.limits.max_request_bytes).unwrap_or(u64::MAX));
    let _reserved = state.bodies.try_reserve(body_bytes).ok_or_else(|| {
        too_many_requests(
            "the request bodies in progress fill this gateway's memory budget for them",
        )
    })?;
    let framing = Framing::from_content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )?;
    let idempotency_key = match headers.get("idempotency-key") {
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::bad_request("the Idempotency-Key header must be printable ASCII")
        })?),
        None => None,
    };
    let body = read_body(body, state.limits.max_request_bytes).await?;
    let limits = BatchLimits {
        max_events: state.limits.max_events_per_request,
        event: state.limits.event,
    };
    let events = parse_events(&body, framing, &limits, idempotency_key)?;
    let count = events.len();
    // Everything that could refuse the request is checked before the
    // append: once it is committed, the answer is a success.
    if query.proof && count > MAX_PROOFS_PER_REQUEST {
        return Err(ApiError::bad_request(format!(
            "proof=true is answered for at most {MAX_PROOFS_PER_REQUEST} events per request ({count} sent); nothing was appended — ask for proofs of a large batch per event afterwards"
        )));
    }
    if query.wait == Some(WaitFor::Anchored) && state.anchoring.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_anchoring",
            "this gateway does not anchor, so wait=anchored cannot be answered; nothing was appended",
        ));
    }
    // Once the events are handed to the committer they may be written
    // whatever happens to this request: the answer must come before the
    // request timeout, which would otherwise say the request was stopped.
    let answer_by = answer_deadline(started, state.limits.request_timeout);
    let committed = tokio::time::timeout_at(
        answer_by,
        state
            .store
            .append_receipts(&chain, events, state.keyring.active()),
    )
    .await;
    let receipts = match committed {
        Ok(receipts) => receipts?,
        Err(_) => return Err(commit_unconfirmed(count)),
    };
    let written = receipts.written();
    state.metrics.appended(count, written, started.elapsed());
    // Committed. What follows may fail (a proof, an anchor), but it is told
    // in the body, never as an error that would invite sending again.
    let mut listed = Vec::with_capacity(receipts.len());
    for receipt in receipts.iter() {
        listed.push(ReceiptBody::of(&state, &chain, receipt, query.proof, answer_by).await);
    }
    let status = if written > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut body = AppendBody {
        chain_id: chain.as_str(),
        appended: written,
        duplicates: receipts.len() - written,
        receipts: listed,
        anchored: None,
        anchor: None,
        anchor_error: None,
    };
    if query.wait == Some(WaitFor::Anchored)
        && let Some(last) = receipts.iter().map(|r| r.seq).max()
    {
        // The wait ends early enough for the answer to beat the request
        // timeout: a timeout would hide that the events were committed.
        let left = answer_by.saturating_duration_since(tokio::time::Instant::now());
        let patience = Duration::from_secs(query.timeout.unwrap_or(30)).min(left);
        match wait_anchored(&state, &chain, last, patience).await {
            Ok(anchor) => {
                body.anchored = Some(anchor.is_some());
                body.anchor = Some(anchor.unwrap_or(Value::Null));
            }
            Err(e) => {
                body.anchored = Some(false);
                body.anchor = Some(Value::Null);
                body.anchor_error = Some(e.message);
            }
        }
    }
    // Written into a buffer sized for the receipts up front: `Json` starts
    // at 128 bytes and grows by copying, ~250 bytes per receipt of a batch.
    let mut json = Vec::with_capacity(256 + 320 * body.receipts.len());
    if let Err(e) = serde_json::to_writer(&mut json, &body) {
        // Plain fields cannot fail to serialize; should one, the events
        // are committed all the same, which the message must not hide.
        tracing::error!(error = %e, "writing the receipts of a committed append");
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "receipt_error",
            format!(
                "the {written} event(s) were committed, but their receipts could not be written; sent with idempotency keys, the same request again returns them and appends nothing"
            ),
        ));
    }
    Ok((
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
    )
        .into_response())
}

/// The answer to an append, serialized straight from the receipts (a
/// 1,000-event batch answered through `serde_json::Value` spent more time
/// building the answer than committing the events).
#[derive(Serialize)]
struct AppendBody<'a> {
    chain_id: &'a str,
    appended: usize,
    duplicates: usize,
    receipts: Vec<ReceiptBody<'a>>,
    /// The three `wait=anchored` fields, present only when it was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    anchored: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anchor: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anchor_error: Option<String>,
}

/// One receipt, with its `tlog-proof` (or why there is none) when asked.
/// The receipt's fields are spelled out, in [`Receipt`](stele_ledger::append::Receipt)'s order, rather
/// than `#[serde(flatten)]`ed: flattening serializes through a map, a cost
/// paid for every receipt of a batch.
#[derive(Serialize)]
struct ReceiptBody<'a> {
    chain_id: &'a str,
    seq: u64,
    ts: &'a str,
    leaf_hash: HashText<'a>,
    event_hash: HashText<'a>,
    key_id: &'a str,
    duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tree_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tlog_proof: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proof_error: Option<String>,
}

/// 429 `too_many_requests`: `why`, and that nothing was appended.
fn too_many_requests(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        format!("{why}; nothing was appended — retry shortly"),
    )
    .retry_after(1)
}

/// The memory append bodies may hold at once, in KiB (one reservation is
/// at most `u32::MAX` permits, so bytes would cap a body at 4 GiB). A
/// request reserves its body's size before reading it and keeps it until
/// answered, parsing and committing included.
pub(crate) struct BodyBudget {
    kib: Semaphore,
    capacity_kib: usize,
}

impl BodyBudget {
    pub(crate) fn new(bytes: usize) -> Self {
        let capacity_kib = bytes.div_ceil(1024).clamp(1, Semaphore::MAX_PERMITS);
        Self {
            kib: Semaphore::new(capacity_kib),
            capacity_kib,
        }
    }

    /// Reserves `bytes`, or `None` if the budget has not that much left. A
    /// body larger than the whole budget reserves all of it: it is served
    /// when nothing else is in flight, never refused for ever.
    fn try_reserve(&self, bytes: u64) -> Option<SemaphorePermit<'_>> {
        let kib = usize::try_from(bytes.div_ceil(1024))
            .unwrap_or(usize::MAX)
            .min(self.capacity_kib);
        self.kib
            .try_acquire_many(u32::try_from(kib).unwrap_or(u32::MAX))
            .ok()
    }
}

/// Most events one append may ask proofs for (`?proof=true`).
const MAX_PROOFS_PER_REQUEST: usize = 100;

/// Waits until an anchor covering `seq` is in the anchor store (locked,
/// for a WORM bucket), asking the anchorer for one if none covers it yet.
async fn wait_anchored(
    state: &AppState,
    chain: &ChainId,
    seq: u64,
    patience: Duration,
) -> Result<Option<Value>, ApiError> {
    let Some(anchoring) = &state.anchoring else {
        return Ok(None);
    };
    let deadline = Instant::now() + patience;
    let mut asked: Option<Instant> = None;
    loop {
        let anchors = state.store.anchors(Some(chain), None).await?;
        let covering = anchors.iter().find(|a| a.tree_size > seq);
        match covering {
            Some(a) if a.status != AnchorStatus::Pending => {
                return Ok(Some(stele_anchorer::record_json(a)));
            }
            Some(_) => {}
            // Asked again now and then: an anchorer restarting after an
            // error has forgotten what it was asked.
            None if asked.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) => {
                anchoring.anchor_now(chain);
                asked = Some(Instant::now());
            }
            None => {}
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A receipt, with its proof when asked; a proof that cannot be made is
/// said in the receipt (the event is committed all the same).
impl<'a> ReceiptBody<'a> {
    async fn of(
        state: &AppState,
        chain: &ChainId,
        receipt: ReceiptRef<'a>,
        with_proof: bool,
        answer_by: tokio::time::Instant,
    ) -> ReceiptBody<'a> {
        let mut body = ReceiptBody {
            chain_id: receipt.chain_id,
            seq: receipt.seq,
            ts: receipt.ts,
            leaf_hash: receipt.leaf_hash,
            event_hash: receipt.event_hash,
            key_id: receipt.key_id,
            duplicate: receipt.duplicate,
            tree_size: None,
            tlog_proof: None,
            proof_error: None,
        };
        if with_proof {
            match tokio::time::timeout_at(answer_by, state.tlog_proof(chain, receipt.seq, None))
                .await
            {
                Ok(Ok((proof, size))) => {
                    body.tree_size = Some(size);
                    body.tlog_proof = Some(proof);
                }
                Ok(Err(e)) => body.proof_error = Some(e.message),
                Err(_) => {
                    body.proof_error = Some(format!(
                        "the proof was not ready within the request timeout; GET /v1/chains/{chain}/events/{}?proof=true gives it",
                        receipt.seq
                    ));
                }
            }
        }
        body
    }
}

/// When an append must be answered: before the request timeout (which
/// would say the request was stopped, hiding a commit), with a margin for
/// writing the answer.
fn answer_deadline(started: Instant, request_timeout: Duration) -> tokio::time::Instant {
    let margin = (request_timeout / 4).min(Duration::from_secs(2));
    tokio::time::Instant::from_std(started) + request_timeout.saturating_sub(margin)
}

/// 504 `commit_unconfirmed`: the events went to the committer, but their
/// commit was not confirmed in time. They may be written, or not; only an
/// idempotent retry can tell, so none is invited without one.
fn commit_unconfirmed(count: usize) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "commit_unconfirmed",
        format!(
            "the {count} event(s) were handed to the ledger, but their commit was not confirmed within the request timeout: they may or may not be written. Send the same request again with the same Idempotency-Key (or per-event keys) to get their receipts; without one, a retry may append them twice"
        ),
    )
}

/// Reads the body, refusing it as soon as it passes `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
            .any(|e| e.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is larger than {limit} bytes; nothing was appended"),
            )
        } else {
            ApiError::bad_request(format!(
                "the request body could not be read ({e}); nothing was appended"
            ))
        }
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default)]
    from: u64,
    limit: Option<u64>,
}

async fn events_page(
    State(state): Shared,
    Path(chain): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let chain = state.authorize_chain(&headers, Scope::Read, &chain)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(100).min(state.limits.max_page);
    let events = state.store.events(&chain, query.from, limit).await?;
    let next = events.last().map(|e| e.seq + 1);
    Ok(Json(json!({
        "chain_id": chain.as_str(),
        "events": events,
        "next_from": next,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    #[serde(default)]
    proof: bool,
}

async fn event(
    State(state): Shared,
    Path((chain, seq)): Path<(String, String)>,
    query: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let chain = state.authorize_chain(&headers, Scope::Read, &chain)?;
    let seq = parse_seq(&seq)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let event = state.store.event(&chain, seq).await?;
    let mut value = json!({ "event": event });
    if query.proof
        && let Some(map) = value.as_object_mut()
    {
        let (proof, size) = state.tlog_proof(&chain, seq, None).await?;
        map.insert("tree_size".into(), json!(size));
        map.insert("tlog_proof".into(), json!(proof));
    }
    Ok(Json(value))
}

fn parse_seq(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(format!("{text:?} is not a seq (a non-negative integer)"))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeQuery {
    tree_size: Option<u64>,
}

async fn checkpoint_of(
    State(state): Shared,
    Path(chain): Path<String>,
    query: Result<Query<SizeQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let chain = state.authorize_chain(&headers, Scope::Read, &chain)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let wanted = query.tree_size.map_or(RootWanted::Head, RootWanted::Size);
    let checked = state.checked_root(&chain, wanted).await?;
    Ok(Json(json!({
        "chain_id": chain.as_str(),
        "tree_size": checked.size(),
        "root_hash": hex_hash(&checked.root()),
        "checkpoint": state.checkpoint(&chain, checked)?,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionQuery {
    tree_size: Option<u64>,
    #[serde(default)]
    format: ProofFormat,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum ProofFormat {
    #[default]
    Json,
    TlogProof,
}

async fn inclusion(
    State(state): Shared,
    Path((chain, seq)): Path<(String, String)>,
    query: Result<Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let chain = state.authorize_chain(&headers, Scope::Read, &chain)?;
    let seq = parse_seq(&seq)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if query.format == ProofFormat::TlogProof {
        let (proof, _) = state.tlog_proof(&chain, seq, query.tree_size).await?;
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], proof).into_response());
    }
    let included = state
        .checked_inclusion(&chain, seq, query.tree_size)
        .await?;
    Ok(Json(json!({
        "chain_id": chain.as_str(),
        "seq": seq,
        "tree_size": included.root.size(),
        "root_hash": hex_hash(&included.root.root()),
        "leaf_hash": hex_hash(&included.leaf),
        "proof": included.proof.iter().map(hex_hash).collect::<Vec<_>>(),
        "checkpoint": state.checkpoint(&chain, included.root)?,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    from: u64,
    to: Option<u64>,
}

async fn consistency(
    State(state): Shared,
    Path(chain): Path<String>,
    query: Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let chain = state.authorize_chain(&headers, Scope::Read, &chain)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let to = state
        .checked_root(&chain, query.to.map_or(RootWanted::Head, RootWanted::Size))
        .await?;
    let (_, _, proof) = state
        .store
        .consistency_proof(&chain, query.from, to.size())
        .await?;
    // The older root is storage's, accepted only with a proof to the
    // checked one; the proof handed out is that check's.
    let from = state
        .checked_root(&chain, RootWanted::Size(query.from))
        .await?;
    merkle::verify_consistency(&proof, from.size(), from.root(), to.size(), to.root()).map_err(
        |e| {
            check_failed(
                &chain,
                AnchorerError::UnanchoredTampering {
                    chain: chain.to_string(),
                    seq: None,
                    what: format!("the stored consistency proof does not hold ({e})"),
                },
            )
        },
    )?;
    Ok(Json(json!({
        "chain_id": chain.as_str(),
        "from_size": from.size(),
        "from_root": hex_hash(&from.root()),
        "to_size": to.size(),
        "to_root": hex_hash(&to.root()),
        "proof": proof.iter().map(hex_hash).collect::<Vec<_>>(),
        "checkpoint": state.checkpoint(&chain, to)?,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnchorsQuery {
    chain: Option<String>,
    status: Option<String>,
}

async fn anchors(
    State(state): Shared,
    query: Result<Query<AnchorsQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.authenticate(&headers, Scope::Read)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let chain = match &query.chain {
        Some(chain) => Some(state.authorize_chain(&headers, Scope::Read, chain)?),
        None => {
            state.authorize(&headers, Scope::Read, None)?;
            None
        }
    };
    let status = match query.status.as_deref() {
        None => None,
        Some("pending") => Some(AnchorStatus::Pending),
        Some("uploaded") => Some(AnchorStatus::Uploaded),
        Some("verified") => Some(AnchorStatus::Verified),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "status {other:?} is not pending, uploaded or verified"
            )));
        }
    };
    // Anchoring's own state (errors, held-back chains, the bucket) is for
    // tokens that may read every chain.
    let sees_everything = chain.is_none() || state.authorize(&headers, Scope::Read, None).is_ok();
    let records = state.store.anchors(chain.as_ref(), status).await?;
    let backlog = records
        .iter()
        .filter(|r| r.status == AnchorStatus::Pending)
        .count();
    let listed: Vec<Value> = records.iter().map(stele_anchorer::record_json).collect();
    let anchoring = state
        .anchoring
        .as_ref()
        .filter(|_| sees_everything)
        .map(|a| a.status());
    Ok(Json(
        json!({ "anchors": listed, "backlog": backlog, "anchoring": anchoring }),
    ))
}

fn verification_job(state: &AppState) -> Result<&Arc<crate::verification::Verification>, ApiError> {
    state.verification.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_verification",
            "this gateway runs no scheduled verification",
        )
    })
}

async fn verification_result(
    State(state): Shared,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.authorize(&headers, Scope::Read, None)?;
    let job = verification_job(&state)?;
    let (runs, failed) = job.counts();
    Ok(Json(json!({
        "runs": runs,
        "failed_runs": failed,
        "latest": job.latest(),
    })))
}

async fn verification_run(State(state): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    state.authorize(&headers, Scope::Admin, None)?;
    verification_job(&state)?.run_now();
    Ok((StatusCode::ACCEPTED, Json(json!({ "started": true }))).into_response())
}

#[cfg(test)]
mod tests {
    use super::BodyBudget;

    #[test]
    fn the_body_budget_refuses_what_it_has_not_left_and_frees_on_drop() {
        let budget = BodyBudget::new(1024 * 1024);
        let first = budget.try_reserve(512 * 1024).expect("half");
        let second = budget
            .try_reserve(512 * 1024 - 100)
            .expect("the other half");
        // Counted in whole KiB: even one byte needs one that is not left.
        assert!(budget.try_reserve(1).is_none());
        drop(first);
        assert!(budget.try_reserve(512 * 1024 + 1).is_none());
        let third = budget.try_reserve(512 * 1024).expect("freed");
        drop((second, third));
        // Larger than the whole budget: it all, when nothing else holds any.
        let all = budget.try_reserve(u64::MAX).expect("the whole budget");
        assert!(budget.try_reserve(0).is_some());
        assert!(budget.try_reserve(1).is_none());
        drop(all);
        assert!(budget.try_reserve(1).is_some());
    }
}
