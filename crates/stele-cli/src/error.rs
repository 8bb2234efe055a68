//! Exit codes, mapped in one place.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success; for `verify`, nothing differs |
//! | 1 | verification found tampering or damage |
//! | 2 | refused: bad input, usage or configuration (nothing was written) |
//! | 3 | failed: could not complete (database, file system, network) |

use stele_keys::KeyError;
use stele_store::StoreError;

/// A command's failure, classified for its exit code.
#[derive(Debug)]
pub enum Failure {
    /// Verification found problems (already reported on stdout).
    Tampered,
    /// Tampering or damage found while doing something else; the message says what.
    TamperingFound(anyhow::Error),
    /// Bad input or configuration.
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
}

/// The library's message plus what to type about it: libraries say what
/// is wrong, the CLI names its own commands, flags and variables.
pub fn with_hint(e: impl std::fmt::Display, hint: &str) -> anyhow::Error {
    anyhow::anyhow!("{e} ({hint})")
}

/// A WORM error with the CLI's advice for the cases a user fixes by
/// changing a setting; `bucket_setting` names where this command's bucket
/// comes from.
pub fn worm_error(e: stele_worm::WormError, bucket_setting: &str) -> anyhow::Error {
    use stele_worm::WormError;
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
        match e {
            StoreError::UnknownChain(_) => {
                Self::Input(with_hint(e, "`stele log chains` lists the chains"))
            }
            StoreError::Corrupt(_) => {
                Self::Operational(with_hint(e, "run `stele verify log` to locate tampering"))
            }
            StoreError::Input(_)
            | StoreError::OutOfRange(_)
            | StoreError::IdempotencyConflict { .. }
            | StoreError::SchemaTooNew { .. }
            | StoreError::InvalidLocation { .. } => Self::Input(e.into()),
            _ => Self::Operational(e.into()),
        }
    }
}

impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Self {
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
