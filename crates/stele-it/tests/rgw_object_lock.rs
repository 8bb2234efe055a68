//! Object Lock as enforced by a real Ceph RADOS Gateway.
//!
//! These tests prove the test server really enforces what stele relies on
//! (per docs/contracts.md §6 and ref/s3-servers.md): a COMPLIANCE-locked version
//! cannot be deleted, its bytes stay readable, and lock headers on a bucket
//! without Object Lock are refused. They need the services started by
//! `scripts/test-services.sh`; run them through `scripts/test.sh`.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ObjectLockMode, ServerSideEncryption};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest as _, Md5};

const HOW_TO_RUN: &str = "run the live-service tests with `scripts/test.sh` \
     (or `scripts/test-services.sh start` and `source .test-services/env` first)";

/// Reads a variable written by `scripts/test-services.sh`; panics if missing,
/// so a test without its service fails instead of passing silently.
fn env_required(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{name} is not set: {HOW_TO_RUN}"),
    }
}

async fn client(access_key: &str, secret_key: &str) -> Client {
    let endpoint = env_required("STELE_TEST_RGW_ENDPOINT");
    let creds = Credentials::new(access_key, secret_key, None, None, "stele-it");
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .load()
        .await;
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        // RGW 16 ignores x-amz-checksum-* and rejects the SDK's default
        // aws-chunked trailers on streamed bodies; send checksums only when
        // an operation requires them and use Content-MD5 explicitly.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .build();
    Client::from_conf(conf)
}

async fn owner_client() -> Client {
    client(
        &env_required("STELE_TEST_RGW_ACCESS_KEY"),
        &env_required("STELE_TEST_RGW_SECRET_KEY"),
    )
    .await
}

/// A bucket name unique to this run and call site.
fn unique_bucket(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn content_md5(body: &[u8]) -> String {
    BASE64.encode(Md5::digest(body))
}

/// About one day ahead, whole seconds (S3 dates carry no sub-second part).
fn retain_until_tomorrow() -> DateTime {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        + 24 * 60 * 60;
    DateTime::from_secs(i64::try_from(secs).expect("seconds fit in i64"))
}

#[tokio::test]
async fn compliance_locked_version_cannot_be_deleted() {
    stele_worm::live_or_skip!(Rgw);
    let s3 = owner_client().await;
    let bucket = unique_bucket("stele-it-lock");
    s3.create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .expect("create Object Lock bucket");

    let key = "anchors/0000000001.json";
    let body = b"{\"tree_size\":1,\"root\":\"00\"}\n".to_vec();
    let until = retain_until_tomorrow();
    let put = s3
        .put_object()
        .bucket(&bucket)
        .key(key)
        .body(ByteStream::from(body.clone()))
        .content_md5(content_md5(&body))
        .object_lock_mode(ObjectLockMode::Compliance)
        .object_lock_retain_until_date(until)
        .send()
        .await
        .expect("PUT with COMPLIANCE retention");
    let version = put
        .version_id()
        .expect("Object Lock bucket is versioned, PUT returns a version id")
        .to_owned();

    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(key)
        .version_id(&version)
        .send()
        .await
        .expect("HEAD locked version");
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Compliance));
    assert_eq!(
        head.object_lock_retain_until_date().map(DateTime::secs),
        Some(until.secs()),
        "retain-until must come back as sent"
    );

    let err = s3
        .delete_object()
        .bucket(&bucket)
        .key(key)
        .version_id(&version)
        .send()
        .await
        .expect_err("deleting a COMPLIANCE-locked version must be refused");
    assert_eq!(
        err.code(),
        Some("AccessDenied"),
        "unexpected error: {err:?}"
    );

    // Even the governance bypass header must not help against COMPLIANCE.
    let err = s3
        .delete_object()
        .bucket(&bucket)
        .key(key)
        .version_id(&version)
        .bypass_governance_retention(true)
        .send()
        .await
        .expect_err("bypass must not delete a COMPLIANCE-locked version");
    assert_eq!(
        err.code(),
        Some("AccessDenied"),
        "unexpected error: {err:?}"
    );

    let got = s3
        .get_object()
        .bucket(&bucket)
        .key(key)
        .version_id(&version)
        .send()
        .await
        .expect("locked version still readable");
    let bytes = got.body.collect().await.expect("read body").into_bytes();
    assert_eq!(bytes.as_ref(), body.as_slice());
}

#[tokio::test]
async fn lock_headers_on_bucket_without_object_lock_are_refused() {
    stele_worm::live_or_skip!(Rgw);
    let s3 = owner_client().await;
    let bucket = unique_bucket("stele-it-nolock");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create plain bucket");

    let body = b"not lockable".to_vec();
    let err = s3
        .put_object()
        .bucket(&bucket)
        .key("x")
        .body(ByteStream::from(body.clone()))
        .content_md5(content_md5(&body))
        .object_lock_mode(ObjectLockMode::Compliance)
        .object_lock_retain_until_date(retain_until_tomorrow())
        .send()
        .await
        .expect_err("lock headers on a non-lock bucket must be refused");
    assert_eq!(
        err.code(),
        Some("InvalidRequest"),
        "unexpected error: {err:?}"
    );

    s3.delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("delete empty plain bucket");
}

#[tokio::test]
async fn sse_kms_test_keys_and_second_user_work() {
    stele_worm::live_or_skip!(Rgw);
    let s3 = owner_client().await;
    let bucket = unique_bucket("stele-it-kms");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");

    let body = b"encrypted at rest".to_vec();
    for key_id in [
        env_required("STELE_TEST_RGW_KMS_KEY_ID"),
        env_required("STELE_TEST_RGW_KMS_KEY_ID2"),
    ] {
        let put = s3
            .put_object()
            .bucket(&bucket)
            .key(&key_id)
            .body(ByteStream::from(body.clone()))
            .content_md5(content_md5(&body))
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(&key_id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("SSE-KMS PUT with test key {key_id}: {e:?}"));
        assert_eq!(
            put.server_side_encryption(),
            Some(&ServerSideEncryption::AwsKms)
        );
        assert_eq!(put.ssekms_key_id(), Some(key_id.as_str()));

        let got = s3
            .get_object()
            .bucket(&bucket)
            .key(&key_id)
            .send()
            .await
            .expect("GET SSE-KMS object");
        let bytes = got.body.collect().await.expect("read body").into_bytes();
        assert_eq!(bytes.as_ref(), body.as_slice());
    }

    // The second (non-owner) user authenticates but has no access to the
    // owner's bucket without a policy.
    let other = client(
        &env_required("STELE_TEST_RGW_USER2_ACCESS_KEY"),
        &env_required("STELE_TEST_RGW_USER2_SECRET_KEY"),
    )
    .await;
    assert!(!env_required("STELE_TEST_RGW_USER2_ID").is_empty());
    other
        .list_buckets()
        .send()
        .await
        .expect("second user's keys are valid");
    let err = other
        .get_object()
        .bucket(&bucket)
        .key(env_required("STELE_TEST_RGW_KMS_KEY_ID"))
        .send()
        .await
        .expect_err("non-owner must not read the owner's object");
    assert_eq!(
        err.code(),
        Some("AccessDenied"),
        "unexpected error: {err:?}"
    );
}
