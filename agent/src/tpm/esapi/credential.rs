//! TPM2_ActivateCredential on the tss-esapi backend.
//!
//! The AK is loaded from its blobs (password session, activateHandle, ADMIN role); the EK (ECC
//! P-256, template L-2, or RSA-2048, template L-1) is created and authorized with a policy session satisfying its
//! PolicySecret(TPM_RH_ENDORSEMENT) policy. The session, the EK and the AK are flushed on every
//! path, success or failure, so repeated activations never exhaust a raw swtpm's three object
//! and three session slots.

use super::flush::Flush;
use super::EsapiTpm;
use crate::tpm::tss::{tss, TssError};
use crate::tpm::{EkAlg, TpmError};
use tss_esapi::abstraction::ek;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, KeyHandle};
use tss_esapi::interface_types::algorithm::{AsymmetricAlgorithm, HashingAlgorithm};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{EncryptedSecret, IdObject, SymmetricDefinition};
use tss_esapi::{Error, WrapperErrorKind};
use vouch_attest::tpm::wire::strip_size_prefix;
use zeroize::Zeroizing;

/// The body of a size-prefixed structure, or a `CredentialFormat` error naming it.
fn body(what: &'static str, data: &[u8]) -> Result<Vec<u8>, TpmError> {
    strip_size_prefix(data)
        .map(<[u8]>::to_vec)
        .ok_or(TpmError::CredentialFormat {
            what,
            len: data.len(),
        })
}

/// Activates a credential: see [`crate::tpm::Tpm::activate_credential`].
pub fn activate(
    tpm: &mut EsapiTpm,
    alg: EkAlg,
    credential_blob: &[u8],
    encrypted_secret: &[u8],
) -> Result<Zeroizing<Vec<u8>>, TpmError> {
    let id_object = IdObject::try_from(body("TPM2B_ID_OBJECT", credential_blob)?)
        .map_err(tss(TpmError::ActivateCredential))?;
    let secret = EncryptedSecret::try_from(body("TPM2B_ENCRYPTED_SECRET", encrypted_secret)?)
        .map_err(tss(TpmError::ActivateCredential))?;
    let (mut ak, _) = tpm.load_ak()?;
    let handle = ak.handle();
    with_ek(&mut ak, alg, handle, id_object, secret)
}

fn with_ek(
    tpm: &mut EsapiTpm,
    alg: EkAlg,
    ak: KeyHandle,
    id_object: IdObject,
    secret: EncryptedSecret,
) -> Result<Zeroizing<Vec<u8>>, TpmError> {
    let asym = match alg {
        EkAlg::EccP256 => AsymmetricAlgorithm::Ecc,
        EkAlg::Rsa2048 => AsymmetricAlgorithm::Rsa,
    };
    let ek = ek::create_ek_object(&mut tpm.ctx, asym, None).map_err(|source| {
        TpmError::EndorsementKey {
            alg,
            source: TssError(source),
        }
    })?;
    let mut ek = Flush::new(tpm, ek);
    let handle = ek.handle();
    with_policy(&mut ek, ak, handle, id_object, secret)
}

fn with_policy(
    tpm: &mut EsapiTpm,
    ak: KeyHandle,
    ek: KeyHandle,
    id_object: IdObject,
    secret: EncryptedSecret,
) -> Result<Zeroizing<Vec<u8>>, TpmError> {
    let session = tpm
        .ctx
        .start_auth_session(
            None,
            None,
            None,
            SessionType::Policy,
            SymmetricDefinition::Null,
            HashingAlgorithm::Sha256,
        )
        .map_err(tss(TpmError::ActivateCredential))?
        .ok_or(TpmError::ActivateCredential(TssError(Error::WrapperError(
            WrapperErrorKind::WrongValueFromTpm,
        ))))?;
    let mut guard = Flush::new(tpm, session);
    let ctx = &mut guard.ctx;
    let result = PolicySession::try_from(session)
        .and_then(|policy| {
            ctx.execute_with_session(Some(AuthSession::Password), |c| {
                c.policy_secret(
                    policy,
                    AuthHandle::Endorsement,
                    Default::default(),
                    Default::default(),
                    Default::default(),
                    None,
                )
            })
        })
        .and_then(|_| {
            ctx.execute_with_sessions((Some(AuthSession::Password), Some(session), None), |c| {
                c.activate_credential(ak, ek, id_object, secret)
            })
        });
    drop(guard);
    let digest = result.map_err(tss(TpmError::ActivateCredential))?;
    Ok(Zeroizing::new(digest.value().to_vec()))
}
