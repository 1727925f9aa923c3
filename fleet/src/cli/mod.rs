//! Command implementations of `vouch-fleet`, one module per subcommand group.

pub mod init;
