//! Object keys for evidence (docs/contracts.md §3):
//! `evidence/<client_id>/<YYYY>/<MM>/<bundle_id><ext>`, with the detached
//! signature at the same key plus `.sig`.
//!
//! Every part is validated so that no input can escape its prefix or make a
//! key another tool reads differently: no `/`, no `..`, no control
//! characters, no leading dot, bounded lengths.

use std::fmt;
use std::path::Path;

use time::OffsetDateTime;

use crate::EvidenceError;

/// The prefix every evidence key starts with.
pub const PREFIX: &str = "evidence/";
/// Suffix of a detached signature's key.
pub const SIG_SUFFIX: &str = ".sig";

const MAX_CLIENT_ID: usize = 64;
const MAX_BUNDLE_ID: usize = 128;
const MAX_EXTENSION: usize = 16;
/// Longest file name accepted (most file systems' limit).
const MAX_FILE_NAME: usize = 255;

/// Checks one key segment: 1..=`max` characters of `A-Z a-z 0-9 . _ -`,
/// starting with a letter or digit, without `..`.
fn check_segment(what: &str, value: &str, max: usize) -> Result<(), EvidenceError> {
    let bad = |why: &str| {
        Err(EvidenceError::Invalid(format!(
            "invalid {what} {value:?}: {why}; use 1-{max} characters of A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
        )))
    };
    if value.is_empty() {
        return bad("it is empty");
    }
    if value.len() > max {
        return bad(&format!("it is {} characters long", value.len()));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(&if c.is_control() {
            "it contains a control character".to_owned()
        } else {
            format!("it contains {c:?}")
        });
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad("it must start with a letter or digit");
    }
    if value.contains("..") {
        return bad("it contains \"..\"");
    }
    Ok(())
}

/// A client (tenant) id: the second segment of every evidence key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(String);

impl ClientId {
    /// Validates a client id.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::Invalid`] saying what is wrong.
    pub fn new(value: &str) -> Result<Self, EvidenceError> {
        check_segment("client id", value, MAX_CLIENT_ID)?;
        Ok(Self(value.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `evidence/<client_id>/`: where this client's evidence lives.
    pub fn prefix(&self) -> String {
        format!("{PREFIX}{}/", self.0)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A bundle id: the object's name without its extension.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleId(String);

impl BundleId {
    /// Validates a bundle id.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::Invalid`] saying what is wrong.
    pub fn new(value: &str) -> Result<Self, EvidenceError> {
        check_segment("bundle id", value, MAX_BUNDLE_ID)?;
        Ok(Self(value.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A file's extension with its dot (`.json`), or empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Extension(String);

impl Extension {
    /// Validates an extension given without its dot (`json`); empty means none.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::Invalid`] for anything but 1-16 letters and digits, or `sig`
    /// (reserved for detached signatures).
    pub fn new(without_dot: &str) -> Result<Self, EvidenceError> {
        if without_dot.is_empty() {
            return Ok(Self::default());
        }
        if without_dot.len() > MAX_EXTENSION
            || !without_dot.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(EvidenceError::Invalid(format!(
                "invalid file extension {without_dot:?}: use 1-{MAX_EXTENSION} letters or digits"
            )));
        }
        if without_dot.eq_ignore_ascii_case("sig") {
            return Err(EvidenceError::Invalid(
                "files ending in .sig cannot be stored as evidence: the name is reserved for stele's detached signatures".into(),
            ));
        }
        Ok(Self(format!(".{without_dot}")))
    }

    /// `.json`, or `""`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a local file contributes to its key: the bundle id (its name without
/// the extension, unless given) and the extension.
///
/// # Errors
///
/// [`EvidenceError::Invalid`] for a path without a usable file name, a name
/// with control characters or over 255 bytes, or one that does not make a
/// valid bundle id (then pass one explicitly).
pub fn names_from_path(
    path: &Path,
    bundle_id: Option<&BundleId>,
) -> Result<(BundleId, Extension), EvidenceError> {
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        EvidenceError::Invalid(format!(
            "{} has no file name stele can use (it must be valid UTF-8)",
            path.display()
        ))
    })?;
    if name.len() > MAX_FILE_NAME {
        return Err(EvidenceError::Invalid(format!(
            "file name {}… is {} bytes long; the limit is {MAX_FILE_NAME}",
            name.chars().take(40).collect::<String>(),
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(EvidenceError::Invalid(format!(
            "file name {name:?} contains control characters"
        )));
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, ext),
        _ => (name, ""),
    };
    let ext = Extension::new(ext)?;
    let bundle = match bundle_id {
        Some(b) => b.clone(),
        None => BundleId::new(stem).map_err(|e| EvidenceError::BundleIdFromFileName {
            name: name.to_owned(),
            reason: e.to_string(),
        })?,
    };
    Ok((bundle, ext))
}

/// A validated evidence key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EvidenceKey {
    client: ClientId,
    year: i32,
    month: u8,
    /// `<bundle_id><ext>`.
    name: String,
}

impl EvidenceKey {
    /// The key for a bundle stored at `when` (UTC year and month).
    pub fn new(
        client: &ClientId,
        when: OffsetDateTime,
        bundle: &BundleId,
        ext: &Extension,
    ) -> Self {
        let when = when.to_offset(time::UtcOffset::UTC);
        Self {
            client: client.clone(),
            year: when.year(),
            month: u8::from(when.month()),
            name: format!("{}{}", bundle.as_str(), ext.as_str()),
        }
    }

    /// Parses and validates a key a user typed (`evidence/<client>/<YYYY>/<MM>/<name>`).
    ///
    /// # Errors
    ///
    /// [`EvidenceError::Invalid`] saying which part is wrong.
    pub fn parse(key: &str) -> Result<Self, EvidenceError> {
        let bad = |why: &str| {
            EvidenceError::Invalid(format!(
                "{key:?} is not an evidence key: {why} (expected evidence/<client_id>/<YYYY>/<MM>/<bundle_id><ext>)"
            ))
        };
        let rest = key
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("it does not start with evidence/"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [client, year, month, name] = parts.as_slice() else {
            return Err(bad("it does not have five /-separated parts"));
        };
        let client = ClientId::new(client)?;
        let year_ok = year.len() == 4 && year.chars().all(|c| c.is_ascii_digit());
        let month_ok = month.len() == 2 && month.chars().all(|c| c.is_ascii_digit());
        let (Some(year), Some(month)) = (
            year_ok.then(|| year.parse::<i32>().ok()).flatten(),
            month_ok.then(|| month.parse::<u8>().ok()).flatten(),
        ) else {
            return Err(bad("the year must be 4 digits and the month 2"));
        };
        if !(1..=12).contains(&month) {
            return Err(bad("the month must be 01-12"));
        }
        if name.ends_with(SIG_SUFFIX) {
            return Err(bad(
                "it names a detached signature; give the evidence object's key",
            ));
        }
        let (stem, ext) = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => (stem, ext),
            _ => (*name, ""),
        };
        BundleId::new(stem)?;
        Extension::new(ext)?;
        Ok(Self {
            client,
            year,
            month,
            name: (*name).to_owned(),
        })
    }

    /// The client.
    pub fn client(&self) -> &ClientId {
        &self.client
    }

    /// Year and month in the key.
    pub fn year_month(&self) -> (i32, u8) {
        (self.year, self.month)
    }

    /// `<bundle_id><ext>`: the object's file name.
    pub fn file_name(&self) -> &str {
        &self.name
    }

    /// The object key.
    pub fn key(&self) -> String {
        format!(
            "{PREFIX}{}/{:04}/{:02}/{}",
            self.client, self.year, self.month, self.name
        )
    }

    /// The detached signature's key.
    pub fn sig_key(&self) -> String {
        format!("{}{SIG_SUFFIX}", self.key())
    }
}

impl fmt::Display for EvidenceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn keys_follow_the_design_layout() {
        let client = ClientId::new("clinic-001").unwrap();
        let (bundle, ext) =
            names_from_path(Path::new("/tmp/x/EB-20251101-0001.json"), None).unwrap();
        let key = EvidenceKey::new(&client, datetime!(2025-11-01 23:59:59 UTC), &bundle, &ext);
        assert_eq!(
            key.key(),
            "evidence/clinic-001/2025/11/EB-20251101-0001.json"
        );
        assert_eq!(
            key.sig_key(),
            "evidence/clinic-001/2025/11/EB-20251101-0001.json.sig"
        );
        assert_eq!(EvidenceKey::parse(&key.key()).unwrap(), key);
        // The month is UTC's, whatever the offset given.
        let key = EvidenceKey::new(&client, datetime!(2025-12-01 00:30 +01:00), &bundle, &ext);
        assert_eq!(key.year_month(), (2025, 11));
    }

    #[test]
    fn client_ids_cannot_escape_their_prefix() {
        for bad in [
            "", "..", ".", "a/b", "../x", "a..b", "-x", ".hidden", "a\nb", "a\u{0}b", "a b", "é",
            "a\\b", "x%2f",
        ] {
            assert!(ClientId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ClientId::new(&"a".repeat(64)).is_ok());
        assert!(ClientId::new(&"a".repeat(65)).is_err());
        for good in ["clinic-001", "A.b_c-9", "7"] {
            assert!(ClientId::new(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn bundle_ids_cannot_escape_their_prefix() {
        for bad in ["", "..", "a/..", "../../etc/passwd", "x/y", "a\tb", "_x"] {
            assert!(BundleId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(BundleId::new(&"b".repeat(128)).is_ok());
        assert!(BundleId::new(&"b".repeat(129)).is_err());
    }

    #[test]
    fn file_names_are_checked() {
        assert!(names_from_path(Path::new("/"), None).is_err());
        assert!(names_from_path(Path::new("dir/.."), None).is_err());
        assert!(names_from_path(Path::new("bad\u{7}name.json"), None).is_err());
        assert!(
            names_from_path(Path::new("my file.json"), None).is_err(),
            "spaces"
        );
        let long = format!("{}.json", "a".repeat(300));
        assert!(names_from_path(Path::new(&long), None).is_err());
        assert!(
            names_from_path(Path::new("x.sig"), None).is_err(),
            "reserved"
        );
        assert!(names_from_path(Path::new("x.j$on"), None).is_err());
        // A dot file has no stem: the whole name is the stem, which may not start with a dot.
        assert!(names_from_path(Path::new(".bashrc"), None).is_err());
        // An explicit bundle id replaces an unusable stem.
        let b = BundleId::new("EB-1").unwrap();
        let (bundle, ext) = names_from_path(Path::new("my file.json"), Some(&b)).unwrap();
        assert_eq!((bundle.as_str(), ext.as_str()), ("EB-1", ".json"));
        let (bundle, ext) = names_from_path(Path::new("README"), None).unwrap();
        assert_eq!((bundle.as_str(), ext.as_str()), ("README", ""));
        let (bundle, ext) = names_from_path(Path::new("a.tar.gz"), None).unwrap();
        assert_eq!((bundle.as_str(), ext.as_str()), ("a.tar", ".gz"));
    }

    #[test]
    fn typed_keys_are_validated() {
        for bad in [
            "evidence/c/2025/11",
            "evidence/c/2025/11/x.json/y",
            "evidence/../2025/11/x.json",
            "evidence/c/25/11/x.json",
            "evidence/c/2025/13/x.json",
            "evidence/c/2025/1/x.json",
            "evidence/c/2025/11/..",
            "evidence/c/2025/11/x.json.sig",
            "anchors/c/2025/11/x.json",
            "/evidence/c/2025/11/x.json",
            "evidence/c/2025/11/x\n.json",
        ] {
            assert!(EvidenceKey::parse(bad).is_err(), "{bad:?} accepted");
        }
        let k = EvidenceKey::parse("evidence/c/2025/01/README").unwrap();
        assert_eq!(k.file_name(), "README");
    }
}
