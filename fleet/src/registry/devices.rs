//! Enrolled devices: their TPM keys (EK, AK, TLS key as marshalled TPM2B_PUBLIC), certificate
//! serial, status, and the last quote (for the counter checks of the next one).

use super::db::{params, DbError, Row};
use super::{q, Registry, RegistryError};
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

fn from_row(row: &Row) -> Result<Device, RegistryError> {
    let corrupt = |e: DbError| RegistryError::Corrupt {
        what: "device",
        detail: e.to_string(),
    };
    let id: String = row.get(0).map_err(corrupt)?;
    let status: String = row.get(1).map_err(corrupt)?;
    Ok(Device {
        status: DeviceStatus::parse(&status).ok_or_else(|| RegistryError::Corrupt {
            what: "device",
            detail: format!("device {id}: unknown status {status:?}"),
        })?,
        ek_public: row.get(2).map_err(corrupt)?,
        ak_public: row.get(3).map_err(corrupt)?,
        tls_public: row.get(4).map_err(corrupt)?,
        cert_serial: row.get(5).map_err(corrupt)?,
        enrolled_ms: row.get(6).map_err(corrupt)?,
        updated_ms: row.get(7).map_err(corrupt)?,
        last_attest: row.get(8).map_err(corrupt)?,
        last_boot_id: row.get(9).map_err(corrupt)?,
        id,
    })
}

impl Registry {
    /// Stores a newly enrolled device (or re-enrolls one: keys, serial and status replaced, the
    /// last quote forgotten).
    pub fn upsert_device(&self, d: &NewDevice<'_>, now_ms: i64) -> Result<(), RegistryError> {
        self.with(|c| {
            c.exec(
                "INSERT INTO devices (id, status, ek_public, ak_public, tls_public, cert_serial, \
                 enrolled_ms, updated_ms) VALUES ($1, 'enrolled', $2, $3, $4, $5, $6, $6) \
                 ON CONFLICT(id) DO UPDATE SET status = 'enrolled', ek_public = $2, \
                 ak_public = $3, tls_public = $4, cert_serial = $5, enrolled_ms = $6, \
                 updated_ms = $6, last_attest = NULL",
                params![
                    d.id,
                    d.ek_public,
                    d.ak_public,
                    d.tls_public,
                    d.cert_serial,
                    now_ms
                ],
            )
            .map_err(q("store device"))
        })?;
        Ok(())
    }

    /// One device.
    pub fn device(&self, id: &str) -> Result<Option<Device>, RegistryError> {
        let row = self.with(|c| {
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM devices WHERE id = $1"),
                params![id],
            )
            .map_err(q("read device"))
        })?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every device, ordered by id.
    pub fn devices(&self) -> Result<Vec<Device>, RegistryError> {
        let rows = self.with(|c| {
            c.query(&format!("SELECT {COLUMNS} FROM devices ORDER BY id"), &[])
                .map_err(q("list devices"))
        })?;
        rows.iter().map(from_row).collect()
    }

    /// Sets a device's status.
    pub fn set_status(
        &self,
        id: &str,
        status: DeviceStatus,
        now_ms: i64,
    ) -> Result<(), RegistryError> {
        let n = self.with(|c| {
            c.exec(
                "UPDATE devices SET status = $2, updated_ms = $3 WHERE id = $1",
                params![id, status.as_str(), now_ms],
            )
            .map_err(q("set device status"))
        })?;
        if n == 0 {
            return Err(RegistryError::UnknownDevice(id.to_string()));
        }
        Ok(())
    }

    /// Remembers the last accepted quote of a device.
    pub fn set_last_attest(&self, id: &str, attest: &[u8]) -> Result<(), RegistryError> {
        self.with(|c| {
            c.exec(
                "UPDATE devices SET last_attest = $2 WHERE id = $1",
                params![id, attest],
            )
            .map_err(q("store last quote"))
        })?;
        Ok(())
    }

    /// Remembers the boot id a device announced.
    pub fn set_boot_id(&self, id: &str, boot_id: &str) -> Result<(), RegistryError> {
        self.with(|c| {
            c.exec(
                "UPDATE devices SET last_boot_id = $2 WHERE id = $1",
                params![id, boot_id],
            )
            .map_err(q("store boot id"))
        })?;
        Ok(())
    }

    /// Decommissions a device: status `deleted`, keys and last quote forgotten, its pending
    /// nonces, attestation requests and held event log dropped. Verdicts and the audit log are
    /// kept.
    pub fn forget_device(&mut self, id: &str, now_ms: i64) -> Result<(), RegistryError> {
        self.tx(|tx| {
            let n = tx
                .exec(
                    "UPDATE devices SET status = 'deleted', ek_public = NULL, ak_public = NULL, \
                     tls_public = NULL, last_attest = NULL, updated_ms = $2 WHERE id = $1",
                    params![id, now_ms],
                )
                .map_err(q("delete device"))?;
            if n == 0 {
                return Err(RegistryError::UnknownDevice(id.to_string()));
            }
            tx.exec("DELETE FROM nonces WHERE device_id = $1", params![id])
                .map_err(q("delete device nonces"))?;
            tx.exec(
                "DELETE FROM attest_requests WHERE device_id = $1",
                params![id],
            )
            .map_err(q("delete device requests"))?;
            tx.exec("DELETE FROM held_logs WHERE device_id = $1", params![id])
                .map_err(q("delete device held log"))?;
            Ok(())
        })
    }
}

impl Registry {
    /// Assigns the policy `name` to a device (replacing any earlier assignment).
    pub fn set_policy(&self, device_id: &str, name: &str) -> Result<(), RegistryError> {
        if self.device(device_id)?.is_none() {
            return Err(RegistryError::UnknownDevice(device_id.to_string()));
        }
        self.with(|c| {
            c.exec(
                "INSERT INTO device_policy (device_id, policy) VALUES ($1, $2) \
                 ON CONFLICT(device_id) DO UPDATE SET policy = excluded.policy",
                params![device_id, name],
            )
            .map_err(q("set policy"))
        })?;
        Ok(())
    }

    /// The policy assigned to a device, if any.
    pub fn policy_of(&self, device_id: &str) -> Result<Option<String>, RegistryError> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT policy FROM device_policy WHERE device_id = $1",
                params![device_id],
            )
            .map_err(q("read policy"))
        })?;
        row.map(|r| r.get(0)).transpose().map_err(q("read policy"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{both_backends, TestDb};

    fn enroll_status_forget_and_policy(db: &TestDb) {
        let mut reg = db.open();
        let d = NewDevice {
            id: "d1",
            ek_public: &[1, 2],
            ak_public: &[3],
            tls_public: &[4],
            cert_serial: "0a",
        };
        reg.upsert_device(&d, 10).unwrap();
        reg.set_last_attest("d1", &[9, 9]).unwrap();
        reg.set_boot_id("d1", "b1").unwrap();
        reg.set_status("d1", DeviceStatus::Trusted, 11).unwrap();
        let got = reg.device("d1").unwrap().unwrap();
        assert_eq!(got.status, DeviceStatus::Trusted);
        assert_eq!(got.ek_public.as_deref(), Some(&[1u8, 2][..]));
        assert_eq!(got.last_attest.as_deref(), Some(&[9u8, 9][..]));
        assert_eq!((got.enrolled_ms, got.updated_ms), (10, 11));
        assert_eq!(got.last_boot_id.as_deref(), Some("b1"));
        // Re-enrollment replaces keys and forgets the last quote.
        reg.upsert_device(
            &NewDevice {
                ak_public: &[5],
                ..d
            },
            20,
        )
        .unwrap();
        let got = reg.device("d1").unwrap().unwrap();
        assert_eq!(got.status, DeviceStatus::Enrolled);
        assert_eq!(
            (got.ak_public.as_deref(), got.last_attest),
            (Some(&[5u8][..]), None)
        );
        assert!(matches!(
            reg.set_status("nope", DeviceStatus::Revoked, 1),
            Err(RegistryError::UnknownDevice(_))
        ));
        assert!(matches!(
            reg.set_policy("nope", "p"),
            Err(RegistryError::UnknownDevice(_))
        ));
        reg.set_policy("d1", "p1").unwrap();
        reg.set_policy("d1", "p2").unwrap();
        assert_eq!(reg.policy_of("d1").unwrap().as_deref(), Some("p2"));
        assert_eq!(reg.policy_of("d2").unwrap(), None);
        reg.issue_nonce(b"n", "d1", "sha256:0", 1, 2).unwrap();
        reg.request_attestation("d1", 3).unwrap();
        reg.forget_device("d1", 30).unwrap();
        let got = reg.device("d1").unwrap().unwrap();
        assert_eq!((got.status, got.ek_public), (DeviceStatus::Deleted, None));
        assert_eq!(
            reg.consume_nonce(b"n", "d1", 1).unwrap(),
            Err(crate::registry::NonceRefusal::Unknown)
        );
        assert!(reg.attest_requests_of("d1").unwrap().is_empty());
        assert!(matches!(
            reg.forget_device("nope", 31),
            Err(RegistryError::UnknownDevice(_))
        ));
        assert_eq!(reg.devices().unwrap().len(), 1);
    }

    both_backends!(enroll_status_forget_and_policy);
}
