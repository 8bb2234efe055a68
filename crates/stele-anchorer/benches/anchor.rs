//! Time from trigger to verified anchor on Ceph RGW, next to a baseline in the
//! same run: a plain PutObject of the same bytes (no lock, no checks, no
//! read-back). Needs the services from `scripts/test-services.sh start`:
//!
//! `cargo bench -p stele-anchorer --bench anchor [-- ROUNDS]`

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use signed_note::StandardSigner;
use stele_anchor::Trigger;
use stele_anchorer::{AnchorPolicy, Anchorer};
use stele_ledger::event::{EventInput, Limits};
use stele_ledger::{ChainId, HmacKey, KeyId};
use stele_store::testkit::TestDb;
use stele_store::{Store, StoreOptions};
use stele_worm::testkit::{create_bucket, rgw, unique_bucket};
use stele_worm::{ObjectStore, S3Worm};
use time::OffsetDateTime;

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    if std::env::var("STELE_TEST_RGW_ENDPOINT").is_err() {
        println!(
            "anchor bench skipped: start the services (scripts/test-services.sh start; source .test-services/env)"
        );
        return;
    }
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s3 = rt.block_on(create_bucket(rgw(&unique_bucket("bench-anchor")), true));
    let target = ObjectStore::S3(rt.block_on(S3Worm::connect(rgw(s3.bucket()))).unwrap());
    let db = TestDb::sqlite();
    let store = rt
        .block_on(Store::open(&db.location, StoreOptions::default()))
        .unwrap();
    let (skey, _) = signed_note::generate_key(&mut rand::rngs::OsRng, "stele.bench");
    let signer = StandardSigner::new(&skey).unwrap();
    let policy = AnchorPolicy::default();
    let chain = ChainId::new("bench").unwrap();
    let key = HmacKey::new(KeyId::new("k1").unwrap(), &[1; 32]);
    let ring = stele_ledger::Keyring::new(KeyId::new("k1").unwrap(), [key.clone()]).unwrap();
    let batch: Vec<_> = (0..1000)
        .map(|i| {
            EventInput {
                event_type: "bench".into(),
                actor: None,
                payload: Some(serde_json::json!({"i": i})),
                idempotency_key: None,
            }
            .validate(&Limits::default())
            .unwrap()
        })
        .collect();

    let mut anchorer = Anchorer::new(store.clone(), &signer, &ring, &policy).unwrap();
    let mut stele = Vec::new();
    let mut baseline = Vec::new();
    let mut size = 0;
    for round in 0..rounds {
        rt.block_on(store.append(&chain, batch.clone(), &key))
            .unwrap();
        size += 1000;
        let start = Instant::now();
        let (record, report) = rt.block_on(async {
            let record = anchorer
                .build(&chain, Trigger::Manual, "k1", OffsetDateTime::now_utc())
                .await
                .unwrap();
            (record, anchorer.upload_pending(&target).await.unwrap())
        });
        stele.push(start.elapsed());
        assert_eq!(report.uploaded.len(), 1, "{:?}", report.failed);

        let start = Instant::now();
        rt.block_on(
            s3.client()
                .put_object()
                .bucket(s3.bucket())
                .key(format!("baseline/{round}.json"))
                .body(ByteStream::from(record.body.clone()))
                .send(),
        )
        .unwrap();
        baseline.push(start.elapsed());
    }
    let (s50, s90) = (percentile(&mut stele, 0.5), percentile(&mut stele, 0.9));
    let (b50, b90) = (
        percentile(&mut baseline, 0.5),
        percentile(&mut baseline, 0.9),
    );
    println!(
        "trigger -> verified anchor on Ceph RGW, {rounds} anchors (tree grows to {size} events)"
    );
    println!("{:<34} {:>10} {:>10}", "", "median", "p90");
    println!(
        "{:<34} {:>8.2}ms {:>8.2}ms",
        "stele build+sign+PUT+verify",
        s50.as_secs_f64() * 1e3,
        s90.as_secs_f64() * 1e3
    );
    println!(
        "{:<34} {:>8.2}ms {:>8.2}ms",
        "baseline plain PutObject",
        b50.as_secs_f64() * 1e3,
        b90.as_secs_f64() * 1e3
    );
    println!(
        "ratio (median): {:.2}x the plain PUT",
        s50.as_secs_f64() / b50.as_secs_f64()
    );
}
