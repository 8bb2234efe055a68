//! Every error the API returns: an HTTP status, a stable `code`, a message
//! and the request id, as `{"error": {"code", "message", "request_id"}}`.
//! The codes are a contract (docs/api.md); messages may change.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use stele_store::StoreError;

/// An API error, rendered as JSON.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What was wrong and what to do.
    pub message: String,
    /// Seconds to wait before retrying, for 429 and 503.
    pub retry_after: Option<u64>,
    /// Structured detail (e.g. the rejected items of a batch).
    pub details: Option<Box<Value>>,
}

impl ApiError {
    /// An error with no retry hint or details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            details: None,
        }
    }

    /// Adds structured detail.
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    /// Adds a `Retry-After`.
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 400 `invalid_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401: no valid token.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a valid bearer token is required (Authorization: Bearer stl_…), issued by the operator of this gateway",
        )
    }

    /// 403: a valid token without the scope or the chain.
    pub fn forbidden(scope: &str, chain: Option<&str>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            match chain {
                Some(chain) => format!("this token may not {scope} on chain {chain:?}"),
                None => format!("this token may not {scope} on every chain"),
            },
        )
    }

    /// The body of this error, with the request id.
    fn body(&self, request_id: &str) -> Value {
        let mut error = json!({
            "code": self.code,
            "message": self.message,
            "request_id": request_id,
        });
        if let (Some(details), Some(map)) = (&self.details, error.as_object_mut()) {
            map.insert("details".into(), (**details).clone());
        }
        json!({ "error": error })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Busy { .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()).retry_after(1)
            }
            StoreError::Closed => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                e.to_string(),
            )
            .retry_after(1),
            StoreError::UnknownChain(_) => {
                Self::new(StatusCode::NOT_FOUND, "unknown_chain", e.to_string())
            }
            StoreError::OutOfRange(_) => {
                Self::new(StatusCode::NOT_FOUND, "out_of_range", e.to_string())
            }
            StoreError::IdempotencyConflict { .. }
            | StoreError::IdempotencyConflictInBatch { .. } => {
                Self::new(StatusCode::CONFLICT, "idempotency_conflict", e.to_string())
            }
            StoreError::Input(_) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_event", e.to_string())
            }
            _ if e.is_retryable() => {
                tracing::warn!(error = %e, "storage unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the ledger's database is not available right now; try again shortly (an append answered with this was not written)",
                )
                .retry_after(1)
            }
            _ => {
                // The cause goes to the log; a client learns only that the
                // server failed (the message never holds credentials, but
                // may describe the database).
                tracing::error!(error = %e, "storage error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage_error",
                    "the ledger could not complete the request; the server log has the cause",
                )
            }
        }
    }
}

tokio::task_local! {
    /// The id of the request being answered (set by the request middleware
    /// around each request), so every error body carries it.
    pub(crate) static REQUEST_ID: String;
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
        let mut response = (self.status, axum::Json(self.body(&request_id))).into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

/// Marks a response as an [`ApiError`] (for metrics and the request id).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ErrorCode(pub &'static str);
