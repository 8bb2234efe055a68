//! `stele evidence put`: validate everything, then store, verify and record each file.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::anyhow;
use serde_json::json;
use stele_evidence::naming::names_from_path;
use stele_evidence::record;
use stele_evidence::{BundleId, ClientId, EvidenceKey, Extension, PutItem, RetentionPolicy};
use stele_worm::{MIB, UploadTuning};
use time::OffsetDateTime;

use super::{BarProgress, PutArgs, evidence_chain, find_record, open_vault, runtime};
use crate::commands::open_shared;
use crate::config::Context;
use crate::error::Failure;
use crate::output;

/// One file, checked before anything is sent.
struct Planned {
    path: PathBuf,
    bundle: BundleId,
    ext: Extension,
    size: u64,
}

pub fn run(ctx: &Context, args: &PutArgs) -> Result<(), Failure> {
    // Stage 1: every input is validated before any file is read or request sent.
    let client = ClientId::new(&args.client)?;
    let policy = RetentionPolicy {
        days: args.retain_days,
        floor_days: args.min_retain_days,
        mode: args.mode,
    };
    policy.validate()?;
    // A retention that ends after what a store can hold is refused here, before anything is read or sent.
    policy.retention_at(OffsetDateTime::now_utc())?;
    let tuning = tuning(args)?;
    let chain = evidence_chain(&args.vault)?;
    let plan = plan(args, &client)?;

    // Stage 2: the ledger and keys must be usable before anything is uploaded,
    // so that a stored object is never left unrecorded for a local reason.
    let rt = runtime()?;
    let store = rt.block_on(open_shared(ctx))?;
    let signer = ctx.keys().signer()?;
    let keyring = ctx.keys().keyring()?;
    let vault = open_vault(&rt, ctx, &args.vault, tuning)?;
    rt.block_on(vault.check_bucket())?;

    for (done, item) in plan.iter().enumerate() {
        let name = item.path.display().to_string();
        let bar = BarProgress::new(ctx.json, item.size, &short_name(&name));
        let now = OffsetDateTime::now_utc();
        let put = PutItem {
            path: &item.path,
            client: &client,
            bundle: &item.bundle,
            ext: &item.ext,
            policy,
            now,
        };
        let result = rt.block_on(vault.put(&put, &signer, &bar));
        bar.finish();
        let uploaded = result.map_err(|e| {
            let note = if done > 0 {
                format!("; the {done} file(s) before it were stored and recorded")
            } else {
                String::new()
            };
            // Another upload won the key: this file's bytes may well be stored
            // (as a version that does not hold the key), but nothing is recorded.
            let what = match &e {
                stele_evidence::EvidenceError::Worm(stele_worm::WormError::LostRace {
                    key, ..
                }) => format!(
                    "{name} does not hold {key} and nothing was recorded for it{note}; `stele evidence status {key}` lists the key's versions, and another --bundle-id stores this file under a key of its own"
                ),
                // The store accepted the upload but does not hold what was sent
                // (bytes or lock): a version may exist; it is not recorded.
                stele_evidence::EvidenceError::Worm(stele_worm::WormError::Verification {
                    ..
                }) => format!(
                    "{name} was not verified in the store and nothing was recorded for it{note}"
                ),
                _ => format!("{name} was not stored and nothing was recorded for it{note}"),
            };
            let failure = Failure::from(e).context(what);
            // Files before it were stored and recorded: never "nothing was written".
            match failure {
                Failure::Input(e) if done > 0 => Failure::Operational(e),
                other => other,
            }
        })?;
        // A retried upload of an object already recorded appends nothing new.
        let existing = if uploaded.already_present {
            let records = rt.block_on(record::uploads(&store, &chain))?;
            find_record(
                &records,
                &uploaded.record.key,
                uploaded.record.version_id.as_deref(),
            )
            .map(|r| r.seq)
        } else {
            None
        };
        let (seq, newly_recorded) = match existing {
            Some(seq) => (seq, false),
            None => {
                let event = uploaded.record.to_event()?;
                let receipt = rt
                    .block_on(record::append(&store, &chain, event, keyring.active()))
                    .map_err(|e| {
                        Failure::from(e).context(format!(
                            "{} is stored and verified, but recording it in the ledger failed; run the same put again to record it",
                            uploaded.record.key
                        ))
                    })?;
                (receipt.seq, !receipt.duplicate)
            }
        };
        report(ctx, &chain, &uploaded, seq, newly_recorded)?;
    }
    Ok(())
}

fn tuning(args: &PutArgs) -> Result<UploadTuning, Failure> {
    if !(5..=5 * 1024).contains(&args.part_size_mib) {
        return Err(Failure::Input(anyhow!(
            "--part-size-mib must be 5-5120 (S3's part size limits)"
        )));
    }
    if !(1..=64).contains(&args.concurrency) {
        return Err(Failure::Input(anyhow!("--concurrency must be 1-64")));
    }
    let part_size = args.part_size_mib * MIB;
    Ok(UploadTuning {
        part_size,
        concurrency: args.concurrency,
        multipart_threshold: part_size,
    })
}

/// Checks every file and name; two files may not map to the same key.
fn plan(args: &PutArgs, client: &ClientId) -> Result<Vec<Planned>, Failure> {
    let bundle = args.bundle_id.as_deref().map(BundleId::new).transpose()?;
    if bundle.is_some() && args.files.len() > 1 {
        return Err(Failure::Input(anyhow!(
            "--bundle-id names one file; {} were given (omit it to use each file's name)",
            args.files.len()
        )));
    }
    let now = OffsetDateTime::now_utc();
    let mut keys = HashSet::new();
    let mut plan = Vec::with_capacity(args.files.len());
    for path in &args.files {
        let (bundle, ext) = names_from_path(path, bundle.as_ref())?;
        let meta = std::fs::metadata(path).map_err(|e| {
            Failure::Input(anyhow!(
                "cannot read {}: {e}; nothing was stored",
                path.display()
            ))
        })?;
        if !meta.is_file() {
            return Err(Failure::Input(anyhow!(
                "{} is not a regular file; nothing was stored",
                path.display()
            )));
        }
        let key = EvidenceKey::new(client, now, &bundle, &ext).key();
        if !keys.insert(key.clone()) {
            return Err(Failure::Input(anyhow!(
                "two files would be stored at {key}; give them different names"
            )));
        }
        plan.push(Planned {
            path: path.clone(),
            bundle,
            ext,
            size: meta.len(),
        });
    }
    Ok(plan)
}

fn short_name(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= 24 {
        name.to_owned()
    } else {
        format!("…{}", chars[chars.len() - 23..].iter().collect::<String>())
    }
}

fn report(
    ctx: &Context,
    chain: &stele_ledger::ChainId,
    uploaded: &stele_evidence::Uploaded,
    seq: u64,
    newly_recorded: bool,
) -> Result<(), Failure> {
    let r = &uploaded.record;
    if ctx.json {
        return output::print_json(&json!({
            "event": "evidence_stored",
            "already_present": uploaded.already_present,
            "ledger": {"chain_id": chain.as_str(), "seq": seq, "newly_recorded": newly_recorded},
            "record": r,
        }));
    }
    let again = if uploaded.already_present {
        " (already stored: verified again)"
    } else {
        ""
    };
    let recorded = if newly_recorded {
        format!("recorded as {chain} seq {seq}")
    } else {
        format!("already recorded as {chain} seq {seq}")
    };
    output::print(&format!(
        "stored s3://{}/{}{again}\n  version {}  {} bytes  sha256 {}\n  {} until {}  verified by {}\n  signature {} by {}\n  {recorded}\n",
        r.bucket,
        r.key,
        r.version_id.as_deref().unwrap_or("-"),
        r.size,
        r.sha256,
        r.mode,
        r.retain_until,
        r.verified_by,
        r.signature_key,
        r.signer,
    ))
}
