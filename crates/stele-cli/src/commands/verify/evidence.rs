//! The evidence part of `stele verify log`: every `evidence.uploaded` event
//! in the verified log names an object version; each is re-checked in its
//! bucket (present, size, SHA-256, lock mode, retain-until, detached
//! signature) with read-only calls.

use std::collections::BTreeMap;

use anyhow::anyhow;
use clap::ValueEnum;
use stele_evidence::record::{EvidenceRecord, Recorded};
use stele_evidence::{CheckOptions, Depth, EvidenceError, Problem};
use stele_ledger::event::StoredEvent;
use stele_verify::{Aspect, Finding};

use crate::config::Context;
use crate::error::Failure;

/// How far `stele verify log` looks at recorded evidence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum EvidenceDepth {
    /// Read each object back (or use the store's SHA-256 checksum) and
    /// check its lock and signature.
    #[default]
    Content,
    /// HEAD only: presence, size, `sha256` metadata, lock; and the signature.
    Metadata,
    /// Do not look at the evidence bucket.
    Skip,
}

/// Gathers the uploads recorded in a log while it is verified, so the log
/// is read once.
#[derive(Debug, Default)]
pub struct RecordedUploads {
    uploads: Vec<Recorded<EvidenceRecord>>,
    unreadable: Vec<Finding>,
}

impl RecordedUploads {
    /// Looks at one event of the log (most are not evidence, and cost a
    /// comparison).
    pub fn observe<'e>(&mut self, e: impl Into<StoredEvent<'e>>) {
        let e = e.into();
        if e.event_type != stele_evidence::record::UPLOADED {
            return;
        }
        let e = e.to_event();
        match stele_evidence::record::upload_in(&e) {
            Some(Ok(upload)) => self.uploads.push(upload),
            Some(Err(err)) => self.unreadable.push(Finding {
                aspect: Aspect::Integrity,
                kind: "evidence_bad_record".into(),
                subject: format!("seq {}", e.seq),
                anchor_seq: None,
                seq: Some(e.seq),
                at: Some(e.ts.clone()),
                message: err.to_string(),
            }),
            None => {}
        }
    }
}

/// What the evidence check saw: lines for "what was checked", and findings.
#[derive(Debug, Default)]
pub struct EvidenceOutcome {
    pub checked: Vec<String>,
    pub findings: Vec<Finding>,
    /// Checks that could not be performed (no evidence bucket allowed).
    pub not_checked: Vec<stele_verify::NotChecked>,
}

impl EvidenceOutcome {
    /// The terse summary `stele verify log` prints after the chains'.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        let status = if !self.findings.is_empty() {
            "FAIL"
        } else {
            "OK  "
        };
        for line in &self.checked {
            text.push_str(&format!("{status} {line}\n"));
        }
        for n in &self.not_checked {
            if n.waived {
                text.push_str(&format!("WAIVED {}: {}\n", n.check, n.reason));
            } else {
                text.push_str(&format!(
                    "NOT CHECKED {}: {} (to accept this, --waive {})\n",
                    n.check, n.reason, n.check
                ));
            }
        }
        for f in &self.findings {
            let seq = f.seq.map(|s| format!("seq {s}: ")).unwrap_or_default();
            text.push_str(&format!(
                "  - {}: {seq}{}: {}\n",
                f.kind, f.subject, f.message
            ));
        }
        text
    }
}

/// Re-checks every recorded upload in its bucket. The store's answers about
/// an object become findings; a store that cannot be asked at all is an
/// error (exit 3), since nothing could be concluded about the evidence.
///
/// Only buckets in `allowed` are contacted: a record is written by whoever
/// may append, so the bucket it names is not trusted with the auditor's
/// credentials. A record naming another bucket is a finding; with no bucket
/// allowed at all, the evidence is NOT CHECKED.
pub fn check(
    ctx: &Context,
    recorded: RecordedUploads,
    depth: EvidenceDepth,
    verifier_key: Option<String>,
    allowed: &[String],
) -> Result<EvidenceOutcome, Failure> {
    let mut outcome = EvidenceOutcome {
        checked: Vec::new(),
        findings: recorded.unreadable,
        not_checked: Vec::new(),
    };
    let depth = match depth {
        EvidenceDepth::Skip => {
            if !recorded.uploads.is_empty() {
                // Waived by the auditor, and shown as such (like --no-hmac).
                outcome.not_checked.push(stele_verify::NotChecked::waived(
                    "evidence",
                    format!(
                        "{} recorded upload(s) not re-checked in their bucket (--evidence skip)",
                        recorded.uploads.len()
                    ),
                ));
            }
            return Ok(outcome);
        }
        EvidenceDepth::Content => Depth::Content,
        EvidenceDepth::Metadata => Depth::Metadata,
    };
    let mut by_bucket: BTreeMap<String, Vec<Recorded<EvidenceRecord>>> = BTreeMap::new();
    for upload in recorded.uploads {
        by_bucket
            .entry(upload.record.bucket.clone())
            .or_default()
            .push(upload);
    }
    if by_bucket.is_empty() {
        return Ok(outcome);
    }
    if allowed.is_empty() {
        let n: usize = by_bucket.values().map(Vec::len).sum();
        outcome.not_checked.push(stele_verify::NotChecked::new(
            "evidence",
            format!(
                "{n} recorded upload(s) were not checked: no evidence bucket is allowed (name each with --evidence-bucket or STELE_EVIDENCE_BUCKET; records name buckets: {})",
                by_bucket.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
        return Ok(outcome);
    }
    by_bucket.retain(|bucket, uploads| {
        if allowed.contains(bucket) {
            return true;
        }
        for u in uploads.iter() {
            outcome.findings.push(Finding {
                aspect: Aspect::Integrity,
                kind: "evidence_bucket_not_allowed".into(),
                subject: format!("{bucket}/{}", u.record.key),
                anchor_seq: None,
                seq: Some(u.seq),
                at: None,
                message: format!(
                    "the record names bucket {bucket:?}, which is not among the evidence buckets allowed (--evidence-bucket); it was not contacted"
                ),
            });
        }
        false
    });
    let signatures = verifier_key.is_some();
    let options = CheckOptions {
        depth,
        verifier_key,
    };
    let rt = super::super::runtime()?;
    for (bucket, uploads) in by_bucket {
        let cfg = crate::commands::evidence::bucket_config(ctx, bucket.clone());
        let report = rt
            .block_on(async {
                let worm = stele_worm::S3Worm::connect(cfg).await?;
                stele_evidence::check_uploads(&worm, &uploads, &options).await
            })
            .map_err(|e| could_not_check(&bucket, e))?;
        outcome.checked.push(format!(
            "evidence bucket {bucket}: {} recorded upload(s) re-checked: present, size, SHA-256 ({}), lock mode and retain-until{}",
            report.checked,
            match depth {
                Depth::Content => "checksum API or bytes read back",
                Depth::Metadata => "sha256 metadata only",
            },
            if signatures {
                ", detached signature"
            } else {
                "; detached signatures not checked (no verifier key)"
            }
        ));
        outcome
            .findings
            .extend(report.findings.into_iter().map(to_finding));
    }
    Ok(outcome)
}

/// Why the evidence was not checked. Here the command knows more than the
/// error: verification writes nothing and the chain was already checked,
/// so whatever kept the bucket from answering (unreachable, a refused
/// credential, a missing bucket) means the run could not check all it
/// was asked to: 3, like a NOT CHECKED item, never "refused" (2). Only
/// tampering the vault itself reports stays 1.
fn could_not_check(bucket: &str, e: EvidenceError) -> Failure {
    if e.is_tampering() {
        return Failure::from(e).context(format!("evidence in bucket {bucket}"));
    }
    Failure::Operational(anyhow!(
        "could not check the evidence in bucket {bucket}: {}; the evidence is unverified (verify the log alone with --evidence skip)",
        e
    ))
}

fn to_finding(f: stele_evidence::Finding) -> Finding {
    let (aspect, kind) = match &f.problem {
        Problem::Missing => (Aspect::Completeness, "evidence_missing"),
        Problem::SizeDiffers { .. } => (Aspect::Integrity, "evidence_size_differs"),
        Problem::Sha256Differs { .. } => (Aspect::Integrity, "evidence_content_altered"),
        Problem::NotLocked => (Aspect::Integrity, "evidence_not_locked"),
        Problem::ModeDiffers { .. } => (Aspect::Integrity, "evidence_lock_mode_differs"),
        Problem::RetainUntilShort { .. } => (Aspect::Integrity, "evidence_retention_short"),
        Problem::Signature(_) => (Aspect::Integrity, "evidence_bad_signature"),
        _ => (Aspect::Integrity, "evidence_bad_record"),
    };
    Finding {
        aspect,
        kind: kind.into(),
        subject: format!(
            "{} (version {})",
            f.key,
            f.version_id.as_deref().unwrap_or("-")
        ),
        anchor_seq: None,
        seq: Some(f.seq),
        at: None,
        message: f.problem.to_string(),
    }
}
