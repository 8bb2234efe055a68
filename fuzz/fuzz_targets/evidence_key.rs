//! Evidence keys a user types or a bucket listing returns
//! (`evidence/<client>/<YYYY>/<MM>/<bundle_id><ext>`). Parsing must never
//! panic; an accepted key renders back to exactly the input, and its
//! signature key is a different key that does not parse as evidence.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stele_evidence::{BundleId, ClientId, EvidenceKey, Extension};

fuzz_target!(|data: &[u8]| {
    let Some(text) = stele_fuzz::text(data) else {
        return;
    };
    if let Ok(key) = EvidenceKey::parse(text) {
        assert_eq!(key.key(), text, "evidence key round trip");
        assert_eq!(EvidenceKey::parse(&key.key()).expect("parses again"), key);
        let (_, month) = key.year_month();
        assert!((1..=12).contains(&month));
        let sig = key.sig_key();
        assert_ne!(sig, text);
        assert!(
            EvidenceKey::parse(&sig).is_err(),
            "a signature key parsed as evidence"
        );
    }
    // The parts on their own, as `stele evidence put` takes them.
    let _ = ClientId::new(text);
    let _ = BundleId::new(text);
    let _ = Extension::new(text);
    let _ = stele_evidence::naming::names_from_path(std::path::Path::new(text), None);
});
