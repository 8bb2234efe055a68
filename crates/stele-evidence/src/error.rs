//! The crate's one error type.

use stele_store::StoreError;
use stele_worm::WormError;
use thiserror::Error;

/// An evidence operation failed. Messages say what to fix and never contain secrets.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// Bad input: an id, a key, a file name, a date or a setting.
    #[error("{0}")]
    Invalid(String),
    /// The retention asked for is below the floor.
    #[error(
        "retention of {days} days is below the minimum of {floor} days for evidence; keep at least {floor} days, or lower the floor deliberately"
    )]
    RetentionBelowFloor {
        /// Days asked for.
        days: u32,
        /// The floor.
        floor: u32,
    },
    /// A retention change would shorten a lock; refused before any request.
    #[error(
        "{key}: Object Lock retention can only be extended, never shortened: this version is locked ({mode}) until {current}, and {requested} is not later. Nothing was sent to the store; choose a date after {current}"
    )]
    CannotShorten {
        /// Key.
        key: String,
        /// Current mode.
        mode: String,
        /// Current (or recorded) retain-until.
        current: String,
        /// What was asked.
        requested: String,
    },
    /// A bundle id could not be derived from a file's name; one must be
    /// given explicitly.
    #[error("{reason} (derived from the file name {name:?}; choose a bundle id explicitly)")]
    BundleIdFromFileName {
        /// The file name.
        name: String,
        /// Why it is not a bundle id.
        reason: String,
    },
    /// The verifier key given to check signatures is malformed.
    #[error(
        "the verifier key is malformed ({0}); it must be the ledger's exported verifier key (name+hexid+base64)"
    )]
    MalformedVerifierKey(String),
    /// Something the user named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The object store failed or refused.
    #[error(transparent)]
    Worm(#[from] WormError),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] StoreError),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A detached signature is missing, malformed, foreign or altered.
    #[error("signature check failed: {0}")]
    Signature(String),
    /// Content differs from what the ledger, the metadata or the signature says.
    #[error("{key}: {what}")]
    Mismatch {
        /// Key.
        key: String,
        /// What differs.
        what: String,
    },
}

impl EvidenceError {
    /// True when evidence was found altered or unverifiable (not a usage or availability problem).
    pub fn is_tampering(&self) -> bool {
        matches!(self, Self::Signature(_) | Self::Mismatch { .. })
    }

    /// True when the store was unreachable: worth retrying later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Worm(w) if w.is_transient())
    }

    /// True when the same operation may succeed if tried again unchanged:
    /// the object store was unreachable, or the ledger failed for a passing
    /// reason (see [`StoreError::is_retryable`]). Bad input, a missing
    /// object, tampering and local file errors are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Worm(w) => w.is_retryable(),
            Self::Ledger(s) => s.is_retryable(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CLI words (flags, variables, commands) belong to the CLI, which
    /// adds them to these messages.
    fn assert_no_cli_wording(e: &EvidenceError) {
        let text = e.to_string();
        for word in ["--", "STELE_", "AUDIT_", "`stele "] {
            assert!(!text.contains(word), "{word:?} in {text}");
        }
    }

    #[test]
    fn messages_carry_no_cli_wording() {
        assert_no_cli_wording(&EvidenceError::RetentionBelowFloor { days: 1, floor: 90 });
        assert_no_cli_wording(&EvidenceError::MalformedVerifierKey("bad".into()));
        let named = crate::naming::names_from_path(std::path::Path::new("my file.json"), None)
            .expect_err("a space is not allowed in a bundle id");
        assert!(
            matches!(named, EvidenceError::BundleIdFromFileName { .. }),
            "{named:?}"
        );
        assert_no_cli_wording(&named);
        assert_no_cli_wording(&EvidenceError::Worm(WormError::NoSuchBucket {
            bucket: "b".into(),
        }));
    }

    #[test]
    fn retryable_follows_the_failing_layer() {
        let unavailable = EvidenceError::Worm(WormError::Unavailable {
            op: "PutObject",
            attempts: 3,
            message: "connection refused".into(),
        });
        assert!(unavailable.is_retryable());
        let lost = EvidenceError::Ledger(StoreError::Postgres {
            message: "server closed the connection".into(),
            sqlstate: None,
            retryable: true,
        });
        assert!(lost.is_retryable());
        let denied = EvidenceError::Ledger(StoreError::Postgres {
            message: "permission denied (42501)".into(),
            sqlstate: Some("42501".into()),
            retryable: false,
        });
        assert!(!denied.is_retryable());
        assert!(!EvidenceError::Invalid("x".into()).is_retryable());
        assert!(
            !EvidenceError::Mismatch {
                key: "k".into(),
                what: "w".into()
            }
            .is_retryable()
        );
        assert!(
            !EvidenceError::Worm(WormError::NoSuchBucket { bucket: "b".into() }).is_retryable()
        );
    }
}
