//! C2SP signed checkpoints (c2sp.org/tlog-checkpoint over c2sp.org/signed-note)
//! and offline inclusion-proof bundles (c2sp.org/tlog-proof).
//!
//! A chain's checkpoint origin is `<log name>/<chain_id>`, so checkpoints of
//! two chains signed by one key can never be mistaken for each other.

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use signed_note::{Note, Signer, StandardVerifier, VerifierList};
use thiserror::Error;
use tlog_tiles::{Checkpoint, Hash};

use crate::ChainId;
use crate::merkle::{self, MerkleError};

/// A checkpoint or proof bundle could not be made, parsed or verified.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The verifier key text is not a signed-note Ed25519 verifier key.
    #[error("malformed verifier key: expected a signed-note verifier key, name+hexid+base64")]
    BadVerifierKey,
    /// The text is not a well-formed checkpoint.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// The signature does not verify under the given key.
    #[error("checkpoint signature does not verify with the given verifier key: {0}")]
    BadSignature(String),
    /// The text is not a well-formed `tlog-proof`.
    #[error("malformed tlog-proof: {0}")]
    MalformedProof(String),
    /// The inclusion proof does not check against the checkpoint.
    #[error(transparent)]
    Proof(#[from] MerkleError),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// The checkpoint origin for `chain` in the log called `log_name`.
pub fn origin(log_name: &str, chain: &ChainId) -> String {
    format!("{log_name}/{chain}")
}

/// Signs a checkpoint for a tree of `size` leaves with root `root`; returns the note text.
///
/// # Errors
///
/// [`CheckpointError::Malformed`] for an invalid origin, [`CheckpointError::Signing`] if signing fails.
pub fn sign(
    origin: &str,
    size: u64,
    root: Hash,
    signer: &dyn Signer,
) -> Result<String, CheckpointError> {
    let body = Checkpoint::new(origin, size, root, "")
        .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    let mut note =
        Note::new(&body.to_bytes(), &[]).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    note.add_sigs(&[signer])
        .map_err(|e| CheckpointError::Signing(e.to_string()))?;
    String::from_utf8(note.to_bytes()).map_err(|e| CheckpointError::Malformed(e.to_string()))
}

/// A signing key as a signed note names it: `<name>+<key id as 8 hex digits>`,
/// the first two fields of its verifier key.
pub fn key_label(name: &str, key_id: u32) -> String {
    format!("{name}+{key_id:08x}")
}

/// The keys ([`key_label`]s) whose signatures a signed note carries, in
/// order, without checking any: says which key signed a note when its
/// verifier key is not at hand. Anyone can write any name and id on a
/// signature line, so this tells who to ask, not who signed.
///
/// # Errors
///
/// [`CheckpointError::Malformed`] if the text is not a signed note.
pub fn signature_keys(text: &str) -> Result<Vec<String>, CheckpointError> {
    Note::from_bytes(text.as_bytes()).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    // A well-formed note: its signature lines follow the last blank line.
    let (_, sigs) = text
        .trim_end_matches('\n')
        .rsplit_once("\n\n")
        .ok_or_else(|| CheckpointError::Malformed("no signature block".into()))?;
    sigs.lines()
        .map(|line| {
            signed_note::Signature::from_bytes(line.as_bytes())
                .map(|sig| key_label(sig.name(), sig.id()))
                .map_err(|e| CheckpointError::Malformed(e.to_string()))
        })
        .collect()
}

/// A checkpoint whose signature has been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCheckpoint {
    /// Origin line.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
}

/// Checks a signed checkpoint against a verifier key and parses its body.
///
/// # Errors
///
/// [`CheckpointError::BadVerifierKey`], [`CheckpointError::Malformed`] or [`CheckpointError::BadSignature`].
pub fn verify(text: &str, verifier_key: &str) -> Result<VerifiedCheckpoint, CheckpointError> {
    let verifier =
        StandardVerifier::new(verifier_key.trim()).map_err(|_| CheckpointError::BadVerifierKey)?;
    let note =
        Note::from_bytes(text.as_bytes()).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    note.verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|e| CheckpointError::BadSignature(e.to_string()))?;
    let body = Checkpoint::from_bytes(note.text())
        .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    Ok(VerifiedCheckpoint {
        origin: body.origin().to_owned(),
        size: body.size(),
        root: *body.hash(),
    })
}

const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// An offline inclusion proof bundle (c2sp.org/tlog-proof).
///
/// stele puts the event's canonical bytes in `extra`, so the bundle alone
/// shows what was logged and proves it.
#[derive(Debug, Clone, PartialEq)]
pub struct TlogProof {
    /// Application data: the event's canonical bytes.
    pub extra: Option<Vec<u8>>,
    /// Leaf index (the event's seq).
    pub index: u64,
    /// Audit path.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint the path leads to.
    pub checkpoint: String,
}

impl TlogProof {
    /// Renders the text format.
    pub fn to_text(&self) -> String {
        let mut out = format!("{TLOG_PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", BASE64_STANDARD.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            out.push_str(&format!("{h}\n"));
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses the text format.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::MalformedProof`] naming the bad line.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let bad = |what: &str| CheckpointError::MalformedProof(what.to_owned());
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line before the checkpoint"))?;
        let mut lines = head.lines();
        if lines.next() != Some(TLOG_PROOF_HEADER) {
            return Err(bad("first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next().ok_or_else(|| bad("missing index line"))?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            extra = Some(
                BASE64_STANDARD
                    .decode(b64)
                    .map_err(|_| bad("extra is not base64"))?,
            );
            line = lines.next().ok_or_else(|| bad("missing index line"))?;
        }
        let index = line
            .strip_prefix("index ")
            .and_then(canonical_decimal)
            .ok_or_else(|| bad("expected `index N` (decimal, no sign or leading zero)"))?;
        let hashes = lines
            .map(|l| Hash::parse_hash(l).map_err(|_| bad(&format!("not a base64 hash: {l:?}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            extra,
            index,
            hashes,
            checkpoint: checkpoint.to_owned(),
        })
    }

    /// Verifies the checkpoint signature and that `leaf` is at `index` under it.
    ///
    /// # Errors
    ///
    /// Any [`CheckpointError`]; the message says which part failed.
    pub fn verify(
        &self,
        leaf: Hash,
        verifier_key: &str,
    ) -> Result<VerifiedCheckpoint, CheckpointError> {
        let cp = verify(&self.checkpoint, verifier_key)?;
        merkle::verify_inclusion(&self.hashes, cp.size, cp.root, self.index, leaf)?;
        Ok(cp)
    }
}

/// A number written as the spec writes it: ASCII digits, no sign, no
/// leading zero (`0` itself aside). `u64::from_str` also takes `+6` and
/// `06`; a verifier that accepts spellings other verifiers refuse can be
/// shown a proof that is "valid" to it alone.
fn canonical_decimal(n: &str) -> Option<u64> {
    let digits = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    (digits && (n == "0" || !n.starts_with('0')))
        .then(|| n.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{MemoryHashes, TreeAppender, inclusion_proof};
    use signed_note::{StandardSigner, generate_key};

    fn keys() -> (StandardSigner, String) {
        let (skey, vkey) = generate_key(&mut rand::rngs::OsRng, "stele.test");
        (StandardSigner::new(&skey).unwrap(), vkey)
    }

    #[test]
    fn signature_keys_name_the_signing_key_as_its_verifier_key_does() {
        let (signer, vkey) = keys();
        let text = sign("stele.test/prod", 5, Hash([7; 32]), &signer).unwrap();
        let label = key_label(
            signed_note::Signer::name(&signer),
            signed_note::Signer::key_id(&signer),
        );
        assert_eq!(signature_keys(&text).unwrap(), std::slice::from_ref(&label));
        assert!(vkey.starts_with(&format!("{label}+")), "{vkey} {label}");
        assert!(matches!(
            signature_keys("stele.test/prod\n5\n"),
            Err(CheckpointError::Malformed(_))
        ));
    }

    #[test]
    fn checkpoints_sign_and_verify() {
        let (signer, vkey) = keys();
        let text = sign("stele.test/prod", 5, Hash([7; 32]), &signer).unwrap();
        assert!(text.starts_with("stele.test/prod\n5\n"), "{text}");
        let cp = verify(&text, &vkey).unwrap();
        assert_eq!((cp.size, cp.root), (5, Hash([7; 32])));
        // Another key, or an edited body, fails.
        let (_, other) = keys();
        assert!(matches!(
            verify(&text, &other),
            Err(CheckpointError::BadSignature(_))
        ));
        let edited = text.replacen("\n5\n", "\n6\n", 1);
        assert!(matches!(
            verify(&edited, &vkey),
            Err(CheckpointError::BadSignature(_))
        ));
        assert!(matches!(
            verify(&text, "nonsense"),
            Err(CheckpointError::BadVerifierKey)
        ));
    }

    #[test]
    fn tlog_proof_round_trips_and_verifies() {
        let (signer, vkey) = keys();
        let mut app = TreeAppender::empty();
        let mut mem = MemoryHashes::default();
        let leaves: Vec<Hash> = (0..11u8).map(|i| crate::hashing::leaf_hash(&[i])).collect();
        for (i, l) in (0u64..).zip(&leaves) {
            let nodes = app.push(*l);
            mem.push(i, *l, &nodes);
        }
        let checkpoint = sign("stele.test/prod", 11, app.root(), &signer).unwrap();
        let proof = TlogProof {
            extra: Some(vec![4]),
            index: 4,
            hashes: inclusion_proof(11, 4, &mem).unwrap(),
            checkpoint,
        };
        let text = proof.to_text();
        assert!(
            text.starts_with("c2sp.org/tlog-proof@v1\nextra BA==\nindex 4\n"),
            "{text}"
        );
        let parsed = TlogProof::parse(&text).unwrap();
        assert_eq!(parsed, proof);
        parsed.verify(leaves[4], &vkey).unwrap();
        assert!(parsed.verify(leaves[5], &vkey).is_err());
        assert!(TlogProof::parse("c2sp.org/tlog-proof@v1\nindex x\n\n").is_err());
        // Only the spec's spelling of a number: no leading zero, no sign, no space.
        for index in ["06", "+6", "00", " 6", "6 ", "", "18446744073709551616"] {
            let text = format!("c2sp.org/tlog-proof@v1\nindex {index}\n\n");
            assert!(
                TlogProof::parse(&text).is_err(),
                "index {index:?} was accepted"
            );
        }
        for (index, n) in [("0", 0), ("6", 6), ("18446744073709551615", u64::MAX)] {
            let text = format!("c2sp.org/tlog-proof@v1\nindex {index}\n\n");
            assert_eq!(TlogProof::parse(&text).map(|p| p.index).ok(), Some(n));
        }
    }
}
