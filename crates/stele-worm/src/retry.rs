//! Retrying transient failures with exponential backoff and full jitter.
//! [`call_with_retry`] is the one retry loop for S3 calls in the workspace:
//! the object store, the bucket tooling and the evidence vault all use it.

use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// How often and how patiently to retry transient failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// Backoff before the second attempt; doubles each time.
    pub base_delay: Duration,
    /// Longest backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The sleep before attempt `attempt` (1-based; attempt 1 never waits):
    /// uniformly random up to `min(max_delay, base_delay * 2^(attempt-2))`.
    pub fn delay(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << (attempt - 2).min(16));
        let cap = exp.min(self.max_delay);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::random::<u64>() % nanos.max(1))
    }
}

/// One failed S3 call, classified: shared by every crate that calls S3, so
/// "worth retrying" means the same everywhere.
#[derive(Debug, Clone)]
pub struct CallError {
    /// Worth retrying (unreachable, timeouts, 5xx except 501, throttling).
    pub transient: bool,
    /// Error code, or a stand-in such as `HTTP 404` or `Connection`.
    pub code: String,
    /// HTTP status, when the endpoint answered.
    pub status: Option<u16>,
    /// The endpoint's message.
    pub message: String,
}

impl CallError {
    /// Whether the code is one of `codes`.
    pub fn is(&self, codes: &[&str]) -> bool {
        codes.contains(&self.code.as_str())
    }

    /// Whether the endpoint refused on permissions.
    pub fn is_access_denied(&self) -> bool {
        self.is(&["AccessDenied", "Forbidden", "AllAccessDisabled"]) || self.status == Some(403)
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

/// Classifies a failed SDK call.
pub fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
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
                transient,
                code,
                status: Some(status),
                message: e.message().unwrap_or("").to_owned(),
            }
        }
        SdkError::TimeoutError(_) => CallError {
            transient: true,
            code: "Timeout".into(),
            status: None,
            message: "the request timed out".into(),
        },
        SdkError::DispatchFailure(d) => CallError {
            transient: !d.is_user(),
            code: "Connection".into(),
            status: None,
            message: format!("could not reach the endpoint ({})", source_chain(err)),
        },
        SdkError::ResponseError(_) => CallError {
            transient: true,
            code: "ResponseError".into(),
            status: None,
            message: format!("incomplete or unreadable response ({})", source_chain(err)),
        },
        _ => CallError {
            transient: false,
            code: "Request".into(),
            status: None,
            message: source_chain(err),
        },
    }
}

/// An S3 call that failed for good: permanently, or transiently on every attempt.
#[derive(Debug)]
pub struct RetryFailure<E> {
    /// The last SDK error, for callers that look at the raw answer.
    pub sdk: SdkError<E, HttpResponse>,
    /// The last error, classified.
    pub error: CallError,
    /// Attempts made, the first included.
    pub attempts: u32,
}

/// Runs `f` until it succeeds, fails permanently (as [`classify`] decides), or
/// `policy.attempts` are used, sleeping [`RetryPolicy::delay`] (backoff with
/// full jitter) between transient failures.
///
/// # Errors
///
/// The last failure, with its classification and the attempts made.
pub async fn call_with_retry<T, E, F, Fut>(
    policy: RetryPolicy,
    op: &'static str,
    mut f: F,
) -> Result<T, RetryFailure<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let attempts = policy.attempts.max(1);
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(sdk) => {
                let error = classify(&sdk);
                if !error.transient || attempt >= attempts {
                    return Err(RetryFailure {
                        sdk,
                        error,
                        attempts: attempt,
                    });
                }
                let delay = policy.delay(attempt + 1);
                tracing::warn!(op, attempt, code = %error.code, delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "transient S3 failure; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

/// The error and its sources on one line.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(800),
        };
        assert_eq!(p.delay(1), Duration::ZERO);
        for attempt in 2..10 {
            let cap =
                Duration::from_millis(100 * (1 << (attempt - 2))).min(Duration::from_millis(800));
            for _ in 0..50 {
                assert!(
                    p.delay(attempt) < cap.max(Duration::from_nanos(1)),
                    "attempt {attempt}"
                );
            }
        }
    }

    use std::sync::atomic::{AtomicU32, Ordering};

    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::head_object::HeadObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    type Sdk = SdkError<HeadObjectError, HttpResponse>;

    /// A service error with `status` and `code`, as the SDK builds one from an answer.
    fn answered(status: u16, code: &str) -> Sdk {
        let status = status.try_into().expect("a valid HTTP status");
        SdkError::service_error(
            HeadObjectError::generic(ErrorMetadata::builder().code(code).build()),
            HttpResponse::new(status, SdkBody::empty()),
        )
    }

    fn quick(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    /// Calls `call_with_retry` with errors from `errors` (one per call, then
    /// success); returns how many calls were made and the outcome.
    async fn run(policy: RetryPolicy, errors: Vec<fn() -> Sdk>) -> (u32, Result<u32, CallError>) {
        let calls = AtomicU32::new(0);
        let result = call_with_retry(policy, "HeadObject", || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let outcome = match errors.get(n as usize) {
                Some(make) => Err(make()),
                None => Ok(n),
            };
            async move { outcome }
        })
        .await
        .map_err(|f| {
            assert_eq!(f.attempts, calls.load(Ordering::SeqCst), "attempts counted");
            f.error
        });
        (calls.load(Ordering::SeqCst), result)
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let transient: Vec<fn() -> Sdk> = vec![
            || answered(503, "SlowDown"),
            || answered(500, "InternalError"),
            || SdkError::timeout_error("timed out"),
        ];
        let (calls, result) = run(quick(5), transient).await;
        assert_eq!(calls, 4);
        assert_eq!(result.expect("succeeds on the fourth attempt"), 3);
    }

    #[tokio::test]
    async fn transient_failures_stop_at_the_attempt_limit() {
        let (calls, result) = run(quick(3), vec![|| answered(503, "SlowDown"); 10]).await;
        assert_eq!(calls, 3);
        let error = result.expect_err("fails after three attempts");
        assert!(error.transient);
        assert_eq!(error.code, "SlowDown");
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let permanent: [fn() -> Sdk; 4] = [
            || answered(403, "AccessDenied"),
            || answered(404, "NoSuchKey"),
            || answered(501, "NotImplemented"),
            || SdkError::construction_failure("bad request"),
        ];
        for make in permanent {
            let (calls, result) = run(quick(5), vec![make]).await;
            assert_eq!(calls, 1, "{:?}", result);
            assert!(!result.expect_err("fails at once").transient);
        }
    }
}
