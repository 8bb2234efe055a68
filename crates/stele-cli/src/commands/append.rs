//! `stele append`.

use anyhow::anyhow;
use serde_json::json;
use stele_ledger::event::{EventInput, InputError, ValidEvent};

use super::chain_id;
use super::verify::bounded::{BoundedLines, Line, max_event_line};
use crate::cli::AppendArgs;
use crate::config::Context;
use crate::error::Failure;
use crate::output;

pub fn run(ctx: &Context, args: &AppendArgs) -> Result<(), Failure> {
    let chain = chain_id(&args.chain)?;
    let inputs = match &args.jsonl {
        Some(path) => parse_jsonl(path, ctx)?,
        None => vec![(0, single(args)?)],
    };
    if inputs.is_empty() {
        return Err(Failure::Input(anyhow!(
            "no events to append (the input is empty)"
        )));
    }
    if let Some(server) = &args.server {
        let inputs: Vec<EventInput> = inputs.into_iter().map(|(_, input)| input).collect();
        return remote(ctx, server, args.token.as_deref(), &chain, &inputs);
    }
    // Validate everything before touching the database: bad input writes nothing.
    let events = inputs
        .into_iter()
        .map(|(line, input)| match input.validate(&ctx.limits) {
            Ok(event) => Ok(event),
            Err(e) if args.jsonl.is_some() => Err(Failure::Input(anyhow!(
                "line {line}: {e}; nothing was appended"
            ))),
            Err(e) => Err(e.into()),
        })
        .collect::<Result<Vec<ValidEvent>, Failure>>()?;
    super::check_writable(ctx)?;
    let keyring = ctx.keys().keyring()?;
    // Anchoring settings are checked before the append, so a bad setting
    // refuses the append instead of surfacing after the events are committed.
    let anchoring = ctx.anchor_setup(None, None)?;
    // The same store and append path the gateway uses.
    let (receipts, volume_anchor) = super::runtime()?.block_on(async {
        let store = stele_store::Store::open(&ctx.db, stele_store::StoreOptions::default()).await?;
        let appended = store.append(&chain, events, keyring.active()).await;
        let volume_anchor = match &appended {
            Ok(_) => {
                queue_volume_anchor(
                    ctx,
                    &store,
                    &anchoring,
                    &chain,
                    keyring.active().id().as_str(),
                )
                .await
            }
            Err(_) => None,
        };
        store.close().await;
        appended.map(|receipts| (receipts, volume_anchor))
    })?;

    let receipts: Vec<ReceiptLine> = receipts
        .iter()
        .map(|r| ReceiptLine {
            chain_id: r.chain_id.clone(),
            seq: r.seq,
            ts: r.ts.clone(),
            leaf_hash: r.leaf_hash.clone(),
            event_hash: r.event_hash.clone(),
            key_id: r.key_id.clone(),
            duplicate: r.duplicate,
        })
        .collect();
    print_receipts(ctx, &chain, &receipts, volume_anchor)
}

/// A receipt as printed, whether the append was local or through a gateway.
#[derive(serde::Serialize)]
struct ReceiptLine {
    chain_id: String,
    seq: u64,
    ts: String,
    leaf_hash: String,
    event_hash: String,
    key_id: String,
    duplicate: bool,
}

fn print_receipts(
    ctx: &Context,
    chain: &stele_ledger::ChainId,
    receipts: &[ReceiptLine],
    volume_anchor: Option<u64>,
) -> Result<(), Failure> {
    if ctx.json {
        let appended = receipts.iter().filter(|r| !r.duplicate).count();
        return output::print_json(&json!({
            "chain_id": chain.as_str(),
            "appended": appended,
            "duplicates": receipts.len() - appended,
            "receipts": receipts,
            "volume_anchor_queued": volume_anchor,
        }));
    }
    let mut text = String::new();
    for r in receipts {
        let note = if r.duplicate {
            "  (duplicate: original receipt)"
        } else {
            ""
        };
        text.push_str(&format!(
            "{} seq {}  ts {}  leaf {}  event {}  key {}{note}\n",
            r.chain_id, r.seq, r.ts, r.leaf_hash, r.event_hash, r.key_id
        ));
    }
    if let Some(seq) = volume_anchor {
        text.push_str(&format!(
            "volume anchor #{seq} queued in the outbox; `stele anchor run` uploads it\n"
        ));
    }
    output::print_human(&text)
}

/// The volume trigger, noticed on the append path: when the chain has grown by
/// the configured volume since its last anchor, build the anchor into the
/// outbox now (the anchoring process uploads it). The events are already
/// acknowledged, so a failure here is a warning: the next anchoring round
/// builds the anchor instead.
async fn queue_volume_anchor(
    ctx: &Context,
    store: &stele_store::Store,
    anchoring: &crate::config::AnchorSetup,
    chain: &stele_ledger::ChainId,
    key_id: &str,
) -> Option<u64> {
    if anchoring.target.is_none() || anchoring.chain.as_ref().is_some_and(|c| c != chain) {
        return None;
    }
    let built = async {
        let signer = ctx.keys().signer().map_err(|e| e.to_string())?;
        let keyring = ctx.keys().keyring().map_err(|e| e.to_string())?;
        let mut anchorer =
            stele_anchorer::Anchorer::new(store.clone(), &signer, &keyring, &anchoring.policy)
                .map_err(|e| e.to_string())?;
        anchorer
            .anchor_if_volume_due(chain, key_id, time::OffsetDateTime::now_utc())
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match built {
        Ok(record) => record.map(|r| r.anchor_seq),
        Err(e) => {
            eprintln!(
                "warning: the events are committed, but the volume anchor could not be queued: {e}"
            );
            None
        }
    }
}

/// Sends the events to a gateway in one request; it validates them whole.
fn remote(
    ctx: &Context,
    server: &str,
    token: Option<&str>,
    chain: &stele_ledger::ChainId,
    inputs: &[EventInput],
) -> Result<(), Failure> {
    let token = token.ok_or_else(|| {
        Failure::Input(anyhow!(
            "--server needs a token: --token or STELE_TOKEN (from `stele token create`)"
        ))
    })?;
    let client = stele_client::Client::new(server, token).map_err(client_failure)?;
    let appended = super::runtime()?
        .block_on(client.append(
            chain.as_str(),
            inputs,
            &stele_client::AppendOptions::default(),
        ))
        .map_err(client_failure)?;
    let receipts: Vec<ReceiptLine> = appended
        .receipts
        .into_iter()
        .map(|r| ReceiptLine {
            chain_id: r.chain_id,
            seq: r.seq,
            ts: r.ts,
            leaf_hash: r.leaf_hash,
            event_hash: r.event_hash,
            key_id: r.key_id,
            duplicate: r.duplicate,
        })
        .collect();
    print_receipts(ctx, chain, &receipts, None)
}

/// A refusal by the gateway wrote nothing (exit 2); an unreachable or
/// failing gateway could not complete (exit 3).
fn client_failure(e: stele_client::ClientError) -> Failure {
    use stele_client::ClientError;
    match &e {
        ClientError::Api {
            status, details, ..
        } if *status < 500 && !e.is_retryable() => {
            let detail = details
                .as_ref()
                .map(|d| format!("\n{d}"))
                .unwrap_or_default();
            Failure::Input(anyhow!("{e}{detail}"))
        }
        ClientError::InvalidUrl(_) => Failure::Input(e.into()),
        _ => Failure::Operational(e.into()),
    }
}

fn single(args: &AppendArgs) -> Result<EventInput, Failure> {
    let payload = args
        .payload
        .as_deref()
        .map(|p| {
            stele_ledger::canonical::parse_json_value(p).map_err(|e| match e {
                InputError::MalformedJson(e) => {
                    InputError::MalformedJson(format!("--payload: {e}"))
                }
                other => other,
            })
        })
        .transpose()?;
    Ok(EventInput {
        event_type: args.event_type.clone().unwrap_or_default(),
        actor: args.actor.clone(),
        payload,
        idempotency_key: args.idempotency_key.clone(),
    })
}

/// Reads and parses every line of `path` (`-` for stdin), with its line
/// number; validation comes after, against the limits of whoever appends
/// (this ledger, or the gateway). Each line is refused as soon as it passes
/// the limit, before it is parsed or held whole.
fn parse_jsonl(path: &str, ctx: &Context) -> Result<Vec<(usize, EventInput)>, Failure> {
    let reader: Box<dyn std::io::BufRead> = if path == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| Failure::Input(anyhow!("cannot read {path}: {e}")))?;
        Box::new(std::io::BufReader::new(file))
    };
    let limit = max_event_line(ctx.limits.max_payload_bytes);
    let mut lines = BoundedLines::new(reader, limit);
    let mut events = Vec::new();
    while let Some((number, line)) = lines
        .next_line()
        .map_err(|e| Failure::Input(anyhow!("cannot read {path}: {e}")))?
    {
        let line = match line {
            Line::Text(t) => t,
            Line::TooLong => {
                return Err(Failure::Input(anyhow!(
                    "line {number}: longer than {limit} bytes, more than any event may be (payloads are limited to {} bytes); it was not parsed and nothing was appended",
                    ctx.limits.max_payload_bytes
                )));
            }
        };
        let line = std::str::from_utf8(&line).map_err(|_| {
            Failure::Input(anyhow!("line {number}: not UTF-8; nothing was appended"))
        })?;
        if line.trim().is_empty() {
            continue;
        }
        events.push((
            number,
            EventInput::from_json(line)
                .map_err(|e| Failure::Input(anyhow!("line {number}: {e}; nothing was appended")))?,
        ));
    }
    Ok(events)
}
