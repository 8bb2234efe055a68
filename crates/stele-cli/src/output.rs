//! Writing results: text for people, JSON for machines. A closed pipe
//! (`stele log export | head`) ends output quietly: later output is
//! dropped, and the command still returns its own outcome, so a
//! verification that found tampering exits 1 (or 3) whatever happened to
//! its stdout. Only a command with nothing to report exits 0.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::error::Failure;

static MUTED: AtomicBool = AtomicBool::new(false);

/// Set once stdout was found closed (a broken pipe).
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether stdout was closed by its reader: a command that only streams
/// output (an export) may stop early, as nobody reads it.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// Silences `print`/`print_json` (the demo's `--json` mode prints only its summary).
pub fn mute(muted: bool) {
    MUTED.store(muted, Ordering::Relaxed);
}

/// Writes `text` to stdout as it is: for data (exports, proofs, notes).
pub fn print(text: &str) -> Result<(), Failure> {
    write_out(text.as_bytes())
}

/// Writes human-readable `text` to stdout with [`escape`] applied, so that
/// object keys, file names, actors and findings cannot move the cursor,
/// recolour or reorder the terminal's text (a spoofed verdict).
pub fn print_human(text: &str) -> Result<(), Failure> {
    write_out(escape(text).as_bytes())
}

/// Text for a terminal: every control character except newline and tab,
/// and every invisible character that reorders or hides text (bidi
/// overrides such as U+202E, zero-width characters), becomes a visible
/// `\u{…}` escape. JSON output is escaped by its serializer instead.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| (c.is_control() && c != '\n' && c != '\t') || is_format_char(c);
    if !text.chars().any(needs) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if needs(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Invisible characters that change how the text around them is shown.
fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
    )
}

/// Writes `value` as one line of JSON to stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let mut line = serde_json::to_vec(value).map_err(|e| Failure::Operational(e.into()))?;
    line.push(b'\n');
    write_out(&line)
}

fn write_out(bytes: &[u8]) -> Result<(), Failure> {
    if MUTED.load(Ordering::Relaxed) || closed() {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // Never an exit here: the caller's verdict (exit 1 or 3) must
        // survive a reader that stopped reading (`stele verify log | head`).
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// A progress bar on stderr when it is a terminal and output is for people; hidden otherwise.
pub fn progress(json: bool, total: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn control_and_bidi_characters_are_shown_not_obeyed() {
        assert_eq!(escape("ok\n"), "ok\n");
        assert_eq!(
            escape("a\u{1b}[2Kb\u{202e}c\r"),
            "a\\u{1b}[2Kb\\u{202e}c\\u{d}"
        );
    }
}
