//! Interop with systemd-cryptenroll's `systemd-tpm2` token ([`crate::volume::systemd_token`]).
//!
//! - `volume adopt` takes a volume enrolled by `systemd-cryptenroll --tpm2-device=`: it
//!   unseals systemd's secret with the TPM (systemd's primary template and PCR policy), opens
//!   systemd's keyslot with it (the base64 of the secret is the passphrase), then adds two
//!   keyslots and their tokens in one header write: a random 64-byte secret sealed by Vouch
//!   (`vouch-tpm2`, PBKDF2 as in `volume create`) and a recovery passphrase escrowed to the
//!   fleet (`vouch-escrow`, Argon2id). systemd's token and keyslot are not touched: the token
//!   is kept field for field, in its order.
//! - `volume create --systemd-tpm2 SEL` and `volume enroll-systemd` add a keyslot opened by a
//!   32-byte secret sealed the way systemd seals it, and a `systemd-tpm2` token as systemd 252
//!   writes it, so systemd-cryptsetup (crypttab `tpm2-device=auto`) and cryptsetup's systemd
//!   token plugin unlock the volume.

use super::common::{open_device, read_header, seal_policy, unseal_and_open, write_private};
use super::create::{escrow_key, recovery_passphrase, seal_escrow, SECRET_LEN};
use super::{AdoptArgs, EnrollSystemdArgs, VolumeError};
use crate::tpm::worker::TpmClient;
use crate::volume::luks2::add::{add_keyslot, AddKeyslotError};
use crate::volume::luks2::hash::LuksHash;
use crate::volume::luks2::kdf::{Argon2Variant, Kdf};
use crate::volume::luks2::Luks2Volume;
use crate::volume::systemd_token::{self, SystemdToken, SYSTEMD_KDF, SYSTEMD_SECRET_LEN};
use crate::volume::tpm_token::{escrow_token, tpm_token, ESCROW_TOKEN, TPM_TOKEN};
use rand_core::{OsRng, RngCore};
use std::fs::File;
use std::path::Path;
use vouch_attest::tpm::PcrSelection;
use zeroize::Zeroizing;

/// PBKDF2 iterations of Vouch's sealed-secret keyslot (as `volume create`).
const SECRET_ITERATIONS: u32 = 1000;

fn add_err(path: &Path) -> impl Fn(AddKeyslotError) -> VolumeError + '_ {
    move |source| VolumeError::AddKeyslot {
        path: path.to_path_buf(),
        source: Box::new(source),
    }
}

/// The `systemd-tpm2` token to unlock with: the one given, or the only one.
fn systemd_token_of(
    volume: &Luks2Volume,
    path: &Path,
    chosen: Option<u32>,
) -> Result<(u32, SystemdToken), VolumeError> {
    let ids: Vec<u32> = volume
        .tokens()
        .into_iter()
        .filter(|(_, t)| t.kind == systemd_token::SYSTEMD_TOKEN)
        .map(|(id, _)| id)
        .collect();
    let id = match (chosen, ids.as_slice()) {
        (Some(id), _) if ids.contains(&id) => id,
        (None, [id]) => *id,
        (_, []) | (Some(_), _) => {
            return Err(VolumeError::NoSystemdToken {
                path: path.to_path_buf(),
            })
        }
        (None, _) => {
            return Err(VolumeError::SeveralSystemdTokens {
                path: path.to_path_buf(),
                ids,
            })
        }
    };
    let token = volume
        .tokens()
        .into_iter()
        .find(|(i, _)| *i == id)
        .map(|(_, t)| t)
        .ok_or_else(|| VolumeError::NoSystemdToken {
            path: path.to_path_buf(),
        })?;
    let parsed = systemd_token::parse(&token).map_err(|source| VolumeError::SystemdToken {
        path: path.to_path_buf(),
        id,
        source,
    })?;
    let unsupported = |what| VolumeError::SystemdUnsupported {
        path: path.to_path_buf(),
        id,
        what,
    };
    if parsed.pin {
        return Err(unsupported("needs a PIN (tpm2-pin)"));
    }
    if parsed.pubkey.is_some() || !parsed.pubkey_pcrs.is_empty() {
        return Err(unsupported("uses a signed PCR policy (tpm2_pubkey)"));
    }
    Ok((id, parsed))
}

/// `vouch-agent volume adopt`.
pub fn run(tpm: &TpmClient, state_dir: &Path, args: &AdoptArgs) -> Result<(), VolumeError> {
    let path = args.device.as_path();
    let public = escrow_key(&args.escrow_key)?;
    let policy = seal_policy(&args.seal)?;
    let mut dev = open_device(path, true)?;
    let mut volume = read_header(path, &mut dev)?;
    for kind in [TPM_TOKEN, ESCROW_TOKEN] {
        if volume.tokens().iter().any(|(_, t)| t.kind == kind) {
            return Err(VolumeError::AlreadyVouch {
                path: path.to_path_buf(),
                kind,
            });
        }
    }
    let (token_id, token) = systemd_token_of(&volume, path, args.systemd_token)?;

    // Unlock through systemd's token.
    let seal = token.seal.clone();
    let secret = tpm.call(move |t| t.unseal_systemd(&seal))?;
    let unlocked = volume
        .open(
            &mut dev,
            &systemd_token::passphrase(&secret),
            Some(token.keyslot),
        )
        .map_err(|source| VolumeError::SecretRejected {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;

    // Vouch's sealed secret and the escrowed recovery passphrase.
    let device_id = tpm
        .call(|t| Ok(crate::identity::device_identity(t)))??
        .device_id;
    let mut vouch_secret = Zeroizing::new(vec![0u8; SECRET_LEN]);
    OsRng
        .try_fill_bytes(&mut vouch_secret)
        .map_err(VolumeError::Random)?;
    let s = vouch_secret.clone();
    let sealed = tpm.call(move |t| t.seal(&s, &policy))?;
    let recovery = recovery_passphrase(&mut OsRng)?;
    let record = seal_escrow(
        &public,
        &recovery,
        volume.uuid(),
        &device_id,
        &args.escrow_key,
    )?;

    let hdr_size = volume.header.hdr_size;
    let mut md = volume.metadata.clone();
    let secret_slot = add_keyslot(
        &mut md,
        &mut dev,
        hdr_size,
        &unlocked.volume_key,
        &vouch_secret,
        Kdf::Pbkdf2 {
            hash: LuksHash::Sha256,
            iterations: SECRET_ITERATIONS,
        },
    )
    .map_err(add_err(path))?;
    let recovery_slot = add_keyslot(
        &mut md,
        &mut dev,
        hdr_size,
        &unlocked.volume_key,
        &recovery,
        Kdf::Argon2 {
            variant: Argon2Variant::Id,
            time: args.recovery_kdf_time,
            memory_kib: args.recovery_kdf_memory,
            lanes: 4,
        },
    )
    .map_err(add_err(path))?;
    let token_err = |source| VolumeError::AddToken {
        path: path.to_path_buf(),
        source: Box::new(crate::volume::luks2::Luks2Error::Token(source)),
    };
    crate::volume::luks2::token::add(&mut md, &tpm_token(&sealed, secret_slot))
        .map_err(token_err)?;
    crate::volume::luks2::token::add(&mut md, &escrow_token(&record, recovery_slot))
        .map_err(token_err)?;
    volume
        .commit(&mut dev, md)
        .map_err(|source| VolumeError::AddToken {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;

    if let Some(out) = &args.escrow_out {
        write_private(out, &serde_json::to_vec_pretty(&record)?)?;
    }
    let copy = crate::volume::recovery::record_path(state_dir, volume.uuid())?;
    crate::volume::recovery::write_atomic(&copy, &serde_json::to_vec_pretty(&record)?, 0o644)?;
    eprintln!(
        "adopted LUKS2 volume {} on {}: unlocked through systemd-tpm2 token {token_id} (keyslot {}, kept); keyslot {secret_slot} sealed by Vouch, recovery passphrase escrowed to the fleet (keyslot {recovery_slot})",
        volume.uuid(),
        path.display(),
        token.keyslot,
    );
    Ok(())
}

/// Adds a keyslot opened by a fresh secret sealed the way systemd seals it to `selection`
/// (one bank), and its `systemd-tpm2` token; writes both headers once. Returns the keyslot.
pub fn add_systemd(
    tpm: &TpmClient,
    path: &Path,
    dev: &mut File,
    volume: &mut Luks2Volume,
    volume_key: &Zeroizing<Vec<u8>>,
    selection: &PcrSelection,
) -> Result<u32, VolumeError> {
    let (bank, pcrs) = match selection.bank_pcrs().as_slice() {
        [(bank, pcrs)] => (*bank, pcrs.clone()),
        _ => {
            return Err(VolumeError::SystemdSelection {
                selection: selection.to_string(),
            })
        }
    };
    let mut secret = Zeroizing::new(vec![0u8; SYSTEMD_SECRET_LEN]);
    OsRng
        .try_fill_bytes(&mut secret)
        .map_err(VolumeError::Random)?;
    let s = secret.clone();
    let seal = tpm.call(move |t| t.seal_systemd(&s, bank, &pcrs))?;
    let hdr_size = volume.header.hdr_size;
    let mut md = volume.metadata.clone();
    let slot = add_keyslot(
        &mut md,
        dev,
        hdr_size,
        volume_key,
        &systemd_token::passphrase(&secret),
        SYSTEMD_KDF,
    )
    .map_err(add_err(path))?;
    crate::volume::luks2::token::add(&mut md, &systemd_token::token(&seal, slot)).map_err(
        |source| VolumeError::AddToken {
            path: path.to_path_buf(),
            source: Box::new(crate::volume::luks2::Luks2Error::Token(source)),
        },
    )?;
    volume
        .commit(dev, md)
        .map_err(|source| VolumeError::AddToken {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
    Ok(slot)
}

/// `vouch-agent volume enroll-systemd`: unseals Vouch's secret, then [`add_systemd`].
pub fn enroll_systemd(
    tpm: &TpmClient,
    state_dir: &Path,
    args: &EnrollSystemdArgs,
) -> Result<(), VolumeError> {
    let path = args.device.as_path();
    let mut dev = open_device(path, true)?;
    let mut volume = read_header(path, &mut dev)?;
    let opened = unseal_and_open(
        tpm,
        state_dir,
        path,
        &mut dev,
        &volume,
        args.signed_policy.as_deref(),
    )?;
    let slot = add_systemd(
        tpm,
        path,
        &mut dev,
        &mut volume,
        &opened.unlocked.volume_key,
        &args.systemd_pcrs,
    )?;
    eprintln!(
        "{}: keyslot {slot} sealed the way systemd-cryptenroll seals, systemd-tpm2 token added (PCRs {})",
        path.display(),
        args.systemd_pcrs
    );
    Ok(())
}
