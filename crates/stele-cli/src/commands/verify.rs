//! `stele verify log|anchors|event`.

mod evidence;

pub use evidence::EvidenceDepth;

use anyhow::{Context as _, anyhow};
use serde_json::json;
use stele_ledger::checkpoint::TlogProof;
use stele_ledger::hashing::leaf_hash;
use stele_ledger::verify::VerifyReport;
use stele_ledger::{ChainId, Keyring};
use stele_store::LedgerStore;

use super::{chain_id, open_store_read_only};
use crate::cli::{
    AnchorSourceArgs, VerifyAnchorsArgs, VerifyCommand, VerifyEventArgs, VerifyLogArgs,
};
use crate::config::Context;
use crate::error::Failure;
use crate::output;

pub fn run(ctx: &Context, cmd: &VerifyCommand) -> Result<(), Failure> {
    match cmd {
        VerifyCommand::Log(args)
            if args.export.is_some()
                || args.anchors.bucket.is_some()
                || args.anchors.mirror.is_some() =>
        {
            anchored_log(ctx, args)
        }
        VerifyCommand::Log(args) => log(ctx, args),
        VerifyCommand::Anchors(args) => anchors(ctx, args),
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
    verify_one_observed(store, chain, keys, json, &mut |_| {})
}

/// [`verify_one`], showing each checked row to `observe`.
fn verify_one_observed(
    store: &mut dyn LedgerStore,
    chain: &ChainId,
    keys: Option<&Keyring>,
    json: bool,
    observe: &mut dyn FnMut(stele_ledger::StoredEvent<'_>),
) -> Result<VerifyReport, Failure> {
    let total = store.head(chain)?.map_or(0, |h| h.size);
    let bar = output::progress(json, total, &format!("verifying {chain}"));
    let report = stele_store::verify_chain_observed(
        store,
        chain,
        keys,
        &mut |n| bar.set_position(n),
        observe,
    )?;
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
    let mut store = open_store_read_only(ctx)?;
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
    // Evidence records are collected from the same read that verifies the chain.
    let mut recorded = evidence::RecordedUploads::default();
    for chain in &chains {
        reports.push(verify_one_observed(
            store.as_mut(),
            chain,
            keyring.as_ref(),
            ctx.json,
            &mut |e| recorded.observe(e),
        )?);
    }
    let verifier = verifier_key(ctx, args.anchors.verifier_key.as_deref()).ok();
    let evidence = evidence::check(ctx, recorded, args.evidence, verifier)?;
    let clean = reports.iter().all(VerifyReport::is_clean) && evidence.findings.is_empty();
    if ctx.json {
        output::print_json(&json!({
            "ok": clean,
            "chains": reports,
            "evidence": {"checked": evidence.checked, "findings": evidence.findings},
        }))?;
    } else {
        let mut text = reports.iter().map(describe).collect::<String>();
        text.push_str(&evidence.describe());
        output::print(&text)?;
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
    let vkey = verifier_key(ctx, args.verifier_key.as_deref())?;
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
    let checked = proof
        .verify(leaf_hash(extra), &vkey)
        .map_err(|e| e.to_string())
        .and_then(|cp| match &args.anchor {
            Some(anchor) => tie_to_anchor(ctx, args, anchor, &vkey, proof.index, &cp).map(|()| cp),
            None => Ok(cp),
        });
    match checked {
        Ok(cp) => {
            if ctx.json {
                output::print_json(&json!({
                    "ok": true, "seq": proof.index, "origin": cp.origin, "tree_size": cp.size,
                    "root_hash": stele_ledger::hex_hash(&cp.root), "event": event,
                }))
            } else {
                output::print(&format!(
                    "OK   event seq {} is included in the signed checkpoint {} (tree size {}, root {}){}\n     {}\n",
                    proof.index,
                    cp.origin,
                    cp.size,
                    stele_ledger::hex_hash(&cp.root),
                    if args.anchor.is_some() {
                        ", the tree the anchor commits to"
                    } else {
                        ""
                    },
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

/// Checks that the proof's checkpoint is the tree an anchor commits to.
fn tie_to_anchor(
    ctx: &Context,
    args: &VerifyEventArgs,
    anchor: &str,
    vkey: &str,
    seq: u64,
    cp: &stele_ledger::checkpoint::VerifiedCheckpoint,
) -> Result<(), String> {
    let bytes = if std::path::Path::new(anchor).is_file() {
        std::fs::read(anchor).map_err(|e| format!("cannot read {anchor}: {e}"))?
    } else if let Some(bucket) = &args.bucket {
        let setup = ctx
            .anchor_setup(Some(bucket), None)
            .map_err(|e| e.message().unwrap_or_default())?;
        let Some(crate::config::AnchorTarget::S3(cfg)) = setup.target else {
            return Err("--bucket needs S3 settings".into());
        };
        let rt = super::anchor::runtime().map_err(|e| e.message().unwrap_or_default())?;
        let s3 = rt
            .block_on(stele_worm::S3Worm::connect(cfg))
            .map_err(|e| e.to_string())?;
        rt.block_on(s3.get(anchor)).map_err(|e| e.to_string())?
    } else {
        return Err(format!(
            "{anchor} is not a file; to fetch it from the bucket, add --bucket"
        ));
    };
    let anchor = stele_anchor::Anchor::from_bytes(&bytes).map_err(|e| e.to_string())?;
    anchor.verify(vkey).map_err(|e| e.to_string())?;
    if !cp.origin.ends_with(&format!("/{}", anchor.chain_id)) {
        return Err(format!(
            "the proof is for {}, the anchor for chain {}",
            cp.origin, anchor.chain_id
        ));
    }
    if seq >= anchor.tree_size {
        return Err(format!(
            "anchor #{} covers {} events; seq {seq} is not among them",
            anchor.anchor_seq, anchor.tree_size
        ));
    }
    if cp.size != anchor.tree_size {
        return Err(format!(
            "the proof is against tree size {}, anchor #{} against {}: make the proof at the anchor's size (`stele proof inclusion --seq {seq} --tree-size {}`)",
            cp.size, anchor.anchor_seq, anchor.tree_size, anchor.tree_size
        ));
    }
    if stele_ledger::hex_hash(&cp.root) != anchor.root_hash {
        return Err(format!(
            "the proof's checkpoint root {} is not the root {} that anchor #{} committed",
            stele_ledger::hex_hash(&cp.root),
            anchor.root_hash,
            anchor.anchor_seq
        ));
    }
    Ok(())
}

/// The verifier key from `--verifier-key` (text or a file), else this data dir's.
fn verifier_key(ctx: &Context, arg: Option<&str>) -> Result<String, Failure> {
    match arg {
        Some(v) if std::path::Path::new(v).is_file() => Ok(std::fs::read_to_string(v)?.trim().to_owned()),
        Some(v) => Ok(v.trim().to_owned()),
        None => ctx.keys().verifier_key().map_err(|e| {
            Failure::Input(anyhow!("{e}; an auditor passes the verifier key with --verifier-key (from `stele keys export-verifier`)"))
        }),
    }
}

fn parse_time(what: &str, s: Option<&str>) -> Result<Option<time::OffsetDateTime>, Failure> {
    s.map(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).map_err(
            |_| {
                Failure::Input(anyhow!(
                    "--{what} {t:?} is not an RFC 3339 time like 2026-01-15T14:00:00Z"
                ))
            },
        )
    })
    .transpose()
}

fn audit_policy(
    ctx: &Context,
    chain: &ChainId,
    src: &AnchorSourceArgs,
) -> Result<stele_verify::AuditPolicy, Failure> {
    if src.interval_minutes == 0 {
        return Err(Failure::Input(anyhow!(
            "--interval-minutes must be at least 1"
        )));
    }
    Ok(stele_verify::AuditPolicy {
        chain: chain.clone(),
        verifier_key: verifier_key(ctx, src.verifier_key.as_deref())?,
        prefix: src.prefix.clone(),
        interval: std::time::Duration::from_secs(src.interval_minutes * 60),
        grace: std::time::Duration::from_secs(src.grace_minutes * 60),
        retention_days: Some(src.retention_days),
        expected_mode: Some(src.mode.to_ascii_uppercase()),
        from: parse_time("from", src.from.as_deref())?,
        to: parse_time("to", src.to.as_deref())?,
        now: whole_seconds(time::OffsetDateTime::now_utc()),
    })
}

/// Every anchor object of `chain`, from the bucket (read-only calls) or a mirror.
fn fetch_anchors(
    ctx: &Context,
    chain: &ChainId,
    src: &AnchorSourceArgs,
) -> Result<Vec<stele_verify::StoredAnchor>, Failure> {
    let prefix = stele_anchor::chain_prefix(src.prefix.as_deref(), chain)
        .map_err(|e| Failure::Input(e.into()))?;
    match (&src.bucket, &src.mirror) {
        (Some(bucket), _) => {
            let setup = ctx.anchor_setup(Some(bucket), None)?;
            let Some(crate::config::AnchorTarget::S3(cfg)) = setup.target else {
                return Err(Failure::Input(anyhow!("--bucket needs S3 settings")));
            };
            let rt = super::anchor::runtime()?;
            let s3 = rt
                .block_on(stele_worm::S3Worm::connect(cfg))
                .map_err(super::anchor::worm_failure)?;
            rt.block_on(fetch_from_s3(&s3, &prefix))
        }
        (None, Some(dir)) => fetch_from_mirror(dir, &prefix),
        (None, None) => Err(Failure::Input(anyhow!(
            "say where the anchors are: --bucket B or --mirror DIR"
        ))),
    }
}

async fn fetch_from_s3(
    s3: &stele_worm::S3Worm,
    prefix: &str,
) -> Result<Vec<stele_verify::StoredAnchor>, Failure> {
    use std::collections::BTreeMap;
    // key -> (newest object version, other versions, delete markers)
    let mut keys: BTreeMap<String, (Option<String>, usize, usize)> = BTreeMap::new();
    let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
    let mut versions_listed = true;
    loop {
        let page = s3
            .client()
            .list_object_versions()
            .bucket(s3.bucket())
            .prefix(prefix)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                // A verifier role without s3:ListBucketVersions still gets every other check.
                tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&e), "cannot list object versions; falling back to ListObjectsV2");
                versions_listed = false;
                break;
            }
        };
        // Versions come newest first for each key.
        for v in page.versions() {
            let Some(k) = v.key() else { continue };
            let entry = keys.entry(k.to_owned()).or_default();
            if entry.0.is_none() {
                entry.0 = v.version_id().map(str::to_owned).or(Some(String::new()));
            } else {
                entry.1 += 1;
            }
        }
        for m in page.delete_markers() {
            if let Some(k) = m.key() {
                keys.entry(k.to_owned()).or_default().2 += 1;
            }
        }
        if page.is_truncated() == Some(true) {
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
        } else {
            break;
        }
    }
    if !versions_listed {
        keys = s3
            .list(prefix)
            .await
            .map_err(super::anchor::worm_failure)?
            .into_iter()
            .map(|k| (k, (None, 0, 0)))
            .collect();
    }
    let mut out = Vec::new();
    for (key, (version, others, markers)) in keys {
        let version = version.filter(|v| !v.is_empty());
        if version.is_none() && versions_listed {
            // Only delete markers remain: the anchor object itself is gone.
            continue;
        }
        let bytes = s3
            .get_version(&key, version.as_deref())
            .await
            .map_err(super::anchor::worm_failure)?;
        let facts = s3
            .head(&key, version.as_deref())
            .await
            .map_err(super::anchor::worm_failure)?;
        let storage = facts.map(|f| stele_verify::StorageFacts {
            version_id: f.version_id,
            lock_mode: f.lock_mode.map(|m| m.as_str().to_owned()),
            retain_until: f.retain_until,
            checksum_sha256: f.checksum_sha256,
            metadata_sha256: f.metadata_sha256,
            other_versions: others,
            delete_markers: markers,
        });
        out.push(stele_verify::StoredAnchor {
            key,
            bytes,
            storage,
        });
    }
    Ok(out)
}

fn fetch_from_mirror(
    dir: &std::path::Path,
    prefix: &str,
) -> Result<Vec<stele_verify::StoredAnchor>, Failure> {
    let root = dir.join(prefix);
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && d == root => {
                return Err(Failure::Input(anyhow!(
                    "{} holds no anchors ({} not found)",
                    dir.display(),
                    root.display()
                )));
            }
            Err(e) => return Err(Failure::Operational(anyhow!("{}: {e}", d.display()))),
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                let key = rel.to_string_lossy().replace('\\', "/");
                out.push(stele_verify::StoredAnchor {
                    key,
                    bytes: std::fs::read(&path)?,
                    storage: None,
                });
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

fn print_report(
    ctx: &Context,
    report: &stele_verify::Report,
    html: Option<&std::path::Path>,
) -> Result<(), Failure> {
    if let Some(path) = html {
        let generated = whole_seconds(time::OffsetDateTime::now_utc())
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        std::fs::write(path, stele_verify::html::render(report, &generated))
            .map_err(|e| Failure::Operational(anyhow!("cannot write {}: {e}", path.display())))?;
    }
    if ctx.json {
        output::print_json(report)?;
    } else {
        output::print(&report.summary())?;
    }
    if report.is_clean() {
        Ok(())
    } else {
        Err(Failure::Tampered)
    }
}

fn anchors(ctx: &Context, args: &VerifyAnchorsArgs) -> Result<(), Failure> {
    let chain = chain_id(&args.chain)?;
    let policy = audit_policy(ctx, &chain, &args.anchors)?;
    let objects = fetch_anchors(ctx, &chain, &args.anchors)?;
    let audit = stele_verify::audit_anchors(&objects, &policy);
    print_report(ctx, &audit.report, args.html.as_deref())
}

fn anchored_log(ctx: &Context, args: &VerifyLogArgs) -> Result<(), Failure> {
    let chain = chain_id(args.chain.as_deref().ok_or_else(|| {
        Failure::Input(anyhow!(
            "--chain is required with --export, --bucket or --mirror"
        ))
    })?)?;
    let keyring = if args.no_hmac {
        None
    } else {
        match ctx.keys().keyring() {
            Ok(k) => Some(k),
            Err(stele_keys::KeyError::NotFound(_)) if args.export.is_some() => None,
            Err(e) => return Err(e.into()),
        }
    };
    let has_anchors = args.anchors.bucket.is_some() || args.anchors.mirror.is_some();
    let (anchor_report, trusted, evidence_verifier) = if has_anchors {
        let policy = audit_policy(ctx, &chain, &args.anchors)?;
        let audit =
            stele_verify::audit_anchors(&fetch_anchors(ctx, &chain, &args.anchors)?, &policy);
        (
            Some(audit.report),
            audit.trusted.into_iter().map(|(a, _)| a).collect(),
            Some(policy.verifier_key),
        )
    } else {
        let verifier = verifier_key(ctx, args.anchors.verifier_key.as_deref()).ok();
        (None, Vec::new(), verifier)
    };
    let newest_anchored = trusted
        .iter()
        .map(|a: &stele_anchor::Anchor| a.tree_size)
        .max()
        .unwrap_or(0);
    let mut log = stele_verify::AnchoredLog::new(chain.clone(), keyring.as_ref(), trusted);
    let mut findings = Vec::new();
    let mut checked = Vec::new();
    let mut recorded = evidence::RecordedUploads::default();
    let claimed;
    let events;
    if let Some(path) = &args.export {
        use std::io::BufRead as _;
        let file = std::fs::File::open(path)
            .map_err(|e| Failure::Input(anyhow!("cannot read {}: {e}", path.display())))?;
        let mut n = 0u64;
        let mut last_seq = None;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<stele_ledger::Event>(&line) {
                Ok(e) => {
                    last_seq = Some(e.seq);
                    log.check(&e, None);
                    recorded.observe(&e);
                    n += 1;
                }
                Err(e) => findings.push(export_line_finding(i + 1, &e.to_string())),
            }
        }
        if let Some(last) = last_seq.filter(|s| *s >= newest_anchored && has_anchors) {
            findings.push(unanchored_finding(newest_anchored, last));
        }
        checked.push(format!(
            "export file {}: {n} events, each recomputed (canonical bytes, leaf, HMAC link{})",
            path.display(),
            if keyring.is_some() {
                ""
            } else {
                " not checked: no key"
            }
        ));
        claimed = None;
        events = n;
    } else {
        let mut store = open_store_read_only(ctx)?;
        let head = store
            .head(&chain)?
            .ok_or_else(|| stele_store::StoreError::UnknownChain(chain.to_string()))?;
        let bar = output::progress(ctx.json, head.size, &format!("verifying {chain}"));
        let mut n = 0u64;
        store.scan_stored(&chain, 0, None, &mut |e, nodes| {
            log.check(e, Some(nodes));
            recorded.observe(e);
            n += 1;
            if n.is_multiple_of(16_384) {
                bar.set_position(n);
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        let stored_root = match stele_store::tree_root(store.as_mut(), &chain, Some(head.size)) {
            Ok((_, root)) => Ok(root),
            Err(stele_store::StoreError::Corrupt(why)) => Err(why),
            Err(e) => return Err(e.into()),
        };
        claimed = Some(stele_ledger::verify::ClaimedHead {
            size: head.size,
            head_hash: head.head_hash,
            stored_root,
        });
        checked.push(format!(
            "database: {n} events recomputed (canonical bytes, leaves, Merkle nodes{}); {} events after the newest anchor are checked row by row and wait for the next anchor",
            if keyring.is_some() { ", HMAC chain" } else { "" },
            head.size.saturating_sub(newest_anchored)
        ));
        events = n;
    }
    let (_, log_findings) = log.finish(claimed.as_ref());
    findings.extend(log_findings);
    let outcome = evidence::check(ctx, recorded, args.evidence, evidence_verifier)?;
    checked.extend(outcome.checked);
    findings.extend(outcome.findings);
    let (mut all_checked, requested, found, mut all_findings, timeline) = match anchor_report {
        Some(r) => {
            let mut c = r.checked;
            c.push("every anchor's tree size, root hash and last event hash recomputed from the events".to_owned());
            (c, r.requested, r.found, r.findings, r.timeline)
        }
        None => (
            Vec::new(),
            Default::default(),
            Default::default(),
            Vec::new(),
            Vec::new(),
        ),
    };
    all_checked.extend(checked);
    all_findings.extend(findings);
    let report = stele_verify::Report::new(
        chain.as_str(),
        all_checked,
        requested,
        found,
        Some(events),
        all_findings,
        timeline,
    );
    print_report(ctx, &report, args.html.as_deref())
}

fn export_line_finding(line: usize, why: &str) -> stele_verify::Finding {
    stele_verify::Finding {
        aspect: stele_verify::Aspect::Integrity,
        kind: "malformed_export_line".into(),
        subject: format!("export line {line}"),
        anchor_seq: None,
        seq: None,
        at: None,
        message: format!("not an exported event: {why}"),
    }
}

fn unanchored_finding(newest_anchored: u64, last: u64) -> stele_verify::Finding {
    stele_verify::Finding {
        aspect: stele_verify::Aspect::Integrity,
        kind: "unanchored_events".into(),
        subject: format!("seq {newest_anchored}..={last}"),
        anchor_seq: None,
        seq: Some(newest_anchored),
        at: None,
        message: format!(
            "the export has events up to seq {last}, but no anchor covers anything after seq {}: they cannot be shown unaltered (export up to an anchor: `stele log export --to <its last_seq>`)",
            newest_anchored.saturating_sub(1)
        ),
    }
}

fn whole_seconds(t: time::OffsetDateTime) -> time::OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}
