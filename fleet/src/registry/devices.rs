//! Enrolled devices: their TPM keys (EK, AK, TLS key as marshalled TPM2B_PUBLIC), certificate
//! serial, status, and the last quote (for the counter checks of the next one).

use super::{q, Registry, RegistryError};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

/// Where a device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Enrolled, not attested yet.
    Enrolled,
    /// Its last verdict was trusted.
    Trusted,
    /// Its last verdict was untrusted.
    Untrusted,
    /// Its certificate was revoked.
    Revoked,
    /// Decommissioned: certificate revoked, keys forgotten.
    Deleted,
}

impl DeviceStatus {
    /// The name stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Enrolled => "enrolled",
            DeviceStatus::Trusted => "trusted",
            DeviceStatus::Untrusted => "untrusted",
            DeviceStatus::Revoked => "revoked",
            DeviceStatus::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> Option<DeviceStatus> {
        Some(match s {
            "enrolled" => DeviceStatus::Enrolled,
            "trusted" => DeviceStatus::Trusted,
            "untrusted" => DeviceStatus::Untrusted,
            "revoked" => DeviceStatus::Revoked,
            "deleted" => DeviceStatus::Deleted,
            _ => return None,
        })
    }

    /// True while the device holds a valid certificate and should be challenged.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            DeviceStatus::Enrolled | DeviceStatus::Trusted | DeviceStatus::Untrusted
        )
    }
}

impl std::fmt::Display for DeviceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Device id (hex SHA-256 of the EK's SubjectPublicKeyInfo).
    pub id: String,
    /// Status.
    pub status: DeviceStatus,
    /// EK, TPM2B_PUBLIC (absent once deleted).
    #[serde(serialize_with = "ser_opt_hex")]
    pub ek_public: Option<Vec<u8>>,
    /// AK, TPM2B_PUBLIC (absent once deleted).
    #[serde(serialize_with = "ser_opt_hex")]
    pub ak_public: Option<Vec<u8>>,
    /// TLS key, TPM2B_PUBLIC (absent once deleted).
    #[serde(serialize_with = "ser_opt_hex")]
    pub tls_public: Option<Vec<u8>>,
    /// Serial of the device certificate (hex).
    pub cert_serial: Option<String>,
    /// When it (last) enrolled, ms since the epoch.
    pub enrolled_ms: i64,
    /// Last change, ms since the epoch.
    pub updated_ms: i64,
    /// The last accepted quote (TPMS_ATTEST), for counter checks.
    #[serde(skip)]
    pub last_attest: Option<Vec<u8>>,
    /// The last announced boot id.
    pub last_boot_id: Option<String>,
}

fn ser_opt_hex<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_str(&hex::encode(b)),
        None => s.serialize_none(),
    }
}

/// What enrollment stores.
#[derive(Debug, Clone)]
pub struct NewDevice<'a> {
    /// Device id.
    pub id: &'a str,
    /// EK TPM2B_PUBLIC.
    pub ek_public: &'a [u8],
    /// AK TPM2B_PUBLIC.
    pub ak_public: &'a [u8],
    /// TLS key TPM2B_PUBLIC.
    pub tls_public: &'a [u8],
    /// Certificate serial (hex).
    pub cert_serial: &'a str,
}

const COLUMNS: &str = "id, status, ek_public, ak_public, tls_public, cert_serial, enrolled_ms, \
                       updated_ms, last_attest, last_boot_id";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(Device, String)> {
    let status: String = row.get(1)?;
    Ok((
        Device {
            id: row.get(0)?,
            status: DeviceStatus::Enrolled,
            ek_public: row.get(2)?,
            ak_public: row.get(3)?,
            tls_public: row.get(4)?,
            cert_serial: row.get(5)?,
            enrolled_ms: row.get(6)?,
            updated_ms: row.get(7)?,
            last_attest: row.get(8)?,
            last_boot_id: row.get(9)?,
        },
        status,
    ))
}

fn finish((mut d, status): (Device, String)) -> Result<Device, RegistryError> {
    d.status = DeviceStatus::parse(&status).ok_or_else(|| RegistryError::Corrupt {
        what: "device",
        detail: format!("device {}: unknown status {status:?}", d.id),
    })?;
    Ok(d)
}

impl Registry {
    /// Stores a newly enrolled device (or re-enrolls one: keys, serial and status replaced, the
    /// last quote forgotten).
    pub fn upsert_device(&self, d: &NewDevice<'_>, now_ms: i64) -> Result<(), RegistryError> {
        self.conn()
            .execute(
                "INSERT INTO devices (id, status, ek_public, ak_public, tls_public, cert_serial, \
                 enrolled_ms, updated_ms) VALUES (?1, 'enrolled', ?2, ?3, ?4, ?5, ?6, ?6) \
                 ON CONFLICT(id) DO UPDATE SET status = 'enrolled', ek_public = ?2, \
                 ak_public = ?3, tls_public = ?4, cert_serial = ?5, enrolled_ms = ?6, \
                 updated_ms = ?6, last_attest = NULL",
                params![
                    d.id,
                    d.ek_public,
                    d.ak_public,
                    d.tls_public,
                    d.cert_serial,
                    now_ms
                ],
            )
            .map_err(q("store device"))?;
        Ok(())
    }

    /// One device.
    pub fn device(&self, id: &str) -> Result<Option<Device>, RegistryError> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM devices WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .map_err(q("read device"))?;
        row.map(finish).transpose()
    }

    /// Every device, ordered by id.
    pub fn devices(&self) -> Result<Vec<Device>, RegistryError> {
        let mut stmt = self
            .conn()
            .prepare(&format!("SELECT {COLUMNS} FROM devices ORDER BY id"))
            .map_err(q("list devices"))?;
        let rows = stmt
            .query_map([], from_row)
            .map_err(q("list devices"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(q("list devices"))?;
        rows.into_iter().map(finish).collect()
    }

    /// Sets a device's status.
    pub fn set_status(
        &self,
        id: &str,
        status: DeviceStatus,
        now_ms: i64,
    ) -> Result<(), RegistryError> {
        let n = self
            .conn()
            .execute(
                "UPDATE devices SET status = ?2, updated_ms = ?3 WHERE id = ?1",
                params![id, status.as_str(), now_ms],
            )
            .map_err(q("set device status"))?;
        if n == 0 {
            return Err(RegistryError::UnknownDevice(id.to_string()));
        }
        Ok(())
    }

    /// Remembers the last accepted quote of a device.
    pub fn set_last_attest(&self, id: &str, attest: &[u8]) -> Result<(), RegistryError> {
        self.conn()
            .execute(
                "UPDATE devices SET last_attest = ?2 WHERE id = ?1",
                params![id, attest],
            )
            .map_err(q("store last quote"))?;
        Ok(())
    }

    /// Remembers the boot id a device announced.
    pub fn set_boot_id(&self, id: &str, boot_id: &str) -> Result<(), RegistryError> {
        self.conn()
            .execute(
                "UPDATE devices SET last_boot_id = ?2 WHERE id = ?1",
                params![id, boot_id],
            )
            .map_err(q("store boot id"))?;
        Ok(())
    }

    /// Decommissions a device: status `deleted`, keys and last quote forgotten, its pending
    /// nonces, attestation requests and held event log dropped. Verdicts and the audit log are kept.
    pub fn forget_device(&mut self, id: &str, now_ms: i64) -> Result<(), RegistryError> {
        let tx = self.conn_mut().transaction().map_err(q("delete device"))?;
        let n = tx
            .execute(
                "UPDATE devices SET status = 'deleted', ek_public = NULL, ak_public = NULL, \
                 tls_public = NULL, last_attest = NULL, updated_ms = ?2 WHERE id = ?1",
                params![id, now_ms],
            )
            .map_err(q("delete device"))?;
        if n == 0 {
            return Err(RegistryError::UnknownDevice(id.to_string()));
        }
        tx.execute("DELETE FROM nonces WHERE device_id = ?1", [id])
            .map_err(q("delete device nonces"))?;
        tx.execute("DELETE FROM attest_requests WHERE device_id = ?1", [id])
            .map_err(q("delete device requests"))?;
        tx.execute("DELETE FROM held_logs WHERE device_id = ?1", [id])
            .map_err(q("delete device held log"))?;
        tx.commit().map_err(q("delete device"))?;
        Ok(())
    }
}

impl Registry {
    /// Assigns the policy `name` to a device (replacing any earlier assignment).
    pub fn set_policy(&self, device_id: &str, name: &str) -> Result<(), RegistryError> {
        if self.device(device_id)?.is_none() {
            return Err(RegistryError::UnknownDevice(device_id.to_string()));
        }
        self.conn()
            .execute(
                "INSERT INTO device_policy (device_id, policy) VALUES (?1, ?2) \
                 ON CONFLICT(device_id) DO UPDATE SET policy = excluded.policy",
                params![device_id, name],
            )
            .map_err(q("set policy"))?;
        Ok(())
    }

    /// The policy assigned to a device, if any.
    pub fn policy_of(&self, device_id: &str) -> Result<Option<String>, RegistryError> {
        self.conn()
            .query_row(
                "SELECT policy FROM device_policy WHERE device_id = ?1",
                [device_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(q("read policy"))
    }
}
