//! Verification of a live ledger's database, shared by `stele verify log`
//! (database only) and the gateway's scheduled verification: every row
//! recomputed (canonical bytes, leaves, HMAC links, Merkle nodes, head) and
//! compared with the anchors the ledger recorded in `stele_anchors`, all in
//! one consistent snapshot, so a ledger others append to meanwhile is
//! reported as one state of it — never a false alarm — while an edit is
//! named by seq.

use stele_ledger::verify::{ClaimedHead, LogVerifier, VerifyReport};
use stele_ledger::{ChainId, Keyring, StoredEvent};
use stele_store::{ReadSnapshot, Store, StoreError};

/// Sees each row once it is checked (the CLI collects evidence records
/// from the same read).
pub type Observer<'a> = dyn FnMut(StoredEvent<'_>) + Send + 'a;

/// How far a scan is; a terminal shows it as a progress bar.
pub trait ScanProgress: Send {
    /// The scan starts, with this many rows to read.
    fn start(&mut self, total: u64);
    /// This many rows were read.
    fn at(&mut self, done: u64);
    /// The scan ended.
    fn finish(&mut self);
}

/// No progress shown.
impl ScanProgress for () {
    fn start(&mut self, _: u64) {}
    fn at(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

/// What the anchors the ledger recorded itself (`stele_anchors`) showed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecordedAnchors {
    pub chain_id: String,
    /// Rows in stele_anchors for the chain.
    pub recorded: usize,
    /// Of those, compared with the events (parsed, and signed by the
    /// verifier key when one is known).
    pub compared: usize,
    /// Whether signatures were checked (a verifier key was known).
    pub signatures_checked: bool,
    /// The largest tree size they cover.
    pub newest_tree_size: Option<u64>,
    /// What comparing them with the events found.
    pub findings: Vec<stele_verify::Finding>,
}

/// One chain from the database alone.
#[derive(Clone, Debug)]
pub struct DbChain {
    /// The row-level verification.
    pub report: VerifyReport,
    /// Every finding, row-level and against the recorded anchors.
    pub findings: Vec<stele_verify::Finding>,
    /// The recorded anchors and what comparing them found.
    pub recorded: RecordedAnchors,
}

impl DbChain {
    /// Nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

fn recorded_finding(
    aspect: stele_verify::Aspect,
    kind: &str,
    anchor_seq: u64,
    message: String,
) -> stele_verify::Finding {
    stele_verify::Finding {
        aspect,
        kind: kind.into(),
        subject: format!("recorded anchor #{anchor_seq} (stele_anchors)"),
        anchor_seq: Some(anchor_seq),
        seq: None,
        at: None,
        message,
    }
}

/// Recomputes `chain` from its stored rows and compares it with the stored
/// head and every row's stored Merkle nodes, all read from `snapshot`, so
/// verifying a ledger that others are appending to reports only what was
/// really changed.
///
/// # Errors
///
/// [`StoreError::UnknownChain`] or storage errors; tampering is reported in
/// the [`VerifyReport`].
pub async fn verify_chain(
    snapshot: &mut ReadSnapshot,
    chain: &ChainId,
    keys: Option<&Keyring>,
    progress: &mut dyn ScanProgress,
    observe: &mut Observer<'_>,
) -> Result<VerifyReport, StoreError> {
    let mut verifier = LogVerifier::new(chain.clone(), keys);
    let (claimed, _) = scan_chain(
        snapshot,
        chain,
        &mut |e, nodes| verifier.check(e, Some(nodes)),
        progress,
        observe,
    )
    .await?;
    Ok(verifier.finish(Some(&claimed)))
}

/// Verifies one chain from the database, and compares it with the anchors
/// the ledger recorded in `stele_anchors`: each one's tree size, root hash
/// and last event hash recomputed from the rows. A database writer can
/// delete those rows too, so this catches a careless truncation, not a
/// careful one: the verdict says completeness was not checked.
///
/// One snapshot for the recorded anchors, the head, the rows and the stored
/// root: a ledger others append to is reported as one state.
///
/// # Errors
///
/// Database errors (a finding is not an error: it is in the result).
pub async fn verify_db_chain(
    store: &Store,
    chain: &ChainId,
    keys: Option<&Keyring>,
    verifier: Option<&str>,
    progress: &mut dyn ScanProgress,
    observe: &mut Observer<'_>,
) -> Result<DbChain, StoreError> {
    let mut snapshot = store.read_snapshot().await?;
    let checked =
        verify_db_chain_in_snapshot(&mut snapshot, chain, keys, verifier, progress, observe).await;
    let ended = snapshot.end().await;
    let checked = checked?;
    ended?;
    Ok(checked)
}

async fn verify_db_chain_in_snapshot(
    store: &mut ReadSnapshot,
    chain: &ChainId,
    keys: Option<&Keyring>,
    verifier: Option<&str>,
    progress: &mut dyn ScanProgress,
    observe: &mut Observer<'_>,
) -> Result<DbChain, StoreError> {
    use stele_verify::Aspect;
    let records = store.anchors(Some(chain), None).await?;
    let mut findings = Vec::new();
    let mut anchors = Vec::new();
    let mut expected_seq = 0u64;
    for r in &records {
        if r.anchor_seq > expected_seq {
            findings.push(recorded_finding(
                Aspect::Completeness,
                "recorded_anchor_missing",
                expected_seq,
                format!(
                    "stele_anchors has no row for anchor #{expected_seq}..#{} of chain {chain}: rows were deleted",
                    r.anchor_seq - 1
                ),
            ));
        }
        expected_seq = r.anchor_seq.saturating_add(1);
        let anchor = match stele_anchor::Anchor::from_bytes(&r.body) {
            Ok(a) if a.chain_id == chain.as_str() && a.anchor_seq == r.anchor_seq => a,
            Ok(a) => {
                findings.push(recorded_finding(
                    Aspect::Integrity,
                    "recorded_anchor_altered",
                    r.anchor_seq,
                    format!(
                        "the stored body is anchor #{} of chain {:?}, not the row's",
                        a.anchor_seq, a.chain_id
                    ),
                ));
                continue;
            }
            Err(e) => {
                findings.push(recorded_finding(
                    Aspect::Integrity,
                    "recorded_anchor_altered",
                    r.anchor_seq,
                    format!("the stored body is not an anchor: {e}"),
                ));
                continue;
            }
        };
        if let Some(vkey) = verifier
            && let Err(e) = anchor.verify(vkey)
        {
            findings.push(recorded_finding(
                Aspect::Integrity,
                "recorded_anchor_altered",
                r.anchor_seq,
                format!("the stored body's signature does not verify: {e}"),
            ));
            continue;
        }
        anchors.push(anchor);
    }
    let compared = anchors.len();
    let newest_tree_size = anchors.iter().map(|a| a.tree_size).max();
    let mut log = stele_verify::AnchoredLog::new(chain.clone(), keys, anchors);
    let (claimed, _) = scan_db_chain(store, chain, &mut log, progress, observe).await?;
    let (report, mut all) = log.finish(Some(&claimed));
    // `finish` lists the row-level findings (one per report finding) first,
    // then those against the anchors.
    let against_anchors = all.split_off(report.findings.len().min(all.len()));
    findings.extend(against_anchors);
    all.extend(findings.iter().cloned());
    Ok(DbChain {
        report,
        findings: all,
        recorded: RecordedAnchors {
            chain_id: chain.to_string(),
            recorded: records.len(),
            compared,
            signatures_checked: verifier.is_some(),
            newest_tree_size,
            findings,
        },
    })
}

/// Streams every row of `chain` through `log` (and `observe`) with a
/// progress bar, and reads the head and stored root the rows are checked
/// against, all from `snapshot`: rows appended meanwhile are neither
/// scanned nor reported as inserted. Returns that claimed head and the
/// number of rows read.
///
/// # Errors
///
/// Database errors.
pub async fn scan_db_chain(
    snapshot: &mut ReadSnapshot,
    chain: &ChainId,
    log: &mut stele_verify::AnchoredLog<'_>,
    progress: &mut dyn ScanProgress,
    observe: &mut Observer<'_>,
) -> Result<(ClaimedHead, u64), StoreError> {
    scan_chain(
        snapshot,
        chain,
        &mut |e, nodes| log.check(e, Some(nodes)),
        progress,
        observe,
    )
    .await
}

/// The scan both verifications share: every row to `check` and `observe`,
/// then the head and the stored root the rows are to match.
async fn scan_chain(
    snapshot: &mut ReadSnapshot,
    chain: &ChainId,
    check: &mut (dyn FnMut(StoredEvent<'_>, &[u8]) + Send),
    progress: &mut dyn ScanProgress,
    observe: &mut Observer<'_>,
) -> Result<(ClaimedHead, u64), StoreError> {
    let head = snapshot
        .head(chain)
        .await?
        .ok_or_else(|| StoreError::UnknownChain(chain.to_string()))?;
    progress.start(head.size);
    let mut n = 0u64;
    snapshot
        .scan(chain, 0, None, &mut |e, nodes| {
            check(e, nodes);
            observe(e);
            n += 1;
            if n.is_multiple_of(16_384) {
                progress.at(n);
            }
            Ok(())
        })
        .await?;
    progress.finish();
    let stored_root = match snapshot.root_and_proof(chain, head.size, None).await {
        Ok((root, _)) => Ok(root),
        // Missing stored hashes are themselves tampering: a finding.
        Err(StoreError::Corrupt(why)) => Err(why),
        Err(e) => return Err(e),
    };
    let claimed = ClaimedHead {
        size: head.size,
        head_hash: head.head_hash,
        stored_root,
    };
    Ok((claimed, n))
}
