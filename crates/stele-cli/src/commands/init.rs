//! `stele init`.

use serde_json::json;

use crate::cli::InitArgs;
use crate::config::{ConfigFile, Context, write_config};
use crate::error::Failure;
use crate::output;

pub fn run(ctx: &Context, args: &InitArgs) -> Result<(), Failure> {
    let config_path = ctx.config_path();
    if config_path.exists() {
        return Err(Failure::Input(anyhow::anyhow!(
            "{} is already initialized ({} exists); refusing to replace its keys",
            ctx.data_dir.display(),
            config_path.display()
        )));
    }
    std::fs::create_dir_all(&ctx.data_dir)?;
    // Create and migrate the database first, so a bad or unreachable --db
    // fails before any key or config is written (a retry then starts clean).
    let store = stele_store::open(&ctx.db)?;
    let keys = ctx.keys();
    let vkey = keys.create(&args.log_name)?;
    write_config(
        &config_path,
        &ConfigFile {
            max_payload_bytes: args.max_payload_bytes,
            db: None,
            anchor: None,
        },
    )
    .map_err(Failure::Operational)?;
    if ctx.json {
        output::print_json(&json!({
            "data_dir": ctx.data_dir,
            "db": ctx.db.to_string(),
            "backend": store.backend(),
            "log_name": args.log_name,
            "hmac_key_id": "k1",
            "verifier_key": vkey,
        }))
    } else {
        output::print(&format!(
            "Initialized stele in {}\n  database:     {} ({})\n  HMAC key:     k1 (keys/hmac-keyring.json, mode 0600)\n  signing key:  keys/signing.key (mode 0600)\n\nVerifier key (give this to auditors; it checks checkpoints and anchors):\n{vkey}\n",
            ctx.data_dir.display(),
            ctx.db,
            store.backend(),
        ))
    }
}
