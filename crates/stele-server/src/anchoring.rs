//! Anchoring inside the gateway: the cadence (every interval, every N
//! events, on key rotation), the outbox uploads with retries, anchors on
//! demand for clients waiting on `?wait=anchored`, and a `shutdown` anchor
//! when the server stops — all through [`stele_anchorer::Anchorer`], on a
//! thread of its own with a connection of its own.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use stele_anchorer::{AnchorPolicy, Anchorer, UploadReport, Wake};
use stele_ledger::{ChainId, Keyring};
use stele_store::DbLocation;
use stele_worm::ObjectStore;

/// Loads the HMAC keyring (re-read each round, so a rotation made by
/// `stele keys rotate` is noticed).
pub type KeyringSource = Arc<dyn Fn() -> Result<Keyring, String> + Send + Sync>;

/// What anchoring needs.
pub struct AnchoringSetup {
    /// The ledger (the anchorer opens its own connection).
    pub db: DbLocation,
    /// Where anchors go.
    pub target: ObjectStore,
    /// Lock mode, retention, cadence, prefix.
    pub policy: AnchorPolicy,
    /// The chains to anchor (`None`: every chain).
    pub chains: Option<Vec<ChainId>>,
    /// Signs anchors.
    pub signer: signed_note::StandardSigner,
    /// The HMAC keyring.
    pub keyring: KeyringSource,
    /// This node's stable identity for outbox leases (see
    /// [`Anchorer::with_lease_owner`]); `None`: a new one per start.
    pub lease_owner: Option<String>,
}

/// What anchoring did lately, for `/v1/anchors`, `/readyz` and `/metrics`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AnchoringStatus {
    /// Where anchors go (says NOT WORM for a local directory).
    pub target: String,
    /// Rounds completed.
    pub rounds: u64,
    /// Anchors uploaded since the server started.
    pub uploaded: u64,
    /// Upload attempts that failed (they are retried).
    pub failed_attempts: u64,
    /// The last error that stopped a round (cleared by a good round).
    pub last_error: Option<String>,
    /// Chains whose anchors are held back for investigation.
    pub refused_chains: Vec<String>,
    /// Per chain, when its newest anchor was written to the anchor store
    /// (and read back) — the age an alert watches.
    pub newest_written: std::collections::BTreeMap<String, String>,
}

enum Command {
    AnchorNow(ChainId),
    Stop,
}

/// The running anchorer.
pub struct Anchoring {
    commands: Mutex<Sender<Command>>,
    status: Arc<Mutex<AnchoringStatus>>,
    done: Mutex<Option<Receiver<()>>>,
}

impl Anchoring {
    /// Starts anchoring on a thread of its own; S3 calls run on `runtime`.
    pub fn start(setup: AnchoringSetup, runtime: tokio::runtime::Handle) -> Self {
        let (commands, inbox) = std::sync::mpsc::channel();
        let (done_tx, done) = std::sync::mpsc::channel();
        let status = Arc::new(Mutex::new(AnchoringStatus {
            target: setup.target.describe(),
            ..AnchoringStatus::default()
        }));
        let thread_status = Arc::clone(&status);
        let spawned = std::thread::Builder::new()
            .name("stele-anchoring".into())
            .spawn(move || {
                run(&setup, &runtime, &inbox, &thread_status);
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the anchoring thread; anchors wait in the outbox");
            if let Ok(mut s) = status.lock() {
                s.last_error = Some(format!("anchoring did not start: {e}"));
            }
        }
        Self {
            commands: Mutex::new(commands),
            status,
            done: Mutex::new(Some(done)),
        }
    }

    /// Asks for an anchor of `chain`'s head now (coalesced with other asks).
    pub fn anchor_now(&self, chain: &ChainId) {
        if let Ok(commands) = self.commands.lock() {
            let _ = commands.send(Command::AnchorNow(chain.clone()));
        }
    }

    /// What anchoring did lately.
    pub fn status(&self) -> AnchoringStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Writes the `shutdown` anchors and uploads them, waiting at most
    /// `patience`; what could not be uploaded by then stays in the outbox
    /// for the next start. Returns whether anchoring finished in time.
    pub fn stop(&self, patience: Duration) -> bool {
        if let Ok(commands) = self.commands.lock() {
            let _ = commands.send(Command::Stop);
        }
        let done = self.done.lock().ok().and_then(|mut d| d.take());
        match done {
            Some(done) => !matches!(done.recv_timeout(patience), Err(RecvTimeoutError::Timeout)),
            None => true,
        }
    }
}

/// The anchoring loop: [`Anchorer::run_until`] until asked to stop, started
/// again (after a pause) whenever it stops on an error — a lost database
/// connection, a refused build — so anchoring never silently ends.
fn run(
    setup: &AnchoringSetup,
    runtime: &tokio::runtime::Handle,
    inbox: &Receiver<Command>,
    status: &Mutex<AnchoringStatus>,
) {
    let mut stopping = false;
    let mut pause = Duration::from_secs(1);
    while !stopping {
        let mut wait = |pause: Duration| -> Wake {
            let first = match inbox.recv_timeout(pause) {
                Ok(command) => command,
                Err(RecvTimeoutError::Timeout) => return Wake::Elapsed,
                Err(RecvTimeoutError::Disconnected) => {
                    stopping = true;
                    return Wake::Stop;
                }
            };
            let mut wanted = Vec::new();
            for command in std::iter::once(first).chain(inbox.try_iter()) {
                match command {
                    Command::Stop => stopping = true,
                    Command::AnchorNow(chain) if !wanted.contains(&chain) => wanted.push(chain),
                    Command::AnchorNow(_) => {}
                }
            }
            if stopping {
                Wake::Stop
            } else {
                Wake::AnchorNow(wanted)
            }
        };
        let outcome = run_once(setup, runtime, status, &mut wait);
        match outcome {
            Ok(report) => {
                record(status, &report);
                if let Ok(mut s) = status.lock() {
                    s.last_error = None;
                }
                // `run_until` returns only when told to stop.
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "anchoring stopped; starting again shortly (anchors wait in the outbox)");
                if let Ok(mut s) = status.lock() {
                    s.last_error = Some(e);
                }
                if stopping {
                    return;
                }
                match inbox.recv_timeout(pause) {
                    Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                    Ok(Command::AnchorNow(_)) | Err(RecvTimeoutError::Timeout) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn run_once(
    setup: &AnchoringSetup,
    runtime: &tokio::runtime::Handle,
    status: &Mutex<AnchoringStatus>,
    wait: &mut dyn FnMut(Duration) -> Wake,
) -> Result<UploadReport, String> {
    let keyring = (setup.keyring)()?;
    let mut store = stele_store::open(&setup.db).map_err(|e| e.to_string())?;
    remember_newest(store.as_mut(), status);
    let mut anchorer = Anchorer::new(store.as_mut(), &setup.signer, &keyring, &setup.policy)
        .map_err(|e| e.to_string())?;
    if let Some(owner) = &setup.lease_owner {
        anchorer = anchorer.with_lease_owner(owner.clone());
    }
    let mut key_id = || {
        (setup.keyring)()
            .map(|k| k.active().id().to_string())
            .map_err(stele_anchorer::AnchorerError::Config)
    };
    anchorer
        .run_until(
            &setup.target,
            runtime,
            setup.chains.as_deref(),
            &mut key_id,
            &mut |report| record(status, report),
            wait,
        )
        .map_err(|e| e.to_string())
}

/// Each chain's newest written anchor, as the database recorded it (one
/// query per chain), so the age metric is there from the start.
fn remember_newest(store: &mut dyn stele_store::LedgerStore, status: &Mutex<AnchoringStatus>) {
    let Ok(heads) = store.chains() else { return };
    for head in heads {
        let Ok(chain) = ChainId::new(&head.chain_id) else {
            continue;
        };
        if let Ok(Some(last)) = store.last_anchor(&chain)
            && let Some(at) = last.uploaded_at
            && let Ok(mut s) = status.lock()
        {
            s.newest_written.insert(head.chain_id.clone(), at);
        }
    }
}

fn record(status: &Mutex<AnchoringStatus>, report: &UploadReport) {
    for (record, e) in &report.failed {
        tracing::warn!(chain = %record.chain_id, anchor_seq = record.anchor_seq, error = %e, "anchor upload failed; it stays in the outbox and is retried");
    }
    for r in &report.refused {
        tracing::error!(chain = %r.chain_id, error = %r.error, "anchors of this chain are held back: investigate");
    }
    if let Ok(mut s) = status.lock() {
        s.rounds += 1;
        s.uploaded += report.uploaded.len() as u64;
        // Written in this round: now, unless the record says when.
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        for r in &report.uploaded {
            let at = r.uploaded_at.clone().unwrap_or_else(|| now.clone());
            s.newest_written.insert(r.chain_id.clone(), at);
        }
        s.failed_attempts += report.failed.len() as u64;
        for r in &report.refused {
            if !s.refused_chains.contains(&r.chain_id) {
                s.refused_chains.push(r.chain_id.clone());
            }
        }
    }
}
