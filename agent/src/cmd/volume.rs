//! `vouch-agent volume ...`: LUKS2 volumes whose keyslot-0 secret is sealed to the TPM.
//!
//! - `create` formats a device or image file natively (keyslot 0: a random 64-byte secret
//!   sealed to PCRs or fleet-approved policies; keyslot 1: a random recovery passphrase that is
//!   only ever stored encrypted to the fleet's escrow key) and writes the `vouch-tpm2` and
//!   `vouch-escrow` tokens ([`crate::volume::tpm_token`]); see [`super::volume_create`].
//! - `unlock` unseals, opens keyslot 0 and maps the volume with device-mapper; `status` shows
//!   the header and tokens; `lock` removes the mapping ([`super::volume_unlock`]).
//! - `reseal` re-seals keyslot 0 to the current boot state with the recovery passphrase
//!   released by the fleet ([`super::volume_reseal`]).
//!
//! Secrets live in `Zeroizing` buffers and are never logged or written in clear.

use crate::seal::SealError;
use crate::tpm::TpmError;
use crate::volume::device::DeviceError;
use crate::volume::dm::DmError;
use crate::volume::luks2::inplace::InplaceError;
use crate::volume::luks2::{FormatError, Luks2Error};
use crate::volume::tpm_token::TokenError;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use vouch_attest::escrow::EscrowError;
use vouch_attest::policy_digest::parse_selection;
use vouch_attest::tpm::PcrSelection;

fn selection(text: &str) -> Result<PcrSelection, String> {
    parse_selection(text).map_err(|e| e.to_string())
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
}

/// What the secret is sealed to.
#[derive(Args, Debug, Clone)]
pub struct SealTarget {
    /// PCRs to bind with PolicyPCR (current values), e.g. sha256:7.
    #[arg(long, value_parser = selection, default_value = "sha256:7", conflicts_with = "authorized")]
    pub pcrs: PcrSelection,
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

/// Errors of the volume commands.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Opening or creating the device failed.
    #[error("opening {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The image file does not exist and no --size was given.
    #[error("{0} does not exist: give --size to create an image file")]
    SizeRequired(PathBuf),
    /// Device access failed.
    #[error("{path}: {source}")]
    Device {
        path: PathBuf,
        #[source]
        source: DeviceError,
    },
    /// The LUKS2 header could not be read.
    #[error("{path}: {source}")]
    Header {
        path: PathBuf,
        #[source]
        source: Box<Luks2Error>,
    },
    /// Formatting failed.
    #[error("formatting {path}: {source}")]
    Format {
        path: PathBuf,
        #[source]
        source: Box<FormatError>,
    },
    /// In-place encryption failed.
    #[error("encrypting {path} in place: {source}")]
    Inplace {
        path: PathBuf,
        #[source]
        source: Box<InplaceError>,
    },
    /// A Vouch token is missing or malformed, or could not be written.
    #[error("{path}: {source}")]
    Token {
        path: PathBuf,
        #[source]
        source: Box<TokenError>,
    },
    /// Adding a token failed.
    #[error("{path}: adding token: {source}")]
    AddToken {
        path: PathBuf,
        #[source]
        source: Box<Luks2Error>,
    },
    /// The escrow key or record is unusable.
    #[error("escrow {path}: {source}")]
    Escrow {
        path: PathBuf,
        #[source]
        source: EscrowError,
    },
    /// Reading files or signed policies failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Sealing or unsealing with the TPM failed.
    #[error(transparent)]
    Tpm(#[from] TpmError),
    /// The device identity could not be read.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The unsealed secret does not open keyslot 0.
    #[error("{path}: the unsealed secret does not open keyslot 0: {source}")]
    SecretRejected {
        path: PathBuf,
        #[source]
        source: Box<Luks2Error>,
    },
    /// The recovery passphrase does not open keyslot 1.
    #[error("{path}: the recovery passphrase does not open keyslot 1: {source}")]
    RecoveryRejected {
        path: PathBuf,
        #[source]
        source: Box<Luks2Error>,
    },
    /// Device-mapper failed (or is missing).
    #[error("{name}: {source}")]
    Dm {
        name: String,
        #[source]
        source: Box<DmError>,
    },
    /// The volumes configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::volume::config::VolumesConfigError),
    /// Some volumes of `unlock --all` failed.
    #[error("{failed} of {total} volumes failed to unlock ({names}); first: {first}")]
    Several {
        failed: usize,
        total: usize,
        names: String,
        first: Box<VolumeError>,
    },
    /// The random source failed.
    #[error("random source failed: {0}")]
    Random(#[source] rand_core::Error),
    /// Writing an output file failed.
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The fleet policy key is unusable.
    #[error("fleet policy key {path}: {detail}")]
    PolicyKey { path: PathBuf, detail: String },
    /// Output could not be serialized.
    #[error("encoding JSON output: {0}")]
    Json(#[from] serde_json::Error),
    /// A recovery file (escrow record copy, fleet-released passphrase) failed.
    #[error(transparent)]
    RecoveryFile(#[from] crate::volume::recovery::RecoveryFileError),
    /// No passphrase was given and the fleet released none for this volume.
    #[error("no --recovery-file given and the fleet has released no passphrase for volume {uuid} ({path} is missing): ask the fleet operator for `vouch-fleet escrow release DEVICE {uuid}` while `vouch-agent run` is connected")]
    NoReleasedPassphrase { uuid: String, path: PathBuf },
    /// The fleet-released passphrase is no longer for this boot.
    #[error("the passphrase the fleet released for volume {uuid} was sealed to another boot state ({path}): {source}")]
    ReleasedForOtherBoot {
        uuid: String,
        path: PathBuf,
        #[source]
        source: Box<TpmError>,
    },
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
