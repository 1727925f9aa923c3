//! Sealing on the in-memory TPM, with the same policy semantics as a real TPM: the secret stays
//! inside the instance (the "private" part of a blob is only a random handle to it, like a
//! fixedTPM object no other TPM can load), and unsealing recomputes the policy session digest
//! from the current PCR values — and, for fleet-authorized objects, verifies the approval
//! signature as TPM2_VerifySignature would — before comparing it with the object's authPolicy.

use super::MemoryTpm;
use crate::seal::{
    auth_policy, check_authorization, compare_boot_state, resolve, Binding, PolicyError,
    SealPolicy, SealedObject, MAX_SECRET,
};
use crate::tpm::{Tpm, TpmError};
use rand_core::{OsRng, RngCore};
use std::collections::BTreeMap;
use vouch_attest::policy_digest::{
    initial, policy_authorize, policy_pcr, verify_approval, SignedPolicy, POLICY_ALG,
};
use vouch_attest::tpm::wire::{size_prefixed, strip_size_prefix, Writer};
use vouch_attest::tpm::ObjectAttributes;
use zeroize::Zeroizing;

/// TPM_ALG_KEYEDHASH.
const ALG_KEYEDHASH: u16 = 0x0008;
/// TPM_ALG_NULL.
const ALG_NULL: u16 = 0x0010;

/// One sealed object held by the software TPM.
struct Held {
    public: Vec<u8>,
    auth_policy: Vec<u8>,
    secret: Zeroizing<Vec<u8>>,
}

/// Sealed objects of one in-memory TPM, by random handle. Never printed.
#[derive(Default)]
pub struct SealedStore {
    objects: BTreeMap<Vec<u8>, Held>,
}

/// A KEYEDHASH TPM2B_PUBLIC as a TPM would report the sealed object (random unique field).
fn sealed_public(auth_policy: &[u8]) -> Vec<u8> {
    let mut unique = [0u8; 32];
    OsRng.fill_bytes(&mut unique);
    let mut w = Writer::new();
    w.u16(ALG_KEYEDHASH);
    w.u16(POLICY_ALG.id());
    w.u32(
        ObjectAttributes::FIXED_TPM
            | ObjectAttributes::FIXED_PARENT
            | ObjectAttributes::NO_DA
            | ObjectAttributes::ADMIN_WITH_POLICY,
    );
    w.tpm2b(auth_policy);
    w.u16(ALG_NULL);
    w.tpm2b(&unique);
    size_prefixed(&w.into_bytes())
}

/// See [`crate::tpm::Tpm::seal`].
pub fn seal(
    tpm: &mut MemoryTpm,
    secret: &[u8],
    policy: &SealPolicy,
) -> Result<SealedObject, TpmError> {
    if secret.is_empty() || secret.len() > MAX_SECRET {
        return Err(TpmError::SecretSize { len: secret.len() });
    }
    let binding = resolve(policy, |sel| tpm.pcr_read(sel))?;
    let digest = auth_policy(&binding)?;
    let public = sealed_public(&digest);
    let mut handle = vec![0u8; 16];
    OsRng.fill_bytes(&mut handle);
    tpm.sealed.objects.insert(
        handle.clone(),
        Held {
            public: public.clone(),
            auth_policy: digest.clone(),
            secret: Zeroizing::new(secret.to_vec()),
        },
    );
    Ok(SealedObject {
        binding,
        auth_policy: digest,
        public,
        private: size_prefixed(&handle),
    })
}

/// See [`crate::tpm::Tpm::unseal`].
pub fn unseal(
    tpm: &mut MemoryTpm,
    sealed: &SealedObject,
    authorization: Option<&SignedPolicy>,
) -> Result<Zeroizing<Vec<u8>>, TpmError> {
    let handle = strip_size_prefix(&sealed.private).ok_or(TpmError::Memory(
        "sealed object private part is not a TPM2B",
    ))?;
    let (public, object_policy) = match tpm.sealed.objects.get(handle) {
        Some(h) => (h.public.clone(), h.auth_policy.clone()),
        None => {
            return Err(TpmError::Memory(
                "sealed object was not created by this TPM",
            ))
        }
    };
    if public != sealed.public {
        return Err(TpmError::Memory(
            "sealed object public part does not match its private part",
        ));
    }
    let start = initial(POLICY_ALG).map_err(|e| TpmError::Policy(PolicyError::Digest(e)))?;
    let session = match &sealed.binding {
        Binding::Pcr { selection, values } => {
            let current = tpm.pcr_read(selection)?;
            let digest = policy_pcr(POLICY_ALG, &start, selection, &current)
                .map_err(|e| TpmError::Policy(PolicyError::Digest(e)))?;
            if digest != object_policy {
                compare_boot_state(selection, values, &current)?;
            }
            digest
        }
        Binding::Authorized { key, policy_ref } => {
            let auth = check_authorization(key, policy_ref, authorization)?;
            let d = &auth.draft;
            let current = tpm.pcr_read(&d.selection)?;
            compare_boot_state(&d.selection, &d.values, &current)?;
            verify_approval(
                &d.key,
                &d.approved_policy,
                &d.policy_ref,
                &auth.approval_signature,
            )
            .map_err(TpmError::MemoryApproval)?;
            let name = d
                .key
                .name()
                .map_err(|_| TpmError::Memory("fleet key name"))?;
            policy_authorize(POLICY_ALG, &name, &d.policy_ref)
                .map_err(|e| TpmError::Policy(PolicyError::Digest(e)))?
        }
    };
    if session != object_policy {
        return Err(TpmError::Memory("policy check failed (TPM_RC_POLICY_FAIL)"));
    }
    tpm.sealed
        .objects
        .get(handle)
        .map(|h| h.secret.clone())
        .ok_or(TpmError::Memory(
            "sealed object was not created by this TPM",
        ))
}
