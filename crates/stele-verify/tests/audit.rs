//! The auditor's checks on in-memory anchors and events: every tamper named,
//! integrity and completeness kept apart, no false alarms on a clean chain.

use signed_note::StandardSigner;
use stele_anchor::{Anchor, AnchorInput, Trigger, object_hash, object_key};
use stele_ledger::append::{ChainAppender, ChainState};
use stele_ledger::event::{EventInput, Limits};
use stele_ledger::merkle::{MemoryHashes, TreeAppender, consistency_proof};
use stele_ledger::{ChainId, Event, HmacKey, KeyId, Keyring, Timestamp};
use stele_verify::{AnchoredLog, Aspect, AuditPolicy, StorageFacts, StoredAnchor, audit_anchors};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const HOURS: i64 = 6;

fn keys(name: &str) -> (StandardSigner, String) {
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, name);
    (StandardSigner::new(&skey).unwrap(), vkey)
}

fn chain() -> ChainId {
    ChainId::new("production").unwrap()
}

fn keyring() -> Keyring {
    Keyring::new(
        KeyId::new("k1").unwrap(),
        [HmacKey::new(KeyId::new("k1").unwrap(), b"secret")],
    )
    .unwrap()
}

/// `n` events per hour for HOURS hours, an anchor at each hour; returns events and anchor objects.
fn ledger(signer: &StandardSigner, per_hour: u64) -> (Vec<Event>, Vec<StoredAnchor>) {
    ledger_at(signer, per_hour, |h| {
        datetime!(2026-01-15 10:00:00 UTC) + Duration::hours(h)
    })
}

/// [`ledger`] with the time of hour `h` chosen by `time_of`.
fn ledger_at(
    signer: &StandardSigner,
    per_hour: u64,
    time_of: impl Fn(i64) -> OffsetDateTime,
) -> (Vec<Event>, Vec<StoredAnchor>) {
    let ring = keyring();
    let mut app = ChainAppender::new(chain(), &ChainState::empty(), &[], ring.active()).unwrap();
    let mut tree = TreeAppender::empty();
    let mut mem = MemoryHashes::default();
    let mut events = Vec::new();
    let mut objects: Vec<StoredAnchor> = Vec::new();
    let mut prev: Option<(u64, Vec<u8>)> = None;
    for h in 0..HOURS {
        let ts = time_of(h);
        for _ in 0..per_hour {
            let input = EventInput {
                event_type: "user.login".into(),
                payload: Some(serde_json::json!({"h": h})),
                ..Default::default()
            };
            let e = app
                .append(
                    input.validate(&Limits::default()).unwrap(),
                    Timestamp::from_datetime(ts),
                )
                .event;
            let leaf = stele_ledger::parse_hex_hash(&e.leaf_hash).unwrap();
            let nodes = tree.push(leaf);
            mem.push(e.seq, leaf, &nodes);
            events.push(e);
        }
        let size = tree.size();
        let proof = match &prev {
            Some((prev_size, _)) if *prev_size > 0 => {
                consistency_proof(*prev_size, size, &mem).unwrap()
            }
            _ => vec![],
        };
        let a = Anchor::sign(
            &AnchorInput {
                chain: &chain(),
                anchor_seq: h as u64,
                trigger: Trigger::Time,
                tree_size: size,
                root: tree.root(),
                last_hash: events
                    .last()
                    .map(|e| stele_ledger::parse_hex_hash(&e.event_hash).unwrap()),
                key_id: "k1",
                ts,
                db_snapshot_lsn: None,
                prev_anchor_hash: prev.as_ref().map(|(_, b)| object_hash(b)),
                consistency_proof: &proof,
            },
            signer,
        )
        .unwrap();
        let bytes = a.to_bytes().unwrap();
        let facts = StorageFacts {
            version_id: Some(format!("v{h}")),
            lock_mode: Some("COMPLIANCE".into()),
            retain_until: ts.checked_add(Duration::days(400)),
            checksum_sha256: None,
            metadata_sha256: Some(object_hash(&bytes)),
            other_versions: 0,
            delete_markers: 0,
            versions_unlisted: None,
        };
        objects.push(StoredAnchor {
            key: object_key(None, &chain(), ts, h as u64).unwrap(),
            bytes: bytes.clone(),
            unreadable: None,
            storage: Some(facts),
        });
        prev = Some((size, bytes));
    }
    (events, objects)
}

fn policy(vkey: &str, now: OffsetDateTime) -> AuditPolicy {
    AuditPolicy {
        chain: chain(),
        verifier_key: vkey.to_owned(),
        prefix: None,
        interval: std::time::Duration::from_secs(3600),
        grace: std::time::Duration::from_secs(15 * 60),
        retention_days: Some(400),
        expected_mode: Some("COMPLIANCE".into()),
        from: None,
        to: None,
        now,
    }
}

/// Just after the last anchor: nothing is overdue.
fn fresh() -> OffsetDateTime {
    datetime!(2026-01-15 10:00:00 UTC) + Duration::hours(HOURS - 1) + Duration::minutes(20)
}

fn kinds(r: &stele_verify::Report) -> Vec<(Aspect, String)> {
    r.findings
        .iter()
        .map(|f| (f.aspect, f.kind.clone()))
        .collect()
}

#[test]
fn a_clean_chain_passes_both_verdicts() {
    let (signer, vkey) = keys("stele.test");
    let (events, objects) = ledger(&signer, 50);
    let audit = audit_anchors(&objects, &policy(&vkey, fresh()));
    assert!(audit.report.is_clean(), "{}", audit.report.summary());
    assert_eq!(audit.trusted.len(), HOURS as usize);
    let ring = keyring();
    let mut log = AnchoredLog::new(
        chain(),
        Some(&ring),
        audit.trusted.iter().map(|(a, _)| a.clone()).collect(),
    );
    events.iter().for_each(|e| log.check(e, None));
    let (report, findings) = log.finish(None);
    assert!(report.is_clean() && findings.is_empty(), "{findings:?}");
}

#[test]
fn a_deleted_newest_anchor_is_caught_by_cadence() {
    let (signer, vkey) = keys("stele.test");
    let (_, mut objects) = ledger(&signer, 5);
    objects.pop();
    let r = audit_anchors(&objects, &policy(&vkey, fresh())).report;
    assert!(r.integrity.ok, "{}", r.summary());
    assert!(!r.completeness.ok);
    assert!(
        kinds(&r).contains(&(Aspect::Completeness, "stale".into())),
        "{}",
        r.summary()
    );
    assert!(
        kinds(&r).contains(&(Aspect::Completeness, "cadence_gap".into())),
        "{}",
        r.summary()
    );
}

#[test]
fn a_deleted_middle_anchor_is_named() {
    let (signer, vkey) = keys("stele.test");
    let (_, mut objects) = ledger(&signer, 5);
    objects.remove(2);
    let r = audit_anchors(&objects, &policy(&vkey, fresh())).report;
    let missing = r
        .findings
        .iter()
        .find(|f| f.kind == "missing_anchor")
        .unwrap_or_else(|| panic!("{}", r.summary()));
    assert_eq!(
        (missing.aspect, missing.anchor_seq),
        (Aspect::Completeness, Some(2))
    );
    assert!(r.findings.iter().any(|f| f.kind == "cadence_gap"));
}

#[test]
fn a_replacement_signed_by_another_key_is_refused() {
    let (signer, vkey) = keys("stele.test");
    let (other, _) = keys("stele.test");
    let (_, mut objects) = ledger(&signer, 5);
    let (_, forged) = ledger(&other, 5);
    objects[3] = forged[3].clone();
    let r = audit_anchors(&objects, &policy(&vkey, fresh())).report;
    // The forgery claims nothing: anchor #3 is missing, and the object is named.
    let missing = r
        .findings
        .iter()
        .find(|f| f.kind == "missing_anchor")
        .unwrap_or_else(|| panic!("{}", r.summary()));
    assert_eq!(
        (missing.aspect, missing.anchor_seq),
        (Aspect::Completeness, Some(3))
    );
    assert!(!r.is_clean());
    assert!(
        r.warnings
            .iter()
            .any(|w| w.kind == "foreign_object" && w.subject == objects[3].key),
        "{}",
        r.summary()
    );
}

#[test]
fn forks_and_non_extensions_are_integrity_failures() {
    let (signer, vkey) = keys("stele.test");
    let (_, objects) = ledger(&signer, 5);
    // A second, validly signed anchor claiming seq 2 with a different tree (another log history).
    let (_, other_history) = ledger(&signer, 7);
    let mut forked = objects.clone();
    let mut extra = other_history[2].clone();
    extra.key = extra.key.replace(".json", "-b.json");
    forked.push(extra);
    let r = audit_anchors(&forked, &policy(&vkey, fresh())).report;
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == "fork" && f.anchor_seq == Some(2)),
        "{}",
        r.summary()
    );

    let mut spliced = objects;
    spliced[4] = other_history[4].clone();
    let r = audit_anchors(&spliced, &policy(&vkey, fresh())).report;
    assert!(
        r.findings.iter().any(|f| f.aspect == Aspect::Integrity
            && f.anchor_seq == Some(4)
            && (f.kind == "prev_hash_mismatch" || f.kind == "not_an_extension")),
        "{}",
        r.summary()
    );
}

#[test]
fn altered_bytes_and_weak_storage_are_named() {
    let (signer, vkey) = keys("stele.test");
    let (_, mut objects) = ledger(&signer, 5);
    let text = String::from_utf8(objects[1].bytes.clone())
        .unwrap()
        .replace("\"trigger\":\"time\"", "\"trigger\":\"manual\"");
    objects[1].bytes = text.into_bytes();
    objects[2].storage.as_mut().unwrap().lock_mode = Some("GOVERNANCE".into());
    objects[3].storage.as_mut().unwrap().retain_until = Some(datetime!(2026-02-01 00:00:00 UTC));
    objects[4].storage.as_mut().unwrap().other_versions = 1;
    objects[5].storage.as_mut().unwrap().delete_markers = 1;
    let r = audit_anchors(&objects, &policy(&vkey, fresh())).report;
    let named: Vec<(String, Option<u64>)> = r
        .findings
        .iter()
        .map(|f| (f.kind.clone(), f.anchor_seq))
        .collect();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.kind == "foreign_object" && w.subject == objects[1].key),
        "{}",
        r.summary()
    );
    for expected in [
        // The altered object is not signed by the key: #1 is missing.
        ("missing_anchor", Some(1)),
        ("lock_mode", Some(2)),
        ("retention_short", Some(3)),
        ("extra_versions", Some(4)),
        ("delete_marker", Some(5)),
    ] {
        assert!(
            named.contains(&(expected.0.to_owned(), expected.1)),
            "{expected:?} in {}",
            r.summary()
        );
    }
}

#[test]
fn the_requested_range_is_kept_apart_from_the_range_found() {
    let (signer, vkey) = keys("stele.test");
    let (_, objects) = ledger(&signer, 5);
    let mut p = policy(&vkey, fresh());
    p.from = Some(datetime!(2026-01-15 11:30:00 UTC));
    p.to = Some(datetime!(2026-01-15 13:30:00 UTC));
    let r = audit_anchors(&objects, &p).report;
    assert!(r.is_clean(), "{}", r.summary());
    assert_eq!(r.requested.from.as_deref(), Some("2026-01-15T11:30:00Z"));
    assert_eq!(r.found.from.as_deref(), Some("2026-01-15T12:00:00Z"));
    assert_eq!(r.found.to.as_deref(), Some("2026-01-15T13:00:00Z"));
    assert_eq!(r.anchors_checked, 2);
}

#[test]
fn the_log_against_anchors_names_rewrites_and_truncation() {
    let (signer, vkey) = keys("stele.test");
    let (events, objects) = ledger(&signer, 20);
    let trusted: Vec<Anchor> = audit_anchors(&objects, &policy(&vkey, fresh()))
        .trusted
        .into_iter()
        .map(|(a, _)| a)
        .collect();

    // Rewritten after anchoring, with every hash recomputed with the HMAC key:
    // only the anchors can tell.
    let ring = keyring();
    let mut app = ChainAppender::new(chain(), &ChainState::empty(), &[], ring.active()).unwrap();
    let rewritten: Vec<Event> = events
        .iter()
        .map(|e| {
            let payload = if e.seq == 47 {
                Some(serde_json::json!({"h": 99}))
            } else {
                e.payload
                    .as_deref()
                    .map(|p| serde_json::from_str(p).unwrap())
            };
            let input = EventInput {
                event_type: e.event_type.clone(),
                actor: e.actor.clone(),
                payload,
                idempotency_key: None,
            };
            app.append(
                input.validate(&Limits::default()).unwrap(),
                Timestamp::parse(&e.ts).unwrap(),
            )
            .event
        })
        .collect();
    let mut log = AnchoredLog::new(chain(), Some(&ring), trusted.clone());
    rewritten.iter().for_each(|e| log.check(e, None));
    let (row_report, findings) = log.finish(None);
    assert!(row_report.is_clean(), "every row is self-consistent");
    let f = findings
        .iter()
        .find(|f| f.kind == "anchor_root_mismatch")
        .expect("caught by the anchor");
    assert_eq!(
        (f.anchor_seq, f.seq),
        (Some(2), Some(40)),
        "seq 47 lies in anchor #2's span 40..=59: {f:?}"
    );

    let mut log = AnchoredLog::new(chain(), Some(&ring), trusted);
    events[..100].iter().for_each(|e| log.check(e, None));
    let (_, findings) = log.finish(None);
    let t = findings
        .iter()
        .find(|f| f.kind == "log_truncated")
        .expect("truncation");
    assert_eq!((t.aspect, t.seq), (Aspect::Completeness, Some(100)));
}

#[test]
fn a_malformed_verifier_key_is_one_finding_not_one_per_anchor() {
    let (signer, _) = keys("stele.test");
    let (_, objects) = ledger(&signer, 5);
    let audit = audit_anchors(&objects, &policy("stele.test+00000000+notbase64", fresh()));
    assert_eq!(
        kinds(&audit.report),
        vec![(Aspect::Integrity, "malformed_verifier_key".to_owned())]
    );
    assert!(audit.trusted.is_empty());
    assert!(!audit.report.is_clean());
}

#[test]
fn versions_that_could_not_be_listed_are_not_checked_until_waived() {
    let (signer, vkey) = keys("stele.test");
    let (_, mut objects) = ledger(&signer, 5);
    for o in &mut objects {
        let s = o.storage.as_mut().unwrap();
        s.versions_unlisted = Some("AccessDenied".into());
        // What a listing would have shown is unknown, and not reported as clean.
        s.other_versions = 3;
    }
    let mut r = audit_anchors(&objects, &policy(&vkey, fresh())).report;
    assert!(r.no_findings(), "{}", r.summary());
    assert!(!r.is_clean());
    assert_eq!(r.verdict, "not_checked");
    assert!(r.summary().contains("NOT CHECKED  versions"));
    assert!(!r.checked.iter().any(|c| c.contains("no other versions")));
    r.add_not_checked([], &["versions".to_owned()]);
    assert!(r.is_clean());
    assert!(r.summary().contains("WAIVED       versions"));
}

#[test]
fn anchors_at_the_end_of_time_and_ranges_from_year_one_are_bounded() {
    let (signer, vkey) = keys("stele.test");
    let (_, objects) = ledger(&signer, 5);
    let mut p = policy(&vkey, fresh());
    p.from = Some(datetime!(0001-01-01 00:00:00 UTC));
    p.interval = std::time::Duration::from_secs(60);
    let started = std::time::Instant::now();
    let r = audit_anchors(&objects, &p).report;
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let gaps: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.kind == "cadence_gap")
        .map(|f| f.subject.as_str())
        .collect();
    assert!(
        gaps[0] == "0001-01-01T00:00:00Z .. 2026-01-15T10:00:00Z",
        "{gaps:?}"
    );
    // An anchor claiming 9999-12-31T23:30:00Z: retention and cadence arithmetic overflow.
    // Signed with the real key: an object that is not is no anchor at all.
    let (_, late) = ledger_at(&signer, 5, |h| {
        if h == 4 {
            datetime!(9999-12-31 23:30:00 UTC)
        } else {
            datetime!(2026-01-15 10:00:00 UTC) + Duration::hours(h)
        }
    });
    let mut p = policy(&vkey, fresh());
    p.grace = std::time::Duration::from_secs(u64::MAX);
    let r = audit_anchors(&late, &p).report;
    assert!(
        kinds(&r).contains(&(Aspect::Integrity, "retention_short".to_owned())),
        "{}",
        r.summary()
    );
}

#[test]
fn squatters_claim_nothing_and_relocated_anchors_count() {
    let (signer, vkey) = keys("stele.test");
    let (other, _) = keys("stele.test");
    let (_, objects) = ledger(&signer, 5);
    let (_, forged) = ledger(&other, 5);
    let primary = objects[2].key.clone();
    // Anchor #2 was written at its alternate key; its intended key holds
    // junk, and another ledger's anchor sits beside it.
    let mut squatted = objects.clone();
    squatted[2].key = stele_anchor::alternate_object_key(&primary, &squatted[2].bytes);
    let mut junk = objects[2].clone();
    junk.bytes = b"not an anchor".to_vec();
    junk.key = primary.clone();
    let mut impostor = forged[2].clone();
    impostor.key = primary.replace(".json", "-x.json");
    squatted.push(junk);
    squatted.push(impostor.clone());
    let r = audit_anchors(&squatted, &policy(&vkey, fresh())).report;
    assert!(r.is_clean(), "{}", r.summary());
    assert!(
        r.warnings
            .iter()
            .any(|w| w.kind == "relocated_anchor" && w.message.contains(&primary)),
        "{}",
        r.summary()
    );
    for key in [&primary, &impostor.key] {
        assert!(
            r.warnings
                .iter()
                .any(|w| w.kind == "foreign_object" && &w.subject == key),
            "{key}: {}",
            r.summary()
        );
    }

    // An alternate key that is not the hash of the bytes: ours, misplaced.
    let mut misplaced = objects.clone();
    misplaced[2].key = primary.replace(".json", "-0123456789abcdef.json");
    let r = audit_anchors(&misplaced, &policy(&vkey, fresh())).report;
    assert!(
        kinds(&r).contains(&(Aspect::Integrity, "moved".to_owned())),
        "{}",
        r.summary()
    );

    // Junk in place of our anchor (no alternate): #2 is missing.
    let mut replaced = objects;
    replaced[2].bytes = b"{}".to_vec();
    let r = audit_anchors(&replaced, &policy(&vkey, fresh())).report;
    assert!(
        kinds(&r).contains(&(Aspect::Completeness, "missing_anchor".to_owned())),
        "{}",
        r.summary()
    );
}
