//! Policy digests for sealing secrets to a TPM's boot state, computed without a TPM.
//!
//! A sealed object's `authPolicy` is the digest a policy session must reach before TPM2_Unseal
//! is allowed. This module computes the two kinds Vouch uses, bit-exact with the TPM 2.0 Library
//! (Part 3, "TPM2_PolicyPCR" and "TPM2_PolicyAuthorize"):
//!
//! - [`policy_pcr`]: `H(old || TPM_CC_PolicyPCR || TPML_PCR_SELECTION || H(PCR values))`, the
//!   values concatenated in selection order (banks as listed, PCRs ascending);
//! - [`policy_authorize`]: `H(H(zeros || TPM_CC_PolicyAuthorize || keyName) || policyRef)`, which
//!   lets the holder of a signing key approve any policy later ([`approval_digest`] is the
//!   `aHash` it signs, and [`verify_approval`] checks such a signature in software).
//!
//! [`signed`] is the file format in which the fleet hands an approved PCR policy to devices,
//! with a serial number covered by a second signature so that devices can refuse older files.
//! Every policy session here uses SHA-256, as Vouch's sealed objects do.

mod authorize;
mod pcr;
pub mod signed;

pub use authorize::{
    approval_digest, approval_message, fleet_key_public, policy_authorize, verify_approval,
    FLEET_KEY_ATTRIBUTES,
};
pub use pcr::{pcr_values_digest, policy_pcr};
pub use signed::{SignedPolicy, SignedPolicyError};

use crate::alg::HashAlg;
use thiserror::Error;

/// TPM_CC_PolicyPCR.
pub const TPM_CC_POLICY_PCR: u32 = 0x0000_017F;
/// TPM_CC_PolicyAuthorize.
pub const TPM_CC_POLICY_AUTHORIZE: u32 = 0x0000_016A;
/// Hash algorithm of every policy session Vouch starts.
pub const POLICY_ALG: HashAlg = HashAlg::Sha256;
/// Largest policyRef a TPM accepts (TPM2B_NONCE holds at most one SHA-512 digest).
pub const MAX_POLICY_REF: usize = 64;

/// Why a policy digest could not be computed or a policy approval not checked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyDigestError {
    /// The policy session's hash algorithm cannot be computed by this crate.
    #[error("policy hash algorithm {0} is not supported")]
    UnsupportedAlg(HashAlg),
    /// The previous policy digest has the wrong length for the session's hash.
    #[error("previous policy digest is {len} bytes, {alg} needs {want}")]
    PreviousLength {
        /// Session hash.
        alg: HashAlg,
        /// Length given.
        len: usize,
        /// Length needed.
        want: usize,
    },
    /// A selected PCR has no value.
    #[error("no value for selected PCR {bank}:{pcr}")]
    MissingPcr {
        /// Bank of the PCR.
        bank: HashAlg,
        /// PCR index.
        pcr: u32,
    },
    /// A PCR value's length does not match its bank.
    #[error("value of PCR {bank}:{pcr} is {len} bytes, the bank's digests are {want}")]
    PcrLength {
        /// Bank of the PCR.
        bank: HashAlg,
        /// PCR index.
        pcr: u32,
        /// Length given.
        len: usize,
        /// Length of the bank's digests.
        want: usize,
    },
    /// The selection selects no PCR at all.
    #[error("the PCR selection is empty")]
    EmptySelection,
    /// A PCR selection is malformed.
    #[error("invalid PCR selection")]
    Selection(#[from] crate::tpm::selection::SelectionError),
    /// The policyRef is longer than a TPM accepts.
    #[error("policyRef is {0} bytes, at most {MAX_POLICY_REF} allowed")]
    PolicyRefLength(usize),
    /// The fleet policy key is not an ECC P-256 key.
    #[error("the policy signing key must be ECC P-256")]
    KeyType,
    /// The key's public area could not be used (Name or point).
    #[error("policy signing key: {0}")]
    Key(String),
    /// The approval signature is not ECDSA-SHA256 with 32-byte integers.
    #[error("policy approval signature is {0}, expected ECDSA with SHA-256 over P-256")]
    SignatureScheme(&'static str),
    /// The approval signature does not verify with the key.
    #[error("policy approval signature does not verify with the policy signing key")]
    SignatureInvalid,
}

/// `H(parts...)` with the session hash, or the unsupported-algorithm error.
fn hash(alg: HashAlg, parts: &[&[u8]]) -> Result<Vec<u8>, PolicyDigestError> {
    alg.hash_parts(parts)
        .ok_or(PolicyDigestError::UnsupportedAlg(alg))
}

/// The all-zero digest a fresh policy session starts from.
pub fn initial(alg: HashAlg) -> Result<Vec<u8>, PolicyDigestError> {
    alg.digest_len()
        .map(|n| vec![0u8; n])
        .ok_or(PolicyDigestError::UnsupportedAlg(alg))
}
