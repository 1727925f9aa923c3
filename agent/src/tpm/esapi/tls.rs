//! The TPM-resident TLS client key on the tss-esapi backend: creation under the SRK with its
//! blobs kept in the state directory (`tls.pub`, `tls.priv`, like the AK), TPM2_Certify by the
//! AK, and TPM2_Sign of SHA-256 digests with a NULL hashcheck ticket (allowed because the key is
//! unrestricted). Every transient object loaded here is flushed before returning.

use super::blobs::{self, ChildKey};
use super::flush::Flush;
use super::keys::tls_template;
use super::{tpm2b, EsapiTpm};
use crate::tpm::tss::{tss, TssError};
use crate::tpm::{Certification, TlsKey, TpmError};
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::{KeyHandle, ObjectHandle};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{Data, Digest, HashcheckTicket, Private, Public, SignatureScheme};
use tss_esapi::traits::Marshall;
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;

/// The TLS key: `tls.pub` / `tls.priv` in the state directory.
const TLS: ChildKey = ChildKey {
    name: "TLS key",
    stem: "tls",
    template: tls_template,
    tpm_error: TpmError::TlsKey,
};

fn blobs(tpm: &mut EsapiTpm) -> Result<(Public, Private), TpmError> {
    blobs::blobs(tpm, &TLS)
}

/// Loads the TLS key under the SRK; flushed when the returned guard drops.
fn load(tpm: &mut EsapiTpm) -> Result<Flush<'_, KeyHandle>, TpmError> {
    blobs::load(tpm, &TLS).map(|(h, _)| h)
}

/// See [`crate::tpm::Tpm::tls_key`].
pub fn tls_key(tpm: &mut EsapiTpm) -> Result<TlsKey, TpmError> {
    let (public, _) = blobs(tpm)?;
    let bytes = public.marshall().map_err(|source| TpmError::Marshal {
        what: "TLS key public",
        source: TssError(source),
    })?;
    Ok(TlsKey {
        public: tpm2b(bytes),
    })
}

/// See [`crate::tpm::Tpm::certify_tls_key`].
pub fn certify(tpm: &mut EsapiTpm, qualifying_data: &[u8]) -> Result<Certification, TpmError> {
    let data = Data::try_from(qualifying_data.to_vec()).map_err(tss(TpmError::Certify))?;
    let mut tls = load(tpm)?;
    let tls_handle = tls.handle();
    // Loaded through the TLS key's guard: flushed first, then the TLS key.
    let (mut ak, _) = tls.load_ak()?;
    let ak_handle = ak.handle();
    let password = Some(AuthSession::Password);
    let result = ak
        .ctx
        .execute_with_sessions((password, password, None), |c| {
            c.certify(
                ObjectHandle::from(tls_handle),
                ak_handle,
                data,
                SignatureScheme::Null,
            )
        });
    drop(ak);
    drop(tls);
    let (attest, signature) = result.map_err(tss(TpmError::Certify))?;
    let marshal = |what| {
        move |source| TpmError::Marshal {
            what,
            source: TssError(source),
        }
    };
    Ok(Certification {
        attest: attest.marshall().map_err(marshal("TPMS_ATTEST"))?,
        signature: signature.marshall().map_err(marshal("TPMT_SIGNATURE"))?,
    })
}

/// See [`crate::tpm::Tpm::sign_tls`].
pub fn sign(tpm: &mut EsapiTpm, digest: &[u8]) -> Result<Vec<u8>, TpmError> {
    if digest.len() != 32 {
        return Err(TpmError::SignDigest { len: digest.len() });
    }
    let digest = Digest::try_from(digest.to_vec()).map_err(tss(TpmError::Sign))?;
    let ticket = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
    .map_err(tss(TpmError::Sign))?;
    let mut key = load(tpm)?;
    let handle = key.handle();
    let result = key
        .ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.sign(handle, digest, SignatureScheme::Null, ticket)
        });
    drop(key);
    let signature = result.map_err(tss(TpmError::Sign))?;
    let bytes = signature.marshall().map_err(|source| TpmError::Marshal {
        what: "TPMT_SIGNATURE",
        source: TssError(source),
    })?;
    crate::tpm::tls::ecdsa_der(&bytes).ok_or(TpmError::SignatureFormat)
}
