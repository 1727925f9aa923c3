//! Command-line interface of `vouch-agent`: every clap definition and value parser, and nothing
//! else (the commands are in [`crate::cmd`]).

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
    pub log_format: vouch_host::LogFormat,
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
    Seal(SealArgs),
    /// Unseal a secret sealed with `seal`; writes it to --out or stdout.
    Unseal(UnsealArgs),
    /// TPM-sealed LUKS2 volumes: create, unlock (dm-crypt), status, lock, reseal.
    #[command(subcommand)]
    Volume(VolumeCmd),
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

/// Arguments of `vouch-agent seal`.
#[derive(Args, Debug)]
pub struct SealArgs {
    /// The secret to seal (1 to 128 bytes; `-` reads standard input).
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// Where to write the sealed blob.
    #[arg(long, value_name = "BLOB")]
    pub out: PathBuf,
    /// PCRs to bind with PolicyPCR, e.g. sha256:7 or sha256:0,7+sha1:7.
    #[arg(long, default_value = "sha256:7", conflicts_with = "authorized")]
    pub pcrs: vouch_attest::tpm::PcrSelection,
    /// Bind these PCR values instead of the current ones (JSON {"sha256": {"7": "<hex>"}} or a
    /// tpm2-tools PCR file).
    #[arg(long, value_name = "FILE", conflicts_with = "authorized")]
    pub pcr_values: Option<PathBuf>,
    /// Seal to PCR policies the fleet approves (PolicyAuthorize) instead of fixed values.
    #[arg(long, requires = "policy_key")]
    pub authorized: bool,
    /// The fleet's policy signing key: ECC P-256 public key PEM (`vouch-fleet seal-policy keygen`).
    #[arg(long, value_name = "PEM")]
    pub policy_key: Option<PathBuf>,
    /// policyRef the fleet's approvals must name (at most 64 bytes).
    #[arg(long, default_value = "vouch-seal")]
    pub policy_ref: String,
}

/// Arguments of `vouch-agent unseal`.
#[derive(Args, Debug)]
pub struct UnsealArgs {
    /// The sealed blob.
    #[arg(long = "in", value_name = "BLOB")]
    pub input: PathBuf,
    /// A signed policy from the fleet (`vouch-fleet seal-policy sign`); stored if newer.
    #[arg(long, value_name = "FILE")]
    pub signed_policy: Option<PathBuf>,
    /// Write the secret to this file (mode 0600) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `vouch-agent volume` subcommands.
#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a TPM-sealed LUKS2 volume (or encrypt existing data in place).
    Create(CreateArgs),
    /// Unseal the volume's secret, open keyslot 0 and map it with device-mapper.
    Unlock(UnlockArgs),
    /// Remove a device-mapper mapping made by `unlock`.
    Lock {
        /// Name under /dev/mapper.
        #[arg(long)]
        name: String,
    },
    /// Header health, keyslots, tokens, and (with --check-unseal) whether the secret unseals.
    Status(StatusArgs),
    /// Re-seal keyslot 0 to the current boot state, using the recovery passphrase.
    Reseal(ResealArgs),
    /// Take over a volume enrolled by `systemd-cryptenroll --tpm2-device=`: unlock it through
    /// systemd's token, escrow a recovery keyslot and add Vouch's sealed keyslot; systemd's
    /// token and keyslot stay as they are.
    Adopt(AdoptArgs),
    /// Add a `systemd-tpm2` token and keyslot to a Vouch volume (unlocked with Vouch's sealed
    /// secret), so that systemd-cryptsetup and cryptsetup's systemd plugin can unlock it too.
    EnrollSystemd(EnrollSystemdArgs),
}

/// Arguments of `volume adopt`.
#[derive(Args, Debug)]
pub struct AdoptArgs {
    /// The LUKS2 device (or image file) with a `systemd-tpm2` token.
    #[arg(long)]
    pub device: PathBuf,
    /// Which `systemd-tpm2` token to unlock with, when there are several.
    #[arg(long, value_name = "ID")]
    pub systemd_token: Option<u32>,
    #[command(flatten)]
    pub seal: SealTarget,
    /// The fleet's escrow public key PEM (`vouch-fleet escrow keygen`).
    #[arg(long, value_name = "PEM")]
    pub escrow_key: PathBuf,
    /// Also write the escrow record (ciphertext only) to this file.
    #[arg(long, value_name = "FILE")]
    pub escrow_out: Option<PathBuf>,
    /// Argon2id memory of the recovery keyslot, KiB.
    #[arg(long, default_value_t = 1 << 20)]
    pub recovery_kdf_memory: u32,
    /// Argon2id passes of the recovery keyslot.
    #[arg(long, default_value_t = 4)]
    pub recovery_kdf_time: u32,
}

/// Arguments of `volume enroll-systemd`.
#[derive(Args, Debug)]
pub struct EnrollSystemdArgs {
    /// The Vouch LUKS2 device (or image file).
    #[arg(long)]
    pub device: PathBuf,
    /// PCRs of the systemd-tpm2 token's policy (one bank), as systemd-cryptenroll's
    /// `--tpm2-pcrs` with the bank named, e.g. sha256:7.
    #[arg(long, value_name = "BANK:PCRS", default_value = "sha256:7")]
    pub systemd_pcrs: vouch_attest::tpm::PcrSelection,
    /// Signed policy for fleet-authorized seals.
    #[arg(long, value_name = "FILE")]
    pub signed_policy: Option<PathBuf>,
}

/// What the secret is sealed to.
#[derive(Args, Debug, Clone)]
pub struct SealTarget {
    /// PCRs to bind with PolicyPCR (current values), e.g. sha256:7.
    #[arg(long, default_value = "sha256:7", conflicts_with = "authorized")]
    pub pcrs: vouch_attest::tpm::PcrSelection,
    /// Seal to PCR policies the fleet approves (PolicyAuthorize) instead.
    #[arg(long, requires = "policy_key")]
    pub authorized: bool,
    /// The fleet's policy signing public key PEM (`vouch-fleet seal-policy keygen`).
    #[arg(long, value_name = "PEM")]
    pub policy_key: Option<PathBuf>,
    /// policyRef the fleet's approvals must name.
    #[arg(long, default_value = "vouch-seal")]
    pub policy_ref: String,
}

/// Arguments of `volume create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Block device or image file; an image file is created when missing (needs --size).
    #[arg(long)]
    pub device: PathBuf,
    /// Size of the image file to create: bytes, or with a K, M or G suffix (powers of 1024).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,
    #[command(flatten)]
    pub seal: SealTarget,
    /// The fleet's escrow public key PEM (`vouch-fleet escrow keygen`).
    #[arg(long, value_name = "PEM")]
    pub escrow_key: PathBuf,
    /// Also write the escrow record (ciphertext only) to this file.
    #[arg(long, value_name = "FILE")]
    pub escrow_out: Option<PathBuf>,
    /// LUKS2 label.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Encrypt the data already on the device in place (its last 16 MiB must be free: shrink
    /// the filesystem first). Crash-safe; rerun the same command to resume.
    #[arg(long, requires = "journal")]
    pub encrypt_existing: bool,
    /// Progress journal of --encrypt-existing, on another filesystem than the device.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Argon2id memory of the recovery keyslot, KiB.
    #[arg(long, default_value_t = 1 << 20)]
    pub recovery_kdf_memory: u32,
    /// Argon2id passes of the recovery keyslot.
    #[arg(long, default_value_t = 4)]
    pub recovery_kdf_time: u32,
    /// Also add a `systemd-tpm2` token and keyslot sealed the way systemd-cryptenroll seals,
    /// to these PCRs (one bank, e.g. sha256:7), for systemd-cryptsetup to unlock.
    #[arg(long, value_name = "BANK:PCRS", conflicts_with = "encrypt_existing")]
    pub systemd_tpm2: Option<vouch_attest::tpm::PcrSelection>,
}

/// Arguments of `volume unlock`.
#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["device", "all"]))]
pub struct UnlockArgs {
    /// The LUKS2 device.
    #[arg(long, requires = "name")]
    pub device: Option<PathBuf>,
    /// Name under /dev/mapper.
    #[arg(long)]
    pub name: Option<String>,
    /// Signed policy for fleet-authorized seals (stored if newer).
    #[arg(long, value_name = "FILE")]
    pub signed_policy: Option<PathBuf>,
    /// Unlock every volume of the configuration file.
    #[arg(long, conflicts_with_all = ["device", "signed_policy"])]
    pub all: bool,
    /// Configuration of --all.
    #[arg(long, default_value = "/etc/vouch/volumes.toml")]
    pub config: PathBuf,
    /// Unseal and open the keyslot, but do not map the volume.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `volume status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The LUKS2 device.
    #[arg(long)]
    pub device: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Check that the sealed secret still unseals and opens keyslot 0.
    #[arg(long)]
    pub check_unseal: bool,
    /// Signed policy for fleet-authorized seals.
    #[arg(long, value_name = "FILE")]
    pub signed_policy: Option<PathBuf>,
}

/// Arguments of `volume reseal`.
#[derive(Args, Debug)]
pub struct ResealArgs {
    /// The LUKS2 device.
    #[arg(long)]
    pub device: PathBuf,
    /// File holding the recovery passphrase (`vouch-fleet escrow release --blob`); without
    /// it, the passphrase the fleet released to this device's agent is used.
    #[arg(long, value_name = "FILE")]
    pub recovery_file: Option<PathBuf>,
    #[command(flatten)]
    pub seal: SealTarget,
}

/// Parses `33554432`, `32M`, `512K`, `1G` (binary units).
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_uppercase()),
        _ => (s, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return Err(format!("unknown size unit in {s:?} (use K, M or G)")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 33554432 or 32M)"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes_with_and_without_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("32M"), Ok(32 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }
}
