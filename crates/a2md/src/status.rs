//! status
use crate::cli::Cli;
use crate::out::{CmdResult, Out};
pub fn run(_cli: &Cli, _out: &mut Out, _md: Option<&str>) -> CmdResult {
    Ok(())
}
