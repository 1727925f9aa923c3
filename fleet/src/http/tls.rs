//! HTTPS for the API (`[http] tls = true`): the server certificate of the operator CA
//! ([`super::operators`]), client certificates verified against that CA and its CRL but not
//! required at the handshake (health, metrics, the JWK set and EARs need none), and who the
//! client is ([`Peer`]) handed to the router per connection. The configuration is rebuilt when
//! `operators/crl.pem` changes, checked before each handshake and each request
//! ([`TlsState::current`]), so a revoked operator is refused on an open connection too.

use crate::pki::layout::FleetPaths;
use crate::pki::Serial;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// The plain loopback listener: the local operator.
    Local,
    /// A verified operator certificate.
    Operator {
        /// Its CN.
        name: String,
        /// Its serial (hex).
        serial: String,
    },
    /// A TLS client without a certificate.
    Anonymous,
}

/// The HTTPS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing or unreadable.
    #[error("cannot read {path} (run `vouch-fleet operator add NAME` to create the operator CA)")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the CA, CRL, certificate or key.
    #[error("unusable TLS material in {dir}")]
    Rustls {
        dir: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// The client verifier could not be built.
    #[error("cannot build the client certificate verifier from {dir}")]
    Verifier {
        dir: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// The revoked list is unreadable.
    #[error("cannot read the operator revocations")]
    Revoked(#[source] crate::pki::crl::CrlError),
}

type Loaded = (SystemTime, Arc<rustls::ServerConfig>, Arc<HashSet<String>>);

/// The current HTTPS configuration and the revoked operator serials.
#[derive(Debug)]
pub struct TlsState {
    dir: PathBuf,
    current: Mutex<Option<Loaded>>,
}

fn pem_err(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |source| TlsError::Pem {
        path: path.to_path_buf(),
        source,
    }
}

impl TlsState {
    /// The state for the operator directory `dir`.
    pub fn new(dir: PathBuf) -> TlsState {
        TlsState {
            dir,
            current: Mutex::new(None),
        }
    }

    /// The configuration and revoked serials, reloaded when the CRL changed.
    #[allow(clippy::type_complexity)]
    pub fn current(&self) -> Result<(Arc<rustls::ServerConfig>, Arc<HashSet<String>>), TlsError> {
        let crl = self.dir.join("crl.pem");
        let stamp = std::fs::metadata(&crl)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut cur = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((t, cfg, revoked)) = cur.as_ref() {
            if *t == stamp {
                return Ok((cfg.clone(), revoked.clone()));
            }
        }
        let (cfg, revoked) = self.load()?;
        *cur = Some((stamp, cfg.clone(), revoked.clone()));
        Ok((cfg, revoked))
    }

    fn load(&self) -> Result<(Arc<rustls::ServerConfig>, Arc<HashSet<String>>), TlsError> {
        let dir = &self.dir;
        let rustls_err = |source| TlsError::Rustls {
            dir: dir.clone(),
            source,
        };
        let (ca, crl, cert, key) = (
            dir.join("ca.crt"),
            dir.join("crl.pem"),
            dir.join("server.crt"),
            dir.join("server.key"),
        );
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&ca).map_err(pem_err(&ca))? {
            roots.add(c.map_err(pem_err(&ca))?).map_err(rustls_err)?;
        }
        let crls = CertificateRevocationListDer::pem_file_iter(&crl)
            .map_err(pem_err(&crl))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem_err(&crl))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .with_crls(crls)
                .allow_unauthenticated()
                .build()
                .map_err(|source| TlsError::Verifier {
                    dir: dir.clone(),
                    source,
                })?;
        let chain = CertificateDer::pem_file_iter(&cert)
            .map_err(pem_err(&cert))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem_err(&cert))?;
        let key = PrivateKeyDer::from_pem_file(&key).map_err(pem_err(&key))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(rustls_err)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let revoked = crate::pki::crl::revocations(&FleetPaths::new(dir))
            .map_err(TlsError::Revoked)?
            .into_iter()
            .map(|r| r.serial.to_string())
            .collect();
        Ok((Arc::new(cfg), Arc::new(revoked)))
    }
}

/// The peer a verified client certificate names (CN and serial).
pub fn peer_of(cert: &CertificateDer<'_>) -> Peer {
    let Ok((_, c)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Peer::Anonymous;
    };
    let name = c
        .subject()
        .iter_common_name()
        .next()
        .and_then(|n| n.as_str().ok())
        .map(str::to_owned);
    let serial = Serial::from_bytes(c.raw_serial()).map(|s| s.to_string());
    match (name, serial) {
        (Some(name), Ok(serial)) => Peer::Operator { name, serial },
        _ => Peer::Anonymous,
    }
}
