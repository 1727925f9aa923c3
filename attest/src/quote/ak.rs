//! The attestation key: format detection for AK files and a pre-parsed signature verifier.

use super::checks::CheckFailure;
use crate::alg::HashAlg;
use crate::tpm::attrs::ObjectAttributes;
use crate::tpm::keys::{KeyError, PublicKey};
use crate::tpm::params::EccCurve;
use crate::tpm::public::{PublicError, PublicForm, TpmPublic};
use crate::tpm::signature::Signature;
// Quote signatures: AWS-LC on x86_64 (its P-256 verify is ~2.5 µs faster than ring's, the
// largest single cost of a verification: attest/BENCH.md), ring on other architectures.
#[cfg(target_arch = "x86_64")]
use aws_lc_rs::signature::{self as rs, UnparsedPublicKey, VerificationAlgorithm};
#[cfg(not(target_arch = "x86_64"))]
use ring::signature::{self as rs, UnparsedPublicKey, VerificationAlgorithm};
use serde::Serialize;
use spki::der::asn1::UintRef;
use spki::der::Encode;
use thiserror::Error;

/// Errors reading an AK public key.
#[derive(Debug, Error)]
pub enum AkError {
    /// A PEM or DER SubjectPublicKeyInfo could not be read.
    #[error("unusable {format:?} public key")]
    Spki {
        /// The format detected.
        format: AkFormat,
        /// What failed.
        #[source]
        source: KeyError,
    },
    /// A TPM public area could not be read.
    #[error("unusable TPM public area")]
    Tpm(#[source] PublicError),
    /// The PEM is not UTF-8 text.
    #[error("PEM public key is not valid UTF-8 text")]
    PemNotText,
    /// The key cannot be converted to the form the verifier needs.
    #[error("the AK cannot be used to verify")]
    Key(#[source] KeyError),
}

/// The encoding an AK was supplied in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AkFormat {
    /// PEM SubjectPublicKeyInfo.
    Pem,
    /// DER SubjectPublicKeyInfo.
    Der,
    /// TPM2B_PUBLIC.
    Tpm2bPublic,
    /// TPMT_PUBLIC.
    TpmtPublic,
}

/// An AK as read from a file: the plain key, and its TPM public area when one was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AkPublic {
    /// The key.
    pub key: PublicKey,
    /// The TPM public area (attributes, name algorithm), when known.
    pub tpm: Option<TpmPublic>,
    /// How it was encoded.
    pub format: AkFormat,
}

impl AkPublic {
    /// Reads PEM, DER SPKI, TPM2B_PUBLIC or TPMT_PUBLIC, detecting which: PEM starts with
    /// `-----BEGIN`, DER with a SEQUENCE tag 0x30 (which no TPM2B_PUBLIC of a supported size or
    /// TPMT_PUBLIC of type RSA/ECC can start with), anything else is a TPM public area.
    pub fn parse(data: &[u8]) -> Result<AkPublic, AkError> {
        let trimmed = data
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .and_then(|i| data.get(i..))
            .unwrap_or_default();
        if trimmed.starts_with(b"-----BEGIN") {
            let text = std::str::from_utf8(data).map_err(|_| AkError::PemNotText)?;
            let key = PublicKey::from_pem(text).map_err(|source| AkError::Spki {
                format: AkFormat::Pem,
                source,
            })?;
            return Ok(AkPublic {
                key,
                tpm: None,
                format: AkFormat::Pem,
            });
        }
        if data.first() == Some(&0x30) {
            let key = PublicKey::from_spki_der(data).map_err(|source| AkError::Spki {
                format: AkFormat::Der,
                source,
            })?;
            return Ok(AkPublic {
                key,
                tpm: None,
                format: AkFormat::Der,
            });
        }
        let (tpm, form) = TpmPublic::parse(data).map_err(AkError::Tpm)?;
        let key = tpm.key().map_err(AkError::Tpm)?;
        Ok(AkPublic {
            key,
            tpm: Some(tpm),
            format: match form {
                PublicForm::Bare => AkFormat::TpmtPublic,
                PublicForm::SizePrefixed => AkFormat::Tpm2bPublic,
            },
        })
    }
}

/// Verifies TPM signatures with one AK. Build once, verify many: the key is converted to the
/// form `ring` takes at construction, not per signature.
#[derive(Debug, Clone)]
pub struct AkVerifier {
    key: PublicKey,
    ring_key: Vec<u8>,
    attributes: Option<ObjectAttributes>,
}

/// Attributes every AK must have, with their names.
const REQUIRED: [(u32, &str); 3] = [
    (ObjectAttributes::RESTRICTED, "restricted"),
    (ObjectAttributes::SIGN, "sign"),
    (ObjectAttributes::FIXED_TPM, "fixedTPM"),
];

impl AkVerifier {
    /// A verifier for an AK read with [`AkPublic::parse`].
    pub fn new(ak: &AkPublic) -> Result<AkVerifier, AkError> {
        Ok(AkVerifier {
            key: ak.key.clone(),
            ring_key: ak.key.ring_public_key().map_err(AkError::Key)?,
            attributes: ak.tpm.as_ref().map(|t| t.attributes),
        })
    }

    /// A verifier for a TPM public area.
    pub fn from_tpm_public(public: &TpmPublic) -> Result<AkVerifier, AkError> {
        AkVerifier::new(&AkPublic {
            key: public.key().map_err(AkError::Tpm)?,
            tpm: Some(public.clone()),
            format: AkFormat::TpmtPublic,
        })
    }

    /// The key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The TPM object attributes, when the AK was given as a TPM public area.
    pub fn attributes(&self) -> Option<ObjectAttributes> {
        self.attributes
    }

    /// Names of required AK attributes (restricted, sign, fixedTPM) that are missing; `None`
    /// when the attributes are unknown.
    pub fn missing_attributes(&self) -> Option<Vec<&'static str>> {
        let a = self.attributes?;
        Some(
            REQUIRED
                .iter()
                .filter(|(bit, _)| a.0 & bit == 0)
                .map(|(_, n)| *n)
                .collect(),
        )
    }

    fn key_kind(&self) -> &'static str {
        match &self.key {
            PublicKey::Rsa { .. } => "rsa",
            PublicKey::Ec {
                curve: EccCurve::NistP256,
                ..
            } => "ec-p256",
            PublicKey::Ec {
                curve: EccCurve::NistP384,
                ..
            } => "ec-p384",
            PublicKey::Ec { .. } => "ec",
        }
    }

    fn algorithm(
        &self,
        sig: &Signature,
    ) -> Result<&'static dyn VerificationAlgorithm, CheckFailure> {
        let scheme = sig.scheme_name();
        let hash = sig.hash();
        let key = self.key_kind();
        let unsupported = CheckFailure::UnsupportedSignature { scheme, hash, key };
        let mismatch = CheckFailure::KeyMismatch { scheme, key };
        let is_rsa = matches!(self.key, PublicKey::Rsa { .. });
        Ok(match (sig, hash) {
            (Signature::Rsassa { .. }, _) if !is_rsa => return Err(mismatch),
            (Signature::Rsapss { .. }, _) if !is_rsa => return Err(mismatch),
            (Signature::Ecdsa { .. }, _) if is_rsa => return Err(mismatch),
            (Signature::Rsassa { .. }, HashAlg::Sha1) => {
                &rs::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
            }
            (Signature::Rsassa { .. }, HashAlg::Sha256) => &rs::RSA_PKCS1_2048_8192_SHA256,
            (Signature::Rsassa { .. }, HashAlg::Sha384) => &rs::RSA_PKCS1_2048_8192_SHA384,
            (Signature::Rsassa { .. }, HashAlg::Sha512) => &rs::RSA_PKCS1_2048_8192_SHA512,
            (Signature::Rsapss { .. }, HashAlg::Sha256) => &rs::RSA_PSS_2048_8192_SHA256,
            (Signature::Rsapss { .. }, HashAlg::Sha384) => &rs::RSA_PSS_2048_8192_SHA384,
            (Signature::Rsapss { .. }, HashAlg::Sha512) => &rs::RSA_PSS_2048_8192_SHA512,
            (Signature::Ecdsa { .. }, h) => match (key, h) {
                ("ec-p256", HashAlg::Sha256) => &rs::ECDSA_P256_SHA256_ASN1,
                ("ec-p256", HashAlg::Sha384) => &rs::ECDSA_P256_SHA384_ASN1,
                ("ec-p384", HashAlg::Sha256) => &rs::ECDSA_P384_SHA256_ASN1,
                ("ec-p384", HashAlg::Sha384) => &rs::ECDSA_P384_SHA384_ASN1,
                _ => return Err(unsupported),
            },
            _ => return Err(unsupported),
        })
    }

    /// Verifies `sig` over `message` (the bare TPMS_ATTEST bytes).
    pub fn verify(&self, message: &[u8], sig: &Signature) -> Result<(), CheckFailure> {
        let alg = self.algorithm(sig)?;
        let invalid = CheckFailure::SignatureInvalid {
            scheme: sig.scheme_name(),
            hash: sig.hash(),
        };
        let der;
        let sig_bytes: &[u8] = match sig {
            Signature::Rsassa { sig, .. } | Signature::Rsapss { sig, .. } => sig,
            Signature::Ecdsa { r, s, .. } => {
                let ints = match (UintRef::new(r), UintRef::new(s)) {
                    (Ok(r), Ok(s)) => [r, s],
                    _ => return Err(invalid),
                };
                der = ints.to_der().map_err(|_| invalid.clone())?;
                &der
            }
        };
        UnparsedPublicKey::new(alg, &self.ring_key)
            .verify(message, sig_bytes)
            .map_err(|_| invalid)
    }
}
