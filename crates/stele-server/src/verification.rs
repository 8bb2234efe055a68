//! The scheduled verification job: on an interval (and when an operator
//! asks), every chain is verified from the database — every row
//! recomputed, compared with the anchors the ledger recorded — and each
//! chain's newest uploaded anchor is read back from the anchor store and
//! compared byte for byte with what the ledger recorded. The result goes to
//! the log, `/metrics`, `GET /v1/verification`, and an optional webhook
//! whose body is signed with HMAC-SHA256 (`X-Stele-Signature: sha256=…`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use serde::Serialize;
use sha2::Sha256;
use stele_ledger::ChainId;
use stele_store::{DbLocation, ReadSnapshot, Store, StoreOptions};
use stele_worm::ObjectStore;
use tokio::sync::Notify;

use crate::anchoring::KeyringSource;

/// Where results are posted, and the key their signature is made with.
pub struct Webhook {
    /// `http://` or `https://` URL.
    pub url: String,
    /// HMAC-SHA256 key (never logged).
    pub secret: Vec<u8>,
}

/// What the job needs.
pub struct VerificationSetup {
    /// The ledger (opened read-only for each run).
    pub db: DbLocation,
    /// Time between runs.
    pub interval: Duration,
    /// The HMAC keyring the links are checked with.
    pub keyring: KeyringSource,
    /// The verifier key the recorded anchors' signatures are checked with.
    pub verifier_key: String,
    /// Where the anchors are, to read the newest ones back.
    pub anchor_store: Option<ObjectStore>,
    /// The anchor key prefix in that store (`[anchor] prefix`).
    pub anchor_prefix: Option<String>,
    /// Where to post each result.
    pub webhook: Option<Webhook>,
}

/// A chain's newest anchor in the anchor store, against the database.
#[derive(Clone, Debug, Serialize)]
pub struct AnchorReadBack {
    /// Its seq.
    pub anchor_seq: u64,
    /// Its key in the store.
    pub object_key: String,
    /// The version read: the first stored at that key (`None` for a local
    /// directory).
    pub version_id: Option<String>,
    /// Events it covers.
    pub tree_size: u64,
    /// What the store says of it: `matches (…)` when its SHA-256 checksum
    /// and metadata are those of the bytes read and it is locked (how, and
    /// until when), or what differs.
    pub in_store: String,
    /// What the database says of it: `matches` (the database holds at least
    /// that many events, with that root, and its outbox copy is the same
    /// bytes), or what differs.
    pub in_database: String,
}

/// One chain's result.
#[derive(Clone, Debug, Serialize)]
pub struct ChainResult {
    /// Chain.
    pub chain_id: String,
    /// True when nothing was found.
    pub ok: bool,
    /// Events recomputed.
    pub events_checked: u64,
    /// The first seq found altered, if any.
    pub first_bad_seq: Option<u64>,
    /// How many findings.
    pub total_findings: usize,
    /// The first findings (at most 20).
    pub findings: Vec<stele_verify::Finding>,
    /// The newest uploaded anchor read back from the store.
    pub newest_anchor: Option<AnchorReadBack>,
}

/// One run's result.
#[derive(Clone, Debug, Serialize)]
pub struct VerificationResult {
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it finished.
    pub finished_at: String,
    /// True when every chain was verified and nothing was found.
    pub ok: bool,
    /// Why the run could not be completed, if it could not.
    pub error: Option<String>,
    /// Per chain.
    pub chains: Vec<ChainResult>,
}

/// The running job.
pub struct Verification {
    latest: Mutex<Option<VerificationResult>>,
    runs: std::sync::atomic::AtomicU64,
    failed_runs: std::sync::atomic::AtomicU64,
    run_now: Notify,
}

impl Verification {
    /// The newest result.
    pub fn latest(&self) -> Option<VerificationResult> {
        self.latest.lock().ok().and_then(|l| l.clone())
    }

    /// Runs so far, and those that found something or could not complete.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        (
            self.runs.load(Ordering::Relaxed),
            self.failed_runs.load(Ordering::Relaxed),
        )
    }

    /// Starts a run now (coalesced with one already asked for).
    pub fn run_now(&self) {
        self.run_now.notify_one();
    }
}

/// Starts the job on the current runtime.
pub fn start(setup: VerificationSetup) -> Arc<Verification> {
    let job = Arc::new(Verification {
        latest: Mutex::new(None),
        runs: 0.into(),
        failed_runs: 0.into(),
        run_now: Notify::new(),
    });
    let runner = Arc::clone(&job);
    tokio::spawn(async move {
        let setup = Arc::new(setup);
        loop {
            tokio::select! {
                () = tokio::time::sleep(setup.interval) => {}
                () = runner.run_now.notified() => {}
            }
            let result = run_once(&setup).await;
            report(&runner, &setup, result).await;
        }
    });
    job
}

async fn report(job: &Verification, setup: &VerificationSetup, result: VerificationResult) {
    use std::sync::atomic::Ordering;
    if result.ok {
        tracing::info!(
            chains = result.chains.len(),
            "scheduled verification: no finding"
        );
    } else {
        for c in result.chains.iter().filter(|c| !c.ok) {
            tracing::error!(chain = %c.chain_id, first_bad_seq = ?c.first_bad_seq, findings = c.total_findings, "scheduled verification FAILED: the ledger differs from what was committed");
        }
        if let Some(e) = &result.error {
            tracing::error!(error = %e, "scheduled verification could not be completed");
        }
    }
    // The result first, then the counts: whoever sees a run counted sees its result.
    let ok = result.ok;
    let webhook_body = setup.webhook.as_ref().map(|_| result.clone());
    if let Ok(mut latest) = job.latest.lock() {
        *latest = Some(result);
    }
    if !ok {
        job.failed_runs.fetch_add(1, Ordering::Relaxed);
    }
    job.runs.fetch_add(1, Ordering::Relaxed);
    if let (Some(webhook), Some(result)) = (&setup.webhook, webhook_body) {
        // On a task of its own and bounded as a whole: a receiver that
        // answers slowly, or never stops answering, cannot hold up the
        // next verification run.
        let (url, secret) = (webhook.url.clone(), webhook.secret.clone());
        tokio::spawn(async move {
            let webhook = Webhook { url, secret };
            match tokio::time::timeout(WEBHOOK_PATIENCE, post(&webhook, &result)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the verification webhook was not delivered")
                }
                Err(_) => tracing::warn!(
                    "the verification webhook did not answer within {WEBHOOK_PATIENCE:?}"
                ),
            }
        });
    }
}

/// The longest one webhook delivery may take, answer included.
const WEBHOOK_PATIENCE: Duration = Duration::from_secs(15);

fn now_text() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

async fn run_once(setup: &Arc<VerificationSetup>) -> VerificationResult {
    let started_at = now_text();
    // Read-only sessions of its own: the job can never change what it checks.
    let opened = Store::open_read_only(
        &setup.db,
        StoreOptions {
            readers: 1,
            ..StoreOptions::default()
        },
    )
    .await
    .map_err(|e| e.to_string());
    let (mut chains, mut error) = match &opened {
        Ok(db) => match verify_database(setup, db).await {
            Ok(chains) => (chains, None),
            Err(e) => (Vec::new(), Some(e)),
        },
        Err(e) => (Vec::new(), Some(e.clone())),
    };
    if let (Some(store), Ok(db)) = (&setup.anchor_store, &opened) {
        match read_back(setup, db, store, &mut chains).await {
            Ok(()) => {}
            Err(e) => error = Some(e),
        }
    }
    let ok = error.is_none() && chains.iter().all(|c| c.ok);
    VerificationResult {
        started_at,
        finished_at: now_text(),
        ok,
        error,
        chains,
    }
}

/// Every chain, each in one snapshot.
async fn verify_database(
    setup: &VerificationSetup,
    store: &Store,
) -> Result<Vec<ChainResult>, String> {
    let keyring = (setup.keyring)()?;
    let heads = store.chains().await.map_err(|e| e.to_string())?;
    let mut results = Vec::with_capacity(heads.len());
    for head in heads {
        let chain = ChainId::new(&head.chain_id).map_err(|e| e.to_string())?;
        let checked = stele_audit::verify_db_chain(
            store,
            &chain,
            Some(&keyring),
            Some(&setup.verifier_key),
            &mut (),
            &mut |_| {},
        )
        .await
        .map_err(|e| e.to_string())?;
        results.push(ChainResult {
            chain_id: chain.to_string(),
            ok: checked.is_clean(),
            events_checked: checked.report.events_checked,
            first_bad_seq: checked
                .report
                .first_bad_seq
                .or_else(|| checked.findings.iter().filter_map(|f| f.seq).min()),
            total_findings: checked.findings.len(),
            findings: checked.findings.into_iter().take(20).collect(),
            newest_anchor: None,
        });
    }
    Ok(results)
}

/// Reads each chain's newest anchor from the anchor store — the store, not
/// the database's record of it, which a database writer controls — checks
/// its signature, and compares it with the database: the database must hold
/// at least the events it covers, with the root it signed, and its outbox
/// copy must be the same bytes. A chain with anchors in the store but no
/// events in the database is a finding too.
async fn read_back(
    setup: &VerificationSetup,
    db: &Store,
    target: &ObjectStore,
    chains: &mut Vec<ChainResult>,
) -> Result<(), String> {
    let root = match &setup.anchor_prefix {
        Some(p) if !p.is_empty() => format!("{}/anchors/", p.trim_end_matches('/')),
        _ => "anchors/".to_owned(),
    };
    let keys = stored_keys(target, &root).await?;
    let mut in_store: std::collections::BTreeMap<String, Vec<StoredKey>> = Default::default();
    for key in keys {
        if let Some(chain) = key
            .key
            .strip_prefix(&root)
            .and_then(|rest| rest.split('/').next())
        {
            in_store.entry(chain.to_owned()).or_default().push(key);
        }
    }
    for (chain, keys) in &mut in_store {
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        if ChainId::new(chain).is_err() {
            continue;
        }
        if !chains.iter().any(|c| &c.chain_id == chain) {
            chains.push(ChainResult {
                chain_id: chain.clone(),
                ok: true,
                events_checked: 0,
                first_bad_seq: None,
                total_findings: 0,
                findings: Vec::new(),
                newest_anchor: None,
            });
        }
    }
    for result in chains.iter_mut() {
        let Some(keys) = in_store.get(&result.chain_id) else {
            continue;
        };
        let newest = newest_signed(target, keys, &result.chain_id, setup).await;
        let (key, anchor, bytes) = match newest {
            Ok(Some(found)) => found,
            // Objects under the chain's anchors, none of them one of ours: a
            // store that cannot show its newest anchor cannot vouch for
            // anything, and saying so is the only safe answer.
            Ok(None) => {
                result.ok = false;
                result.total_findings += 1;
                result.newest_anchor = Some(AnchorReadBack {
                    anchor_seq: 0,
                    object_key: String::new(),
                    version_id: None,
                    tree_size: 0,
                    in_store: format!(
                        "none of the newest {NEWEST_KEYS_TRIED} keys under this chain's anchors holds, as its first version, an anchor of it signed by the verifier key at its own key"
                    ),
                    in_database: "not compared".to_owned(),
                });
                continue;
            }
            Err(e) => {
                return Err(format!(
                    "reading the anchors of chain {} back: {e}",
                    result.chain_id
                ));
            }
        };
        let in_store = check_stored(target, &key, &bytes).await?;
        let in_database = compare_with_database(db, &result.chain_id, &anchor, &bytes).await?;
        for finding in [&in_store, &in_database] {
            if !finding.starts_with(MATCHES) {
                result.ok = false;
                result.total_findings += 1;
            }
        }
        result.newest_anchor = Some(AnchorReadBack {
            anchor_seq: anchor.anchor_seq,
            object_key: key.key,
            version_id: key.version_id,
            tree_size: anchor.tree_size,
            in_store,
            in_database,
        });
    }
    Ok(())
}

/// Keys read from the newest down before giving up on finding a signed
/// anchor among objects others put there.
const NEWEST_KEYS_TRIED: usize = 50;

/// A key under the anchors, and the version of it that holds it.
#[derive(Clone, Debug)]
struct StoredKey {
    key: String,
    /// The first version stored (`None` in a local directory): a
    /// create-only writer's own, which Object Lock keeps. Versions written
    /// over it later, and delete markers, hide nothing from this job.
    version_id: Option<String>,
}

/// Every key under `root`, with the version that holds it. In a bucket the
/// keys come from the version listing, so a key hidden behind a delete
/// marker is still read, and its first version is the one read: someone
/// who may write the bucket could put junk, or an older anchor, over the
/// newest anchor's key, and a job reading only current versions would
/// then settle on an older anchor and pass a database cut back to it.
async fn stored_keys(target: &ObjectStore, root: &str) -> Result<Vec<StoredKey>, String> {
    match target {
        ObjectStore::S3(s3) => {
            let listed = s3
                .list_versions(root)
                .await
                .map_err(|e| format!("listing the anchors' versions: {e}"))?;
            let mut first: std::collections::BTreeMap<String, Option<String>> = Default::default();
            // Each key's content versions come newest first: the last one
            // seen is the first stored.
            for v in listed.into_iter().filter(|v| !v.delete_marker) {
                first.insert(v.key, v.version_id);
            }
            Ok(first
                .into_iter()
                .map(|(key, version_id)| StoredKey { key, version_id })
                .collect())
        }
        ObjectStore::Local(_) => Ok(target
            .list(root)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|key| StoredKey {
                key,
                version_id: None,
            })
            .collect()),
    }
}

/// The newest key of a chain whose first version is an anchor of that
/// chain signed by the verifier key, at its own key (anything else there
/// is passed over: anyone who may write the bucket could put junk after
/// the real anchors).
async fn newest_signed(
    target: &ObjectStore,
    keys: &[StoredKey],
    chain: &str,
    setup: &VerificationSetup,
) -> Result<Option<(StoredKey, stele_anchor::Anchor, Vec<u8>)>, stele_worm::WormError> {
    let Ok(chain_id) = ChainId::new(chain) else {
        return Ok(None);
    };
    for stored in keys.iter().rev().take(NEWEST_KEYS_TRIED) {
        let key = &stored.key;
        let fetched = match target {
            ObjectStore::S3(s3) => {
                s3.get_version_bounded(
                    key,
                    stored.version_id.as_deref(),
                    stele_verify::MAX_ANCHOR_BYTES,
                )
                .await?
            }
            ObjectStore::Local(_) => Some(target.get(key).await?),
        };
        let Some(bytes) = fetched else { continue };
        let Ok(anchor) = stele_anchor::Anchor::from_bytes(&bytes) else {
            continue;
        };
        // Ours, and where it belongs: a copy of an older anchor put at a
        // key that sorts later is not the newest anchor.
        let at_own_key = time::OffsetDateTime::parse(
            &anchor.ts_utc,
            &time::format_description::well_known::Rfc3339,
        )
        .ok()
        .and_then(|ts| {
            stele_anchor::is_anchor_key(
                setup.anchor_prefix.as_deref(),
                &chain_id,
                ts,
                anchor.anchor_seq,
                key,
                &bytes,
            )
            .ok()
        })
        .unwrap_or(false);
        if anchor.chain_id == chain && at_own_key && anchor.verify(&setup.verifier_key).is_ok() {
            return Ok(Some((stored.clone(), anchor, bytes)));
        }
    }
    Ok(None)
}

/// What a finding that is none says.
const MATCHES: &str = "matches";

/// What the store says of the version read: its SHA-256 (the checksum the
/// store computed, and the `sha256` metadata stele wrote) must be that of
/// the bytes read, and it must be under an Object Lock retention that has
/// not run out. A local directory is not WORM storage and has neither.
async fn check_stored(
    target: &ObjectStore,
    key: &StoredKey,
    bytes: &[u8],
) -> Result<String, String> {
    let ObjectStore::S3(s3) = target else {
        return Ok(format!(
            "{MATCHES} (a local directory: no checksum or lock to check, not WORM)"
        ));
    };
    let facts = s3
        .head(&key.key, key.version_id.as_deref())
        .await
        .map_err(|e| format!("reading the lock of {}: {e}", key.key))?;
    let Some(facts) = facts else {
        return Ok("the version read is gone from the store".to_owned());
    };
    let read = stele_worm::sha256_hex(bytes);
    let mut wrong = Vec::new();
    if facts.size != bytes.len() as u64 {
        wrong.push(format!(
            "the store says {} bytes, {} were read",
            facts.size,
            bytes.len()
        ));
    }
    for (what, stored) in [
        ("the store's SHA-256 checksum", &facts.checksum_sha256),
        ("its sha256 metadata", &facts.metadata_sha256),
    ] {
        if let Some(sum) = stored
            && !sum.eq_ignore_ascii_case(&read)
        {
            wrong.push(format!("{what} is {sum}, the bytes read hash to {read}"));
        }
    }
    // Some stores (Ceph RGW) keep no checksum: the bytes read are then
    // what was hashed, read whole.
    let hashed = if facts.checksum_sha256.is_some() {
        "SHA-256 matches the store's checksum"
    } else {
        "no store checksum; the bytes read whole"
    };
    let now = time::OffsetDateTime::now_utc();
    let lock = match (facts.lock_mode, facts.retain_until) {
        (Some(mode), Some(until)) if until > now => {
            format!("locked {} until {until}", mode.as_str())
        }
        (Some(mode), Some(until)) => {
            wrong.push(format!("its {} lock ran out at {until}", mode.as_str()));
            String::new()
        }
        _ => {
            wrong.push("it is not under an Object Lock retention".to_owned());
            String::new()
        }
    };
    if wrong.is_empty() {
        Ok(format!("{MATCHES} ({hashed}, {lock})"))
    } else {
        Ok(wrong.join("; "))
    }
}

/// What the database says of an anchor taken from the store, all read from
/// one snapshot.
async fn compare_with_database(
    db: &Store,
    chain: &str,
    anchor: &stele_anchor::Anchor,
    bytes: &[u8],
) -> Result<String, String> {
    let chain_id = ChainId::new(chain).map_err(|e| e.to_string())?;
    let mut snapshot = db.read_snapshot().await.map_err(|e| e.to_string())?;
    let compared = compare_in_snapshot(&mut snapshot, &chain_id, anchor, bytes).await;
    let ended = snapshot.end().await.map_err(|e| e.to_string());
    let compared = compared?;
    ended?;
    Ok(compared)
}

async fn compare_in_snapshot(
    store: &mut ReadSnapshot,
    chain_id: &ChainId,
    anchor: &stele_anchor::Anchor,
    bytes: &[u8],
) -> Result<String, String> {
    let size = store
        .head(chain_id)
        .await
        .map_err(|e| e.to_string())?
        .map_or(0, |h| h.size);
    if size < anchor.tree_size {
        return Ok(format!(
            "the database holds {size} events, fewer than the {} this anchor covers: events were removed",
            anchor.tree_size
        ));
    }
    match store.root_and_proof(chain_id, anchor.tree_size, None).await {
        Ok((root, _)) if stele_ledger::hex_hash(&root) == anchor.root_hash => {}
        Ok(_) => {
            return Ok(format!(
                "the database's tree of {} events has another root than the anchor signed: anchored events were changed",
                anchor.tree_size
            ));
        }
        Err(e) => {
            return Ok(format!(
                "the database's tree of {} events cannot be read: {e}",
                anchor.tree_size
            ));
        }
    }
    let recorded = store
        .anchors(Some(chain_id), None)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|r| r.anchor_seq == anchor.anchor_seq);
    Ok(match recorded {
        Some(r) if r.body == bytes => MATCHES.to_owned(),
        Some(_) => "the database's outbox copy of this anchor has other bytes".to_owned(),
        None => "the database has no record of this anchor (its outbox row was removed)".to_owned(),
    })
}

/// The signature header's value for a delivery at `timestamp` (Unix
/// seconds) of `body`: HMAC-SHA256 over `<timestamp>.<body>`, so a receiver
/// that checks the timestamp is recent cannot be fed an old result again.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length: this never fails.
    let Ok(mut mac) = <Hmac<Sha256>>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post(webhook: &Webhook, result: &VerificationResult) -> Result<(), String> {
    use http_body_util::{BodyExt as _, Full};
    let body = serde_json::to_vec(&serde_json::json!({
        "event": "verification.completed",
        "result": result,
    }))
    .map_err(|e| e.to_string())?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| e.to_string())?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<bytes::Bytes>>(https);
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let request = axum::http::Request::post(&webhook.url)
        .header("content-type", "application/json")
        .header("x-stele-event", "verification.completed")
        .header("x-stele-timestamp", timestamp.to_string())
        .header(
            "x-stele-signature",
            signature(&webhook.secret, timestamp, &body),
        )
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    // The answer's body is not needed; at most a little of it is read.
    let _ = http_body_util::Limited::new(response.into_body(), 64 * 1024)
        .collect()
        .await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the webhook answered {status}"))
    }
}
