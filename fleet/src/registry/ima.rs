//! The IMA replay state of each device: PCR 10 after the entries of its measurement list the
//! fleet has accepted, and the byte offset the next report continues from
//! (`vouch_attest::ima::ReplayState`), with the boot it belongs to. It lives in the registry so
//! that any server process can appraise a device's next report; a new boot starts over.

use super::db::params;
use super::{q, Registry, RegistryError};
use vouch_attest::ima::ReplayState;

/// A device's stored IMA state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaRecord {
    /// The boot the state belongs to (the device's boot id when it was stored; empty when the
    /// device had announced none).
    pub boot_id: String,
    /// The replay.
    pub state: ReplayState,
    /// Failing entries accepted in this boot (their verdict reasons), repeated in every later
    /// verdict of the boot.
    pub failed: Vec<String>,
    /// Keys (certificates) the list loaded onto keyrings the policy allows, for signatures in
    /// later reports of the boot.
    pub keys: Vec<Vec<u8>>,
}

impl Registry {
    /// The stored IMA state of a device, if any.
    pub fn ima_state(&self, device_id: &str) -> Result<Option<ImaRecord>, RegistryError> {
        let what = "read IMA state";
        let row: Option<(String, String, String, String)> = self.with(|c| {
            c.query_opt(
                "SELECT boot_id, state, failed, keys FROM ima_state WHERE device_id = $1",
                params![device_id],
            )
            .and_then(|r| {
                r.map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .transpose()
            })
            .map_err(q(what))
        })?;
        let Some((boot_id, json, failed, keys)) = row else {
            return Ok(None);
        };
        let corrupt = |e: serde_json::Error| RegistryError::Corrupt {
            what: "IMA state",
            detail: e.to_string(),
        };
        let state = serde_json::from_str(&json).map_err(corrupt)?;
        let failed = serde_json::from_str(&failed).map_err(corrupt)?;
        let keys: Vec<String> = serde_json::from_str(&keys).map_err(corrupt)?;
        let keys = keys
            .iter()
            .map(hex::decode)
            .collect::<Result<_, _>>()
            .map_err(|e| RegistryError::Corrupt {
                what: "IMA keys",
                detail: e.to_string(),
            })?;
        Ok(Some(ImaRecord {
            boot_id,
            state,
            failed,
            keys,
        }))
    }

    /// Stores a device's IMA state.
    pub fn set_ima_state(&self, device_id: &str, record: &ImaRecord) -> Result<(), RegistryError> {
        let corrupt = |e: serde_json::Error| RegistryError::Corrupt {
            what: "IMA state",
            detail: e.to_string(),
        };
        let json = serde_json::to_string(&record.state).map_err(corrupt)?;
        let failed = serde_json::to_string(&record.failed).map_err(corrupt)?;
        let keys: Vec<String> = record.keys.iter().map(hex::encode).collect();
        let keys = serde_json::to_string(&keys).map_err(corrupt)?;
        self.with(|c| {
            c.exec(
                "INSERT INTO ima_state (device_id, boot_id, state, failed, keys) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT(device_id) DO UPDATE SET boot_id = excluded.boot_id, \
                 state = excluded.state, failed = excluded.failed, keys = excluded.keys",
                params![device_id, &record.boot_id, &json, &failed, &keys],
            )
            .map_err(q("store IMA state"))
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vouch_attest::HashAlg;

    use crate::registry::testing::{both_backends, TestDb};

    fn a_state_is_stored_replaced_and_read_back(db: &TestDb) {
        let reg = db.open();
        assert_eq!(reg.ima_state("d1").unwrap(), None);
        let mut rec = ImaRecord {
            boot_id: "b1".into(),
            state: ReplayState::new(HashAlg::Sha256, 10).unwrap(),
            failed: Vec::new(),
            keys: Vec::new(),
        };
        reg.set_ima_state("d1", &rec).unwrap();
        assert_eq!(reg.ima_state("d1").unwrap(), Some(rec.clone()));
        rec.state.offset = 4096;
        rec.state.entries = 40;
        rec.state.value = vec![7; 32];
        rec.failed.push("not_in_policy /tmp/x".into());
        rec.keys.push(vec![0x30, 0x82, 1, 2]);
        reg.set_ima_state("d1", &rec).unwrap();
        // Another connection (another server process) reads what this one stored.
        let other = db.open();
        assert_eq!(other.ima_state("d1").unwrap(), Some(rec));
    }

    both_backends!(a_state_is_stored_replaced_and_read_back);
}
