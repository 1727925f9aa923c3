//! On-demand attestation: the one check-and-queue that `vouch-fleet attest ID` and the HTTP API
//! (`POST /api/v1/devices/ID/attest`) share. The request is a row in the registry that the
//! running server takes within a second (see [`super`]).

use crate::registry::{DeviceStatus, Registry, RegistryError};

/// Why a challenge cannot be requested.
#[derive(Debug, thiserror::Error)]
pub enum OnDemandError {
    /// No device has the id.
    #[error("no device with id {0:?}")]
    NoDevice(String),
    /// The device is revoked or deleted.
    #[error("device {id} is {status}")]
    Inactive {
        /// The device id.
        id: String,
        /// Its status.
        status: DeviceStatus,
    },
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Queues a challenge of active device `id`; returns the request's row id.
pub fn request_attestation(reg: &Registry, id: &str, now_ms: i64) -> Result<i64, OnDemandError> {
    match reg.device(id)? {
        Some(d) if d.status.is_active() => Ok(reg.request_attestation(id, now_ms)?),
        Some(d) => Err(OnDemandError::Inactive {
            id: id.to_owned(),
            status: d.status,
        }),
        None => Err(OnDemandError::NoDevice(id.to_owned())),
    }
}
