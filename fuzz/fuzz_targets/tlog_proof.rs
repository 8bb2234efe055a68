//! Offline inclusion-proof bundles (c2sp.org/tlog-proof), as given to
//! `stele verify event --proof`. Parsing and verifying must never panic; an
//! accepted bundle round-trips through its text form; and the inclusion check
//! and consistency checks themselves are run on whatever size and index the
//! bundle's (unsigned) checkpoint body claims, since a forged bundle (or
//! anchor) controls all of them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signed_note::Note;
use stele_ledger::checkpoint::TlogProof;
use stele_ledger::hashing::leaf_hash;
use stele_ledger::merkle;
use tlog_tiles::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let Some(text) = stele_fuzz::text(data) else {
        return;
    };
    let Ok(proof) = TlogProof::parse(text) else {
        return;
    };
    let again = TlogProof::parse(&proof.to_text()).expect("a rendered proof parses");
    assert_eq!(again, proof, "tlog-proof round trip");

    let leaf = leaf_hash(proof.extra.as_deref().unwrap_or_default());
    let _ = proof.verify(leaf, stele_fuzz::VERIFIER_KEY);

    let Ok(note) = Note::from_bytes(proof.checkpoint.as_bytes()) else {
        return;
    };
    let Ok(body) = Checkpoint::from_bytes(note.text()) else {
        return;
    };
    let ok = merkle::verify_inclusion(&proof.hashes, body.size(), *body.hash(), proof.index, leaf);
    if ok.is_ok() {
        assert!(
            proof.index < body.size(),
            "inclusion accepted an index outside the tree"
        );
    }
    // The same hashes as a consistency proof from a tree of `index` leaves
    // (root: the leaf) to the checkpoint's tree, as an anchor's proof is checked.
    let _ = merkle::verify_consistency(&proof.hashes, proof.index, leaf, body.size(), *body.hash());
});
