//! The data directory and its `stele.toml`.
//!
//! Resolution order for every setting: command-line flag, then environment
//! (`STELE_*`, handled by clap), then `stele.toml`, then the default.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use stele_keys::KeyDir;
use stele_ledger::Limits;
use stele_store::DbLocation;

use crate::cli::GlobalArgs;
use crate::error::Failure;

/// File name of the config inside the data directory.
pub const CONFIG_FILE: &str = "stele.toml";

/// `stele.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Largest payload accepted, in canonical bytes.
    pub max_payload_bytes: usize,
    /// Database location; prefer `STELE_DB` for URLs with passwords.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
}

/// Everything a command needs to find its data.
pub struct Context {
    pub data_dir: PathBuf,
    pub db: DbLocation,
    pub limits: Limits,
    pub json: bool,
}

impl Context {
    /// Reads the config (if the directory is initialized) and resolves settings.
    pub fn load(global: &GlobalArgs) -> Result<Self, Failure> {
        let path = global.data_dir.join(CONFIG_FILE);
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => Some(
                toml::from_str::<ConfigFile>(&text)
                    .with_context(|| format!("{} is not a valid stele config", path.display()))
                    .map_err(Failure::Input)?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Failure::Operational(anyhow::anyhow!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let db = global
            .db
            .clone()
            .or_else(|| file.as_ref().and_then(|f| f.db.clone()))
            .map_or_else(
                || DbLocation::Sqlite(global.data_dir.join("ledger.db")),
                |s| DbLocation::parse(&s),
            );
        let limits = Limits {
            max_payload_bytes: file
                .as_ref()
                .map_or(Limits::DEFAULT_MAX_PAYLOAD_BYTES, |f| f.max_payload_bytes),
        };
        Ok(Self {
            data_dir: global.data_dir.clone(),
            db,
            limits,
            json: global.json,
        })
    }

    pub fn keys(&self) -> KeyDir {
        KeyDir::new(self.data_dir.join("keys"))
    }

    pub fn config_path(&self) -> PathBuf {
        self.data_dir.join(CONFIG_FILE)
    }
}

/// Writes a new config file; refuses to overwrite.
pub fn write_config(path: &Path, config: &ConfigFile) -> anyhow::Result<()> {
    use std::io::Write as _;
    let text = format!(
        "# stele configuration. Settings here are overridden by STELE_* variables and flags.\n{}",
        toml::to_string(config)?
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}
