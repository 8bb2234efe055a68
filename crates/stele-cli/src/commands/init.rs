//! `stele init`.
//!
//! All or nothing: the keys and `stele.toml` are built in a staging
//! directory and moved into place only once the database is ready, with
//! `stele.toml` last (its presence is what "initialized" means). A failure at
//! any step undoes what this run created, so the directory is left as it
//! was and a retry starts clean.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use serde_json::json;
use stele_store::DbLocation;

use crate::cli::InitArgs;
use crate::config::{ConfigFile, Context, DbSource, write_config};
use crate::error::Failure;
use crate::output;

/// What this run created, to be removed if a later step fails.
#[derive(Default)]
struct Created {
    data_dir: Option<PathBuf>,
    sqlite_files: Vec<PathBuf>,
    keys_dir: Option<PathBuf>,
    committed: bool,
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Best effort: each path here did not exist before this run.
        if let Some(keys) = &self.keys_dir {
            let _ = std::fs::remove_dir_all(keys);
        }
        for file in &self.sqlite_files {
            let _ = std::fs::remove_file(file);
        }
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn run(ctx: &Context, args: &InitArgs) -> Result<(), Failure> {
    let Initialized {
        verifier_key: vkey,
        password_dropped,
    } = initialize(ctx, args)?;
    let password_note = if password_dropped {
        "\n  The database password was not written to stele.toml: later commands take it from\n  PGPASSWORD, or from a file named by db_password_file in stele.toml (mode 0600),\n  or from the full URL in --db / STELE_DB.\n"
    } else {
        ""
    };
    if ctx.json {
        output::print_json(&json!({
            "data_dir": ctx.data_dir,
            "db": ctx.db.to_string(),
            "backend": ctx.db.backend(),
            "log_name": args.log_name,
            "hmac_key_id": "k1",
            "verifier_key": vkey,
            "password_recorded": false,
        }))
    } else {
        output::print(&format!(
            "Initialized stele in {}\n  database:     {} ({})\n  HMAC key:     k1 (keys/hmac-keyring.json, mode 0600)\n  signing key:  keys/signing.key (mode 0600)\n{password_note}\nVerifier key (give this to auditors; it checks checkpoints and anchors):\n{vkey}\n",
            ctx.data_dir.display(),
            ctx.db,
            ctx.db.backend(),
        ))
    }
}

/// What [`initialize`] made.
pub struct Initialized {
    /// The verifier key, for auditors.
    pub verifier_key: String,
    /// A PostgreSQL password was left out of `stele.toml`.
    pub password_dropped: bool,
}

/// Creates the database, the keys and `stele.toml`, all or nothing.
pub fn initialize(ctx: &Context, args: &InitArgs) -> Result<Initialized, Failure> {
    let config_path = ctx.config_path();
    // `symlink_metadata`: a dangling link in the way is "something there" too.
    if config_path.symlink_metadata().is_ok() {
        return Err(Failure::Input(anyhow!(
            "{} is already initialized ({} exists); refusing to replace its keys",
            ctx.data_dir.display(),
            config_path.display()
        )));
    }
    let keys = ctx.keys();
    for file in [stele_keys::KEYRING_FILE, stele_keys::SIGNING_KEY_FILE] {
        if keys.path().join(file).symlink_metadata().is_ok() {
            return Err(Failure::Input(anyhow!(
                "{} already holds keys but has no {}; refusing to overwrite them (move them away, or restore the config)",
                keys.path().display(),
                config_path.display()
            )));
        }
    }
    let mut created = Created::default();
    if ctx.data_dir.symlink_metadata().is_err() {
        std::fs::create_dir_all(&ctx.data_dir).map_err(|e| {
            Failure::Input(anyhow!("cannot create {}: {e}", ctx.data_dir.display()))
        })?;
        created.data_dir = Some(ctx.data_dir.clone());
    }
    // The database first, so a bad or unreachable --db fails before any key
    // or config is written.
    if let DbLocation::Sqlite(path) = &ctx.db {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let file = PathBuf::from(name);
            if file.symlink_metadata().is_err() {
                created.sqlite_files.push(file);
            }
        }
    }
    super::runtime()?.block_on(async {
        let store = stele_store::Store::open(&ctx.db, stele_store::StoreOptions::default()).await?;
        store.close().await;
        Ok::<_, Failure>(())
    })?;

    // Keys and config in a staging directory beside them (same file system,
    // so moving them is a rename).
    let staging = tempfile::Builder::new()
        .prefix(".stele-init-")
        .tempdir_in(&ctx.data_dir)
        .map_err(|e| Failure::Input(anyhow!("cannot write in {}: {e}", ctx.data_dir.display())))?;
    let staged_keys = stele_keys::KeyDir::new(staging.path().join("keys"));
    let vkey = staged_keys.create(&args.log_name)?;
    let (recorded_db, password_dropped) = recorded_location(ctx)?;
    let staged_config = staging.path().join(crate::config::CONFIG_FILE);
    write_config(
        &staged_config,
        &ConfigFile {
            max_payload_bytes: args.max_payload_bytes,
            db: recorded_db,
            db_password_file: None,
            anchor: None,
            server: None,
        },
    )
    .map_err(|e| Failure::Input(anyhow!("{e:#}")))?;

    move_keys(staged_keys.path(), keys.path())?;
    created.keys_dir = Some(keys.path().to_owned());
    // The commit point: a hard link is created only where nothing is.
    std::fs::hard_link(&staged_config, &config_path)
        .map_err(|e| Failure::Input(anyhow!("cannot create {}: {e}", config_path.display())))?;
    created.committed = true;
    drop(staging);
    Ok(Initialized {
        verifier_key: vkey,
        password_dropped,
    })
}

/// The `db` to record: nothing for the data directory's own `ledger.db`,
/// an absolute path for another SQLite file, a PostgreSQL URL without its
/// password. Also says whether a password was left out.
fn recorded_location(ctx: &Context) -> Result<(Option<String>, bool), Failure> {
    if ctx.db_source == DbSource::Default {
        return Ok((None, false));
    }
    Ok(match &ctx.db {
        DbLocation::Sqlite(path) => {
            let absolute = std::fs::canonicalize(path)
                .map_err(|e| Failure::Input(anyhow!("cannot resolve {}: {e}", path.display())))?;
            let text = absolute.to_str().ok_or_else(|| {
                Failure::Input(anyhow!(
                    "the ledger path {} is not UTF-8 and cannot be recorded in stele.toml",
                    absolute.display()
                ))
            })?;
            (Some(format!("sqlite://{text}")), false)
        }
        DbLocation::Postgres(url) => (
            Some(crate::config::without_password(url)),
            crate::config::has_password(url),
        ),
    })
}

/// Moves the staged key directory into place; an empty directory there is
/// replaced, anything else is refused.
fn move_keys(staged: &Path, target: &Path) -> Result<(), Failure> {
    std::fs::rename(staged, target).map_err(|e| {
        Failure::Input(anyhow!(
            "cannot create {}: {e} (something is in the way: move it, then run `stele init` again)",
            target.display()
        ))
    })
}
