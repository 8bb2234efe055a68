//! S3 calls: transient failures retried a few times, every failure classified
//! (by `stele_worm::classify`, so both crates agree on what is transient).

use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::BucketError;

pub(crate) use stele_worm::{CallError, classify};

/// A classified failure as a [`BucketError`] for operation `op`.
pub(crate) trait IntoBucketError {
    fn into_error(self, op: &'static str) -> BucketError;
}

impl IntoBucketError for CallError {
    fn into_error(self, op: &'static str) -> BucketError {
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
