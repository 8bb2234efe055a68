//! A set of anchor objects as `stele verify anchors` reads them: the input is
//! split at lines of `---` into objects (the first line of each part, when it
//! starts with `anchors/`, is its key). The audit must never panic, and
//! nothing can be trusted whose signature does not verify.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use stele_ledger::ChainId;
use stele_verify::{AuditPolicy, StoredAnchor, audit_anchors};
use time::macros::datetime;

fuzz_target!(|data: &[u8]| {
    let Some(text) = stele_fuzz::text(data) else {
        return;
    };
    let objects: Vec<StoredAnchor> = text
        .split("\n---\n")
        .take(32)
        .map(|part| {
            let (key, body) = match part.split_once('\n') {
                Some((first, rest)) if first.starts_with("anchors/") => (first.to_owned(), rest),
                _ => ("anchors/production/x.json".to_owned(), part),
            };
            StoredAnchor {
                key,
                bytes: body.as_bytes().to_vec(),
                storage: None,
                unreadable: None,
            }
        })
        .collect();
    let policy = AuditPolicy {
        chain: ChainId::new("production").expect("valid chain id"),
        verifier_key: stele_fuzz::VERIFIER_KEY.to_owned(),
        prefix: None,
        interval: Duration::from_secs(3600),
        grace: Duration::from_secs(600),
        retention_days: Some(365),
        expected_mode: Some("COMPLIANCE".to_owned()),
        from: None,
        to: None,
        now: datetime!(2026-12-02 00:00:00 UTC),
    };
    let audit = audit_anchors(&objects, &policy);
    for (anchor, bytes) in &audit.trusted {
        assert!(
            anchor.verify(stele_fuzz::VERIFIER_KEY).is_ok(),
            "trusted an anchor that does not verify"
        );
        assert!(
            objects.iter().any(|o| &o.bytes == bytes),
            "trusted bytes that were not given"
        );
    }
});
