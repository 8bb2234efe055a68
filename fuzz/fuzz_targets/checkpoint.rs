//! Signed checkpoints (C2SP tlog-checkpoint in a signed note), as handed to
//! `stele verify` and embedded in anchors and proofs.
//!
//! 1. The input as a whole note: verification must never panic, and a
//!    checkpoint that verifies must state what its body says.
//! 2. The input as a note body, signed here with the corpus key, so the
//!    checkpoint parser behind the signature check gets the fuzzer's bytes:
//!    what verifies must round-trip through tlog_tiles' own rendering, and
//!    name the corpus key among its signers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signed_note::Note;
use stele_ledger::checkpoint;
use tlog_tiles::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let Some(text) = stele_fuzz::text(data) else {
        return;
    };
    if let Ok(cp) = checkpoint::verify(text, stele_fuzz::VERIFIER_KEY) {
        let note = Note::from_bytes(data).expect("a verified checkpoint is a note");
        let body = Checkpoint::from_bytes(note.text()).expect("a verified checkpoint parses");
        assert_eq!(
            (cp.origin.as_str(), cp.size, cp.root),
            (body.origin(), body.size(), *body.hash())
        );
    }
    // A malformed verifier key is refused, never a panic.
    let _ = checkpoint::verify(text, text);
    // Naming a note's signers (how the anchorer tells a changed signing key
    // from tampering) never panics, and names only well-formed keys.
    if let Ok(keys) = checkpoint::signature_keys(text) {
        assert!(
            Note::from_bytes(data).is_ok(),
            "signers are named only for a note"
        );
        assert!(
            keys.iter()
                .all(|k| k.rsplit_once('+').is_some_and(|(_, id)| id.len() == 8))
        );
    }

    let Some(signed) = stele_fuzz::sign_note(data) else {
        return;
    };
    let signed = String::from_utf8(signed).expect("a note of UTF-8 text is UTF-8");
    let Ok(cp) = checkpoint::verify(&signed, stele_fuzz::VERIFIER_KEY) else {
        return;
    };
    // The corpus key signed it, and its signers say so.
    let corpus_key = stele_fuzz::VERIFIER_KEY
        .splitn(3, '+')
        .take(2)
        .collect::<Vec<_>>()
        .join("+");
    assert!(
        checkpoint::signature_keys(&signed)
            .expect("a verified checkpoint names its signers")
            .contains(&corpus_key)
    );
    let body =
        Checkpoint::new(&cp.origin, cp.size, cp.root, "").expect("a parsed checkpoint renders");
    let again = Checkpoint::from_bytes(&body.to_bytes()).expect("a rendered checkpoint parses");
    assert_eq!(
        (again.origin(), again.size(), *again.hash()),
        (cp.origin.as_str(), cp.size, cp.root)
    );
});
