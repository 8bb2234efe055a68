//! `stele bucket` (being built; see the open issue).

use clap::Subcommand;

use crate::config::Context;
use crate::error::Failure;

#[derive(Debug, Subcommand)]
pub enum BucketCommand {}

pub fn run(_ctx: &Context, cmd: &BucketCommand) -> Result<(), Failure> {
    match *cmd {}
}
