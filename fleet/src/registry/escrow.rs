//! Escrow records deposited by devices (one per device and volume; a newer deposit replaces an
//! older one), the boot each device last announced (a release is bound to one boot), and
//! released passphrases waiting to be sent: `vouch-fleet escrow release ID VOLUME` queues a row
//! after its checks, the running server sends it and records the device's answer.

use super::db::{params, DbError, Row};
use super::{q, Registry, RegistryError};
use serde::Serialize;

/// A deposited escrow record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredEscrow {
    /// Device id.
    pub device_id: String,
    /// Volume UUID.
    pub volume_uuid: String,
    /// The record JSON (`vouch_attest::escrow::EscrowRecord`).
    pub record: String,
    /// When it was deposited (ms since the epoch).
    pub deposited_ms: i64,
}

/// The boot a device announced last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Boot {
    /// The device's boot id.
    pub boot_id: String,
    /// When it was announced (ms since the epoch).
    pub announced_ms: i64,
}

/// A release queued for delivery to the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EscrowRelease {
    /// Row id.
    pub id: i64,
    /// Device id.
    pub device_id: String,
    /// Volume UUID.
    pub volume_uuid: String,
    /// The boot it is for: the device refuses it in another one.
    pub boot_id: String,
    /// Why it was allowed (trusted verdict id, or the override reason).
    pub basis: String,
    /// When it was approved.
    pub requested_ms: i64,
    /// When it was sent to the device.
    pub sent_ms: Option<i64>,
    /// When the device answered.
    pub result_ms: Option<i64>,
    /// The device's answer.
    pub result: Option<String>,
}

fn release_row(r: &Row) -> Result<EscrowRelease, DbError> {
    Ok(EscrowRelease {
        id: r.get(0)?,
        device_id: r.get(1)?,
        volume_uuid: r.get(2)?,
        boot_id: r.get(3)?,
        basis: r.get(4)?,
        requested_ms: r.get(5)?,
        sent_ms: r.get(6)?,
        result_ms: r.get(7)?,
        result: r.get(8)?,
    })
}

const RELEASE_COLUMNS: &str =
    "id, device_id, volume_uuid, boot_id, basis, requested_ms, sent_ms, result_ms, result";

impl Registry {
    /// Records the boot a device announced.
    pub fn record_boot(
        &self,
        device_id: &str,
        boot_id: &str,
        now_ms: i64,
    ) -> Result<(), RegistryError> {
        self.with(|c| {
            c.exec(
                "INSERT INTO boots (device_id, boot_id, announced_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (device_id) DO UPDATE SET boot_id = excluded.boot_id, \
                 announced_ms = excluded.announced_ms",
                params![device_id, boot_id, now_ms],
            )
            .map_err(q("record boot"))
        })?;
        Ok(())
    }

    /// The boot a device announced last.
    pub fn last_boot(&self, device_id: &str) -> Result<Option<Boot>, RegistryError> {
        let what = "read boot";
        self.with(|c| {
            let row = c
                .query_opt(
                    "SELECT boot_id, announced_ms FROM boots WHERE device_id = $1",
                    params![device_id],
                )
                .map_err(q(what))?;
            row.map(|r| {
                Ok(Boot {
                    boot_id: r.get(0)?,
                    announced_ms: r.get(1)?,
                })
            })
            .transpose()
            .map_err(q(what))
        })
    }

    /// Stores (or replaces) a device's escrow record for a volume.
    pub fn deposit_escrow(
        &self,
        device_id: &str,
        volume_uuid: &str,
        record: &str,
        now_ms: i64,
    ) -> Result<(), RegistryError> {
        self.with(|c| {
            c.exec(
                "INSERT INTO escrow (device_id, volume_uuid, record, deposited_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (device_id, volume_uuid) \
                 DO UPDATE SET record = excluded.record, deposited_ms = excluded.deposited_ms",
                params![device_id, volume_uuid, record, now_ms],
            )
            .map_err(q("store escrow record"))
        })?;
        Ok(())
    }

    /// The escrow record of a device's volume.
    pub fn escrow(
        &self,
        device_id: &str,
        volume_uuid: &str,
    ) -> Result<Option<StoredEscrow>, RegistryError> {
        let what = "read escrow record";
        self.with(|c| {
            let row = c
                .query_opt(
                    "SELECT device_id, volume_uuid, record, deposited_ms FROM escrow \
                     WHERE device_id = $1 AND volume_uuid = $2",
                    params![device_id, volume_uuid],
                )
                .map_err(q(what))?;
            row.map(|r| {
                Ok(StoredEscrow {
                    device_id: r.get(0)?,
                    volume_uuid: r.get(1)?,
                    record: r.get(2)?,
                    deposited_ms: r.get(3)?,
                })
            })
            .transpose()
            .map_err(q(what))
        })
    }

    /// The volumes a device has deposited records for, by UUID.
    pub fn escrowed_volumes(&self, device_id: &str) -> Result<Vec<String>, RegistryError> {
        let what = "list escrow records";
        self.with(|c| {
            c.query(
                "SELECT volume_uuid FROM escrow WHERE device_id = $1 ORDER BY volume_uuid",
                params![device_id],
            )
            .map_err(q(what))?
            .iter()
            .map(|r| r.get(0))
            .collect::<Result<_, _>>()
            .map_err(q(what))
        })
    }

    /// Queues an approved release for delivery; returns its row id.
    pub fn queue_escrow_release(
        &self,
        device_id: &str,
        volume_uuid: &str,
        boot_id: &str,
        basis: &str,
        now_ms: i64,
    ) -> Result<i64, RegistryError> {
        let what = "queue escrow release";
        self.with(|c| {
            c.query_one(
                "INSERT INTO escrow_releases (device_id, volume_uuid, boot_id, basis, \
                 requested_ms) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                params![device_id, volume_uuid, boot_id, basis, now_ms],
            )
            .and_then(|r| r.get(0))
            .map_err(q(what))
        })
    }

    /// Releases approved but not yet sent, oldest first.
    pub fn unsent_escrow_releases(&self) -> Result<Vec<EscrowRelease>, RegistryError> {
        let what = "list escrow releases";
        self.with(|c| {
            c.query(
                &format!(
                    "SELECT {RELEASE_COLUMNS} FROM escrow_releases WHERE sent_ms IS NULL \
                     ORDER BY id LIMIT 100"
                ),
                &[],
            )
            .map_err(q(what))?
            .iter()
            .map(release_row)
            .collect::<Result<_, _>>()
            .map_err(q(what))
        })
    }

    /// Marks a release sent.
    pub fn mark_escrow_sent(&self, id: i64, now_ms: i64) -> Result<(), RegistryError> {
        self.with(|c| {
            c.exec(
                "UPDATE escrow_releases SET sent_ms = $2 WHERE id = $1",
                params![id, now_ms],
            )
            .map_err(q("mark escrow release sent"))
        })?;
        Ok(())
    }

    /// Records the device's answer on the newest sent release of that volume; false when there
    /// is no such release (an answer nobody asked for).
    pub fn record_escrow_result(
        &self,
        device_id: &str,
        volume_uuid: &str,
        result: &str,
        now_ms: i64,
    ) -> Result<bool, RegistryError> {
        let n = self.with(|c| {
            c.exec(
                "UPDATE escrow_releases SET result = $3, result_ms = $4 WHERE id = (\
                 SELECT id FROM escrow_releases WHERE device_id = $1 AND volume_uuid = $2 \
                 AND sent_ms IS NOT NULL AND result_ms IS NULL ORDER BY id DESC LIMIT 1)",
                params![device_id, volume_uuid, result, now_ms],
            )
            .map_err(q("record escrow result"))
        })?;
        Ok(n == 1)
    }

    /// One release by row id.
    pub fn escrow_release(&self, id: i64) -> Result<Option<EscrowRelease>, RegistryError> {
        let what = "read escrow release";
        self.with(|c| {
            c.query_opt(
                &format!("SELECT {RELEASE_COLUMNS} FROM escrow_releases WHERE id = $1"),
                params![id],
            )
            .map_err(q(what))?
            .as_ref()
            .map(release_row)
            .transpose()
            .map_err(q(what))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::registry::testing::{both_backends, TestDb};

    fn deposit_replace_queue_send_answer(db: &TestDb) {
        let reg = db.open();
        reg.deposit_escrow("d1", "u1", "{\"a\":1}", 10).unwrap();
        reg.deposit_escrow("d1", "u1", "{\"a\":2}", 20).unwrap();
        reg.deposit_escrow("d1", "u2", "{}", 20).unwrap();
        let e = reg.escrow("d1", "u1").unwrap().unwrap();
        assert_eq!((e.record.as_str(), e.deposited_ms), ("{\"a\":2}", 20));
        assert_eq!(reg.escrowed_volumes("d1").unwrap(), vec!["u1", "u2"]);
        assert!(reg.escrow("d2", "u1").unwrap().is_none());

        // An answer before anything was sent is not recorded.
        assert!(!reg.record_escrow_result("d1", "u1", "ok", 25).unwrap());
        assert!(reg.last_boot("d1").unwrap().is_none());
        reg.record_boot("d1", "b1", 5).unwrap();
        reg.record_boot("d1", "b2", 6).unwrap();
        assert_eq!(
            reg.last_boot("d1").unwrap(),
            Some(Boot {
                boot_id: "b2".into(),
                announced_ms: 6
            })
        );
        let id = reg
            .queue_escrow_release("d1", "u1", "b2", "verdict #3", 30)
            .unwrap();
        assert_eq!(reg.unsent_escrow_releases().unwrap().len(), 1);
        reg.mark_escrow_sent(id, 31).unwrap();
        assert!(reg.unsent_escrow_releases().unwrap().is_empty());
        assert!(reg
            .record_escrow_result("d1", "u1", "ok: sealed", 40)
            .unwrap());
        assert!(!reg.record_escrow_result("d1", "u1", "again", 41).unwrap());
        let r = reg.escrow_release(id).unwrap().unwrap();
        assert_eq!(r.sent_ms, Some(31));
        assert_eq!(r.result.as_deref(), Some("ok: sealed"));
        assert_eq!(r.basis, "verdict #3");
        assert_eq!(r.boot_id, "b2");
    }

    both_backends!(deposit_replace_queue_send_answer);
}
