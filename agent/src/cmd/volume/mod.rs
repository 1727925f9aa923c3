//! `vouch-agent volume ...`: LUKS2 volumes whose keyslot-0 secret is sealed to the TPM.
//!
//! - `create` formats a device or image file natively (keyslot 0: a random 64-byte secret
//!   sealed to PCRs or fleet-approved policies; keyslot 1: a random recovery passphrase that is
//!   only ever stored encrypted to the fleet's escrow key) and writes the `vouch-tpm2` and
//!   `vouch-escrow` tokens ([`crate::volume::tpm_token`]); see [`create`].
//! - `unlock` unseals, opens keyslot 0 and maps the volume with device-mapper; `status` shows
//!   the header and tokens; `lock` removes the mapping ([`unlock`]).
//! - `adopt` takes over a volume enrolled by systemd-cryptenroll (its `systemd-tpm2` token),
//!   and `create --systemd-tpm2` / `enroll-systemd` add such a token to a Vouch volume
//!   ([`adopt`]).
//! - `reseal` re-seals keyslot 0 to the current boot state with the recovery passphrase
//!   released by the fleet ([`reseal`]).
//!
//! Secrets live in `Zeroizing` buffers and are never logged or written in clear.

pub(super) mod adopt;
mod common;
pub(super) mod create;
pub(super) mod reseal;
pub(super) mod unlock;

pub use crate::cli::{
    AdoptArgs, CreateArgs, EnrollSystemdArgs, ResealArgs, SealTarget, StatusArgs, UnlockArgs,
    VolumeCmd,
};

use crate::seal::SealError;
use crate::tpm::TpmError;
use crate::volume::device::DeviceError;
use crate::volume::dm::DmError;
use crate::volume::luks2::inplace::InplaceError;
use crate::volume::luks2::{FormatError, Luks2Error};
use crate::volume::tpm_token::TokenError;
use std::path::PathBuf;
use vouch_attest::escrow::EscrowError;

/// Errors of the volume commands.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Opening or creating the device failed.
    #[error("opening {path} failed")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The image file does not exist and no --size was given.
    #[error("{0} does not exist: give --size to create an image file")]
    SizeRequired(PathBuf),
    /// Device access failed.
    #[error("accessing {path} failed")]
    Device {
        path: PathBuf,
        #[source]
        source: DeviceError,
    },
    /// The LUKS2 header could not be read.
    #[error("reading the LUKS2 header of {path} failed")]
    Header {
        path: PathBuf,
        #[source]
        source: Box<Luks2Error>,
    },
    /// Formatting failed.
    #[error("formatting {path} failed")]
    Format {
        path: PathBuf,
        #[source]
        source: Box<FormatError>,
    },
    /// In-place encryption failed.
    #[error("encrypting {path} in place failed")]
    Inplace {
        path: PathBuf,
        #[source]
        source: Box<InplaceError>,
    },
    /// A Vouch token is missing or malformed, or could not be written.
    #[error("the Vouch tokens of {path}")]
    Token {
        path: PathBuf,
        #[source]
        source: Box<TokenError>,
    },
    /// Adding a token failed.
    #[error("adding a token to {path} failed")]
    AddToken {
        path: PathBuf,
        #[source]
        source: Box<Luks2Error>,
    },
    /// The escrow key or record is unusable.
    #[error("escrow {path}")]
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
    /// The unsealed secret does not open its keyslot.
    #[error("{path}: the unsealed secret does not open its keyslot")]
    SecretRejected {
        path: PathBuf,
        #[source]
        source: Box<Luks2Error>,
    },
    /// The recovery passphrase does not open its keyslot.
    #[error("{path}: the recovery passphrase does not open its keyslot")]
    RecoveryRejected {
        path: PathBuf,
        #[source]
        source: Box<Luks2Error>,
    },
    /// Device-mapper failed (or is missing).
    #[error("mapping volume {name} failed")]
    Dm {
        name: String,
        #[source]
        source: Box<DmError>,
    },
    /// The volumes configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::volume::config::VolumesConfigError),
    /// Some volumes of `unlock --all` failed.
    #[error("{failed} of {total} volumes failed to unlock ({names}); the first")]
    Several {
        failed: usize,
        total: usize,
        names: String,
        #[source]
        first: Box<VolumeError>,
    },
    /// The random source failed.
    #[error("the random source failed")]
    Random(#[source] rand_core::Error),
    /// Writing an output file failed.
    #[error("writing {path} failed")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The fleet policy key is unusable.
    #[error("fleet policy key {path}: {detail}")]
    PolicyKey { path: PathBuf, detail: String },
    /// Output could not be serialized.
    #[error("encoding JSON output failed")]
    Json(#[from] serde_json::Error),
    /// A recovery file (escrow record copy, fleet-released passphrase) failed.
    #[error(transparent)]
    RecoveryFile(#[from] crate::volume::recovery::RecoveryFileError),
    /// No passphrase was given and the fleet released none for this volume.
    #[error("no --recovery-file given and the fleet has released no passphrase for volume {uuid} ({path} is missing): ask the fleet operator for `vouch-fleet escrow release DEVICE {uuid}` while `vouch-agent run` is connected")]
    NoReleasedPassphrase { uuid: String, path: PathBuf },
    /// The volume has no usable `systemd-tpm2` token.
    #[error("{path} has no systemd-tpm2 token (enrolled with systemd-cryptenroll --tpm2-device?)")]
    NoSystemdToken { path: PathBuf },
    /// The volume has several `systemd-tpm2` tokens and none was chosen.
    #[error("{path} has systemd-tpm2 tokens {ids:?}: choose one with --systemd-token")]
    SeveralSystemdTokens { path: PathBuf, ids: Vec<u32> },
    /// A `systemd-tpm2` token is malformed.
    #[error("{path}: token {id}")]
    SystemdToken {
        path: PathBuf,
        id: u32,
        #[source]
        source: crate::volume::systemd_token::SystemdTokenError,
    },
    /// The `systemd-tpm2` token needs something adopt does not do.
    #[error(
        "{path}: systemd-tpm2 token {id} {what}; adopt unlocks PCR-bound tokens without a PIN only"
    )]
    SystemdUnsupported {
        path: PathBuf,
        id: u32,
        what: &'static str,
    },
    /// A systemd-tpm2 token binds PCRs of exactly one bank.
    #[error("PCRs {selection}: a systemd-tpm2 token binds PCRs of exactly one bank")]
    SystemdSelection { selection: String },
    /// The volume already carries a Vouch token.
    #[error("{path} already has a {kind} token (already adopted or created by Vouch)")]
    AlreadyVouch { path: PathBuf, kind: &'static str },
    /// Adding a keyslot failed.
    #[error("adding a keyslot to {path} failed")]
    AddKeyslot {
        path: PathBuf,
        #[source]
        source: Box<crate::volume::luks2::add::AddKeyslotError>,
    },
    /// The fleet-released passphrase is no longer for this boot.
    #[error("the passphrase the fleet released for volume {uuid} was sealed to another boot state ({path})")]
    ReleasedForOtherBoot {
        uuid: String,
        path: PathBuf,
        #[source]
        source: Box<TpmError>,
    },
}
