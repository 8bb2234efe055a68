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

use stele_ledger::ChainId;
use stele_store::{DbLocation, LedgerStore};

use crate::config::Context;
use crate::error::Failure;

/// Opens the configured database for writing, migrating it if needed. An
/// uninitialized directory is refused: writing needs its keys, and a
/// mistyped `--data-dir` must not create or migrate anything.
pub fn open_store(ctx: &Context) -> Result<Box<dyn LedgerStore>, Failure> {
    if !ctx.config_path().exists() {
        return Err(not_initialized(ctx));
    }
    Ok(stele_store::open(&ctx.db)?)
}

/// Opens the configured database for reading only: what verification and
/// the other read commands use, so they can never change what they read,
/// and work on a file or with a role that may not write. A ledger named
/// with `--db` (an existing file, a PostgreSQL server) needs no `stele
/// init`; only the default ledger of an uninitialized directory is refused.
pub fn open_store_read_only(ctx: &Context) -> Result<Box<dyn LedgerStore>, Failure> {
    let missing_default = matches!(&ctx.db, DbLocation::Sqlite(path) if !path.exists());
    if missing_default && !ctx.config_path().exists() {
        return Err(not_initialized(ctx));
    }
    Ok(stele_store::open_read_only(&ctx.db)?)
}

fn not_initialized(ctx: &Context) -> Failure {
    Failure::Input(anyhow::anyhow!(
        "{} is not initialized: run `stele init` (or pass --data-dir)",
        ctx.data_dir.display()
    ))
}

pub fn chain_id(s: &str) -> Result<ChainId, Failure> {
    Ok(ChainId::new(s)?)
}
