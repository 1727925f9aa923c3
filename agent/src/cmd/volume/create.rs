//! `vouch-agent volume create`: a new TPM-sealed LUKS2 volume, or in-place encryption of the
//! data already on a device (`--encrypt-existing`).
//!
//! Steps: a random 64-byte secret is sealed with the TPM; a random recovery passphrase (48
//! characters from a 31-letter alphabet, about 238 bits) is encrypted to the fleet's escrow
//! key with the volume UUID and device id as AAD; the volume is formatted natively (keyslot 0:
//! secret, PBKDF2; keyslot 1: passphrase, Argon2id); the `vouch-tpm2` and `vouch-escrow`
//! tokens are written. The passphrase itself is never written or logged.
//!
//! `--encrypt-existing` needs the last 16 MiB (the data offset) of the device to be free: the
//! data moves forward by that much. Before anything moves, the sealed secret and the escrow
//! record are saved next to the journal (`JOURNAL.vouch.json`, mode 0600, no secret in clear),
//! so rerunning the same command after a crash unseals the same secret and resumes.

use super::common::{open_device, write_private};
use super::{CreateArgs, VolumeError};
use crate::seal::blob;
use crate::seal::store::read_bounded;
use crate::tpm::worker::TpmClient;
use crate::volume::luks2::format::RECOVERY_KEYSLOT;
use crate::volume::luks2::{Argon2Cost, FormatOptions, Luks2Volume};
use crate::volume::tpm_token::{escrow_token, tpm_token};
use base64::Engine;
use rand_core::{OsRng, RngCore};
use std::fs::File;
use std::path::{Path, PathBuf};
use vouch_attest::escrow::{self, EscrowRecord};
use zeroize::Zeroizing;

/// Length of the keyslot-0 secret.
pub const SECRET_LEN: usize = 64;
const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
/// Chunk moved per step by --encrypt-existing.
const INPLACE_CHUNK: u64 = 4 << 20;

/// A random recovery passphrase: 8 groups of 6 characters joined by '-'.
pub fn recovery_passphrase(rng: &mut impl RngCore) -> Result<Zeroizing<Vec<u8>>, VolumeError> {
    let mut out = Zeroizing::new(Vec::with_capacity(55));
    let mut byte = [0u8; 1];
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    while out.len() < 55 {
        if out.len() % 7 == 6 {
            out.push(b'-');
            continue;
        }
        rng.try_fill_bytes(&mut byte).map_err(VolumeError::Random)?;
        if byte[0] < limit {
            let c = ALPHABET
                .get(usize::from(byte[0]) % ALPHABET.len())
                .copied()
                .unwrap_or(b'a');
            out.push(c);
        }
    }
    Ok(out)
}

fn open_or_create(path: &Path, size: Option<u64>) -> Result<File, VolumeError> {
    if path.exists() {
        return open_device(path, true);
    }
    let size = size.ok_or_else(|| VolumeError::SizeRequired(path.to_path_buf()))?;
    let err = |source| VolumeError::Open {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(err)?;
    f.set_len(size).map_err(err)?;
    Ok(f)
}

pub(super) fn escrow_key(path: &Path) -> Result<p256::PublicKey, VolumeError> {
    let pem = read_bounded(path, 16 * 1024)?;
    let text = String::from_utf8_lossy(&pem);
    escrow::public_from_pem(&text).map_err(|source| VolumeError::Escrow {
        path: path.to_path_buf(),
        source,
    })
}

/// Sidecar of --encrypt-existing: the sealed secret and the escrow record of the first run.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Sidecar {
    sealed: String,
    escrow: EscrowRecord,
}

fn sidecar_path(journal: &Path) -> PathBuf {
    let mut s = journal.as_os_str().to_owned();
    s.push(".vouch.json");
    PathBuf::from(s)
}

/// `vouch-agent volume create`.
pub fn run(tpm: &TpmClient, state_dir: &Path, args: &CreateArgs) -> Result<(), VolumeError> {
    let public = escrow_key(&args.escrow_key)?;
    let policy = super::common::seal_policy(&args.seal)?;
    let mut dev = open_or_create(&args.device, args.size)?;
    let device_id = tpm
        .call(|t| Ok(crate::identity::device_identity(t)))??
        .device_id;
    let mut uuid_bytes = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut uuid_bytes)
        .map_err(VolumeError::Random)?;
    let opts_for = |uuid: String| FormatOptions {
        label: args.label.clone(),
        uuid: Some(uuid),
        recovery_cost: Argon2Cost {
            time: args.recovery_kdf_time,
            memory_kib: args.recovery_kdf_memory,
            lanes: 4,
        },
        ..FormatOptions::default()
    };
    let recovery = recovery_passphrase(&mut OsRng)?;

    let (volume, record, sealed) = if args.encrypt_existing {
        let journal = args.journal.clone().unwrap_or_default();
        encrypt_existing(
            tpm, args, &mut dev, &journal, &public, &device_id, recovery, policy,
        )?
    } else {
        let mut secret = Zeroizing::new(vec![0u8; SECRET_LEN]);
        OsRng
            .try_fill_bytes(&mut secret)
            .map_err(VolumeError::Random)?;
        let s = secret.clone();
        let sealed = tpm.call(move |t| t.seal(&s, &policy))?;
        let uuid = uuid_string(&uuid_bytes);
        let (mut volume, key) =
            crate::volume::luks2::format(&mut dev, &secret, &recovery, &opts_for(uuid.clone()))
                .map_err(|source| VolumeError::Format {
                    path: args.device.clone(),
                    source: Box::new(source),
                })?;
        if let Some(selection) = &args.systemd_tpm2 {
            let slot = super::adopt::add_systemd(
                tpm,
                &args.device,
                &mut dev,
                &mut volume,
                &key,
                selection,
            )?;
            eprintln!(
                "keyslot {slot}: sealed the way systemd-cryptenroll seals (systemd-tpm2 token, PCRs {selection})"
            );
        }
        let record = seal_escrow(
            &public,
            &recovery,
            volume.uuid(),
            &device_id,
            &args.escrow_key,
        )?;
        (volume, record, sealed)
    };
    finish(args, state_dir, &mut dev, volume, &record, &sealed)
}

fn uuid_string(b: &[u8; 16]) -> String {
    let mut b = *b;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    let part = |r: std::ops::Range<usize>| h.get(r).unwrap_or_default().to_string();
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}

pub(super) fn seal_escrow(
    public: &p256::PublicKey,
    recovery: &[u8],
    uuid: &str,
    device_id: &str,
    key_path: &Path,
) -> Result<EscrowRecord, VolumeError> {
    let blob = escrow::seal_to(public, recovery, &escrow::aad(uuid, device_id), &mut OsRng)
        .map_err(|source| VolumeError::Escrow {
            path: key_path.to_path_buf(),
            source,
        })?;
    Ok(EscrowRecord::new(device_id, uuid, &blob))
}

fn finish(
    args: &CreateArgs,
    state_dir: &Path,
    dev: &mut File,
    mut volume: Luks2Volume,
    record: &EscrowRecord,
    sealed: &crate::seal::SealedObject,
) -> Result<(), VolumeError> {
    let add_err = |source| VolumeError::AddToken {
        path: args.device.clone(),
        source: Box::new(source),
    };
    // A rerun of a finished --encrypt-existing job finds its tokens already there (the escrow
    // record of the first run: ECIES makes every sealing different), and keeps them.
    for token in [
        tpm_token(sealed, crate::volume::luks2::format::SECRET_KEYSLOT),
        escrow_token(record, RECOVERY_KEYSLOT),
    ] {
        let present = volume
            .tokens()
            .iter()
            .any(|(_, t)| t.kind == token.kind && t.keyslots == token.keyslots);
        if !present {
            volume.add_token(dev, &token).map_err(add_err)?;
        }
    }
    let record = &crate::volume::tpm_token::read_escrow(&volume).unwrap_or_else(|_| record.clone());
    if let Some(out) = &args.escrow_out {
        write_private(out, &serde_json::to_vec_pretty(record)?)?;
    }
    // For the agent daemon to deposit with the fleet (ciphertext only: world-readable).
    let copy = crate::volume::recovery::record_path(state_dir, volume.uuid())?;
    crate::volume::recovery::write_atomic(&copy, &serde_json::to_vec_pretty(record)?, 0o644)?;
    eprintln!(
        "created LUKS2 volume {} on {}: keyslot 0 sealed to the TPM, recovery passphrase escrowed to the fleet (keyslot {RECOVERY_KEYSLOT})",
        volume.uuid(),
        args.device.display()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn encrypt_existing(
    tpm: &TpmClient,
    args: &CreateArgs,
    dev: &mut File,
    journal_path: &Path,
    public: &p256::PublicKey,
    device_id: &str,
    recovery: Zeroizing<Vec<u8>>,
    policy: crate::seal::SealPolicy,
) -> Result<(Luks2Volume, EscrowRecord, crate::seal::SealedObject), VolumeError> {
    let side_path = sidecar_path(journal_path);
    let b64 = base64::engine::general_purpose::STANDARD;
    // First run: new secret, sealed, saved with the escrow record before any data moves.
    let (secret, sealed, side_record, uuid) = if side_path.exists() {
        let data = read_bounded(&side_path, 64 * 1024)?;
        let side: Sidecar = serde_json::from_slice(&data)?;
        let raw = b64.decode(&side.sealed).map_err(|_| VolumeError::Escrow {
            path: side_path.clone(),
            source: vouch_attest::escrow::EscrowError::RecordBase64,
        })?;
        let sealed = blob::decode(&raw).map_err(|source| crate::seal::SealError::Blob {
            path: side_path.clone(),
            source,
        })?;
        let s2 = sealed.clone();
        let secret = tpm.call(move |t| t.unseal(&s2, None))?;
        let uuid = side.escrow.volume_uuid.clone();
        (secret, sealed, side.escrow, uuid)
    } else {
        let mut secret = Zeroizing::new(vec![0u8; SECRET_LEN]);
        OsRng
            .try_fill_bytes(&mut secret)
            .map_err(VolumeError::Random)?;
        let s = secret.clone();
        let sealed = tpm.call(move |t| t.seal(&s, &policy))?;
        let mut ub = [0u8; 16];
        OsRng.try_fill_bytes(&mut ub).map_err(VolumeError::Random)?;
        let uuid = uuid_string(&ub);
        let record = seal_escrow(public, &recovery, &uuid, device_id, &args.escrow_key)?;
        let side = Sidecar {
            sealed: b64.encode(blob::encode(&sealed)),
            escrow: record.clone(),
        };
        // Durable before any data moves: a rerun resumes from it.
        let side_json = serde_json::to_vec_pretty(&side)?;
        vouch_durable::write(&side_path, &side_json, vouch_durable::MODE_PRIVATE).map_err(|e| {
            VolumeError::Write {
                path: side_path.clone(),
                source: e.into(),
            }
        })?;
        (secret, sealed, record, uuid)
    };
    let mut journal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(journal_path)
        .map_err(|source| VolumeError::Open {
            path: journal_path.to_path_buf(),
            source,
        })?;
    let opts = FormatOptions {
        label: args.label.clone(),
        uuid: Some(uuid.clone()),
        recovery_cost: Argon2Cost {
            time: args.recovery_kdf_time,
            memory_kib: args.recovery_kdf_memory,
            lanes: 4,
        },
        ..FormatOptions::default()
    };
    let (volume, _key) = crate::volume::luks2::inplace::encrypt_existing(
        dev,
        &mut journal,
        &secret,
        &recovery,
        &opts,
        INPLACE_CHUNK,
    )
    .map_err(|source| VolumeError::Inplace {
        path: args.device.clone(),
        source: Box::new(source),
    })?;
    // A run that crashed before its first progress record is redone from scratch with this
    // run's passphrase; otherwise the first run's passphrase (in the sidecar's record) holds.
    let record = if volume.open(dev, &recovery, Some(RECOVERY_KEYSLOT)).is_ok() {
        seal_escrow(public, &recovery, &uuid, device_id, &args.escrow_key)?
    } else {
        side_record
    };
    Ok((volume, record, sealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_passphrases_are_grouped_and_random() {
        let a = recovery_passphrase(&mut OsRng).unwrap();
        let b = recovery_passphrase(&mut OsRng).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 55);
        let groups: Vec<&[u8]> = a.split(|c| *c == b'-').collect();
        assert_eq!(groups.len(), 8);
        assert!(groups
            .iter()
            .all(|g| g.len() == 6 && g.iter().all(|c| ALPHABET.contains(c))));
        let u = uuid_string(&[0xff; 16]);
        assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    }
}
