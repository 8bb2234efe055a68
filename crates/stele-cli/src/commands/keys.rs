//! `stele keys rotate|list|export-verifier`.

use serde_json::json;

use crate::cli::KeysCommand;
use crate::config::Context;
use crate::error::Failure;
use crate::output;

pub fn run(ctx: &Context, cmd: &KeysCommand) -> Result<(), Failure> {
    let keys = ctx.keys();
    match cmd {
        KeysCommand::Rotate(args) => {
            let previous = keys.keyring()?.active().id().to_string();
            let id = keys.rotate_hmac(args.key_id.as_deref())?;
            if ctx.json {
                output::print_json(
                    &json!({"previous_key_id": previous, "active_key_id": id.as_str()}),
                )
            } else {
                output::print(&format!(
                    "HMAC key rotated: new events are chained with {id}; {previous} is kept to verify older events\n"
                ))
            }
        }
        KeysCommand::List => {
            let infos = keys.key_infos()?;
            if ctx.json {
                return output::print_json(&infos);
            }
            let text: String = infos
                .iter()
                .map(|k| {
                    format!(
                        "{:<16} created {}{}\n",
                        k.id,
                        k.created,
                        if k.active { "  (active)" } else { "" }
                    )
                })
                .collect();
            output::print(&text)
        }
        KeysCommand::ExportVerifier => {
            let vkey = keys.verifier_key()?;
            if ctx.json {
                output::print_json(&json!({"verifier_key": vkey}))
            } else {
                output::print(&format!("{vkey}\n"))
            }
        }
    }
}
