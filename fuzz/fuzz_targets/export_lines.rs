//! An export file (`stele log export`, read back by `stele verify log
//! --export`): each line parsed as an event and fed to the auditor's log
//! check with the corpus keyring. Lines that are anchor objects are used as
//! the anchors the log is compared with (as if trusted: the check must hold
//! up even against anchors that lie). No panic whatever the lines; each event
//! line that parses must serialize back to an equal event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stele_ledger::{ChainId, Event};
use stele_verify::AnchoredLog;

fuzz_target!(|data: &[u8]| {
    let Some(text) = stele_fuzz::text(data) else {
        return;
    };
    let keyring = stele_fuzz::keyring();
    let chain = ChainId::new("production").expect("valid chain id");
    let anchors = text
        .lines()
        .filter_map(|l| stele_anchor::Anchor::from_bytes(l.as_bytes()).ok())
        .take(16)
        .collect();
    let mut log = AnchoredLog::new(chain, Some(&keyring), anchors);
    for line in text.lines().take(256) {
        let Ok(event) = serde_json::from_str::<Event>(line) else {
            continue;
        };
        let again = serde_json::to_string(&event).expect("an event serializes");
        let back: Event = serde_json::from_str(&again).expect("a serialized event parses");
        assert_eq!(back, event, "export line round trip");
        log.check(&event, None);
    }
    let _ = log.finish(None);
});
