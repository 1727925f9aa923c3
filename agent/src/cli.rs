//! Command-line interface of `vouch-agent` (clap definitions only).

use crate::tpm::{PcrSelection, Tcti};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Vouch agent: prove what this machine booted, keep its secrets bound to that proof.
#[derive(Parser, Debug)]
#[command(name = "vouch-agent", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Debug)]
pub struct Global {
    /// TPM to use: device:/dev/tpmrm0, swtpm:host=H,port=P, swtpm:path=SOCK, tabrmd:
    #[arg(long, global = true, env = "VOUCH_TCTI", default_value = crate::tpm::tcti::DEFAULT_TCTI)]
    pub tcti: Tcti,
    /// Where the agent keeps its keys' blobs and state.
    #[arg(
        long,
        global = true,
        env = "VOUCH_STATE_DIR",
        default_value = "/var/lib/vouch"
    )]
    pub state_dir: PathBuf,
    /// Log output: auto (journald under systemd, else text), text, json or journald.
    #[arg(
        long,
        global = true,
        env = "VOUCH_LOG_FORMAT",
        value_enum,
        default_value = "auto"
    )]
    pub log_format: crate::logging::LogFormat,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// TPM identity and properties.
    #[command(subcommand)]
    Tpm(TpmCmd),
    /// PCR operations.
    #[command(subcommand)]
    Pcr(PcrCmd),
    /// Quote PCRs with the attestation key, in files tpm2_checkquote reads.
    Quote(QuoteArgs),
    /// Seal a secret (1-128 bytes) to PCR values or to fleet-approved PCR policies.
    Seal(crate::cmd::seal::SealArgs),
    /// Unseal a secret sealed with `seal`; writes it to --out or stdout.
    Unseal(crate::cmd::seal::UnsealArgs),
    /// TPM-sealed LUKS2 volumes: create, unlock (dm-crypt), status, lock, reseal.
    #[command(subcommand)]
    Volume(crate::cmd::volume::VolumeCmd),
    /// Run the agent: enroll if needed, then answer the fleet's challenges over MQTT.
    Run {
        /// Configuration file.
        #[arg(long, default_value = "/etc/vouch/agent.toml")]
        config: PathBuf,
        /// Allow running as root (the packaged unit runs as user vouch).
        #[arg(long)]
        allow_root: bool,
    },
}

impl Command {
    /// Default log level: the daemon tells what it does, one-shot commands only warn.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Run { .. } => "info",
            _ => "warn",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum TpmCmd {
    /// Manufacturer, firmware, EK algorithm, device id, EK certificates.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum PcrCmd {
    /// Read PCR values.
    Read {
        /// Banks and PCRs, e.g. sha256:0-23+sha1:0-7.
        #[arg(long, default_value = "sha256:0-23")]
        pcrs: PcrSelection,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct QuoteArgs {
    /// Qualifying data (the verifier's nonce) in hex, at most 64 bytes.
    #[arg(long, value_parser = parse_nonce)]
    pub nonce: Nonce,
    /// Banks and PCRs to quote.
    #[arg(long, default_value = "sha256:0,1,2,3,4,5,6,7")]
    pub pcrs: PcrSelection,
    /// Directory for quote.msg, quote.sig, quote.pcrs and ak.pub.pem (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

/// A verifier's nonce (qualifying data), at most 64 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nonce(pub Vec<u8>);

fn parse_nonce(s: &str) -> Result<Nonce, String> {
    let bytes = hex::decode(s).map_err(|e| format!("nonce is not hex: {e}"))?;
    if bytes.len() > 64 {
        return Err(format!(
            "nonce is {} bytes, at most 64 allowed",
            bytes.len()
        ));
    }
    Ok(Nonce(bytes))
}
