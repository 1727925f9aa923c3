//! Command implementations of `vouch-fleet`, one module per subcommand group.

pub mod eventlog;
pub mod quote;
pub mod init;
