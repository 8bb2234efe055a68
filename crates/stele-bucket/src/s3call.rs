//! S3 calls: retried and classified by stele-worm's one S3 call path
//! (`stele_worm::call_with_retry`, `stele_worm::classify`), so the bucket
//! tooling and the object store agree on what is transient and how to wait.

use std::future::Future;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::BucketError;

use stele_worm::RetryPolicy;
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

/// Runs `f` through stele-worm's one retry path (transient failures only,
/// backoff with jitter, [`RetryPolicy::default`]); returns the last SDK error
/// so callers can look at the raw answer.
pub(crate) async fn call<T, E, F, Fut>(
    op: &'static str,
    f: F,
) -> Result<T, SdkError<E, HttpResponse>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    stele_worm::call_with_retry(RetryPolicy::default(), op, f)
        .await
        .map_err(|failure| failure.sdk)
}
