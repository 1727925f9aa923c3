//! Child keys of the SRK whose TPM-wrapped blobs live in the state directory (the AK in
//! `ak.pub`/`ak.priv`, the TLS key in `tls.pub`/`tls.priv`): created from their template on first
//! use, read back on every later use, written durably (`vouch_durable`: temp file, fsync, rename,
//! fsync of the directory). The private blob is encrypted by the TPM and useless without it.

use super::flush::Flush;
use super::EsapiTpm;
use crate::tpm::tss::{tss, TssError};
use crate::tpm::TpmError;
use std::path::{Path, PathBuf};
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{Private, Public};
use tss_esapi::traits::{Marshall, UnMarshall};

/// One kind of persisted child key.
pub(super) struct ChildKey {
    /// Name used in errors ("attestation key", "TLS key").
    pub name: &'static str,
    /// File stem in the state directory (`ak`, `tls`).
    pub stem: &'static str,
    /// Its template.
    pub template: fn() -> tss_esapi::Result<Public>,
    /// The error for a failed TPM operation on it.
    pub tpm_error: fn(TssError) -> TpmError,
}

fn state_error(key: &ChildKey, path: &Path, source: std::io::Error) -> TpmError {
    TpmError::KeyState {
        key: key.name,
        path: path.to_path_buf(),
        source,
    }
}

fn paths(tpm: &EsapiTpm, key: &ChildKey) -> (PathBuf, PathBuf) {
    (
        tpm.state_dir.join(format!("{}.pub", key.stem)),
        tpm.state_dir.join(format!("{}.priv", key.stem)),
    )
}

fn write(
    tpm: &EsapiTpm,
    key: &ChildKey,
    path: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), TpmError> {
    let err = |e| state_error(key, path, e);
    std::fs::create_dir_all(&tpm.state_dir).map_err(err)?;
    vouch_durable::write(path, bytes, mode).map_err(|e| err(e.into()))
}

/// The key's public and private blobs, creating the key (and the files) the first time.
pub(super) fn blobs(tpm: &mut EsapiTpm, key: &ChildKey) -> Result<(Public, Private), TpmError> {
    let (pub_path, priv_path) = paths(tpm, key);
    if pub_path.exists() && priv_path.exists() {
        let read = |p: &Path| std::fs::read(p).map_err(|e| state_error(key, p, e));
        let corrupt = |p: &Path| {
            let path = p.to_path_buf();
            move |source| TpmError::KeyStateCorrupt {
                key: key.name,
                path,
                source: TssError(source),
            }
        };
        let public = Public::unmarshall(&read(&pub_path)?).map_err(corrupt(&pub_path))?;
        let private = Private::try_from(read(&priv_path)?).map_err(corrupt(&priv_path))?;
        return Ok((public, private));
    }
    let srk = tpm.srk()?;
    let template = (key.template)().map_err(tss(key.tpm_error))?;
    let created = tpm
        .ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.create(srk, template, None, None, None, None)
        })
        .map_err(tss(key.tpm_error))?;
    let pub_bytes = created
        .out_public
        .marshall()
        .map_err(|source| TpmError::Marshal {
            what: key.name,
            source: TssError(source),
        })?;
    write(tpm, key, &pub_path, &pub_bytes, vouch_durable::MODE_PUBLIC)?;
    let private = created.out_private.value();
    write(tpm, key, &priv_path, private, vouch_durable::MODE_PRIVATE)?;
    Ok((created.out_public, created.out_private))
}

/// Loads the key under the SRK; flushed when the returned guard drops.
pub(super) fn load<'a>(
    tpm: &'a mut EsapiTpm,
    key: &ChildKey,
) -> Result<(Flush<'a, KeyHandle>, Public), TpmError> {
    let (public, private) = blobs(tpm, key)?;
    let srk = tpm.srk()?;
    let handle = tpm
        .ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.load(srk, private, public.clone())
        })
        .map_err(tss(key.tpm_error))?;
    Ok((Flush::new(tpm, handle), public))
}
