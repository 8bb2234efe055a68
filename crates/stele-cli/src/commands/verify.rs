//! `stele verify log|anchors|event`.

pub(crate) mod bounded;
mod evidence;

pub use evidence::EvidenceDepth;

use anyhow::{Context as _, anyhow};
use serde_json::json;
use stele_ledger::checkpoint::TlogProof;
use stele_ledger::hashing::leaf_hash;
use stele_ledger::verify::VerifyReport;
use stele_ledger::{ChainId, Keyring};

use stele_audit::{DbChain, RecordedAnchors, scan_db_chain, verify_db_chain};

use super::{chain_id, open_shared_read_only};
use crate::cli::{
    AnchorSourceArgs, VerifyAnchorsArgs, VerifyCommand, VerifyEventArgs, VerifyLogArgs,
};
use crate::config::Context;
use crate::error::{BucketSetting, Failure};
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

/// Verifies one chain with a progress bar, in one snapshot; shared with the demo.
pub async fn verify_one(
    store: &stele_store::Store,
    chain: &ChainId,
    keys: Option<&Keyring>,
    json: bool,
) -> Result<VerifyReport, Failure> {
    let mut snapshot = store.read_snapshot().await?;
    let report = stele_audit::verify_chain(
        &mut snapshot,
        chain,
        keys,
        &mut ScanBar::new(json, chain),
        &mut |_| {},
    )
    .await;
    let ended = snapshot.end().await;
    let report = report?;
    ended?;
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

/// What a database-only run says of completeness, the same in the text,
/// JSON and HTML reports: not checked, and (unlike a check that could
/// not be performed in an audit) expected, so a run that finds nothing
/// exits 0 without being an audit verdict.
const DB_ONLY_SCOPE: &str = "completeness NOT CHECKED against anchors (database only)";
/// The verdict of a database-only run that found nothing.
const DB_ONLY_NO_FINDING: &str =
    "no finding in the database (integrity only, completeness not checked): not an audit verdict";
/// Why a database-only run cannot speak for completeness.
const DB_ONLY_COMPLETENESS: &str = "no anchors from the WORM bucket were given, and without them a truncation cannot be proven: whoever can write to the database can remove the newest events (everything after the last anchor, and more if they also remove its stele_anchors rows) and fix up stele_chains without any key; add --bucket or --mirror";

/// A scan's progress bar (hidden with `--json` or off a terminal).
struct ScanBar {
    json: bool,
    what: String,
    bar: Option<indicatif::ProgressBar>,
}

impl ScanBar {
    fn new(json: bool, chain: &ChainId) -> Self {
        Self {
            json,
            what: format!("verifying {chain}"),
            bar: None,
        }
    }
}

impl stele_audit::ScanProgress for ScanBar {
    fn start(&mut self, total: u64) {
        self.bar = Some(output::progress(self.json, total, &self.what));
    }

    fn at(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn describe_recorded(r: &RecordedAnchors) -> String {
    let mut text = if r.recorded == 0 {
        "     no anchors recorded in stele_anchors: nothing to compare the events with\n".to_owned()
    } else if r.findings.is_empty() {
        format!(
            "     {} anchor(s) recorded in stele_anchors{}: tree size, root hash and last event hash match the events (up to tree size {})\n",
            r.recorded,
            if r.signatures_checked {
                ", signatures valid"
            } else {
                " (signatures not checked: no verifier key)"
            },
            r.newest_tree_size.unwrap_or(0)
        )
    } else {
        format!(
            "FAIL chain {}: {} finding(s) against the {} anchor(s) recorded in stele_anchors\n",
            r.chain_id,
            r.findings.len(),
            r.recorded
        )
    };
    for f in &r.findings {
        text.push_str(&format!("  - {}: {}\n", f.subject, f.message));
    }
    text
}

fn log(ctx: &Context, args: &VerifyLogArgs) -> Result<(), Failure> {
    let verifier = optional_verifier_key(ctx, &args.anchors)?;
    let keyring = if args.no_hmac {
        None
    } else {
        Some(ctx.keys().keyring()?)
    };
    let (results, recorded) = super::runtime()?.block_on(verify_db_chains(
        ctx,
        args,
        keyring.as_ref(),
        verifier.as_deref(),
    ))?;
    let mut evidence = evidence::check(
        ctx,
        recorded,
        args.evidence,
        verifier,
        &allowed_buckets(args),
    )?;
    for n in &mut evidence.not_checked {
        n.waived |= args.anchors.waive.contains(&n.check);
    }
    let clean = results
        .iter()
        .all(|r| r.report.is_clean() && r.recorded.findings.is_empty())
        && evidence.findings.is_empty();
    // The verdict is decided before anything is written: a report that
    // cannot be written, or a closed stdout, must not change it.
    let verdict = if !clean {
        Err(Failure::Tampered)
    } else {
        match evidence.not_checked.iter().find(|n| !n.waived) {
            Some(n) => Err(not_checked_failure(std::slice::from_ref(n))),
            None => Ok(()),
        }
    };
    let html = args
        .html
        .as_ref()
        .map(|path| write_db_only_html(path, args, &results, &evidence));
    let printed = if ctx.json {
        let reports: Vec<&VerifyReport> = results.iter().map(|r| &r.report).collect();
        let anchors: Vec<&RecordedAnchors> = results.iter().map(|r| &r.recorded).collect();
        output::print_json(&json!({
            "ok": clean,
            "scope": "database_only",
            "chains": reports,
            "recorded_anchors": anchors,
            "completeness": {"checked_against_anchors": false, "reason": DB_ONLY_COMPLETENESS},
            "evidence": {"checked": evidence.checked, "findings": evidence.findings, "not_checked": evidence.not_checked},
        }))
    } else {
        let mut text = String::new();
        for r in &results {
            text.push_str(&describe(&r.report));
            text.push_str(&describe_recorded(&r.recorded));
        }
        text.push_str(&evidence.describe());
        text.push_str(&format!(
            "{DB_ONLY_SCOPE}: {DB_ONLY_COMPLETENESS}\nverdict      {}\n",
            if clean { DB_ONLY_NO_FINDING } else { "FAIL" }
        ));
        output::print_human(&text)
    };
    Failure::after_reports(verdict, html.into_iter().chain([printed]), ctx.json)
}

/// Every chain asked for, each from the database alone, and the evidence
/// records collected from the same reads.
async fn verify_db_chains(
    ctx: &Context,
    args: &VerifyLogArgs,
    keyring: Option<&Keyring>,
    verifier: Option<&str>,
) -> Result<(Vec<DbChain>, evidence::RecordedUploads), Failure> {
    let store = open_shared_read_only(ctx).await?;
    let chains = match &args.chain {
        Some(c) => vec![chain_id(c)?],
        None => store
            .chains()
            .await?
            .iter()
            .map(|h| chain_id(&h.chain_id))
            .collect::<Result<_, _>>()?,
    };
    if chains.is_empty() {
        return Err(Failure::Input(anyhow!(
            "the database has no chains to verify"
        )));
    }
    let mut results = Vec::new();
    // Evidence records are collected from the same read that verifies the chain.
    let mut recorded = evidence::RecordedUploads::default();
    for chain in &chains {
        results.push(
            verify_db_chain(
                &store,
                chain,
                keyring,
                verifier,
                &mut ScanBar::new(ctx.json, chain),
                &mut |e| recorded.observe(e),
            )
            .await?,
        );
    }
    Ok((results, recorded))
}

/// The `--html` report of a database-only run: what was checked, every
/// finding, and completeness listed as not checked against anchors.
fn write_db_only_html(
    path: &std::path::Path,
    args: &VerifyLogArgs,
    results: &[DbChain],
    evidence: &evidence::EvidenceOutcome,
) -> Result<(), Failure> {
    let names: Vec<&str> = results.iter().map(|r| r.report.chain_id.as_str()).collect();
    let mut checked: Vec<String> = results
        .iter()
        .map(|r| {
            format!(
                "database, chain {}: {} events recomputed (canonical bytes, leaves, Merkle nodes{}, chain head); {} of {} anchor(s) recorded in stele_anchors compared with the events (tree size, root hash, last event hash)",
                r.report.chain_id,
                r.report.events_checked,
                if r.report.hmac_checked { ", HMAC chain" } else { "" },
                r.recorded.compared,
                r.recorded.recorded
            )
        })
        .collect();
    checked.extend(evidence.checked.iter().cloned());
    let mut findings: Vec<stele_verify::Finding> = results
        .iter()
        .flat_map(|r| r.findings.iter().cloned())
        .collect();
    findings.extend(evidence.findings.iter().cloned());
    let events = results.iter().map(|r| r.report.events_checked).sum();
    let mut report = stele_verify::Report::new(
        &names.join(", "),
        checked,
        Default::default(),
        Default::default(),
        Some(events),
        findings,
        Vec::new(),
    );
    report.completeness.checked = false;
    // Worded as the text output words it: the page must not read as an
    // audit whose check failed (exit 3) when the run exits 0 by design.
    let scope = format!(
        "{DB_ONLY_SCOPE}: {DB_ONLY_COMPLETENESS}. By design a database-only run that finds nothing exits 0 with the verdict: {DB_ONLY_NO_FINDING}"
    );
    report.add_not_checked(
        std::iter::once(stele_verify::NotChecked::new("anchors", scope))
            .chain(evidence.not_checked.iter().cloned()),
        &args.anchors.waive,
    );
    write_html(path, &report)
}

fn write_html(path: &std::path::Path, report: &stele_verify::Report) -> Result<(), Failure> {
    let generated = whole_seconds(time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    std::fs::write(path, stele_verify::html::render(report, &generated)).map_err(|e| {
        Failure::Operational(anyhow!(
            "cannot write the HTML report to {}: {e}",
            path.display()
        ))
    })
}

fn allowed_buckets(args: &VerifyLogArgs) -> Vec<String> {
    args.evidence_buckets
        .iter()
        .map(|b| b.trim().to_owned())
        .filter(|b| !b.is_empty())
        .collect()
}

/// Exit 3 for checks that could not be performed (already in the report).
fn not_checked_failure(items: &[stele_verify::NotChecked]) -> Failure {
    let names: Vec<&str> = items.iter().map(|n| n.check.as_str()).collect();
    Failure::Operational(anyhow!(
        "the verification is not complete: {} could not be checked (see NOT CHECKED in the report); the verdict is not PASS. Give what is missing, or accept it with --waive {}",
        names.join(", "),
        names.join(" --waive ")
    ))
}

fn event(ctx: &Context, args: &VerifyEventArgs) -> Result<(), Failure> {
    // The key first: a key that does not parse refuses before anything is read.
    let vkey = verifier_key(
        ctx,
        args.verifier_key.as_deref(),
        args.verifier_key_file.as_deref(),
    )?;
    let bytes = bounded::read_file(&args.proof, MAX_PROOF_BYTES, "tlog-proof")?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{} is not UTF-8 text", args.proof.display()))
        .map_err(Failure::Input)?;
    let proof = TlogProof::parse(&text).map_err(|e| Failure::Input(e.into()))?;
    let Some(extra) = &proof.extra else {
        return Err(Failure::Input(anyhow!(
            "the proof has no `extra` line with the event's canonical bytes"
        )));
    };
    // Only a proof that cannot be used is refused (2). Everything it
    // claims is checked against its signature and inclusion proof first,
    // so contents that disagree with each other (an event moved to another
    // index, edited bytes) are tampering (1), whichever part was changed.
    let checked = proof
        .verify(leaf_hash(extra), &vkey)
        .map_err(|e| EventError::Tampered(e.to_string()))
        .and_then(|cp| Ok((signed_event(extra, proof.index)?, cp)))
        .and_then(|(event, cp)| match &args.anchor {
            Some(anchor) => {
                tie_to_anchor(ctx, args, anchor, &vkey, proof.index, &cp).map(|()| (event, cp))
            }
            None => Ok((event, cp)),
        });
    let checked = match checked {
        // A wrong file, a wrong anchor for this proof, an unreachable
        // bucket: the event was not checked, and that is not tampering.
        Err(EventError::NotChecked(f)) => return Err(f),
        Err(EventError::Tampered(why)) => Err(why),
        Ok(checked) => Ok(checked),
    };
    match checked {
        Ok((event, cp)) => {
            if ctx.json {
                output::print_json(&json!({
                    "ok": true, "seq": proof.index, "origin": cp.origin, "tree_size": cp.size,
                    "root_hash": stele_ledger::hex_hash(&cp.root), "event": event,
                }))
            } else {
                output::print_human(&format!(
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
                output::print_human(&format!("FAIL event seq {}: {e}\n", proof.index))?;
            }
            Err(Failure::Tampered)
        }
    }
}

/// The event in a proof whose signature and inclusion already verified:
/// signed bytes that are not an event at the proof's index are tampering.
fn signed_event(extra: &[u8], index: u64) -> Result<serde_json::Value, EventError> {
    let event: serde_json::Value = serde_json::from_slice(extra)
        .map_err(|e| EventError::Tampered(format!("the proof's event bytes are not JSON: {e}")))?;
    match event.get("seq").and_then(serde_json::Value::as_u64) {
        Some(seq) if seq == index => Ok(event),
        seq => Err(EventError::Tampered(format!(
            "the proof places its event at index {index}, but the event carries seq {}",
            seq.map_or_else(|| "none".to_owned(), |s| s.to_string())
        ))),
    }
}

/// Largest tlog-proof read: one event (payload at most 64 KiB by default,
/// escaped), a proof of at most 64 hashes and a signed checkpoint.
const MAX_PROOF_BYTES: usize = 1024 * 1024;

/// Why `verify event` did not say OK.
enum EventError {
    /// Something signed does not match: exit 1, reported as FAIL.
    Tampered(String),
    /// The check could not be made as asked (a usage error, exit 2, or an
    /// unreachable store, exit 3): never reported as tampering.
    NotChecked(Failure),
}

fn usage(message: String) -> EventError {
    EventError::NotChecked(Failure::Input(anyhow!(message)))
}

/// Checks that the proof's checkpoint is the tree an anchor commits to.
fn tie_to_anchor(
    ctx: &Context,
    args: &VerifyEventArgs,
    anchor: &str,
    vkey: &str,
    seq: u64,
    cp: &stele_ledger::checkpoint::VerifiedCheckpoint,
) -> Result<(), EventError> {
    // With --bucket, --anchor is a key in it; without, a file. Never guessed
    // from what happens to exist in the working directory.
    let limit = stele_verify::MAX_ANCHOR_BYTES;
    let bytes = if let Some(bucket) = &args.bucket {
        let setup = ctx
            .anchor_setup(Some(bucket), None)
            .map_err(EventError::NotChecked)?;
        let Some(crate::config::AnchorTarget::S3(cfg)) = setup.target else {
            return Err(usage("--bucket needs S3 settings".into()));
        };
        let rt = super::runtime().map_err(EventError::NotChecked)?;
        let s3 = rt
            .block_on(stele_worm::S3Worm::connect(cfg))
            .map_err(|e| EventError::NotChecked(worm_failure(e)))?;
        rt.block_on(s3.get_version_bounded(anchor, None, limit))
            .map_err(|e| EventError::NotChecked(worm_failure(e)))?
            .ok_or_else(|| {
                EventError::Tampered(format!(
                    "{anchor} has more than the {limit} bytes an anchor may have"
                ))
            })?
    } else {
        // A file named on the command line that cannot be read is a usage
        // error (2), never a failed check.
        bounded::read_file(std::path::Path::new(anchor), limit, "anchor file").map_err(|e| {
            EventError::NotChecked(e.hint("to fetch the anchor from a bucket, add --bucket"))
        })?
    };
    let anchor = stele_anchor::Anchor::from_bytes(&bytes).map_err(|e| {
        usage(format!(
            "{anchor} is not a stele anchor ({e}); name an anchor object (`stele anchor list` shows their keys)"
        ))
    })?;
    anchor
        .verify(vkey)
        .map_err(|e| EventError::Tampered(format!("anchor #{}: {e}", anchor.anchor_seq)))?;
    if !cp.origin.ends_with(&format!("/{}", anchor.chain_id)) {
        return Err(usage(format!(
            "the proof is for {}, the anchor for chain {}: give an anchor of the proof's chain",
            cp.origin, anchor.chain_id
        )));
    }
    if seq >= anchor.tree_size {
        return Err(usage(format!(
            "anchor #{} covers {} events; seq {seq} is not among them: give a later anchor of chain {}",
            anchor.anchor_seq, anchor.tree_size, anchor.chain_id
        )));
    }
    if cp.size != anchor.tree_size {
        return Err(usage(format!(
            "the proof is against tree size {}, anchor #{} against {}: make the proof at the anchor's size (`stele proof inclusion --chain {} --seq {seq} --tree-size {} --format tlog-proof`)",
            cp.size, anchor.anchor_seq, anchor.tree_size, anchor.chain_id, anchor.tree_size
        )));
    }
    if stele_ledger::hex_hash(&cp.root) != anchor.root_hash {
        return Err(EventError::Tampered(format!(
            "the proof's checkpoint root {} is not the root {} that anchor #{} committed",
            stele_ledger::hex_hash(&cp.root),
            anchor.root_hash,
            anchor.anchor_seq
        )));
    }
    Ok(())
}

/// Largest verifier key file read.
const MAX_VERIFIER_KEY_FILE: usize = 4096;

/// The verifier key the auditor named: `--verifier-key` is always the key
/// itself (never a file name: keys contain `/`, and an audit package could
/// ship a file named after the real key), `--verifier-key-file` names a file.
/// A key that does not parse is refused (exit 2) before anything is fetched.
fn given_verifier_key(
    text: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<String>, Failure> {
    let (key, source) = match (text, file) {
        (Some(t), _) => (t.trim().to_owned(), "--verifier-key".to_owned()),
        (None, Some(path)) => {
            let bytes = bounded::read_file(path, MAX_VERIFIER_KEY_FILE, "verifier key file")?;
            let text = String::from_utf8(bytes).map_err(|_| {
                Failure::Input(anyhow!(
                    "verifier key file {} is not UTF-8 text",
                    path.display()
                ))
            })?;
            (
                text.trim().to_owned(),
                format!("--verifier-key-file {}", path.display()),
            )
        }
        (None, None) => return Ok(None),
    };
    stele_verify::check_verifier_key(&key)
        .map_err(|why| Failure::Input(anyhow!("{source}: {why}; nothing was read or fetched")))?;
    Ok(Some(key))
}

/// The named verifier key, else this data dir's.
fn verifier_key(
    ctx: &Context,
    text: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<String, Failure> {
    match given_verifier_key(text, file)? {
        Some(k) => Ok(k),
        None => ctx.keys().verifier_key().map_err(|e| {
            Failure::Input(anyhow!("{e}; an auditor passes the verifier key with --verifier-key (from `stele keys export-verifier`) or --verifier-key-file"))
        }),
    }
}

/// The named verifier key (which must parse), else this data dir's if it has one.
fn optional_verifier_key(ctx: &Context, src: &AnchorSourceArgs) -> Result<Option<String>, Failure> {
    match given_verifier_key(
        src.verifier_key.as_deref(),
        src.verifier_key_file.as_deref(),
    )? {
        Some(k) => Ok(Some(k)),
        None => Ok(ctx.keys().verifier_key().ok()),
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
    let minutes = |what: &str, m: u64| {
        m.checked_mul(60)
            .filter(|_| m <= crate::cli::MAX_VERIFY_MINUTES)
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| {
                Failure::Input(anyhow!(
                    "--{what} {m} is too large (at most {} minutes)",
                    crate::cli::MAX_VERIFY_MINUTES
                ))
            })
    };
    if src.interval_minutes == 0 {
        return Err(Failure::Input(anyhow!(
            "--interval-minutes must be at least 1"
        )));
    }
    Ok(stele_verify::AuditPolicy {
        chain: chain.clone(),
        verifier_key: verifier_key(
            ctx,
            src.verifier_key.as_deref(),
            src.verifier_key_file.as_deref(),
        )?,
        prefix: src.prefix.clone(),
        interval: minutes("interval-minutes", src.interval_minutes)?,
        grace: minutes("grace-minutes", src.grace_minutes)?,
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
            let rt = super::runtime()?;
            let s3 = rt
                .block_on(stele_worm::S3Worm::connect(cfg))
                .map_err(worm_failure)?;
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
    // Per key: the newest version, other versions, delete markers; or, when
    // the verifier role may not list versions, the keys and why (the report
    // then says versions were NOT checked).
    let listing = s3.versions_by_key(prefix).await.map_err(worm_failure)?;
    let versions_unlisted = listing.versions_unlisted;
    let mut out = Vec::new();
    for (key, listed_key) in listing.keys {
        let others = listed_key.other_versions;
        let markers = listed_key.delete_markers;
        let newest = listed_key.newest;
        // Size of the version read, from the listing (`-1`: none given).
        let listed: Option<i64> = newest
            .as_ref()
            .map(|v| v.size.and_then(|n| i64::try_from(n).ok()).unwrap_or(-1));
        let version = newest.and_then(|v| v.version_id).filter(|v| !v.is_empty());
        if version.is_none() && versions_unlisted.is_none() {
            // Only delete markers remain (or the store names no version):
            // the object is gone from view, and its delete markers and
            // other versions are findings, never silently dropped.
            out.push(stele_verify::StoredAnchor {
                key,
                bytes: Vec::new(),
                storage: Some(stele_verify::StorageFacts {
                    other_versions: others,
                    delete_markers: markers,
                    ..Default::default()
                }),
                unreadable: Some(stele_verify::Unreadable::NotAnObject(
                    "no current version: only delete markers remain".to_owned(),
                )),
            });
            continue;
        }
        // Never more than the anchor size limit is read: the listed size
        // decides first, and the read itself stops past the limit.
        let limit = stele_verify::MAX_ANCHOR_BYTES;
        let too_large = || {
            Some(stele_verify::Unreadable::TooLarge(
                listed.and_then(|n| u64::try_from(n).ok()),
            ))
        };
        let (bytes, unreadable) = if listed.is_some_and(|n| n > limit as i64) {
            (Vec::new(), too_large())
        } else if listed == Some(0) {
            (Vec::new(), None)
        } else {
            match s3
                .get_version_bounded(&key, version.as_deref(), limit)
                .await
                .map_err(worm_failure)?
            {
                Some(b) => (b, None),
                None => (Vec::new(), too_large()),
            }
        };
        let facts = s3
            .head(&key, version.as_deref())
            .await
            .map_err(worm_failure)?;
        // An object the store will not describe is checked as one with no
        // lock and no checksum (findings), never as an offline copy.
        let storage = Some(facts.map_or_else(
            || stele_verify::StorageFacts {
                other_versions: others,
                delete_markers: markers,
                versions_unlisted: versions_unlisted.clone(),
                ..Default::default()
            },
            |f| stele_verify::StorageFacts {
                version_id: f.version_id,
                lock_mode: f.lock_mode.map(|m| m.as_str().to_owned()),
                retain_until: f.retain_until,
                checksum_sha256: f.checksum_sha256,
                metadata_sha256: f.metadata_sha256,
                other_versions: others,
                delete_markers: markers,
                versions_unlisted: versions_unlisted.clone(),
            },
        ));
        out.push(stele_verify::StoredAnchor {
            key,
            bytes,
            unreadable,
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
            let entry = entry?;
            let path = entry.path();
            // The entry's own type: symlinks are not followed (a chain of
            // linked directories would multiply the walk), and only regular
            // files are read (a FIFO would hang, /dev/zero never ends).
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(rel) = path.strip_prefix(dir) else {
                continue;
            };
            let key = rel.to_string_lossy().replace('\\', "/");
            let (bytes, unreadable) = if kind.is_file() {
                match bounded::read_regular(&path, stele_verify::MAX_ANCHOR_BYTES) {
                    Ok(bytes) => (bytes, None),
                    Err(bounded::FileProblem::TooLarge { .. }) => {
                        (Vec::new(), Some(stele_verify::Unreadable::TooLarge(None)))
                    }
                    Err(bounded::FileProblem::NotRegular) => (
                        Vec::new(),
                        Some(stele_verify::Unreadable::NotAnObject(
                            "in the mirror it is not a regular file".into(),
                        )),
                    ),
                    // The mirror was given, and this file in it could not be
                    // read: the anchors could not be checked.
                    Err(bounded::FileProblem::Unreadable(e)) => {
                        return Err(Failure::Operational(anyhow!("{}: {e}", path.display())));
                    }
                }
            } else {
                let what = if kind.is_symlink() {
                    "a symbolic link (not followed)"
                } else {
                    "not a regular file"
                };
                (
                    Vec::new(),
                    Some(stele_verify::Unreadable::NotAnObject(format!(
                        "in the mirror it is {what}"
                    ))),
                )
            };
            out.push(stele_verify::StoredAnchor {
                key,
                bytes,
                unreadable,
                storage: None,
            });
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
    // The verdict is decided before anything is written: a report that
    // cannot be written, or a closed stdout, must not change it.
    let verdict = if !report.no_findings() {
        Err(Failure::Tampered)
    } else {
        let unwaived: Vec<stele_verify::NotChecked> = report.unwaived().cloned().collect();
        if unwaived.is_empty() {
            Ok(())
        } else {
            Err(not_checked_failure(&unwaived))
        }
    };
    let html = html.map(|path| write_html(path, report));
    let printed = if ctx.json {
        output::print_json(report)
    } else {
        output::print_human(&report.summary())
    };
    Failure::after_reports(verdict, html.into_iter().chain([printed]), ctx.json)
}

fn anchors(ctx: &Context, args: &VerifyAnchorsArgs) -> Result<(), Failure> {
    let chain = chain_id(&args.chain)?;
    let policy = audit_policy(ctx, &chain, &args.anchors)?;
    let objects = fetch_anchors(ctx, &chain, &args.anchors)?;
    let mut audit = stele_verify::audit_anchors(&objects, &policy);
    audit.report.add_not_checked([], &args.anchors.waive);
    print_report(ctx, &audit.report, args.html.as_deref())
}

fn anchored_log(ctx: &Context, args: &VerifyLogArgs) -> Result<(), Failure> {
    let chain = chain_id(args.chain.as_deref().ok_or_else(|| {
        Failure::Input(anyhow!(
            "--chain is required with --export, --bucket or --mirror"
        ))
    })?)?;
    let mut not_checked = Vec::new();
    let keyring = if args.no_hmac {
        not_checked.push(stele_verify::NotChecked::waived(
            "hmac",
            "the HMAC chain was not checked (--no-hmac): the events rest on the anchors alone",
        ));
        None
    } else {
        match ctx.keys().keyring() {
            Ok(k) => Some(k),
            Err(stele_keys::KeyError::NotFound(_)) if args.export.is_some() => {
                not_checked.push(stele_verify::NotChecked::new(
                    "hmac",
                    "no HMAC keys in the data directory: the HMAC chain of the export was not checked (pass --no-hmac if that is intended)",
                ));
                None
            }
            Err(e) => return Err(e.into()),
        }
    };
    let has_anchors = args.anchors.bucket.is_some() || args.anchors.mirror.is_some();
    if !has_anchors {
        not_checked.push(stele_verify::NotChecked::new(
            "anchors",
            "no anchors were given (--bucket or --mirror): the export was compared with nothing signed, and anyone can write a file whose hashes recompute",
        ));
    }
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
        (None, Vec::new(), optional_verifier_key(ctx, &args.anchors)?)
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
        let file = bounded::open_regular(path).map_err(|p| p.refused("export file", path))?;
        // Each line is refused once it passes the limit, not parsed whole.
        let limit = bounded::max_event_line(ctx.limits.max_payload_bytes);
        let mut lines = bounded::BoundedLines::new(std::io::BufReader::new(file), limit);
        let mut n = 0u64;
        let mut last_seq = None;
        while let Some((number, line)) = lines.next_line()? {
            let line = match line {
                bounded::Line::Text(t) => t,
                bounded::Line::TooLong => {
                    findings.push(export_line_finding(
                        number,
                        &format!("the line is longer than {limit} bytes, more than any event can be; it was skipped unread"),
                    ));
                    continue;
                }
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<stele_ledger::Event>(&line) {
                Ok(e) => {
                    last_seq = Some(e.seq);
                    log.check(&e, None);
                    recorded.observe(&e);
                    n += 1;
                }
                Err(e) => findings.push(export_line_finding(number, &e.to_string())),
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
        let (head, n) = super::runtime()?.block_on(async {
            let store = open_shared_read_only(ctx).await?;
            let mut snapshot = store.read_snapshot().await?;
            let scanned = scan_db_chain(
                &mut snapshot,
                &chain,
                &mut log,
                &mut ScanBar::new(ctx.json, &chain),
                &mut |e| recorded.observe(e),
            )
            .await;
            let ended = snapshot.end().await;
            let scanned = scanned?;
            ended?;
            Ok::<_, Failure>(scanned)
        })?;
        checked.push(format!(
            "database: {n} events recomputed (canonical bytes, leaves, Merkle nodes{}); {} events after the newest anchor are checked row by row and wait for the next anchor",
            if keyring.is_some() { ", HMAC chain" } else { "" },
            head.size.saturating_sub(newest_anchored)
        ));
        claimed = Some(head);
        events = n;
    }
    let (_, log_findings) = log.finish(claimed.as_ref());
    findings.extend(log_findings);
    let outcome = evidence::check(
        ctx,
        recorded,
        args.evidence,
        evidence_verifier,
        &allowed_buckets(args),
    )?;
    checked.extend(outcome.checked);
    findings.extend(outcome.findings);
    not_checked.extend(outcome.not_checked);
    let anchor_not_checked = anchor_report.as_ref().map(|r| r.not_checked.clone());
    let anchor_warnings = anchor_report
        .as_ref()
        .map(|r| r.warnings.clone())
        .unwrap_or_default();
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
    let anchor_not_checked = anchor_not_checked.unwrap_or_default();
    let mut report = stele_verify::Report::new(
        chain.as_str(),
        all_checked,
        requested,
        found,
        Some(events),
        all_findings,
        timeline,
    );
    report.warnings = anchor_warnings;
    report.add_not_checked(
        anchor_not_checked.into_iter().chain(not_checked),
        &args.anchors.waive,
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

fn worm_failure(e: stele_worm::WormError) -> Failure {
    Failure::worm(e, BucketSetting::Anchors)
}

fn whole_seconds(t: time::OffsetDateTime) -> time::OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}
