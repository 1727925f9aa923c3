//! The TPM-resident TLS client key on the tss-esapi backend: creation under the SRK with its
//! blobs kept in the state directory (`tls.pub`, `tls.priv`, like the AK), TPM2_Certify by the
//! AK, and TPM2_Sign of SHA-256 digests with a NULL hashcheck ticket (allowed because the key is
//! unrestricted). Every transient object loaded here is flushed before returning.

use super::esapi::{tpm2b, EsapiTpm};
use super::{Certification, TlsKey, TpmError};
use std::path::{Path, PathBuf};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::{KeyHandle, ObjectHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Data, Digest, EccPoint, EccScheme, HashScheme, HashcheckTicket, Private, Public, PublicBuilder,
    PublicEccParametersBuilder, SignatureScheme,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;

/// The TLS key template: ECC P-256, ECDSA-SHA256, unrestricted signing, fixedTPM, fixedParent,
/// sensitiveDataOrigin, userWithAuth (empty auth), noDA.
pub fn tls_template() -> tss_esapi::Result<Public> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_sign_encrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_unrestricted_signing_key(
                EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

fn paths(tpm: &EsapiTpm) -> (PathBuf, PathBuf) {
    (
        tpm.state_dir.join("tls.pub"),
        tpm.state_dir.join("tls.priv"),
    )
}

fn read(path: &Path) -> Result<Vec<u8>, TpmError> {
    std::fs::read(path).map_err(|source| TpmError::TlsState {
        path: path.to_path_buf(),
        source,
    })
}

fn write(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), TpmError> {
    let err = |source| TpmError::TlsState {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Reads the TLS key blobs, creating the key (and the files) the first time.
fn blobs(tpm: &mut EsapiTpm) -> Result<(Public, Private), TpmError> {
    let (pub_path, priv_path) = paths(tpm);
    if pub_path.exists() && priv_path.exists() {
        let corrupt = |path: &PathBuf| {
            let path = path.clone();
            move |source| TpmError::TlsStateCorrupt { path, source }
        };
        let public = Public::unmarshall(&read(&pub_path)?).map_err(corrupt(&pub_path))?;
        let private = Private::try_from(read(&priv_path)?).map_err(corrupt(&priv_path))?;
        return Ok((public, private));
    }
    let srk = tpm.srk()?;
    let template = tls_template().map_err(TpmError::TlsKey)?;
    let created = tpm
        .ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.create(srk, template, None, None, None, None)
        })
        .map_err(TpmError::TlsKey)?;
    let pub_bytes = created
        .out_public
        .marshall()
        .map_err(|source| TpmError::Marshal {
            what: "TLS key public",
            source,
        })?;
    let dir = tpm.state_dir.clone();
    write(&dir, &pub_path, &pub_bytes)?;
    write(&dir, &priv_path, created.out_private.value())?;
    Ok((created.out_public, created.out_private))
}

/// Loads the TLS key under the SRK; the caller must flush the returned handle.
fn load(tpm: &mut EsapiTpm) -> Result<KeyHandle, TpmError> {
    let (public, private) = blobs(tpm)?;
    let srk = tpm.srk()?;
    tpm.ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.load(srk, private, public)
        })
        .map_err(TpmError::TlsKey)
}

/// See [`super::Tpm::tls_key`].
pub fn tls_key(tpm: &mut EsapiTpm) -> Result<TlsKey, TpmError> {
    let (public, _) = blobs(tpm)?;
    let bytes = public.marshall().map_err(|source| TpmError::Marshal {
        what: "TLS key public",
        source,
    })?;
    Ok(TlsKey {
        public: tpm2b(bytes),
    })
}

/// See [`super::Tpm::certify_tls_key`].
pub fn certify(tpm: &mut EsapiTpm, qualifying_data: &[u8]) -> Result<Certification, TpmError> {
    let data = Data::try_from(qualifying_data.to_vec()).map_err(TpmError::Certify)?;
    let tls = load(tpm)?;
    let ak = match tpm.load_ak() {
        Ok((ak, _)) => ak,
        Err(e) => {
            let _ = tpm.ctx.flush_context(ObjectHandle::from(tls));
            return Err(e);
        }
    };
    let password = Some(AuthSession::Password);
    let result = tpm
        .ctx
        .execute_with_sessions((password, password, None), |c| {
            c.certify(ObjectHandle::from(tls), ak, data, SignatureScheme::Null)
        });
    let _ = tpm.ctx.flush_context(ObjectHandle::from(ak));
    let _ = tpm.ctx.flush_context(ObjectHandle::from(tls));
    let (attest, signature) = result.map_err(TpmError::Certify)?;
    let marshal = |what| move |source| TpmError::Marshal { what, source };
    Ok(Certification {
        attest: attest.marshall().map_err(marshal("TPMS_ATTEST"))?,
        signature: signature.marshall().map_err(marshal("TPMT_SIGNATURE"))?,
    })
}

/// See [`super::Tpm::sign_tls`].
pub fn sign(tpm: &mut EsapiTpm, digest: &[u8]) -> Result<Vec<u8>, TpmError> {
    if digest.len() != 32 {
        return Err(TpmError::SignDigest { len: digest.len() });
    }
    let digest = Digest::try_from(digest.to_vec()).map_err(TpmError::Sign)?;
    let ticket = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
    .map_err(TpmError::Sign)?;
    let key = load(tpm)?;
    let result = tpm
        .ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.sign(key, digest, SignatureScheme::Null, ticket)
        });
    let _ = tpm.ctx.flush_context(ObjectHandle::from(key));
    let signature = result.map_err(TpmError::Sign)?;
    let bytes = signature.marshall().map_err(|source| TpmError::Marshal {
        what: "TPMT_SIGNATURE",
        source,
    })?;
    super::tls::ecdsa_der(&bytes).ok_or(TpmError::SignatureFormat)
}
