//! Re-checking recorded evidence against the bucket: for every
//! `evidence.uploaded` record, is the recorded version still there, with the
//! recorded size and SHA-256, locked in the recorded mode until at least the
//! recorded date, with a valid detached signature?
//!
//! This is what `stele verify` runs over the ledger's evidence.

use std::fmt;

use stele_worm::{NoProgress, ObjectFacts, S3Worm};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::EvidenceError;
use crate::record::{EvidenceRecord, Recorded};
use crate::vault::{read_statement, rfc3339};

/// How deep to look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// HEAD only: presence, size, `sha256` metadata, lock mode and retain-until.
    Metadata,
    /// Also the content: the store's full-object SHA-256 checksum where it
    /// has one, else the bytes, read back in a stream.
    Content,
}

/// What to check.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Depth.
    pub depth: Depth,
    /// Verifier key (`stele keys export-verifier`) to check detached
    /// signatures with; `None` skips them.
    pub verifier_key: Option<String>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            depth: Depth::Content,
            verifier_key: None,
        }
    }
}

/// What is wrong with one recorded object.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The recorded version is not in the bucket.
    Missing,
    /// Its size differs from the record.
    SizeDiffers {
        /// Recorded.
        recorded: u64,
        /// Stored.
        stored: u64,
    },
    /// Its content hashes differently from the record.
    Sha256Differs {
        /// Recorded.
        recorded: String,
        /// Stored.
        stored: String,
        /// `checksum-api`, `bytes` or `metadata`.
        by: &'static str,
    },
    /// It is not locked at all.
    NotLocked,
    /// Its lock mode differs from the record.
    ModeDiffers {
        /// Recorded.
        recorded: String,
        /// Stored.
        stored: String,
    },
    /// It is locked until earlier than recorded.
    RetainUntilShort {
        /// Recorded.
        recorded: String,
        /// Stored.
        stored: String,
    },
    /// The detached signature is missing, foreign, altered or disagrees.
    Signature(String),
    /// The record itself is unusable (e.g. an unparsable date).
    BadRecord(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("the recorded version is missing from the bucket"),
            Self::SizeDiffers { recorded, stored } => {
                write!(f, "size is {stored} bytes, the ledger recorded {recorded}")
            }
            Self::Sha256Differs {
                recorded,
                stored,
                by,
            } => write!(
                f,
                "content hashes to {stored} ({by}), the ledger recorded {recorded}"
            ),
            Self::NotLocked => f.write_str("the version is not locked (no Object Lock retention)"),
            Self::ModeDiffers { recorded, stored } => {
                write!(f, "lock mode is {stored}, the ledger recorded {recorded}")
            }
            Self::RetainUntilShort { recorded, stored } => write!(
                f,
                "locked only until {stored}, the ledger recorded {recorded}"
            ),
            Self::Signature(what) => write!(f, "detached signature: {what}"),
            Self::BadRecord(what) => write!(f, "unusable record: {what}"),
        }
    }
}

/// One problem with one recorded object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Chain of the record.
    pub chain_id: String,
    /// Seq of the `evidence.uploaded` event.
    pub seq: u64,
    /// Object key.
    pub key: String,
    /// Recorded version.
    pub version_id: Option<String>,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} seq {}: {} (version {}): {}",
            self.chain_id,
            self.seq,
            self.key,
            self.version_id.as_deref().unwrap_or("-"),
            self.problem
        )
    }
}

/// The outcome of a check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Records checked against this bucket.
    pub checked: usize,
    /// Records for other buckets, not checked here (named by seq).
    pub other_bucket: Vec<u64>,
    /// Problems found; empty means every checked record holds.
    pub findings: Vec<Finding>,
}

/// Re-checks each recorded upload against `worm`'s bucket.
///
/// # Errors
///
/// Only when the store cannot be asked (unreachable, credentials refused):
/// anything the store answers about an object becomes a [`Finding`].
pub async fn check_uploads(
    worm: &S3Worm,
    records: &[Recorded<EvidenceRecord>],
    options: &CheckOptions,
) -> Result<CheckReport, EvidenceError> {
    let mut report = CheckReport::default();
    for r in records {
        if r.record.bucket != worm.bucket() {
            report.other_bucket.push(r.seq);
            continue;
        }
        report.checked += 1;
        let find = |problem: Problem| Finding {
            chain_id: r.chain_id.clone(),
            seq: r.seq,
            key: r.record.key.clone(),
            version_id: r.record.version_id.clone(),
            problem,
        };
        for problem in check_one(worm, &r.record, options).await? {
            report.findings.push(find(problem));
        }
    }
    Ok(report)
}

/// Every problem with one record (empty when it holds).
async fn check_one(
    worm: &S3Worm,
    record: &EvidenceRecord,
    options: &CheckOptions,
) -> Result<Vec<Problem>, EvidenceError> {
    let version = record.version_id.as_deref();
    let facts = match worm.head(&record.key, version).await {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(vec![Problem::Missing]),
        Err(e) if e.is_transient() => return Err(e.into()),
        Err(stele_worm::WormError::Refused { code, .. })
            if code == "NoSuchVersion" || code == "InvalidArgument" =>
        {
            return Ok(vec![Problem::Missing]);
        }
        Err(e) => return Err(e.into()),
    };
    let mut problems = lock_problems(record, &facts);
    if facts.size != record.size {
        problems.push(Problem::SizeDiffers {
            recorded: record.size,
            stored: facts.size,
        });
    }
    if let Some(meta) = &facts.metadata_sha256
        && meta != &record.sha256
    {
        problems.push(Problem::Sha256Differs {
            recorded: record.sha256.clone(),
            stored: meta.clone(),
            by: "metadata",
        });
    }
    if options.depth == Depth::Content {
        let (stored, by) = match &facts.checksum_sha256 {
            Some(sum) => (sum.clone(), "checksum-api"),
            None => {
                let read = worm
                    .sha256_of_stored(&record.key, facts.version_id.as_deref(), &NoProgress)
                    .await?;
                (read.sha256, "bytes")
            }
        };
        if stored != record.sha256 {
            problems.push(Problem::Sha256Differs {
                recorded: record.sha256.clone(),
                stored,
                by,
            });
        }
    }
    if let Some(vkey) = &options.verifier_key {
        let checked = read_statement(
            worm,
            &record.key,
            record.signature_version_id.as_deref(),
            vkey,
        )
        .await
        .and_then(|s| s.matches(&record.key, record.size, &record.sha256));
        match checked {
            Ok(()) => {}
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => problems.push(Problem::Signature(e.to_string())),
        }
    }
    Ok(problems)
}

fn lock_problems(record: &EvidenceRecord, facts: &ObjectFacts) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Some(mode) = facts.lock_mode else {
        return vec![Problem::NotLocked];
    };
    if mode.as_str() != record.mode {
        problems.push(Problem::ModeDiffers {
            recorded: record.mode.clone(),
            stored: mode.as_str().to_owned(),
        });
    }
    match OffsetDateTime::parse(&record.retain_until, &Rfc3339) {
        Err(e) => problems.push(Problem::BadRecord(format!(
            "retain_until {:?}: {e}",
            record.retain_until
        ))),
        Ok(recorded) => match facts.retain_until {
            Some(stored) if stored.unix_timestamp() >= recorded.unix_timestamp() => {}
            stored => problems.push(Problem::RetainUntilShort {
                recorded: record.retain_until.clone(),
                stored: stored.map_or_else(|| "never".into(), rfc3339),
            }),
        },
    }
    problems
}
