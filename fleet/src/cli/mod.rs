//! Command implementations of `vouch-fleet`, one module per subcommand group.

pub mod attest_cmd;
pub mod common;
pub mod devices;
pub mod escrow;
pub mod eventlog;
pub mod init;
pub mod policy;
pub mod policy_sign;
pub mod quote;
pub mod revoke;
pub mod serve;
