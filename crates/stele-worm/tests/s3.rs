//! The WORM layer against the real stores: Ceph RGW (Object Lock, policies,
//! SSE-KMS, no checksum API) and ministack (checksum API, KMS).

use aws_sdk_s3::error::ProvideErrorMetadata as _;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumMode, ObjectLockMode};
use base64::Engine as _;
use stele_worm::testkit::{
    create_bucket, env_required, ministack, quick_retry, rgw, unique_bucket, unreachable,
};
use stele_worm::{LockMode, Retention, S3Config, S3Worm, WormError, sha256_hex};
use time::{Duration, OffsetDateTime};

fn retention(mode: LockMode) -> Retention {
    let until = OffsetDateTime::now_utc() + Duration::days(1);
    Retention {
        mode,
        retain_until: until.replace_nanosecond(0).unwrap(),
    }
}

#[tokio::test]
async fn rgw_locked_write_is_verified_and_cannot_be_deleted_or_overwritten() {
    stele_worm::live_or_skip!(Rgw);
    let store = create_bucket(rgw(&unique_bucket("worm-rgw")), true).await;
    let body = br#"{"anchor":0}"#;
    let r = retention(LockMode::Compliance);
    let stored = store.put_locked("anchors/c/0.json", body, r).await.unwrap();
    assert_eq!(stored.sha256, sha256_hex(body));
    assert_eq!(stored.lock_mode, Some(LockMode::Compliance));
    assert_eq!(
        stored.retain_until.map(|t| t.unix_timestamp()),
        Some(r.retain_until.unix_timestamp())
    );
    assert_eq!(
        stored.verified_by, "bytes",
        "RGW has no checksum API: the bytes must be read back"
    );
    assert!(stored.worm && !stored.already_present);
    let version = stored.version_id.clone().expect("version id");

    // Deleting the locked version is refused by the store.
    let err = store
        .client()
        .delete_object()
        .bucket(store.bucket())
        .key("anchors/c/0.json")
        .version_id(&version)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");

    // stele never overwrites: different bytes at the same key are refused before any request.
    let err = store
        .put_locked("anchors/c/0.json", b"forged", r)
        .await
        .unwrap_err();
    assert!(matches!(err, WormError::Conflict { .. }), "{err}");
    // A retried write of identical bytes is accepted and verified again.
    let again = store.put_locked("anchors/c/0.json", body, r).await.unwrap();
    assert!(again.already_present);
    assert_eq!(again.version_id.as_deref(), Some(version.as_str()));

    // A raw overwrite by another client only adds a version; the locked one stays, intact.
    let _ = store
        .client()
        .put_object()
        .bucket(store.bucket())
        .key("anchors/c/0.json")
        .body(ByteStream::from_static(b"forged"))
        .send()
        .await;
    let original = store
        .get_version("anchors/c/0.json", Some(&version))
        .await
        .unwrap();
    assert_eq!(original, body);
    let err = store
        .client()
        .delete_object()
        .bucket(store.bucket())
        .key("anchors/c/0.json")
        .version_id(&version)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"));
}

#[tokio::test]
async fn rgw_sse_kms_is_applied_and_an_unknown_key_is_refused() {
    stele_worm::live_or_skip!(Rgw);
    let bucket = unique_bucket("worm-kms");
    let plain = create_bucket(rgw(&bucket), true).await;
    let kms = S3Worm::connect(S3Config {
        kms_key_id: Some(env_required("STELE_TEST_RGW_KMS_KEY_ID")),
        ..rgw(&bucket)
    })
    .await
    .unwrap();
    let stored = kms
        .put_locked("a/kms.json", b"{}", retention(LockMode::Compliance))
        .await
        .unwrap();
    assert_eq!(
        stored.kms_key_id.as_deref(),
        Some(env_required("STELE_TEST_RGW_KMS_KEY_ID").as_str())
    );

    let unknown = S3Worm::connect(S3Config {
        kms_key_id: Some("no-such-key".into()),
        ..rgw(&bucket)
    })
    .await
    .unwrap();
    let err = unknown
        .put_locked("a/unknown.json", b"{}", retention(LockMode::Compliance))
        .await
        .unwrap_err();
    assert!(matches!(err, WormError::KmsKey { .. }), "{err}");
    assert_eq!(
        plain.list("a/").await.unwrap(),
        ["a/kms.json"],
        "nothing half-written"
    );
}

#[tokio::test]
async fn rgw_bad_buckets_and_credentials_are_clear_errors() {
    stele_worm::live_or_skip!(Rgw);
    let plain = create_bucket(rgw(&unique_bucket("worm-nolock")), false).await;
    let err = plain
        .put_locked("x.json", b"{}", retention(LockMode::Compliance))
        .await
        .unwrap_err();
    assert!(matches!(err, WormError::NoObjectLock { .. }), "{err}");
    assert!(err.to_string().contains("Object Lock"), "{err}");
    assert!(plain.list("").await.unwrap().is_empty(), "nothing written");

    let missing = S3Worm::connect(rgw(&unique_bucket("worm-missing")))
        .await
        .unwrap();
    let err = missing
        .put_locked("x.json", b"{}", retention(LockMode::Compliance))
        .await
        .unwrap_err();
    assert!(matches!(err, WormError::NoSuchBucket { .. }), "{err}");

    let locked = create_bucket(rgw(&unique_bucket("worm-creds")), true).await;
    let wrong = S3Worm::connect(S3Config {
        static_credentials: Some((
            env_required("STELE_TEST_RGW_ACCESS_KEY"),
            "wrong-secret".into(),
        )),
        ..rgw(locked.bucket())
    })
    .await
    .unwrap();
    let err = wrong
        .put_locked("x.json", b"{}", retention(LockMode::Compliance))
        .await
        .unwrap_err();
    assert!(matches!(err, WormError::BadCredentials { .. }), "{err}");
    assert!(!err.to_string().contains("wrong-secret"));

    // A retain-until in the past is refused before any request.
    let past = Retention {
        mode: LockMode::Compliance,
        retain_until: OffsetDateTime::now_utc() - Duration::days(1),
    };
    assert!(matches!(
        locked.put_locked("x.json", b"{}", past).await,
        Err(WormError::Config(_))
    ));
    assert!(locked.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_store_is_retried_then_reported_as_unavailable() {
    let cfg = S3Config {
        retry: quick_retry(),
        ..unreachable("any-bucket")
    };
    let store = S3Worm::connect(cfg).await.unwrap();
    let err = store
        .put_locked("x.json", b"{}", retention(LockMode::Compliance))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        matches!(err, WormError::Unavailable { attempts: 3, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn ministack_checksum_api_reports_the_sha256_of_the_bytes() {
    stele_worm::live_or_skip!(Ministack);
    let store = create_bucket(ministack(&unique_bucket("worm-ms")), true).await;
    let body = br#"{"anchor":1,"tree_size":42}"#;
    let stored = store
        .put_locked("anchors/c/1.json", body, retention(LockMode::Compliance))
        .await
        .unwrap();
    assert_eq!(stored.verified_by, "checksum-api");
    // What the seeds' manual check does: GetObject --checksum-mode ENABLED, compare with sha256sum.
    let got = store
        .client()
        .get_object()
        .bucket(store.bucket())
        .key("anchors/c/1.json")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    let checksum = got.checksum_sha256().expect("ChecksumSHA256").to_owned();
    let raw = base64::prelude::BASE64_STANDARD.decode(checksum).unwrap();
    assert_eq!(hex::encode(raw), sha256_hex(body));
    assert_eq!(got.object_lock_mode(), Some(&ObjectLockMode::Compliance));
}

#[tokio::test]
async fn ministack_sse_kms_with_an_emulator_key_is_applied_and_reported() {
    stele_worm::live_or_skip!(Ministack);
    let key_id = stele_worm::testkit::create_ministack_kms_key().await;

    let bucket = unique_bucket("worm-mskms");
    create_bucket(ministack(&bucket), true).await;
    let store = S3Worm::connect(S3Config {
        kms_key_id: Some(key_id.clone()),
        ..ministack(&bucket)
    })
    .await
    .unwrap();
    let stored = store
        .put_locked(
            "evidence/x.json",
            b"{\"e\":1}",
            retention(LockMode::Governance),
        )
        .await
        .unwrap();
    assert_eq!(stored.lock_mode, Some(LockMode::Governance));
    let reported = stored.kms_key_id.expect("the store reports the KMS key");
    assert!(
        reported == key_id || reported.ends_with(&format!("/{key_id}")),
        "{reported} vs {key_id}"
    );
}

/// A retried write of the same bytes that asks for a later retain-until (the
/// retry computed it a moment later) gets it; one that asks for an earlier
/// retain-until never shortens the lock.
#[tokio::test]
async fn rgw_a_retried_write_extends_the_lock_and_never_shortens_it() {
    stele_worm::live_or_skip!(Rgw);
    let store = create_bucket(rgw(&unique_bucket("worm-extend")), true).await;
    let key = "evidence/c/2026/11/EB-1.json";
    let body = br#"{"evidence":1}"#;
    let first = retention(LockMode::Compliance);
    let stored = store.put_locked(key, body, first).await.unwrap();
    assert_eq!(
        stored.retain_until.map(|t| t.unix_timestamp()),
        Some(first.retain_until.unix_timestamp())
    );

    let later = Retention {
        retain_until: first.retain_until + Duration::seconds(1),
        ..first
    };
    let again = store.put_locked(key, body, later).await.unwrap();
    assert!(again.already_present);
    assert_eq!(again.version_id, stored.version_id, "no new version");
    let held = |facts: Option<stele_worm::ObjectFacts>| {
        facts
            .and_then(|f| f.retain_until)
            .map(|t| t.unix_timestamp())
    };
    let now_held = held(store.head(key, stored.version_id.as_deref()).await.unwrap());
    assert_eq!(now_held, Some(later.retain_until.unix_timestamp()));

    let earlier = Retention {
        retain_until: first.retain_until - Duration::hours(1),
        ..first
    };
    let third = store.put_locked(key, body, earlier).await.unwrap();
    assert!(third.already_present);
    assert_eq!(
        held(store.head(key, stored.version_id.as_deref()).await.unwrap()),
        Some(later.retain_until.unix_timestamp()),
        "the lock was shortened"
    );

    // A GOVERNANCE request does not weaken a COMPLIANCE lock; it is reported.
    let weaker = Retention {
        mode: LockMode::Governance,
        ..later
    };
    let err = store.put_locked(key, body, weaker).await.unwrap_err();
    assert!(
        matches!(&err, WormError::Verification { what, .. } if what.contains("lock mode is COMPLIANCE")),
        "{err}"
    );
    // The message names the version whose lock differs from what was asked.
    let version = stored.version_id.as_deref().unwrap();
    assert!(
        err.to_string()
            .contains(&format!("the lock of version {version} is wrong")),
        "{err}"
    );
}
