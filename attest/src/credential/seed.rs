//! The credential seed and its protection to the EK (TPM 2.0 Part 1, "Secret Sharing" /
//! "Credential Protection"): for an ECC EK, one-pass ECDH with an ephemeral key and KDFe with the
//! label "IDENTITY"; for an RSA EK, a random seed encrypted with RSA-OAEP, label "IDENTITY\0".
//!
//! The encrypted secret is returned without its TPM2B size prefix (the caller frames it).

use super::kdf;
use crate::alg::HashAlg;
use crate::tpm::keys::pad_to;
use crate::tpm::public::{EccPublic, RsaPublic};
use crate::tpm::wire::{Reader, WireError, Writer};
use crate::tpm::EccCurve;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::CryptoRngCore;
use thiserror::Error;
use zeroize::Zeroizing;

/// Label for the seed derivation and the OAEP encryption.
pub const IDENTITY: &[u8] = b"IDENTITY\0";

/// Errors making or recovering a credential seed.
#[derive(Debug, Error)]
pub enum SeedError {
    /// The EK is on a curve this crate does not implement.
    #[error("EK curve {0:?} is not supported (only NIST P-256)")]
    UnsupportedCurve(EccCurve),
    /// The EK's public point is not a valid P-256 point.
    #[error("EK public point ({x_len}+{y_len} bytes) is not a point on P-256")]
    EkPoint {
        /// Length of x.
        x_len: usize,
        /// Length of y.
        y_len: usize,
    },
    /// The name algorithm cannot be used for OAEP or the KDFs.
    #[error("name algorithm {0} cannot be used for the seed (SHA-1/256/384/512 only)")]
    UnsupportedHash(HashAlg),
    /// The RSA EK's modulus or exponent is not a usable RSA public key.
    #[error("RSA EK public key rejected")]
    RsaKey(#[source] rsa::Error),
    /// RSA-OAEP encryption of the seed failed.
    #[error("RSA-OAEP encryption of the seed failed")]
    RsaEncrypt(#[source] rsa::Error),
    /// The encrypted secret is not a TPMS_ECC_POINT.
    #[error("encrypted secret is not a TPMS_ECC_POINT")]
    SecretFormat(#[source] WireError),
    /// The ephemeral point in the encrypted secret is not a valid P-256 point.
    #[error("ephemeral point in the encrypted secret is not a point on P-256")]
    EphemeralPoint,
}

/// A fresh seed and its encryption to the EK.
pub struct Seed {
    /// The seed (digest-size of the EK's name algorithm).
    pub seed: Zeroizing<Vec<u8>>,
    /// TPMU_ENCRYPTED_SECRET bytes: a TPMS_ECC_POINT or the RSA-OAEP ciphertext.
    pub encrypted: Vec<u8>,
}

fn bits(alg: HashAlg) -> Result<u16, SeedError> {
    alg.digest_len()
        .filter(|_| kdf::supported(alg))
        .and_then(|n| u16::try_from(n * 8).ok())
        .ok_or(SeedError::UnsupportedHash(alg))
}

fn p256_point(x: &[u8], y: &[u8]) -> Option<p256::PublicKey> {
    let mut sec1 = vec![4u8];
    sec1.extend_from_slice(&pad_to(x, 32)?);
    sec1.extend_from_slice(&pad_to(y, 32)?);
    p256::PublicKey::from_sec1_bytes(&sec1).ok()
}

fn ek_point(ek: &EccPublic) -> Result<p256::PublicKey, SeedError> {
    if ek.curve != EccCurve::NistP256 {
        return Err(SeedError::UnsupportedCurve(ek.curve));
    }
    p256_point(&ek.x, &ek.y).ok_or(SeedError::EkPoint {
        x_len: ek.x.len(),
        y_len: ek.y.len(),
    })
}

/// Seed for an ECC P-256 EK: an ephemeral key pair (d_e, Q_e), Z = x(d_e * Q_EK),
/// seed = KDFe(nameAlg, Z, "IDENTITY", x(Q_e), x(Q_EK)); the encrypted secret is Q_e.
pub fn ecc_seed<R: CryptoRngCore + ?Sized>(
    rng: &mut R,
    name_alg: HashAlg,
    ek: &EccPublic,
) -> Result<Seed, SeedError> {
    let bits = bits(name_alg)?;
    let ek_pub = ek_point(ek)?;
    let ephemeral = p256::ecdh::EphemeralSecret::random(&mut RngRef(rng));
    let q = ephemeral.public_key().to_encoded_point(false);
    let (qx, qy) = match (q.x(), q.y()) {
        (Some(x), Some(y)) => (x.to_vec(), y.to_vec()),
        _ => return Err(SeedError::EphemeralPoint),
    };
    let shared = ephemeral.diffie_hellman(&ek_pub);
    let seed = kdf::kdfe(
        name_alg,
        shared.raw_secret_bytes(),
        IDENTITY,
        &qx,
        &ek.x,
        bits,
    )
    .ok_or(SeedError::UnsupportedHash(name_alg))?;
    let mut w = Writer::new();
    w.tpm2b(&qx);
    w.tpm2b(&qy);
    Ok(Seed {
        seed,
        encrypted: w.into_bytes(),
    })
}

/// Recovers the seed from a TPMS_ECC_POINT with the EK's private key: what the TPM does inside
/// TPM2_ActivateCredential. Used by software TPMs and tests.
pub fn ecc_recover(
    name_alg: HashAlg,
    ek: &EccPublic,
    ek_key: &p256::SecretKey,
    encrypted: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SeedError> {
    let bits = bits(name_alg)?;
    let mut r = Reader::new(encrypted);
    let qx = r
        .tpm2b(66, "TPMS_ECC_POINT.x")
        .map_err(SeedError::SecretFormat)?;
    let qy = r
        .tpm2b(66, "TPMS_ECC_POINT.y")
        .map_err(SeedError::SecretFormat)?;
    r.finish("TPMS_ECC_POINT")
        .map_err(SeedError::SecretFormat)?;
    let q = p256_point(qx, qy).ok_or(SeedError::EphemeralPoint)?;
    let shared = p256::ecdh::diffie_hellman(ek_key.to_nonzero_scalar(), q.as_affine());
    kdf::kdfe(
        name_alg,
        shared.raw_secret_bytes(),
        IDENTITY,
        qx,
        &ek.x,
        bits,
    )
    .ok_or(SeedError::UnsupportedHash(name_alg))
}

/// Seed for an RSA EK: random bytes of the name algorithm's digest size, encrypted with
/// RSAES-OAEP (hash = nameAlg, label "IDENTITY\0").
pub fn rsa_seed<R: CryptoRngCore + ?Sized>(
    rng: &mut R,
    name_alg: HashAlg,
    ek: &RsaPublic,
) -> Result<Seed, SeedError> {
    let bits = bits(name_alg)?;
    let exponent = if ek.exponent == 0 { 65537 } else { ek.exponent };
    let key = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(&ek.modulus),
        rsa::BigUint::from(exponent),
    )
    .map_err(SeedError::RsaKey)?;
    let mut seed = Zeroizing::new(vec![0u8; usize::from(bits / 8)]);
    rng.fill_bytes(&mut seed);
    let label = "IDENTITY\0";
    let padding = match name_alg {
        HashAlg::Sha1 => rsa::Oaep::new_with_label::<sha1::Sha1, _>(label),
        HashAlg::Sha256 => rsa::Oaep::new_with_label::<sha2::Sha256, _>(label),
        HashAlg::Sha384 => rsa::Oaep::new_with_label::<sha2::Sha384, _>(label),
        HashAlg::Sha512 => rsa::Oaep::new_with_label::<sha2::Sha512, _>(label),
        other => return Err(SeedError::UnsupportedHash(other)),
    };
    let encrypted = key
        .encrypt(&mut RngRef(rng), padding, &seed)
        .map_err(SeedError::RsaEncrypt)?;
    Ok(Seed { seed, encrypted })
}

/// Lets a `?Sized` RNG reference be passed where a sized `CryptoRngCore` is required.
struct RngRef<'a, R: ?Sized>(&'a mut R);

impl<R: CryptoRngCore + ?Sized> rand_core::RngCore for RngRef<'_, R> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.try_fill_bytes(dest)
    }
}

impl<R: CryptoRngCore + ?Sized> rand_core::CryptoRng for RngRef<'_, R> {}
