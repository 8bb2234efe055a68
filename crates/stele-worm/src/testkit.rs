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
