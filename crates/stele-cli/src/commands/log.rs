//! `stele log chains|show|export`.

use anyhow::Context as _;
use serde_json::json;

use super::{chain_id, open_shared_read_only};
use crate::cli::{LogCommand, RangeArgs};
use crate::config::Context;
use crate::error::Failure;
use crate::output;

pub fn run(ctx: &Context, cmd: &LogCommand) -> Result<(), Failure> {
    super::runtime()?.block_on(run_async(ctx, cmd))
}

async fn run_async(ctx: &Context, cmd: &LogCommand) -> Result<(), Failure> {
    match cmd {
        LogCommand::Chains => chains(ctx).await,
        LogCommand::Show(range) => show(ctx, range).await,
        LogCommand::Export(args) => {
            let file = args
                .output
                .as_ref()
                .map(|p| {
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot create {}", p.display()))
                })
                .transpose()
                .map_err(Failure::Operational)?;
            match file {
                Some(f) => export(ctx, &args.range, std::io::BufWriter::new(f)).await,
                None => export(ctx, &args.range, std::io::BufWriter::new(std::io::stdout())).await,
            }
        }
    }
}

async fn chains(ctx: &Context) -> Result<(), Failure> {
    let heads = open_shared_read_only(ctx).await?.chains().await?;
    if ctx.json {
        let list: Vec<_> = heads
            .iter()
            .map(|h| {
                json!({
                    "chain_id": h.chain_id,
                    "size": h.size,
                    "head_hash": stele_ledger::hex_hash(&h.head_hash),
                    "last_ts": h.last_ts,
                })
            })
            .collect();
        return output::print_json(&list);
    }
    if heads.is_empty() {
        return output::print("no chains yet (append an event to create one)\n");
    }
    let mut text = String::new();
    for h in heads {
        text.push_str(&format!(
            "{:<24} {:>10} events  last {}  head {}\n",
            h.chain_id,
            h.size,
            h.last_ts.as_deref().unwrap_or("-"),
            stele_ledger::hex_hash(&h.head_hash)
        ));
    }
    output::print_human(&text)
}

async fn show(ctx: &Context, range: &RangeArgs) -> Result<(), Failure> {
    let chain = chain_id(&range.chain)?;
    let store = open_shared_read_only(ctx).await?;
    // One snapshot: the events shown are one state of the chain.
    let mut snapshot = store.read_snapshot().await?;
    snapshot.checked_size(&chain, None).await?;
    let events = snapshot.events(&chain, range.from, range.to).await?;
    snapshot.end().await?;
    if ctx.json {
        return output::print_json(&events);
    }
    let mut text = String::new();
    for e in events {
        text.push_str(&format!(
            "{:>8}  {}  {:<24} {:<28} {}\n",
            e.seq,
            e.ts,
            e.event_type,
            e.actor.as_deref().unwrap_or("-"),
            e.payload.as_deref().unwrap_or("")
        ));
    }
    output::print_human(&text)
}

async fn export(
    ctx: &Context,
    range: &RangeArgs,
    mut out: impl std::io::Write + Send,
) -> Result<(), Failure> {
    let chain = chain_id(&range.chain)?;
    let store = open_shared_read_only(ctx).await?;
    let mut io_error = None;
    // One snapshot: the export is one state of the chain.
    let mut snapshot = store.read_snapshot().await?;
    let mut scanned = snapshot.checked_size(&chain, None).await.map(drop);
    if scanned.is_ok() {
        scanned = snapshot
            .scan(&chain, range.from, range.to, &mut |e, _| {
                let written = serde_json::to_writer(&mut out, &e.to_event())
                    .map_err(std::io::Error::from)
                    .and_then(|()| out.write_all(b"\n"));
                if let Err(err) = written {
                    io_error = Some(err);
                    return Err(stele_store::StoreError::OutOfRange(
                        "export interrupted".into(),
                    ));
                }
                Ok(())
            })
            .await;
    }
    let ended = snapshot.end().await;
    if let Some(err) = io_error {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(());
        }
        return Err(err.into());
    }
    scanned?;
    ended?;
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
