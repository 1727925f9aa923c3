//! Secrets sealed to the TPM's boot state: what a sealed object is bound to, the policy digest
//! both TPM backends give it, and the checks both backends run before and after TPM2_Unseal.
//!
//! Two kinds of binding (see [`SealPolicy`]):
//! - **PolicyPCR**: the object's authPolicy is PolicyPCR over a selection (default sha256:7)
//!   holding the values current at sealing time (or given ones). Any change of a bound PCR makes
//!   unsealing fail until the PCRs hold those values again (next boot with the same state).
//! - **PolicyAuthorize**: the authPolicy is PolicyAuthorize(Name of the fleet's P-256 policy
//!   key, policyRef). Unsealing needs a [`SignedPolicy`] from the fleet approving the current PCR
//!   values; the fleet can approve the values of an update ahead of time, so the device keeps
//!   unlocking after it without re-sealing.
//!
//! [`blob`] is the file format of sealed objects, [`store`] keeps the newest signed policy the
//! agent was given (refusing older serials).

pub mod blob;
pub mod store;

use std::path::PathBuf;
use vouch_attest::policy_digest::{
    initial, policy_authorize, policy_pcr, PolicyDigestError, SignedPolicy, SignedPolicyError,
    POLICY_ALG,
};
use vouch_attest::tpm::{PcrSelection, TpmPublic};
use vouch_attest::PcrBanks;

/// Largest secret a TPM seals (MAX_SYM_DATA of the TPM 2.0 Library).
pub const MAX_SECRET: usize = 128;
/// Default policyRef of authorized seals.
pub const DEFAULT_POLICY_REF: &[u8] = b"vouch-seal";

/// What a secret is sealed to, as asked by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SealPolicy {
    /// PolicyPCR over `selection`, with the given values or (None) the current ones.
    Pcr {
        /// PCRs bound, in PolicyPCR order.
        selection: PcrSelection,
        /// Values to bind instead of the current ones.
        values: Option<PcrBanks>,
    },
    /// PolicyAuthorize by the fleet key (its public area, see
    /// `vouch_attest::policy_digest::fleet_key_public`) with `policy_ref`.
    Authorized {
        /// The fleet policy key.
        key: TpmPublic,
        /// The policyRef its approvals name (at most 64 bytes).
        policy_ref: Vec<u8>,
    },
}

/// What a sealed object is bound to, as recorded in its blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// PolicyPCR over `selection` holding `values`.
    Pcr {
        /// PCRs bound.
        selection: PcrSelection,
        /// The values bound (exactly the selected PCRs).
        values: PcrBanks,
    },
    /// PolicyAuthorize by `key` with `policy_ref`.
    Authorized {
        /// The fleet policy key.
        key: TpmPublic,
        /// The policyRef.
        policy_ref: Vec<u8>,
    },
}

/// A sealed object: its binding and the TPM blobs (no secret in clear).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedObject {
    /// What it is bound to.
    pub binding: Binding,
    /// The object's authPolicy (the digest of the binding).
    pub auth_policy: Vec<u8>,
    /// TPM2B_PUBLIC of the sealed data object.
    pub public: Vec<u8>,
    /// TPM2B_PRIVATE of the sealed data object (opaque; wrapped by the SRK).
    pub private: Vec<u8>,
}

/// Errors of sealing and unsealing above the TPM: files, formats, signed policies.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// A file could not be read.
    #[error("reading {path} failed")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("writing {path} failed")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An input file is larger than its format allows.
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    /// The secret is empty or longer than a TPM seals.
    #[error("the secret is {len} bytes; a TPM seals 1 to {MAX_SECRET} bytes")]
    SecretSize { len: usize },
    /// A sealed blob is malformed.
    #[error("sealed blob {path} is not valid")]
    Blob {
        path: PathBuf,
        #[source]
        source: blob::BlobError,
    },
    /// The PCR values file is malformed.
    #[error("PCR values {path} are not valid")]
    PcrValues {
        path: PathBuf,
        #[source]
        source: vouch_attest::pcrfile::PcrFileError,
    },
    /// The fleet policy key file is not a P-256 public key PEM.
    #[error("fleet policy key {path}: {detail}")]
    PolicyKey { path: PathBuf, detail: String },
    /// The policyRef is too long.
    #[error(transparent)]
    PolicyRef(PolicyDigestError),
    /// A signed policy file is malformed, tampered with or not signed by its key.
    #[error("signed policy {path} refused")]
    SignedPolicy {
        path: PathBuf,
        #[source]
        source: SignedPolicyError,
    },
    /// The signed policy's serial is older than the one the agent holds.
    #[error("signed policy serial {given} is older than serial {held} the agent already holds: refused (replaying an older approval is not allowed)")]
    OlderPolicy { given: u64, held: u64 },
    /// Two different signed policies carry the same serial.
    #[error("signed policy serial {serial} is already held with different content: refused")]
    SerialReused { serial: u64 },
    /// The blob needs a signed policy and none was given or stored.
    #[error("this secret is sealed to fleet-approved PCR policies and no signed policy is stored in {dir}: give one with --signed-policy")]
    NoSignedPolicy { dir: PathBuf },
    /// A signed policy does not name the blob's key or policyRef.
    #[error(transparent)]
    Mismatch(PolicyError),
}

/// What the seal policy itself refuses, whichever TPM backend asks: the checks of this module,
/// free of TPM operations (the TPM backends wrap it as `TpmError::Policy`).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Computing a seal policy digest failed (missing PCR value, bad key, long policyRef).
    #[error("computing the seal policy failed")]
    Digest(#[from] PolicyDigestError),
    /// A PCR the policy binds holds another value than the policy allows.
    #[error("the boot state changed since the secret was sealed or approved: the policy binds PCRs {bound} and {changed} now differ; unsealing refused")]
    BootStateChanged { bound: String, changed: String },
    /// A fleet-authorized object was unsealed without a signed policy.
    #[error("the secret is sealed to fleet-approved PCR policies: a signed policy is needed")]
    AuthorizationMissing,
    /// The signed policy is signed by another key than the one the object is sealed to.
    #[error("the signed policy is signed by key {signed}, but the secret is sealed to fleet key {sealed}")]
    AuthorizationKey { sealed: String, signed: String },
    /// The signed policy names another policyRef.
    #[error("the signed policy is for policyRef {signed:?}, the secret is sealed with policyRef {sealed:?}")]
    AuthorizationRef { sealed: String, signed: String },
}

/// The binding a policy resolves to, reading current PCR values with `read` when needed.
pub fn resolve<E: From<PolicyError>>(
    policy: &SealPolicy,
    read: impl FnOnce(&PcrSelection) -> Result<PcrBanks, E>,
) -> Result<Binding, E> {
    match policy {
        SealPolicy::Pcr { selection, values } => {
            let source = match values {
                Some(v) => v.clone(),
                None => read(selection)?,
            };
            let mut selected = PcrBanks::new();
            for (bank, pcr) in selection.iter() {
                let v = source.get(bank, pcr).ok_or(PolicyError::Digest(
                    PolicyDigestError::MissingPcr { bank, pcr },
                ))?;
                selected.insert(bank, pcr, v.to_vec());
            }
            Ok(Binding::Pcr {
                selection: selection.clone(),
                values: selected,
            })
        }
        SealPolicy::Authorized { key, policy_ref } => Ok(Binding::Authorized {
            key: key.clone(),
            policy_ref: policy_ref.clone(),
        }),
    }
}

/// The authPolicy of a binding (SHA-256 policy session).
pub fn auth_policy(binding: &Binding) -> Result<Vec<u8>, PolicyError> {
    let start = initial(POLICY_ALG)?;
    match binding {
        Binding::Pcr { selection, values } => policy_pcr(POLICY_ALG, &start, selection, values),
        Binding::Authorized { key, policy_ref } => {
            let name = key
                .name()
                .map_err(|e| PolicyDigestError::Key(e.to_string()))?;
            policy_authorize(POLICY_ALG, &name, policy_ref)
        }
    }
    .map_err(PolicyError::Digest)
}

/// Checks that `authorization` approves policies for `key` and `policy_ref`.
pub fn check_authorization<'a>(
    key: &TpmPublic,
    policy_ref: &[u8],
    authorization: Option<&'a SignedPolicy>,
) -> Result<&'a SignedPolicy, PolicyError> {
    let auth = authorization.ok_or(PolicyError::AuthorizationMissing)?;
    let name = |k: &TpmPublic| k.name().map(hex::encode).unwrap_or_default();
    if auth.draft.key != *key {
        return Err(PolicyError::AuthorizationKey {
            sealed: name(key),
            signed: name(&auth.draft.key),
        });
    }
    if auth.draft.policy_ref != policy_ref {
        return Err(PolicyError::AuthorizationRef {
            sealed: String::from_utf8_lossy(policy_ref).into_owned(),
            signed: String::from_utf8_lossy(&auth.draft.policy_ref).into_owned(),
        });
    }
    Ok(auth)
}

/// Compares `current` with `expected` over `selection`: `Ok` when they match, else the
/// boot-state error naming the bound selection and the PCRs that differ.
pub fn compare_boot_state(
    selection: &PcrSelection,
    expected: &PcrBanks,
    current: &PcrBanks,
) -> Result<(), PolicyError> {
    let changed: Vec<String> = selection
        .iter()
        .filter(|(bank, pcr)| expected.get(*bank, *pcr) != current.get(*bank, *pcr))
        .map(|(bank, pcr)| format!("{}:{pcr}", bank.name()))
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    Err(PolicyError::BootStateChanged {
        bound: selection.to_string(),
        changed: changed.join(","),
    })
}

#[cfg(test)]
mod tests;
