//! Verification of a TPM2_Certify of the device's TLS client key by its AK: the signature is
//! the AK's, the attestation certifies exactly this key's Name over the verifier's qualifying
//! data, and the key's attributes prove it was generated inside the TPM, cannot leave it and
//! can only sign (so a certificate issued for it binds a TPM-resident key).

use crate::quote::{AkError, AkVerifier, CheckFailure};
use crate::tpm::attest::{unwrap_attest, Attest, AttestBody, AttestError, TPM_GENERATED_VALUE};
use crate::tpm::attrs::ObjectAttributes;
use crate::tpm::public::{PublicError, TpmPublic};
use crate::tpm::signature::{Signature, SignatureError};
use thiserror::Error;

/// Why a certification was refused. Each variant names the one thing that was wrong.
#[derive(Debug, Error)]
pub enum CertificationError {
    /// The AK public area cannot be used as a verification key.
    #[error("AK public key cannot be used to verify")]
    AkKey(#[source] AkError),
    /// The AK lacks attributes every AK must have.
    #[error("AK is missing required attributes: {}", .0.join(", "))]
    AkAttributes(Vec<&'static str>),
    /// The TLS key's Name cannot be computed.
    #[error("TLS key public area has no Name")]
    TlsKey(#[source] PublicError),
    /// The signature bytes are not a TPMT_SIGNATURE.
    #[error("certification signature is not a TPMT_SIGNATURE")]
    SignatureFormat(#[source] SignatureError),
    /// The signature does not verify with the AK over the attestation.
    #[error("certification signature is not the AK's")]
    Signature(#[source] CheckFailure),
    /// The attestation bytes are not a TPMS_ATTEST.
    #[error("certification attestation is not a TPMS_ATTEST")]
    AttestFormat(#[source] AttestError),
    /// The attestation does not start with TPM_GENERATED_VALUE.
    #[error("attestation magic {0:#010x} is not TPM_GENERATED_VALUE (0xff544347)")]
    Magic(u32),
    /// The attestation is not a TPM2_Certify.
    #[error("attestation type {0:#06x} is not TPM_ST_ATTEST_CERTIFY (0x8017)")]
    NotCertify(u16),
    /// extraData is not the qualifying data the verifier asked for.
    #[error(
        "qualifying data {} does not match the expected {}",
        hex::encode(found),
        hex::encode(expected)
    )]
    QualifyingData {
        /// What the attestation holds.
        found: Vec<u8>,
        /// What the verifier expected.
        expected: Vec<u8>,
    },
    /// The certified Name is not the TLS key's Name.
    #[error(
        "certified name {} is not the TLS key's name {}",
        hex::encode(certified),
        hex::encode(expected)
    )]
    NameMismatch {
        /// Name in the attestation.
        certified: Vec<u8>,
        /// Name of the TLS public area given.
        expected: Vec<u8>,
    },
    /// The TLS key has an attribute set that must be clear, or lacks one that must be set.
    #[error("TLS key attribute {attribute} must be {}", if *.required { "set" } else { "clear" })]
    TlsAttribute {
        /// TCG name of the attribute.
        attribute: &'static str,
        /// True when it must be set, false when it must be clear.
        required: bool,
    },
}

/// Attributes of a TPM-resident signing key: (bit, name, must be set).
const TLS_ATTRIBUTES: [(u32, &str, bool); 6] = [
    (ObjectAttributes::FIXED_TPM, "fixedTPM", true),
    (ObjectAttributes::FIXED_PARENT, "fixedParent", true),
    (
        ObjectAttributes::SENSITIVE_DATA_ORIGIN,
        "sensitiveDataOrigin",
        true,
    ),
    (ObjectAttributes::SIGN, "sign", true),
    (ObjectAttributes::DECRYPT, "decrypt", false),
    (ObjectAttributes::RESTRICTED, "restricted", false),
];

/// Checks a TPM2_Certify of `tls` by `ak`: `attest_bytes` (TPMS_ATTEST or TPM2B_ATTEST) signed
/// with `sig_bytes` (TPMT_SIGNATURE) by the AK, of type CERTIFY, extraData equal to
/// `expected_qualifying_data`, certifying `tls.name()`; and `tls` is fixedTPM, fixedParent,
/// sensitiveDataOrigin, sign, not decrypt and not restricted. Returns the first failure.
pub fn verify_certification(
    ak: &TpmPublic,
    tls: &TpmPublic,
    attest_bytes: &[u8],
    sig_bytes: &[u8],
    expected_qualifying_data: &[u8],
) -> Result<(), CertificationError> {
    let verifier = AkVerifier::from_tpm_public(ak).map_err(CertificationError::AkKey)?;
    if let Some(missing) = verifier.missing_attributes().filter(|m| !m.is_empty()) {
        return Err(CertificationError::AkAttributes(missing));
    }
    let signature = Signature::parse(sig_bytes).map_err(CertificationError::SignatureFormat)?;
    let (message, _) = unwrap_attest(attest_bytes);
    verifier
        .verify(message, &signature)
        .map_err(CertificationError::Signature)?;
    let attest = Attest::parse_bare(message).map_err(CertificationError::AttestFormat)?;
    if attest.magic != TPM_GENERATED_VALUE {
        return Err(CertificationError::Magic(attest.magic));
    }
    let AttestBody::Certify(info) = &attest.body else {
        return Err(CertificationError::NotCertify(attest.body.tag()));
    };
    if attest.extra_data != expected_qualifying_data {
        return Err(CertificationError::QualifyingData {
            found: attest.extra_data.clone(),
            expected: expected_qualifying_data.to_vec(),
        });
    }
    let name = tls.name().map_err(CertificationError::TlsKey)?;
    if info.name != name {
        return Err(CertificationError::NameMismatch {
            certified: info.name.clone(),
            expected: name,
        });
    }
    for (bit, attribute, required) in TLS_ATTRIBUTES {
        if (tls.attributes.0 & bit != 0) != required {
            return Err(CertificationError::TlsAttribute {
                attribute,
                required,
            });
        }
    }
    Ok(())
}
