//! `vouch-fleet`: the fleet side of Vouch.
//!
//! This file only parses the command line, dispatches to the command modules under `cli/`, prints
//! a failed command's error once (`vouch-fleet <command>: <chain>`) and exits with the code the
//! one table in `exit.rs` gives its outcome or error. Every decision about evidence lives in `vouch-attest`: the
//! appraisal of a quote, event log and policy (`quote verify` and the server's verdicts both call
//! `vouch_attest::appraisal`), the escrow release rule (`vouch_attest::escrow_release`), the device
//! id (`vouch_attest::identity`).

mod cli;
mod exit;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "vouch-fleet",
    version,
    about = "Vouch fleet: verify what devices booted"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay or show a TCG event log.
    Eventlog(cli::eventlog::EventlogArgs),
    /// TPM quotes: verify a quote against an AK, nonce and PCR values.
    Quote(cli::quote::QuoteArgs),
    /// Create a fleet directory: CA, broker/fleet/claim certificates, CRL, mosquitto config.
    Init(cli::init::InitArgs),
    /// Run the fleet server: enrollment, challenges, verdicts, revocation over MQTT.
    Serve(cli::serve::ServeArgs),
    /// List the enrolled devices.
    Devices(cli::devices::DevicesArgs),
    /// One device: `device show ID`.
    Device(cli::devices::DeviceArgs),
    /// Challenge a device now (through the running server) and wait for its verdict.
    Attest(cli::attest_cmd::AttestArgs),
    /// Revoke a device's certificate (CRL updated, broker reloaded).
    Revoke(cli::revoke::RevokeArgs),
    /// Decommission a device: revoke, forget its keys, keep the audit trail.
    Delete(cli::revoke::RevokeArgs),
    /// Print the audit log and verify its hash chain.
    Audit(cli::devices::AuditArgs),
    /// Policies: check an event log against a policy, or record one from a known-good log.
    Policy(cli::policy::PolicyArgs),
    /// Approved releases: sets of allowed boot components policies reference.
    Release(cli::release::ReleaseArgs),
    /// PCR policy signing for sealed secrets: the fleet key and signed policies for devices.
    #[command(name = "seal-policy")]
    SealPolicy(cli::policy_sign::SealPolicyArgs),
    /// Volume recovery escrow: the fleet escrow key, releasing recovery passphrases.
    Escrow(cli::escrow::EscrowArgs),
    /// Encrypted fleet backups: make one, the backup key (or its shares), verify one.
    Backup(cli::backup::BackupArgs),
    /// Rebuild a fleet directory from a backup.
    Restore(cli::backup::RestoreArgs),
    /// Operators of the HTTPS API: issue, revoke, list their client certificates.
    Operator(cli::operator::OperatorArgs),
    /// IMA runtime integrity: appraise a measurement list against a Keylime runtime policy.
    Ima(cli::ima::ImaArgs),
    /// Keylime runtime policies: create one from a file tree or a known-good IMA list.
    #[command(name = "runtime-policy")]
    RuntimePolicy(cli::ima::RuntimePolicyArgs),
}

impl Command {
    /// The command's name in messages: `vouch-fleet <name>: <error>`.
    fn name(&self) -> &'static str {
        match self {
            Command::Eventlog(a) => a.name(),
            Command::Quote(a) => a.name(),
            Command::Init(_) => "init",
            Command::Serve(_) => "serve",
            Command::Devices(_) => "devices",
            Command::Device(a) => a.name(),
            Command::Attest(_) => "attest",
            Command::Revoke(_) => "revoke",
            Command::Delete(_) => "delete",
            Command::Audit(_) => "audit",
            Command::Policy(a) => a.name(),
            Command::Release(a) => a.name(),
            Command::SealPolicy(a) => a.name(),
            Command::Escrow(a) => a.name(),
            Command::Backup(a) => a.name(),
            Command::Restore(_) => "restore",
            Command::Operator(a) => a.name(),
            Command::Ima(a) => a.name(),
            Command::RuntimePolicy(a) => a.name(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = cli.command.name();
    let result = match cli.command {
        Command::Eventlog(args) => cli::eventlog::run(args),
        Command::Quote(args) => cli::quote::run(args),
        Command::Init(args) => cli::init::run(args),
        Command::Serve(args) => cli::serve::run(args),
        Command::Devices(args) => cli::devices::run_devices(args),
        Command::Device(args) => cli::devices::run_device(args),
        Command::Attest(args) => cli::attest_cmd::run(args),
        Command::Revoke(args) => cli::revoke::run(args, false),
        Command::Delete(args) => cli::revoke::run(args, true),
        Command::Audit(args) => cli::devices::run_audit(args),
        Command::Policy(args) => cli::policy::run(args),
        Command::Release(args) => cli::release::run(args),
        Command::SealPolicy(args) => cli::policy_sign::run(args),
        Command::Escrow(args) => cli::escrow::run(args),
        Command::Backup(args) => cli::backup::run(args),
        Command::Restore(args) => cli::backup::run_restore(args),
        Command::Operator(args) => cli::operator::run(args),
        Command::Ima(args) => cli::ima::run(args),
        Command::RuntimePolicy(args) => cli::ima::run_runtime_policy(args),
    };
    ExitCode::from(match result {
        Ok(outcome) => exit::outcome(outcome),
        Err(e) => {
            eprintln!("vouch-fleet {name}: {}", vouch_attest::errors::chain(&e));
            exit::code(&e)
        }
    })
}
