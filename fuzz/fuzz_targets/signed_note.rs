//! Signed notes stele reads besides checkpoints: the evidence vault's
//! detached signatures (`.sig` objects, stele.evidence/v1 statements).
//!
//! 1. The input as a `.sig` object: verification must never panic.
//! 2. The input as a statement, signed here with the corpus key, so the
//!    statement parser behind the signature check gets the fuzzer's bytes:
//!    an accepted statement has a lowercase 64-hex sha256 and matches itself.
//! 3. Any note that parses survives a render -> parse round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signed_note::Note;
use stele_evidence::Statement;

fuzz_target!(|data: &[u8]| {
    let _ = Statement::verify(data, stele_fuzz::VERIFIER_KEY);

    if let Ok(note) = Note::from_bytes(data) {
        let again = Note::from_bytes(&note.to_bytes()).expect("a rendered note parses");
        assert_eq!(again.text(), note.text(), "note text round trip");
    }

    let Some(signed) = stele_fuzz::sign_note(data) else {
        return;
    };
    let Ok(statement) = Statement::verify(&signed, stele_fuzz::VERIFIER_KEY) else {
        return;
    };
    let sha = &statement.sha256;
    assert!(
        sha.len() == 64
            && sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    statement
        .matches(&statement.key, statement.size, &statement.sha256)
        .expect("a statement matches what it states");
});
