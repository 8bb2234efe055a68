//! One chain's trouble is that chain's alone, and a long-running anchorer
//! keeps checking the bucket: on SQLite and Ceph RGW, a tampered outbox row
//! of one chain refuses that chain while another chain's anchors upload; an
//! anchor that a second copy of the ledger writes to the bucket while the
//! anchorer runs stops that chain's next upload; an anchor signed with
//! another (rotated) signing key is named as such, not as tampering; and an
//! anchorer running as a task beside appends signs only trees it checked
//! whole, each linking to the one before.

mod common;

use common::{blob, events, key, open, ring, runtime, signer};
use signed_note::StandardSigner;
use stele_anchor::AnchorStatus;
use stele_anchor::{Anchor, Trigger, check_link};
use stele_anchorer::{AnchorPolicy, Anchorer, AnchorerError, RefusedChain, Waiter, Wake};
use stele_ledger::ChainId;
use stele_store::Store;
use stele_store::testkit::TestDb;
use stele_worm::testkit::{create_bucket, rgw, unique_bucket};
use stele_worm::{ObjectStore, S3Worm};
use time::OffsetDateTime;

fn rgw_target(rt: &tokio::runtime::Runtime, name: &str) -> (S3Worm, ObjectStore) {
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket(name)), true));
    let target = ObjectStore::S3(rt.block_on(S3Worm::connect(rgw(s3.bucket()))).unwrap());
    (s3, target)
}

fn refused_chains(refused: &[RefusedChain]) -> Vec<&str> {
    refused.iter().map(|r| r.chain_id.as_str()).collect()
}

/// Alters the signed root in the body of `chain`'s anchor `seq`, as an
/// attacker with the database would.
fn alter_root(rt: &tokio::runtime::Runtime, store: &Store, db: &TestDb, chain: &str, seq: u64) {
    let record = rt
        .block_on(store.anchors(Some(&ChainId::new(chain).unwrap()), None))
        .unwrap()
        .into_iter()
        .find(|r| r.anchor_seq == seq)
        .unwrap();
    let body = String::from_utf8(record.body).unwrap();
    let root = Anchor::from_bytes(body.as_bytes()).unwrap().root_hash;
    let forged = body.replace(&root, &"ab".repeat(32));
    assert_ne!(forged, body);
    db.exec(&format!(
        "UPDATE stele_anchors SET body = {} WHERE chain_id = '{chain}' AND anchor_seq = {seq}",
        blob(db, forged.as_bytes())
    ));
}

#[test]
fn rgw_a_tampered_outbox_row_refuses_its_chain_only() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let (s3, target) = rgw_target(&rt, "refuse-one");
    let db = TestDb::sqlite();
    let store = open(&rt, &db);
    let signer = signer();
    let keys = ring();
    let policy = AnchorPolicy::default();
    let (alpha, beta) = (
        ChainId::new("alpha").unwrap(),
        ChainId::new("beta").unwrap(),
    );
    let now = OffsetDateTime::now_utc();
    {
        let mut anchorer = Anchorer::new(store.clone(), &signer, &keys, &policy).unwrap();
        for chain in [&alpha, &beta] {
            rt.block_on(store.append(chain, events(0, 4), &key()))
                .unwrap();
            rt.block_on(anchorer.build(chain, Trigger::Manual, "k1", now))
                .unwrap();
        }
    }
    // Both wait in the outbox; alpha's, listed first, is altered.
    alter_root(&rt, &store, &db, "alpha", 0);

    let mut anchorer = Anchorer::new(store.clone(), &signer, &keys, &policy).unwrap();
    let report = rt.block_on(anchorer.upload_pending(&target)).unwrap();
    assert_eq!(refused_chains(&report.refused), ["alpha"], "{report:?}");
    let err = &report.refused[0].error;
    assert!(
        matches!(err, AnchorerError::CorruptOutbox { anchor_seq: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("altered"), "{err}");
    assert_eq!(report.uploaded.len(), 1, "{report:?}");
    assert_eq!(report.uploaded[0].chain_id, "beta");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.still_pending, 1);
    assert!(rt.block_on(s3.list("anchors/alpha/")).unwrap().is_empty());
    assert_eq!(rt.block_on(s3.list("anchors/beta/")).unwrap().len(), 1);

    // A long run goes on with beta (and its shutdown anchor) and ends
    // reporting alpha's refusal once; alpha's anchor stays pending, unattempted.
    let mut rounds = Vec::new();
    let report = rt
        .block_on(anchorer.run(
            &target,
            Some(std::slice::from_ref(&beta)),
            &mut || Ok("k1".to_owned()),
            &mut |r| rounds.push(refused_chains(&r.refused).join(",")),
            std::future::ready(()),
        ))
        .unwrap();
    assert_eq!(
        rounds,
        ["alpha", ""],
        "refused in the first round, then left alone"
    );
    assert_eq!(refused_chains(&report.refused), ["alpha"]);
    assert_eq!(
        report.uploaded.len(),
        1,
        "beta's shutdown anchor: {report:?}"
    );
    assert_eq!(rt.block_on(s3.list("anchors/beta/")).unwrap().len(), 2);
    assert!(rt.block_on(s3.list("anchors/alpha/")).unwrap().is_empty());
    let alpha_rows = rt.block_on(store.anchors(Some(&alpha), None)).unwrap();
    assert_eq!(alpha_rows.len(), 1);
    assert_eq!(alpha_rows[0].status, AnchorStatus::Pending);
    assert_eq!(alpha_rows[0].attempts, 0, "a refused row is never tried");
}

/// A second copy of the ledger (same keys, its own database) writes an
/// anchor of the chain while the first anchorer runs: the first one's next
/// upload pass finds it and refuses the chain instead of forking the history.
#[test]
fn rgw_a_running_anchorer_notices_another_copy_writing_the_chain() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let (s3, target) = rgw_target(&rt, "second-copy");
    let signer = signer();
    let keys = ring();
    let policy = AnchorPolicy::default();
    let chain = ChainId::new("shared").unwrap();
    let now = OffsetDateTime::now_utc();

    let db = TestDb::sqlite();
    let store = open(&rt, &db);
    let mut anchorer = Anchorer::new(store.clone(), &signer, &keys, &policy).unwrap();
    rt.block_on(store.append(&chain, events(0, 5), &key()))
        .unwrap();
    rt.block_on(anchorer.build(&chain, Trigger::Manual, "k1", now))
        .unwrap();
    let report = rt.block_on(anchorer.upload_pending(&target)).unwrap();
    assert_eq!(report.uploaded.len(), 1, "{report:?}");
    rt.block_on(store.append(&chain, events(5, 5), &key()))
        .unwrap();
    rt.block_on(anchorer.build(
        &chain,
        Trigger::Time,
        "k1",
        now + time::Duration::minutes(2),
    ))
    .unwrap();

    // The other copy: same signing key, other events, its own anchor 0.
    let other_db = TestDb::sqlite();
    let other_store = open(&rt, &other_db);
    let mut other = Anchorer::new(other_store.clone(), &signer, &keys, &policy).unwrap();
    rt.block_on(other_store.append(&chain, events(100, 3), &key()))
        .unwrap();
    let theirs = rt
        .block_on(other.build(
            &chain,
            Trigger::Manual,
            "k1",
            now + time::Duration::minutes(1),
        ))
        .unwrap();
    let retention = stele_worm::Retention {
        mode: stele_worm::LockMode::Compliance,
        retain_until: now + time::Duration::days(1),
    };
    rt.block_on(target.put_locked(&theirs.object_key, &theirs.body, retention))
        .unwrap();

    let report = rt.block_on(anchorer.upload_pending(&target)).unwrap();
    assert!(report.uploaded.is_empty(), "{report:?}");
    assert_eq!(refused_chains(&report.refused), ["shared"], "{report:?}");
    assert!(
        matches!(
            &report.refused[0].error,
            AnchorerError::UnknownOwnAnchor { anchor_seq: 0, key, .. } if *key == theirs.object_key
        ),
        "{}",
        report.refused[0].error
    );
    let keys_there = rt.block_on(s3.list("anchors/shared/")).unwrap();
    assert_eq!(
        keys_there.len(),
        2,
        "ours #0 and theirs, nothing more: {keys_there:?}"
    );
    let pending = rt
        .block_on(store.anchors(Some(&chain), Some(AnchorStatus::Pending)))
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert!(
        pending[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("does not have")),
        "the row says why it waits: {:?}",
        pending[0].last_error
    );
}

/// The signing key was replaced since the last anchor was built: building
/// on it names both keys instead of calling the row tampered.
#[test]
fn an_anchor_signed_by_another_key_is_named_not_called_tampering() {
    let rt = runtime();
    let db = TestDb::sqlite();
    let store = open(&rt, &db);
    let old: StandardSigner = signer();
    let new: StandardSigner = signer();
    let keys = ring();
    let policy = AnchorPolicy::default();
    let chain = ChainId::new("payments").unwrap();
    let now = OffsetDateTime::now_utc();
    let mut anchorer = Anchorer::new(store.clone(), &old, &keys, &policy).unwrap();
    rt.block_on(store.append(&chain, events(0, 3), &key()))
        .unwrap();
    rt.block_on(anchorer.build(&chain, Trigger::Manual, "k1", now))
        .unwrap();
    drop(anchorer);

    let label = |s: &StandardSigner| {
        stele_ledger::checkpoint::key_label(
            signed_note::Signer::name(s),
            signed_note::Signer::key_id(s),
        )
    };
    let mut anchorer = Anchorer::new(store.clone(), &new, &keys, &policy).unwrap();
    let err = rt
        .block_on(anchorer.build(&chain, Trigger::Manual, "k1", now))
        .unwrap_err();
    match &err {
        AnchorerError::SignedByOtherKey {
            anchor_seq: 0,
            signed_with,
            signs_with,
            ..
        } => {
            assert_eq!(*signed_with, label(&old));
            assert_eq!(*signs_with, label(&new));
        }
        other => panic!("{other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("different key") && !text.contains("tampered"),
        "{text}"
    );
    assert!(!err.is_retryable());
    drop(anchorer);

    // Bytes really altered under the same key are still called that.
    alter_root(&rt, &store, &db, "payments", 0);
    let mut anchorer = Anchorer::new(store.clone(), &old, &keys, &policy).unwrap();
    let err = rt
        .block_on(anchorer.build(&chain, Trigger::Manual, "k1", now))
        .unwrap_err();
    assert!(
        matches!(err, AnchorerError::CorruptOutbox { anchor_seq: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("altered"), "{err}");
}

/// The verifier key given for the bucket check must be the signing key's.
#[test]
fn the_bucket_check_refuses_a_verifier_key_of_another_key_pair() {
    let rt = runtime();
    let db = TestDb::sqlite();
    let signer = signer();
    let (_, other_vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, "stele.test");
    let keys = ring();
    let policy = AnchorPolicy::default();
    let mut anchorer = Anchorer::new(open(&rt, &db), &signer, &keys, &policy).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = ObjectStore::Local(stele_worm::LocalDir::new(dir.path()));
    let chain = ChainId::new("payments").unwrap();
    let err = rt
        .block_on(anchorer.check_bucket_history(&target, &chain, &other_vkey))
        .unwrap_err();
    assert!(
        matches!(&err, AnchorerError::Config(m) if m.contains("not one key pair")),
        "{err}"
    );
}

/// Anchors `chain`'s head on every `true` received, stops on `false`.
struct Asks {
    inbox: tokio::sync::mpsc::UnboundedReceiver<bool>,
    chain: ChainId,
}

impl Waiter for Asks {
    async fn wait(&mut self, _: std::time::Duration) -> Wake {
        match self.inbox.recv().await {
            Some(true) => Wake::AnchorNow(vec![self.chain.clone()]),
            Some(false) | None => Wake::Stop,
        }
    }
}

/// As in a gateway: the anchorer runs as a task of the runtime, sharing the
/// store with appends that go on while it builds (asked for anchors on
/// demand, as for `?wait=anchored`). Every anchor it signs covers a tree it
/// checked whole from one snapshot — head, rows and proof agreeing — and
/// links to the one before, on every backend.
#[test]
fn an_anchorer_task_beside_appends_signs_only_whole_checked_trees() {
    for db in stele_store::testkit::every_backend("an_anchorer_task_beside_appends") {
        let rt = runtime();
        let store = open(&rt, &db);
        let chain = ChainId::new("payments").unwrap();
        let (signer, keys) = (std::sync::Arc::new(signer()), std::sync::Arc::new(ring()));
        let dir = tempfile::tempdir().unwrap();
        let target = ObjectStore::Local(stele_worm::LocalDir::new(dir.path()));
        let (asks, inbox) = tokio::sync::mpsc::unbounded_channel::<bool>();
        let anchoring = rt.spawn({
            let (store, chain) = (store.clone(), chain.clone());
            let (signer, keys) = (signer.clone(), keys.clone());
            async move {
                let policy = AnchorPolicy::default();
                let mut anchorer = Anchorer::new(store, &signer, &keys, &policy).unwrap();
                let chains = [chain.clone()];
                anchorer
                    .run_until(
                        &target,
                        Some(&chains),
                        &mut || Ok("k1".to_owned()),
                        &mut |report| assert!(report.refused.is_empty(), "{report:?}"),
                        &mut Asks { inbox, chain },
                    )
                    .await
            }
        });
        let appending = rt.spawn({
            let (store, chain) = (store.clone(), chain.clone());
            async move {
                for batch in 0..60 {
                    store
                        .append(&chain, events(batch * 7, 7), &key())
                        .await
                        .unwrap();
                    // An anchorer that stopped says why below.
                    if batch % 3 == 0 && asks.send(true).is_err() {
                        return;
                    }
                }
                let _ = asks.send(false);
            }
        });
        rt.block_on(appending).unwrap();
        let report = rt.block_on(anchoring).unwrap().unwrap();
        assert!(
            report.failed.is_empty() && report.refused.is_empty(),
            "{report:?}"
        );

        let records = rt.block_on(store.anchors(Some(&chain), None)).unwrap();
        assert!(records.len() > 2, "{records:?}");
        assert!(
            records.iter().all(|r| r.status == AnchorStatus::Uploaded),
            "{records:?}"
        );
        let last = records.last().unwrap();
        assert_eq!(
            last.tree_size, 420,
            "the shutdown anchor covers every event"
        );
        let mut prev: Option<(Anchor, &[u8])> = None;
        for r in &records {
            let anchor = Anchor::from_bytes(&r.body).unwrap();
            // The root and head it signed are the stored tree's and its last row's.
            let (_, root) = rt
                .block_on(store.tree_root(&chain, Some(anchor.tree_size)))
                .unwrap();
            assert_eq!(anchor.root_hash, stele_ledger::hex_hash(&root), "{r:?}");
            if anchor.tree_size > 0 {
                let last_event = rt
                    .block_on(store.event(&chain, anchor.tree_size - 1))
                    .unwrap();
                assert_eq!(
                    anchor.last_hash.as_deref(),
                    Some(last_event.event_hash.as_str())
                );
            }
            if let Some((prev, prev_bytes)) = &prev {
                check_link(prev, prev_bytes, &anchor).unwrap();
            }
            prev = Some((anchor, r.body.as_slice()));
        }
        drop(store);
    }
}
