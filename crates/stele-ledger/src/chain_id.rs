//! Chain identifiers: `[a-z0-9][a-z0-9._-]{0,63}` (docs/contracts.md §1).

use std::fmt;

use crate::event::InputError;

/// The name of one append-only log, e.g. `production`.
///
/// The pattern keeps chain ids safe as S3 key segments and file names: no
/// upper case, no slashes, no leading dot or dash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainId(String);

impl ChainId {
    /// Longest allowed chain id, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates and wraps a chain id.
    ///
    /// # Errors
    ///
    /// Returns [`InputError::InvalidChainId`] if `s` does not match the pattern.
    pub fn new(s: &str) -> Result<Self, InputError> {
        let bytes = s.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
        if !first_ok || !rest_ok || bytes.len() > Self::MAX_LEN {
            return Err(InputError::InvalidChainId(s.chars().take(80).collect()));
        }
        Ok(Self(s.to_owned()))
    }

    /// The chain id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ChainId {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_pattern() {
        for ok in ["production", "a", "0", "tenant-42.eu_west", &"a".repeat(64)] {
            assert!(ChainId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "Prod",
            "-x",
            ".x",
            "_x",
            "a/b",
            "a b",
            "ä",
            "../x",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(ChainId::new(bad), Err(InputError::InvalidChainId(_))),
                "{bad}"
            );
        }
    }
}
