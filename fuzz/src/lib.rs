//! Shared fixtures of the fuzz targets.
//!
//! The keys below are a throwaway identity made with `stele init --log-name
//! fuzz.stele.example` for the seed corpus (`fuzz/corpus/`): the real anchors,
//! checkpoints, proofs and exports there verify under them, so the fuzzer
//! starts from inputs that pass the signature checks. They protect nothing.

use base64::Engine as _;
use signed_note::{Note, StandardSigner};
use stele_ledger::{HmacKey, KeyId, Keyring};

/// Signing key of the corpus identity (public test fixture, protects nothing).
pub const SIGNING_KEY: &str =
    "PRIVATE+KEY+fuzz.stele.example+269188fd+ARPEaKwF138JFlgG4xl3eU+7ZZORCFQIpNC9kDB1o/3A";
/// Verifier key of the corpus identity.
pub const VERIFIER_KEY: &str =
    "fuzz.stele.example+269188fd+AUkM5hvQk3KWiBFxVe21GiGp9NeFMeB2zSm0ns3JSf31";
/// HMAC key `k1` of the corpus identity (base64).
const HMAC_K1: &str = "S8Tl6+kUn3c5udykhE1ZohQAAQI9PI5QBNO6L8naoDQ=";

/// The signer of the corpus identity.
pub fn signer() -> StandardSigner {
    StandardSigner::new(SIGNING_KEY).expect("the fixture signing key parses")
}

/// The keyring of the corpus identity (`k1` active).
pub fn keyring() -> Keyring {
    let secret = base64::engine::general_purpose::STANDARD
        .decode(HMAC_K1)
        .expect("the fixture HMAC key is base64");
    let id = KeyId::new("k1").expect("k1 is a valid key id");
    Keyring::new(id.clone(), [HmacKey::new(id, &secret)]).expect("a one-key keyring")
}

/// Signs `text` as a signed note with the corpus identity, when `text` can be
/// a note body at all: lets a target reach the parser behind a signature check.
pub fn sign_note(text: &[u8]) -> Option<Vec<u8>> {
    let mut note = Note::new(text, &[]).ok()?;
    note.add_sigs(&[&signer()]).ok()?;
    Some(note.to_bytes())
}

/// Input as UTF-8 text; the parsers take `&str`, so other bytes end the run.
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}
