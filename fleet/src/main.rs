//! `vouch-fleet`: the fleet side of Vouch.
//!
//! This file only parses the command line, dispatches to the command modules under `cli/` and maps
//! their errors to exit codes. Every decision about evidence lives in `vouch-attest`.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit codes of `vouch-fleet`, documented in the README.
pub mod exit {
    /// Everything checked out.
    pub const OK: u8 = 0;
    /// The evidence was checked and found wanting (untrusted verdict, failed quote check).
    pub const REJECTED: u8 = 1;
    /// Bad usage or unreadable / malformed input.
    pub const INPUT: u8 = 2;
    /// Internal error.
    pub const INTERNAL: u8 = 70;
}

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
    /// PCR policy signing for sealed secrets: the fleet key and signed policies for devices.
    #[command(name = "seal-policy")]
    SealPolicy(cli::policy_sign::SealPolicyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Eventlog(args) => cli::eventlog::run(args),
        Command::Quote(args) => ExitCode::from(cli::quote::run(args)),
        Command::Init(args) => cli::init::run(args),
        Command::SealPolicy(args) => cli::policy_sign::run(args),
    }
}
