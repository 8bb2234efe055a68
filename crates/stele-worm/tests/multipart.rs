//! Streamed file uploads against the real stores: multipart with per-part
//! checksums on Ceph RGW (verified by reading back) and ministack (checksum
//! API, KMS), create-only, retried through a proxy that drops connections.

use std::io::Write as _;
use std::path::Path;

use aws_sdk_s3::error::ProvideErrorMetadata as _;
use aws_sdk_s3::types::ChecksumMode;
use stele_worm::testkit::{
    FaultyProxy, create_bucket, create_ministack_kms_key, env_required, ministack, rgw,
    unique_bucket,
};
use stele_worm::{
    FileDigest, FileUpload, LockMode, MIB, NoProgress, Retention, S3Config, S3Worm, UploadTuning,
    WormError,
};
use time::{Duration, OffsetDateTime};

/// A directory removed on drop (the crate has no tempfile dependency).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(stele_worm::testkit::unique_bucket("stele-worm-test"));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn retention(mode: LockMode) -> Retention {
    let until = OffsetDateTime::now_utc() + Duration::days(1);
    Retention {
        mode,
        retain_until: until.replace_nanosecond(0).unwrap(),
    }
}

/// Writes `size` pseudo-random bytes (seeded) to `path`, streamed.
fn write_file(path: &Path, size: u64, seed: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x = seed | 1;
    let mut buf = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        for b in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        let n = left.min(MIB) as usize;
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

/// Small parts so tests exercise many parts without big files.
fn small_parts() -> UploadTuning {
    UploadTuning {
        part_size: 5 * MIB,
        concurrency: 3,
        multipart_threshold: 5 * MIB,
    }
}

fn upload<'a>(
    key: &'a str,
    path: &'a Path,
    digest: &'a FileDigest,
    mode: LockMode,
    tuning: UploadTuning,
) -> FileUpload<'a> {
    FileUpload {
        key,
        path,
        digest,
        retention: retention(mode),
        metadata: &[],
        tuning,
    }
}

/// Removes GOVERNANCE-locked versions under `prefix` (bypass), to give RGW's memstore its space back.
async fn cleanup_governance(store: &S3Worm, prefix: &str) {
    let versions = store
        .client()
        .list_object_versions()
        .bucket(store.bucket())
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    for v in versions.versions() {
        store
            .client()
            .delete_object()
            .bucket(store.bucket())
            .key(v.key().unwrap())
            .version_id(v.version_id().unwrap())
            .bypass_governance_retention(true)
            .send()
            .await
            .unwrap();
    }
}

async fn version_count(store: &S3Worm, key: &str) -> usize {
    let out = store
        .client()
        .list_object_versions()
        .bucket(store.bucket())
        .prefix(key)
        .send()
        .await
        .unwrap();
    out.versions()
        .iter()
        .filter(|v| v.key() == Some(key))
        .count()
}

async fn open_uploads(store: &S3Worm) -> usize {
    let out = store
        .client()
        .list_multipart_uploads()
        .bucket(store.bucket())
        .send()
        .await
        .unwrap();
    out.uploads().len()
}

#[tokio::test]
async fn rgw_multipart_lands_locked_and_is_verified_by_its_bytes() {
    stele_worm::live_or_skip!(Rgw);
    let store = create_bucket(rgw(&unique_bucket("mp-rgw")), true).await;
    let dir = TempDir::new();
    let path = dir.path().join("big.bin");
    write_file(&path, 23 * MIB + 12_345, 7);
    let digest = FileDigest::of_file(&path).unwrap();
    let up = upload(
        "e/big.bin",
        &path,
        &digest,
        LockMode::Governance,
        small_parts(),
    );
    let stored = store.put_file_locked(&up, &NoProgress).await.unwrap();
    assert_eq!(stored.sha256, digest.sha256);
    assert_eq!(stored.size, digest.size);
    assert_eq!(stored.verified_by, "bytes", "RGW has no checksum API");
    assert_eq!(stored.lock_mode, Some(LockMode::Governance));
    assert_eq!(
        stored.retain_until.map(|t| t.unix_timestamp()),
        Some(up.retention.retain_until.unix_timestamp())
    );
    assert!(!stored.already_present);
    let version = stored.version_id.clone().expect("a version id");
    assert_eq!(open_uploads(&store).await, 0);

    // Locked: deleting the version without bypass is refused.
    let err = store
        .client()
        .delete_object()
        .bucket(store.bucket())
        .key("e/big.bin")
        .version_id(&version)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");

    // A retried upload of the same file is accepted; different content is refused.
    let again = store.put_file_locked(&up, &NoProgress).await.unwrap();
    assert!(again.already_present);
    assert_eq!(again.version_id.as_deref(), Some(version.as_str()));
    let other = dir.path().join("other.bin");
    write_file(&other, 23 * MIB + 12_345, 8);
    let other_digest = FileDigest::of_file(&other).unwrap();
    let err = store
        .put_file_locked(
            &upload(
                "e/big.bin",
                &other,
                &other_digest,
                LockMode::Governance,
                small_parts(),
            ),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WormError::Conflict { .. }), "{err}");
    assert_eq!(version_count(&store, "e/big.bin").await, 1);
    cleanup_governance(&store, "e/").await;
}

#[tokio::test]
async fn a_file_that_differs_from_its_digest_is_not_stored() {
    stele_worm::live_or_skip!(Rgw);
    let store = create_bucket(rgw(&unique_bucket("mp-changed")), true).await;
    let dir = TempDir::new();
    let path = dir.path().join("f.bin");
    write_file(&path, 12 * MIB, 1);
    let mut digest = FileDigest::of_file(&path).unwrap();
    // As if the file had changed after it was hashed (and signed).
    digest.sha256 = stele_worm::sha256_hex(b"something else");
    let err = store
        .put_file_locked(
            &upload(
                "e/f.bin",
                &path,
                &digest,
                LockMode::Governance,
                small_parts(),
            ),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WormError::Verification { what, .. } if what.contains("changed while it was being uploaded")),
        "{err}"
    );
    assert!(store.head("e/f.bin", None).await.unwrap().is_none());
    assert_eq!(open_uploads(&store).await, 0, "the upload was aborted");
}

#[tokio::test]
async fn connections_dropped_mid_upload_are_retried_and_the_object_lands_once() {
    stele_worm::live_or_skip!(Rgw);
    let bucket = unique_bucket("mp-drop");
    let owner = create_bucket(rgw(&bucket), true).await;
    let proxy = FaultyProxy::start(&env_required("STELE_TEST_RGW_ENDPOINT"));
    // The first two connections die once 1 MiB has gone through them, mid-part;
    // a part may lose both and still land on its third attempt.
    proxy.drop_after_bytes(MIB, 2);
    let store = S3Worm::connect(S3Config {
        endpoint: Some(proxy.endpoint()),
        ..rgw(&bucket)
    })
    .await
    .unwrap();
    let dir = TempDir::new();
    let path = dir.path().join("f.bin");
    write_file(&path, 20 * MIB, 3);
    let digest = FileDigest::of_file(&path).unwrap();
    let stored = store
        .put_file_locked(
            &upload(
                "e/f.bin",
                &path,
                &digest,
                LockMode::Governance,
                small_parts(),
            ),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(proxy.dropped(), 2, "both faults were injected");
    assert_eq!(stored.sha256, digest.sha256);
    assert_eq!(version_count(&owner, "e/f.bin").await, 1);
    assert_eq!(open_uploads(&owner).await, 0);
    cleanup_governance(&owner, "e/").await;
}

#[tokio::test]
async fn an_unreachable_store_fails_after_the_retries() {
    stele_worm::live_or_skip!(Rgw);
    let bucket = unique_bucket("mp-down");
    let _owner = create_bucket(rgw(&bucket), true).await;
    let proxy = FaultyProxy::start(&env_required("STELE_TEST_RGW_ENDPOINT"));
    proxy.set_down(true);
    let store = S3Worm::connect(S3Config {
        endpoint: Some(proxy.endpoint()),
        ..rgw(&bucket)
    })
    .await
    .unwrap();
    let dir = TempDir::new();
    let path = dir.path().join("f.bin");
    write_file(&path, 6 * MIB, 3);
    let digest = FileDigest::of_file(&path).unwrap();
    let err = store
        .put_file_locked(
            &upload(
                "e/f.bin",
                &path,
                &digest,
                LockMode::Governance,
                small_parts(),
            ),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        matches!(err, WormError::Unavailable { attempts: 3, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn ministack_single_part_checksum_is_the_files_sha256_and_sse_kms_applies() {
    stele_worm::live_or_skip!(Ministack);
    let key_id = create_ministack_kms_key().await;
    let bucket = unique_bucket("mp-ms");
    let _plain = create_bucket(ministack(&bucket), true).await;
    let store = S3Worm::connect(S3Config {
        kms_key_id: Some(key_id.clone()),
        ..ministack(&bucket)
    })
    .await
    .unwrap();
    let dir = TempDir::new();
    let path = dir.path().join("small.json");
    write_file(&path, 300_000, 11);
    let digest = FileDigest::of_file(&path).unwrap();
    let stored = store
        .put_file_locked(
            &upload(
                "e/small.json",
                &path,
                &digest,
                LockMode::Compliance,
                UploadTuning::default(),
            ),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(stored.verified_by, "checksum-api");
    let head = store
        .client()
        .head_object()
        .bucket(&bucket)
        .key("e/small.json")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    use base64::Engine as _;
    let checksum = base64::prelude::BASE64_STANDARD
        .decode(
            head.checksum_sha256()
                .expect("ministack stores ChecksumSHA256"),
        )
        .unwrap();
    assert_eq!(hex::encode(checksum), digest.sha256);
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("aws:kms")
    );
    assert!(head.ssekms_key_id().unwrap_or_default().contains(&key_id));
}

/// ministack ignores the lock on CreateMultipartUpload (as RGW does): stele
/// sets it on the version, and verifies the content by the composite checksum.
#[tokio::test]
async fn ministack_multipart_gets_its_lock_and_is_verified_by_the_composite_checksum() {
    stele_worm::live_or_skip!(Ministack);
    let bucket = unique_bucket("mp-ms-big");
    let store = create_bucket(ministack(&bucket), true).await;
    let dir = TempDir::new();
    let path = dir.path().join("big.bin");
    write_file(&path, 11 * MIB, 5);
    let digest = FileDigest::of_file(&path).unwrap();
    let up = upload(
        "e/big.bin",
        &path,
        &digest,
        LockMode::Compliance,
        small_parts(),
    );
    let stored = store.put_file_locked(&up, &NoProgress).await.unwrap();
    assert_eq!(stored.lock_mode, Some(LockMode::Compliance));
    assert_eq!(stored.verified_by, "checksum-api");
    let head = store
        .client()
        .head_object()
        .bucket(&bucket)
        .key("e/big.bin")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert!(
        head.checksum_sha256().is_some_and(|c| c.ends_with("-3")),
        "a composite of 3 parts: {:?}",
        head.checksum_sha256()
    );
}

#[test]
fn the_test_memstore_reports_its_free_space_when_local() {
    let free = stele_worm::testkit::memstore_free_bytes();
    eprintln!("memstore free: {:?} MiB", free.map(|b| b >> 20));
    if std::env::var_os("STELE_SERVICES_DIR").is_some()
        && std::path::Path::new("/usr/bin/ceph").exists()
    {
        assert!(free.is_some_and(|b| b > 0 && b <= 1 << 40), "{free:?}");
    }
}
