//! drive
use crate::cli::Cli;
use crate::out::{CmdResult, Out};
pub fn run(_cli: &Cli, _out: &mut Out) -> CmdResult {
    Ok(())
}
