//! The detached signature stored beside each evidence object (`<key>.sig`).
//!
//! It is a C2SP signed note (<https://c2sp.org/signed-note>) over a short
//! statement naming the object and its content:
//!
//! ```text
//! stele.evidence/v1
//! key evidence/clinic-001/2026/11/EB-20261101-0001.json
//! size 48213
//! sha256 9f2c…(64 hex)
//!
//! — stele.example.com Az3g…(base64 of key id ‖ Ed25519 signature)
//! ```
//!
//! Anyone holding the verifier key printed by `stele keys export-verifier`
//! (`<name>+<key id>+<base64 key>`) can check it: with stele
//! ([`Statement::verify`]), or with Go's `golang.org/x/mod/sumdb/note`
//! (`note.Open(sig, note.VerifierList(verifier))`) and then comparing the
//! three lines with the object's key, size and SHA-256. Ed25519 signatures
//! are deterministic, so signing the same file at the same key again gives
//! the same bytes (a retried upload finds an identical `.sig`).

use signed_note::{Note, NoteError, Signer, StandardVerifier, VerifierList};

use crate::EvidenceError;

/// First line of every statement.
pub const STATEMENT_VERSION: &str = "stele.evidence/v1";

/// What a detached signature says about an evidence object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The evidence object's key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its hex SHA-256.
    pub sha256: String,
}

impl Statement {
    /// The signed text.
    pub fn text(&self) -> String {
        format!(
            "{STATEMENT_VERSION}\nkey {}\nsize {}\nsha256 {}\n",
            self.key, self.size, self.sha256
        )
    }

    /// The `.sig` object's bytes: the statement as a signed note.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::Signature`] if the key cannot sign (or the key contains
    /// characters a note cannot carry, which validated keys never do).
    pub fn sign(&self, signer: &dyn Signer) -> Result<Vec<u8>, EvidenceError> {
        let mut note = Note::new(self.text().as_bytes(), &[])
            .map_err(|e| EvidenceError::Signature(format!("cannot build the statement: {e}")))?;
        note.add_sigs(&[signer])
            .map_err(|e| EvidenceError::Signature(format!("cannot sign the statement: {e}")))?;
        Ok(note.to_bytes())
    }

    /// Checks a `.sig` object against `verifier_key` and returns what it states.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::Signature`] naming what is wrong: malformed, not
    /// signed by this key, a bad signature, or an unknown statement format.
    pub fn verify(sig: &[u8], verifier_key: &str) -> Result<Self, EvidenceError> {
        let verifier = StandardVerifier::new(verifier_key.trim())
            .map_err(|e| EvidenceError::MalformedVerifierKey(e.to_string()))?;
        let name = {
            use signed_note::Verifier as _;
            stele_ledger::checkpoint::key_label(verifier.name(), verifier.key_id())
        };
        let note = Note::from_bytes(sig).map_err(|e| {
            EvidenceError::Signature(format!("the signature file is not a signed note ({e})"))
        })?;
        note.verify(&VerifierList::new(vec![Box::new(verifier)]))
            .map_err(|e| match e {
                NoteError::UnverifiedNote => {
                    EvidenceError::Signature(format!("the signature file is not signed by {name}"))
                }
                NoteError::InvalidSignature { .. } => EvidenceError::Signature(format!(
                    "the signature by {name} does not match the statement: it was altered"
                )),
                other => EvidenceError::Signature(format!("cannot check the signature: {other}")),
            })?;
        Self::parse(note.text())
    }

    fn parse(text: &[u8]) -> Result<Self, EvidenceError> {
        let bad = |why: &str| EvidenceError::Signature(format!("the signed statement {why}"));
        let text = std::str::from_utf8(text).map_err(|_| bad("is not UTF-8"))?;
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .unwrap_or(text)
            .split('\n')
            .collect();
        let [version, key, size, sha256] = lines.as_slice() else {
            return Err(bad("does not have the four lines of stele.evidence/v1"));
        };
        if *version != STATEMENT_VERSION {
            return Err(bad(&format!("has unknown version {version:?}")));
        }
        let field = |line: &str, name: &str| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(str::to_owned)
                .ok_or_else(|| bad(&format!("lacks its {name} line")))
        };
        let size = field(size, "size")?
            .parse::<u64>()
            .map_err(|_| bad("has a size that is not a number"))?;
        let sha256 = field(sha256, "sha256")?;
        if hex::decode_to_slice(&sha256, &mut [0u8; 32]).is_err() {
            return Err(bad("has a sha256 that is not 64 hex characters"));
        }
        Ok(Self {
            key: field(key, "key")?,
            size,
            sha256: sha256.to_ascii_lowercase(),
        })
    }

    /// Compares what the signature states with an object's key, size and SHA-256.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::Mismatch`] naming the first difference.
    pub fn matches(&self, key: &str, size: u64, sha256: &str) -> Result<(), EvidenceError> {
        let differ = |what: String| {
            Err(EvidenceError::Mismatch {
                key: key.to_owned(),
                what,
            })
        };
        if self.key != key {
            return differ(format!("the signature is for {}, not this key", self.key));
        }
        if self.size != size {
            return differ(format!(
                "the signature states {} bytes, the content has {size}",
                self.size
            ));
        }
        if self.sha256 != sha256 {
            return differ(format!(
                "the signature states sha256 {}, the content hashes to {sha256}",
                self.sha256
            ));
        }
        Ok(())
    }
}

/// `name+keyid` of a signer, as recorded in the ledger.
pub fn signer_id(signer: &dyn Signer) -> String {
    stele_ledger::checkpoint::key_label(signer.name(), signer.key_id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use signed_note::StandardSigner;

    fn keys() -> (StandardSigner, String) {
        let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, "stele.test");
        (StandardSigner::new(&skey).unwrap(), vkey)
    }

    fn statement() -> Statement {
        Statement {
            key: "evidence/c/2026/11/EB-1.json".into(),
            size: 42,
            sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn signs_and_verifies_with_the_verifier_key_alone() {
        let (signer, vkey) = keys();
        let sig = statement().sign(&signer).unwrap();
        let text = String::from_utf8(sig.clone()).unwrap();
        assert!(text.starts_with(
            "stele.evidence/v1\nkey evidence/c/2026/11/EB-1.json\nsize 42\nsha256 abab"
        ));
        assert!(text.contains("\n\n\u{2014} stele.test "));
        assert_eq!(Statement::verify(&sig, &vkey).unwrap(), statement());
        // Deterministic: the same statement signs to the same bytes.
        assert_eq!(statement().sign(&signer).unwrap(), sig);
        assert!(
            statement()
                .matches("evidence/c/2026/11/EB-1.json", 42, &"ab".repeat(32))
                .is_ok()
        );
    }

    #[test]
    fn altered_or_foreign_signatures_are_refused() {
        let (signer, vkey) = keys();
        let sig = String::from_utf8(statement().sign(&signer).unwrap()).unwrap();
        let altered = sig.replace("size 42", "size 43");
        let err = Statement::verify(altered.as_bytes(), &vkey).unwrap_err();
        assert!(err.to_string().contains("altered"), "{err}");
        let (_, other_vkey) = keys();
        let err = Statement::verify(sig.as_bytes(), &other_vkey).unwrap_err();
        assert!(err.to_string().contains("not signed by"), "{err}");
        assert!(Statement::verify(b"garbage", &vkey).is_err());
        assert!(Statement::verify(sig.as_bytes(), "not a key").is_err());
    }

    #[test]
    fn the_stated_sha256_must_be_64_hex_characters() {
        let (signer, vkey) = keys();
        let upper = Statement {
            sha256: "AB".repeat(32),
            ..statement()
        };
        let sig = upper.sign(&signer).unwrap();
        assert_eq!(Statement::verify(&sig, &vkey).unwrap(), statement());
        for bad in [
            "zz".repeat(32),
            "ab".repeat(31),
            "ab".repeat(33),
            format!("{}é", "ab".repeat(31)),
        ] {
            let sig = Statement {
                sha256: bad.clone(),
                ..statement()
            }
            .sign(&signer)
            .unwrap();
            let err = Statement::verify(&sig, &vkey).unwrap_err();
            assert!(err.to_string().contains("not 64 hex"), "{bad}: {err}");
        }
    }

    #[test]
    fn mismatches_are_named() {
        let s = statement();
        let err = s
            .matches("evidence/c/2026/11/EB-1.json", 42, &"cd".repeat(32))
            .unwrap_err();
        assert!(err.to_string().contains("hashes to cdcd"), "{err}");
        let err = s
            .matches("evidence/c/2026/11/EB-2.json", 42, &"ab".repeat(32))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("is for evidence/c/2026/11/EB-1.json"),
            "{err}"
        );
    }
}
