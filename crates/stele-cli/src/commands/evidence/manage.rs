//! `stele evidence list|status|hold|extend`.

use std::collections::{HashMap, HashSet};

use anyhow::anyhow;
use serde_json::json;
use stele_evidence::EvidenceError;
use stele_evidence::naming::SIG_SUFFIX;
use stele_evidence::record::{self, ExtensionRecord, HoldRecord};
use stele_evidence::vault::rfc3339;
use stele_evidence::{ClientId, EvidenceKey};
use stele_worm::{LockMode, UploadTuning};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use super::{
    ExtendArgs, HoldArgs, HoldState, ListArgs, StatusArgs, evidence_chain, find_record, open_vault,
    parse_date, recorded_uploads, runtime,
};
use crate::commands::open_shared;
use crate::config::Context;
use crate::error::Failure;
use crate::output;

pub fn list(ctx: &Context, args: &ListArgs) -> Result<(), Failure> {
    let client = ClientId::new(&args.client)?;
    let from = args.from.as_deref().map(|s| period(s, false)).transpose()?;
    let to = args.to.as_deref().map(|s| period(s, true)).transpose()?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(Failure::Input(anyhow!("--from is after --to")));
    }
    let chain = evidence_chain(&args.vault)?;
    let rt = runtime()?;
    let records = recorded_uploads(&rt, ctx, &chain)?;
    let recorded: HashMap<&str, u64> = records
        .iter()
        .flatten()
        .map(|r| (r.record.key.as_str(), r.seq))
        .collect();
    let vault = open_vault(&rt, ctx, &args.vault, UploadTuning::default())?;
    let objects = rt
        .block_on(vault.worm().list_detailed(&client.prefix()))
        .map_err(EvidenceError::from)?;
    let signed: HashSet<&str> = objects
        .iter()
        .filter_map(|o| o.key.strip_suffix(SIG_SUFFIX))
        .collect();
    let mut rows = Vec::new();
    for o in objects.iter().filter(|o| !o.key.ends_with(SIG_SUFFIX)) {
        let day = match (o.last_modified, EvidenceKey::parse(&o.key)) {
            (Some(t), _) => t.date(),
            (None, Ok(k)) => {
                let (y, m) = k.year_month();
                Date::from_calendar_date(
                    y,
                    time::Month::try_from(m).unwrap_or(time::Month::January),
                    1,
                )
                .unwrap_or(Date::MIN)
            }
            (None, Err(_)) => Date::MIN,
        };
        if from.is_some_and(|f| day < f) || to.is_some_and(|t| day > t) {
            continue;
        }
        rows.push(json!({
            "key": o.key,
            "size": o.size,
            "last_modified": o.last_modified.map(rfc3339),
            "signature": signed.contains(o.key.as_str()),
            "ledger_seq": recorded.get(o.key.as_str()),
        }));
    }
    if ctx.json {
        return output::print_json(&rows);
    }
    if rows.is_empty() {
        return output::print(&format!("no evidence for client {client} in that period\n"));
    }
    let ledger_note = if records.is_some() {
        "NOT IN LEDGER"
    } else {
        "no ledger"
    };
    let mut text = String::new();
    for r in &rows {
        text.push_str(&format!(
            "{}  {:>12} bytes  {}  sig {}  {}\n",
            r["key"].as_str().unwrap_or_default(),
            r["size"],
            r["last_modified"].as_str().unwrap_or("-"),
            if r["signature"] == true {
                "yes"
            } else {
                "MISSING"
            },
            r["ledger_seq"]
                .as_u64()
                .map_or_else(|| ledger_note.to_owned(), |s| format!("{chain} seq {s}")),
        ));
    }
    output::print(&text)
}

/// `YYYY-MM` or `YYYY-MM-DD` as the first (or, for `end`, last) day it covers.
fn period(s: &str, end: bool) -> Result<Date, Failure> {
    let day = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = Date::parse(s, &day) {
        return Ok(d);
    }
    let month = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(&format!("{s}-01"), &month)
        .map(|first| {
            if end {
                let last = first.month().length(first.year());
                first.replace_day(last).unwrap_or(first)
            } else {
                first
            }
        })
        .map_err(|_| Failure::Input(anyhow!("{s:?} is not a period: use YYYY-MM or YYYY-MM-DD")))
}

pub fn status(ctx: &Context, args: &StatusArgs) -> Result<(), Failure> {
    let key = EvidenceKey::parse(&args.key)?.key();
    let chain = evidence_chain(&args.vault)?;
    let rt = runtime()?;
    let records = recorded_uploads(&rt, ctx, &chain)?;
    let vault = open_vault(&rt, ctx, &args.vault, UploadTuning::default())?;
    let worm = vault.worm();
    let version = args.version_id.as_deref();
    let details = rt
        .block_on(worm.head_details(&key, version))
        .map_err(EvidenceError::from)?
        .ok_or_else(|| {
            Failure::Input(anyhow!(
                "{key} (version {}) does not exist in the bucket",
                version.unwrap_or("current")
            ))
        })?;
    let facts = &details.facts;
    let hold = rt
        .block_on(worm.legal_hold(&key, facts.version_id.as_deref()))
        .map_err(EvidenceError::from)?;
    let versions = rt
        .block_on(worm.versions(&key))
        .map_err(EvidenceError::from)?;
    let record = records
        .as_deref()
        .and_then(|r| find_record(r, &key, facts.version_id.as_deref()));
    let body = json!({
        "key": key,
        "version_id": facts.version_id,
        "size": facts.size,
        "sha256_metadata": facts.metadata_sha256,
        "lock_mode": facts.lock_mode.map(LockMode::as_str),
        "retain_until": facts.retain_until.map(rfc3339),
        "legal_hold": hold,
        "sse": facts.sse,
        "kms_key_id": facts.kms_key_id,
        "last_modified": details.last_modified.map(rfc3339),
        "metadata": details.metadata,
        "ledger": record.map(|r| json!({"chain_id": r.chain_id, "seq": r.seq, "sha256": r.record.sha256, "retain_until": r.record.retain_until})),
        "versions": versions.iter().map(|v| json!({
            "version_id": v.version_id,
            "is_latest": v.is_latest,
            "delete_marker": v.delete_marker,
            "size": v.size,
            "last_modified": v.last_modified.map(rfc3339),
        })).collect::<Vec<_>>(),
    });
    if ctx.json {
        return output::print_json(&body);
    }
    let mut text = format!(
        "{key}\n  version     {}\n  size        {} bytes\n  sha256      {} (metadata)\n  lock        {}\n  legal hold  {}\n  encryption  {}\n",
        facts.version_id.as_deref().unwrap_or("-"),
        facts.size,
        facts.metadata_sha256.as_deref().unwrap_or("-"),
        match (facts.lock_mode, facts.retain_until) {
            (Some(m), Some(u)) => format!("{m} until {}", rfc3339(u)),
            _ => "NONE: this version is not locked".into(),
        },
        if hold { "ON" } else { "off" },
        match (&facts.sse, &facts.kms_key_id) {
            (Some(s), Some(k)) => format!("{s} ({k})"),
            (Some(s), None) => s.clone(),
            _ => "none reported".into(),
        },
    );
    if let Some(ts) = details.metadata.get("upload-ts") {
        text.push_str(&format!(
            "  uploaded    {ts} from {}\n",
            details
                .metadata
                .get("original-path")
                .map_or("?", String::as_str)
        ));
    }
    text.push_str(&match (record, &records) {
        (Some(r), _) => format!("  ledger      {} seq {}\n", r.chain_id, r.seq),
        (None, Some(_)) => format!("  ledger      NOT RECORDED in chain {chain}\n"),
        (None, None) => "  ledger      (no ledger in this data directory)\n".into(),
    });
    text.push_str(&format!("  versions    {}\n", versions.len()));
    for v in &versions {
        text.push_str(&format!(
            "    {}  {}  {}{}\n",
            v.version_id.as_deref().unwrap_or("-"),
            v.last_modified.map_or_else(|| "-".into(), rfc3339),
            if v.delete_marker {
                "delete marker".to_owned()
            } else {
                format!("{} bytes", v.size)
            },
            if v.is_latest { "  (current)" } else { "" },
        ));
    }
    output::print(&text)
}

pub fn hold(ctx: &Context, args: &HoldArgs) -> Result<(), Failure> {
    let key = EvidenceKey::parse(&args.key)?.key();
    let chain = evidence_chain(&args.vault)?;
    let rt = runtime()?;
    let store = rt.block_on(open_shared(ctx))?;
    let keyring = ctx.keys().keyring()?;
    let records = rt.block_on(record::uploads(&store, &chain))?;
    let version = args
        .version_id
        .clone()
        .or_else(|| find_record(&records, &key, None).and_then(|r| r.record.version_id.clone()));
    let on = matches!(args.state, HoldState::On);
    let vault = open_vault(&rt, ctx, &args.vault, UploadTuning::default())?;
    rt.block_on(vault.worm().set_legal_hold(&key, version.as_deref(), on))
        .map_err(EvidenceError::from)?;
    let status = if on { "ON" } else { "OFF" };
    let hold = HoldRecord {
        bucket: vault.worm().bucket().to_owned(),
        key: key.clone(),
        version_id: version.clone(),
        status: status.into(),
    };
    let event = hold.to_event(&rfc3339(OffsetDateTime::now_utc()))?;
    let receipt = rt.block_on(record::append(&store, &chain, event, keyring.active()))?;
    if ctx.json {
        return output::print_json(&json!({
            "key": key, "version_id": version, "legal_hold": on,
            "ledger": {"chain_id": chain.as_str(), "seq": receipt.seq},
        }));
    }
    output::print(&format!(
        "legal hold {status} for {key} (version {}); recorded as {chain} seq {}\n",
        version.as_deref().unwrap_or("current"),
        receipt.seq
    ))
}

pub fn extend(ctx: &Context, args: &ExtendArgs) -> Result<(), Failure> {
    let key = EvidenceKey::parse(&args.key)?.key();
    let until = parse_date(&args.until)?;
    let chain = evidence_chain(&args.vault)?;
    let rt = runtime()?;
    let store = rt.block_on(open_shared(ctx))?;
    let keyring = ctx.keys().keyring()?;
    let records = rt.block_on(record::uploads(&store, &chain))?;
    let record = find_record(&records, &key, args.version_id.as_deref());
    let version = args
        .version_id
        .clone()
        .or_else(|| record.and_then(|r| r.record.version_id.clone()));
    // The latest retain-until the ledger knows for this version: checked
    // before the store is contacted at all.
    let recorded = match record {
        Some(r) => {
            let extensions = rt.block_on(record::extensions(&store, &chain))?;
            recorded_lock(
                &r.record.retain_until,
                &r.record.mode,
                &extensions,
                &key,
                version.as_deref(),
            )
        }
        None => None,
    };
    let vault = open_vault(&rt, ctx, &args.vault, UploadTuning::default())?;
    let (previous, mode) = rt.block_on(vault.extend(
        &key,
        version.as_deref(),
        until,
        recorded,
        OffsetDateTime::now_utc(),
    ))?;
    if previous.unix_timestamp() == until.unix_timestamp() {
        return output::print(&format!(
            "{key} is already locked ({mode}) until {}; nothing changed\n",
            rfc3339(until)
        ));
    }
    let extension = ExtensionRecord {
        bucket: vault.worm().bucket().to_owned(),
        key: key.clone(),
        version_id: version.clone(),
        mode: mode.as_str().to_owned(),
        previous_retain_until: rfc3339(previous),
        retain_until: rfc3339(until),
    };
    let receipt = rt.block_on(record::append(
        &store,
        &chain,
        extension.to_event()?,
        keyring.active(),
    ))?;
    if ctx.json {
        return output::print_json(&json!({
            "extension": extension,
            "ledger": {"chain_id": chain.as_str(), "seq": receipt.seq},
        }));
    }
    output::print(&format!(
        "{key} (version {}) is now locked ({mode}) until {} (was {}); recorded as {chain} seq {}\n",
        version.as_deref().unwrap_or("current"),
        extension.retain_until,
        extension.previous_retain_until,
        receipt.seq
    ))
}

/// The latest recorded retain-until (and mode) of one version.
fn recorded_lock(
    uploaded_until: &str,
    mode: &str,
    extensions: &[stele_evidence::Recorded<ExtensionRecord>],
    key: &str,
    version: Option<&str>,
) -> Option<(OffsetDateTime, LockMode)> {
    let mode = LockMode::parse(mode)?;
    std::iter::once(uploaded_until)
        .chain(
            extensions
                .iter()
                .filter(|e| e.record.key == key && e.record.version_id.as_deref() == version)
                .map(|e| e.record.retain_until.as_str()),
        )
        .filter_map(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .max()
        .map(|t| (t, mode))
}
