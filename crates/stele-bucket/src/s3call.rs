//! S3 calls: transient failures retried a few times, every failure classified.

use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::BucketError;

/// One failed call, classified.
#[derive(Clone, Debug)]
pub(crate) struct CallError {
    /// Error code, or a stand-in such as `HTTP 404` or `Connection`.
    pub code: String,
    /// HTTP status, when the endpoint answered.
    pub status: Option<u16>,
    /// The endpoint's message.
    pub message: String,
    /// Worth retrying (unreachable, timeouts, 5xx, throttling).
    pub transient: bool,
}

impl CallError {
    pub(crate) fn is(&self, codes: &[&str]) -> bool {
        codes.contains(&self.code.as_str())
    }

    pub(crate) fn is_access_denied(&self) -> bool {
        self.is(&["AccessDenied", "Forbidden", "AllAccessDisabled"]) || self.status == Some(403)
    }

    /// As a [`BucketError`] for operation `op`.
    pub(crate) fn into_error(self, op: &'static str) -> BucketError {
        if self.transient {
            return BucketError::Unavailable {
                op,
                message: format!("{}: {}", self.code, self.message),
            };
        }
        if self.is(&[
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "InvalidToken",
            "ExpiredToken",
        ]) {
            return BucketError::Credentials {
                op,
                code: self.code,
            };
        }
        BucketError::Refused {
            op,
            code: self.code,
            message: self.message,
        }
    }
}

const TRANSIENT_CODES: [&str; 8] = [
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "RequestLimitExceeded",
];

pub(crate) fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: &SdkError<E, HttpResponse>,
) -> CallError {
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let e = service.err();
            let code = e
                .code()
                .map_or_else(|| format!("HTTP {status}"), str::to_owned);
            // 501 NotImplemented is an answer, not an outage.
            let transient = code != "NotImplemented"
                && (status >= 500 || status == 429 || TRANSIENT_CODES.contains(&code.as_str()));
            CallError {
                code,
                status: Some(status),
                message: e.message().unwrap_or("").to_owned(),
                transient,
            }
        }
        SdkError::TimeoutError(_) => CallError {
            code: "Timeout".into(),
            status: None,
            message: "the request timed out".into(),
            transient: true,
        },
        SdkError::DispatchFailure(d) => CallError {
            code: "Connection".into(),
            status: None,
            message: format!("could not reach the endpoint ({})", source_chain(err)),
            transient: !d.is_user(),
        },
        SdkError::ResponseError(_) => CallError {
            code: "ResponseError".into(),
            status: None,
            message: format!("incomplete or unreadable response ({})", source_chain(err)),
            transient: true,
        },
        _ => CallError {
            code: "Request".into(),
            status: None,
            message: source_chain(err),
            transient: false,
        },
    }
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// Attempts per call, the first included.
const ATTEMPTS: u32 = 3;

/// Runs `f`, retrying transient failures with a short backoff; returns the
/// last SDK error so callers can look at the raw answer.
pub(crate) async fn call<T, E, F, Fut>(
    op: &'static str,
    mut f: F,
) -> Result<T, SdkError<E, HttpResponse>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let c = classify(&e);
                if !c.transient || attempt >= ATTEMPTS {
                    return Err(e);
                }
                tracing::warn!(op, attempt, code = %c.code, "transient S3 failure; retrying");
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                attempt += 1;
            }
        }
    }
}
