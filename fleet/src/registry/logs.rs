//! The event log the fleet holds for each device that sends only appended parts (steady state):
//! the whole log of its last appraised report, its SHA-256 (offered in challenges as the part the
//! fleet holds), and what the last trusted appraisal of exactly that log kept
//! (`vouch_attest::appraisal::SettledLog`). It lives in the registry so that any server process
//! can appraise the device's next report.

use super::db::params;
use super::{q, Registry, RegistryError};
use vouch_attest::appraisal::SettledLog;

/// A device's held log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLog {
    /// The whole log.
    pub log: Vec<u8>,
    /// What the last trusted appraisal of this log kept; `None` when the last appraisal of it
    /// was not trusted.
    pub settled: Option<SettledLog>,
}

/// The part of a held log a challenge names, and what was kept of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldHead {
    /// Its length in bytes.
    pub len: u64,
    /// Its SHA-256.
    pub sha256: Vec<u8>,
    /// What the last trusted appraisal of it kept.
    pub settled: Option<SettledLog>,
}

fn settled_from(json: Option<String>) -> Result<Option<SettledLog>, RegistryError> {
    json.map(|j| {
        serde_json::from_str(&j).map_err(|e| RegistryError::Corrupt {
            what: "settled log",
            detail: e.to_string(),
        })
    })
    .transpose()
}

fn settled_json(settled: Option<&SettledLog>) -> Result<Option<String>, RegistryError> {
    settled
        .map(|s| {
            serde_json::to_string(s).map_err(|e| RegistryError::Corrupt {
                what: "settled log",
                detail: e.to_string(),
            })
        })
        .transpose()
}

impl Registry {
    /// The length and SHA-256 of a device's held log and what was kept of it, without the log.
    pub fn held_head(&self, device_id: &str) -> Result<Option<HeldHead>, RegistryError> {
        let row: Option<(i64, Vec<u8>, Option<String>)> = self.with(|c| {
            c.query_opt(
                "SELECT length(log), sha256, settled FROM held_logs WHERE device_id = $1",
                params![device_id],
            )
            .and_then(|r| r.map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).transpose())
            .map_err(q("read held log"))
        })?;
        let Some((len, sha256, settled)) = row else {
            return Ok(None);
        };
        Ok(Some(HeldHead {
            len: u64::try_from(len).map_err(|_| RegistryError::Corrupt {
                what: "held log",
                detail: format!("length {len}"),
            })?,
            sha256,
            settled: settled_from(settled)?,
        }))
    }

    /// A device's held log.
    pub fn held_log(&self, device_id: &str) -> Result<Option<HeldLog>, RegistryError> {
        let row: Option<(Vec<u8>, Option<String>)> = self.with(|c| {
            c.query_opt(
                "SELECT log, settled FROM held_logs WHERE device_id = $1",
                params![device_id],
            )
            .and_then(|r| r.map(|r| Ok((r.get(0)?, r.get(1)?))).transpose())
            .map_err(q("read held log"))
        })?;
        row.map(|(log, settled)| {
            Ok(HeldLog {
                log,
                settled: settled_from(settled)?,
            })
        })
        .transpose()
    }

    /// Holds `log` for a device (replacing what was held) with what its appraisal kept.
    pub fn hold_log(
        &self,
        device_id: &str,
        log: &[u8],
        settled: Option<&SettledLog>,
    ) -> Result<(), RegistryError> {
        let sha256 = ring::digest::digest(&ring::digest::SHA256, log);
        let settled = settled_json(settled)?;
        self.with(|c| {
            c.exec(
                "INSERT INTO held_logs (device_id, log, sha256, settled) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT(device_id) DO UPDATE SET log = excluded.log, \
                 sha256 = excluded.sha256, settled = excluded.settled",
                params![device_id, log, sha256.as_ref(), settled.as_deref()],
            )
            .map_err(q("hold log"))
        })?;
        Ok(())
    }

    /// Replaces what was kept of a device's held log (`None`: its last appraisal was not
    /// trusted).
    pub fn set_settled(
        &self,
        device_id: &str,
        settled: Option<&SettledLog>,
    ) -> Result<(), RegistryError> {
        let settled = settled_json(settled)?;
        self.with(|c| {
            c.exec(
                "UPDATE held_logs SET settled = $2 WHERE device_id = $1",
                params![device_id, settled.as_deref()],
            )
            .map_err(q("update held log"))
        })?;
        Ok(())
    }

    /// Forgets a device's held log (it sends whole logs again).
    pub fn drop_held_log(&self, device_id: &str) -> Result<(), RegistryError> {
        self.with(|c| {
            c.exec(
                "DELETE FROM held_logs WHERE device_id = $1",
                params![device_id],
            )
            .map_err(q("drop held log"))
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{both_backends, TestDb};

    fn hold_read_settle_and_drop(db: &TestDb) {
        let reg = db.open();
        assert!(reg.held_head("d1").unwrap().is_none());
        let settled = SettledLog {
            log_len: 3,
            log_sha256: vec![1; 32],
            policy: Some("p@00".into()),
            firmware_version: 7,
            pcrs: Vec::new(),
        };
        reg.hold_log("d1", b"abc", Some(&settled)).unwrap();
        let head = reg.held_head("d1").unwrap().unwrap();
        assert_eq!(head.len, 3);
        assert_eq!(
            head.sha256,
            ring::digest::digest(&ring::digest::SHA256, b"abc").as_ref()
        );
        assert_eq!(head.settled.as_ref(), Some(&settled));
        reg.set_settled("d1", None).unwrap();
        let held = reg.held_log("d1").unwrap().unwrap();
        assert_eq!((held.log.as_slice(), held.settled), (&b"abc"[..], None));
        reg.hold_log("d1", b"abcd", None).unwrap();
        assert_eq!(reg.held_head("d1").unwrap().unwrap().len, 4);
        reg.drop_held_log("d1").unwrap();
        assert!(reg.held_log("d1").unwrap().is_none());
        // A corrupt row is named, not taken for "nothing kept".
        reg.hold_log("d2", b"x", None).unwrap();
        reg.with(|c| {
            c.exec(
                "UPDATE held_logs SET settled = '{' WHERE device_id = 'd2'",
                &[],
            )
            .map_err(crate::registry::q("test"))
        })
        .unwrap();
        assert!(matches!(
            reg.held_head("d2"),
            Err(RegistryError::Corrupt {
                what: "settled log",
                ..
            })
        ));
    }

    both_backends!(hold_read_settle_and_drop);
}
