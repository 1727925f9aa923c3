//! Command implementations of `vouch-fleet`, one module per subcommand group.
//!
//! Every command returns `Result<Outcome, CliError>`: an [`Outcome`] when it ran to the end (its
//! normal output already printed), a [`CliError`] when it could not. `main` prints the error
//! once and asks [`crate::exit`] for the exit code of either.

pub mod attest_cmd;
pub mod backup;
pub mod common;
pub mod devices;
pub mod escrow;
pub mod eventlog;
pub mod ima;
pub mod init;
pub mod operator;
pub mod policy;
pub mod policy_sign;
pub mod quote;
pub mod release;
pub mod revoke;
pub mod serve;

/// How a command that ran to the end came out: results that are not errors but decide the exit
/// code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Outcome {
    /// Success: the evidence checked out (trusted, every check passed, the audit chain intact).
    Done,
    /// The evidence was checked and found wanting: an untrusted verdict, a failed
    /// `quote verify` or `policy check`, a broken audit chain.
    Rejected,
}

impl Outcome {
    /// [`Outcome::Done`] when `passed`, else [`Outcome::Rejected`].
    pub fn of(passed: bool) -> Outcome {
        if passed {
            Outcome::Done
        } else {
            Outcome::Rejected
        }
    }
}

/// Why a `vouch-fleet` command failed: one variant per command's error (each prints as its own
/// message; the causes follow in the chain `main` prints).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Loading `--config` or opening the registry failed (every registry command).
    #[error(transparent)]
    Setup(#[from] common::SetupError),
    /// `eventlog replay|show`.
    #[error(transparent)]
    Eventlog(#[from] eventlog::EventlogCliError),
    /// `quote verify`.
    #[error(transparent)]
    Quote(#[from] quote::QuoteError),
    /// `init`.
    #[error(transparent)]
    Init(#[from] vouch_fleet::pki::setup::InitError),
    /// `serve`.
    #[error(transparent)]
    Serve(#[from] serve::ServeCmdError),
    /// `devices`, `device show|set-policy`, `audit`.
    #[error(transparent)]
    Devices(#[from] devices::DevicesError),
    /// `attest`.
    #[error(transparent)]
    Attest(#[from] attest_cmd::AttestCmdError),
    /// `revoke`, `delete`.
    #[error(transparent)]
    Revoke(#[from] revoke::RevokeCmdError),
    /// `policy check|record`.
    #[error(transparent)]
    Policy(#[from] policy::PolicyCliError),
    /// `release approve|list|show|remove`.
    #[error(transparent)]
    Release(release::ReleaseCliError),
    /// `seal-policy keygen|sign`, `policy sign`.
    #[error(transparent)]
    PolicySign(#[from] policy_sign::PolicySignError),
    /// `escrow keygen|release`.
    #[error(transparent)]
    Escrow(#[from] escrow::EscrowCmdError),
    /// `backup`, `backup keygen|verify`, `restore`.
    #[error(transparent)]
    Backup(#[from] backup::BackupCmdError),
    /// `operator add|revoke|list`.
    #[error(transparent)]
    Operator(vouch_fleet::http::operators::OperatorError),
    /// `ima check`, `runtime-policy create`.
    #[error(transparent)]
    Ima(#[from] ima::ImaCliError),
}
