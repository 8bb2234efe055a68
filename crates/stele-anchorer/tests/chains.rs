//! One chain's trouble is that chain's alone, and a long-running anchorer
//! keeps checking the bucket: on SQLite and Ceph RGW, a tampered outbox row
//! of one chain refuses that chain while another chain's anchors upload; an
//! anchor that a second copy of the ledger writes to the bucket while the
//! anchorer runs stops that chain's next upload; an anchor signed with
//! another (rotated) signing key is named as such, not as tampering; and a
//! build asks storage for the new tree's root at most once.

mod common;

use common::{blob, events, key, ring, runtime, signer};
use signed_note::StandardSigner;
use stele_anchor::Trigger;
use stele_anchorer::{AnchorPolicy, Anchorer, AnchorerError, RefusedChain};
use stele_ledger::append::Receipt;
use stele_ledger::{ChainId, Hash};
use stele_store::testkit::TestDb;
use stele_store::{
    AnchorRecord, AnchorStatus, AnchorUpload, ChainHead, LedgerStore, RowVisitor, StoreError,
    StoredRowVisitor,
};
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
fn alter_root(db: &TestDb, chain: &str, seq: u64) {
    let record = db
        .open()
        .anchors(Some(&ChainId::new(chain).unwrap()), None)
        .unwrap()
        .into_iter()
        .find(|r| r.anchor_seq == seq)
        .unwrap();
    let body = String::from_utf8(record.body).unwrap();
    let root = stele_anchor::Anchor::from_bytes(body.as_bytes())
        .unwrap()
        .root_hash;
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
    let signer = signer();
    let keys = ring();
    let policy = AnchorPolicy::default();
    let (alpha, beta) = (
        ChainId::new("alpha").unwrap(),
        ChainId::new("beta").unwrap(),
    );
    let now = OffsetDateTime::now_utc();
    {
        let mut store = db.open();
        let mut anchorer = Anchorer::new(store.as_mut(), &signer, &keys, &policy).unwrap();
        for chain in [&alpha, &beta] {
            anchorer
                .store()
                .append(chain, events(0, 4), &key())
                .unwrap();
            anchorer.build(chain, Trigger::Manual, "k1", now).unwrap();
        }
    }
    // Both wait in the outbox; alpha's, listed first, is altered.
    alter_root(&db, "alpha", 0);

    let mut store = db.open();
    let mut anchorer = Anchorer::new(store.as_mut(), &signer, &keys, &policy).unwrap();
    let report = anchorer.upload_pending(&target, rt.handle()).unwrap();
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
    let report = anchorer
        .run(
            &target,
            rt.handle(),
            Some(std::slice::from_ref(&beta)),
            &mut || Ok("k1".to_owned()),
            &mut |r| rounds.push(refused_chains(&r.refused).join(",")),
            &mut |_| true,
        )
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
    let alpha_rows = store.anchors(Some(&alpha), None).unwrap();
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
    let mut store = db.open();
    let mut anchorer = Anchorer::new(store.as_mut(), &signer, &keys, &policy).unwrap();
    anchorer
        .store()
        .append(&chain, events(0, 5), &key())
        .unwrap();
    anchorer.build(&chain, Trigger::Manual, "k1", now).unwrap();
    let report = anchorer.upload_pending(&target, rt.handle()).unwrap();
    assert_eq!(report.uploaded.len(), 1, "{report:?}");
    anchorer
        .store()
        .append(&chain, events(5, 5), &key())
        .unwrap();
    anchorer
        .build(
            &chain,
            Trigger::Time,
            "k1",
            now + time::Duration::minutes(2),
        )
        .unwrap();

    // The other copy: same signing key, other events, its own anchor 0.
    let other_db = TestDb::sqlite();
    let mut other_store = other_db.open();
    let mut other = Anchorer::new(other_store.as_mut(), &signer, &keys, &policy).unwrap();
    other
        .store()
        .append(&chain, events(100, 3), &key())
        .unwrap();
    let theirs = other
        .build(
            &chain,
            Trigger::Manual,
            "k1",
            now + time::Duration::minutes(1),
        )
        .unwrap();
    let retention = stele_worm::Retention {
        mode: stele_worm::LockMode::Compliance,
        retain_until: now + time::Duration::days(1),
    };
    rt.block_on(target.put_locked(&theirs.object_key, &theirs.body, retention))
        .unwrap();

    let report = anchorer.upload_pending(&target, rt.handle()).unwrap();
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
    let pending = store
        .anchors(Some(&chain), Some(AnchorStatus::Pending))
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
    let db = TestDb::sqlite();
    let old: StandardSigner = signer();
    let new: StandardSigner = signer();
    let keys = ring();
    let policy = AnchorPolicy::default();
    let chain = ChainId::new("payments").unwrap();
    let now = OffsetDateTime::now_utc();
    let mut store = db.open();
    let mut anchorer = Anchorer::new(store.as_mut(), &old, &keys, &policy).unwrap();
    anchorer
        .store()
        .append(&chain, events(0, 3), &key())
        .unwrap();
    anchorer.build(&chain, Trigger::Manual, "k1", now).unwrap();
    drop(anchorer);

    let label = |s: &StandardSigner| {
        stele_ledger::checkpoint::key_label(
            signed_note::Signer::name(s),
            signed_note::Signer::key_id(s),
        )
    };
    let mut anchorer = Anchorer::new(store.as_mut(), &new, &keys, &policy).unwrap();
    let err = anchorer
        .build(&chain, Trigger::Manual, "k1", now)
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
    alter_root(&db, "payments", 0);
    let mut store = db.open();
    let mut anchorer = Anchorer::new(store.as_mut(), &old, &keys, &policy).unwrap();
    let err = anchorer
        .build(&chain, Trigger::Manual, "k1", now)
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
    let db = TestDb::sqlite();
    let signer = signer();
    let (_, other_vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, "stele.test");
    let keys = ring();
    let policy = AnchorPolicy::default();
    let mut store = db.open();
    let mut anchorer = Anchorer::new(store.as_mut(), &signer, &keys, &policy).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = ObjectStore::Local(stele_worm::LocalDir::new(dir.path()));
    let rt = runtime();
    let chain = ChainId::new("payments").unwrap();
    let err = anchorer
        .check_bucket_history(&target, rt.handle(), &chain, &other_vkey)
        .unwrap_err();
    assert!(
        matches!(&err, AnchorerError::Config(m) if m.contains("not one key pair")),
        "{err}"
    );
}

/// Counts how often storage is asked for the frontier of one tree size:
/// exactly what computing that tree's root from storage reads.
struct CountingStore<'a> {
    inner: &'a mut dyn LedgerStore,
    frontier: Vec<u64>,
    frontier_reads: usize,
}

impl LedgerStore for CountingStore<'_> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn append(
        &mut self,
        chain: &ChainId,
        events: Vec<stele_ledger::event::ValidEvent>,
        key: &stele_ledger::HmacKey,
    ) -> Result<Vec<Receipt>, StoreError> {
        self.inner.append(chain, events, key)
    }
    fn chains(&mut self) -> Result<Vec<ChainHead>, StoreError> {
        self.inner.chains()
    }
    fn head(&mut self, chain: &ChainId) -> Result<Option<ChainHead>, StoreError> {
        self.inner.head(chain)
    }
    fn scan_stored(
        &mut self,
        chain: &ChainId,
        from: u64,
        to: Option<u64>,
        visit: &mut StoredRowVisitor<'_>,
    ) -> Result<(), StoreError> {
        self.inner.scan_stored(chain, from, to, visit)
    }
    fn scan_rows(
        &mut self,
        chain: &ChainId,
        from: u64,
        to: Option<u64>,
        visit: &mut RowVisitor<'_>,
    ) -> Result<(), StoreError> {
        self.inner.scan_rows(chain, from, to, visit)
    }
    fn read_hashes(&mut self, chain: &ChainId, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        if indexes == self.frontier.as_slice() {
            self.frontier_reads += 1;
        }
        self.inner.read_hashes(chain, indexes)
    }
    fn begin_read_snapshot(&mut self) -> Result<bool, StoreError> {
        self.inner.begin_read_snapshot()
    }
    fn end_read_snapshot(&mut self) -> Result<(), StoreError> {
        self.inner.end_read_snapshot()
    }
    fn head_with_lsn(
        &mut self,
        chain: &ChainId,
    ) -> Result<(Option<ChainHead>, Option<String>), StoreError> {
        self.inner.head_with_lsn(chain)
    }
    fn insert_anchor(&mut self, anchor: &AnchorRecord) -> Result<(), StoreError> {
        self.inner.insert_anchor(anchor)
    }
    fn anchors(
        &mut self,
        chain: Option<&ChainId>,
        status: Option<AnchorStatus>,
    ) -> Result<Vec<AnchorRecord>, StoreError> {
        self.inner.anchors(chain, status)
    }
    fn last_anchor(&mut self, chain: &ChainId) -> Result<Option<AnchorRecord>, StoreError> {
        self.inner.last_anchor(chain)
    }
    fn lease_anchor(
        &mut self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.inner.lease_anchor(chain, anchor_seq, owner, ttl)
    }
    fn mark_anchor_uploaded(
        &mut self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        upload: &AnchorUpload,
    ) -> Result<bool, StoreError> {
        self.inner
            .mark_anchor_uploaded(chain, anchor_seq, owner, upload)
    }
    fn record_anchor_failure(
        &mut self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.inner
            .record_anchor_failure(chain, anchor_seq, owner, error)
    }
    fn durability(&mut self) -> Result<Vec<(&'static str, String)>, StoreError> {
        self.inner.durability()
    }
    fn set_anchor_object_key(
        &mut self,
        chain: &ChainId,
        anchor_seq: u64,
        owner: &str,
        object_key: &str,
        note: &str,
    ) -> Result<bool, StoreError> {
        self.inner
            .set_anchor_object_key(chain, anchor_seq, owner, object_key, note)
    }
}

#[test]
fn a_build_asks_storage_for_the_new_root_at_most_once() {
    let db = TestDb::sqlite();
    let signer = signer();
    let keys = ring();
    let policy = AnchorPolicy::default();
    let chain = ChainId::new("payments").unwrap();
    let now = OffsetDateTime::now_utc();
    let mut inner = db.open();
    inner.append(&chain, events(0, 10), &key()).unwrap();
    let mut store = CountingStore {
        inner: inner.as_mut(),
        frontier: stele_ledger::merkle::frontier_indexes(10),
        frontier_reads: 0,
    };
    {
        let mut anchorer = Anchorer::new(&mut store, &signer, &keys, &policy).unwrap();
        anchorer.build(&chain, Trigger::Manual, "k1", now).unwrap();
    }
    // The first anchor has no proof to read: the root comes from the events alone.
    assert_eq!(store.frontier_reads, 0, "first anchor");
    store.append(&chain, events(10, 7), &key()).unwrap();
    store.frontier = stele_ledger::merkle::frontier_indexes(17);
    store.frontier_reads = 0;
    {
        let mut anchorer = Anchorer::new(&mut store, &signer, &keys, &policy).unwrap();
        anchorer.build(&chain, Trigger::Manual, "k1", now).unwrap();
    }
    // Once, inside the consistency proof read; the anchorer adds no read of its own.
    assert_eq!(store.frontier_reads, 1, "second anchor");
}
