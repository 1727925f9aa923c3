//! Sealing and unsealing the way systemd 252 does for its `systemd-tpm2` LUKS2 token (see
//! [`crate::volume::systemd_token`]): under a transient primary key from systemd's template
//! ([`super::keys::systemd_primary_template`]) in the owner hierarchy, a KEYEDHASH object with
//! fixedTPM and fixedParent only, whose policy is TPM2_PolicyPCR over the token's PCRs (none
//! when no PCR is selected).
//!
//! As in [`super::seal`], the secret crosses the bus only encrypted: the TPM2_Create and
//! TPM2_Unseal sessions are salted to the primary key, with AES-128-CFB parameter encryption.
//! Before unsealing, the policy session's digest is compared with the token's policy hash, as
//! systemd does, so a changed boot state is reported as such. Every object and session is
//! flushed on every path.

use super::flush::Flush;
use super::keys::systemd_primary_template;
use super::seal::{salted_session, sealed_parts};
use super::{selection_list, tpm2b, EsapiTpm};
use crate::tpm::tss::{tss, TssError};
use crate::tpm::TpmError;
use crate::volume::systemd_token::{PrimaryAlg, SystemdSeal, SYSTEMD_SECRET_LEN};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Digest, KeyedHashScheme, Public, PublicBuilder, PublicKeyedHashParameters, SensitiveData,
};
use tss_esapi::traits::Marshall;
use vouch_attest::tpm::PcrSelection;
use zeroize::Zeroizing;

/// systemd's sealed object: KEYEDHASH, SHA-256 Name, fixedTPM and fixedParent, no scheme, a
/// 32-byte (zero) unique.
fn object_template(policy: &[u8]) -> tss_esapi::Result<Public> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_auth_policy(Digest::try_from(policy.to_vec())?)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::try_from(vec![0u8; 32])?)
        .build()
}

/// Creates systemd's primary key; flushed when the guard drops.
fn primary(tpm: &mut EsapiTpm, alg: PrimaryAlg) -> Result<Flush<'_, KeyHandle>, TpmError> {
    let template = systemd_primary_template(alg).map_err(tss(TpmError::SystemdPrimary))?;
    let created = tpm
        .ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.create_primary(Hierarchy::Owner, template, None, None, None, None)
        })
        .map_err(tss(TpmError::SystemdPrimary))?;
    Ok(Flush::new(tpm, created.key_handle))
}

/// Starts a session salted to `primary` (trial or policy), runs TPM2_PolicyPCR over
/// `selection` (when it selects a PCR) and returns the session guard and its digest.
fn pcr_policy<'a>(
    tpm: &'a mut EsapiTpm,
    primary: KeyHandle,
    kind: SessionType,
    selection: &PcrSelection,
    error: fn(TssError) -> TpmError,
) -> Result<(Flush<'a, AuthSession>, PolicySession, Digest), TpmError> {
    let mut session = salted_session(tpm, primary, kind, false).map_err(tss(error))?;
    let policy = PolicySession::try_from(session.handle()).map_err(tss(error))?;
    if !selection.is_empty() {
        let list = selection_list(selection).map_err(tss(error))?;
        session
            .ctx
            .policy_pcr(policy, Digest::default(), list)
            .map_err(tss(error))?;
    }
    let digest = session.ctx.policy_get_digest(policy).map_err(tss(error))?;
    Ok((session, policy, digest))
}

/// See [`crate::tpm::Tpm::seal_systemd`].
pub fn seal(
    tpm: &mut EsapiTpm,
    secret: &[u8],
    selection_bank: vouch_attest::HashAlg,
    pcrs: &[u32],
) -> Result<SystemdSeal, TpmError> {
    if secret.len() != SYSTEMD_SECRET_LEN {
        return Err(TpmError::SecretSize { len: secret.len() });
    }
    let mut pcrs = pcrs.to_vec();
    pcrs.sort_unstable();
    pcrs.dedup();
    let selection = PcrSelection::single(selection_bank, pcrs.iter().copied());
    let alg = PrimaryAlg::Ecc;
    let mut primary = primary(tpm, alg)?;
    let parent = primary.handle();
    let (trial, _, digest) = pcr_policy(
        &mut primary,
        parent,
        SessionType::Trial,
        &selection,
        TpmError::SystemdSeal,
    )?;
    drop(trial);
    let template = object_template(digest.value()).map_err(tss(TpmError::SystemdSeal))?;
    let data = SensitiveData::try_from(secret.to_vec()).map_err(tss(TpmError::SystemdSeal))?;
    let mut session = salted_session(&mut primary, parent, SessionType::Hmac, true)
        .map_err(tss(TpmError::SystemdSeal))?;
    let handle = session.handle();
    let created = session.ctx.execute_with_session(Some(handle), |c| {
        c.create(parent, template, None, Some(data), None, None)
    });
    drop(session);
    drop(primary);
    let created = created.map_err(tss(TpmError::SystemdSeal))?;
    let public = created
        .out_public
        .marshall()
        .map_err(|source| TpmError::Marshal {
            what: "systemd sealed object public",
            source: TssError(source),
        })?;
    Ok(SystemdSeal {
        primary_alg: alg,
        bank: selection_bank,
        pcrs,
        private: tpm2b(created.out_private.value().to_vec()),
        public: tpm2b(public),
        policy_hash: digest.value().to_vec(),
    })
}

/// See [`crate::tpm::Tpm::unseal_systemd`].
pub fn unseal(tpm: &mut EsapiTpm, seal: &SystemdSeal) -> Result<Zeroizing<Vec<u8>>, TpmError> {
    let (public, private) = sealed_parts(
        &seal.public,
        &seal.private,
        (
            "TPM2B_PUBLIC of the systemd-tpm2 token",
            "TPM2B_PRIVATE of the systemd-tpm2 token",
        ),
    )?;
    let selection = seal.selection();
    let mut primary = primary(tpm, seal.primary_alg)?;
    let parent = primary.handle();
    let object = primary
        .ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.load(parent, private, public)
        })
        .map_err(tss(TpmError::SystemdUnseal))?;
    let mut object = Flush::new(&mut primary, object);
    let handle = object.handle();
    let (mut session, _, digest) = pcr_policy(
        &mut object,
        parent,
        SessionType::Policy,
        &selection,
        TpmError::SystemdUnseal,
    )?;
    if digest.value() != seal.policy_hash.as_slice() {
        return Err(TpmError::SystemdPolicyMismatch {
            selection: selection.to_string(),
        });
    }
    let session_handle = session.handle();
    let unsealed = session
        .ctx
        .execute_with_session(Some(session_handle), |c| c.unseal(handle.into()))
        .map_err(tss(TpmError::SystemdUnseal))?;
    Ok(Zeroizing::new(unsealed.value().to_vec()))
}
