//! Anchoring against the real stores: anchors land locked and in order on
//! Ceph RGW and check end to end; ministack's checksum API matches the bytes;
//! PostgreSQL's plain SQL agrees with every anchor; bad settings are refused
//! with nothing half-written; anchors survive an outage in the outbox.

mod common;

use aws_sdk_s3::error::ProvideErrorMetadata as _;
use common::{open, runtime};
use signed_note::StandardSigner;
use stele_anchor::AnchorStatus;
use stele_anchor::{Anchor, Trigger, check_link};
use stele_anchorer::{AnchorPolicy, Anchorer, AnchorerError};
use stele_ledger::event::{EventInput, Limits, ValidEvent};
use stele_ledger::{ChainId, HmacKey, KeyId, Keyring};
use stele_store::testkit::TestDb;
use stele_worm::testkit::{
    FaultyProxy, create_bucket, create_ministack_kms_key, env_required, ministack, rgw,
    unique_bucket,
};
use stele_worm::{LockMode, ObjectStore, S3Config, S3Worm, WormError};
use time::OffsetDateTime;

fn signer() -> (StandardSigner, String) {
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, "stele.test");
    (StandardSigner::new(&skey).unwrap(), vkey)
}

fn events(n: usize) -> Vec<ValidEvent> {
    (0..n)
        .map(|i| {
            EventInput {
                event_type: "user.login".into(),
                actor: Some(format!("u{i}")),
                payload: Some(serde_json::json!({"i": i})),
                idempotency_key: None,
            }
            .validate(&Limits::default())
            .unwrap()
        })
        .collect()
}

fn key(id: &str) -> HmacKey {
    HmacKey::new(KeyId::new(id).unwrap(), &[3; 32])
}

/// Every key the tests chain with (`key` uses one secret for all ids).
fn ring() -> &'static Keyring {
    static RING: std::sync::LazyLock<Keyring> = std::sync::LazyLock::new(|| {
        Keyring::new(KeyId::new("k1").unwrap(), [key("k1"), key("k2")]).unwrap()
    });
    &RING
}

/// Reads every anchor of `chain` back from the bucket in key order and checks
/// signatures and links; returns them with their bytes.
fn read_back(
    rt: &tokio::runtime::Runtime,
    s3: &S3Worm,
    chain: &str,
    vkey: &str,
) -> Vec<(String, Anchor, Vec<u8>)> {
    let keys = rt.block_on(s3.list(&format!("anchors/{chain}/"))).unwrap();
    let mut out: Vec<(String, Anchor, Vec<u8>)> = Vec::new();
    for k in keys {
        let bytes = rt.block_on(s3.get(&k)).unwrap();
        let anchor = Anchor::from_bytes(&bytes).unwrap();
        anchor.verify(vkey).unwrap();
        if let Some((_, prev, prev_bytes)) = out.last() {
            check_link(prev, prev_bytes, &anchor).unwrap();
        }
        out.push((k, anchor, bytes));
    }
    out
}

#[test]
fn rgw_anchors_land_locked_in_order_and_check_end_to_end() {
    stele_worm::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("anchors")), true));
    let target = ObjectStore::S3(rt.block_on(S3Worm::connect(rgw(s3.bucket()))).unwrap());
    let db = TestDb::sqlite();
    let store = open(&rt, &db);
    let (signer, vkey) = signer();
    let policy = AnchorPolicy::default();
    let chain = ChainId::new("production").unwrap();
    let now = OffsetDateTime::now_utc();

    let mut anchorer = Anchorer::new(store.clone(), &signer, ring(), &policy).unwrap();
    // An empty chain still anchors: silence is evidence too.
    rt.block_on(anchorer.build(&chain, Trigger::Time, "k1", now))
        .unwrap();
    rt.block_on(store.append(&chain, events(25), &key("k1")))
        .unwrap();
    rt.block_on(anchorer.build(&chain, Trigger::Manual, "k1", now))
        .unwrap();
    rt.block_on(store.append(&chain, events(10), &key("k1")))
        .unwrap();
    rt.block_on(anchorer.build(&chain, Trigger::Volume, "k1", now))
        .unwrap();
    rt.block_on(anchorer.build(&chain, Trigger::Time, "k1", now + time::Duration::hours(1)))
        .unwrap();
    rt.block_on(store.append(&chain, events(3), &key("k2")))
        .unwrap();
    rt.block_on(anchorer.build(
        &chain,
        Trigger::KeyRotation,
        "k2",
        now + time::Duration::hours(1),
    ))
    .unwrap();
    let report = rt.block_on(anchorer.upload_pending(&target)).unwrap();
    assert_eq!(report.uploaded.len(), 5, "{:?}", report.failed);
    assert!(report.failed.is_empty());

    let records = rt.block_on(store.anchors(Some(&chain), None)).unwrap();
    assert!(records.iter().all(|r| r.status == AnchorStatus::Verified
        && r.lock_mode == Some(stele_anchor::LockMode::Compliance)));
    let landed = read_back(&rt, &s3, "production", &vkey);
    assert_eq!(landed.len(), 5);
    for ((k, anchor, bytes), record) in landed.iter().zip(&records) {
        assert_eq!(
            *k, record.object_key,
            "listing in key order gives anchor order"
        );
        assert_eq!(
            *bytes, record.body,
            "the bucket holds exactly the outbox bytes"
        );
        assert_eq!(anchor.anchor_seq, record.anchor_seq);
        let facts = rt.block_on(s3.head(k, None)).unwrap().unwrap();
        assert_eq!(facts.lock_mode, Some(LockMode::Compliance));
        let expected_until = anchor.time().unwrap() + time::Duration::days(400);
        assert_eq!(
            facts.retain_until.unwrap().unix_timestamp(),
            expected_until.unix_timestamp()
        );
    }
    let triggers: Vec<Trigger> = landed.iter().map(|(_, a, _)| a.trigger).collect();
    assert_eq!(
        triggers,
        [
            Trigger::Time,
            Trigger::Manual,
            Trigger::Volume,
            Trigger::Time,
            Trigger::KeyRotation
        ]
    );
    assert_eq!(landed[0].1.tree_size, 0);
    assert_eq!(landed[4].1.tree_size, 38);
    assert_eq!(landed[4].1.key_id, "k2");

    // The store refuses to delete an anchor version, and stele refuses to overwrite one.
    let (k, _, _) = &landed[2];
    let version = records[2].version_id.clone().unwrap();
    let err = rt
        .block_on(
            s3.client()
                .delete_object()
                .bucket(s3.bucket())
                .key(k)
                .version_id(&version)
                .send(),
        )
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"));
    let retention = stele_worm::Retention {
        mode: LockMode::Compliance,
        retain_until: now + time::Duration::days(400),
    };
    let err = rt
        .block_on(target.put_locked(k, b"{\"forged\":true}", retention))
        .unwrap_err();
    assert!(matches!(err, WormError::Conflict { .. }), "{err}");
    // Uploading again is idempotent: nothing pending, nothing duplicated.
    let mut anchorer = Anchorer::new(store.clone(), &signer, ring(), &policy).unwrap();
    assert!(
        rt.block_on(anchorer.upload_pending(&target))
            .unwrap()
            .uploaded
            .is_empty()
    );
    assert_eq!(
        rt.block_on(s3.list("anchors/production/")).unwrap().len(),
        5
    );
}

#[test]
fn ministack_checksum_is_the_sha256_of_the_anchor_and_sse_kms_applies() {
    stele_worm::live_or_skip!(Ministack);
    let rt = runtime();
    let bucket = unique_bucket("anchors-ms");
    let s3 = rt.block_on(create_bucket(ministack(&bucket), true));
    let kms_key = rt.block_on(create_ministack_kms_key());
    let target = ObjectStore::S3(
        rt.block_on(S3Worm::connect(S3Config {
            kms_key_id: Some(kms_key.clone()),
            ..ministack(&bucket)
        }))
        .unwrap(),
    );
    let db = TestDb::sqlite();
    let store = open(&rt, &db);
    let (signer, vkey) = signer();
    let policy = AnchorPolicy::default();
    let chain = ChainId::new("production").unwrap();
    let mut anchorer = Anchorer::new(store.clone(), &signer, ring(), &policy).unwrap();
    rt.block_on(store.append(&chain, events(7), &key("k1")))
        .unwrap();
    let record = rt
        .block_on(anchorer.build(&chain, Trigger::Manual, "k1", OffsetDateTime::now_utc()))
        .unwrap();
    let report = rt.block_on(anchorer.upload_pending(&target)).unwrap();
    assert_eq!(report.uploaded.len(), 1, "{:?}", report.failed);

    let got = rt
        .block_on(
            s3.client()
                .get_object()
                .bucket(&bucket)
                .key(&record.object_key)
                .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                .send(),
        )
        .unwrap();
    let checksum = got.checksum_sha256().expect("ChecksumSHA256").to_owned();
    assert_eq!(
        got.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms)
    );
    let reported = got.ssekms_key_id().unwrap_or_default().to_owned();
    assert!(
        reported == kms_key || reported.ends_with(&format!("/{kms_key}")),
        "{reported}"
    );
    let bytes = rt.block_on(got.body.collect()).unwrap().into_bytes();
    use base64::Engine as _;
    let raw = base64::prelude::BASE64_STANDARD.decode(checksum).unwrap();
    assert_eq!(hex::encode(raw), stele_worm::sha256_hex(&bytes));
    assert_eq!(bytes.as_ref(), record.body.as_slice());
    Anchor::from_bytes(&bytes).unwrap().verify(&vkey).unwrap();
}

#[test]
fn postgres_plain_sql_agrees_with_every_anchor() {
    stele_worm::live_or_skip!(Rgw, Postgres);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("anchors-pg")), true));
    let target = ObjectStore::S3(rt.block_on(S3Worm::connect(rgw(s3.bucket()))).unwrap());
    let db = TestDb::postgres();
    let store = open(&rt, &db);
    let (signer, vkey) = signer();
    let policy = AnchorPolicy::default();
    let chain = ChainId::new("production").unwrap();
    let mut anchorer = Anchorer::new(store.clone(), &signer, ring(), &policy).unwrap();
    for n in [5, 1, 17, 40] {
        rt.block_on(store.append(&chain, events(n), &key("k1")))
            .unwrap();
        rt.block_on(anchorer.build(&chain, Trigger::Volume, "k1", OffsetDateTime::now_utc()))
            .unwrap();
    }
    assert_eq!(
        rt.block_on(anchorer.upload_pending(&target))
            .unwrap()
            .uploaded
            .len(),
        4
    );
    for (_, anchor, _) in read_back(&rt, &s3, "production", &vkey) {
        let last_seq = anchor.last_seq.unwrap();
        let stored = db.query_text(&format!(
            "SELECT encode(event_hash,'hex') FROM audit_events WHERE chain_id = 'production' AND chain_index = {last_seq}"
        ));
        assert_eq!(stored, anchor.last_hash, "anchor {}", anchor.anchor_seq);
        assert!(
            anchor
                .db_snapshot_lsn
                .as_deref()
                .is_some_and(|l| l.contains('/')),
            "PostgreSQL anchors carry the WAL LSN"
        );
    }
}

#[test]
fn bad_settings_are_refused_with_nothing_half_written() {
    let rt = runtime();
    let db = TestDb::sqlite();
    let store = open(&rt, &db);
    let (signer, _) = signer();
    let chain = ChainId::new("production").unwrap();
    rt.block_on(store.append(&chain, events(3), &key("k1")))
        .unwrap();

    // Retention below the floor: refused before anything is built.
    let short = AnchorPolicy {
        retention_days: 30,
        ..AnchorPolicy::default()
    };
    let err = Anchorer::new(store.clone(), &signer, ring(), &short)
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            AnchorerError::Worm(WormError::RetentionBelowFloor {
                days: 30,
                floor: 365
            })
        ),
        "{err}"
    );
    assert!(rt.block_on(store.anchors(None, None)).unwrap().is_empty());

    // The cases below need a real bucket.
    stele_worm::live_or_skip!(Rgw);
    let policy = AnchorPolicy::default();
    let nolock = rt.block_on(create_bucket(rgw(&unique_bucket("anchors-nolock")), false));
    let locked = rt.block_on(create_bucket(rgw(&unique_bucket("anchors-bad")), true));
    type Expect = fn(&WormError) -> bool;
    let cases: Vec<(S3Config, Expect)> = vec![
        (rgw(nolock.bucket()), |e| {
            matches!(e, WormError::NoObjectLock { .. })
        }),
        (
            S3Config {
                static_credentials: Some((
                    env_required("STELE_TEST_RGW_ACCESS_KEY"),
                    "not-the-secret".into(),
                )),
                ..rgw(locked.bucket())
            },
            |e| matches!(e, WormError::BadCredentials { .. }),
        ),
        (
            S3Config {
                kms_key_id: Some("no-such-kms-key".into()),
                ..rgw(locked.bucket())
            },
            |e| matches!(e, WormError::KmsKey { .. }),
        ),
    ];
    let mut anchorer = Anchorer::new(store.clone(), &signer, ring(), &policy).unwrap();
    rt.block_on(anchorer.build(&chain, Trigger::Manual, "k1", OffsetDateTime::now_utc()))
        .unwrap();
    for (cfg, expected) in cases {
        let target = ObjectStore::S3(rt.block_on(S3Worm::connect(cfg)).unwrap());
        let report = rt.block_on(anchorer.upload_pending(&target)).unwrap();
        assert!(report.uploaded.is_empty());
        let (_, err) = &report.failed[0];
        assert!(expected(err), "{err}");
    }
    assert!(rt.block_on(nolock.list("")).unwrap().is_empty());
    assert!(
        rt.block_on(locked.list("")).unwrap().is_empty(),
        "nothing half-written"
    );
    let pending = rt
        .block_on(store.anchors(None, Some(AnchorStatus::Pending)))
        .unwrap();
    assert_eq!(pending.len(), 1, "the anchor waits in the outbox");
    assert_eq!(pending[0].attempts, 3);
    assert!(pending[0].last_error.as_deref().unwrap().contains("KMS"));
}

#[test]
fn anchors_built_during_an_outage_wait_and_land_in_order() {
    stele_worm::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("anchors-outage")), true));
    let proxy = FaultyProxy::start(&env_required("STELE_TEST_RGW_ENDPOINT"));
    let target = ObjectStore::S3(
        rt.block_on(S3Worm::connect(S3Config {
            endpoint: Some(proxy.endpoint()),
            ..rgw(s3.bucket())
        }))
        .unwrap(),
    );
    let db = TestDb::sqlite();
    let store = open(&rt, &db);
    let (signer, vkey) = signer();
    let policy = AnchorPolicy::default();
    let chain = ChainId::new("production").unwrap();
    let mut anchorer = Anchorer::new(store.clone(), &signer, ring(), &policy).unwrap();
    let append_and_build = |anchorer: &mut Anchorer<'_>| {
        rt.block_on(store.append(&chain, events(10), &key("k1")))
            .unwrap();
        rt.block_on(anchorer.build(&chain, Trigger::Volume, "k1", OffsetDateTime::now_utc()))
            .unwrap();
    };

    append_and_build(&mut anchorer);
    assert_eq!(
        rt.block_on(anchorer.upload_pending(&target))
            .unwrap()
            .uploaded
            .len(),
        1
    );

    proxy.set_down(true);
    for _ in 0..4 {
        append_and_build(&mut anchorer);
        let report = rt.block_on(anchorer.upload_pending(&target)).unwrap();
        assert!(report.uploaded.is_empty());
        assert!(report.failed[0].1.is_transient(), "{}", report.failed[0].1);
    }
    assert_eq!(
        rt.block_on(anchorer.store().anchors(None, Some(AnchorStatus::Pending)))
            .unwrap()
            .len(),
        4
    );

    proxy.set_down(false);
    let report = rt.block_on(anchorer.upload_pending(&target)).unwrap();
    assert_eq!(
        report
            .uploaded
            .iter()
            .map(|r| r.anchor_seq)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let landed = read_back(&rt, &s3, "production", &vkey);
    assert_eq!(
        landed
            .iter()
            .map(|(_, a, _)| a.anchor_seq)
            .collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(landed[4].1.tree_size, 50);
}
