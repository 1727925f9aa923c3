//! Revocation: the `revoked` list in the fleet directory and the CRL (`crl.pem`) built from it.
//!
//! mosquitto refuses every client once the CRL is past its nextUpdate, so the CRL is always
//! signed for [`CRL_VALIDITY_DAYS`] and the fleet must call [`reissue_crl`] well before
//! [`crl_next_update`] (for example daily). After `crl.pem` changes, the broker has to re-read it
//! (SIGHUP, see [`super::broker::reload_broker`]).

use super::ca::{FleetCa, INDEX_LIMIT, PEM_LIMIT};
use super::files::{self, FileError, MODE_PRIVATE, MODE_PUBLIC};
use super::layout::FleetPaths;
use super::serial::Serial;
use rcgen::{CertificateRevocationListParams, RevokedCertParams};
use std::path::PathBuf;
use time::{Duration, OffsetDateTime};

/// How long each CRL is valid.
pub const CRL_VALIDITY_DAYS: u32 = 30;

/// Revoking or re-signing failed.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    /// A file of the fleet directory could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// A line of the `issued` or `revoked` index is malformed.
    #[error("{path}, line {line}: malformed entry")]
    IndexLine { path: PathBuf, line: usize },
    /// `crlnumber` does not hold a decimal number.
    #[error("{path} does not hold a decimal CRL number")]
    CrlNumber { path: PathBuf },
    /// The serial is not in the `issued` index.
    #[error("serial {serial} was never issued by this CA (not in {path})")]
    UnknownSerial { serial: Serial, path: PathBuf },
    /// A timestamp in the `revoked` list is out of range.
    #[error("{path}, line {line}: revocation time out of range")]
    Timestamp { path: PathBuf, line: usize },
    /// Signing the CRL failed.
    #[error("cannot sign the CRL")]
    Sign(#[source] rcgen::Error),
    /// PEM-encoding the CRL failed.
    #[error("cannot PEM-encode the CRL")]
    Pem(#[source] rcgen::Error),
    /// `crl.pem` is not a PEM CRL.
    #[error("{path} is not a PEM X.509 CRL")]
    ParseCrl { path: PathBuf },
    /// `crl.pem` has no nextUpdate.
    #[error("{path} has no nextUpdate")]
    NoNextUpdate { path: PathBuf },
}

/// A CRL just signed and written to `crl.pem`.
#[derive(Debug, Clone)]
pub struct Crl {
    /// The CRL number (monotonic, persisted in `crlnumber`).
    pub number: u64,
    /// thisUpdate.
    pub this_update: OffsetDateTime,
    /// nextUpdate: re-issue before this.
    pub next_update: OffsetDateTime,
    /// The revoked serials it lists.
    pub revoked: Vec<Serial>,
    /// PEM encoding, as written to `crl.pem`.
    pub pem: String,
}

/// A revoked serial and when it was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    /// The serial.
    pub serial: Serial,
    /// When it was revoked.
    pub time: OffsetDateTime,
}

/// The serials recorded in the `issued` index, in issue order.
pub fn issued_serials(paths: &FleetPaths) -> Result<Vec<Serial>, CrlError> {
    let path = paths.issued();
    let text = match files::read_text_bounded(&path, INDEX_LIMIT) {
        Ok(t) => t,
        Err(FileError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e.into()),
    };
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            l.split('\t')
                .next()
                .and_then(|s| s.parse::<Serial>().ok())
                .ok_or_else(|| CrlError::IndexLine {
                    path: path.clone(),
                    line: i + 1,
                })
        })
        .collect()
}

/// The `revoked` list (empty when the file does not exist yet).
pub fn revocations(paths: &FleetPaths) -> Result<Vec<Revocation>, CrlError> {
    let path = paths.revoked();
    let text = match files::read_text_bounded(&path, INDEX_LIMIT) {
        Ok(t) => t,
        Err(FileError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let bad = || CrlError::IndexLine {
            path: path.clone(),
            line: i + 1,
        };
        let (serial, time) = l.split_once('\t').ok_or_else(bad)?;
        let serial = serial.parse::<Serial>().map_err(|_| bad())?;
        let secs = time.parse::<i64>().map_err(|_| bad())?;
        let time = OffsetDateTime::from_unix_timestamp(secs).map_err(|_| CrlError::Timestamp {
            path: path.clone(),
            line: i + 1,
        })?;
        out.push(Revocation { serial, time });
    }
    Ok(out)
}

/// Revokes `serial` (which must be in the `issued` index): appends it to the `revoked` list
/// unless already there, re-signs the CRL and writes `crl.pem` atomically.
pub fn revoke(ca: &FleetCa, serial: &Serial) -> Result<Crl, CrlError> {
    let paths = ca.paths();
    if !issued_serials(paths)?.contains(serial) {
        return Err(CrlError::UnknownSerial {
            serial: *serial,
            path: paths.issued(),
        });
    }
    if !revocations(paths)?.iter().any(|r| r.serial == *serial) {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        files::append_line(
            &paths.revoked(),
            &format!("{serial}\t{now}\n"),
            MODE_PRIVATE,
        )?;
    }
    reissue_crl(ca)
}

/// Signs a new CRL over the `revoked` list, valid for [`CRL_VALIDITY_DAYS`] from now, with the
/// next CRL number, and writes it to `crl.pem` atomically.
pub fn reissue_crl(ca: &FleetCa) -> Result<Crl, CrlError> {
    let paths = ca.paths();
    let revoked = revocations(paths)?;
    let number = next_crl_number(paths)?;
    let this_update = OffsetDateTime::now_utc() - Duration::minutes(5);
    let next_update = this_update + Duration::days(i64::from(CRL_VALIDITY_DAYS));
    let (issuer, key) = ca.issuer();
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: rcgen::SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|r| RevokedCertParams {
                serial_number: r.serial.to_rcgen(),
                revocation_time: r.time,
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: issuer.params().key_identifier_method.clone(),
    };
    let crl = params.signed_by(issuer, key).map_err(CrlError::Sign)?;
    let pem = crl.pem().map_err(CrlError::Pem)?;
    files::write_atomic(
        &paths.crl_number(),
        format!("{number}\n").as_bytes(),
        MODE_PRIVATE,
    )?;
    files::write_atomic(&paths.crl(), pem.as_bytes(), MODE_PUBLIC)?;
    Ok(Crl {
        number,
        this_update,
        next_update,
        revoked: revoked.iter().map(|r| r.serial).collect(),
        pem,
    })
}

/// The CRL number after the one in `crlnumber` (1 when there is none yet).
fn next_crl_number(paths: &FleetPaths) -> Result<u64, CrlError> {
    let path = paths.crl_number();
    let text = match files::read_text_bounded(&path, 64) {
        Ok(t) => t,
        Err(FileError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(1)
        }
        Err(e) => return Err(e.into()),
    };
    text.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_add(1))
        .ok_or(CrlError::CrlNumber { path })
}

/// The nextUpdate of the CRL currently in `crl.pem`: re-issue well before it.
pub fn crl_next_update(paths: &FleetPaths) -> Result<OffsetDateTime, CrlError> {
    let path = paths.crl();
    let pem = files::read_bounded(&path, INDEX_LIMIT.min(PEM_LIMIT * 1024))?;
    let bad = || CrlError::ParseCrl { path: path.clone() };
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).map_err(|_| bad())?;
    let (_, crl) = x509_parser::parse_x509_crl(&block.contents).map_err(|_| bad())?;
    let next = crl
        .next_update()
        .ok_or_else(|| CrlError::NoNextUpdate { path: path.clone() })?;
    Ok(next.to_datetime())
}
