//! The one ECIES construction of Vouch, shared by escrow records ([`crate::escrow`]) and fleet
//! backups ([`crate::backup`]): an ephemeral P-256 key agrees with the recipient's (ECDH), and
//! HKDF-SHA256 (salt = ephemeral SEC1 point || recipient SEC1 point, info = the caller's label)
//! derives the AES-256-GCM key. Also the key files both use: a PKCS#8 private key PEM and a
//! SubjectPublicKeyInfo public key PEM. Each caller frames its own ciphertext.

use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use p256::{PublicKey, SecretKey};
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Length of an uncompressed SEC1 P-256 point.
pub const POINT_LEN: usize = 65;

/// A key file could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A public key PEM is not a P-256 SubjectPublicKeyInfo.
    #[error("not a P-256 public key PEM: {0}")]
    PublicPem(String),
    /// A private key PEM is not a P-256 PKCS#8 key.
    #[error("not a P-256 PKCS#8 private key PEM: {0}")]
    PrivatePem(String),
    /// The ephemeral point in a ciphertext is not a P-256 point.
    #[error("the ephemeral key is not a P-256 point")]
    Ephemeral,
}

fn derive(
    shared: &[u8],
    ephemeral: &[u8],
    recipient: &PublicKey,
    info: &[u8],
) -> Zeroizing<[u8; 32]> {
    let mut salt = ephemeral.to_vec();
    salt.extend_from_slice(recipient.to_encoded_point(false).as_bytes());
    let hk = Hkdf::<Sha256>::new(Some(&salt), shared);
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: this cannot fail.
    let _ = hk.expand(info, key.as_mut());
    key
}

/// The sender's side: a new ephemeral key; returns its SEC1 point (to send) and the AES key.
pub fn sender_key<R: RngCore + CryptoRng>(
    recipient: &PublicKey,
    info: &[u8],
    rng: &mut R,
) -> ([u8; POINT_LEN], Zeroizing<[u8; 32]>) {
    let eph = p256::ecdh::EphemeralSecret::random(rng);
    let point = eph.public_key().to_encoded_point(false);
    let mut bytes = [0u8; POINT_LEN];
    bytes.copy_from_slice(point.as_bytes());
    let shared = eph.diffie_hellman(recipient);
    let key = derive(&shared.raw_secret_bytes()[..], &bytes, recipient, info);
    (bytes, key)
}

/// The recipient's side: the AES key for the ephemeral SEC1 point `ephemeral`.
pub fn recipient_key(
    key: &SecretKey,
    ephemeral: &[u8],
    info: &[u8],
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let eph = PublicKey::from_sec1_bytes(ephemeral).map_err(|_| KeyError::Ephemeral)?;
    let shared = p256::ecdh::diffie_hellman(key.to_nonzero_scalar(), eph.as_affine());
    Ok(derive(
        &shared.raw_secret_bytes()[..],
        ephemeral,
        &key.public_key(),
        info,
    ))
}

/// The PEMs of a key: (PKCS#8 private, SubjectPublicKeyInfo public).
pub fn key_pems(key: &SecretKey) -> Result<(Zeroizing<String>, String), KeyError> {
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::PrivatePem(e.to_string()))?;
    let public = key
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::PublicPem(e.to_string()))?;
    Ok((Zeroizing::new(private.to_string()), public))
}

/// Parses a SubjectPublicKeyInfo PEM of a P-256 key.
pub fn public_from_pem(pem: &str) -> Result<PublicKey, KeyError> {
    PublicKey::from_public_key_pem(pem).map_err(|e| KeyError::PublicPem(e.to_string()))
}

/// Parses a PKCS#8 PEM of a P-256 private key.
pub fn secret_from_pem(pem: &str) -> Result<SecretKey, KeyError> {
    SecretKey::from_pkcs8_pem(pem).map_err(|e| KeyError::PrivatePem(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn both_sides_derive_one_key_and_the_label_matters() {
        let secret = SecretKey::random(&mut OsRng);
        let (point, sent) = sender_key(&secret.public_key(), b"label", &mut OsRng);
        let got = recipient_key(&secret, &point, b"label").unwrap();
        assert_eq!(*sent, *got);
        assert_ne!(*recipient_key(&secret, &point, b"other").unwrap(), *sent);
        assert_eq!(
            recipient_key(&secret, &[4; 3], b"label"),
            Err(KeyError::Ephemeral)
        );
        let (private, public) = key_pems(&secret).unwrap();
        assert_eq!(secret_from_pem(&private).unwrap(), secret);
        assert_eq!(public_from_pem(&public).unwrap(), secret.public_key());
        assert!(public_from_pem(&private).is_err());
    }
}
