//! Recovery escrow: a volume's recovery passphrase encrypted to the fleet's escrow key, so only
//! the fleet can release it (and only after checking the device's verdicts).
//!
//! ECIES over P-256: an ephemeral key pair per message, ECDH with the fleet's public key,
//! HKDF-SHA256 (salt = ephemeral SEC1 point || recipient SEC1 point, info = [`INFO`]; the
//! construction shared with backups, [`crate::ecies`]) to a
//! 256-bit AES-GCM key, a random 96-bit nonce. The additional authenticated data binds the
//! ciphertext to the volume UUID and device id ([`aad`]), so a blob moved to another volume or
//! device does not open.
//!
//! Sealed blob layout:
//! ```text
//! magic      8 bytes   "VCHESC1\0"
//! ephemeral  65 bytes  uncompressed SEC1 P-256 point
//! nonce      12 bytes
//! ciphertext           AES-256-GCM output, tag (16 bytes) included
//! ```
//! The escrow record ([`EscrowRecord`]) is the JSON file the agent writes and the fleet reads:
//! the device id, the volume UUID and the blob in base64.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use p256::{PublicKey, SecretKey};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// First bytes of a sealed escrow blob.
pub const MAGIC: [u8; 8] = *b"VCHESC1\0";
/// HKDF info string.
pub const INFO: &[u8] = b"vouch escrow v1 aes-256-gcm";
/// The escrow record's `format` value.
pub const RECORD_FORMAT: &str = "vouch-escrow-v1";
/// Largest plaintext sealed (a recovery passphrase).
pub const MAX_PLAINTEXT: usize = 1024;
const POINT_LEN: usize = 65;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + POINT_LEN + NONCE_LEN;

/// Errors of escrow sealing and opening.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EscrowError {
    /// The plaintext is empty or larger than [`MAX_PLAINTEXT`].
    #[error("escrow plaintext is {0} bytes; 1 to {MAX_PLAINTEXT} allowed")]
    PlaintextSize(usize),
    /// The random source failed.
    #[error("random source failed")]
    Random,
    /// AES-GCM encryption failed.
    #[error("AES-GCM encryption failed")]
    Encrypt,
    /// The blob is shorter than its fixed header plus a tag.
    #[error("escrow blob is {len} bytes; at least {min} needed")]
    Truncated { len: usize, min: usize },
    /// The blob does not start with the magic.
    #[error("not a Vouch escrow blob (bad magic at offset 0)")]
    Magic,
    /// The ephemeral point (offset 8) is not a valid P-256 point.
    #[error("escrow blob: ephemeral key at offset 8 is not a P-256 point")]
    Ephemeral,
    /// The tag does not verify: wrong key, tampered ciphertext or other volume / device.
    #[error(
        "escrow blob does not open: wrong escrow key, tampered data, or another volume/device"
    )]
    Open,
    /// A key file is not a P-256 key of the expected kind.
    #[error(transparent)]
    Key(#[from] crate::ecies::KeyError),
    /// The escrow record JSON is malformed.
    #[error("escrow record: {0}")]
    Record(String),
    /// The record's blob is not base64.
    #[error("escrow record: blob is not base64")]
    RecordBase64,
    /// The record has another format.
    #[error("escrow record format {0:?} is not {RECORD_FORMAT:?}")]
    RecordFormat(String),
}

/// Additional authenticated data for a volume on a device.
pub fn aad(volume_uuid: &str, device_id: &str) -> Vec<u8> {
    length_prefixed(&[
        b"vouch-escrow".as_slice(),
        volume_uuid.as_bytes(),
        device_id.as_bytes(),
    ])
}

/// The parts, each preceded by its length as a big-endian u32 (unambiguous concatenation).
pub(crate) fn length_prefixed(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// Encrypts `plaintext` to `recipient` with `aad` bound; returns the sealed blob.
pub fn seal_to<R: RngCore + CryptoRng>(
    recipient: &PublicKey,
    plaintext: &[u8],
    aad: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, EscrowError> {
    if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
        return Err(EscrowError::PlaintextSize(plaintext.len()));
    }
    let (eph_point, key) = crate::ecies::sender_key(recipient, INFO, rng);
    let mut nonce = [0u8; NONCE_LEN];
    rng.try_fill_bytes(&mut nonce)
        .map_err(|_| EscrowError::Random)?;
    let cipher = Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| EscrowError::Encrypt)?;
    let ct = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| EscrowError::Encrypt)?;
    let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&eph_point);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a sealed blob with the escrow private key and the same `aad`.
pub fn open_with(
    key: &SecretKey,
    blob: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EscrowError> {
    let min = HEADER_LEN + TAG_LEN + 1;
    if blob.len() < min {
        return Err(EscrowError::Truncated {
            len: blob.len(),
            min,
        });
    }
    let (magic, rest) = blob.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(EscrowError::Magic);
    }
    let (point, rest) = rest.split_at(POINT_LEN);
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| EscrowError::Open)?;
    let key_bytes =
        crate::ecies::recipient_key(key, point, INFO).map_err(|_| EscrowError::Ephemeral)?;
    let cipher = Aes256Gcm::new_from_slice(key_bytes.as_ref()).map_err(|_| EscrowError::Open)?;
    let pt = cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad })
        .map_err(|_| EscrowError::Open)?;
    Ok(Zeroizing::new(pt))
}

/// A new escrow key pair: (PKCS#8 private key PEM, SubjectPublicKeyInfo public key PEM).
pub fn keygen<R: RngCore + CryptoRng>(
    rng: &mut R,
) -> Result<(Zeroizing<String>, String), EscrowError> {
    Ok(crate::ecies::key_pems(&SecretKey::random(rng))?)
}

/// Parses the fleet's escrow public key (SubjectPublicKeyInfo PEM).
pub fn public_from_pem(pem: &str) -> Result<PublicKey, EscrowError> {
    Ok(crate::ecies::public_from_pem(pem)?)
}

/// Parses the fleet's escrow private key (PKCS#8 PEM).
pub fn secret_from_pem(pem: &str) -> Result<SecretKey, EscrowError> {
    Ok(crate::ecies::secret_from_pem(pem)?)
}

/// The escrow file the agent writes (and the `vouch-escrow` token holds): ciphertext only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscrowRecord {
    /// Always [`RECORD_FORMAT`].
    pub format: String,
    /// Device id (hex SHA-256 of the EK SubjectPublicKeyInfo).
    pub device_id: String,
    /// LUKS2 volume UUID.
    pub volume_uuid: String,
    /// The sealed blob, standard base64.
    pub blob: String,
}

impl EscrowRecord {
    /// A record holding `blob`.
    pub fn new(device_id: &str, volume_uuid: &str, blob: &[u8]) -> Self {
        EscrowRecord {
            format: RECORD_FORMAT.into(),
            device_id: device_id.into(),
            volume_uuid: volume_uuid.into(),
            blob: base64::engine::general_purpose::STANDARD.encode(blob),
        }
    }

    /// Parses a record (JSON) and checks its format.
    pub fn parse(json: &[u8]) -> Result<Self, EscrowError> {
        let r: EscrowRecord =
            serde_json::from_slice(json).map_err(|e| EscrowError::Record(e.to_string()))?;
        if r.format != RECORD_FORMAT {
            return Err(EscrowError::RecordFormat(r.format));
        }
        Ok(r)
    }

    /// The sealed blob.
    pub fn blob_bytes(&self) -> Result<Vec<u8>, EscrowError> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.blob)
            .map_err(|_| EscrowError::RecordBase64)
    }

    /// Opens the record's blob with the escrow key (AAD from its UUID and device id).
    pub fn open(&self, key: &SecretKey) -> Result<Zeroizing<Vec<u8>>, EscrowError> {
        open_with(
            key,
            &self.blob_bytes()?,
            &aad(&self.volume_uuid, &self.device_id),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn pair() -> (SecretKey, PublicKey) {
        let k = SecretKey::random(&mut OsRng);
        let p = k.public_key();
        (k, p)
    }

    #[test]
    fn round_trip_and_pem() {
        let (priv_pem, pub_pem) = keygen(&mut OsRng).unwrap();
        let key = secret_from_pem(&priv_pem).unwrap();
        let public = public_from_pem(&pub_pem).unwrap();
        assert_eq!(key.public_key(), public);
        let a = aad("uuid-1", "dev-1");
        let blob = seal_to(&public, b"correct horse battery", &a, &mut OsRng).unwrap();
        assert_eq!(blob.len(), HEADER_LEN + 21 + TAG_LEN);
        assert!(!blob.windows(7).any(|w| w == b"correct"));
        assert_eq!(
            open_with(&key, &blob, &a).unwrap().as_slice(),
            b"correct horse battery"
        );
        let rec = EscrowRecord::new("dev-1", "uuid-1", &blob);
        let json = serde_json::to_vec(&rec).unwrap();
        let back = EscrowRecord::parse(&json).unwrap();
        assert_eq!(
            back.open(&key).unwrap().as_slice(),
            b"correct horse battery"
        );
        // Two seals of the same text differ (fresh ephemeral key and nonce).
        assert_ne!(
            blob,
            seal_to(&public, b"correct horse battery", &a, &mut OsRng).unwrap()
        );
    }

    #[test]
    fn wrong_key_refused() {
        let (_, public) = pair();
        let (other, _) = pair();
        let a = aad("u", "d");
        let blob = seal_to(&public, b"pass", &a, &mut OsRng).unwrap();
        assert_eq!(open_with(&other, &blob, &a), Err(EscrowError::Open));
    }

    #[test]
    fn tampering_and_other_aad_refused() {
        let (key, public) = pair();
        let a = aad("uuid", "dev");
        let blob = seal_to(&public, b"passphrase", &a, &mut OsRng).unwrap();
        for i in [HEADER_LEN - 1, HEADER_LEN, blob.len() - 1] {
            let mut t = blob.clone();
            t[i] ^= 1;
            assert_eq!(open_with(&key, &t, &a), Err(EscrowError::Open), "byte {i}");
        }
        let mut t = blob.clone();
        t[MAGIC.len() + 1] ^= 0xff;
        assert!(open_with(&key, &t, &a).is_err());
        let mut t = blob.clone();
        t[0] = b'X';
        assert_eq!(open_with(&key, &t, &a), Err(EscrowError::Magic));
        assert_eq!(
            open_with(&key, &blob, &aad("uuid", "other-dev")),
            Err(EscrowError::Open)
        );
        assert_eq!(
            open_with(&key, &blob, &aad("other-uuid", "dev")),
            Err(EscrowError::Open)
        );
        for n in 0..HEADER_LEN + TAG_LEN + 1 {
            assert!(matches!(
                open_with(&key, &blob[..n], &a),
                Err(EscrowError::Truncated { .. })
            ));
        }
        assert_eq!(
            seal_to(&public, b"", &a, &mut OsRng),
            Err(EscrowError::PlaintextSize(0))
        );
    }

    #[test]
    fn records_are_checked() {
        assert!(matches!(
            EscrowRecord::parse(
                b"{\"format\":\"x\",\"device_id\":\"d\",\"volume_uuid\":\"u\",\"blob\":\"\"}"
            ),
            Err(EscrowError::RecordFormat(_))
        ));
        assert!(matches!(
            EscrowRecord::parse(b"{\"format\":\"vouch-escrow-v1\"}"),
            Err(EscrowError::Record(_))
        ));
        let r = EscrowRecord::new("d", "u", b"x");
        let mut bad = r.clone();
        bad.blob = "!!".into();
        assert_eq!(bad.blob_bytes(), Err(EscrowError::RecordBase64));
    }
}
