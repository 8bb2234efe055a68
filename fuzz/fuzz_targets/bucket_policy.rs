//! Bucket policy documents as read from a live bucket (`stele bucket check`,
//! the evidence vault's preflight). Parsing and every evaluation stele runs
//! on a live policy must never panic; a parsed policy parses again from its
//! own JSON to the same document.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stele_bucket::policy::PolicyDocument;
use stele_bucket::policy_eval;
use stele_bucket::template::{PolicyValues, render_policy};

/// The policy `stele bucket init` writes (the shared template, rendered).
fn required() -> &'static PolicyDocument {
    static REQUIRED: OnceLock<PolicyDocument> = OnceLock::new();
    REQUIRED.get_or_init(|| {
        let values = PolicyValues {
            bucket_arn: "arn:aws:s3:::audit-anchors-prod".into(),
            kms_key_arn: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".into(),
            writer_role_arn: "arn:aws:iam::111122223333:role/stele-writer".into(),
        };
        let value = render_policy(&values, true).expect("the shared template renders");
        PolicyDocument::from_value(&value).expect("the rendered policy parses")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(text) = stele_fuzz::text(data) else {
        return;
    };
    let Ok(live) = PolicyDocument::parse(text) else {
        return;
    };
    let value: serde_json::Value = serde_json::from_str(text).expect("a parsed policy is JSON");
    assert_eq!(
        PolicyDocument::from_value(&value).expect("parses again"),
        live
    );

    let _ = policy_eval::evaluate(required(), Some(&live));
    let _ = policy_eval::evaluate(&live, Some(required()));
    let _ = policy_eval::evaluate(&live, Some(&live));
    let _ = live.public_grants();
    let _ = live.by_sid();
    let _ = policy_eval::pinned_kms_key(&live);
    let _ = policy_eval::governance_bypass_denied_to(&live);
    let object = "arn:aws:s3:::audit-anchors-prod/anchors/production/x.json";
    let _ = policy_eval::multipart_part_refusals(
        &live,
        object,
        Some("arn:aws:iam::111122223333:role/stele-writer"),
    );
    let _ = policy_eval::multipart_part_refusals(&live, object, None);
});
