//! One event as a client sends it (`stele append`'s JSON, one JSONL line):
//! parsing and validation must never panic, and an accepted event must keep
//! every documented limit, carry its payload in RFC 8785 form, and survive a
//! serialize -> parse -> validate round trip unchanged; and the one-pass
//! canonical writer agrees with the library on every payload; and the
//! gateway's path (`EventText`, no `Value`) accepts the same events and
//! refuses with the same errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stele_ledger::canonical::{canonical_value_string, canonicalize_payload_text, to_canonical_string};
use stele_ledger::event::{EventText, InputError};
use stele_ledger::{EventInput, Limits};

fuzz_target!(|data: &[u8]| {
    let Some(text) = stele_fuzz::text(data) else {
        return;
    };
    let limits = Limits::default();
    let by_value = EventInput::from_json(text).and_then(|input| input.validate(&limits));
    let by_text = EventText::from_json(text).and_then(|input| input.validate(&limits));
    match (&by_value, &by_text) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        // serde words a few refusals of malformed text apart by type
        // ("... with 4 elements"); every other refusal is the same.
        (Err(InputError::MalformedJson(_)), Err(InputError::MalformedJson(_))) => {}
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("by value {by_value:?}, by text {by_text:?}"),
    }
    let Ok(input) = EventInput::from_json(text) else {
        return;
    };
    // The one-pass canonical writer gives the library's text, or fails as it does.
    if let Some(payload) = &input.payload {
        match (canonical_value_string(payload), to_canonical_string(payload)) {
            (Ok(ours), Ok(library)) => assert_eq!(ours, library),
            (Err(_), Err(_)) => {}
            (ours, library) => panic!("one-pass {ours:?}, library {library:?}"),
        }
    }
    let Ok(valid) = input.clone().validate(&limits) else {
        return;
    };

    // The documented limits (docs/formats.md, event input).
    let t = &valid.event_type;
    assert!(!t.is_empty() && t.len() <= 128, "type length {}", t.len());
    assert!(
        t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:_/-".contains(&b))
    );
    if let Some(actor) = &valid.actor {
        assert!(actor.len() <= 256 && !actor.chars().any(char::is_control));
    }
    if let Some(key) = &valid.idempotency_key {
        assert!(!key.is_empty() && key.len() <= 128);
        assert!(key.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }
    if let Some(payload) = &valid.payload {
        assert!(payload.len() <= limits.max_payload_bytes);
        // Canonical form is a fixed point: canonicalizing it again changes nothing.
        let again = canonicalize_payload_text(payload).expect("canonical payload is JSON");
        assert_eq!(&again, payload, "payload not in canonical form");
    }

    // Round trip: what was accepted, sent again, is accepted as the same event.
    let json = serde_json::to_string(&input).expect("an EventInput serializes");
    let reparsed = EventInput::from_json(&json).expect("a serialized EventInput parses");
    let revalid = reparsed
        .validate(&limits)
        .expect("a valid event stays valid");
    assert_eq!(revalid, valid);
});
