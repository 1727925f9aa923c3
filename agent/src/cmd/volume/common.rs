//! Helpers shared by the volume commands: opening devices and headers, building the seal
//! policy, and unsealing a volume's secret and opening keyslot 0 with it.

use super::{SealTarget, VolumeError};
use crate::seal::store::{read_bounded, read_signed_policy, PolicyStore};
use crate::seal::{check_authorization, Binding, SealError, SealPolicy, SealedObject};
use crate::tpm::worker::TpmClient;
use crate::volume::luks2::format::SECRET_KEYSLOT;
use crate::volume::luks2::{Luks2Volume, Unlocked};
use crate::volume::tpm_token;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};
use vouch_attest::policy_digest::{fleet_key_public, SignedPolicy};
use vouch_attest::tpm::keys::PublicKey;
use zeroize::Zeroizing;

/// Opens a device or image file, read-only or read-write.
pub fn open_device(path: &Path, write: bool) -> Result<File, VolumeError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(|source| VolumeError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads the LUKS2 header of `dev`.
pub fn read_header(path: &Path, dev: &mut File) -> Result<Luks2Volume, VolumeError> {
    Luks2Volume::read(dev).map_err(|source| VolumeError::Header {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

/// The seal policy the command line asks for.
pub fn seal_policy(t: &SealTarget) -> Result<SealPolicy, VolumeError> {
    if !t.authorized {
        return Ok(SealPolicy::Pcr {
            selection: t.pcrs.clone(),
            values: None,
        });
    }
    let path = t.policy_key.clone().unwrap_or_default();
    let bad = |detail: String| VolumeError::PolicyKey {
        path: path.clone(),
        detail,
    };
    let pem = read_bounded(&path, 16 * 1024)?;
    let text = String::from_utf8(pem).map_err(|_| bad("not a PEM text file".into()))?;
    let key = PublicKey::from_pem(&text).map_err(|e| bad(e.to_string()))?;
    let key = fleet_key_public(&key).map_err(|e| bad(e.to_string()))?;
    let policy_ref = t.policy_ref.as_bytes().to_vec();
    if policy_ref.len() > 64 {
        return Err(bad(format!(
            "policyRef is {} bytes, at most 64",
            policy_ref.len()
        )));
    }
    Ok(SealPolicy::Authorized { key, policy_ref })
}

/// The signed policy a sealed object needs (None for PolicyPCR objects).
fn authorization(
    sealed: &SealedObject,
    state_dir: &Path,
    given: Option<&Path>,
) -> Result<Option<SignedPolicy>, VolumeError> {
    let Binding::Authorized { key, policy_ref } = &sealed.binding else {
        return Ok(None);
    };
    let store = PolicyStore::new(state_dir);
    let policy = match given {
        Some(path) => {
            let p = read_signed_policy(path)?;
            check_authorization(key, policy_ref, Some(&p)).map_err(SealError::Mismatch)?;
            store.offer(&p)?;
            p
        }
        None => {
            let name = key
                .name()
                .map_err(|_| SealError::Mismatch(crate::seal::PolicyError::AuthorizationMissing))?;
            store
                .newest(&name, policy_ref)?
                .ok_or_else(|| SealError::NoSignedPolicy {
                    dir: store.dir().to_path_buf(),
                })?
        }
    };
    Ok(Some(policy))
}

/// The outcome of unsealing and opening keyslot 0, with timings.
#[derive(Debug)]
pub struct Opened {
    /// The volume key from keyslot 0.
    pub unlocked: Unlocked,
    /// Time spent unsealing.
    pub unseal: Duration,
    /// Time spent opening the keyslot.
    pub keyslot: Duration,
}

/// Unseals the `vouch-tpm2` token's secret and opens keyslot 0 with it.
pub fn unseal_and_open(
    tpm: &TpmClient,
    state_dir: &Path,
    path: &Path,
    dev: &mut File,
    volume: &Luks2Volume,
    signed_policy: Option<&Path>,
) -> Result<Opened, VolumeError> {
    let (_, sealed) = tpm_token::read_sealed(volume).map_err(|source| VolumeError::Token {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let auth = authorization(&sealed, state_dir, signed_policy)?;
    let t0 = Instant::now();
    let secret: Zeroizing<Vec<u8>> = tpm.call(move |t| t.unseal(&sealed, auth.as_ref()))?;
    let unseal = t0.elapsed();
    let t1 = Instant::now();
    let slot = tpm_token::token_keyslot(volume, tpm_token::TPM_TOKEN).unwrap_or(SECRET_KEYSLOT);
    let unlocked =
        volume
            .open(dev, &secret, Some(slot))
            .map_err(|source| VolumeError::SecretRejected {
                path: path.to_path_buf(),
                source: Box::new(source),
            })?;
    Ok(Opened {
        unlocked,
        unseal,
        keyslot: t1.elapsed(),
    })
}

/// Writes `data` to a new file of mode 0600 (truncating an existing one).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), VolumeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| VolumeError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(err)
}
