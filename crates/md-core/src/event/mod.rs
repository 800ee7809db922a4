//! Events for the admin's commands (MDMessageCmd, MDNotifyCmd) and command execution.

pub mod exec;
