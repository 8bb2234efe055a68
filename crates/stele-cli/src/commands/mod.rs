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
pub mod serve;
pub mod verify;

use stele_ledger::ChainId;
use stele_store::{DbLocation, Store, StoreOptions};

use crate::config::{Context, DbSource};
use crate::error::Failure;

/// Opens the configured database for writing, migrating it if needed. An
/// uninitialized directory is refused: writing needs its keys, and a
/// mistyped `--data-dir` must not create or migrate anything.
///
/// Only `stele init` creates a ledger: the one the config names (or the
/// data directory's `ledger.db`) must be there, or a write would silently
/// start a new, empty ledger beside the real one. A location given with
/// `--db`/`STELE_DB` is what the user asked for and is opened as given.
pub async fn open_shared(ctx: &Context) -> Result<Store, Failure> {
    ensure_writable(ctx).await?;
    Ok(Store::open(&ctx.db, StoreOptions::default()).await?)
}

/// The checks before any writing open (see [`open_shared`]).
pub async fn ensure_writable(ctx: &Context) -> Result<(), Failure> {
    if !ctx.config_path().exists() {
        return Err(not_initialized(ctx));
    }
    if ctx.db_source != DbSource::Explicit {
        check_ledger_present(ctx).await?;
    }
    Ok(())
}

/// [`ensure_writable`] for a command that has not started its runtime yet.
pub fn check_writable(ctx: &Context) -> Result<(), Failure> {
    runtime()?.block_on(ensure_writable(ctx))
}

/// Refuses a write when the ledger the data directory was initialized for
/// is missing (an empty database, a removed file).
async fn check_ledger_present(ctx: &Context) -> Result<(), Failure> {
    let fix = match ctx.db_source {
        DbSource::Default => {
            "; if this directory was initialized with --db by an older stele (which did not \
             record it), pass that --db or add `db = \"…\"` (without the password) to stele.toml"
        }
        _ => "",
    };
    let missing = |what: String| {
        Failure::Input(anyhow::anyhow!(
            "{what}; stele does not create a new ledger in its place (nothing was written): \
             restore it, or name the ledger to use with --db{fix}"
        ))
    };
    match &ctx.db {
        DbLocation::Sqlite(path) => {
            if !path.exists() {
                return Err(missing(format!(
                    "the ledger {} that {} was initialized for is not there",
                    path.display(),
                    ctx.data_dir.display()
                )));
            }
        }
        DbLocation::Postgres(_) => {
            // Reading only: a database without a stele schema is refused
            // here; any other outcome (an older schema to migrate, a
            // connection error) is left to the writing open that follows.
            let probe = StoreOptions {
                readers: 1,
                ..StoreOptions::default()
            };
            if let Err(stele_store::StoreError::Open { reason, .. }) =
                Store::open_read_only(&ctx.db, probe).await
                && reason == NO_LEDGER_REASON
            {
                return Err(missing(format!(
                    "the database {} that {} was initialized for holds no stele ledger",
                    ctx.db,
                    ctx.data_dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// What `Store::open_read_only` says of a database without a stele schema.
const NO_LEDGER_REASON: &str = "it holds no stele ledger";

/// Opens the configured database for reading only: what verification and
/// the other read commands use, so they can never change what they read,
/// and work on a file or with a role that may not write. A ledger named
/// with `--db` (an existing file, a PostgreSQL server) needs no `stele
/// init`; only the default ledger of an uninitialized directory is refused.
pub async fn open_shared_read_only(ctx: &Context) -> Result<Store, Failure> {
    let missing_default = matches!(&ctx.db, DbLocation::Sqlite(path) if !path.exists());
    if missing_default && !ctx.config_path().exists() {
        return Err(not_initialized(ctx));
    }
    Ok(Store::open_read_only(&ctx.db, StoreOptions::default()).await?)
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

/// The Tokio runtime a command's S3 calls run on.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Operational(anyhow::anyhow!("cannot start the I/O runtime: {e}")))
}
