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

/// Opens the configured database for writing, migrating it if needed.
pub fn open_store(ctx: &Context) -> Result<Box<dyn LedgerStore>, Failure> {
    refuse_new_ledger_in_uninitialized_dir(ctx)?;
    Ok(stele_store::open(&ctx.db)?)
}

/// Opens the configured database for reading only: what verification and
/// the other read commands use, so they can never change what they read,
/// and work on a file or with a role that may not write.
pub fn open_store_read_only(ctx: &Context) -> Result<Box<dyn LedgerStore>, Failure> {
    refuse_new_ledger_in_uninitialized_dir(ctx)?;
    Ok(stele_store::open_read_only(&ctx.db)?)
}

/// An uninitialized directory is refused where it would otherwise get a new
/// SQLite ledger (a mistyped `--data-dir`); an existing ledger file or a
/// PostgreSQL server named with `--db` is used as it is, so an auditor needs
/// no `stele init` to read one.
fn refuse_new_ledger_in_uninitialized_dir(ctx: &Context) -> Result<(), Failure> {
    let new_ledger = matches!(&ctx.db, DbLocation::Sqlite(path) if !path.exists());
    if new_ledger && !ctx.config_path().exists() {
        return Err(Failure::Input(anyhow::anyhow!(
            "{} is not initialized: run `stele init` (or pass --data-dir)",
            ctx.data_dir.display()
        )));
    }
    Ok(())
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
