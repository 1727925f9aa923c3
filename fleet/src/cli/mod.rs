//! Command implementations of `vouch-fleet`, one module per subcommand group.

pub mod eventlog;
pub mod init;
pub mod policy_sign;
pub mod quote;
