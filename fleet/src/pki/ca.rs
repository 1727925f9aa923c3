//! The fleet certificate authority: an ECDSA P-256 key and a long-lived self-signed certificate
//! named "Vouch Fleet CA", stored as `ca.crt` / `ca.key` in the fleet directory.
//!
//! [`FleetCa`] signs every certificate of the fleet (broker, fleet client, claim, devices) with a
//! fresh random serial and records each one in the `issued` index so it can later be revoked.

use super::files::{self, FileError, MODE_PRIVATE, MODE_PUBLIC};
use super::layout::FleetPaths;
use super::serial::{Serial, SerialError};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Common name of the fleet CA.
pub const CA_NAME: &str = "Vouch Fleet CA";
/// Upper bound for a PEM certificate or key file read from the fleet directory.
pub(crate) const PEM_LIMIT: u64 = 64 * 1024;
/// Upper bound for the `issued` and `revoked` index files.
pub(crate) const INDEX_LIMIT: u64 = 256 * 1024 * 1024;

/// The fleet CA could not be created, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Reading or writing a file of the fleet directory failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// Generating a P-256 key pair failed.
    #[error("cannot generate an ECDSA P-256 key")]
    GenerateKey(#[source] rcgen::Error),
    /// Drawing a serial number failed.
    #[error("cannot draw a serial number")]
    Serial(#[from] SerialError),
    /// `ca.crt` is not a PEM X.509 certificate rcgen can use as an issuer.
    #[error("{path} is not a usable CA certificate")]
    ParseCert {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    /// `ca.crt` is not PEM DER x509-parser accepts (needed to compare public keys).
    #[error("{path} is not a PEM X.509 certificate")]
    ParseCertDer { path: PathBuf },
    /// `ca.key` is not a PKCS#8 PEM private key.
    #[error("{path} is not a PKCS#8 PEM private key")]
    ParseKey {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    /// `ca.key` does not belong to `ca.crt`.
    #[error("the key {key} does not match the public key of {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// `ca.crt` is not a CA certificate.
    #[error("{path} is not a CA certificate (basicConstraints cA is not set)")]
    NotCa { path: PathBuf },
    /// A subject alternative name is not an IP literal or a DNS name (letters, digits, `-`,
    /// `.`, an optional leading `*.`).
    #[error("invalid subject alternative name {name:?}: not an IP address or DNS name")]
    SubjectAltName { name: String },
    /// The validity period ends before it starts.
    #[error("validity of {common_name:?} ends ({not_after}) before it starts ({not_before})")]
    EmptyValidity {
        common_name: String,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    },
    /// Signing a certificate failed.
    #[error("cannot sign the certificate for {common_name:?}")]
    Sign {
        common_name: String,
        #[source]
        source: rcgen::Error,
    },
}

/// A validity period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From one hour ago (tolerating clocks slightly behind) until `days` days from now.
    /// (`u16` keeps the end far below the year 9999 limit of X.509 times.)
    pub fn days_from_now(days: u16) -> Self {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(i64::from(days)),
        }
    }
}

/// What a leaf certificate is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafUsage {
    /// TLS server (the broker): serverAuth.
    Server,
    /// TLS client (fleet, claim, devices): clientAuth.
    Client,
}

/// A certificate the CA signed.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// Its serial, recorded in the `issued` index; pass it to [`super::revoke`] to revoke.
    pub serial: Serial,
    /// Subject common name.
    pub common_name: String,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// DER encoding.
    pub der: Vec<u8>,
    /// PEM encoding.
    pub pem: String,
}

/// The fleet CA, loaded from (or just created in) a fleet directory.
pub struct FleetCa {
    paths: FleetPaths,
    issuer: rcgen::Certificate,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for FleetCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetCa")
            .field("dir", &self.paths.dir())
            .finish_non_exhaustive()
    }
}

/// Loads the CA of the fleet directory `dir` (`ca.crt`, `ca.key`) and checks the key matches.
pub fn load_ca(dir: &Path) -> Result<FleetCa, CaError> {
    let paths = FleetPaths::new(dir);
    let cert_path = paths.ca_cert();
    let key_path = paths.ca_key();
    let cert_pem = files::read_text_bounded(&cert_path, PEM_LIMIT)?;
    let key_pem = files::read_text_bounded(&key_path, PEM_LIMIT)?;
    let params =
        CertificateParams::from_ca_cert_pem(&cert_pem).map_err(|source| CaError::ParseCert {
            path: cert_path.clone(),
            source,
        })?;
    if !matches!(params.is_ca, IsCa::Ca(_)) {
        return Err(CaError::NotCa { path: cert_path });
    }
    let key = KeyPair::from_pem(&key_pem).map_err(|source| CaError::ParseKey {
        path: key_path.clone(),
        source,
    })?;
    let spki = cert_spki(&cert_pem).ok_or_else(|| CaError::ParseCertDer {
        path: cert_path.clone(),
    })?;
    if spki != key.public_key_der() {
        return Err(CaError::KeyMismatch {
            cert: cert_path,
            key: key_path,
        });
    }
    // rcgen signs with an issuer `Certificate`; re-signing the parsed parameters yields one with
    // the same subject and key identifier. Only ca.crt as written on disk is ever distributed.
    let issuer = params.self_signed(&key).map_err(|source| CaError::Sign {
        common_name: CA_NAME.to_string(),
        source,
    })?;
    Ok(FleetCa {
        paths,
        issuer,
        key,
        cert_pem,
    })
}

/// The DER SubjectPublicKeyInfo of the first certificate in `pem`.
fn cert_spki(pem: &str) -> Option<Vec<u8>> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = block.parse_x509().ok()?;
    Some(cert.public_key().raw.to_vec())
}

/// Creates a new CA in `dir` (which must exist), writing `ca.crt` (0644) and `ca.key` (0600).
pub fn create_ca(dir: &Path, validity: Validity) -> Result<FleetCa, CaError> {
    let paths = FleetPaths::new(dir);
    let key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(CaError::GenerateKey)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(Serial::random()?.to_rcgen());
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    let issuer = params.self_signed(&key).map_err(|source| CaError::Sign {
        common_name: CA_NAME.to_string(),
        source,
    })?;
    let cert_pem = issuer.pem();
    files::write_atomic(
        &paths.ca_key(),
        key.serialize_pem().as_bytes(),
        MODE_PRIVATE,
    )?;
    files::write_atomic(&paths.ca_cert(), cert_pem.as_bytes(), MODE_PUBLIC)?;
    Ok(FleetCa {
        paths,
        issuer,
        key,
        cert_pem,
    })
}

impl FleetCa {
    /// The fleet directory this CA lives in.
    pub fn paths(&self) -> &FleetPaths {
        &self.paths
    }

    /// The CA certificate as written in `ca.crt`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub(crate) fn issuer(&self) -> (&rcgen::Certificate, &KeyPair) {
        (&self.issuer, &self.key)
    }

    /// Signs a leaf certificate for `public_key` with CN `common_name`, the given SANs (DNS
    /// names or IP literals) and usage, and records it in the `issued` index.
    pub fn issue_leaf(
        &self,
        common_name: &str,
        subject_alt_names: &[String],
        usage: LeafUsage,
        public_key: &impl PublicKeyData,
        validity: Validity,
    ) -> Result<IssuedCertificate, CaError> {
        if validity.not_after <= validity.not_before {
            return Err(CaError::EmptyValidity {
                common_name: common_name.to_string(),
                not_before: validity.not_before,
                not_after: validity.not_after,
            });
        }
        let mut params = CertificateParams::default();
        params.subject_alt_names = subject_alt_names
            .iter()
            .map(|n| san(n))
            .collect::<Result<_, _>>()?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match usage {
            LeafUsage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            LeafUsage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        let serial = Serial::random()?;
        params.serial_number = Some(serial.to_rcgen());
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params
            .signed_by(public_key, &self.issuer, &self.key)
            .map_err(|source| CaError::Sign {
                common_name: common_name.to_string(),
                source,
            })?;
        let issued = IssuedCertificate {
            serial,
            common_name: common_name.to_string(),
            not_after: validity.not_after,
            der: cert.der().to_vec(),
            pem: cert.pem(),
        };
        files::append_line(
            &self.paths.issued(),
            &format!(
                "{}\t{}\t{}\n",
                issued.serial,
                issued.common_name,
                issued.not_after.unix_timestamp()
            ),
            MODE_PRIVATE,
        )?;
        Ok(issued)
    }

    /// Generates a P-256 key, issues a leaf for it and writes `<name>.crt` (0644) and
    /// `<name>.key` (0600) at `cert_path` / `key_path`. Used for the broker, fleet and claim.
    pub fn issue_with_new_key(
        &self,
        common_name: &str,
        subject_alt_names: &[String],
        usage: LeafUsage,
        validity: Validity,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<IssuedCertificate, CaError> {
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(CaError::GenerateKey)?;
        let issued = self.issue_leaf(common_name, subject_alt_names, usage, &key, validity)?;
        files::write_atomic(key_path, key.serialize_pem().as_bytes(), MODE_PRIVATE)?;
        files::write_atomic(cert_path, issued.pem.as_bytes(), MODE_PUBLIC)?;
        Ok(issued)
    }
}

/// Checks that `name` can be a subject alternative name of the broker certificate.
pub fn check_server_name(name: &str) -> Result<(), CaError> {
    san(name).map(|_| ())
}

/// A SAN from text: an IP literal becomes an iPAddress, anything else a dNSName.
fn san(name: &str) -> Result<SanType, CaError> {
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let bad = || CaError::SubjectAltName {
        name: name.to_string(),
    };
    let rest = name.strip_prefix("*.").unwrap_or(name);
    let labels_ok = !rest.is_empty()
        && rest.len() <= 253
        && rest.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !labels_ok {
        return Err(bad());
    }
    let dns = name.to_string().try_into().map_err(|_| bad())?;
    Ok(SanType::DnsName(dns))
}
