//! `vouch-agent volume reseal`: after a recovery (the boot state changed and the fleet released
//! the escrowed passphrase), open keyslot 1 with the passphrase, put a new random secret into
//! keyslot 0 sealed to the current PCRs (or fleet-approved policies), and replace the
//! `vouch-tpm2` token.
//!
//! The passphrase comes from `--recovery-file` (read into a `Zeroizing` buffer; a trailing
//! newline is ignored), or else from the file the agent daemon sealed to this TPM when the fleet
//! released it (`crate::volume::recovery`); that file is deleted once keyslot 0 is re-sealed.

use super::common::{open_device, read_header, seal_policy};
use super::create::SECRET_LEN;
use super::{ResealArgs, VolumeError};
use crate::seal::store::read_bounded;
use crate::seal::{Binding, SealPolicy};
use crate::tpm::worker::TpmClient;
use crate::tpm::TpmError;
use crate::volume::luks2::format::RECOVERY_KEYSLOT;
use crate::volume::recovery;
use crate::volume::tpm_token::replace_secret_keyslot;
use rand_core::{OsRng, RngCore};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Largest recovery passphrase file read.
const MAX_PASSPHRASE: u64 = 1024;

/// `vouch-agent volume reseal`.
pub fn run(tpm: &TpmClient, state_dir: &Path, args: &ResealArgs) -> Result<(), VolumeError> {
    let policy = seal_policy(&args.seal)?;
    reseal(
        tpm,
        state_dir,
        &args.device,
        args.recovery_file.as_deref(),
        policy,
    )
}

/// True when the fleet released a passphrase for volume `uuid` that waits in `state_dir`.
pub fn released_waiting(state_dir: &Path, uuid: &str) -> bool {
    recovery::sealed_path(state_dir, uuid).is_ok_and(|p| p.exists())
}

/// The policy a volume's keyslot-0 secret was sealed with, to seal the new secret the same way
/// (PolicyPCR over the same PCRs with their current values, or the same fleet key).
pub fn same_policy(sealed: &crate::seal::SealedObject) -> SealPolicy {
    match &sealed.binding {
        Binding::Pcr { selection, .. } => SealPolicy::Pcr {
            selection: selection.clone(),
            values: None,
        },
        Binding::Authorized { key, policy_ref } => SealPolicy::Authorized {
            key: key.clone(),
            policy_ref: policy_ref.clone(),
        },
    }
}

/// Opens keyslot 1 with the recovery passphrase (`recovery_file`, or else the one the fleet
/// released to this device), seals a new keyslot-0 secret with `policy` and replaces the
/// `vouch-tpm2` token; a released passphrase file is deleted afterwards.
pub fn reseal(
    tpm: &TpmClient,
    state_dir: &Path,
    device: &Path,
    recovery_file: Option<&Path>,
    policy: SealPolicy,
) -> Result<(), VolumeError> {
    let mut dev = open_device(device, true)?;
    let mut volume = read_header(device, &mut dev)?;
    let (pass, released) = match recovery_file {
        Some(file) => {
            let mut pass = Zeroizing::new(read_bounded(file, MAX_PASSPHRASE)?);
            while pass.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
                pass.pop();
            }
            (pass, None)
        }
        None => {
            let (pass, path) = released_passphrase(tpm, state_dir, volume.uuid())?;
            (pass, Some(path))
        }
    };
    let slot =
        crate::volume::tpm_token::token_keyslot(&volume, crate::volume::tpm_token::ESCROW_TOKEN)
            .unwrap_or(RECOVERY_KEYSLOT);
    let unlocked = volume.open(&mut dev, &pass, Some(slot)).map_err(|source| {
        VolumeError::RecoveryRejected {
            path: device.to_path_buf(),
            source: Box::new(source),
        }
    })?;
    let mut secret = Zeroizing::new(vec![0u8; SECRET_LEN]);
    OsRng
        .try_fill_bytes(&mut secret)
        .map_err(VolumeError::Random)?;
    let s = secret.clone();
    let sealed = tpm.call(move |t| t.seal(&s, &policy))?;
    replace_secret_keyslot(
        &mut volume,
        &mut dev,
        &unlocked.volume_key,
        &secret,
        &sealed,
    )
    .map_err(|source| VolumeError::Token {
        path: device.to_path_buf(),
        source: Box::new(source),
    })?;
    if let Some(path) = released {
        // Keyslot 0 opens again: the released passphrase is not needed any more.
        if let Err(e) = std::fs::remove_file(&path) {
            eprintln!("warning: cannot remove {}: {e}", path.display());
        }
    }
    let sealed_slot =
        crate::volume::tpm_token::token_keyslot(&volume, crate::volume::tpm_token::TPM_TOKEN)
            .unwrap_or(crate::volume::luks2::format::SECRET_KEYSLOT);
    eprintln!(
        "{}: keyslot {sealed_slot} re-sealed to the current boot state",
        device.display()
    );
    Ok(())
}

/// The passphrase the agent daemon sealed for `uuid` when the fleet released it, and its file.
fn released_passphrase(
    tpm: &TpmClient,
    state_dir: &Path,
    uuid: &str,
) -> Result<(Zeroizing<Vec<u8>>, PathBuf), VolumeError> {
    let path = recovery::sealed_path(state_dir, uuid)?;
    if !path.exists() {
        return Err(VolumeError::NoReleasedPassphrase {
            uuid: uuid.to_owned(),
            path,
        });
    }
    let data = read_bounded(&path, 64 * 1024)?;
    let sealed = crate::seal::blob::decode(&data).map_err(|source| {
        VolumeError::Seal(crate::seal::SealError::Blob {
            path: path.clone(),
            source,
        })
    })?;
    match tpm.call(move |t| t.unseal(&sealed, None)) {
        Ok(pass) => Ok((pass, path)),
        Err(source @ TpmError::Policy(crate::seal::PolicyError::BootStateChanged { .. })) => {
            Err(VolumeError::ReleasedForOtherBoot {
                uuid: uuid.to_owned(),
                path,
                source: Box::new(source),
            })
        }
        Err(e) => Err(e.into()),
    }
}
