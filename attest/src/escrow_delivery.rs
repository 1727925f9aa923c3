//! Delivery of a released recovery passphrase to the one device it belongs to, over a channel
//! the broker can read: the passphrase is encrypted with AES-256-GCM under a fresh 256-bit key,
//! and that key travels as a TPM credential (MakeCredential to the device's EK and AK name).
//! Only the TPM that holds both keys can recover it with TPM2_ActivateCredential.
//!
//! The additional authenticated data ([`aad`]) binds the ciphertext to the device id, the
//! volume UUID and the boot id the release is for, so a delivery replayed to another volume, or
//! with its boot id changed, does not open (the agent also refuses it in another boot).

use crate::boot::BootId;
use crate::credential::{make_credential, CredentialError};
use crate::protocol::EscrowRelease;
use crate::tpm::TpmPublic;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

/// Length of the wrapping key (the credential).
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
/// Largest passphrase delivered.
pub const MAX_PASSPHRASE: usize = 1024;

/// Why a delivery could not be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The passphrase is empty or larger than [`MAX_PASSPHRASE`].
    #[error("recovery passphrase is {0} bytes; 1 to {MAX_PASSPHRASE} allowed")]
    PassphraseSize(usize),
    /// MakeCredential to the device's EK failed.
    #[error("cannot protect the delivery key for the device's EK")]
    Credential(#[source] CredentialError),
    /// AES-GCM encryption failed.
    #[error("AES-GCM encryption of the passphrase failed")]
    Encrypt,
    /// The activated credential is not a [`KEY_LEN`]-byte key.
    #[error("the activated credential is {0} bytes, not a {KEY_LEN}-byte key")]
    KeyLength(usize),
    /// The nonce is not 12 bytes.
    #[error("delivery nonce is {0} bytes, not {NONCE_LEN}")]
    NonceLength(usize),
    /// The tag does not verify.
    #[error("the passphrase does not decrypt: tampered delivery, or for another device or volume")]
    Open,
}

/// Additional authenticated data of a delivery.
pub fn aad(device_id: &str, volume_uuid: &str, boot_id: &BootId) -> Vec<u8> {
    let boot = boot_id.to_string();
    crate::escrow::length_prefixed(&[
        b"vouch-escrow-delivery".as_slice(),
        device_id.as_bytes(),
        volume_uuid.as_bytes(),
        boot.as_bytes(),
    ])
}

/// Encrypts `passphrase` for the device whose EK is `ek` and whose AK has the name `ak_name`.
pub fn wrap<R: RngCore + CryptoRng>(
    ek: &TpmPublic,
    ak_name: &[u8],
    device_id: &str,
    volume_uuid: &str,
    boot_id: &BootId,
    passphrase: &[u8],
    rng: &mut R,
) -> Result<EscrowRelease, DeliveryError> {
    if passphrase.is_empty() || passphrase.len() > MAX_PASSPHRASE {
        return Err(DeliveryError::PassphraseSize(passphrase.len()));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    rng.fill_bytes(key.as_mut());
    let (credential_blob, encrypted_secret) =
        make_credential(ek, ak_name, key.as_ref(), rng).map_err(DeliveryError::Credential)?;
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| DeliveryError::Encrypt)?;
    let aad = aad(device_id, volume_uuid, boot_id);
    let ciphertext = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: passphrase,
                aad: &aad,
            },
        )
        .map_err(|_| DeliveryError::Encrypt)?;
    Ok(EscrowRelease {
        volume_uuid: volume_uuid.to_owned(),
        boot_id: *boot_id,
        credential_blob,
        encrypted_secret,
        nonce: nonce.to_vec(),
        ciphertext,
    })
}

/// Decrypts a delivery with the key TPM2_ActivateCredential recovered from it.
pub fn unwrap(
    release: &EscrowRelease,
    activated_key: &[u8],
    device_id: &str,
) -> Result<Zeroizing<Vec<u8>>, DeliveryError> {
    if activated_key.len() != KEY_LEN {
        return Err(DeliveryError::KeyLength(activated_key.len()));
    }
    let nonce: [u8; NONCE_LEN] = release
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| DeliveryError::NonceLength(release.nonce.len()))?;
    let cipher = Aes256Gcm::new_from_slice(activated_key).map_err(|_| DeliveryError::Open)?;
    let aad = aad(device_id, &release.volume_uuid, &release.boot_id);
    cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &release.ciphertext,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| DeliveryError::Open)
}
