//! A PKCS#10 certificate request for the TPM-resident TLS key, signed by the TPM.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, RemoteKeyPair};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::tls::DigestSigner;

/// Errors building the request.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// rcgen refused the key or failed to sign.
    #[error("building the certificate request failed")]
    Build(#[from] rcgen::Error),
}

struct TpmKey {
    /// Uncompressed SEC1 point (0x04 || x || y).
    point: Vec<u8>,
    sign: Arc<DigestSigner>,
}

impl RemoteKeyPair for TpmKey {
    fn public_key(&self) -> &[u8] {
        &self.point
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        (self.sign)(&Sha256::digest(msg)).map_err(|_| rcgen::Error::RemoteKeyError)
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// DER CSR with CN = `device_id` for the P-256 key with affine coordinates `x`, `y`.
pub fn build(
    device_id: &str,
    x: &[u8],
    y: &[u8],
    sign: Arc<DigestSigner>,
) -> Result<Vec<u8>, CsrError> {
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    let key = KeyPair::from_remote(Box::new(TpmKey { point, sign }))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, device_id);
    params.distinguished_name = dn;
    Ok(params.serialize_request(&key)?.der().to_vec())
}
