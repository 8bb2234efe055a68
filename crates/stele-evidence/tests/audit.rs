//! Re-checking recorded evidence against Ceph RGW, as `stele verify` does:
//! intact objects pass; a bypass delete, a bypass-shortened lock, a record
//! that disagrees with the store and a foreign signature are each named.

use std::path::Path;

use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};
use signed_note::StandardSigner;
use stele_evidence::record::{EvidenceRecord, Recorded};
use stele_evidence::{
    BundleId, CheckOptions, ClientId, Depth, Extension, Problem, PutItem, RetentionPolicy, Vault,
    check_uploads,
};
use stele_worm::testkit::{create_bucket, rgw, unique_bucket};
use stele_worm::{LockMode, NoProgress, S3Worm, UploadTuning};

fn keys(name: &str) -> (StandardSigner, String) {
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, name);
    (StandardSigner::new(&skey).unwrap(), vkey)
}

async fn put(vault: &Vault, path: &Path, bundle: &str, signer: &StandardSigner) -> EvidenceRecord {
    let client = ClientId::new("audit").unwrap();
    let bundle = BundleId::new(bundle).unwrap();
    let ext = Extension::new("bin").unwrap();
    let item = PutItem {
        path,
        client: &client,
        bundle: &bundle,
        ext: &ext,
        policy: RetentionPolicy {
            days: 2,
            floor_days: 1,
            mode: LockMode::Governance,
        },
        now: time::OffsetDateTime::now_utc(),
    };
    vault.put(&item, signer, &NoProgress).await.unwrap().record
}

fn recorded(seq: u64, record: EvidenceRecord) -> Recorded<EvidenceRecord> {
    Recorded {
        chain_id: "evidence".into(),
        seq,
        ts: "2026-11-22T00:00:00.000000Z".into(),
        record,
    }
}

async fn bypass_delete(s3: &S3Worm, key: &str, version: Option<&str>) {
    s3.client()
        .delete_object()
        .bucket(s3.bucket())
        .key(key)
        .set_version_id(version.map(str::to_owned))
        .bypass_governance_retention(true)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_evidence_is_rechecked_and_every_difference_is_named() {
    stele_worm::live_or_skip!(Rgw);
    let bucket = unique_bucket("ev-audit");
    let s3 = create_bucket(rgw(&bucket), true).await;
    let tuning = UploadTuning {
        part_size: 5 << 20,
        concurrency: 2,
        multipart_threshold: 5 << 20,
    };
    let vault = Vault::new(S3Worm::connect(rgw(&bucket)).await.unwrap(), tuning);
    let dir = tempfile::tempdir().unwrap();
    let (signer, vkey) = keys("stele.audit");
    let small = dir.path().join("small.bin");
    std::fs::write(&small, b"small evidence").unwrap();
    let large = dir.path().join("large.bin");
    std::fs::write(&large, vec![7u8; (11 << 20) + 3]).unwrap();
    let a = put(&vault, &small, "a", &signer).await;
    let b = put(&vault, &large, "b", &signer).await;
    let c = put(&vault, &small, "c", &signer).await;
    let d = put(&vault, &small, "d", &signer).await;
    let options = CheckOptions {
        depth: Depth::Content,
        verifier_key: Some(vkey.clone()),
    };

    let all = vec![
        recorded(0, a.clone()),
        recorded(1, b.clone()),
        recorded(2, c.clone()),
        recorded(3, d.clone()),
    ];
    let report = check_uploads(&s3, &all, &options).await.unwrap();
    assert_eq!(report.checked, 4);
    assert!(report.findings.is_empty(), "{:?}", report.findings);

    // Someone with bypass rights deletes c and shortens d's GOVERNANCE lock.
    bypass_delete(&s3, &c.key, c.version_id.as_deref()).await;
    let sooner = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    s3.client()
        .put_object_retention()
        .bucket(&bucket)
        .key(&d.key)
        .set_version_id(d.version_id.clone())
        .bypass_governance_retention(true)
        .retention(
            ObjectLockRetention::builder()
                .mode(ObjectLockRetentionMode::Governance)
                .retain_until_date(DateTime::from_secs(sooner.unix_timestamp()))
                .build(),
        )
        .send()
        .await
        .unwrap();
    // A record that disagrees with the store (as if the ledger had been rewritten).
    let mut forged = a.clone();
    forged.sha256 = "00".repeat(32);
    forged.size = 1;
    let mut other_bucket = a.clone();
    other_bucket.bucket = "elsewhere".into();
    let records = vec![
        recorded(0, a.clone()),
        recorded(1, b.clone()),
        recorded(2, c.clone()),
        recorded(3, d.clone()),
        recorded(4, forged),
        recorded(5, other_bucket),
    ];
    let report = check_uploads(&s3, &records, &options).await.unwrap();
    assert_eq!(report.checked, 5);
    assert_eq!(report.other_bucket, vec![5]);
    let by_seq = |seq: u64| -> Vec<&Problem> {
        report
            .findings
            .iter()
            .filter(|f| f.seq == seq)
            .map(|f| &f.problem)
            .collect()
    };
    assert!(
        by_seq(0).is_empty() && by_seq(1).is_empty(),
        "{:?}",
        report.findings
    );
    assert_eq!(by_seq(2), vec![&Problem::Missing]);
    assert!(
        matches!(by_seq(3).as_slice(), [Problem::RetainUntilShort { .. }]),
        "{:?}",
        by_seq(3)
    );
    let forged_problems = by_seq(4);
    assert!(
        forged_problems
            .iter()
            .any(|p| matches!(p, Problem::SizeDiffers { recorded: 1, .. }))
            && forged_problems
                .iter()
                .any(|p| matches!(p, Problem::Sha256Differs { by: "bytes", .. }))
            && forged_problems
                .iter()
                .any(|p| matches!(p, Problem::Signature(_))),
        "{forged_problems:?}"
    );
    // Each finding names the chain, seq, key and version.
    let text = report.findings[0].to_string();
    assert!(
        text.starts_with("evidence seq 2: ") && text.contains(&c.key),
        "{text}"
    );

    // Signatures by another key are reported, not trusted.
    let (_, stranger) = keys("stele.stranger");
    let report = check_uploads(
        &s3,
        &[recorded(1, b.clone())],
        &CheckOptions {
            depth: Depth::Metadata,
            verifier_key: Some(stranger),
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(report.findings.as_slice(), [f] if matches!(&f.problem, Problem::Signature(m) if m.contains("not signed by"))),
        "{:?}",
        report.findings
    );

    // Clean up what GOVERNANCE lets go.
    for key in [&a.key, &b.key, &d.key] {
        for v in s3.versions(key).await.unwrap() {
            bypass_delete(&s3, key, v.version_id.as_deref()).await;
        }
        let sig = format!("{key}.sig");
        for v in s3.versions(&sig).await.unwrap() {
            bypass_delete(&s3, &sig, v.version_id.as_deref()).await;
        }
    }
}
