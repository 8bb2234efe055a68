//! Writing results: text for people, JSON for machines. A closed pipe
//! (`stele log export | head`) ends output quietly, as a success.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::error::Failure;

static MUTED: AtomicBool = AtomicBool::new(false);

/// Silences `print`/`print_json` (the demo's `--json` mode prints only its summary).
pub fn mute(muted: bool) {
    MUTED.store(muted, Ordering::Relaxed);
}

/// Writes `text` to stdout.
pub fn print(text: &str) -> Result<(), Failure> {
    write_out(text.as_bytes())
}

/// Writes `value` as one line of JSON to stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let mut line = serde_json::to_vec(value).map_err(|e| Failure::Operational(e.into()))?;
    line.push(b'\n');
    write_out(&line)
}

fn write_out(bytes: &[u8]) -> Result<(), Failure> {
    if MUTED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
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
