//! One module per command.

pub mod anchor;
pub mod append;
pub mod bucket;
pub mod demo;
pub mod evidence;
pub mod init;
pub mod keys;
pub mod log;
pub mod proof;
pub mod verify;

use anyhow::Context as _;
use stele_ledger::ChainId;
use stele_store::{DbLocation, LedgerStore};

use crate::config::Context;
use crate::error::Failure;

/// Opens the configured database. An uninitialized directory is refused
/// when opening would create a new SQLite ledger there (a mistyped
/// `--data-dir`); an existing ledger file or a PostgreSQL server named with
/// `--db` is opened as it is, so an auditor needs no `stele init` to read one.
pub fn open_store(ctx: &Context) -> Result<Box<dyn LedgerStore>, Failure> {
    let creates_ledger = matches!(&ctx.db, DbLocation::Sqlite(path) if !path.exists());
    if creates_ledger && !ctx.config_path().exists() {
        return Err(Failure::Input(anyhow::anyhow!(
            "{} is not initialized: run `stele init` (or pass --data-dir)",
            ctx.data_dir.display()
        )));
    }
    Ok(stele_store::open(&ctx.db)?)
}

pub fn chain_id(s: &str) -> Result<ChainId, Failure> {
    Ok(ChainId::new(s)?)
}

/// Reads a file, or stdin for `-`.
pub fn read_input(path: &str) -> Result<String, Failure> {
    if path == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read stdin")
            .map_err(Failure::Input)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {path}"))
            .map_err(Failure::Input)
    }
}
