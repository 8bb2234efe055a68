//! Anchoring inside the gateway: the cadence (every interval, every N
//! events, on key rotation), the outbox uploads with retries, anchors on
//! demand for clients waiting on `?wait=anchored`, and a `shutdown` anchor
//! when the server stops — all through [`stele_anchorer::Anchorer`], as a
//! task on the server's runtime over the server's own [`Store`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use stele_anchorer::{AnchorPolicy, Anchorer, UploadReport, Waiter, Wake};
use stele_ledger::ChainId;
use stele_store::Store;
use stele_worm::ObjectStore;
use tokio::sync::mpsc::{Receiver, Sender};

/// Loads the HMAC keyring (re-read each round, so a rotation made by
/// `stele keys rotate` is noticed; the gateway's tree checker reads it too).
pub use stele_anchorer::KeyringSource;

/// What anchoring needs besides the store.
pub struct AnchoringSetup {
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

/// Commands waiting for the anchorer: bounded, so asks from clients
/// waiting through a long outage cannot pile up without limit.
const COMMANDS_QUEUED: usize = 256;

enum Command {
    AnchorNow(ChainId),
    Stop,
}

/// The running anchorer.
pub struct Anchoring {
    commands: Sender<Command>,
    status: Arc<Mutex<AnchoringStatus>>,
    /// Ends with whether the shutdown anchors were written.
    task: Mutex<Option<tokio::task::JoinHandle<bool>>>,
}

impl Anchoring {
    /// Starts anchoring as a task on `runtime`, over `store` (a clone of
    /// the server's).
    pub fn start(setup: AnchoringSetup, store: Store, runtime: &tokio::runtime::Handle) -> Self {
        let (commands, inbox) = tokio::sync::mpsc::channel(COMMANDS_QUEUED);
        let status = Arc::new(Mutex::new(AnchoringStatus {
            target: setup.target.describe(),
            ..AnchoringStatus::default()
        }));
        let task_status = Arc::clone(&status);
        let task = runtime.spawn(async move {
            let mut inbox = Inbox {
                commands: inbox,
                stopping: false,
            };
            run(&setup, &store, &mut inbox, &task_status).await
        });
        Self {
            commands,
            status,
            task: Mutex::new(Some(task)),
        }
    }

    /// Asks for an anchor of `chain`'s head now (coalesced with other asks).
    /// With the queue full the ask is dropped: asks are idempotent, many
    /// are already waiting, and a waiting client asks again (`app.rs`).
    pub fn anchor_now(&self, chain: &ChainId) {
        let _ = self.commands.try_send(Command::AnchorNow(chain.clone()));
    }

    /// What anchoring did lately.
    pub fn status(&self) -> AnchoringStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Writes the `shutdown` anchors and uploads them, waiting at most
    /// `patience`; what could not be uploaded by then stays in the outbox
    /// for the next start. Returns whether anchoring finished in time with
    /// its shutdown anchors written.
    pub async fn stop(&self, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        // A full queue is drained at the anchorer's next wait, where the
        // stop is then seen; the whole stop keeps within `patience`.
        let _ = tokio::time::timeout_at(deadline, self.commands.send(Command::Stop)).await;
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        match task {
            // A task that ended in a panic has finished too: nothing more comes.
            Some(task) => match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(written)) => written,
                Ok(Err(_)) | Err(_) => false,
            },
            None => true,
        }
    }
}

/// What the anchorer waits on between rounds: the pause, or the commands
/// that end it early (anchors asked for now are gathered; a stop wins).
struct Inbox {
    commands: Receiver<Command>,
    /// Set once a stop was asked for (or every sender is gone).
    stopping: bool,
}

impl Waiter for Inbox {
    async fn wait(&mut self, pause: Duration) -> Wake {
        if self.stopping {
            return Wake::Stop;
        }
        let first = match tokio::time::timeout(pause, self.commands.recv()).await {
            Ok(Some(command)) => command,
            Err(_) => return Wake::Elapsed,
            Ok(None) => {
                self.stopping = true;
                return Wake::Stop;
            }
        };
        let mut wanted = Vec::new();
        let mut next = Some(first);
        while let Some(command) = next {
            match command {
                Command::Stop => self.stopping = true,
                Command::AnchorNow(chain) if !wanted.contains(&chain) => wanted.push(chain),
                Command::AnchorNow(_) => {}
            }
            next = self.commands.try_recv().ok();
        }
        if self.stopping {
            Wake::Stop
        } else {
            Wake::AnchorNow(wanted)
        }
    }
}

/// The anchoring loop: [`Anchorer::run_until`] until asked to stop, started
/// again (after a pause) whenever it stops on an error — a lost database
/// connection, a refused build — so anchoring never silently ends. A stop
/// that arrives after an error, or during the pause, still gets one more
/// run, which writes the shutdown anchors (the inbox answers its first wait
/// with the stop). Returns whether the shutdown anchors were written.
async fn run(
    setup: &AnchoringSetup,
    store: &Store,
    inbox: &mut Inbox,
    status: &Mutex<AnchoringStatus>,
) -> bool {
    let mut pause = Duration::from_secs(1);
    loop {
        let outcome = run_once(setup, store, status, inbox).await;
        match outcome {
            Ok(report) => {
                record(status, &report);
                if let Ok(mut s) = status.lock() {
                    s.last_error = None;
                }
                // `run_until` returns only when told to stop.
                return true;
            }
            Err(e) if inbox.stopping => {
                tracing::error!(error = %e, "the shutdown anchors could not be written; the events since the last anchor are anchored at the next start");
                if let Ok(mut s) = status.lock() {
                    s.last_error = Some(e);
                }
                return false;
            }
            Err(e) => {
                tracing::error!(error = %e, "anchoring stopped; starting again shortly (anchors wait in the outbox)");
                if let Ok(mut s) = status.lock() {
                    s.last_error = Some(e);
                }
                match tokio::time::timeout(pause, inbox.commands.recv()).await {
                    Ok(Some(Command::Stop) | None) => inbox.stopping = true,
                    Ok(Some(Command::AnchorNow(_))) | Err(_) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn run_once(
    setup: &AnchoringSetup,
    store: &Store,
    status: &Mutex<AnchoringStatus>,
    inbox: &mut Inbox,
) -> Result<UploadReport, String> {
    let keyring = (setup.keyring)()?;
    remember_newest(store, status).await;
    let mut anchorer = Anchorer::new(store.clone(), &setup.signer, &keyring, &setup.policy)
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
            setup.chains.as_deref(),
            &mut key_id,
            &mut |report| record(status, report),
            inbox,
        )
        .await
        .map_err(|e| e.to_string())
}

/// Each chain's newest written anchor, as the database recorded it (one
/// query per chain), so the age metric is there from the start.
async fn remember_newest(store: &Store, status: &Mutex<AnchoringStatus>) {
    let Ok(heads) = store.chains().await else {
        return;
    };
    for head in heads {
        let Ok(chain) = ChainId::new(&head.chain_id) else {
            continue;
        };
        if let Ok(Some(last)) = store.last_anchor(&chain).await
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
