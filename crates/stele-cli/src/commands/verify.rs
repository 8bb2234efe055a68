//! `stele verify log|event`.

use anyhow::{Context as _, anyhow};
use serde_json::json;
use stele_ledger::checkpoint::TlogProof;
use stele_ledger::hashing::leaf_hash;
use stele_ledger::verify::VerifyReport;
use stele_ledger::{ChainId, Keyring};
use stele_store::LedgerStore;

use super::{chain_id, open_store};
use crate::cli::{VerifyCommand, VerifyEventArgs, VerifyLogArgs};
use crate::config::Context;
use crate::error::Failure;
use crate::output;

pub fn run(ctx: &Context, cmd: &VerifyCommand) -> Result<(), Failure> {
    match cmd {
        VerifyCommand::Log(args) => log(ctx, args),
        VerifyCommand::Event(args) => event(ctx, args),
    }
}

/// Verifies one chain with a progress bar; shared with the demo.
pub fn verify_one(
    store: &mut dyn LedgerStore,
    chain: &ChainId,
    keys: Option<&Keyring>,
    json: bool,
) -> Result<VerifyReport, Failure> {
    let total = store.head(chain)?.map_or(0, |h| h.size);
    let bar = output::progress(json, total, &format!("verifying {chain}"));
    let report = stele_store::verify_chain(store, chain, keys, &mut |n| bar.set_position(n))?;
    bar.finish_and_clear();
    Ok(report)
}

/// Human summary of one report.
pub fn describe(report: &VerifyReport) -> String {
    let hmac = if report.hmac_checked {
        "HMAC chain, "
    } else {
        ""
    };
    if report.is_clean() {
        return format!(
            "OK   chain {}: {} events; canonical bytes, leaf hashes, {hmac}Merkle tree and chain head all match (root {})\n",
            report.chain_id, report.events_checked, report.root_hash
        );
    }
    let mut text = format!(
        "FAIL chain {}: {} finding(s) in {} events; first bad seq: {}\n",
        report.chain_id,
        report.total_findings,
        report.events_checked,
        report
            .first_bad_seq
            .map_or_else(|| "-".to_owned(), |s| s.to_string())
    );
    for f in &report.findings {
        text.push_str(&format!("  - {f}\n"));
    }
    if report.total_findings > report.findings.len() as u64 {
        text.push_str(&format!(
            "  … and {} more\n",
            report.total_findings - report.findings.len() as u64
        ));
    }
    if !report.hmac_checked {
        text.push_str("  (HMAC chain not checked: --no-hmac)\n");
    }
    text
}

fn log(ctx: &Context, args: &VerifyLogArgs) -> Result<(), Failure> {
    let keyring = if args.no_hmac {
        None
    } else {
        Some(ctx.keys().keyring()?)
    };
    let mut store = open_store(ctx)?;
    let chains = match &args.chain {
        Some(c) => vec![chain_id(c)?],
        None => store
            .chains()?
            .iter()
            .map(|h| chain_id(&h.chain_id))
            .collect::<Result<_, _>>()?,
    };
    if chains.is_empty() {
        return Err(Failure::Input(anyhow!(
            "the database has no chains to verify"
        )));
    }
    let mut reports = Vec::new();
    for chain in &chains {
        reports.push(verify_one(
            store.as_mut(),
            chain,
            keyring.as_ref(),
            ctx.json,
        )?);
    }
    let clean = reports.iter().all(VerifyReport::is_clean);
    if ctx.json {
        output::print_json(&json!({"ok": clean, "chains": reports}))?;
    } else {
        output::print(&reports.iter().map(describe).collect::<String>())?;
    }
    if clean {
        Ok(())
    } else {
        Err(Failure::Tampered)
    }
}

fn event(ctx: &Context, args: &VerifyEventArgs) -> Result<(), Failure> {
    let text = std::fs::read_to_string(&args.proof)
        .with_context(|| format!("cannot read {}", args.proof.display()))
        .map_err(Failure::Input)?;
    let proof = TlogProof::parse(&text).map_err(|e| Failure::Input(e.into()))?;
    let vkey = match &args.verifier_key {
        Some(v) if std::path::Path::new(v).is_file() => {
            std::fs::read_to_string(v)?.trim().to_owned()
        }
        Some(v) => v.trim().to_owned(),
        None => ctx.keys().verifier_key()?,
    };
    let Some(extra) = &proof.extra else {
        return Err(Failure::Input(anyhow!(
            "the proof has no `extra` line with the event's canonical bytes"
        )));
    };
    let event: serde_json::Value = serde_json::from_slice(extra)
        .map_err(|e| Failure::Input(anyhow!("the proof's event bytes are not JSON: {e}")))?;
    if event.get("seq").and_then(serde_json::Value::as_u64) != Some(proof.index) {
        return Err(Failure::Input(anyhow!(
            "the proof's event does not carry seq {} (its index)",
            proof.index
        )));
    }
    match proof.verify(leaf_hash(extra), &vkey) {
        Ok(cp) => {
            if ctx.json {
                output::print_json(&json!({
                    "ok": true, "seq": proof.index, "origin": cp.origin, "tree_size": cp.size,
                    "root_hash": stele_ledger::hex_hash(&cp.root), "event": event,
                }))
            } else {
                output::print(&format!(
                    "OK   event seq {} is included in the signed checkpoint {} (tree size {}, root {})\n     {}\n",
                    proof.index,
                    cp.origin,
                    cp.size,
                    stele_ledger::hex_hash(&cp.root),
                    String::from_utf8_lossy(extra)
                ))
            }
        }
        Err(e) => {
            if ctx.json {
                output::print_json(
                    &json!({"ok": false, "seq": proof.index, "error": e.to_string()}),
                )?;
            } else {
                output::print(&format!("FAIL event seq {}: {e}\n", proof.index))?;
            }
            Err(Failure::Tampered)
        }
    }
}
