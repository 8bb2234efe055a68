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

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Input(_)
            | StoreError::UnknownChain(_)
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
