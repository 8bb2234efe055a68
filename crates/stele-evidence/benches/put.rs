//! `evidence put` of one large file against Ceph RGW, next to `aws s3 cp` of
//! the same file to the same RGW in the same run.
//!
//! stele's figure covers everything a put does: hashing the file (and its
//! parts), the locked multipart upload, verification (RGW has no checksum
//! API, so the whole object is read back and hashed), the detached signature
//! and the ledger append. `aws s3 cp` only uploads.
//!
//! Run with the test services up (`scripts/test-services.sh start`, then
//! `set -a; source .test-services/env; set +a`) and awscli installed under
//! `<repo>/.tools/awscli` (`python3 -m venv .tools/awscli &&
//! .tools/awscli/bin/pip install awscli`):
//!
//! ```text
//! cargo bench -p stele-evidence --bench put
//! ```
//!
//! Knobs: `STELE_BENCH_MIB` (file size, default 1024), `STELE_BENCH_ROUNDS`
//! (default 3; runs alternate), `STELE_BENCH_AWS` (the `aws` binary; `none`
//! skips it), `STELE_BENCH_PART_MIB` and `STELE_BENCH_CONCURRENCY` (upload tuning).
//! Objects are stored GOVERNANCE and removed with a bypass after each round,
//! so RGW's in-memory store (2 GiB by default) never holds more than one copy.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use stele_evidence::record;
use stele_evidence::{BundleId, ClientId, Extension, PutItem, RetentionPolicy, Vault};
use stele_ledger::{ChainId, HmacKey, KeyId};
use stele_worm::testkit::{create_bucket, env_required, rgw, unique_bucket};
use stele_worm::{LockMode, Phase, Progress, S3Worm, UploadTuning};

fn main() {
    if std::env::var("STELE_TEST_RGW_ENDPOINT").is_err() {
        println!(
            "skipped: the test services are not running (scripts/test-services.sh start; set -a; source .test-services/env; set +a)"
        );
        return;
    }
    let mib: u64 = env_num("STELE_BENCH_MIB", 1024);
    let rounds: u64 = env_num("STELE_BENCH_ROUNDS", 3);
    let aws = aws_binary();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bench.bin");
    write_file(&file, mib << 20);
    println!("file: {mib} MiB at {}", file.display());

    let locked = rt.block_on(create_bucket(rgw(&unique_bucket("bench-ev")), true));
    let plain = rt.block_on(create_bucket(rgw(&unique_bucket("bench-cp")), false));
    let ledger = Ledger::new(&rt, dir.path());

    let mut stele_times = Vec::new();
    let mut aws_times = Vec::new();
    for round in 0..rounds {
        // Alternate who goes first, so neither always gets the warmer store.
        let order: [bool; 2] = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for stele_turn in order {
            wait_for_space(mib);
            if stele_turn {
                let (t, phases) = stele_put(&rt, &locked, &file, &ledger, round);
                println!(
                    "round {round}: stele evidence put  {:>6.2} s  {:>6.0} MiB/s  (hash + first part {:.2} s, other parts {:.2} s, complete + verify + signature {:.2} s, ledger {:.3} s)",
                    t.as_secs_f64(),
                    mib as f64 / t.as_secs_f64(),
                    phases[0],
                    phases[1],
                    phases[2],
                    phases[3],
                );
                stele_times.push(t);
                remove_everything(&rt, &locked);
            } else if let Some(aws) = &aws {
                let t = aws_cp(aws, &file, plain.bucket());
                println!(
                    "round {round}: aws s3 cp           {:>6.2} s  {:>6.0} MiB/s",
                    t.as_secs_f64(),
                    mib as f64 / t.as_secs_f64()
                );
                aws_times.push(t);
                remove_everything(&rt, &plain);
            }
        }
    }
    let stele = median(&mut stele_times);
    println!(
        "\nmedian of {rounds}: stele evidence put (with verification) {:.2} s",
        stele.as_secs_f64()
    );
    match aws {
        Some(_) => {
            let cp = median(&mut aws_times);
            println!(
                "median of {rounds}: aws s3 cp (upload only)               {:.2} s",
                cp.as_secs_f64()
            );
            println!(
                "ratio aws/stele: {:.2} ({})",
                cp.as_secs_f64() / stele.as_secs_f64(),
                if stele <= cp {
                    "stele is at least as fast"
                } else {
                    "stele is slower"
                }
            );
        }
        None => println!(
            "aws s3 cp: not measured (install awscli: python3 -m venv .tools/awscli && .tools/awscli/bin/pip install awscli)"
        ),
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A throwaway SQLite ledger with an HMAC key and a signing key.
struct Ledger {
    store: stele_store::Store,
    hmac: HmacKey,
    signer: signed_note::StandardSigner,
}

impl Ledger {
    fn new(rt: &tokio::runtime::Runtime, dir: &Path) -> Self {
        let store = rt
            .block_on(stele_store::Store::open(
                &stele_store::DbLocation::Sqlite(dir.join("ledger.db")),
                stele_store::StoreOptions::default(),
            ))
            .expect("ledger");
        let (skey, _) = signed_note::generate_key(&mut rand::rngs::OsRng, "stele.bench");
        Self {
            store,
            hmac: HmacKey::new(KeyId::new("bench").expect("key id"), &[7u8; 32]),
            signer: signed_note::StandardSigner::new(&skey).expect("signer"),
        }
    }
}

/// When upload progress first and last arrived.
struct PhaseClock {
    start: Instant,
    upload: Mutex<(Option<Duration>, Option<Duration>)>,
}

impl Progress for PhaseClock {
    fn advance(&self, phase: Phase, _bytes: u64) {
        if phase != Phase::Upload {
            return;
        }
        let now = self.start.elapsed();
        let mut marks = self.upload.lock().unwrap_or_else(|e| e.into_inner());
        marks.0.get_or_insert(now);
        marks.1 = Some(now);
    }
}

/// One full put; returns the total time and the seconds spent (hashing until
/// the first part is stored, uploading the rest, completing + verifying +
/// the signature, the ledger append).
fn stele_put(
    rt: &tokio::runtime::Runtime,
    store: &S3Worm,
    file: &Path,
    ledger: &Ledger,
    round: u64,
) -> (Duration, [f64; 4]) {
    let worm = rt
        .block_on(S3Worm::connect(rgw(store.bucket())))
        .expect("connect");
    let defaults = UploadTuning::default();
    let part_size = env_num("STELE_BENCH_PART_MIB", defaults.part_size >> 20) << 20;
    let tuning = UploadTuning {
        part_size,
        concurrency: usize::try_from(env_num(
            "STELE_BENCH_CONCURRENCY",
            defaults.concurrency as u64,
        ))
        .unwrap_or(defaults.concurrency),
        multipart_threshold: part_size,
    };
    let vault = Vault::new(worm, tuning);
    let client = ClientId::new("bench").expect("client");
    let bundle = BundleId::new(&format!("round-{round}")).expect("bundle");
    let policy = RetentionPolicy {
        days: 1,
        floor_days: 1,
        mode: LockMode::Governance,
    };
    let clock = PhaseClock {
        start: Instant::now(),
        upload: Mutex::new((None, None)),
    };
    let ext = Extension::new("bin").expect("ext");
    let item = PutItem {
        path: file,
        client: &client,
        bundle: &bundle,
        ext: &ext,
        policy,
        now: time::OffsetDateTime::now_utc(),
    };
    let uploaded = rt
        .block_on(async {
            vault.check_bucket().await?;
            vault.put(&item, &ledger.signer, &clock).await
        })
        .expect("evidence put");
    let stored_at = clock.start.elapsed();
    let chain = ChainId::new("evidence").expect("chain");
    rt.block_on(record::append(
        &ledger.store,
        &chain,
        uploaded.record.to_event().expect("event"),
        &ledger.hmac,
    ))
    .expect("ledger append");
    let total = clock.start.elapsed();
    let (first, last) = *clock.upload.lock().unwrap_or_else(|e| e.into_inner());
    let (first, last) = (first.unwrap_or_default(), last.unwrap_or_default());
    (
        total,
        [
            first.as_secs_f64(),
            (last - first).as_secs_f64(),
            (stored_at - last).as_secs_f64(),
            (total - stored_at).as_secs_f64(),
        ],
    )
}

fn aws_binary() -> Option<PathBuf> {
    let path = std::env::var_os("STELE_BENCH_AWS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/awscli/bin/aws"),
        PathBuf::from,
    );
    (path.exists() && path != Path::new("none")).then_some(path)
}

fn aws_cp(aws: &Path, file: &Path, bucket: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new(aws)
        .args(["s3", "cp", "--no-progress", "--only-show-errors"])
        .arg(file)
        .arg(format!("s3://{bucket}/bench.bin"))
        .env(
            "AWS_ACCESS_KEY_ID",
            env_required("STELE_TEST_RGW_ACCESS_KEY"),
        )
        .env(
            "AWS_SECRET_ACCESS_KEY",
            env_required("STELE_TEST_RGW_SECRET_KEY"),
        )
        .env("AWS_ENDPOINT_URL", env_required("STELE_TEST_RGW_ENDPOINT"))
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .status()
        .expect("run aws");
    let took = started.elapsed();
    assert!(status.success(), "aws s3 cp failed");
    took
}

/// Removes every version in the bucket (GOVERNANCE bypass), then asks RGW to
/// collect garbage now, so the next round has the space.
fn remove_everything(rt: &tokio::runtime::Runtime, s3: &S3Worm) {
    let versions = rt
        .block_on(
            s3.client()
                .list_object_versions()
                .bucket(s3.bucket())
                .send(),
        )
        .expect("list versions");
    for v in versions.versions() {
        rt.block_on(
            s3.client()
                .delete_object()
                .bucket(s3.bucket())
                .set_key(v.key().map(str::to_owned))
                .set_version_id(v.version_id().map(str::to_owned))
                .bypass_governance_retention(true)
                .send(),
        )
        .expect("delete");
    }
    if let Some(conf) = ceph_conf() {
        let _ = Command::new("timeout")
            .args(["60", "radosgw-admin", "gc", "process", "--include-all"])
            .env("CEPH_CONF", conf)
            .output();
    }
}

fn ceph_conf() -> Option<PathBuf> {
    let dir = std::env::var_os("STELE_SERVICES_DIR")?;
    let conf = Path::new(&dir).join("ceph/ceph.conf");
    conf.exists().then_some(conf)
}

/// Waits until the memstore has room for the file and a margin.
fn wait_for_space(mib: u64) {
    stele_worm::testkit::wait_for_memstore_space((mib + 256) << 20, Duration::from_secs(120));
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Writes `size` bytes without holding them: a random MiB, each copy stamped with its index.
fn write_file(path: &Path, size: u64) {
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in block.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let (mut left, mut index) = (size, 0u64);
    while left > 0 {
        block[..8].copy_from_slice(&index.to_le_bytes());
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).expect("write");
        left -= n as u64;
        index += 1;
    }
    f.flush().expect("flush");
}
