//! Revocation and decommissioning of a device, shared by the server (untrusted verdict with
//! `revoke_on_untrusted`) and the `revoke` / `delete` commands.
//!
//! The device's certificate serial goes on the CRL (re-signed), the broker is told to re-read
//! it (SIGHUP through its pid file, when configured), the device's status changes and the
//! audit log records it. Deleting also forgets the device's keys (the audit trail stays).
//! Whatever the path, a disconnect request is queued in the registry: the running server (now,
//! or when it starts) has the broker close the device's live connection, which the CRL alone
//! does not.

use crate::pki::broker::{reload_broker, BrokerError};
use crate::pki::crl::CrlError;
use crate::pki::{revoke, FleetCa, Serial};
use crate::registry::{AuditKind, DeviceStatus, Registry, RegistryError};
use std::path::Path;

/// Revoking failed.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// No such device.
    #[error("no device with id {0:?}")]
    UnknownDevice(String),
    /// The stored serial is not a serial of this CA.
    #[error("device {id}: stored certificate serial {serial:?} is not valid")]
    Serial { id: String, serial: String },
    /// Updating the CRL failed.
    #[error("cannot update the CRL")]
    Crl(#[source] CrlError),
    /// The CRL was updated and the device recorded as revoked, but the broker was not reloaded.
    #[error("the CRL is updated but the broker was not reloaded")]
    Reload(#[source] BrokerError),
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The certificate serial revoked (none when the device had none).
    pub serial: Option<String>,
    /// Number of the CRL written.
    pub crl_number: Option<u64>,
    /// True when the broker was sent SIGHUP.
    pub broker_reloaded: bool,
}

/// Revokes the device's certificate; with `forget`, also decommissions it (status `deleted`,
/// keys forgotten). `why` goes into the audit log.
pub fn revoke_device(
    reg: &mut Registry,
    ca: &FleetCa,
    reload_pid_file: Option<&Path>,
    device_id: &str,
    why: &str,
    forget: bool,
    now_ms: i64,
) -> Result<Revocation, RevokeError> {
    let device = reg
        .device(device_id)?
        .ok_or_else(|| RevokeError::UnknownDevice(device_id.to_string()))?;
    let mut crl_number = None;
    if let Some(text) = &device.cert_serial {
        let serial: Serial = text.parse().map_err(|_| RevokeError::Serial {
            id: device_id.to_string(),
            serial: text.clone(),
        })?;
        crl_number = Some(revoke(ca, &serial).map_err(RevokeError::Crl)?.number);
    }
    reg.request_disconnect(device_id, now_ms)?;
    let serial = device.cert_serial.clone();
    let serial_text = serial.as_deref().unwrap_or("none");
    if forget {
        reg.forget_device(device_id, now_ms)?;
        reg.audit(
            AuditKind::Deleted,
            Some(device_id),
            &format!("decommissioned ({why}); certificate {serial_text} revoked, keys forgotten"),
            now_ms,
        )?;
    } else {
        reg.set_status(device_id, DeviceStatus::Revoked, now_ms)?;
        reg.audit(
            AuditKind::Revoked,
            Some(device_id),
            &format!("certificate {serial_text} revoked ({why})"),
            now_ms,
        )?;
    }
    let mut broker_reloaded = false;
    if let Some(pid) = reload_pid_file {
        reload_broker(pid).map_err(RevokeError::Reload)?;
        broker_reloaded = true;
    }
    Ok(Revocation {
        serial,
        crl_number,
        broker_reloaded,
    })
}
