//! The ledger suite: every case runs against embedded SQLite and the real
//! PostgreSQL (STELE_TEST_PG_URL; scripts/test.sh provides it).

#[macro_use]
mod common;

use common::{Db, event, keyed, keyring, rfc6962, rotated_keyring, verify};
use stele_ledger::verify::Finding;
use stele_ledger::{ChainId, Hash, merkle};
use stele_store::{Store, StoreError, StoreOptions};

fn chain(name: &str) -> ChainId {
    ChainId::new(name).unwrap()
}

on_every_backend_async!(
    appends_read_back_and_verify_clean,
    roots_and_proofs_match_an_independent_rfc6962,
    idempotency_keys_make_retries_safe,
    a_failed_batch_writes_nothing,
    edited_payload_is_named,
    deleted_row_is_named,
    swapped_rows_are_named,
    rewritten_event_hash_is_named,
    truncated_tail_is_named,
    tampered_merkle_hash_is_found,
    chains_are_independent_and_unknown_chains_are_refused,
    key_rotation_keeps_old_events_verifiable,
    concurrent_writers_produce_one_gap_free_chain,
    reopening_is_idempotent_and_newer_schemas_are_refused,
    auditor_sql_returns_the_event_hash,
    anchor_outbox_keeps_bytes_order_and_status,
    durability_settings_are_pinned_on_the_writer_connection,
    another_spelling_of_a_stored_number_is_named,
    a_row_moved_to_another_chain_is_named_missing,
);

/// Each edit canonicalizes to the committed bytes (the same IEEE double), so
/// only the byte-identity check can see it.
async fn another_spelling_of_a_stored_number_is_named(db: &Db) {
    use stele_ledger::event::{EventInput, Limits};
    let keys = keyring();
    let store = db.open().await;
    let c = chain("numbers");
    let spellings = [
        ("9007199254740992", "9007199254740993"),
        ("1e+21", "1000000000000000000001"),
        ("0.1", "0.10000000000000001"),
        ("0", "-0.0"),
        ("1", "1.0"),
    ];
    let events = spellings
        .iter()
        .map(|(committed, _)| {
            EventInput::from_json(&format!(r#"{{"type":"n","payload":{{"n":{committed}}}}}"#))
                .and_then(|e| e.validate(&Limits::default()))
                .unwrap()
        })
        .collect();
    store.append(&c, events, keys.active()).await.unwrap();
    assert!(verify(&store, &c, Some(&keys)).await.unwrap().is_clean());
    for (seq, (committed, respelled)) in spellings.iter().enumerate() {
        let row = format!("chain_id = 'numbers' AND chain_index = {seq}");
        db.exec(&format!(
            r#"UPDATE audit_events SET payload = '{{"n":{respelled}}}' WHERE {row}"#
        ));
        let r = verify(&store, &c, Some(&keys)).await.unwrap();
        assert_eq!(
            r.first_bad_seq,
            Some(seq as u64),
            "{respelled}: {:?}",
            r.findings
        );
        assert!(
            matches!(&r.findings[..], [Finding::NotCanonical { seq: s, what }] if *s == seq as u64 && what.contains(respelled)),
            "{respelled}: {:?}",
            r.findings
        );
        db.exec(&format!(
            r#"UPDATE audit_events SET payload = '{{"n":{committed}}}' WHERE {row}"#
        ));
    }
}

/// An append is acknowledged after its commit; these settings make that
/// commit reach the disk. Read back on the store's own connection (a kill -9
/// test cannot tell: the page cache survives a killed process).
async fn durability_settings_are_pinned_on_the_writer_connection(db: &Db) {
    let keys = keyring();
    let store = db.open().await;
    store
        .append(&chain("durable"), vec![event(0)], keys.active())
        .await
        .unwrap();
    let settings = store.durability();
    let expected: &[(&str, &str)] = match store.backend() {
        "sqlite" => &[("journal_mode", "wal"), ("synchronous", "full")],
        _ => &[("synchronous_commit", "on"), ("fsync", "on")],
    };
    let found: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(found, expected);
}

async fn appends_read_back_and_verify_clean(db: &Db) {
    let keys = keyring();
    let store = db.open().await;
    let c = chain("production");
    let receipts = store
        .append(&c, (0..250).map(event).collect(), keys.active())
        .await
        .unwrap();
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (0..250).collect::<Vec<_>>()
    );
    let more = store
        .append(&c, vec![event(250)], keys.active())
        .await
        .unwrap();
    assert_eq!(more[0].seq, 250);
    assert!(receipts[0].ts <= more[0].ts);

    let head = store.head(&c).await.unwrap().unwrap();
    assert_eq!(head.size, 251);
    assert_eq!(stele_ledger::hex_hash(&head.head_hash), more[0].event_hash);

    let seen = store.events(&c, 10, 3).await.unwrap();
    assert_eq!(seen.iter().map(|e| e.seq).collect::<Vec<_>>(), [10, 11, 12]);
    assert_eq!(seen[0].event_hash, receipts[10].event_hash);
    assert_eq!(seen[0].actor.as_deref(), Some("user10@example.com"));

    let report = verify(&store, &c, Some(&keys)).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(report.events_checked, 251);
    let (_, root) = store.tree_root(&c, None).await.unwrap();
    assert_eq!(report.root_hash, stele_ledger::hex_hash(&root));
}

async fn roots_and_proofs_match_an_independent_rfc6962(db: &Db) {
    let keys = keyring();
    let store = db.open().await;
    let c = chain("proofs");
    // Uneven batches so frontiers are resumed at many different tree shapes.
    let mut n = 0;
    for batch in [1usize, 2, 3, 5, 8, 13, 21, 1, 1, 34, 7] {
        store
            .append(&c, (n..n + batch).map(event).collect(), keys.active())
            .await
            .unwrap();
        n += batch;
    }
    let mut leaves = Vec::new();
    let mut snapshot = store.read_snapshot().await.unwrap();
    snapshot
        .scan(&c, 0, None, &mut |e, _| {
            leaves.push(e.leaf_hash.parse().expect("a 32-byte leaf hash").0);
            Ok(())
        })
        .await
        .unwrap();
    snapshot.end().await.unwrap();
    assert_eq!(leaves.len(), n);

    for size in 1..=n {
        let (_, root) = store.tree_root(&c, Some(size as u64)).await.unwrap();
        assert_eq!(root.0, rfc6962::mth(&leaves[..size]), "root at size {size}");
    }
    for size in [1usize, 2, 7, 8, 9, 31, 64, n] {
        for seq in (0..size).step_by(3) {
            let (_, root, proof) = store
                .inclusion_proof(&c, seq as u64, Some(size as u64))
                .await
                .unwrap();
            let expected: Vec<[u8; 32]> = rfc6962::path(seq, &leaves[..size]);
            assert_eq!(
                proof.iter().map(|h| h.0).collect::<Vec<_>>(),
                expected,
                "path {seq} in {size}"
            );
            merkle::verify_inclusion(&proof, size as u64, root, seq as u64, Hash(leaves[seq]))
                .unwrap();
        }
        for from in 0..=size {
            let (from_root, to_root, proof) = store
                .consistency_proof(&c, from as u64, size as u64)
                .await
                .unwrap();
            let expected = rfc6962::consistency(from, &leaves[..size]);
            assert_eq!(
                proof.iter().map(|h| h.0).collect::<Vec<_>>(),
                expected,
                "consistency {from}->{size}"
            );
            merkle::verify_consistency(&proof, from as u64, from_root, size as u64, to_root)
                .unwrap();
        }
    }
    assert!(matches!(
        store.inclusion_proof(&c, n as u64, None).await,
        Err(StoreError::OutOfRange(_))
    ));
    assert!(matches!(
        store.consistency_proof(&c, 5, 4).await,
        Err(StoreError::OutOfRange(_))
    ));
    assert!(matches!(
        store.tree_root(&c, Some(n as u64 + 1)).await,
        Err(StoreError::OutOfRange(_))
    ));
}

async fn idempotency_keys_make_retries_safe(db: &Db) {
    let keys = keyring();
    let store = db.open().await;
    let c = chain("idem");
    let first = store
        .append(&c, vec![keyed(0, "req-1"), event(1)], keys.active())
        .await
        .unwrap();
    // A retry of the same request, plus a new event, in one batch.
    let retry = store
        .append(
            &c,
            vec![keyed(0, "req-1"), keyed(2, "req-2"), keyed(2, "req-2")],
            keys.active(),
        )
        .await
        .unwrap();
    assert_eq!(retry[0].seq, first[0].seq);
    assert_eq!(retry[0].event_hash, first[0].event_hash);
    assert!(retry[0].duplicate && !first[0].duplicate);
    assert_eq!(retry[1].seq, 2);
    assert_eq!(
        (retry[2].seq, retry[2].duplicate),
        (2, true),
        "a key repeated within a batch appends once"
    );
    assert_eq!(store.head(&c).await.unwrap().unwrap().size, 3);
    // Repeats skipped mid-batch, new events after them: each stored event
    // was hashed from its own bytes (the verifier recomputes every leaf).
    store
        .append(
            &c,
            vec![
                event(3),
                keyed(0, "req-1"),
                event(4),
                keyed(2, "req-2"),
                event(5),
            ],
            keys.active(),
        )
        .await
        .unwrap();
    assert_eq!(store.head(&c).await.unwrap().unwrap().size, 6);
    assert!(verify(&store, &c, Some(&keys)).await.unwrap().is_clean());

    // Same key, different content: refused, and nothing else in the batch lands.
    let err = store
        .append(&c, vec![event(3), keyed(9, "req-1")], keys.active())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IdempotencyConflict { seq: 0, .. }),
        "{err}"
    );
    assert_eq!(store.head(&c).await.unwrap().unwrap().size, 6);
}

async fn a_failed_batch_writes_nothing(db: &Db) {
    let keys = keyring();
    let store = db.open().await;
    let c = chain("atomic");
    store
        .append(&c, (0..10).map(event).collect(), keys.active())
        .await
        .unwrap();
    let before = store.head(&c).await.unwrap().unwrap();
    let batch: Vec<_> = (10..500).map(event).chain([keyed(1, "x")]).collect();
    store
        .append(&c, vec![keyed(2, "x")], keys.active())
        .await
        .unwrap();
    let before_size = before.size + 1;
    assert!(store.append(&c, batch, keys.active()).await.is_err());
    let after = store.head(&c).await.unwrap().unwrap();
    assert_eq!(after.size, before_size);
    let count = db
        .query_text("SELECT CAST(COUNT(*) AS TEXT) FROM audit_events WHERE chain_id = 'atomic'")
        .unwrap();
    assert_eq!(count, before_size.to_string());
    assert!(verify(&store, &c, Some(&keys)).await.unwrap().is_clean());
}

async fn tampered(
    db: &Db,
    chain_name: &str,
    n: usize,
    sql: &str,
) -> stele_ledger::verify::VerifyReport {
    let keys = keyring();
    let store = db.open().await;
    let c = chain(chain_name);
    store
        .append(&c, (0..n).map(event).collect(), keys.active())
        .await
        .unwrap();
    assert!(verify(&store, &c, Some(&keys)).await.unwrap().is_clean());
    db.exec(sql);
    verify(&store, &c, Some(&keys)).await.unwrap()
}

async fn edited_payload_is_named(db: &Db) {
    let r = tampered(
        db,
        "t",
        100,
        "UPDATE audit_events SET payload = '{\"i\":41,\"ip\":\"10.0.41.7\",\"ok\":true}' WHERE chain_index = 41",
    ).await;
    assert_eq!(r.first_bad_seq, Some(41), "{:?}", r.findings);
    assert!(
        matches!(r.findings[0], Finding::ContentAltered { seq: 41, .. }),
        "{:?}",
        r.findings
    );
}

async fn deleted_row_is_named(db: &Db) {
    let r = tampered(
        db,
        "t",
        100,
        "DELETE FROM audit_events WHERE chain_index = 57",
    )
    .await;
    assert_eq!(r.first_bad_seq, Some(57), "{:?}", r.findings);
    assert_eq!(
        r.findings[0],
        Finding::MissingEvents {
            first: 57,
            last: 57
        }
    );
}

async fn swapped_rows_are_named(db: &Db) {
    let r = tampered(
        db,
        "t",
        100,
        "UPDATE audit_events SET chain_index = -1 WHERE chain_index = 20;
         UPDATE audit_events SET chain_index = 20 WHERE chain_index = 21;
         UPDATE audit_events SET chain_index = 21 WHERE chain_index = -1;",
    )
    .await;
    assert_eq!(r.first_bad_seq, Some(20), "{:?}", r.findings);
    assert!(
        r.findings
            .iter()
            .any(|f| matches!(f, Finding::ContentAltered { seq: 21, .. }))
    );
}

async fn rewritten_event_hash_is_named(db: &Db) {
    let sql = match db.location {
        stele_store::DbLocation::Sqlite(_) => {
            "UPDATE audit_events SET event_hash = zeroblob(32) WHERE chain_index = 73"
        }
        stele_store::DbLocation::Postgres(_) => {
            "UPDATE audit_events SET event_hash = decode(repeat('00', 32), 'hex') WHERE chain_index = 73"
        }
    };
    let r = tampered(db, "t", 100, sql).await;
    assert_eq!(r.first_bad_seq, Some(73), "{:?}", r.findings);
    assert!(
        matches!(r.findings[0], Finding::ChainLinkBroken { seq: 73, .. }),
        "{:?}",
        r.findings
    );
}

async fn truncated_tail_is_named(db: &Db) {
    let r = tampered(
        db,
        "t",
        100,
        "DELETE FROM audit_events WHERE chain_index >= 95",
    )
    .await;
    assert_eq!(r.first_bad_seq, Some(95), "{:?}", r.findings);
    assert!(r.findings.contains(&Finding::TailMissing {
        head_size: 100,
        found: 95
    }));
}

async fn tampered_merkle_hash_is_found(db: &Db) {
    let sql = match db.location {
        stele_store::DbLocation::Sqlite(_) => {
            "UPDATE audit_events SET merkle_nodes = zeroblob(32) WHERE chain_index = 1"
        }
        stele_store::DbLocation::Postgres(_) => {
            "UPDATE audit_events SET merkle_nodes = decode(repeat('00', 32), 'hex') WHERE chain_index = 1"
        }
    };
    let r = tampered(db, "t", 100, sql).await;
    // Seq 1 completes the node over leaves 0-1: not on the root's path at size
    // 100, but every proof for seqs 2 and 3 uses it.
    assert_eq!(r.findings, [Finding::MerkleNodesMismatch { seq: 1 }]);
}

async fn chains_are_independent_and_unknown_chains_are_refused(db: &Db) {
    let keys = keyring();
    let store = db.open().await;
    store
        .append(&chain("a"), (0..5).map(event).collect(), keys.active())
        .await
        .unwrap();
    store
        .append(&chain("b"), (0..3).map(event).collect(), keys.active())
        .await
        .unwrap();
    let heads = store.chains().await.unwrap();
    assert_eq!(
        heads
            .iter()
            .map(|h| (h.chain_id.as_str(), h.size))
            .collect::<Vec<_>>(),
        [("a", 5), ("b", 3)]
    );
    let err = verify(&store, &chain("nope"), Some(&keys))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::UnknownChain(ref c) if c == "nope"),
        "{err}"
    );
    assert!(matches!(
        store.tree_root(&chain("nope"), None).await,
        Err(StoreError::UnknownChain(_))
    ));
    assert!(store.head(&chain("nope")).await.unwrap().is_none());
}

async fn key_rotation_keeps_old_events_verifiable(db: &Db) {
    let store = db.open().await;
    let c = chain("rot");
    let before = store
        .append(&c, (0..5).map(event).collect(), keyring().active())
        .await
        .unwrap();
    let rotated = rotated_keyring();
    let after = store
        .append(&c, (5..9).map(event).collect(), rotated.active())
        .await
        .unwrap();
    assert_eq!(before[0].key_id, "k1");
    assert_eq!(after[0].key_id, "k2");
    assert!(verify(&store, &c, Some(&rotated)).await.unwrap().is_clean());
    // Without the old key the early links cannot be checked, and the report says so.
    let only_new = stele_ledger::Keyring::new(
        stele_ledger::KeyId::new("k2").unwrap(),
        [stele_ledger::HmacKey::new(
            stele_ledger::KeyId::new("k2").unwrap(),
            &[9u8; 32],
        )],
    )
    .unwrap();
    let r = verify(&store, &c, Some(&only_new)).await.unwrap();
    assert_eq!(
        r.findings[0],
        Finding::UnknownKey {
            seq: 0,
            key_id: "k1".into()
        }
    );
}

async fn concurrent_writers_produce_one_gap_free_chain(db: &Db) {
    let c = chain("busy");
    // Make sure the schema exists before the writers race.
    db.open().await.close().await;
    // Four stores, as four processes would have: each with its own
    // committer and connections, on a thread and a runtime of its own.
    std::thread::scope(|s| {
        for w in 0..4 {
            let (location, c) = (&db.location, &c);
            s.spawn(move || {
                common::runtime().block_on(async {
                    let keys = keyring();
                    let store = Store::open(location, StoreOptions::default())
                        .await
                        .unwrap();
                    for b in 0..10 {
                        let events = (0..25)
                            .map(|i| keyed(i, &format!("w{w}-b{b}-{i}")))
                            .collect();
                        store.append(c, events, keys.active()).await.unwrap();
                    }
                    store.close().await;
                })
            });
        }
    });
    let store = db.open().await;
    assert_eq!(store.head(&c).await.unwrap().unwrap().size, 1000);
    let r = verify(&store, &c, Some(&keyring())).await.unwrap();
    assert!(r.is_clean(), "{:?}", r.findings);
    assert_eq!(r.events_checked, 1000);
}

async fn reopening_is_idempotent_and_newer_schemas_are_refused(db: &Db) {
    let keys = keyring();
    let store = db.open().await;
    store
        .append(&chain("m"), vec![event(0)], keys.active())
        .await
        .unwrap();
    store.close().await;
    let store = db.open().await;
    assert_eq!(store.head(&chain("m")).await.unwrap().unwrap().size, 1);
    store.close().await;
    db.exec("INSERT INTO stele_schema (version, applied_at) VALUES (99, '2099-01-01')");
    match Store::open(&db.location, StoreOptions::default()).await {
        Err(StoreError::SchemaTooNew { found: 99, .. }) => {}
        other => panic!(
            "expected SchemaTooNew, got {:?}",
            other.map(|s| s.backend())
        ),
    }
}

async fn auditor_sql_returns_the_event_hash(db: &Db) {
    let keys = keyring();
    let store = db.open().await;
    let receipts = store
        .append(
            &chain("production"),
            (0..20).map(event).collect(),
            keys.active(),
        )
        .await
        .unwrap();
    let sql = match db.location {
        stele_store::DbLocation::Sqlite(_) => {
            "SELECT lower(hex(event_hash)) FROM audit_events WHERE chain_id = 'production' AND chain_index = 17"
        }
        stele_store::DbLocation::Postgres(_) => {
            "SELECT encode(event_hash, 'hex') FROM audit_events WHERE chain_id = 'production' AND chain_index = 17"
        }
    };
    assert_eq!(db.query_text(sql).unwrap(), receipts[17].event_hash);
}

async fn anchor_outbox_keeps_bytes_order_and_status(db: &Db) {
    use stele_anchor::{AnchorStatus, AnchorUpload};
    let store = db.open().await;
    let c = chain("production");
    store
        .append(&c, (0..3).map(event).collect(), keyring().active())
        .await
        .unwrap();
    let (head, lsn) = store.head_with_lsn(&c).await.unwrap();
    assert_eq!(head.unwrap().size, 3);
    match db.location {
        stele_store::DbLocation::Sqlite(_) => assert_eq!(lsn, None),
        stele_store::DbLocation::Postgres(_) => {
            assert!(lsn.unwrap().contains('/'), "pg_current_wal_lsn text")
        }
    }
    let record = |seq: u64| {
        common::pending_anchor(
            "production",
            seq,
            3,
            format!("{{\"anchor_seq\":{seq}}}").as_bytes(),
        )
    };
    store.insert_anchor(&record(0)).await.unwrap();
    store.insert_anchor(&record(1)).await.unwrap();
    assert!(matches!(
        store.insert_anchor(&record(1)).await,
        Err(StoreError::AnchorConflict { anchor_seq: 1, .. })
    ));
    let ttl = std::time::Duration::from_secs(600);
    // Anchors lease in order: not the second while the first is pending.
    assert!(!store.lease_anchor(&c, 1, "a", ttl).await.unwrap());
    assert!(store.lease_anchor(&c, 0, "a", ttl).await.unwrap());
    assert!(
        !store.lease_anchor(&c, 0, "b", ttl).await.unwrap(),
        "one holder"
    );
    // Only the holder records an outcome or moves the key; the body never changes.
    assert!(
        !store
            .record_anchor_failure(&c, 0, "b", "not mine")
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_anchor_object_key(&c, 0, "b", "elsewhere", "not mine")
            .await
            .unwrap()
    );
    assert!(
        store
            .set_anchor_object_key(&c, 0, "a", "anchors/production/0b.json", "squatted")
            .await
            .unwrap()
    );
    let moved = store.anchors(Some(&c), None).await.unwrap().remove(0);
    assert_eq!(
        (moved.object_key.as_str(), moved.body),
        ("anchors/production/0b.json", record(0).body)
    );
    assert!(
        store
            .record_anchor_failure(&c, 0, "a", "S3 unreachable")
            .await
            .unwrap()
    );
    let pending = store
        .anchors(None, Some(AnchorStatus::Pending))
        .await
        .unwrap();
    assert_eq!(
        pending.iter().map(|a| a.anchor_seq).collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(
        (pending[0].attempts, pending[0].last_error.as_deref()),
        (1, Some("S3 unreachable"))
    );
    assert_eq!(pending[1].body, record(1).body);
    let upload = AnchorUpload {
        status: AnchorStatus::Verified,
        location: "s3://b".into(),
        version_id: Some("v1".into()),
        lock_mode: Some(stele_anchor::LockMode::Compliance),
        retain_until: stele_anchor::parse_retain_until("2027-02-19T14:00:00Z"),
    };
    // The failure ended the lease; another process takes the next try.
    assert!(store.lease_anchor(&c, 0, "b", ttl).await.unwrap());
    assert!(
        !store
            .mark_anchor_uploaded(&c, 0, "a", &upload)
            .await
            .unwrap()
    );
    assert!(
        store
            .mark_anchor_uploaded(&c, 0, "b", &upload)
            .await
            .unwrap()
    );
    assert!(
        !store.lease_anchor(&c, 0, "a", ttl).await.unwrap(),
        "no longer pending"
    );
    // An expired lease (a killed holder) is taken over.
    assert!(
        store
            .lease_anchor(&c, 1, "dead", std::time::Duration::ZERO)
            .await
            .unwrap()
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(store.lease_anchor(&c, 1, "c", ttl).await.unwrap());
    assert!(
        !store
            .mark_anchor_uploaded(&c, 1, "dead", &upload)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .anchors(Some(&c), Some(AnchorStatus::Pending))
            .await
            .unwrap()
            .len(),
        1
    );
    let last = store.last_anchor(&c).await.unwrap().unwrap();
    assert_eq!((last.anchor_seq, last.status), (1, AnchorStatus::Pending));
    let first = &store.anchors(Some(&c), None).await.unwrap()[0];
    assert_eq!(
        (
            first.status,
            first.version_id.as_deref(),
            first.last_error.as_deref()
        ),
        (AnchorStatus::Verified, Some("v1"), None)
    );
    // Attempts count leases granted: one per try, whoever made it.
    assert_eq!(first.attempts, 2);
    assert_eq!(store.anchors(Some(&c), None).await.unwrap()[1].attempts, 2);
    assert!(store.last_anchor(&chain("other")).await.unwrap().is_none());
}

/// Scans do not read `chain_id` (the WHERE clause fixes it), so a row
/// moved to another chain in place is not returned: it is named as a
/// missing seq.
async fn a_row_moved_to_another_chain_is_named_missing(db: &Db) {
    let keys = keyring();
    let store = db.open().await;
    let c = chain("t");
    store
        .append(&c, (0..10).map(event).collect(), keys.active())
        .await
        .unwrap();
    db.exec("UPDATE audit_events SET chain_id = 'other' WHERE chain_index = 4");
    let report = verify(&store, &c, Some(&keys)).await.unwrap();
    assert_eq!(report.first_bad_seq, Some(4), "{:?}", report.findings);
    assert_eq!(
        report.findings[0],
        Finding::MissingEvents { first: 4, last: 4 }
    );
}
