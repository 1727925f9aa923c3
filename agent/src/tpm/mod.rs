//! The agent's view of a TPM: one trait, [`Tpm`], with a tss-esapi implementation
//! ([`esapi::EsapiTpm`]) and a software one for unit tests and simulations (`memory::MemoryTpm`,
//! compiled only for tests or with the `memory-tpm` feature: never in the shipped binary).
//!
//! tss-esapi calls block and take `&mut`, so production code never holds a TPM directly: it runs the
//! implementation on a dedicated thread ([`worker::TpmClient`]) and sends it requests over a
//! channel. Values cross this boundary as TPM wire formats (marshalled `TPM2B_PUBLIC`,
//! `TPMS_ATTEST`, `TPMT_SIGNATURE`), so `vouch-attest` can check them without a TPM library.

pub mod esapi;
#[cfg(any(test, feature = "memory-tpm"))]
pub mod memory;
pub mod relay;
pub mod tcti;
pub mod tls;
pub mod tss;
pub mod worker;

use std::path::PathBuf;
use vouch_attest::{HashAlg, PcrBanks};
use zeroize::Zeroizing;

pub use tcti::Tcti;
pub use tls::{Certification, TlsKey};
pub use tss::TssError;
pub use vouch_attest::tpm::selection::MAX_PCR;
pub use vouch_attest::tpm::PcrSelection;

/// What `tpm info` reports about the chip.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TpmInfo {
    /// TPM_PT_MANUFACTURER as its four ASCII characters (e.g. `IBM`, `INTC`).
    pub manufacturer: String,
    /// TPM_PT_VENDOR_STRING_1..4 concatenated.
    pub vendor: String,
    /// TPM_PT_FIRMWARE_VERSION_1 and _2 as two hex words (`20191023.00163636`); vendor-defined.
    pub firmware_version: String,
    /// Raw 64-bit firmware version (as in TPMS_ATTEST.firmwareVersion).
    pub firmware_version_raw: u64,
    /// Active PCR banks.
    pub pcr_banks: Vec<HashAlg>,
}

/// Endorsement key algorithms the agent creates from the TCG default templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum EkAlg {
    /// ECC NIST P-256, template L-2.
    EccP256,
    /// RSA 2048, template L-1.
    Rsa2048,
}

impl EkAlg {
    /// Short name used in output.
    pub fn name(self) -> &'static str {
        match self {
            EkAlg::EccP256 => "ecc-p256",
            EkAlg::Rsa2048 => "rsa-2048",
        }
    }
}

/// An endorsement key: its algorithm and public area (marshalled TPM2B_PUBLIC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndorsementKey {
    /// Which template it was created from.
    pub alg: EkAlg,
    /// Marshalled TPM2B_PUBLIC.
    pub public: Vec<u8>,
}

/// An EK certificate found in TPM NV storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EkCertificate {
    /// NV index it was read from (0x01c00002, 0x01c0000a, 0x01c00012...).
    pub nv_index: u32,
    /// DER-encoded X.509 certificate (trailing NV padding removed).
    pub der: Vec<u8>,
}

/// The attestation key's public part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationKey {
    /// Marshalled TPM2B_PUBLIC.
    pub public: Vec<u8>,
}

/// A quote and the PCR values it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    /// Marshalled TPMS_ATTEST.
    pub attest: Vec<u8>,
    /// Marshalled TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// The selected PCR values, read right after the quote (and checked against its digest by the
    /// verifier, so a PCR change in between is detected, never hidden).
    pub pcrs: PcrBanks,
}

/// What the agent needs from a TPM. Every call may block.
pub trait Tpm: Send {
    /// Manufacturer, firmware version and active banks.
    fn info(&mut self) -> Result<TpmInfo, TpmError>;
    /// The endorsement key of the given template, created in the endorsement hierarchy.
    fn endorsement_key(&mut self, alg: EkAlg) -> Result<EndorsementKey, TpmError>;
    /// Every EK certificate stored in the TCG NV indices.
    fn ek_certificates(&mut self) -> Result<Vec<EkCertificate>, TpmError>;
    /// The attestation key, created on first use and the same on every later call and run.
    fn attestation_key(&mut self) -> Result<AttestationKey, TpmError>;
    /// Reads PCR values.
    fn pcr_read(&mut self, selection: &PcrSelection) -> Result<PcrBanks, TpmError>;
    /// Extends one PCR in the given banks.
    fn pcr_extend(&mut self, pcr: u32, digests: &[(HashAlg, Vec<u8>)]) -> Result<(), TpmError>;
    /// Quotes the selected PCRs with the attestation key over `nonce`.
    fn quote(&mut self, nonce: &[u8], selection: &PcrSelection) -> Result<Quote, TpmError>;
    /// TPM2_ActivateCredential with the EK of template `ek` and the AK: returns the secret a
    /// verifier protected with `vouch_attest::credential::make_credential`. Both arguments are
    /// size-prefixed (TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET).
    fn activate_credential(
        &mut self,
        ek: EkAlg,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, TpmError>;
    /// The TPM-resident TLS client key, created on first use and the same on every later call.
    fn tls_key(&mut self) -> Result<TlsKey, TpmError>;
    /// TPM2_Certify of the TLS key by the AK over `qualifying_data` (at most 64 bytes).
    fn certify_tls_key(&mut self, qualifying_data: &[u8]) -> Result<Certification, TpmError>;
    /// Signs a SHA-256 digest with the TLS key; returns a DER ECDSA-Sig-Value.
    fn sign_tls(&mut self, digest: &[u8]) -> Result<Vec<u8>, TpmError>;
    /// Seals `secret` (1 to 128 bytes) under the SRK with the given policy. The secret crosses
    /// the TPM bus only encrypted (salted session, parameter encryption).
    fn seal(
        &mut self,
        secret: &[u8],
        policy: &crate::seal::SealPolicy,
    ) -> Result<crate::seal::SealedObject, TpmError>;
    /// Unseals a sealed object: satisfies its policy with the current PCR values (and, for
    /// fleet-authorized objects, the signed policy `authorization`). A changed bound PCR gives
    /// [`crate::seal::PolicyError::BootStateChanged`] (as [`TpmError::Policy`]).
    fn unseal(
        &mut self,
        sealed: &crate::seal::SealedObject,
        authorization: Option<&vouch_attest::policy_digest::SignedPolicy>,
    ) -> Result<Zeroizing<Vec<u8>>, TpmError>;
    /// Seals a 32-byte `secret` the way systemd-cryptenroll 252 does for its `systemd-tpm2`
    /// token: under systemd's ECC primary template, with TPM2_PolicyPCR over `pcrs` of `bank`
    /// at their current values ([`crate::volume::systemd_token`]).
    fn seal_systemd(
        &mut self,
        secret: &[u8],
        bank: HashAlg,
        pcrs: &[u32],
    ) -> Result<crate::volume::systemd_token::SystemdSeal, TpmError>;
    /// Unseals a secret sealed by systemd (or [`Tpm::seal_systemd`]). A policy digest that
    /// differs from the token's gives [`TpmError::SystemdPolicyMismatch`].
    fn unseal_systemd(
        &mut self,
        seal: &crate::volume::systemd_token::SystemdSeal,
    ) -> Result<Zeroizing<Vec<u8>>, TpmError>;
}

/// Errors of TPM operations, one variant per operation.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// The TCTI could not be loaded or the TPM did not answer.
    #[error("cannot reach a TPM through TCTI {tcti}")]
    Connect {
        tcti: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// TPM2_GetCapability failed.
    #[error("reading TPM properties failed")]
    Capability(#[source] TssError),
    /// Creating or persisting the storage root key failed.
    #[error("the storage root key at 0x81000001 is unusable")]
    StorageRootKey(#[source] TssError),
    /// Creating the endorsement key failed.
    #[error("creating the {alg} endorsement key failed", alg = alg.name())]
    EndorsementKey {
        alg: EkAlg,
        #[source]
        source: TssError,
    },
    /// Reading an EK certificate from NV failed.
    #[error("reading EK certificate at NV index 0x{index:08x} failed")]
    EkCertificate {
        index: u32,
        #[source]
        source: TssError,
    },
    /// Creating or loading the attestation key failed.
    #[error("the attestation key is unusable")]
    AttestationKey(#[source] TssError),
    /// The key blobs under the state directory could not be read or written.
    #[error("{key} state {path}")]
    KeyState {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Stored key blobs are not valid TPM structures.
    #[error("{key} state {path} is corrupt")]
    KeyStateCorrupt {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: TssError,
    },
    /// TPM2_PCR_Read failed.
    #[error("reading PCRs failed")]
    PcrRead(#[source] TssError),
    /// TPM2_PCR_Extend failed or the arguments were invalid.
    #[error("extending PCR {pcr} failed")]
    PcrExtend {
        pcr: u32,
        #[source]
        source: TssError,
    },
    /// TPM2_Quote failed.
    #[error("quote failed")]
    Quote(#[source] TssError),
    /// Marshalling a TPM structure failed.
    #[error("marshalling {what} failed")]
    Marshal {
        what: &'static str,
        #[source]
        source: TssError,
    },
    /// A credential blob or encrypted secret is not a size-prefixed TPM structure.
    #[error("{what} of {len} bytes is not a well-formed size-prefixed TPM structure")]
    CredentialFormat { what: &'static str, len: usize },
    /// TPM2_ActivateCredential (or the EK policy session it needs) failed.
    #[error("activating the credential failed")]
    ActivateCredential(#[source] TssError),
    /// The in-memory TPM refused a credential (wrong AK name, tampered blob, bad format).
    #[cfg(any(test, feature = "memory-tpm"))]
    #[error("in-memory TPM: activating the credential failed")]
    MemoryCredential(#[source] vouch_attest::credential::CredentialError),
    /// Creating or loading the TLS key failed.
    #[error("the TLS key is unusable")]
    TlsKey(#[source] TssError),
    /// TPM2_Certify of the TLS key failed.
    #[error("certifying the TLS key failed")]
    Certify(#[source] TssError),
    /// TPM2_Sign with the TLS key failed.
    #[error("signing with the TLS key failed")]
    Sign(#[source] TssError),
    /// The digest to sign is not a SHA-256 digest.
    #[error("the TLS key signs 32-byte SHA-256 digests, got {len} bytes")]
    SignDigest { len: usize },
    /// The TPM returned a signature that is not ECDSA over P-256.
    #[error("the TPM returned a TLS signature that is not a P-256 ECDSA signature")]
    SignatureFormat,
    /// The seal policy refused the operation (digest, signed policy, boot state): see
    /// [`crate::seal::PolicyError`].
    #[error(transparent)]
    Policy(#[from] crate::seal::PolicyError),
    /// The secret to seal is empty or longer than 128 bytes.
    #[error("the secret is {len} bytes; a TPM seals 1 to 128 bytes")]
    SecretSize { len: usize },
    /// Creating the sealed object (or its salted session) failed.
    #[error("sealing the secret failed")]
    Seal(#[source] TssError),
    /// The sealed object's blobs are not valid TPM structures.
    #[error("sealed object {what} is corrupt")]
    SealedCorrupt {
        what: &'static str,
        #[source]
        source: TssError,
    },
    /// Loading the sealed object, its policy session or TPM2_Unseal failed.
    #[error("unsealing failed")]
    Unseal(#[source] TssError),
    /// TPM2_VerifySignature refused the signed policy's approval signature.
    #[error("the TPM refused the signed policy's approval signature")]
    ApprovalRefused(#[source] TssError),
    /// The in-memory TPM refused an approval signature.
    #[cfg(any(test, feature = "memory-tpm"))]
    #[error("in-memory TPM: the approval signature does not verify with the fleet key")]
    MemoryApproval(#[source] vouch_attest::policy_digest::PolicyDigestError),
    /// The software TPM was asked for something it does not model.
    #[cfg(any(test, feature = "memory-tpm"))]
    #[error("in-memory TPM: {0}")]
    Memory(&'static str),
    /// Creating the primary key of systemd's template failed.
    #[error("creating the primary key of systemd's template failed")]
    SystemdPrimary(#[source] TssError),
    /// Sealing a secret for a systemd-tpm2 token failed.
    #[error("sealing the systemd-tpm2 secret failed")]
    SystemdSeal(#[source] TssError),
    /// Loading or unsealing the object of a systemd-tpm2 token failed.
    #[error("unsealing the systemd-tpm2 token's secret failed")]
    SystemdUnseal(#[source] TssError),
    /// The PCR policy digest of the current boot differs from the token's `tpm2-policy-hash`.
    #[error("the current values of PCRs {selection} do not give the systemd-tpm2 token's policy hash: the boot state changed since enrolment")]
    SystemdPolicyMismatch { selection: String },
    /// The TPM worker thread is gone (it panicked or was shut down).
    #[error("the TPM worker thread has stopped")]
    WorkerGone,
}

impl TpmError {
    /// True when the TPM could not be reached at all (exit code `NO_TPM`).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, TpmError::Connect { .. })
    }
}
