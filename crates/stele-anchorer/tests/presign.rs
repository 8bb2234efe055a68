//! What the anchorer checks before it signs, attacked for real: an attacker
//! with database access and no keys rewrites an unanchored event (payload,
//! leaf hash and every stored Merkle node, `event_hash` left alone) on SQLite
//! and PostgreSQL; rewrites the anchored tree's stored nodes; edits an outbox
//! anchor; and squats the next anchor key in a Ceph RGW bucket.

mod common;

use common::{blob, events, key, open, ring, runtime, signer};
use stele_anchor::AnchorStatus;
use stele_anchor::{Anchor, Trigger, is_anchor_key, object_key};
use stele_anchorer::{AnchorPolicy, Anchorer, AnchorerError};
use stele_ledger::hashing::leaf_hash;
use stele_ledger::merkle::TreeAppender;
use stele_ledger::{ChainId, Event, Hash, HmacKey, KeyId, StoredEvent};
use stele_store::Store;
use stele_store::testkit::TestDb;
use stele_worm::testkit::{create_bucket, rgw, unique_bucket};
use stele_worm::{ObjectStore, S3Worm};
use time::OffsetDateTime;
use tokio::runtime::Runtime;

/// What an attacker with the database and no keys does to hide an edit of
/// `seq`: rewrite its payload, store the leaf hash of the new content, and
/// recompute every stored Merkle node from the leaves, leaving `event_hash`
/// (which needs the HMAC key) alone.
fn rewrite_event(
    rt: &Runtime,
    store: &Store,
    db: &TestDb,
    chain: &ChainId,
    seq: u64,
    payload: &str,
) {
    let mut rows: Vec<(Event, Vec<u8>)> = Vec::new();
    rt.block_on(async {
        let mut snapshot = store.read_snapshot().await?;
        snapshot
            .scan(chain, 0, None, &mut |e: StoredEvent<'_>, nodes: &[u8]| {
                rows.push((e.to_event(), nodes.to_vec()));
                Ok(())
            })
            .await?;
        snapshot.end().await
    })
    .unwrap();
    let mut sql = String::new();
    let mut tree = TreeAppender::empty();
    for (e, stored_nodes) in &mut rows {
        let mut leaf = Hash(hex::decode(&e.leaf_hash).unwrap().try_into().unwrap());
        if e.seq == seq {
            e.payload = Some(payload.to_owned());
            leaf = leaf_hash(
                &StoredEvent::from(&*e)
                    .committed_as_stored()
                    .canonical_bytes(),
            );
            sql.push_str(&format!(
                "UPDATE audit_events SET payload = '{payload}', leaf_hash = {} WHERE chain_id = '{chain}' AND chain_index = {seq};\n",
                blob(db, &leaf.0)
            ));
        }
        let nodes: Vec<u8> = tree.push(leaf).iter().flat_map(|h| h.0).collect();
        if nodes != *stored_nodes {
            sql.push_str(&format!(
                "UPDATE audit_events SET merkle_nodes = {} WHERE chain_id = '{chain}' AND chain_index = {};\n",
                blob(db, &nodes),
                e.seq
            ));
        }
    }
    db.exec(&sql);
    // The stored tree now serves the tampered root: proofs agree with the edit.
    let (_, root) = rt.block_on(store.tree_root(chain, None)).unwrap();
    assert_eq!(
        root,
        tree.root(),
        "the attack rewrote the stored tree consistently"
    );
}

fn outbox_len(rt: &Runtime, store: &Store, chain: &ChainId) -> usize {
    rt.block_on(store.anchors(Some(chain), None)).unwrap().len()
}

fn unanchored_edit_is_refused(db: &TestDb) {
    let rt = runtime();
    let store = open(&rt, db);
    let signer = signer();
    let keys = ring();
    let policy = AnchorPolicy::default();
    let chain = ChainId::new("payments").unwrap();
    let now = OffsetDateTime::now_utc();
    let mut anchorer = Anchorer::new(store.clone(), &signer, &keys, &policy).unwrap();
    rt.block_on(store.append(&chain, events(0, 10), &key()))
        .unwrap();
    rt.block_on(anchorer.build(&chain, Trigger::Manual, "k1", now))
        .unwrap();
    rt.block_on(store.append(&chain, events(10, 10), &key()))
        .unwrap();

    rewrite_event(
        &rt,
        &store,
        db,
        &chain,
        12,
        r#"{"amount":1000000,"to":"acct-666"}"#,
    );

    let err = rt
        .block_on(anchorer.build(&chain, Trigger::Manual, "k1", now))
        .expect_err("an anchor was signed over the tampered event");
    match &err {
        AnchorerError::UnanchoredTampering { seq, what, .. } => {
            assert_eq!(*seq, Some(12), "{err}");
            assert!(what.contains("HMAC link broken"), "{err}");
        }
        other => panic!("expected UnanchoredTampering, got {other}"),
    }
    assert!(err.to_string().contains("nothing was signed"), "{err}");
    assert_eq!(
        outbox_len(&rt, &store, &chain),
        1,
        "nothing stored in the outbox"
    );
}

#[test]
fn sqlite_unanchored_edit_is_not_signed() {
    unanchored_edit_is_refused(&TestDb::sqlite());
}

#[test]
fn postgres_unanchored_edit_is_not_signed() {
    stele_store::testkit::live_or_skip!(Postgres);
    unanchored_edit_is_refused(&TestDb::postgres());
}

/// Rewriting an already anchored event (and every stored node) changes the
/// stored frontier: the tree would no longer extend what was signed.
#[test]
fn rewritten_anchored_tree_is_not_extended() {
    for db in stele_store::testkit::every_backend("rewritten_anchored_tree_is_not_extended") {
        let rt = runtime();
        let store = open(&rt, &db);
        let signer = signer();
        let keys = ring();
        let policy = AnchorPolicy::default();
        let chain = ChainId::new("payments").unwrap();
        let now = OffsetDateTime::now_utc();
        let mut anchorer = Anchorer::new(store.clone(), &signer, &keys, &policy).unwrap();
        rt.block_on(store.append(&chain, events(0, 13), &key()))
            .unwrap();
        rt.block_on(anchorer.build(&chain, Trigger::Manual, "k1", now))
            .unwrap();
        rt.block_on(store.append(&chain, events(13, 4), &key()))
            .unwrap();
        rewrite_event(
            &rt,
            &store,
            &db,
            &chain,
            5,
            r#"{"amount":5,"to":"acct-666"}"#,
        );
        let err = rt
            .block_on(anchorer.build(&chain, Trigger::Manual, "k1", now))
            .unwrap_err();
        assert!(
            matches!(&err, AnchorerError::UnanchoredTampering { seq: None, what, .. }
                if what.contains("anchor 0 signed root")),
            "{err}"
        );
        assert_eq!(outbox_len(&rt, &store, &chain), 1);
    }
}

/// An event appended without the key (a forged row and head) is refused too.
#[test]
fn a_row_without_its_key_is_not_signed() {
    let rt = runtime();
    let db = TestDb::sqlite();
    let store = open(&rt, &db);
    let signer = signer();
    let policy = AnchorPolicy::default();
    let chain = ChainId::new("payments").unwrap();
    let attacker_key = HmacKey::new(KeyId::new("k1").unwrap(), &[9; 32]);
    rt.block_on(store.append(&chain, events(0, 3), &key()))
        .unwrap();
    rt.block_on(store.append(&chain, events(3, 1), &attacker_key))
        .unwrap();
    let keys = ring();
    let mut anchorer = Anchorer::new(store.clone(), &signer, &keys, &policy).unwrap();
    let err = rt
        .block_on(anchorer.build(&chain, Trigger::Manual, "k1", OffsetDateTime::now_utc()))
        .unwrap_err();
    assert!(
        matches!(err, AnchorerError::UnanchoredTampering { seq: Some(3), .. }),
        "{err}"
    );
}

/// An outbox anchor edited in the database (dated 9999) is refused by name,
/// never built upon, never uploaded, and nothing panics.
#[test]
fn edited_outbox_anchor_is_refused_not_built_upon() {
    for db in stele_store::testkit::every_backend("edited_outbox_anchor_is_refused_not_built_upon")
    {
        let rt = runtime();
        let store = open(&rt, &db);
        let signer = signer();
        let keys = ring();
        let policy = AnchorPolicy::default();
        let chain = ChainId::new("payments").unwrap();
        let now = OffsetDateTime::now_utc();
        let mut anchorer = Anchorer::new(store.clone(), &signer, &keys, &policy).unwrap();
        rt.block_on(store.append(&chain, events(0, 3), &key()))
            .unwrap();
        let record = rt
            .block_on(anchorer.build(&chain, Trigger::Manual, "k1", now))
            .unwrap();
        let body = String::from_utf8(record.body.clone()).unwrap();
        let forged = body.replace(&record.ts_utc, "9999-12-31T23:30:00Z");
        assert_ne!(forged, body);
        db.exec(&format!(
            "UPDATE stele_anchors SET body = {}, ts_utc = '9999-12-31T23:30:00Z' WHERE chain_id = 'payments' AND anchor_seq = 0",
            blob(&db, forged.as_bytes())
        ));
        let err = rt
            .block_on(anchorer.build(&chain, Trigger::Manual, "k1", now))
            .unwrap_err();
        assert!(
            matches!(err, AnchorerError::CorruptOutbox { anchor_seq: 0, .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("stele_anchors") && text.contains("tampered"),
            "{text}"
        );
        // The cadence refuses it too instead of computing with its date.
        assert!(matches!(
            rt.block_on(anchorer.due(std::slice::from_ref(&chain), "k1", now)),
            Err(AnchorerError::CorruptOutbox { .. })
        ));
        // And it is never uploaded.
        let dir = tempfile::tempdir().unwrap();
        let target = ObjectStore::Local(stele_worm::LocalDir::new(dir.path()));
        let report = rt.block_on(anchorer.upload_pending(&target)).unwrap();
        assert!(report.uploaded.is_empty() && report.failed.is_empty());
        assert_eq!(report.refused.len(), 1, "{report:?}");
        assert!(matches!(
            report.refused[0].error,
            AnchorerError::CorruptOutbox { anchor_seq: 0, .. }
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(outbox_len(&rt, &store, &chain), 1);
    }
}

/// An anchor we signed at a date near the end of the calendar: uploading it
/// cannot compute its retention and says so; later anchors are not built on
/// a future date. No panic anywhere.
#[test]
fn far_future_anchor_dates_are_errors_not_panics() {
    let rt = runtime();
    let db = TestDb::sqlite();
    let store = open(&rt, &db);
    let signer = signer();
    let keys = ring();
    let policy = AnchorPolicy::default();
    let chain = ChainId::new("payments").unwrap();
    let mut anchorer = Anchorer::new(store.clone(), &signer, &keys, &policy).unwrap();
    rt.block_on(store.append(&chain, events(0, 2), &key()))
        .unwrap();
    let far = time::macros::datetime!(9999-12-31 23:30:00 UTC);
    let record = rt
        .block_on(anchorer.build(&chain, Trigger::Manual, "k1", far))
        .unwrap();
    assert_eq!(record.ts_utc, "9999-12-31T23:30:00Z");
    let dir = tempfile::tempdir().unwrap();
    let target = ObjectStore::Local(stele_worm::LocalDir::new(dir.path()));
    let err = rt.block_on(anchorer.upload_pending(&target)).unwrap_err();
    assert!(
        matches!(&err, AnchorerError::Config(m) if m.contains("out of range")),
        "{err}"
    );
    let err = rt
        .block_on(anchorer.build(&chain, Trigger::Manual, "k1", OffsetDateTime::now_utc()))
        .unwrap_err();
    assert!(
        matches!(err, AnchorerError::AnchorInFuture { anchor_seq: 0, .. }),
        "{err}"
    );
}

/// Someone who may only PutObject pre-creates the next anchor's key on RGW
/// (once with other bytes of another size, once with the same size and no
/// checksum): each anchor lands at its alternate key, the squatter is
/// reported and recorded, and later anchors are not blocked.
#[test]
fn rgw_squatted_anchor_keys_do_not_block_the_chain() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("squat")), true));
    let target = ObjectStore::S3(rt.block_on(S3Worm::connect(rgw(s3.bucket()))).unwrap());
    let db = TestDb::sqlite();
    let store = open(&rt, &db);
    let signer = signer();
    let keys = ring();
    let policy = AnchorPolicy::default();
    let chain = ChainId::new("payments").unwrap();
    let mut anchorer = Anchorer::new(store.clone(), &signer, &keys, &policy).unwrap();
    rt.block_on(store.append(&chain, events(0, 3), &key()))
        .unwrap();

    let squat = |key: &str, bytes: Vec<u8>| {
        rt.block_on(
            s3.client()
                .put_object()
                .bucket(s3.bucket())
                .key(key)
                .body(bytes.into())
                .send(),
        )
        .unwrap();
    };
    let now = OffsetDateTime::now_utc();
    let first = rt
        .block_on(anchorer.build(&chain, Trigger::Manual, "k1", now))
        .unwrap();
    squat(&first.object_key, b"{\"squatted\":true}".to_vec());
    let report = rt.block_on(anchorer.upload_pending(&target)).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.uploaded.len(), 1);
    assert_eq!(report.squatted.len(), 1);
    let moved = &report.squatted[0];
    assert_eq!(moved.key, first.object_key);
    assert_ne!(moved.moved_to, first.object_key);
    assert_eq!(report.uploaded[0].object_key, moved.moved_to);

    // The same size as the real anchor, no checksum: found by its bytes.
    rt.block_on(store.append(&chain, events(3, 2), &key()))
        .unwrap();
    let second = rt
        .block_on(anchorer.build(&chain, Trigger::Manual, "k1", now))
        .unwrap();
    squat(&second.object_key, vec![b' '; second.body.len()]);
    let report = rt.block_on(anchorer.upload_pending(&target)).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.squatted.len(), 1, "{report:?}");

    // Not blocked: the next anchor lands at its own key.
    rt.block_on(store.append(&chain, events(5, 1), &key()))
        .unwrap();
    let third = rt
        .block_on(anchorer.build(&chain, Trigger::Manual, "k1", now))
        .unwrap();
    let report = rt.block_on(anchorer.upload_pending(&target)).unwrap();
    assert!(report.squatted.is_empty() && report.failed.is_empty());
    assert_eq!(report.uploaded[0].object_key, third.object_key);

    // The outbox records where each anchor is, and that its key was taken.
    let records = rt.block_on(store.anchors(Some(&chain), None)).unwrap();
    assert!(records.iter().all(|r| r.status == AnchorStatus::Verified));
    for (r, intended) in records.iter().zip([&first, &second]) {
        assert_eq!(
            stele_anchor::relocated_from(&r.object_key, &r.body).as_deref(),
            Some(intended.object_key.as_str())
        );
    }
    // In the bucket: our bytes at the alternate keys, in anchor order, each
    // key one a reader can check against the bytes it holds.
    let listed = rt.block_on(s3.list("anchors/payments/")).unwrap();
    let ours: Vec<&String> = listed
        .iter()
        .filter(|k| records.iter().any(|r| &r.object_key == *k))
        .collect();
    assert_eq!(
        ours,
        records.iter().map(|r| &r.object_key).collect::<Vec<_>>(),
        "key order is anchor order: {listed:?}"
    );
    for r in &records {
        let bytes = rt.block_on(s3.get(&r.object_key)).unwrap();
        assert_eq!(bytes, r.body);
        let a = Anchor::from_bytes(&bytes).unwrap();
        assert!(
            is_anchor_key(
                None,
                &chain,
                a.time().unwrap(),
                a.anchor_seq,
                &r.object_key,
                &bytes
            )
            .unwrap()
        );
        assert_eq!(
            object_key(None, &chain, a.time().unwrap(), a.anchor_seq).unwrap() == r.object_key,
            a.anchor_seq == 2
        );
    }
}
