//! `stele anchor now|run|list|show`.

use anyhow::anyhow;
use serde_json::json;
use stele_anchor::{Anchor, Trigger};
use stele_anchor::{AnchorRecord, AnchorStatus, LockMode, retain_until_text};
use stele_anchorer::{Anchorer, UploadReport};
use stele_ledger::ChainId;
use stele_store::Store;
use stele_worm::{LocalDir, ObjectStore, S3Worm, WormError};
use tokio::runtime::Runtime;

use super::{chain_id, open_shared, runtime};
use crate::cli::{
    AnchorCommand, AnchorListArgs, AnchorRunArgs, AnchorShowArgs, AnchorStatusArg, AnchorTargetArgs,
};
use crate::config::{AnchorSetup, AnchorTarget, Context};
use crate::error::{BucketSetting, Failure};
use crate::output;

pub fn run(ctx: &Context, cmd: &AnchorCommand) -> Result<(), Failure> {
    match cmd {
        AnchorCommand::Now(args) => now(ctx, args.chain.as_deref(), &args.target),
        AnchorCommand::Run(args) => run_cadence(ctx, args),
        AnchorCommand::List(args) => list(ctx, args),
        AnchorCommand::Show(args) => show(ctx, args),
    }
}

fn worm_failure(e: WormError) -> Failure {
    Failure::worm(e, BucketSetting::Anchors)
}

/// Connects to the anchor target and checks it can take anchors; a store that
/// is merely unreachable is allowed (anchors then wait in the outbox).
pub fn open_target(rt: &Runtime, setup: &AnchorSetup) -> Result<ObjectStore, Failure> {
    let target = match &setup.target {
        None => {
            return Err(Failure::Input(anyhow!(
                "no anchor target: set AUDIT_ANCHOR_BUCKET (or `bucket` under [anchor] in stele.toml), or pass --bucket; --local-dir DIR writes to a directory that is NOT WORM storage"
            )));
        }
        Some(AnchorTarget::S3(cfg)) => ObjectStore::S3(
            rt.block_on(S3Worm::connect(cfg.clone()))
                .map_err(worm_failure)?,
        ),
        Some(AnchorTarget::Local(dir)) => ObjectStore::Local(LocalDir::new(dir)),
    };
    if let ObjectStore::S3(s3) = &target {
        match rt.block_on(s3.check_object_lock()) {
            Ok(()) => {}
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "anchor store unreachable; anchors will wait in the outbox")
            }
            Err(e) => return Err(worm_failure(e)),
        }
    } else {
        eprintln!("warning: anchors go to {}", target.describe());
    }
    Ok(target)
}

/// The chains to anchor: `--chain`, else AUDIT_ANCHOR_CHAIN_ID, else every chain in the database.
async fn chains(
    store: &Store,
    arg: Option<&str>,
    setup: &AnchorSetup,
) -> Result<Vec<ChainId>, Failure> {
    if let Some(c) = arg {
        return Ok(vec![chain_id(c)?]);
    }
    if let Some(c) = &setup.chain {
        return Ok(vec![c.clone()]);
    }
    every_chain(store).await
}

/// Every chain in the database.
async fn every_chain(store: &Store) -> Result<Vec<ChainId>, Failure> {
    store
        .chains()
        .await?
        .iter()
        .map(|h| chain_id(&h.chain_id))
        .collect()
}

fn active_key_id(ctx: &Context) -> Result<String, Failure> {
    Ok(ctx.keys().keyring()?.active().id().to_string())
}

pub fn describe_upload(r: &AnchorRecord) -> String {
    let lock = match (&r.lock_mode, &r.retain_until) {
        (Some(mode), Some(until)) => format!("{mode} until {}", retain_until_text(*until)),
        _ => "NOT WORM storage".into(),
    };
    format!(
        "{} #{} ({}, tree {}) -> {} {}  [{}; {}]\n",
        r.chain_id,
        r.anchor_seq,
        r.trigger,
        r.tree_size,
        r.location.as_deref().unwrap_or("?"),
        r.object_key,
        r.status.as_str(),
        lock
    )
}

fn print_report(ctx: &Context, report: &UploadReport) -> Result<(), Failure> {
    for s in &report.squatted {
        if ctx.json {
            output::print_json(&json!({
                "event": "anchor_key_squatted",
                "chain_id": s.chain_id,
                "anchor_seq": s.anchor_seq,
                "key": s.key,
                "existing_sha256": s.existing_sha256,
                "moved_to": s.moved_to,
            }))?;
        } else {
            eprintln!(
                "warning: {} #{}: the anchor key {} already holds an object stele did not write (sha256 {}): someone who may write to the bucket created it. The anchor goes to {} instead; restrict s3:PutObject on the bucket to the anchor writer",
                s.chain_id, s.anchor_seq, s.key, s.existing_sha256, s.moved_to
            );
        }
    }
    for r in &report.uploaded {
        if ctx.json {
            output::print_json(
                &json!({"event": "anchor_stored", "anchor": stele_anchorer::record_json(r)}),
            )?;
        } else {
            output::print(&describe_upload(r))?;
        }
    }
    for (r, e) in &report.failed {
        if ctx.json {
            output::print_json(
                &json!({"event": "anchor_upload_failed", "anchor": stele_anchorer::record_json(r), "error": e.to_string()}),
            )?;
        } else {
            eprintln!(
                "{} #{}: upload failed, kept pending: {e}",
                r.chain_id, r.anchor_seq
            );
        }
    }
    for r in &report.refused {
        if ctx.json {
            output::print_json(&json!({
                "event": "anchor_chain_refused",
                "chain_id": r.chain_id,
                "error": r.error.to_string(),
            }))?;
        } else {
            eprintln!(
                "{}: anchoring refused, its anchors stay pending: {}",
                r.chain_id, r.error
            );
        }
    }
    if report.leased_elsewhere > 0 {
        if ctx.json {
            output::print_json(
                &json!({"event": "anchors_leased_elsewhere", "count": report.leased_elsewhere}),
            )?;
        } else {
            eprintln!(
                "{} pending anchor(s) are being uploaded by another stele process (it holds their outbox lease); left to it",
                report.leased_elsewhere
            );
        }
    }
    Ok(())
}

fn now(ctx: &Context, chain: Option<&str>, target_args: &AnchorTargetArgs) -> Result<(), Failure> {
    let setup = ctx.anchor_setup(
        target_args.bucket.as_deref(),
        target_args.local_dir.as_deref(),
    )?;
    let rt = runtime()?;
    let target = open_target(&rt, &setup)?;
    rt.block_on(anchor_now(ctx, &target, &setup, chain))
}

async fn anchor_now(
    ctx: &Context,
    target: &ObjectStore,
    setup: &AnchorSetup,
    chain: Option<&str>,
) -> Result<(), Failure> {
    let store = &open_shared(ctx).await?;
    let signer = ctx.keys().signer()?;
    let keyring = ctx.keys().keyring()?;
    let key_id = keyring.active().id().to_string();
    let chains = chains(store, chain, setup).await?;
    if chains.is_empty() {
        return Err(Failure::Input(anyhow!(
            "there are no chains to anchor yet (append an event first, or pass --chain)"
        )));
    }
    // Anchors cannot be removed: never write one for a chain that does not exist.
    for chain in &chains {
        if store.head(chain).await?.is_none() && store.last_anchor(chain).await?.is_none() {
            return Err(Failure::Input(anyhow!(
                "chain {chain} has no events and no anchors: nothing to anchor, nothing written (check the name with `stele log chains`)"
            )));
        }
    }
    let verifier_key = ctx.keys().verifier_key()?;
    // Never fork a WORM history: the bucket's anchors of each chain written
    // now (built here or waiting in the outbox) must be ours.
    let mut checked = chains.clone();
    for r in store.anchors(None, Some(AnchorStatus::Pending)).await? {
        let chain = chain_id(&r.chain_id)?;
        if !checked.contains(&chain) {
            checked.push(chain);
        }
    }
    let chains_written = checked;
    let mut anchorer = Anchorer::new(store.clone(), &signer, &keyring, &setup.policy)?;
    // A bucket that cannot be read now: anchors are still built (they wait
    // in the outbox, as in any outage) but none is uploaded unchecked.
    let mut unchecked = None;
    for chain in &chains_written {
        match anchorer
            .check_bucket_history(target, chain, &verifier_key)
            .await
        {
            Ok(()) => {}
            Err(stele_anchorer::AnchorerError::Worm(e)) => {
                unchecked.get_or_insert(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let when = time::OffsetDateTime::now_utc();
    for chain in &chains {
        anchorer
            .build(chain, Trigger::Manual, &key_id, when)
            .await?;
    }
    // From here on the anchors are signed and stored in the outbox: a
    // failure is never "refused, nothing written" (2), whatever the error
    // alone would say. They wait for the next upload: could not complete (3).
    let kept_pending = |f: Failure| match f {
        Failure::Input(e) => Failure::Operational(e),
        other => other,
    };
    if let Some(e) = unchecked {
        let kept = store
            .anchors(None, Some(AnchorStatus::Pending))
            .await?
            .len();
        return Err(kept_pending(worm_failure(e).context(format!(
            "cannot read the chain's anchors in {} (so none was uploaded unchecked); {kept} anchor(s) are kept pending in the database and will be uploaded by `stele anchor run` or the next `stele anchor now`",
            target.describe()
        ))));
    }
    let mut report = anchorer
        .upload_pending(target)
        .await
        .map_err(|e| kept_pending(e.into()))?;
    print_report(ctx, &report)?;
    refusal(&mut report)?;
    match report.failed.into_iter().next() {
        None => Ok(()),
        Some((r, e)) => {
            let pending = report.still_pending;
            Err(kept_pending(worm_failure(e).context(format!(
                "{pending} anchor(s) are kept pending in the database (first: {} #{}) and will be uploaded by `stele anchor run` or the next `stele anchor now`",
                r.chain_id, r.anchor_seq
            ))))
        }
    }
}

/// A chain refused during the pass (tampering evidence, a foreign history):
/// the other chains went on, and the command ends with the first refusal's code.
fn refusal(report: &mut UploadReport) -> Result<(), Failure> {
    match report.refused.drain(..).next() {
        Some(r) => Err(r.error.into()),
        None => Ok(()),
    }
}

fn run_cadence(ctx: &Context, args: &AnchorRunArgs) -> Result<(), Failure> {
    let setup = ctx.anchor_setup(
        args.target.bucket.as_deref(),
        args.target.local_dir.as_deref(),
    )?;
    let rt = runtime()?;
    let target = open_target(&rt, &setup)?;
    rt.block_on(run_anchorer(ctx, args, &target, &setup))
}

async fn run_anchorer(
    ctx: &Context,
    args: &AnchorRunArgs,
    target: &ObjectStore,
    setup: &AnchorSetup,
) -> Result<(), Failure> {
    let store = &open_shared(ctx).await?;
    let signer = ctx.keys().signer()?;
    // Read once: the pre-sign check needs every key the chain was written
    // with, and a key rotated in while this runs is added here on restart.
    let keyring = ctx.keys().keyring()?;
    let fixed_chains = match args.chain.as_deref() {
        Some(c) => Some(vec![chain_id(c)?]),
        None => setup.chain.clone().map(|c| vec![c]),
    };
    let verifier_key = ctx.keys().verifier_key()?;
    let known_chains = match &fixed_chains {
        Some(c) => c.clone(),
        None => every_chain(store).await?,
    };
    let mut anchorer = Anchorer::new(store.clone(), &signer, &keyring, &setup.policy)?;
    // Never fork a WORM history: checked once at start for the chains known
    // now (a chain first seen later is not checked until the next start).
    // A bucket unreachable at start does not stop the runner, which keeps
    // building anchors through an outage; `anchor now` checks before uploading.
    for chain in &known_chains {
        match anchorer
            .check_bucket_history(target, chain, &verifier_key)
            .await
        {
            Ok(()) => {}
            Err(stele_anchorer::AnchorerError::Worm(e)) if e.is_retryable() => {
                eprintln!(
                    "warning: cannot read the anchors of chain {chain} in {} to check they are this ledger's ({e}); anchoring goes on",
                    target.describe()
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    if args.once {
        let mut report = anchorer
            .round(
                target,
                fixed_chains.as_deref(),
                &active_key_id(ctx)?,
                time::OffsetDateTime::now_utc(),
            )
            .await?;
        print_report(ctx, &report)?;
        refusal(&mut report)?;
        return if report.failed.is_empty() {
            Ok(())
        } else {
            Err(Failure::Operational(anyhow!(
                "{} anchor(s) still pending",
                report.still_pending
            )))
        };
    }

    use tokio::signal::unix::{SignalKind, signal};
    let signals = signal(SignalKind::interrupt())
        .and_then(|interrupt| Ok((interrupt, signal(SignalKind::terminate())?)));
    let (mut interrupt, mut terminate) = signals
        .map_err(|e| Failure::Operational(anyhow!("cannot install signal handlers: {e}")))?;
    if !ctx.json {
        eprintln!(
            "anchoring {} every {} min and every {} events into {}; Ctrl-C writes a shutdown anchor and stops",
            fixed_chains.as_ref().map_or_else(
                || "all chains".to_owned(),
                |c| c
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            setup.policy.cadence.interval.as_secs() / 60,
            setup.policy.cadence.volume,
            target.describe()
        );
    }
    let mut print_error = None;
    let stopped = async {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    };
    let result = anchorer
        .run(
            target,
            fixed_chains.as_deref(),
            &mut || {
                ctx.keys()
                    .keyring()
                    .map(|k| k.active().id().to_string())
                    .map_err(|e| stele_anchorer::AnchorerError::Config(e.to_string()))
            },
            &mut |report| {
                if let Err(e) = print_report(ctx, report) {
                    print_error = Some(e);
                }
            },
            stopped,
        )
        .await;
    let mut report = result?;
    if let Some(e) = print_error {
        return Err(e);
    }
    refusal(&mut report)?;
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Operational(anyhow!(
            "stopped with {} anchor(s) pending in the database; they will be uploaded on the next run",
            report.still_pending
        )))
    }
}

fn list(ctx: &Context, args: &AnchorListArgs) -> Result<(), Failure> {
    let chain = args.chain.as_deref().map(chain_id).transpose()?;
    let status = args.status.map(|s| match s {
        AnchorStatusArg::Pending => AnchorStatus::Pending,
        AnchorStatusArg::Uploaded => AnchorStatus::Uploaded,
        AnchorStatusArg::Verified => AnchorStatus::Verified,
    });
    let records = runtime()?.block_on(async {
        open_shared(ctx)
            .await?
            .anchors(chain.as_ref(), status)
            .await
            .map_err(Failure::from)
    })?;
    if ctx.json {
        return output::print_json(
            &records
                .iter()
                .map(stele_anchorer::record_json)
                .collect::<Vec<_>>(),
        );
    }
    if records.is_empty() {
        return output::print("no anchors\n");
    }
    let mut text = String::new();
    for r in &records {
        let detail = match r.status {
            AnchorStatus::Pending => format!(
                "attempts {}{}",
                r.attempts,
                r.last_error
                    .as_deref()
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            ),
            _ => format!(
                "{} {} version {} {}",
                r.location.as_deref().unwrap_or("?"),
                r.lock_mode.map_or("NOT WORM", LockMode::as_str),
                r.version_id.as_deref().unwrap_or("-"),
                r.retain_until
                    .map(|u| format!("until {}", retain_until_text(u)))
                    .unwrap_or_default()
            ),
        };
        text.push_str(&format!(
            "{:<16} #{:<6} {:<12} tree {:<10} {}  {:<8} {}\n  {}\n",
            r.chain_id,
            r.anchor_seq,
            r.trigger,
            r.tree_size,
            r.ts_utc,
            r.status.as_str(),
            detail,
            r.object_key
        ));
        if let Some(taken) = stele_anchor::relocated_from(&r.object_key, &r.body) {
            text.push_str(&format!(
                "  (squatted: its intended key {taken} was taken by an object stele did not write)\n"
            ));
        }
    }
    output::print(&text)
}

fn show(ctx: &Context, args: &AnchorShowArgs) -> Result<(), Failure> {
    let chain = chain_id(&args.chain)?;
    let record = runtime()?
        .block_on(async {
            open_shared(ctx)
                .await?
                .anchors(Some(&chain), None)
                .await
                .map_err(Failure::from)
        })?
        .into_iter()
        .find(|r| r.anchor_seq == args.seq)
        .ok_or_else(|| Failure::Input(anyhow!("chain {chain} has no anchor {}", args.seq)))?;
    // The outbox row holds bytes stele signed: one that does not parse was altered.
    let anchor = Anchor::from_bytes(&record.body).map_err(|e| {
        Failure::TamperingFound(crate::error::with_hint(
            format!(
                "outbox row stele_anchors (chain {chain}, anchor_seq {}): {e}",
                args.seq
            ),
            "`stele verify log` compares the recorded anchors with the events",
        ))
    })?;
    let body = json!({"record": stele_anchorer::record_json(&record), "anchor": anchor});
    output::print(&format!(
        "{}\n",
        serde_json::to_string_pretty(&body).map_err(|e| Failure::Operational(e.into()))?
    ))
}
