//! Exit codes, decided in one place.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success; for `verify`, nothing differs |
//! | 1 | tampering or something missing was found |
//! | 2 | refused: bad input, usage or configuration (nothing was written) |
//! | 3 | could not complete or could not check (database, file system, an unreachable store, contention) |
//!
//! Every library error the CLI sees becomes a [`Failure`] here, once: a
//! `From` impl per error type (and [`Failure::worm`] for object-store
//! errors, which need to know which bucket setting to name). Each one
//! asks the library first whether it found tampering, then whether the
//! same call may succeed if tried again (`is_retryable()`: exit 3), and
//! only then sorts the rest into refusals (2) and failures (3). Commands
//! use `?`; a command that knows more than the error does (an anchor was
//! already stored when its upload failed) says so where it decides.

use stele_anchorer::AnchorerError;
use stele_bucket::BucketError;
use stele_evidence::EvidenceError;
use stele_keys::KeyError;
use stele_store::StoreError;
use stele_worm::WormError;

/// A command's failure, classified for its exit code.
#[derive(Debug)]
pub enum Failure {
    /// Verification found problems (already reported on stdout).
    Tampered,
    /// Tampering or damage found while doing something else; the message says what.
    TamperingFound(anyhow::Error),
    /// Bad input or configuration; nothing was written.
    Input(anyhow::Error),
    /// The operation could not complete.
    Operational(anyhow::Error),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Tampered | Self::TamperingFound(_) => 1,
            Self::Input(_) => 2,
            Self::Operational(_) => 3,
        }
    }

    pub fn message(&self) -> Option<String> {
        match self {
            Self::Tampered => None,
            // `{:#}` shows the whole context chain on one line.
            // Messages name files, keys and records from outside: escaped
            // so they cannot rewrite the terminal (JSON escapes its own).
            Self::Input(e) | Self::Operational(e) | Self::TamperingFound(e) => {
                Some(crate::output::escape(&format!("{e:#}")).into_owned())
            }
        }
    }

    /// Says the failure on stderr (one JSON object with `--json`).
    pub fn report(&self, json: bool) {
        let Some(msg) = self.message() else {
            return;
        };
        if json {
            let body = serde_json::json!({"error": msg, "exit_code": self.exit_code()});
            eprintln!("{body}");
        } else {
            eprintln!("error: {msg}");
        }
    }

    /// The same failure, its message preceded by `context`.
    pub fn context(self, context: impl std::fmt::Display + Send + Sync + 'static) -> Self {
        match self {
            Self::Tampered => Self::Tampered,
            Self::TamperingFound(e) => Self::TamperingFound(e.context(context)),
            Self::Input(e) => Self::Input(e.context(context)),
            Self::Operational(e) => Self::Operational(e.context(context)),
        }
    }

    /// The same class (and so the same exit code), with `hint` added to the message.
    pub fn hint(self, hint: &str) -> Self {
        match self {
            Self::Tampered => Self::Tampered,
            Self::TamperingFound(e) => Self::TamperingFound(with_hint(format!("{e:#}"), hint)),
            Self::Input(e) => Self::Input(with_hint(format!("{e:#}"), hint)),
            Self::Operational(e) => Self::Operational(with_hint(format!("{e:#}"), hint)),
        }
    }

    /// An object-store error; `bucket` says which setting names the bucket
    /// (the hint for a missing bucket). Unreachable through every retry, or
    /// failed after something was sent (a read-back that differs, a lost
    /// race, a local file): 3. Everything else is the store refusing what
    /// was asked before anything was written (settings, credentials,
    /// permissions, an existing object): 2.
    pub fn worm(e: WormError, bucket: BucketSetting) -> Self {
        let operational = e.is_retryable()
            || matches!(
                e,
                WormError::Verification { .. } | WormError::Io { .. } | WormError::LostRace { .. }
            );
        let e = worm_error(e, bucket.names());
        if operational {
            Self::Operational(e)
        } else {
            Self::Input(e)
        }
    }

    /// The verdict of a run, decided before its reports were written,
    /// combined with the outcomes of writing them (`--html`, `--junit`,
    /// stdout). A report that cannot be written never changes a verdict
    /// that is not a pass (tampering stays 1): it is said on stderr here,
    /// and the verdict stands. After a clean verdict it is the run's
    /// failure (3: the run could not complete).
    pub fn after_reports(
        verdict: Result<(), Self>,
        reports: impl IntoIterator<Item = Result<(), Self>>,
        json: bool,
    ) -> Result<(), Self> {
        let mut outcome = verdict;
        for report in reports {
            let Err(unwritten) = report else { continue };
            match outcome {
                Ok(()) => outcome = Err(unwritten),
                Err(_) => unwritten.report(json),
            }
        }
        outcome
    }
}

/// Which setting names the bucket an object-store error is about.
#[derive(Clone, Copy, Debug)]
pub enum BucketSetting {
    /// The anchor bucket (`anchor`, `verify`, `bucket`).
    Anchors,
    /// The evidence bucket (`evidence`).
    Evidence,
}

impl BucketSetting {
    fn names(self) -> &'static str {
        match self {
            Self::Anchors => "the bucket name (--bucket / AUDIT_ANCHOR_BUCKET)",
            Self::Evidence => "--bucket / STELE_EVIDENCE_BUCKET",
        }
    }
}

/// The library's message plus what to type about it: libraries say what
/// is wrong, the CLI names its own commands, flags and variables.
pub fn with_hint(e: impl std::fmt::Display, hint: &str) -> anyhow::Error {
    anyhow::anyhow!("{e} ({hint})")
}

/// A WORM error with the CLI's advice for the cases a user fixes by
/// changing a setting; `bucket_setting` names where this command's bucket
/// comes from.
fn worm_error(e: WormError, bucket_setting: &str) -> anyhow::Error {
    match &e {
        WormError::NoSuchBucket { .. } => with_hint(
            e,
            &format!("check {bucket_setting}, the endpoint and the region"),
        ),
        WormError::NoObjectLock { .. } => with_hint(
            e,
            "create a bucket with Object Lock with `stele bucket init` or the Terraform module",
        ),
        WormError::BadCredentials { .. } => with_hint(
            e,
            "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the profile or the role",
        ),
        _ => e.into(),
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        use stele_ledger::merkle::MerkleError;
        if e.is_retryable() {
            return Self::Operational(e.into());
        }
        match e {
            // Stored data that is not what stele wrote is damage found.
            StoreError::Corrupt(_) => {
                Self::TamperingFound(with_hint(e, "run `stele verify log` to locate tampering"))
            }
            StoreError::UnknownChain(_) => {
                Self::Input(with_hint(e, "`stele log chains` lists the chains"))
            }
            StoreError::Input(_)
            | StoreError::OutOfRange(_)
            | StoreError::Merkle(MerkleError::OutOfRange(_))
            | StoreError::IdempotencyConflict { .. }
            | StoreError::IdempotencyConflictInBatch { .. }
            | StoreError::SchemaTooNew { .. }
            | StoreError::InvalidLocation { .. }
            | StoreError::ReadOnly => Self::Input(e.into()),
            // The database or its files failed (an unknown database, a
            // permission, a full disk), or another writer got there first.
            _ => Self::Operational(e.into()),
        }
    }
}

impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Self {
        if e.is_retryable() {
            return Self::Operational(e.into());
        }
        match e {
            KeyError::NotFound(_) => Self::Input(with_hint(
                e,
                "run `stele init` first, or point --data-dir at an initialized directory",
            )),
            KeyError::Io { .. } => Self::Operational(e.into()),
            _ => Self::Input(e.into()),
        }
    }
}

impl From<AnchorerError> for Failure {
    fn from(e: AnchorerError) -> Self {
        use AnchorerError as E;
        // The anchorer says what is wrong; what to run next is the CLI's to say.
        match e {
            E::Store(s) => s.into(),
            E::Worm(w) => Self::worm(w, BucketSetting::Anchors),
            E::ChainShrank { .. } | E::UnanchoredTampering { .. } | E::CheckFailed { .. } => {
                Self::TamperingFound(with_hint(e, "`stele verify log` names what was changed"))
            }
            E::CorruptOutbox { .. } => Self::TamperingFound(with_hint(
                e,
                "`stele verify anchors` compares the bucket's anchors with the database",
            )),
            E::SignedByOtherKey { .. } => Self::Input(with_hint(
                e,
                "the signing key is signing.key in the data directory",
            )),
            E::Contended { .. } => Self::Operational(with_hint(
                e,
                "nothing is wrong; `stele anchor now` again builds on their anchor",
            )),
            E::AnchorInFuture { .. } => Self::Operational(e.into()),
            E::ForeignAnchors { .. } => Self::Input(with_hint(
                e,
                "the prefix is AUDIT_ANCHOR_PREFIX or `prefix` in [anchor] of stele.toml",
            )),
            E::UnknownOwnAnchor { .. } => Self::Input(with_hint(
                e,
                "`stele verify anchors` shows what the bucket holds",
            )),
            other if other.is_retryable() => Self::Operational(other.into()),
            // Settings, an anchor that cannot be built: refused before any write.
            other => Self::Input(other.into()),
        }
    }
}

impl From<EvidenceError> for Failure {
    fn from(e: EvidenceError) -> Self {
        if e.is_tampering() {
            return Self::TamperingFound(e.into());
        }
        match e {
            EvidenceError::Worm(w) => Self::worm(w, BucketSetting::Evidence),
            EvidenceError::Ledger(s) => s.into(),
            EvidenceError::Io { .. } => Self::Operational(e.into()),
            // The library says what is wrong; the CLI says what to type.
            EvidenceError::RetentionBelowFloor { .. } => Self::Input(with_hint(
                e,
                "the floor is --min-retain-days / STELE_EVIDENCE_MIN_RETENTION_DAYS",
            )),
            EvidenceError::BundleIdFromFileName { .. } => {
                Self::Input(with_hint(e, "pass --bundle-id to choose one"))
            }
            EvidenceError::MalformedVerifierKey(_) => Self::Input(with_hint(
                e,
                "use the output of `stele keys export-verifier`",
            )),
            other if other.is_retryable() => Self::Operational(other.into()),
            other => Self::Input(other.into()),
        }
    }
}

impl From<BucketError> for Failure {
    fn from(e: BucketError) -> Self {
        use stele_bucket::SpecError as S;
        // The library says what is wrong; the flags and variables are ours to name.
        let hint = match &e {
            BucketError::Spec(S::GovernanceInProduction { .. }) => Some("--mode COMPLIANCE"),
            BucketError::Spec(S::GovernanceWithoutStage) => Some("GOVERNANCE needs --stage"),
            BucketError::Spec(S::RetentionBelowFloor { .. }) => {
                Some("--days; the minimum is AUDIT_ANCHOR_MIN_RETENTION_DAYS")
            }
            BucketError::Spec(S::KmsAlias(_)) => Some("--kms-key"),
            BucketError::Spec(S::WriterArn(_)) => Some("--writer-arn"),
            BucketError::NoObjectLock { .. } => Some("give `stele bucket init` a new bucket name"),
            BucketError::WouldWeaken { .. } => Some("raise --days or --mode"),
            BucketError::Credentials { .. } => {
                Some("check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the profile or the role")
            }
            _ => None,
        };
        // `bucket init|check` read or change the bucket's settings: what
        // the user must change is 2, an endpoint that failed or refused
        // part-way is 3 (init may have applied earlier steps).
        let input = e.is_input();
        let e = match hint {
            Some(hint) => with_hint(e, hint),
            None => e.into(),
        };
        if input {
            Self::Input(e)
        } else {
            Self::Operational(e)
        }
    }
}

impl From<stele_ledger::event::InputError> for Failure {
    fn from(e: stele_ledger::event::InputError) -> Self {
        Self::Input(e.into())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::Operational(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(f: impl Into<Failure>) -> i32 {
        f.into().exit_code()
    }

    #[test]
    fn contention_and_unreachable_services_are_exit_3() {
        assert_eq!(code(AnchorerError::Contended { chain: "c".into() }), 3);
        let unavailable = || WormError::Unavailable {
            op: "PutObject",
            attempts: 3,
            message: "connection refused".into(),
        };
        assert_eq!(code(AnchorerError::Worm(unavailable())), 3);
        assert_eq!(code(EvidenceError::Worm(unavailable())), 3);
        let lost = StoreError::Postgres {
            message: "server closed the connection".into(),
            sqlstate: None,
            retryable: true,
        };
        assert_eq!(code(AnchorerError::Store(lost)), 3);
        assert_eq!(
            code(StoreError::AnchorConflict {
                chain: "c".into(),
                anchor_seq: 1
            }),
            3
        );
    }

    #[test]
    fn tampering_is_exit_1_wherever_it_is_found() {
        assert_eq!(
            code(StoreError::Corrupt("seq 3: payload is NULL".into())),
            1
        );
        assert_eq!(
            code(AnchorerError::ChainShrank {
                chain: "c".into(),
                size: 1,
                anchored: 2,
                anchor_seq: 0
            }),
            1
        );
        assert_eq!(
            code(EvidenceError::Mismatch {
                key: "k".into(),
                what: "w".into()
            }),
            1
        );
    }

    #[test]
    fn refusals_are_exit_2_and_failures_after_a_write_exit_3() {
        assert_eq!(
            code(AnchorerError::Worm(WormError::NoSuchBucket {
                bucket: "b".into()
            })),
            2
        );
        assert_eq!(code(AnchorerError::Config("bad".into())), 2);
        assert_eq!(code(EvidenceError::MalformedVerifierKey("bad".into())), 2);
        // The store took the bytes but holds something else: not a refusal.
        let differs = || WormError::Verification {
            key: "k".into(),
            what: "size".into(),
        };
        assert_eq!(code(AnchorerError::Worm(differs())), 3);
        assert_eq!(code(EvidenceError::Worm(differs())), 3);
    }

    #[test]
    fn a_report_that_cannot_be_written_keeps_the_verdict() {
        let unwritten = || Err(Failure::Operational(anyhow::anyhow!("cannot write r.html")));
        let outcome = Failure::after_reports(Err(Failure::Tampered), [unwritten()], false);
        assert_eq!(outcome.map_err(|f| f.exit_code()), Err(1));
        let outcome = Failure::after_reports(Ok(()), [Ok(()), unwritten()], false);
        assert_eq!(outcome.map_err(|f| f.exit_code()), Err(3));
        assert!(Failure::after_reports(Ok(()), [Ok(())], false).is_ok());
    }
}
