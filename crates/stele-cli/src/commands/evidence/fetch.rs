//! `stele evidence get` (download and verify) and `stele evidence check`
//! (verify a local copy). Content is compared with every statement about
//! it: the ledger record, the detached signature, and the object's `sha256`
//! metadata; any difference is reported as tampering (exit 1).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use serde_json::json;
use stele_evidence::EvidenceError;
use stele_evidence::{EvidenceRecord, Recorded, Statement, Vault};
use stele_worm::{FileDigest, ObjectFacts, UploadTuning};
use tokio::runtime::Runtime;

use super::{
    BarProgress, CheckArgs, GetArgs, Resolved, evidence_chain, open_vault, recorded_uploads,
    resolve, runtime,
};
use crate::config::Context;
use crate::error::Failure;
use crate::output;

/// Where a download goes.
enum Destination {
    Stdout,
    File(PathBuf),
}

/// Everything a copy is checked against.
struct Expectations {
    resolved: Resolved,
    facts: ObjectFacts,
    statement: Statement,
}

pub fn get(ctx: &Context, args: &GetArgs) -> Result<(), Failure> {
    let chain = evidence_chain(&args.vault)?;
    let rt = runtime()?;
    let records = recorded_uploads(&rt, ctx, &chain)?;
    let resolved = resolve(&args.target, records.as_deref())?;
    let vkey = verifier_key(ctx, args.verifier_key.as_deref())?;
    let destination = destination(args, &resolved.key)?;
    let vault = open_vault(&rt, ctx, &args.vault, UploadTuning::default())?;
    let expect = expectations(&rt, &vault, resolved, &vkey)?;
    let version = expect.facts.version_id.clone();
    let name = expect
        .resolved
        .key
        .rsplit('/')
        .next()
        .unwrap_or("object")
        .to_owned();
    let bar = BarProgress::new(ctx.json, expect.facts.size, &name);

    let (read, temp) = match &destination {
        Destination::Stdout => {
            let mut out = std::io::stdout();
            let read = rt.block_on(vault.download(
                &expect.resolved.key,
                version.as_deref(),
                &mut |chunk| out.write_all(chunk),
                &bar,
            ));
            (read, None)
        }
        Destination::File(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| {
                Failure::Operational(anyhow!("cannot create a file in {}: {e}", dir.display()))
            })?;
            let mut writer = std::io::BufWriter::with_capacity(1 << 20, temp.as_file());
            let read = rt.block_on(vault.download(
                &expect.resolved.key,
                version.as_deref(),
                &mut |chunk| writer.write_all(chunk),
                &bar,
            ));
            let flushed = writer.flush();
            drop(writer);
            flushed
                .map_err(|e| Failure::Operational(anyhow!("writing the download failed: {e}")))?;
            (read, Some(temp))
        }
    };
    bar.finish();
    let read = read?;
    let differences = differences(&expect, read.size, &read.sha256);
    if !differences.is_empty() {
        // The temporary file is removed on drop: a copy that fails verification is never left behind.
        let leftover = match destination {
            Destination::Stdout => "; the bytes already written to stdout must not be trusted",
            Destination::File(_) => "; nothing was written",
        };
        return Err(Failure::TamperingFound(anyhow!(
            "{} (version {}) failed verification: {}{leftover}",
            expect.resolved.key,
            version.as_deref().unwrap_or("-"),
            differences.join("; ")
        )));
    }
    let written = match (destination, temp) {
        (Destination::File(path), Some(temp)) => {
            let persisted = if args.force {
                temp.persist(&path).map(|_| ())
            } else {
                temp.persist_noclobber(&path).map(|_| ())
            };
            persisted.map_err(|e| {
                Failure::Operational(anyhow!("cannot write {}: {}", path.display(), e.error))
            })?;
            Some(path)
        }
        _ => None,
    };
    let summary = json!({
        "key": expect.resolved.key,
        "version_id": version,
        "size": read.size,
        "sha256": read.sha256,
        "verified_against": verified_against(&expect),
        "output": written.as_ref().map(|p| p.display().to_string()),
    });
    if ctx.json {
        // With `-o -` stdout carries the content; the summary goes to stderr.
        if written.is_none() {
            eprintln!("{summary}");
            return Ok(());
        }
        return output::print_json(&summary);
    }
    let text = format!(
        "verified {} (version {}): {} bytes, sha256 {}\n  against {}\n",
        expect.resolved.key,
        version.as_deref().unwrap_or("-"),
        read.size,
        read.sha256,
        verified_against(&expect).join(", ")
    );
    match written {
        Some(path) => output::print(&format!("{text}  written to {}\n", path.display())),
        None => {
            eprint!("{text}");
            Ok(())
        }
    }
}

pub fn check(ctx: &Context, args: &CheckArgs) -> Result<(), Failure> {
    let chain = evidence_chain(&args.vault)?;
    let rt = runtime()?;
    let records = recorded_uploads(&rt, ctx, &chain)?;
    let resolved = resolve(&args.target, records.as_deref())?;
    let vkey = verifier_key(ctx, args.verifier_key.as_deref())?;
    let digest = FileDigest::of_file(&args.file)
        .map_err(|e| Failure::Input(anyhow!("cannot read {}: {e}", args.file.display())))?;
    let vault = open_vault(&rt, ctx, &args.vault, UploadTuning::default())?;
    let expect = expectations(&rt, &vault, resolved, &vkey)?;
    let differences = differences(&expect, digest.size, &digest.sha256);
    if !differences.is_empty() {
        return Err(Failure::TamperingFound(anyhow!(
            "{} is not an intact copy of {}: {}",
            args.file.display(),
            expect.resolved.key,
            differences.join("; ")
        )));
    }
    let against = verified_against(&expect);
    if ctx.json {
        return output::print_json(&json!({
            "file": args.file.display().to_string(),
            "key": expect.resolved.key,
            "version_id": expect.facts.version_id,
            "size": digest.size,
            "sha256": digest.sha256,
            "verified_against": against,
        }));
    }
    output::print(&format!(
        "{} is an intact copy of {}: {} bytes, sha256 {}\n  against {}\n",
        args.file.display(),
        expect.resolved.key,
        digest.size,
        digest.sha256,
        against.join(", ")
    ))
}

/// The verifier key: given, else this data directory's.
fn verifier_key(ctx: &Context, given: Option<&str>) -> Result<String, Failure> {
    match given {
        // Always the key itself, never a file name; one that does not parse
        // is refused before anything is fetched.
        Some(k) => stele_verify::check_verifier_key(k)
            .map(|()| k.trim().to_owned())
            .map_err(|why| Failure::Input(anyhow!("--verifier-key: {why}; nothing was fetched"))),
        None => ctx.keys().verifier_key().map_err(|e| {
            Failure::Input(anyhow!(
                "no verifier key: pass --verifier-key (the output of `stele keys export-verifier`) or use the data directory that signed the evidence ({e})"
            ))
        }),
    }
}

fn destination(args: &GetArgs, key: &str) -> Result<Destination, Failure> {
    let path = match &args.output {
        Some(p) if p.as_os_str() == "-" => return Ok(Destination::Stdout),
        Some(p) => p.clone(),
        None => PathBuf::from(key.rsplit('/').next().unwrap_or("evidence")),
    };
    if path.exists() && !args.force {
        return Err(Failure::Input(anyhow!(
            "{} already exists; pass --force to replace it or -o to choose another path",
            path.display()
        )));
    }
    Ok(Destination::File(path))
}

/// Reads what the store and the signature say about the object.
fn expectations(
    rt: &Runtime,
    vault: &Vault,
    resolved: Resolved,
    vkey: &str,
) -> Result<Expectations, Failure> {
    let version = resolved.version_id.as_deref();
    let facts = rt
        .block_on(vault.worm().head(&resolved.key, version))
        .map_err(EvidenceError::from)?;
    let Some(facts) = facts else {
        return Err(match &resolved.record {
            Some(r) => Failure::TamperingFound(anyhow!(
                "{} version {} is recorded in the ledger ({} seq {}) but missing from the bucket",
                resolved.key,
                version.unwrap_or("-"),
                r.chain_id,
                r.seq
            )),
            None => Failure::Input(anyhow!(
                "{} (version {}) does not exist in the bucket",
                resolved.key,
                version.unwrap_or("current")
            )),
        });
    };
    let sig_version = resolved
        .record
        .as_ref()
        .and_then(|r| r.record.signature_version_id.as_deref());
    let statement = rt.block_on(vault.statement(&resolved.key, sig_version, vkey))?;
    if resolved.record.is_none() {
        eprintln!(
            "warning: {} is not recorded in this ledger; checking it against its metadata and signature only",
            resolved.key
        );
    }
    Ok(Expectations {
        resolved,
        facts,
        statement,
    })
}

/// Every way the content (`size`, `sha256`) differs from what is stated about it.
fn differences(expect: &Expectations, size: u64, sha256: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut compare = |who: String, want_size: Option<u64>, want_sha: &str| {
        if want_size.is_some_and(|s| s != size) {
            found.push(format!(
                "{who} states {} bytes, the content has {size}",
                want_size.unwrap_or_default()
            ));
        }
        if want_sha != sha256 {
            found.push(format!(
                "{who} states sha256 {want_sha}, the content hashes to {sha256}"
            ));
        }
    };
    if let Some(Recorded {
        chain_id,
        seq,
        record: EvidenceRecord {
            size: s, sha256: h, ..
        },
        ..
    }) = &expect.resolved.record
    {
        compare(format!("the ledger ({chain_id} seq {seq})"), Some(*s), h);
    }
    compare(
        "the detached signature".into(),
        Some(expect.statement.size),
        &expect.statement.sha256,
    );
    if let Some(meta) = &expect.facts.metadata_sha256 {
        compare("the object's sha256 metadata".into(), None, meta);
    }
    found
}

fn verified_against(expect: &Expectations) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(r) = &expect.resolved.record {
        v.push(format!("ledger {} seq {}", r.chain_id, r.seq));
    }
    v.push("detached signature".into());
    if expect.facts.metadata_sha256.is_some() {
        v.push("sha256 metadata".into());
    }
    v
}
