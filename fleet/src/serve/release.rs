//! Approving the release of a volume's recovery passphrase to its device: the one code path
//! `vouch-fleet escrow release ID VOLUME` and the HTTP API (`POST
//! /api/v1/devices/ID/escrow/VOLUME/release`) share. The record is the one the device deposited,
//! the rule is `vouch_attest::escrow_release::decide` (trusted last verdict on the current boot,
//! or an operator's override with a reason), the record must open with the escrow key before
//! anything is queued, and the release is written to the audit log. The running server then
//! sends it ([`super::escrow`]).

use crate::registry::{now_ms, AuditKind, Boot, Registry, RegistryError};
use std::io::Read;
use std::path::{Path, PathBuf};
use vouch_attest::escrow::{self, EscrowError, EscrowRecord};
use vouch_attest::escrow_release::{
    decide, Destination, LastVerdict, ReleaseBasis, ReleaseRefusal, ReleaseRequest,
};

/// Why a release was not approved.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Reading a file (the escrow key) failed.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The escrow key is unusable, or the record does not open with it.
    #[error("{path}: unusable escrow key or record")]
    Escrow {
        path: PathBuf,
        #[source]
        source: EscrowError,
    },
    /// The record belongs to another device.
    #[error("the escrow record is for device {record}, not {given}: refused")]
    OtherDevice { record: String, given: String },
    /// The record is of another volume than the one named.
    #[error("the escrow record is for volume {record}, not {given}: refused")]
    OtherVolume { record: String, given: String },
    /// The device deposited no record for the volume.
    #[error("device {id} has deposited no escrow record for volume {volume} (it has: [{known}]); is the agent running with that volume in its volumes file?")]
    NoRecord {
        id: String,
        volume: String,
        known: String,
    },
    /// The stored record does not parse.
    #[error("the stored escrow record of volume {volume} is unusable")]
    StoredRecord {
        volume: String,
        #[source]
        source: EscrowError,
    },
    /// The release rule refuses it (`vouch_attest::escrow_release`).
    #[error("device {id}: release refused")]
    Refused {
        id: String,
        #[source]
        source: ReleaseRefusal,
    },
    /// The registry failed.
    #[error("registry failed")]
    Registry(#[from] RegistryError),
}

/// Reads at most `limit` bytes of `path`.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, ReleaseError> {
    let err = |source| ReleaseError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut data = Vec::new();
    std::fs::File::open(path)
        .map_err(err)?
        .take(limit)
        .read_to_end(&mut data)
        .map_err(err)?;
    Ok(data)
}

/// The record device `id` deposited for `volume`.
pub fn stored_record(reg: &Registry, id: &str, volume: &str) -> Result<EscrowRecord, ReleaseError> {
    let stored = reg
        .escrow(id, volume)?
        .ok_or_else(|| ReleaseError::NoRecord {
            id: id.to_owned(),
            volume: volume.to_owned(),
            known: reg.escrowed_volumes(id).unwrap_or_default().join(", "),
        })?;
    EscrowRecord::parse(stored.record.as_bytes()).map_err(|source| ReleaseError::StoredRecord {
        volume: volume.to_owned(),
        source,
    })
}

/// The record must be device `id`'s, and of `volume` when one is named.
pub fn check_record(
    record: &EscrowRecord,
    id: &str,
    volume: Option<&str>,
) -> Result<(), ReleaseError> {
    if record.device_id != id {
        return Err(ReleaseError::OtherDevice {
            record: record.device_id.clone(),
            given: id.to_owned(),
        });
    }
    if let Some(v) = volume.filter(|v| *v != record.volume_uuid) {
        return Err(ReleaseError::OtherVolume {
            record: record.volume_uuid.clone(),
            given: v.to_owned(),
        });
    }
    Ok(())
}

/// Why the release is allowed (the trusted last verdict, or the override with its reason), and
/// for a release to the device (`to_device`), the boot it is for.
pub fn basis(
    reg: &Registry,
    id: &str,
    to_device: bool,
    override_reason: Option<&str>,
) -> Result<(ReleaseBasis, Option<Boot>), ReleaseError> {
    let last = reg.verdicts(id, 1)?.into_iter().next();
    let boot = if to_device { reg.last_boot(id)? } else { None };
    let destination = if to_device {
        Destination::Device {
            boot_announced_ms: boot.as_ref().map(|b| b.announced_ms),
        }
    } else {
        Destination::Operator
    };
    let basis = decide(&ReleaseRequest {
        last: last.as_ref().map(|v| LastVerdict {
            id: v.id,
            trusted: v.trusted,
            challenged_ms: v.challenged_ms,
            reasons: &v.reasons,
        }),
        destination,
        override_reason,
    })
    .map_err(|source| ReleaseError::Refused {
        id: id.to_owned(),
        source,
    })?;
    Ok((basis, boot))
}

/// Opens `record` with the escrow key at `key_path` (`origin` names the record in errors).
pub fn open_record(
    key_path: &Path,
    record: &EscrowRecord,
    origin: &Path,
) -> Result<zeroize::Zeroizing<Vec<u8>>, ReleaseError> {
    let pem = zeroize::Zeroizing::new(read_limited(key_path, 16 * 1024)?);
    let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&pem).into_owned());
    let key = escrow::secret_from_pem(&text).map_err(|source| ReleaseError::Escrow {
        path: key_path.to_path_buf(),
        source,
    })?;
    record.open(&key).map_err(|source| ReleaseError::Escrow {
        path: origin.to_path_buf(),
        source,
    })
}

/// A release to the device, approved and queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The release's row id.
    pub id: i64,
    /// The boot it is for.
    pub boot_id: String,
    /// Why it was allowed.
    pub basis: String,
}

/// Approves and queues the release of `volume`'s passphrase to device `id` (its deposited
/// record; the rule, with `override_reason` when the operator overrides it); audited, naming
/// `operators` when given (the API: who asked, and who approved an override).
pub fn release_to_device(
    reg: &mut Registry,
    key_path: &Path,
    id: &str,
    volume: &str,
    override_reason: Option<&str>,
    operators: Option<&str>,
) -> Result<Queued, ReleaseError> {
    let record = stored_record(reg, id, volume)?;
    check_record(&record, id, Some(volume))?;
    let (basis, boot) = basis(reg, id, true, override_reason)?;
    // The record must open with the escrow key before anything is queued.
    drop(open_record(
        key_path,
        &record,
        &PathBuf::from(format!("registry:{volume}")),
    )?);
    let now = now_ms();
    // `basis` checked that the device announced a boot.
    let boot = boot.map(|b| b.boot_id).unwrap_or_default();
    let basis = basis.to_string();
    let rid = reg.queue_escrow_release(id, &record.volume_uuid, &boot, &basis, now)?;
    let by = operators.map(|o| format!(" by {o}")).unwrap_or_default();
    reg.audit(
        AuditKind::EscrowRelease,
        Some(id),
        &format!(
            "volume {} recovery passphrase released to the device for boot {boot} \
             (release #{rid}){by}: {basis}",
            record.volume_uuid
        ),
        now,
    )?;
    Ok(Queued {
        id: rid,
        boot_id: boot,
        basis,
    })
}
