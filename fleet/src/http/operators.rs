//! Operators of the HTTPS API (`[http] tls = true`): their client certificates, issued by an
//! operator CA of their own in `operators/` of the fleet directory (`ca.crt`, `ca.key`,
//! `issued`, `revoked`, `crl.pem`, and the API's server certificate `server.crt`/`server.key`).
//! The broker trusts only the fleet CA, so an operator certificate opens no MQTT session, and a
//! device certificate is no operator's.
//!
//! `vouch-fleet operator add NAME` creates the operator CA and the server certificate on first
//! use and issues `NAME.crt`/`NAME.key` (CN = NAME); `operator revoke NAME` puts every
//! certificate of NAME on the operator CRL, which the server re-reads before the next TLS
//! handshake and before every request (so an open connection stops working too);
//! `operator list` shows them. Each step is in the audit log.

use crate::config::FleetConfig;
use crate::pki::ca::{self, CaError, LeafUsage, Validity};
use crate::pki::crl::{self, CrlError};
use crate::pki::files::{self, FileError};
use crate::pki::{FleetCa, Serial};
use crate::registry::{now_ms, AuditKind, Registry, RegistryError};
use std::path::{Path, PathBuf};

/// Directory of the operator CA inside the fleet directory.
pub const OPERATORS_DIR: &str = "operators";
/// CN of the API's server certificate (never an operator name).
pub const SERVER_CN: &str = "vouch-fleet-http";
/// Validity of operator certificates, in days (1 year).
pub const OPERATOR_DAYS: u16 = 366;
/// Validity of the operator CA, in days (20 years).
pub const CA_DAYS: u16 = 7305;

/// An operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Not an operator name.
    #[error("{0:?} is not an operator name ([A-Za-z0-9._-], 1 to 64, not starting with . or -)")]
    Name(String),
    /// An operator of that name holds a valid certificate.
    #[error("operator {0} already has a valid certificate (revoke it first)")]
    Exists(String),
    /// No valid certificate of that name.
    #[error("no valid certificate for operator {0}")]
    Unknown(String),
    /// The operator CA could not be created, loaded or used.
    #[error("operator CA in {dir}")]
    Ca {
        dir: PathBuf,
        #[source]
        source: CaError,
    },
    /// The operator CRL could not be written.
    #[error("operator CRL in {dir}")]
    Crl {
        dir: PathBuf,
        #[source]
        source: CrlError,
    },
    /// A file could not be written.
    #[error(transparent)]
    File(#[from] FileError),
    /// The audit log could not be written.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// The operator directory of the fleet `cfg` belongs to (beside `ca.crt`).
pub fn operators_dir(cfg: &FleetConfig) -> PathBuf {
    cfg.ca_cert
        .parent()
        .unwrap_or(Path::new("."))
        .join(OPERATORS_DIR)
}

/// `[A-Za-z0-9._-]{1,64}`, not starting with `.` or `-`, not the server's CN, not `local`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with(['.', '-'])
        && name != SERVER_CN
        && name != super::api::LOCAL_OPERATOR
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One issued operator certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OperatorCert {
    /// The operator (the certificate's CN).
    pub name: String,
    /// Its serial (hex).
    pub serial: String,
    /// End of validity, seconds since the epoch.
    pub not_after: i64,
    /// On the operator CRL.
    pub revoked: bool,
}

/// Every operator certificate issued, with whether it is revoked.
pub fn list(dir: &Path) -> Result<Vec<OperatorCert>, OperatorError> {
    let paths = crate::pki::layout::FleetPaths::new(dir);
    let crl_err = |source| OperatorError::Crl {
        dir: dir.to_path_buf(),
        source,
    };
    let revoked: Vec<Serial> = crl::revocations(&paths)
        .map_err(crl_err)?
        .into_iter()
        .map(|r| r.serial)
        .collect();
    let text = match files::read_text_bounded(&paths.issued(), 16 * 1024 * 1024) {
        Ok(t) => t,
        Err(FileError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            String::new()
        }
        Err(e) => return Err(e.into()),
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (serial, name, not_after) = (f.next()?, f.next()?, f.next()?);
            let s: Serial = serial.parse().ok()?;
            (name != SERVER_CN).then(|| OperatorCert {
                name: name.to_string(),
                serial: serial.to_string(),
                not_after: not_after.parse().unwrap_or(0),
                revoked: revoked.contains(&s),
            })
        })
        .collect())
}

fn load_or_create(dir: &Path, server_names: &[String]) -> Result<FleetCa, OperatorError> {
    let ca_err = |source| OperatorError::Ca {
        dir: dir.to_path_buf(),
        source,
    };
    if dir.join("ca.crt").exists() {
        return ca::load_ca(dir).map_err(ca_err);
    }
    files::create_private_dir(dir)?;
    let ca = ca::create_ca(dir, Validity::days_from_now(CA_DAYS)).map_err(ca_err)?;
    crl::reissue_crl(&ca).map_err(|source| OperatorError::Crl {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(server_names.iter().cloned());
    let paths = ca.paths().clone();
    ca.issue_with_new_key(
        SERVER_CN,
        &names,
        LeafUsage::Server,
        Validity::days_from_now(crate::pki::setup::INFRA_VALIDITY_DAYS),
        &paths.server_cert(),
        &paths.server_key(),
    )
    .map_err(ca_err)?;
    Ok(ca)
}

/// What `add` wrote.
#[derive(Debug, Clone)]
pub struct Added {
    /// The certificate (PEM) path.
    pub cert: PathBuf,
    /// The key (PEM, 0600) path.
    pub key: PathBuf,
    /// The operator CA certificate clients trust for the server.
    pub ca: PathBuf,
    /// The serial.
    pub serial: String,
}

/// Issues a certificate for operator `name` into `out_dir` (`NAME.crt`, `NAME.key`), creating
/// the operator CA and the server certificate (with `server_names` besides localhost and
/// 127.0.0.1) on first use; audited.
pub fn add(
    cfg: &FleetConfig,
    reg: &mut Registry,
    name: &str,
    server_names: &[String],
    out_dir: &Path,
) -> Result<Added, OperatorError> {
    if !valid_name(name) {
        return Err(OperatorError::Name(name.to_string()));
    }
    let dir = operators_dir(cfg);
    if dir.exists() && list(&dir)?.iter().any(|c| c.name == name && !c.revoked) {
        return Err(OperatorError::Exists(name.to_string()));
    }
    let ca = load_or_create(&dir, server_names)?;
    let (cert, key) = (
        out_dir.join(format!("{name}.crt")),
        out_dir.join(format!("{name}.key")),
    );
    let issued = ca
        .issue_with_new_key(
            name,
            &[],
            LeafUsage::Client,
            Validity::days_from_now(OPERATOR_DAYS),
            &cert,
            &key,
        )
        .map_err(|source| OperatorError::Ca {
            dir: dir.clone(),
            source,
        })?;
    reg.audit(
        AuditKind::Operator,
        None,
        &format!(
            "operator {name}: certificate {} issued (HTTPS API)",
            issued.serial
        ),
        now_ms(),
    )?;
    Ok(Added {
        cert,
        key,
        ca: dir.join("ca.crt"),
        serial: issued.serial.to_string(),
    })
}

/// Revokes every valid certificate of operator `name`; returns their serials; audited.
pub fn revoke(
    cfg: &FleetConfig,
    reg: &mut Registry,
    name: &str,
) -> Result<Vec<String>, OperatorError> {
    let dir = operators_dir(cfg);
    let valid: Vec<OperatorCert> = if dir.exists() {
        list(&dir)?
            .into_iter()
            .filter(|c| c.name == name && !c.revoked)
            .collect()
    } else {
        Vec::new()
    };
    if valid.is_empty() {
        return Err(OperatorError::Unknown(name.to_string()));
    }
    let ca = ca::load_ca(&dir).map_err(|source| OperatorError::Ca {
        dir: dir.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for c in valid {
        let serial: Serial = c
            .serial
            .parse()
            .map_err(|_| OperatorError::Unknown(name.into()))?;
        crl::revoke(&ca, &serial).map_err(|source| OperatorError::Crl {
            dir: dir.clone(),
            source,
        })?;
        reg.audit(
            AuditKind::Operator,
            None,
            &format!("operator {name}: certificate {} revoked", c.serial),
            now_ms(),
        )?;
        out.push(c.serial);
    }
    Ok(out)
}
