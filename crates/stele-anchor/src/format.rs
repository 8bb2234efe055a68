//! The anchor object (`stele.anchor/v1`).
//!
//! The stored object is the RFC 8785 serialization of every field,
//! `signature` included. The signature is Ed25519, by the key that signs
//! the checkpoint, over `"stele.anchor/v1\n"` followed by the RFC 8785 bytes
//! of the anchor without `signature` — so every field is covered by the
//! public verifier key.

use std::fmt;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use serde::{Deserialize, Serialize};
use signed_note::{Signer, StandardVerifier, Verifier as _};
use stele_ledger::checkpoint::{self, VerifiedCheckpoint};
use stele_ledger::{ChainId, Hash, hex_hash};
use thiserror::Error;
use time::OffsetDateTime;

/// The value of `version`.
pub const ANCHOR_VERSION: &str = "stele.anchor/v1";

/// Why an anchor was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The interval elapsed (hourly at :00 by default); written even with no new events.
    Time,
    /// N events since the previous anchor.
    Volume,
    /// The HMAC key was rotated.
    KeyRotation,
    /// The anchoring process is shutting down cleanly.
    Shutdown,
    /// Asked for (`stele anchor now`).
    Manual,
}

impl Trigger {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Time => "time",
            Self::Volume => "volume",
            Self::KeyRotation => "key_rotation",
            Self::Shutdown => "shutdown",
            Self::Manual => "manual",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Time,
            Self::Volume,
            Self::KeyRotation,
            Self::Shutdown,
            Self::Manual,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The largest integer RFC 8785 (IEEE double) numbers represent exactly: 2^53.
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// An anchor could not be built, parsed or verified.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AnchorError {
    /// The bytes are not an anchor object.
    #[error("not a stele anchor: {0}")]
    Malformed(String),
    /// The version is not one this build understands.
    #[error("unsupported anchor version {0:?} (expected {ANCHOR_VERSION})")]
    Version(String),
    /// The signature is missing or does not verify under the verifier key.
    #[error("anchor signature does not verify with the given verifier key: {0}")]
    BadSignature(String),
    /// The embedded checkpoint does not verify or does not match the anchor's fields.
    #[error("anchor checkpoint: {0}")]
    Checkpoint(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// One anchor, field for field as docs/contracts.md §2 lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// Always [`ANCHOR_VERSION`].
    pub version: String,
    /// The chain.
    pub chain_id: String,
    /// 0-based position in the chain's anchor sequence.
    pub anchor_seq: u64,
    /// Why it was written.
    pub trigger: Trigger,
    /// Seq of the last event covered; `None` for an empty chain.
    pub last_seq: Option<u64>,
    /// Hex HMAC `event_hash` of `last_seq`.
    pub last_hash: Option<String>,
    /// Merkle tree size.
    pub tree_size: u64,
    /// Hex Merkle root.
    pub root_hash: String,
    /// HMAC key in force.
    pub key_id: String,
    /// RFC 3339 UTC, whole seconds.
    pub ts_utc: String,
    /// PostgreSQL `pg_current_wal_lsn()` at anchor time; `None` on SQLite.
    pub db_snapshot_lsn: Option<String>,
    /// Hex SHA-256 of the previous anchor object's exact bytes; `None` for anchor 0.
    pub prev_anchor_hash: Option<String>,
    /// Hex RFC 9162 consistency proof from the previous anchor's tree.
    pub consistency_proof: Vec<String>,
    /// C2SP signed checkpoint for `tree_size`/`root_hash`.
    pub checkpoint: String,
    /// Base64 Ed25519 signature (see the module docs); absent only while signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Everything needed to build an anchor.
#[derive(Clone, Debug)]
pub struct AnchorInput<'a> {
    /// The chain.
    pub chain: &'a ChainId,
    /// Position in the anchor sequence.
    pub anchor_seq: u64,
    /// Why.
    pub trigger: Trigger,
    /// Tree size covered.
    pub tree_size: u64,
    /// Root at `tree_size`.
    pub root: Hash,
    /// `event_hash` of seq `tree_size - 1`, if any.
    pub last_hash: Option<Hash>,
    /// HMAC key in force.
    pub key_id: &'a str,
    /// Anchor time (truncated to seconds).
    pub ts: OffsetDateTime,
    /// PostgreSQL WAL position, if any.
    pub db_snapshot_lsn: Option<String>,
    /// Hash of the previous anchor object, if any.
    pub prev_anchor_hash: Option<String>,
    /// Consistency proof from the previous anchor's tree.
    pub consistency_proof: &'a [Hash],
}

impl Anchor {
    /// Builds and signs an anchor; `signer` also signs the embedded checkpoint,
    /// whose origin is `<signer name>/<chain_id>`.
    ///
    /// # Errors
    ///
    /// [`AnchorError::Signing`] or [`AnchorError::Checkpoint`].
    pub fn sign(input: &AnchorInput<'_>, signer: &dyn Signer) -> Result<Self, AnchorError> {
        let origin = checkpoint::origin(signer.name(), input.chain);
        let note = checkpoint::sign(&origin, input.tree_size, input.root, signer)
            .map_err(|e| AnchorError::Checkpoint(e.to_string()))?;
        let mut anchor = Self {
            version: ANCHOR_VERSION.to_owned(),
            chain_id: input.chain.to_string(),
            anchor_seq: input.anchor_seq,
            trigger: input.trigger,
            last_seq: input.tree_size.checked_sub(1),
            last_hash: input.last_hash.as_ref().map(hex_hash),
            tree_size: input.tree_size,
            root_hash: hex_hash(&input.root),
            key_id: input.key_id.to_owned(),
            ts_utc: format_ts(input.ts),
            db_snapshot_lsn: input.db_snapshot_lsn.clone(),
            prev_anchor_hash: input.prev_anchor_hash.clone(),
            consistency_proof: input.consistency_proof.iter().map(hex_hash).collect(),
            checkpoint: note,
            signature: None,
        };
        let sig = signer
            .sign(&anchor.signing_bytes()?)
            .map_err(|e| AnchorError::Signing(e.to_string()))?;
        anchor.signature = Some(BASE64_STANDARD.encode(sig));
        Ok(anchor)
    }

    /// `"stele.anchor/v1\n"` followed by the RFC 8785 bytes of the anchor without `signature`.
    ///
    /// # Errors
    ///
    /// [`AnchorError::Malformed`] if serialization fails.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, AnchorError> {
        let unsigned = Self {
            signature: None,
            ..self.clone()
        };
        let mut out = format!("{ANCHOR_VERSION}\n").into_bytes();
        out.extend(
            serde_json_canonicalizer::to_vec(&unsigned)
                .map_err(|e| AnchorError::Malformed(e.to_string()))?,
        );
        Ok(out)
    }

    /// The object's bytes: RFC 8785 of every field, signature included.
    ///
    /// # Errors
    ///
    /// [`AnchorError::Malformed`] if serialization fails.
    pub fn to_bytes(&self) -> Result<Vec<u8>, AnchorError> {
        serde_json_canonicalizer::to_vec(self).map_err(|e| AnchorError::Malformed(e.to_string()))
    }

    /// Parses an anchor object.
    ///
    /// # Errors
    ///
    /// [`AnchorError::Malformed`] or [`AnchorError::Version`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AnchorError> {
        let anchor: Self =
            serde_json::from_slice(bytes).map_err(|e| AnchorError::Malformed(e.to_string()))?;
        if anchor.version != ANCHOR_VERSION {
            return Err(AnchorError::Version(anchor.version));
        }
        // RFC 8785 writes numbers as IEEE doubles: an integer above 2^53
        // would be signed and stored as a rounded value that no longer
        // parses as an integer, and neighbouring values would share one
        // signature. No honest anchor comes near that size.
        let numbers = [
            ("anchor_seq", Some(anchor.anchor_seq)),
            ("tree_size", Some(anchor.tree_size)),
            ("last_seq", anchor.last_seq),
        ];
        if let Some((field, value)) = numbers.into_iter().find_map(|(field, value)| {
            Some((field, value?)).filter(|(_, v)| *v > MAX_EXACT_INTEGER)
        }) {
            return Err(AnchorError::Malformed(format!(
                "{field} {value} is larger than 2^53, which RFC 8785 JSON cannot carry exactly"
            )));
        }
        Ok(anchor)
    }

    /// Checks the signature and the embedded checkpoint against `verifier_key`,
    /// and that the checkpoint states this anchor's chain, size and root.
    ///
    /// # Errors
    ///
    /// [`AnchorError::BadSignature`] or [`AnchorError::Checkpoint`], saying what differs.
    pub fn verify(&self, verifier_key: &str) -> Result<VerifiedCheckpoint, AnchorError> {
        let verifier = StandardVerifier::new(verifier_key.trim())
            .map_err(|_| AnchorError::BadSignature("malformed verifier key".into()))?;
        let sig = self
            .signature
            .as_deref()
            .ok_or_else(|| AnchorError::BadSignature("the anchor has no signature".into()))?;
        let sig = BASE64_STANDARD
            .decode(sig)
            .map_err(|_| AnchorError::BadSignature("signature is not base64".into()))?;
        if !verifier.verify(&self.signing_bytes()?, &sig) {
            return Err(AnchorError::BadSignature(format!(
                "anchor {} of chain {} was not signed by {}",
                self.anchor_seq,
                self.chain_id,
                verifier_key.split('+').next().unwrap_or("")
            )));
        }
        let cp = checkpoint::verify(&self.checkpoint, verifier_key)
            .map_err(|e| AnchorError::Checkpoint(e.to_string()))?;
        let expected_origin_suffix = format!("/{}", self.chain_id);
        if !cp.origin.ends_with(&expected_origin_suffix) {
            return Err(AnchorError::Checkpoint(format!(
                "origin {:?} is not for chain {}",
                cp.origin, self.chain_id
            )));
        }
        if cp.size != self.tree_size || hex_hash(&cp.root) != self.root_hash {
            return Err(AnchorError::Checkpoint(format!(
                "checkpoint states size {} root {}, the anchor says size {} root {}",
                cp.size,
                hex_hash(&cp.root),
                self.tree_size,
                self.root_hash
            )));
        }
        if self.last_seq != self.tree_size.checked_sub(1) {
            return Err(AnchorError::Checkpoint(format!(
                "last_seq {:?} does not match tree_size {}",
                self.last_seq, self.tree_size
            )));
        }
        Ok(cp)
    }

    /// `ts_utc` parsed.
    ///
    /// # Errors
    ///
    /// [`AnchorError::Malformed`] if it is not RFC 3339.
    pub fn time(&self) -> Result<OffsetDateTime, AnchorError> {
        OffsetDateTime::parse(&self.ts_utc, &time::format_description::well_known::Rfc3339).map_err(
            |_| AnchorError::Malformed(format!("ts_utc {:?} is not RFC 3339", self.ts_utc)),
        )
    }
}

/// RFC 3339 UTC with whole seconds, e.g. `2026-01-15T14:00:00Z`.
pub(crate) fn format_ts(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use signed_note::{StandardSigner, generate_key};
    use time::macros::datetime;

    pub fn keys(name: &str) -> (StandardSigner, String) {
        let (skey, vkey) = generate_key(&mut rand::rngs::OsRng, name);
        (StandardSigner::new(&skey).unwrap(), vkey)
    }

    pub fn anchor(signer: &StandardSigner, seq: u64, size: u64, root: Hash) -> Anchor {
        let chain = ChainId::new("production").unwrap();
        Anchor::sign(
            &AnchorInput {
                chain: &chain,
                anchor_seq: seq,
                trigger: Trigger::Time,
                tree_size: size,
                root,
                last_hash: (size > 0).then_some(Hash([5; 32])),
                key_id: "k1",
                ts: datetime!(2026-01-15 14:00:00.75 UTC),
                db_snapshot_lsn: Some("0/9F000A50".into()),
                prev_anchor_hash: None,
                consistency_proof: &[],
            },
            signer,
        )
        .unwrap()
    }

    #[test]
    fn round_trips_and_verifies() {
        let (signer, vkey) = keys("stele.test");
        let a = anchor(&signer, 0, 7, Hash([1; 32]));
        assert_eq!(a.ts_utc, "2026-01-15T14:00:00Z");
        assert_eq!(a.last_seq, Some(6));
        let bytes = a.to_bytes().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with("{\"anchor_seq\":0,\"chain_id\":\"production\",\"checkpoint\":"),
            "{text}"
        );
        for field in [
            "\"db_snapshot_lsn\":\"0/9F000A50\"",
            "\"prev_anchor_hash\":null",
            "\"consistency_proof\":[]",
            "\"trigger\":\"time\"",
            "\"version\":\"stele.anchor/v1\"",
        ] {
            assert!(text.contains(field), "{field} in {text}");
        }
        let back = Anchor::from_bytes(&bytes).unwrap();
        assert_eq!(back, a);
        let cp = back.verify(&vkey).unwrap();
        assert_eq!((cp.origin.as_str(), cp.size), ("stele.test/production", 7));
    }

    #[test]
    fn every_field_is_covered_by_the_signature() {
        let (signer, vkey) = keys("stele.test");
        let a = anchor(&signer, 3, 7, Hash([1; 32]));
        let edits: [fn(&mut Anchor); 8] = [
            |a| a.anchor_seq = 4,
            |a| a.trigger = Trigger::Manual,
            |a| a.last_hash = Some("00".repeat(32)),
            |a| a.key_id = "k2".into(),
            |a| a.ts_utc = "2026-01-15T15:00:00Z".into(),
            |a| a.db_snapshot_lsn = None,
            |a| a.prev_anchor_hash = Some("ab".repeat(32)),
            |a| a.consistency_proof = vec!["cd".repeat(32)],
        ];
        for edit in edits {
            let mut forged = a.clone();
            edit(&mut forged);
            assert!(
                matches!(forged.verify(&vkey), Err(AnchorError::BadSignature(_))),
                "{forged:?}"
            );
        }
        // A validly signed anchor from another key is refused.
        let (other, _) = keys("stele.test");
        assert!(matches!(
            anchor(&other, 3, 7, Hash([1; 32])).verify(&vkey),
            Err(AnchorError::BadSignature(_))
        ));
        // Unknown fields and other versions are refused.
        let mut text = String::from_utf8(a.to_bytes().unwrap()).unwrap();
        assert!(Anchor::from_bytes(text.replacen('{', "{\"extra\":1,", 1).as_bytes()).is_err());
        text = text.replace("stele.anchor/v1", "stele.anchor/v9");
        assert!(matches!(
            Anchor::from_bytes(text.as_bytes()),
            Err(AnchorError::Version(_))
        ));
    }

    #[test]
    fn integers_beyond_2_pow_53_are_refused() {
        // Found by the `anchor` fuzz target (fuzz/regressions/anchor/): such an
        // anchor parsed, but its RFC 8785 bytes carry a rounded float that
        // does not parse back, so its signature covered a different value.
        let (signer, _) = keys("stele.test");
        let good = anchor(&signer, 1, 10, Hash([3; 32]));
        let text = String::from_utf8(good.to_bytes().unwrap()).unwrap();
        Anchor::from_bytes(text.as_bytes()).unwrap();
        for (field, bad) in [
            (
                "anchor_seq",
                text.replace("\"anchor_seq\":1,", "\"anchor_seq\":18446744073709551615,"),
            ),
            (
                "tree_size",
                text.replace("\"tree_size\":10,", "\"tree_size\":9007199254740993,"),
            ),
            (
                "last_seq",
                text.replace("\"last_seq\":9,", "\"last_seq\":9007199254740993,"),
            ),
        ] {
            assert_ne!(bad, text, "{field} not substituted");
            let err = Anchor::from_bytes(bad.as_bytes()).unwrap_err();
            assert!(
                matches!(&err, AnchorError::Malformed(m) if m.contains(field) && m.contains("2^53")),
                "{field}: {err}"
            );
        }
        // 2^53 itself is exact and accepted.
        let edge = text.replace("\"anchor_seq\":1,", "\"anchor_seq\":9007199254740992,");
        assert_eq!(
            Anchor::from_bytes(edge.as_bytes()).unwrap().anchor_seq,
            1 << 53
        );
        let file = include_bytes!("../../../fuzz/regressions/anchor/anchor-seq-beyond-2-53.json");
        assert!(Anchor::from_bytes(file).is_err());
    }

    #[test]
    fn empty_chain_anchor() {
        let (signer, vkey) = keys("stele.test");
        let a = anchor(
            &signer,
            0,
            0,
            stele_ledger::merkle::root(0, &stele_ledger::merkle::MemoryHashes::default()).unwrap(),
        );
        assert_eq!((a.last_seq, a.last_hash.as_deref()), (None, None));
        assert_eq!(
            a.root_hash,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        a.verify(&vkey).unwrap();
    }
}
