//! rustls client configurations for the broker connection.
//!
//! Before enrollment the agent connects with the claim certificate and its software key (it can
//! only use the enrollment topics). After enrollment it connects with its device certificate whose
//! private key never leaves the TPM: [`TpmSigningKey`] hands rustls a signer that asks the TPM
//! worker thread to sign. rustls calls signers synchronously from inside the handshake, so the
//! signer moves the wait off the async runtime's worker with `block_in_place` when it runs on a
//! multi-threaded runtime.

use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{ClientConfig, RootCertStore, SignatureAlgorithm, SignatureScheme};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path} is not valid PEM")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The CA file holds no certificate rustls accepts.
    #[error("{path}: no usable CA certificate")]
    Roots {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// The claim key is not a key rustls can use.
    #[error("{path}: unusable private key")]
    Key {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration.
    #[error("building the TLS configuration failed")]
    Config(#[source] rustls::Error),
}

/// Something that signs a SHA-256 digest with the device key and returns a DER ECDSA signature.
pub type DigestSigner = dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_file: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|source| TlsError::Pem {
        path: ca_file.to_path_buf(),
        source,
    })? {
        let cert = cert.map_err(|source| TlsError::Pem {
            path: ca_file.to_path_buf(),
            source,
        })?;
        roots.add(cert).map_err(|source| TlsError::Roots {
            path: ca_file.to_path_buf(),
            source,
        })?;
    }
    Ok(roots)
}

fn certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        })
}

/// The claim identity: certificate and software key from files.
pub fn claim_config(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let pem_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Pem { path, source }
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem_err(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(cert))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(pem_err(key))?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(chain, key_der)
        .map_err(|source| TlsError::Key {
            path: key.to_path_buf(),
            source,
        })?;
    Ok(Arc::new(config))
}

/// The device identity: the certificate issued at enrollment, the key in the TPM.
pub fn device_config(
    ca: &Path,
    cert_pem: &[u8],
    cert_path: &Path,
    sign: Arc<DigestSigner>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let chain = certs(cert_pem, cert_path)?;
    let key: Arc<dyn SigningKey> = Arc::new(TpmSigningKey { sign });
    let resolver = Resolver(Arc::new(CertifiedKey::new(chain, key)));
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots(ca)?)
        .with_client_cert_resolver(Arc::new(resolver));
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct Resolver(Arc<CertifiedKey>);

impl ResolvesClientCert for Resolver {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        sigschemes
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// An ECC P-256 key held by the TPM; signs ECDSA-SHA256 through [`DigestSigner`].
pub struct TpmSigningKey {
    sign: Arc<DigestSigner>,
}

impl std::fmt::Debug for TpmSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TpmSigningKey(ecdsa-p256, in TPM)")
    }
}

impl SigningKey for TpmSigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| {
                Box::new(TpmSigner {
                    sign: self.sign.clone(),
                }) as Box<dyn Signer>
            })
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

struct TpmSigner {
    sign: Arc<DigestSigner>,
}

impl std::fmt::Debug for TpmSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TpmSigner")
    }
}

impl Signer for TpmSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let digest = Sha256::digest(message);
        let run = || (self.sign)(&digest);
        let result = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(run)
            }
            _ => run(),
        };
        result.map_err(|e| rustls::Error::General(format!("TPM signing failed: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}
