//! A JSONL batch (`stele append --jsonl`): every line parsed and validated;
//! the accepted events are committed to a fresh chain in memory and the
//! chain's own verifier must then find it clean (what was committed verifies,
//! whatever the input was), and its export lines must parse back to the
//! same events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stele_ledger::append::{ChainAppender, ChainState};
use stele_ledger::verify::LogVerifier;
use stele_ledger::{ChainId, Event, EventInput, Limits, Timestamp};

fuzz_target!(|data: &[u8]| {
    let Some(text) = stele_fuzz::text(data) else {
        return;
    };
    let keyring = stele_fuzz::keyring();
    let chain = ChainId::new("fuzz").expect("valid chain id");
    let mut appender =
        ChainAppender::new(chain.clone(), &ChainState::empty(), &[], keyring.active())
            .expect("an empty chain resumes");
    let now = Timestamp::parse("2026-01-15T14:00:00.123456Z").expect("valid time");
    let limits = Limits::default();
    let mut committed: Vec<Event> = Vec::new();
    for line in text.lines().take(64) {
        if line.trim().is_empty() {
            continue;
        }
        let Ok(input) = EventInput::from_json(line) else {
            continue;
        };
        let Ok(valid) = input.validate(&limits) else {
            continue;
        };
        committed.push(appender.append(valid, now).event);
    }
    let mut verifier = LogVerifier::new(chain, Some(&keyring));
    for event in &committed {
        let line = serde_json::to_string(event).expect("an event serializes");
        let back: Event = serde_json::from_str(&line).expect("an export line parses");
        assert_eq!(&back, event, "export line round trip");
        verifier.check(&back, None);
    }
    let report = verifier.finish(None);
    assert!(
        report.is_clean(),
        "committed events do not verify: {report:?}"
    );
});
