//! Pre-provisioned simulated devices: the shortcut that replaces enrollment for load tests.
//!
//! Each device is a `MemoryTpm` (real TPM structures, keys in software) "booted" from a real
//! firmware event log: the log's sha1/sha256 digests are extended into its PCRs, so its quotes
//! and the log agree exactly as on the machine the log came from. The fleet CA issues its device
//! certificate directly for the TPM's TLS public key (CN = device id = hex SHA-256 of the EK's
//! SubjectPublicKeyInfo, as enrollment computes it), and its EK/AK/TLS public areas are written
//! to the fleet registry as enrollment would store them.

use std::path::Path;
use std::sync::{Arc, Mutex};
use vouch_agent::tpm::memory::MemoryTpm;
use vouch_agent::tpm::{EkAlg, Tpm, TpmError};
use vouch_attest::eventlog::{EventLog, ParseError};
use vouch_attest::tpm::{KeyError, PublicError, TpmPublic};
use vouch_attest::HashAlg;
use vouch_fleet::pki::ca::CaError;
use vouch_fleet::pki::device::DeviceError;
use vouch_fleet::pki::{issue_device_certificate, load_ca, DevicePublicKey, FleetCa, Validity};
use vouch_fleet::registry::{now_ms, NewDevice, Registry, RegistryError};
use vouch_fleet::serve::enroll::device_id_of_spki;

/// Validity of the simulated devices' certificates.
const CERT_DAYS: u16 = 7;

/// Provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The boot event log did not parse.
    #[error("parsing the boot event log")]
    EventLog(#[source] ParseError),
    /// The boot log starts PCR0 at locality 3 or 4, which extends cannot reproduce.
    #[error("the boot event log starts PCR0 at locality {0}; a software TPM cannot reproduce it")]
    Locality(u8),
    /// The boot log has no sha1 or sha256 digest to extend.
    #[error("the boot event log extends no sha1 or sha256 digest")]
    NothingExtended,
    /// Compressing the event log failed.
    #[error("compressing the event log")]
    Gzip(#[source] std::io::Error),
    /// A `MemoryTpm` operation failed.
    #[error("software TPM of device {index}")]
    Tpm {
        index: usize,
        #[source]
        source: TpmError,
    },
    /// A key's public area did not parse.
    #[error("device {index}: {what} public area")]
    Public {
        index: usize,
        what: &'static str,
        #[source]
        source: PublicError,
    },
    /// A key could not be encoded as a SubjectPublicKeyInfo.
    #[error("device {index}: {what} as SubjectPublicKeyInfo")]
    Spki {
        index: usize,
        what: &'static str,
        #[source]
        source: KeyError,
    },
    /// The fleet CA could not be loaded.
    #[error("loading the fleet CA")]
    Ca(#[source] CaError),
    /// The fleet CA refused to issue a device certificate.
    #[error("issuing the certificate of device {id}")]
    Certificate {
        id: String,
        #[source]
        source: DeviceError,
    },
    /// The registry could not be opened or written.
    #[error("fleet registry")]
    Registry(#[source] RegistryError),
}

/// One extend: a PCR and the digests of each bank.
type Extend = (u32, Vec<(HashAlg, Vec<u8>)>);

/// What every simulated device boots from: the extends of a real firmware log and the gzip of
/// the log itself (sent with every answer, as the agent does).
#[derive(Debug, Clone)]
pub struct BootImage {
    extends: Vec<Extend>,
    /// The gzip-compressed event log.
    pub eventlog_gz: Arc<Vec<u8>>,
}

impl BootImage {
    /// Reads the extends (not EV_NO_ACTION, PCR < 24; sha1 and sha256 digests) of `log`.
    pub fn from_log(log: &[u8]) -> Result<BootImage, ProvisionError> {
        let parsed = EventLog::parse(log).map_err(ProvisionError::EventLog)?;
        let locality = parsed.pcr0_start_locality();
        if locality != 0 {
            return Err(ProvisionError::Locality(locality));
        }
        let extends: Vec<Extend> = parsed
            .events
            .iter()
            .filter(|e| e.is_extended() && e.pcr < 24)
            .map(|e| {
                let digests = e
                    .digests
                    .iter()
                    .filter(|d| matches!(d.alg, HashAlg::Sha1 | HashAlg::Sha256))
                    .map(|d| (d.alg, d.bytes.to_vec()))
                    .collect::<Vec<_>>();
                (e.pcr, digests)
            })
            .filter(|(_, d)| !d.is_empty())
            .collect();
        if extends.is_empty() {
            return Err(ProvisionError::NothingExtended);
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, log).map_err(ProvisionError::Gzip)?;
        let eventlog_gz = Arc::new(gz.finish().map_err(ProvisionError::Gzip)?);
        Ok(BootImage {
            extends,
            eventlog_gz,
        })
    }

    /// Number of extends per boot.
    pub fn extend_count(&self) -> usize {
        self.extends.len()
    }
}

/// One simulated device.
pub struct SimDevice {
    /// Device id (certificate CN, MQTT username and client id).
    pub id: String,
    /// Its software TPM, booted.
    pub tpm: Arc<Mutex<MemoryTpm>>,
    /// Its device certificate (PEM).
    pub cert_pem: String,
    /// The registry row enrollment would have written.
    row: Row,
}

impl std::fmt::Debug for SimDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDevice").field("id", &self.id).finish()
    }
}

#[derive(Debug, Clone)]
struct Row {
    ek_public: Vec<u8>,
    ak_public: Vec<u8>,
    tls_public: Vec<u8>,
    serial: String,
}

fn spki(index: usize, what: &'static str, public: &[u8]) -> Result<Vec<u8>, ProvisionError> {
    let (p, _) = TpmPublic::parse(public).map_err(|source| ProvisionError::Public {
        index,
        what,
        source,
    })?;
    p.key()
        .map_err(|source| ProvisionError::Public {
            index,
            what,
            source,
        })?
        .to_spki_der()
        .map_err(|source| ProvisionError::Spki {
            index,
            what,
            source,
        })
}

fn make_device(index: usize, image: &BootImage, ca: &FleetCa) -> Result<SimDevice, ProvisionError> {
    let tpm_err = |source| ProvisionError::Tpm { index, source };
    let mut tpm = MemoryTpm::new();
    for (pcr, digests) in &image.extends {
        tpm.pcr_extend(*pcr, digests).map_err(tpm_err)?;
    }
    let ek_public = tpm.endorsement_key(EkAlg::EccP256).map_err(tpm_err)?.public;
    let ak_public = tpm.attestation_key().map_err(tpm_err)?.public;
    let tls_public = tpm.tls_key().map_err(tpm_err)?.public;
    let id = device_id_of_spki(&spki(index, "EK", &ek_public)?);
    let tls_spki = spki(index, "TLS key", &tls_public)?;
    let issued = issue_device_certificate(
        ca,
        &id,
        DevicePublicKey::Spki(&tls_spki),
        Validity::days_from_now(CERT_DAYS),
    )
    .map_err(|source| ProvisionError::Certificate {
        id: id.clone(),
        source,
    })?;
    Ok(SimDevice {
        id,
        tpm: Arc::new(Mutex::new(tpm)),
        cert_pem: issued.pem,
        row: Row {
            ek_public,
            ak_public,
            tls_public,
            serial: issued.serial.to_string(),
        },
    })
}

/// Makes `count` devices booted from `image`, with certificates from the CA of `fleet_dir`.
/// `progress` is called after each device.
pub fn make_devices(
    fleet_dir: &Path,
    image: &BootImage,
    count: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<SimDevice>, ProvisionError> {
    let ca = load_ca(fleet_dir).map_err(ProvisionError::Ca)?;
    let mut out = Vec::with_capacity(count);
    for index in 0..count {
        out.push(make_device(index, image, &ca)?);
        progress(index + 1);
    }
    Ok(out)
}

/// Writes the devices into the registry of `state_dir` as enrolled (status `enrolled`), which
/// makes the running server start challenging them.
pub fn register<'a>(
    state_dir: &Path,
    devices: impl IntoIterator<Item = &'a SimDevice>,
) -> Result<(), ProvisionError> {
    let reg = Registry::open(state_dir).map_err(ProvisionError::Registry)?;
    let now = now_ms();
    for d in devices {
        reg.upsert_device(
            &NewDevice {
                id: &d.id,
                ek_public: &d.row.ek_public,
                ak_public: &d.row.ak_public,
                tls_public: &d.row.tls_public,
                cert_serial: &d.row.serial,
            },
            now,
        )
        .map_err(ProvisionError::Registry)?;
    }
    Ok(())
}
