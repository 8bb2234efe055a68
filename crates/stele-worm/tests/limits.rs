//! Locks that a store could silently lose, and writers that race, against
//! the real stores: Ceph RGW keeps retain-until in 32 bits (a date after
//! 2106-02-07T06:28:15Z wraps to one near 1970 and unlocks the version) and
//! ignores `If-None-Match` on versioned buckets; ministack honours it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use stele_worm::testkit::{create_bucket, ministack, rgw, unique_bucket};
use stele_worm::{
    FileDigest, FileUpload, LockMode, MIB, NoProgress, Retention, S3Worm, StoredObject,
    UploadTuning, WormError, sha256_hex,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// The last retain-until Ceph RGW can hold (`u32::MAX` seconds).
const EDGE: OffsetDateTime = datetime!(2106-02-07 06:28:15 UTC);

fn governance_for(days: i64) -> Retention {
    let until = OffsetDateTime::now_utc() + Duration::days(days);
    Retention {
        mode: LockMode::Governance,
        retain_until: until.replace_nanosecond(0).unwrap(),
    }
}

/// A file under the system temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(size: u64, seed: u64) -> Self {
        let path = std::env::temp_dir().join(unique_bucket("stele-worm-limits"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
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
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn small_parts() -> UploadTuning {
    UploadTuning {
        part_size: 5 * MIB,
        concurrency: 2,
        multipart_threshold: 5 * MIB,
    }
}

/// Removes every version under `prefix` with the GOVERNANCE bypass (RGW's memstore is small).
async fn cleanup(store: &S3Worm, prefix: &str) {
    let out = store
        .client()
        .list_object_versions()
        .bucket(store.bucket())
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    for v in out.versions() {
        let _ = store
            .client()
            .delete_object()
            .bucket(store.bucket())
            .key(v.key().unwrap())
            .version_id(v.version_id().unwrap())
            .bypass_governance_retention(true)
            .send()
            .await;
    }
}

/// Content versions of exactly `key`, as the store lists them (newest first).
async fn listed_versions(store: &S3Worm, key: &str) -> Vec<(String, i64)> {
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
        .map(|v| (v.version_id().unwrap().to_owned(), v.size().unwrap()))
        .collect()
}

#[tokio::test]
async fn rgw_retain_until_after_2106_is_refused_before_anything_is_sent() {
    stele_worm::live_or_skip!(Rgw);
    let store = create_bucket(rgw(&unique_bucket("worm-2106")), true).await;
    let beyond = Retention {
        mode: LockMode::Governance,
        retain_until: EDGE + Duration::seconds(1),
    };

    // PUT: refused, nothing stored (before the fix RGW stored 1970-01-01 and the version was unlocked).
    let err = store
        .put_locked("edge/put", b"evidence", beyond)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WormError::RetainUntilTooLate { requested, latest }
            if requested == "2106-02-07T06:28:16Z" && latest == "2106-02-07T06:28:15Z"),
        "{err}"
    );
    assert!(store.head("edge/put", None).await.unwrap().is_none());
    assert!(listed_versions(&store, "edge/put").await.is_empty());

    // Multipart: refused before CreateMultipartUpload, nothing stored, no upload left open.
    let file = TempFile::new(6 * MIB, 7);
    let digest = FileDigest::of_file(file.path()).unwrap();
    let err = store
        .put_file_locked(
            &FileUpload {
                key: "edge/multipart",
                path: file.path(),
                digest: &digest,
                retention: Retention {
                    mode: LockMode::Governance,
                    retain_until: datetime!(2107-01-01 00:00:00 UTC),
                },
                metadata: &[],
                tuning: small_parts(),
            },
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WormError::RetainUntilTooLate { .. }), "{err}");
    assert!(listed_versions(&store, "edge/multipart").await.is_empty());
    let uploads = store
        .client()
        .list_multipart_uploads()
        .bucket(store.bucket())
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());

    // Extending a lock beyond the edge: refused, the lock unchanged.
    let r = governance_for(1);
    let stored = store.put_locked("edge/extend", b"locked", r).await.unwrap();
    let err = store
        .put_retention(
            "edge/extend",
            stored.version_id.as_deref(),
            Retention {
                mode: LockMode::Governance,
                retain_until: datetime!(2107-01-01 00:00:00 UTC),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WormError::RetainUntilTooLate { .. }), "{err}");
    let facts = store
        .head("edge/extend", stored.version_id.as_deref())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.lock_mode, Some(LockMode::Governance));
    assert_eq!(
        facts.retain_until.map(|t| t.unix_timestamp()),
        Some(r.retain_until.unix_timestamp()),
        "the lock was changed"
    );

    // The exact edge is what RGW can hold: accepted, and read back unchanged.
    let at_edge = Retention {
        mode: LockMode::Governance,
        retain_until: EDGE,
    };
    let stored = store
        .put_locked("edge/exact", b"until the edge", at_edge)
        .await
        .unwrap();
    assert_eq!(stored.retain_until, Some(EDGE));
    let extended = store
        .put_retention("edge/extend", None, at_edge)
        .await
        .unwrap();
    assert_eq!(extended.retain_until, Some(EDGE));
    cleanup(&store, "edge/").await;
}

/// One round: two writers put different content at the same key at once.
async fn race(
    a: &S3Worm,
    b: &S3Worm,
    key: &str,
    bodies: (&[u8], &[u8]),
) -> (
    Result<StoredObject, WormError>,
    Result<StoredObject, WormError>,
) {
    let r = governance_for(1);
    tokio::join!(
        a.put_locked(key, bodies.0, r),
        b.put_locked(key, bodies.1, r)
    )
}

/// Exactly one writer succeeds, and it names the version that holds the key
/// (the first one the store stored) with that version's content; the other
/// fails naming the winning version — and its own, when the store kept it.
async fn assert_one_winner(
    store: &S3Worm,
    key: &str,
    results: (
        Result<StoredObject, WormError>,
        Result<StoredObject, WormError>,
    ),
    bodies: (&[u8], &[u8]),
) -> bool {
    let (winner, loser, body) = match results {
        (Ok(w), Err(l)) => (w, l, bodies.0),
        (Err(l), Ok(w)) => (w, l, bodies.1),
        (Ok(a), Ok(b)) => panic!("{key}: both writers succeeded: {a:?} / {b:?}"),
        (Err(a), Err(b)) => panic!("{key}: both writers failed: {a} / {b}"),
    };
    let listed = listed_versions(store, key).await;
    let (first, _) = listed.last().expect("a version");
    assert_eq!(
        winner.version_id.as_deref(),
        Some(first.as_str()),
        "{key}: the winner names another version than the first ({listed:?})"
    );
    assert_eq!(winner.sha256, sha256_hex(body));
    let held = store.get_version(key, Some(first)).await.unwrap();
    assert_eq!(held, body, "{key}: the first version holds other bytes");
    match loser {
        WormError::LostRace {
            winner_version,
            our_version,
            ours,
            ..
        } => {
            assert_eq!(&winner_version, first);
            let ours_id = our_version.expect("the loser's own version");
            assert!(
                listed.iter().any(|(v, _)| *v == ours_id),
                "{key}: the loser names a version that is not there"
            );
            assert!(ours.contains(&ours_id), "{ours}");
            // A single PUT carries its lock; RGW ignores the lock of
            // CreateMultipartUpload, and the loser's version is not locked after.
            let lock = store
                .head(key, Some(&ours_id))
                .await
                .unwrap()
                .unwrap()
                .lock_mode;
            let said = if lock.is_some() {
                "locked GOVERNANCE"
            } else {
                "not locked"
            };
            assert!(ours.contains(said), "{ours}");
            true
        }
        // The loser saw the winner's object before sending anything (or the store refused its create-only write).
        WormError::Conflict { version_id, .. } => {
            assert_eq!(version_id.as_deref(), Some(first.as_str()));
            false
        }
        other => panic!("{key}: the loser failed otherwise: {other}"),
    }
}

#[tokio::test]
async fn rgw_concurrent_writers_of_different_content_exactly_one_wins() {
    stele_worm::live_or_skip!(Rgw);
    let bucket = unique_bucket("worm-race");
    let a = create_bucket(rgw(&bucket), true).await;
    let b = S3Worm::connect(rgw(&bucket)).await.unwrap();
    let mut raced = 0;
    for round in 0..12 {
        let key = format!("race/{round}");
        let bodies: (&[u8], &[u8]) = (b"content from writer A", b"writer B's other content");
        let results = race(&a, &b, &key, bodies).await;
        if assert_one_winner(&a, &key, results, bodies).await {
            raced += 1;
        }
    }
    eprintln!("{raced} of 12 rounds stored both versions");
    assert!(raced > 0, "no round raced: the test proved nothing");

    // Multipart: both uploads pass their HEAD long before either completes.
    let fa = TempFile::new(6 * MIB, 11);
    let fb = TempFile::new(6 * MIB, 13);
    let da = FileDigest::of_file(fa.path()).unwrap();
    let db = FileDigest::of_file(fb.path()).unwrap();
    let bytes_a = std::fs::read(fa.path()).unwrap();
    let bytes_b = std::fs::read(fb.path()).unwrap();
    let upload = |path, digest| FileUpload {
        key: "race/multipart",
        path,
        digest,
        retention: governance_for(1),
        metadata: &[],
        tuning: small_parts(),
    };
    let (ua, ub) = (upload(fa.path(), &da), upload(fb.path(), &db));
    let results = tokio::join!(
        a.put_file_locked(&ua, &NoProgress),
        b.put_file_locked(&ub, &NoProgress)
    );
    assert_one_winner(&a, "race/multipart", results, (&bytes_a, &bytes_b)).await;

    // The same content from both at once: both succeed, naming the same (first) version.
    let r = governance_for(1);
    let (x, y) = tokio::join!(
        a.put_locked("race/same", b"same", r),
        b.put_locked("race/same", b"same", r)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.version_id, y.version_id);
    let listed = listed_versions(&a, "race/same").await;
    assert_eq!(
        x.version_id.as_deref(),
        Some(listed.last().unwrap().0.as_str())
    );
    cleanup(&a, "race/").await;
}

#[tokio::test]
async fn ministack_refuses_the_second_create_only_write() {
    stele_worm::live_or_skip!(Ministack);
    let bucket = unique_bucket("worm-race");
    let a = create_bucket(ministack(&bucket), true).await;
    let b = S3Worm::connect(ministack(&bucket)).await.unwrap();
    for round in 0..6 {
        let key = format!("race/{round}");
        let bodies: (&[u8], &[u8]) = (b"content from writer A", b"writer B's other content");
        let results = race(&a, &b, &key, bodies).await;
        assert_one_winner(&a, &key, results, bodies).await;
        assert_eq!(
            listed_versions(&a, &key).await.len(),
            1,
            "ministack honours If-None-Match: the loser stored nothing"
        );
    }
}
