//! Credential protection (TPM 2.0 Part 1, "Credential Protection"; Part 3, TPM2_MakeCredential)
//! done in pure Rust by the verifier, and the check of a TPM2_Certify of the device's TLS key.
//!
//! [`make_credential`] protects a secret so that only the TPM holding the EK can recover it, and
//! only while the object with the given Name (the AK) is loaded on it: the fleet sends the result
//! to the agent, whose TPM2_ActivateCredential returns the secret. It is byte-compatible with
//! `tpm2_makecredential` and a TPM's own TPM2_MakeCredential, for ECC NIST P-256 and RSA EKs.
//!
//! [`activate_with_ecc_key`] is the TPM side for software EKs (test doubles), and
//! [`verify_certification`] checks that a TLS key is TPM-resident and certified by the AK.

mod blob;
mod certify;
pub mod kdf;
mod seed;

pub use blob::BlobError;
pub use certify::{verify_certification, CertificationError};
pub use seed::{SeedError, IDENTITY};

use crate::alg::HashAlg;
use crate::tpm::public::{PublicParams, TpmPublic};
use crate::tpm::wire::{Reader, WireError, Writer};
use crate::tpm::SymDef;
use rand_core::CryptoRngCore;
use thiserror::Error;
use zeroize::Zeroizing;

/// Magic number of the credential file `tpm2_makecredential` writes.
pub const TOOLS_MAGIC: u32 = 0xBADC_C0DE;
/// Version of that file format.
pub const TOOLS_VERSION: u32 = 1;

/// Errors making or opening a credential.
#[derive(Debug, Error)]
pub enum CredentialError {
    /// TPM2_MakeCredential needs a restricted decryption key (a storage key such as the EK).
    #[error("EK is not a restricted decryption key (restricted={restricted}, decrypt={decrypt})")]
    EkNotStorageKey {
        /// restricted is set.
        restricted: bool,
        /// decrypt is set.
        decrypt: bool,
    },
    /// The EK's name algorithm is not usable.
    #[error("EK name algorithm {0} is not supported (SHA-1/256/384/512)")]
    NameAlg(HashAlg),
    /// The AK Name is not a hash algorithm id followed by a digest of that algorithm.
    #[error("object name of {len} bytes is not a hash algorithm id followed by its digest")]
    ObjectName {
        /// Its length.
        len: usize,
    },
    /// The secret does not fit the TPM2B_DIGEST of the EK's name algorithm.
    #[error("credential secret is {len} bytes; it must be 1 to {max} bytes (EK name algorithm digest size)")]
    SecretSize {
        /// Its length.
        len: usize,
        /// The digest size of the EK's name algorithm.
        max: usize,
    },
    /// The seed could not be made, encrypted or recovered.
    #[error("cannot make or recover the credential seed")]
    Seed(#[from] SeedError),
    /// The credential blob could not be built or opened.
    #[error("cannot build or open the credential blob")]
    Blob(#[from] BlobError),
    /// The EK given with a private key is not an ECC key.
    #[error("a software EK must be ECC P-256")]
    SoftwareEkNotEcc,
    /// The TPM2B_ENCRYPTED_SECRET is malformed.
    #[error("malformed TPM2B_ENCRYPTED_SECRET")]
    EncryptedSecret(#[source] WireError),
    /// A tpm2-tools credential file is malformed.
    #[error("malformed tpm2-tools credential file")]
    ToolsFile(#[source] WireError),
    /// A tpm2-tools credential file has the wrong magic or version.
    #[error("tpm2-tools credential file header {magic:#010x} version {version}, expected {TOOLS_MAGIC:#010x} version {TOOLS_VERSION}")]
    ToolsHeader {
        /// Magic found.
        magic: u32,
        /// Version found.
        version: u32,
    },
}

/// The EK's name algorithm and symmetric definition, after the checks TPM2_MakeCredential makes.
fn ek_parameters(ek: &TpmPublic) -> Result<(HashAlg, SymDef, usize), CredentialError> {
    let a = ek.attributes;
    if !a.restricted() || !a.decrypt() {
        return Err(CredentialError::EkNotStorageKey {
            restricted: a.restricted(),
            decrypt: a.decrypt(),
        });
    }
    let name_alg = ek.name_alg;
    let digest = name_alg
        .digest_len()
        .filter(|_| kdf::supported(name_alg))
        .ok_or(CredentialError::NameAlg(name_alg))?;
    let sym = match &ek.params {
        PublicParams::Ecc(p) => p.symmetric,
        PublicParams::Rsa(p) => p.symmetric,
    };
    blob::key_bits(sym)?;
    Ok((name_alg, sym, digest))
}

fn check_name(name: &[u8]) -> Result<(), CredentialError> {
    let bad = CredentialError::ObjectName { len: name.len() };
    let (alg, digest) = name.split_first_chunk::<2>().ok_or(bad)?;
    match HashAlg::from_id(u16::from_be_bytes(*alg)).digest_len() {
        Some(n) if n == digest.len() => Ok(()),
        _ => Err(CredentialError::ObjectName { len: name.len() }),
    }
}

/// TPM2_MakeCredential in software: protects `secret` (1 to digest-size bytes) for the object
/// named `ak_name` on the TPM holding `ek`. Returns (TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET),
/// both with their u16 size prefix, as TPM2_ActivateCredential takes them.
pub fn make_credential<R: CryptoRngCore + ?Sized>(
    ek: &TpmPublic,
    ak_name: &[u8],
    secret: &[u8],
    rng: &mut R,
) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    let (name_alg, sym, max) = ek_parameters(ek)?;
    check_name(ak_name)?;
    if secret.is_empty() || secret.len() > max {
        return Err(CredentialError::SecretSize {
            len: secret.len(),
            max,
        });
    }
    let seed = match &ek.params {
        PublicParams::Ecc(p) => seed::ecc_seed(rng, name_alg, p)?,
        PublicParams::Rsa(p) => seed::rsa_seed(rng, name_alg, p)?,
    };
    let id_object = blob::protect(name_alg, sym, &seed.seed, ak_name, secret)?;
    let mut w = Writer::new();
    w.tpm2b(&seed.encrypted);
    Ok((id_object, w.into_bytes()))
}

/// TPM2_ActivateCredential in software for an ECC P-256 EK whose private key is known (the
/// in-memory test TPM): recovers the seed, checks the integrity HMAC against `ak_name` and
/// returns the secret.
pub fn activate_with_ecc_key(
    ek: &TpmPublic,
    ek_key: &p256::SecretKey,
    ak_name: &[u8],
    credential_blob: &[u8],
    encrypted_secret: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CredentialError> {
    let (name_alg, sym, _) = ek_parameters(ek)?;
    check_name(ak_name)?;
    let PublicParams::Ecc(params) = &ek.params else {
        return Err(CredentialError::SoftwareEkNotEcc);
    };
    let mut r = Reader::new(encrypted_secret);
    let inner = r
        .tpm2b(usize::from(u16::MAX), "TPM2B_ENCRYPTED_SECRET.size")
        .map_err(CredentialError::EncryptedSecret)?;
    r.finish("TPM2B_ENCRYPTED_SECRET")
        .map_err(CredentialError::EncryptedSecret)?;
    let seed = seed::ecc_recover(name_alg, params, ek_key, inner)?;
    Ok(blob::open(name_alg, sym, &seed, ak_name, credential_blob)?)
}

/// Splits the file `tpm2_makecredential -o` writes (magic, version, TPM2B_ID_OBJECT,
/// TPM2B_ENCRYPTED_SECRET) into the two size-prefixed structures.
pub fn parse_tools_file(data: &[u8]) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    let mut r = Reader::new(data);
    let wire = CredentialError::ToolsFile;
    let magic = r.u32("credential file magic").map_err(wire)?;
    let version = r.u32("credential file version").map_err(wire)?;
    if magic != TOOLS_MAGIC || version != TOOLS_VERSION {
        return Err(CredentialError::ToolsHeader { magic, version });
    }
    let mut framed = |field| -> Result<Vec<u8>, CredentialError> {
        let body = r.tpm2b(usize::from(u16::MAX), field).map_err(wire)?;
        let mut w = Writer::new();
        w.tpm2b(body);
        Ok(w.into_bytes())
    };
    let blob = framed("TPM2B_ID_OBJECT")?;
    let secret = framed("TPM2B_ENCRYPTED_SECRET")?;
    r.finish("credential file").map_err(wire)?;
    Ok((blob, secret))
}

/// Writes the file format `tpm2_activatecredential -i` reads.
pub fn to_tools_file(credential_blob: &[u8], encrypted_secret: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(TOOLS_MAGIC);
    w.u32(TOOLS_VERSION);
    w.bytes(credential_blob);
    w.bytes(encrypted_secret);
    w.into_bytes()
}
