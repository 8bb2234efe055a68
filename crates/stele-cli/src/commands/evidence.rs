//! `stele evidence` (being built; see the open issue).

use clap::Subcommand;

use crate::config::Context;
use crate::error::Failure;

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {}

pub fn run(_ctx: &Context, cmd: &EvidenceCommand) -> Result<(), Failure> {
    match *cmd {}
}
