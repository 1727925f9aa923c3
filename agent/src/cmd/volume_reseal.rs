//! `vouch-agent volume reseal`: after a recovery (the boot state changed and the fleet released
//! the escrowed passphrase), open keyslot 1 with the passphrase, put a new random secret into
//! keyslot 0 sealed to the current PCRs (or fleet-approved policies), and replace the
//! `vouch-tpm2` token. The passphrase file is read into a `Zeroizing` buffer; a trailing
//! newline is ignored.

use super::volume::{ResealArgs, VolumeError};
use super::volume_common::{open_device, read_header, seal_policy};
use super::volume_create::SECRET_LEN;
use crate::seal::store::read_bounded;
use crate::tpm::worker::TpmClient;
use crate::volume::luks2::format::RECOVERY_KEYSLOT;
use crate::volume::tpm_token::replace_secret_keyslot;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

/// Largest recovery passphrase file read.
const MAX_PASSPHRASE: u64 = 1024;

/// `vouch-agent volume reseal`.
pub fn run(tpm: &TpmClient, args: &ResealArgs) -> Result<(), VolumeError> {
    let mut pass = Zeroizing::new(read_bounded(&args.recovery_file, MAX_PASSPHRASE)?);
    while pass.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
        pass.pop();
    }
    let policy = seal_policy(&args.seal)?;
    let mut dev = open_device(&args.device, true)?;
    let mut volume = read_header(&args.device, &mut dev)?;
    let unlocked = volume
        .open(&mut dev, &pass, Some(RECOVERY_KEYSLOT))
        .map_err(|source| VolumeError::RecoveryRejected {
            path: args.device.clone(),
            source: Box::new(source),
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
        path: args.device.clone(),
        source: Box::new(source),
    })?;
    eprintln!(
        "{}: keyslot 0 re-sealed to the current boot state",
        args.device.display()
    );
    Ok(())
}
