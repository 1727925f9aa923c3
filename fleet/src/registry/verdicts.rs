//! Verdicts: for every appraised attestation, whether the device was trusted and every reason
//! it was not, with the time the challenge went out and the time the verdict was stored (their
//! difference is the end-to-end attestation latency).

use super::db::{params, P};
use super::{q, Registry, RegistryError};
use serde::Serialize;

/// A verdict to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictRecord<'a> {
    /// Device.
    pub device_id: &'a str,
    /// When the challenge was issued (ms since the epoch).
    pub challenged_ms: i64,
    /// Trusted or not.
    pub trusted: bool,
    /// Why not (empty when trusted), each `check: detail`.
    pub reasons: &'a [String],
}

/// A stored verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredVerdict {
    /// Row id (increasing).
    pub id: i64,
    /// Device.
    pub device_id: String,
    /// When the challenge was issued.
    pub challenged_ms: i64,
    /// When the verdict was stored.
    pub stored_ms: i64,
    /// Trusted or not.
    pub trusted: bool,
    /// Reasons (empty when trusted).
    pub reasons: Vec<String>,
}

impl Registry {
    /// Stores a verdict; returns its row id.
    pub fn store_verdict(&self, v: &VerdictRecord<'_>, now_ms: i64) -> Result<i64, RegistryError> {
        let reasons = serde_json::to_string(v.reasons).unwrap_or_else(|_| "[]".into());
        self.with(|c| {
            c.query_one(
                "INSERT INTO verdicts (device_id, challenged_ms, stored_ms, trusted, reasons) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                params![v.device_id, v.challenged_ms, now_ms, v.trusted, &reasons],
            )
            .and_then(|r| r.get(0))
            .map_err(q("store verdict"))
        })
    }

    /// The last `limit` verdicts of a device, newest first.
    pub fn verdicts(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredVerdict>, RegistryError> {
        self.verdict_query(
            "SELECT id, device_id, challenged_ms, stored_ms, trusted, reasons FROM verdicts \
             WHERE device_id = $1 ORDER BY id DESC LIMIT $2",
            params![device_id, limit],
        )
    }

    /// Verdicts of every device with a row id above `after_id`, oldest first, at most `limit`.
    pub fn verdicts_after(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<StoredVerdict>, RegistryError> {
        self.verdict_query(
            "SELECT id, device_id, challenged_ms, stored_ms, trusted, reasons FROM verdicts \
             WHERE id > $1 ORDER BY id LIMIT $2",
            params![after_id, limit],
        )
    }

    /// Whether the device's verdict before row `before_id` was trusted (`None`: it had none).
    pub fn verdict_before(
        &self,
        device_id: &str,
        before_id: i64,
    ) -> Result<Option<bool>, RegistryError> {
        let what = "read previous verdict";
        self.with(|c| {
            c.query_opt(
                "SELECT trusted FROM verdicts WHERE device_id = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT 1",
                params![device_id, before_id],
            )
            .and_then(|r| r.map(|r| r.get(0)).transpose())
            .map_err(q(what))
        })
    }

    /// The highest verdict row id (0 when there is none).
    pub fn last_verdict_id(&self) -> Result<i64, RegistryError> {
        self.with(|c| {
            c.query_one("SELECT COALESCE(MAX(id), 0) FROM verdicts", &[])
                .and_then(|r| r.get(0))
                .map_err(q("read last verdict id"))
        })
    }

    /// For every device with a trusted verdict: when its newest trusted verdict was stored.
    pub fn last_trusted_ms(&self) -> Result<std::collections::HashMap<String, i64>, RegistryError> {
        let what = "read last trusted verdicts";
        self.with(|c| {
            c.query(
                "SELECT device_id, MAX(stored_ms) FROM verdicts WHERE trusted = 1 \
                 GROUP BY device_id",
                &[],
            )
            .map_err(q(what))?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect::<Result<_, super::DbError>>()
            .map_err(q(what))
        })
    }

    fn verdict_query(
        &self,
        sql: &str,
        params: &[P<'_>],
    ) -> Result<Vec<StoredVerdict>, RegistryError> {
        let what = "list verdicts";
        let rows = self.with(|c| c.query(sql, params).map_err(q(what)))?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.get(0).map_err(q(what))?;
                let reasons: String = r.get(5).map_err(q(what))?;
                let reasons =
                    serde_json::from_str(&reasons).map_err(|e| RegistryError::Corrupt {
                        what: "verdict",
                        detail: format!("verdict {id}: reasons are not a JSON string list: {e}"),
                    })?;
                Ok(StoredVerdict {
                    id,
                    device_id: r.get(1).map_err(q(what))?,
                    challenged_ms: r.get(2).map_err(q(what))?,
                    stored_ms: r.get(3).map_err(q(what))?,
                    trusted: r.get(4).map_err(q(what))?,
                    reasons,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{both_backends, TestDb};

    fn verdicts_are_stored_listed_and_followed(db: &TestDb) {
        let reg = db.open();
        assert_eq!(reg.last_verdict_id().unwrap(), 0);
        let why = ["policy.pcr: 7 differs".to_string()];
        let rec = |device_id, trusted, reasons: &'static [String]| VerdictRecord {
            device_id,
            challenged_ms: 5,
            trusted,
            reasons,
        };
        let a = reg.store_verdict(&rec("a", true, &[]), 10).unwrap();
        let reasons: &'static [String] = Box::leak(Box::new(why));
        let b = reg.store_verdict(&rec("a", false, reasons), 20).unwrap();
        let c = reg.store_verdict(&rec("b", true, &[]), 30).unwrap();
        assert!(a < b && b < c);
        assert_eq!(reg.last_verdict_id().unwrap(), c);
        let newest = reg.verdicts("a", 1).unwrap();
        assert_eq!(newest.len(), 1);
        assert_eq!((newest[0].id, newest[0].trusted), (b, false));
        assert_eq!(newest[0].reasons, reasons);
        assert_eq!(newest[0].stored_ms - newest[0].challenged_ms, 15);
        let after: Vec<i64> = reg
            .verdicts_after(a, 10)
            .unwrap()
            .iter()
            .map(|v| v.id)
            .collect();
        assert_eq!(after, [b, c]);
        assert_eq!(reg.verdict_before("a", b).unwrap(), Some(true));
        assert_eq!(reg.verdict_before("a", a).unwrap(), None);
        let trusted = reg.last_trusted_ms().unwrap();
        assert_eq!((trusted.get("a"), trusted.get("b")), (Some(&10), Some(&30)));
    }

    both_backends!(verdicts_are_stored_listed_and_followed);
}
