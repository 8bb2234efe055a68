//! One anchor object as read from the bucket or an audit package.
//! Parsing, signature and checkpoint verification, the time and the object
//! key must never panic. An accepted anchor must round-trip through its
//! RFC 8785 bytes; and an anchor whose bytes are already canonical and whose
//! signature verifies must still verify after that round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stele_anchor::{Anchor, check_link, object_key};
use stele_ledger::ChainId;

fuzz_target!(|data: &[u8]| {
    let Ok(anchor) = Anchor::from_bytes(data) else {
        return;
    };
    let bytes = anchor.to_bytes().expect("a parsed anchor serializes");
    let again = Anchor::from_bytes(&bytes).expect("serialized anchor parses");
    assert_eq!(again, anchor, "anchor round trip");
    assert_eq!(
        again.to_bytes().expect("serializes"),
        bytes,
        "canonical bytes are stable"
    );

    let verified = anchor.verify(stele_fuzz::VERIFIER_KEY);
    if verified.is_ok() {
        again
            .verify(stele_fuzz::VERIFIER_KEY)
            .expect("a verified anchor verifies after a round trip");
    }
    let _ = anchor.signing_bytes();
    if let (Ok(ts), Ok(chain)) = (anchor.time(), ChainId::new(&anchor.chain_id)) {
        let _ = object_key(None, &chain, ts, anchor.anchor_seq);
        let _ = object_key(Some("audit/prod"), &chain, ts, anchor.anchor_seq);
    }
    // Linking an anchor to itself is never valid (anchor_seq must grow).
    assert!(check_link(&anchor, data, &anchor).is_err());
});
