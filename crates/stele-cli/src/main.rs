//! The `stele` binary: parses arguments, runs one command, maps the outcome
//! to an exit code (see `error.rs`). All logic lives in the library crates.

mod cli;
mod commands;
mod config;
mod error;
mod output;

use clap::Parser as _;

use crate::cli::{Cli, Command};
use crate::config::Context;
use crate::error::Failure;

// The gateway allocates and frees small buffers on every thread for every
// event (parsed JSON, canonical bytes, receipts); glibc's allocator spent
// about a third of a loaded server's time on it, mimalloc a fraction.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    // A long-running server says what it does (verification results,
    // anchors held back); a one-shot command only what went wrong.
    let default_level = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STELE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    // STELE_LOG_FORMAT=json: one JSON object per line, for log shippers.
    if std::env::var("STELE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().init();
    } else {
        logs.init();
    }
    let json = cli.global.json;
    let code = match run(cli) {
        Ok(()) => 0,
        Err(failure) => {
            failure.report(json);
            failure.exit_code()
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<(), Failure> {
    let ctx = Context::load(&cli.global)?;
    match cli.command {
        Command::Init(args) => commands::init::run(&ctx, &args),
        Command::Append(args) => commands::append::run(&ctx, &args),
        Command::Log(cmd) => commands::log::run(&ctx, &cmd),
        Command::Proof(cmd) => commands::proof::run(&ctx, &cmd),
        Command::Checkpoint(args) => commands::proof::checkpoint(&ctx, &args),
        Command::Keys(cmd) => commands::keys::run(&ctx, &cmd),
        Command::Verify(cmd) => commands::verify::run(&ctx, &cmd),
        Command::Anchor(cmd) => commands::anchor::run(&ctx, &cmd),
        Command::Bucket(cmd) => commands::bucket::run(&ctx, &cmd),
        Command::Evidence(cmd) => commands::evidence::run(&ctx, &cmd),
        Command::Serve(args) => commands::serve::run(&ctx, &args),
        Command::Token(cmd) => commands::serve::token(&ctx, &cmd),
        Command::Demo(args) => commands::demo::run(&args, ctx.json),
    }
}
