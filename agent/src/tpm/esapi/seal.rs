//! Sealing and unsealing on the tss-esapi backend.
//!
//! Sealed data objects are KEYEDHASH objects under the SRK (0x81000001) with `userWithAuth`
//! clear, so only a policy session can unseal them. Both directions use a session **salted to
//! the SRK** (the salt is encrypted to the SRK's public key, so the session key is unknown to
//! anyone on the bus) with **AES-128-CFB parameter encryption**: `decrypt` on the HMAC session
//! of TPM2_Create (the secret in TPM2B_SENSITIVE_CREATE travels encrypted), `encrypt` on the
//! policy session of TPM2_Unseal (the secret in the response travels encrypted).
//!
//! Unsealing: TPM2_PolicyPCR with an empty pcrDigest (the TPM takes its current values), then
//! for fleet-authorized objects TPM2_LoadExternal of the fleet key (public only, owner
//! hierarchy: a NULL-hierarchy key would give a NULL ticket), TPM2_VerifySignature of the
//! approval over aHash, TPM2_PolicyAuthorize with the ticket; then TPM2_Unseal. Every session
//! and object is flushed on every path.

use super::flush::Flush;
use super::{selection_list, tpm2b, EsapiTpm};
use crate::seal::{
    auth_policy, check_authorization, compare_boot_state, resolve, Binding, PolicyError,
    SealPolicy, SealedObject, MAX_SECRET,
};
use crate::tpm::tss::{tss, TssError};
use crate::tpm::TpmError;
use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::{SessionType, Tss2ResponseCodeKind};
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Digest, KeyedHashScheme, Name, Nonce, Private, Public, PublicBuilder,
    PublicKeyedHashParameters, SensitiveData, Signature, SymmetricDefinition,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::{Error, WrapperErrorKind};
use vouch_attest::policy_digest::{approval_digest, SignedPolicy, POLICY_ALG};
use vouch_attest::tpm::wire::strip_size_prefix;
use zeroize::Zeroizing;

/// The sealed data object template: KEYEDHASH, SHA-256 Name, fixedTPM, fixedParent, noDA,
/// adminWithPolicy, userWithAuth clear (policy only), no scheme.
fn sealed_template(policy: &[u8]) -> tss_esapi::Result<Public> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(true)
        .with_admin_with_policy(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_auth_policy(Digest::try_from(policy.to_vec())?)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

/// Starts a session salted to the SRK with AES-128-CFB parameter encryption in the direction
/// given: `decrypt` (command parameter) or `encrypt` (response parameter). Flushed when the
/// returned guard drops.
pub(super) fn salted_session(
    tpm: &mut EsapiTpm,
    srk: KeyHandle,
    kind: SessionType,
    command_encrypted: bool,
) -> tss_esapi::Result<Flush<'_, AuthSession>> {
    let session = tpm
        .ctx
        .start_auth_session(
            Some(srk),
            None,
            None,
            kind,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )?
        .ok_or(Error::WrapperError(WrapperErrorKind::WrongValueFromTpm))?;
    let mut session = Flush::new(tpm, session);
    let (attrs, mask) = SessionAttributesBuilder::new()
        .with_decrypt(command_encrypted)
        .with_encrypt(!command_encrypted)
        .build();
    let handle = session.handle();
    session.ctx.tr_sess_set_attributes(handle, attrs, mask)?;
    Ok(session)
}

/// See [`crate::tpm::Tpm::seal`].
pub fn seal(
    tpm: &mut EsapiTpm,
    secret: &[u8],
    policy: &SealPolicy,
) -> Result<SealedObject, TpmError> {
    if secret.is_empty() || secret.len() > MAX_SECRET {
        return Err(TpmError::SecretSize { len: secret.len() });
    }
    let binding = resolve(policy, |sel| crate::tpm::Tpm::pcr_read(tpm, sel))?;
    let digest = auth_policy(&binding)?;
    let template = sealed_template(&digest).map_err(tss(TpmError::Seal))?;
    let data = SensitiveData::try_from(secret.to_vec()).map_err(tss(TpmError::Seal))?;
    let srk = tpm.srk()?;
    let mut session =
        salted_session(tpm, srk, SessionType::Hmac, true).map_err(tss(TpmError::Seal))?;
    let handle = session.handle();
    let created = session.ctx.execute_with_session(Some(handle), |c| {
        c.create(srk, template, None, Some(data), None, None)
    });
    drop(session);
    let created = created.map_err(tss(TpmError::Seal))?;
    let public = created
        .out_public
        .marshall()
        .map_err(|source| TpmError::Marshal {
            what: "sealed object public",
            source: TssError(source),
        })?;
    Ok(SealedObject {
        binding,
        auth_policy: digest,
        public: tpm2b(public),
        private: tpm2b(created.out_private.value().to_vec()),
    })
}

/// Decodes a sealed object's TPM2B_PUBLIC and TPM2B_PRIVATE (`names` say which blobs, for the
/// error).
pub(super) fn sealed_parts(
    public: &[u8],
    private: &[u8],
    names: (&'static str, &'static str),
) -> Result<(Public, Private), TpmError> {
    let corrupt = |what| {
        move |source| TpmError::SealedCorrupt {
            what,
            source: TssError(source),
        }
    };
    let bad_frame = || Error::WrapperError(WrapperErrorKind::InvalidParam);
    let public = strip_size_prefix(public)
        .ok_or_else(bad_frame)
        .and_then(Public::unmarshall)
        .map_err(corrupt(names.0))?;
    let private = strip_size_prefix(private)
        .ok_or_else(bad_frame)
        .and_then(|b| Private::try_from(b.to_vec()))
        .map_err(corrupt(names.1))?;
    Ok((public, private))
}

/// See [`crate::tpm::Tpm::unseal`].
pub fn unseal(
    tpm: &mut EsapiTpm,
    sealed: &SealedObject,
    authorization: Option<&SignedPolicy>,
) -> Result<Zeroizing<Vec<u8>>, TpmError> {
    let (public, private) = sealed_parts(
        &sealed.public,
        &sealed.private,
        ("TPM2B_PUBLIC", "TPM2B_PRIVATE"),
    )?;
    // Which PCR values the session must see, and (authorized) the approval to present.
    let (selection, approval) = match &sealed.binding {
        Binding::Pcr { selection, .. } => (selection.clone(), None),
        Binding::Authorized { key, policy_ref } => {
            let auth = check_authorization(key, policy_ref, authorization)?;
            let current = crate::tpm::Tpm::pcr_read(tpm, &auth.draft.selection)?;
            compare_boot_state(&auth.draft.selection, &auth.draft.values, &current)?;
            (auth.draft.selection.clone(), Some(auth))
        }
    };
    let srk = tpm.srk()?;
    let object = tpm
        .ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.load(srk, private, public)
        })
        .map_err(tss(TpmError::Unseal))?;
    let mut object = Flush::new(tpm, object);
    let handle = object.handle();
    let result = with_object(&mut object, srk, handle, &selection, approval);
    drop(object);
    match (result, &sealed.binding) {
        (Err(e), Binding::Pcr { selection, values }) if is_policy_fail(&e) => {
            // Name the bound PCRs that changed. If none did (they changed back in between, or
            // the blob's recorded values do not match its policy), report the TPM's refusal.
            let current = crate::tpm::Tpm::pcr_read(tpm, selection)?;
            compare_boot_state(selection, values, &current)?;
            Err(e)
        }
        (result, _) => result,
    }
}

fn is_policy_fail(e: &TpmError) -> bool {
    matches!(e, TpmError::Unseal(TssError(Error::Tss2Error(rc)))
        if rc.kind() == Some(Tss2ResponseCodeKind::PolicyFail))
}

fn with_object(
    tpm: &mut EsapiTpm,
    srk: KeyHandle,
    object: KeyHandle,
    selection: &vouch_attest::tpm::PcrSelection,
    approval: Option<&SignedPolicy>,
) -> Result<Zeroizing<Vec<u8>>, TpmError> {
    let list = selection_list(selection).map_err(tss(TpmError::Unseal))?;
    let mut session =
        salted_session(tpm, srk, SessionType::Policy, false).map_err(tss(TpmError::Unseal))?;
    let handle = session.handle();
    let result = PolicySession::try_from(handle)
        .and_then(|policy| {
            session
                .ctx
                .policy_pcr(policy, Digest::default(), list)
                .map(|_| policy)
        })
        .map_err(tss(TpmError::Unseal))
        .and_then(|policy| match approval {
            Some(auth) => authorize(&mut session, policy, auth),
            None => Ok(()),
        })
        .and_then(|_| {
            session
                .ctx
                .execute_with_session(Some(handle), |c| c.unseal(object.into()))
                .map_err(tss(TpmError::Unseal))
        });
    drop(session);
    Ok(Zeroizing::new(result?.value().to_vec()))
}

/// TPM2_LoadExternal + TPM2_VerifySignature + TPM2_PolicyAuthorize.
fn authorize(
    tpm: &mut EsapiTpm,
    policy: PolicySession,
    auth: &SignedPolicy,
) -> Result<(), TpmError> {
    let d = &auth.draft;
    let key_public = Public::unmarshall(&d.key.marshal()).map_err(tss(TpmError::Unseal))?;
    let name = d
        .key
        .name()
        .map_err(|e| {
            TpmError::Policy(PolicyError::Digest(
                vouch_attest::policy_digest::PolicyDigestError::Key(e.to_string()),
            ))
        })
        .and_then(|n| Name::try_from(n).map_err(tss(TpmError::Unseal)))?;
    let a_hash = approval_digest(POLICY_ALG, &d.approved_policy, &d.policy_ref)
        .map_err(|e| TpmError::Policy(PolicyError::Digest(e)))?;
    let signature =
        Signature::unmarshall(&auth.approval_signature.marshal()).map_err(tss(TpmError::Unseal))?;
    let key = tpm
        .ctx
        .load_external_public(key_public, Hierarchy::Owner)
        .map_err(tss(TpmError::Unseal))?;
    let mut key = Flush::new(tpm, key);
    let handle = key.handle();
    let ticket = Digest::try_from(a_hash)
        .and_then(|digest| key.ctx.verify_signature(handle, digest, signature))
        .map_err(tss(TpmError::ApprovalRefused));
    drop(key);
    let approved = Digest::try_from(d.approved_policy.clone()).map_err(tss(TpmError::Unseal))?;
    let policy_ref = Nonce::try_from(d.policy_ref.clone()).map_err(tss(TpmError::Unseal))?;
    tpm.ctx
        .policy_authorize(policy, approved, policy_ref, &name, ticket?)
        .map_err(tss(TpmError::Unseal))
}
