//! The credential blob (TPM2B_ID_OBJECT): the secret as a TPM2B_DIGEST encrypted with AES-CFB
//! under symKey = KDFa(nameAlg, seed, "STORAGE", name, "", keyBits) and a zero IV, preceded by
//! the integrity HMAC = HMAC(KDFa(nameAlg, seed, "INTEGRITY", "", "", digestBits),
//! encIdentity || name), where `name` is the Name of the credentialed object (the AK).

use super::kdf;
use crate::alg::HashAlg;
use crate::tpm::wire::{Reader, WireError, Writer};
use crate::tpm::SymDef;
use aes::cipher::KeyIvInit;
use thiserror::Error;
use zeroize::Zeroizing;

/// TPM_ALG_AES.
const ALG_AES: u16 = 0x0006;
/// TPM_ALG_CFB.
const MODE_CFB: u16 = 0x0043;

/// Errors protecting or opening a credential blob.
#[derive(Debug, Error)]
pub enum BlobError {
    /// The EK's symmetric definition is not AES-128/192/256 in CFB mode.
    #[error("EK symmetric definition {0:?} is not AES-128/192/256-CFB")]
    UnsupportedSymmetric(SymDef),
    /// The name algorithm cannot be used for the KDF or HMAC.
    #[error("name algorithm {0} cannot be used for KDFa / HMAC")]
    UnsupportedHash(HashAlg),
    /// The TPM2B_ID_OBJECT is malformed.
    #[error("malformed TPM2B_ID_OBJECT")]
    Format(#[source] WireError),
    /// The integrity HMAC has the wrong size.
    #[error("TPM2B_ID_OBJECT integrity HMAC is {found} bytes, expected {expected}")]
    IntegritySize {
        /// Size found.
        found: usize,
        /// Digest size of the name algorithm.
        expected: usize,
    },
    /// The integrity HMAC does not match (wrong object name, wrong seed or tampered blob).
    #[error("TPM2B_ID_OBJECT integrity HMAC does not match (wrong name, wrong seed or tampered)")]
    Integrity,
    /// The decrypted credential is not a well-formed TPM2B_DIGEST.
    #[error("decrypted credential is not a TPM2B_DIGEST")]
    Credential(#[source] WireError),
}

/// AES-CFB with a zero IV, in place.
fn cfb(sym: SymDef, key: &[u8], buf: &mut [u8], encrypt: bool) -> Result<(), BlobError> {
    let iv = [0u8; 16];
    let bad = || BlobError::UnsupportedSymmetric(sym);
    macro_rules! run {
        ($c:ty) => {
            if encrypt {
                cfb_mode::Encryptor::<$c>::new_from_slices(key, &iv)
                    .map_err(|_| bad())?
                    .encrypt(buf)
            } else {
                cfb_mode::Decryptor::<$c>::new_from_slices(key, &iv)
                    .map_err(|_| bad())?
                    .decrypt(buf)
            }
        };
    }
    match sym {
        SymDef::Cipher {
            alg: ALG_AES,
            key_bits,
            mode: MODE_CFB,
        } => match key_bits {
            128 => run!(aes::Aes128),
            192 => run!(aes::Aes192),
            256 => run!(aes::Aes256),
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    }
    Ok(())
}

/// The symmetric key bits of an AES-CFB definition.
pub fn key_bits(sym: SymDef) -> Result<u16, BlobError> {
    match sym {
        SymDef::Cipher {
            alg: ALG_AES,
            key_bits: bits @ (128 | 192 | 256),
            mode: MODE_CFB,
        } => Ok(bits),
        other => Err(BlobError::UnsupportedSymmetric(other)),
    }
}

struct Keys {
    sym: Zeroizing<Vec<u8>>,
    hmac: Zeroizing<Vec<u8>>,
}

fn keys(name_alg: HashAlg, sym: SymDef, seed: &[u8], name: &[u8]) -> Result<Keys, BlobError> {
    let bits = key_bits(sym)?;
    let digest_bits = name_alg
        .digest_len()
        .and_then(|n| u16::try_from(n * 8).ok())
        .ok_or(BlobError::UnsupportedHash(name_alg))?;
    let unsupported = || BlobError::UnsupportedHash(name_alg);
    Ok(Keys {
        sym: kdf::kdfa(name_alg, seed, b"STORAGE", name, &[], bits).ok_or_else(unsupported)?,
        hmac: kdf::kdfa(name_alg, seed, b"INTEGRITY", &[], &[], digest_bits)
            .ok_or_else(unsupported)?,
    })
}

/// Builds the TPM2B_ID_OBJECT (with its size prefix) protecting `credential` for the object
/// `name`. The caller has checked the credential fits a TPM2B_DIGEST of `name_alg`.
pub fn protect(
    name_alg: HashAlg,
    sym: SymDef,
    seed: &[u8],
    name: &[u8],
    credential: &[u8],
) -> Result<Vec<u8>, BlobError> {
    let k = keys(name_alg, sym, seed, name)?;
    let mut w = Writer::new();
    w.tpm2b(credential);
    let mut enc_identity = Zeroizing::new(w.into_bytes());
    cfb(sym, &k.sym, &mut enc_identity, true)?;
    let integrity = kdf::hmac(name_alg, &k.hmac, &[&enc_identity, name])
        .ok_or(BlobError::UnsupportedHash(name_alg))?;
    let mut inner = Writer::new();
    inner.tpm2b(&integrity);
    inner.bytes(&enc_identity);
    let mut outer = Writer::new();
    outer.tpm2b(&inner.into_bytes());
    Ok(outer.into_bytes())
}

/// Checks and decrypts a TPM2B_ID_OBJECT (with its size prefix): what the TPM does in
/// TPM2_ActivateCredential once it has the seed. Returns the credential.
pub fn open(
    name_alg: HashAlg,
    sym: SymDef,
    seed: &[u8],
    name: &[u8],
    id_object: &[u8],
) -> Result<Zeroizing<Vec<u8>>, BlobError> {
    let mut r = Reader::new(id_object);
    let inner = r
        .tpm2b(usize::from(u16::MAX), "TPM2B_ID_OBJECT.size")
        .map_err(BlobError::Format)?;
    r.finish("TPM2B_ID_OBJECT").map_err(BlobError::Format)?;
    let mut r = Reader::new(inner);
    let integrity = r
        .tpm2b(64, "TPMS_ID_OBJECT.integrityHMAC")
        .map_err(BlobError::Format)?;
    let enc_identity = r
        .bytes(r.remaining(), "TPMS_ID_OBJECT.encIdentity")
        .map_err(BlobError::Format)?;
    let expected = name_alg
        .digest_len()
        .ok_or(BlobError::UnsupportedHash(name_alg))?;
    if integrity.len() != expected {
        return Err(BlobError::IntegritySize {
            found: integrity.len(),
            expected,
        });
    }
    let k = keys(name_alg, sym, seed, name)?;
    let ok = kdf::hmac_verify(name_alg, &k.hmac, &[enc_identity, name], integrity)
        .ok_or(BlobError::UnsupportedHash(name_alg))?;
    if !ok {
        return Err(BlobError::Integrity);
    }
    let mut plain = Zeroizing::new(enc_identity.to_vec());
    cfb(sym, &k.sym, &mut plain, false)?;
    let mut r = Reader::new(&plain);
    let credential = r
        .tpm2b(expected, "TPM2B_DIGEST (credential)")
        .map_err(BlobError::Credential)?;
    r.finish("TPM2B_DIGEST (credential)")
        .map_err(BlobError::Credential)?;
    Ok(Zeroizing::new(credential.to_vec()))
}
