//! EK certificate trust: the vendor CA certificates in the trust-roots directory and the chain
//! check of an EK certificate against them.
//!
//! Every `*.pem`, `*.crt` or `*.cer` file of the directory is read (PEM, any number of
//! certificates per file, or a single DER certificate). Self-signed certificates are roots;
//! the others are intermediates usable to build a path (TPM vendors, and swtpm's local CA, sign
//! EK certificates with an intermediate). A chain is accepted only when it ends at a root of the
//! directory, every signature verifies, every issuer is a CA and every certificate is within its
//! validity period.

use std::path::{Path, PathBuf};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

/// Largest certificate file read from the trust directory.
const FILE_LIMIT: u64 = 1024 * 1024;
/// Most certificates loaded from the trust directory.
const MAX_CERTS: usize = 4096;
/// Longest chain followed (EK certificate, intermediates, root).
const MAX_DEPTH: usize = 6;

/// The trust directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The directory could not be listed.
    #[error("cannot list the EK trust-roots directory {path}")]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file could not be read.
    #[error("cannot read EK trust certificate {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than 1 MiB.
    #[error("EK trust certificate file {path} is larger than 1 MiB")]
    TooLarge { path: PathBuf },
    /// A file holds no parsable certificate.
    #[error("{path} holds no X.509 certificate (PEM or DER)")]
    NotACertificate { path: PathBuf },
    /// More than 4096 certificates.
    #[error("more than {MAX_CERTS} certificates in the EK trust-roots directory")]
    TooMany,
}

/// Why an EK certificate chain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The EK certificate does not parse.
    #[error("the EK certificate is not DER X.509")]
    Unparsable,
    /// No certificate of the trust directory issued this one.
    #[error("no trusted certificate issued {subject:?} (issuer {issuer:?}): unknown EK CA")]
    UnknownIssuer { subject: String, issuer: String },
    /// An issuer was found by name but its signature does not verify.
    #[error("the signature on {subject:?} does not verify with {issuer:?}")]
    BadSignature { subject: String, issuer: String },
    /// An issuing certificate is not a CA.
    #[error("{subject:?} issues certificates but is not a CA (basicConstraints)")]
    NotCa { subject: String },
    /// A certificate is outside its validity period.
    #[error("{subject:?} is not valid now (expired or not yet valid)")]
    Expired { subject: String },
    /// The chain is longer than allowed (or loops).
    #[error("the EK certificate chain is longer than {MAX_DEPTH}")]
    TooLong,
}

/// The vendor CA certificates.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    ders: Vec<Vec<u8>>,
}

impl TrustStore {
    /// Loads every certificate file of `dir` (a missing directory is an empty store).
    pub fn load(dir: &Path) -> Result<TrustStore, TrustError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TrustStore::default()),
            Err(source) => {
                return Err(TrustError::List {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| TrustError::List {
                path: dir.to_path_buf(),
                source,
            })?;
            let path = entry.path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if matches!(ext, "pem" | "crt" | "cer") {
                paths.push(path);
            }
        }
        paths.sort();
        let mut store = TrustStore::default();
        for path in paths {
            for der in read_certs(&path)? {
                if store.ders.len() >= MAX_CERTS {
                    return Err(TrustError::TooMany);
                }
                store.ders.push(der);
            }
        }
        Ok(store)
    }

    /// Number of certificates loaded.
    pub fn len(&self) -> usize {
        self.ders.len()
    }

    /// True when no certificate is loaded.
    pub fn is_empty(&self) -> bool {
        self.ders.is_empty()
    }

    /// Checks that `ek_cert` (DER) chains to a root of the store at time `now` (Unix seconds);
    /// returns the subjects from the EK certificate to the root.
    pub fn verify(&self, ek_cert: &[u8], now: i64) -> Result<Vec<String>, ChainError> {
        let (_, leaf) = X509Certificate::from_der(ek_cert).map_err(|_| ChainError::Unparsable)?;
        let at = ASN1Time::from_timestamp(now).map_err(|_| ChainError::Unparsable)?;
        let parsed: Vec<X509Certificate<'_>> = self
            .ders
            .iter()
            .filter_map(|d| X509Certificate::from_der(d).ok().map(|(_, c)| c))
            .collect();
        let mut path = vec![leaf.subject().to_string()];
        let mut current = leaf;
        for _ in 0..MAX_DEPTH {
            check_time(&current, at)?;
            let subject = current.subject().to_string();
            let candidates: Vec<&X509Certificate<'_>> = parsed
                .iter()
                .filter(|c| c.subject().as_raw() == current.issuer().as_raw())
                .collect();
            if candidates.is_empty() {
                return Err(ChainError::UnknownIssuer {
                    subject,
                    issuer: current.issuer().to_string(),
                });
            }
            let Some(issuer) = candidates
                .iter()
                .find(|c| current.verify_signature(Some(c.public_key())).is_ok())
            else {
                return Err(ChainError::BadSignature {
                    subject,
                    issuer: current.issuer().to_string(),
                });
            };
            if !is_ca(issuer) {
                return Err(ChainError::NotCa {
                    subject: issuer.subject().to_string(),
                });
            }
            path.push(issuer.subject().to_string());
            if is_self_signed(issuer) {
                check_time(issuer, at)?;
                return Ok(path);
            }
            current = (*issuer).clone();
        }
        Err(ChainError::TooLong)
    }
}

fn check_time(c: &X509Certificate<'_>, at: ASN1Time) -> Result<(), ChainError> {
    if c.validity().is_valid_at(at) {
        Ok(())
    } else {
        Err(ChainError::Expired {
            subject: c.subject().to_string(),
        })
    }
}

fn is_ca(c: &X509Certificate<'_>) -> bool {
    matches!(c.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

fn is_self_signed(c: &X509Certificate<'_>) -> bool {
    c.subject().as_raw() == c.issuer().as_raw() && c.verify_signature(None).is_ok()
}

/// The certificates of one file, as DER.
fn read_certs(path: &Path) -> Result<Vec<Vec<u8>>, TrustError> {
    use std::io::Read;
    let read_err = |source| TrustError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut data = Vec::new();
    file.take(FILE_LIMIT + 1)
        .read_to_end(&mut data)
        .map_err(read_err)?;
    if data.len() as u64 > FILE_LIMIT {
        return Err(TrustError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(&data) {
        match pem {
            Ok(p) if p.label == "CERTIFICATE" => out.push(p.contents),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    if out.is_empty() && X509Certificate::from_der(&data).is_ok() {
        out.push(data);
    }
    if out.is_empty() {
        return Err(TrustError::NotACertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}
