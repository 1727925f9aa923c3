//! Verdicts: for every appraised attestation, whether the device was trusted and every reason
//! it was not, with the time the challenge went out and the time the verdict was stored (their
//! difference is the end-to-end attestation latency).

use super::{q, Registry, RegistryError};
use rusqlite::params;
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
        self.conn()
            .execute(
                "INSERT INTO verdicts (device_id, challenged_ms, stored_ms, trusted, reasons) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![v.device_id, v.challenged_ms, now_ms, v.trusted, reasons],
            )
            .map_err(q("store verdict"))?;
        Ok(self.conn().last_insert_rowid())
    }

    /// The last `limit` verdicts of a device, newest first.
    pub fn verdicts(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredVerdict>, RegistryError> {
        self.verdict_query(
            "SELECT id, device_id, challenged_ms, stored_ms, trusted, reasons FROM verdicts \
             WHERE device_id = ?1 ORDER BY id DESC LIMIT ?2",
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
             WHERE id > ?1 ORDER BY id LIMIT ?2",
            params![after_id, limit],
        )
    }

    /// Whether the device's verdict before row `before_id` was trusted (`None`: it had none).
    pub fn verdict_before(
        &self,
        device_id: &str,
        before_id: i64,
    ) -> Result<Option<bool>, RegistryError> {
        use rusqlite::OptionalExtension;
        self.conn()
            .query_row(
                "SELECT trusted FROM verdicts WHERE device_id = ?1 AND id < ?2 \
                 ORDER BY id DESC LIMIT 1",
                params![device_id, before_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(q("read previous verdict"))
    }

    /// The highest verdict row id (0 when there is none).
    pub fn last_verdict_id(&self) -> Result<i64, RegistryError> {
        self.conn()
            .query_row("SELECT COALESCE(MAX(id), 0) FROM verdicts", [], |r| {
                r.get(0)
            })
            .map_err(q("read last verdict id"))
    }

    /// For every device with a trusted verdict: when its newest trusted verdict was stored.
    pub fn last_trusted_ms(&self) -> Result<std::collections::HashMap<String, i64>, RegistryError> {
        let what = "read last trusted verdicts";
        let mut stmt = self
            .conn()
            .prepare(
                "SELECT device_id, MAX(stored_ms) FROM verdicts WHERE trusted = 1 \
                 GROUP BY device_id",
            )
            .map_err(q(what))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(q(what))?
            .collect::<Result<_, _>>()
            .map_err(q(what))?;
        Ok(rows)
    }

    fn verdict_query(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<StoredVerdict>, RegistryError> {
        let mut stmt = self.conn().prepare(sql).map_err(q("list verdicts"))?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(q("list verdicts"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(q("list verdicts"))?;
        rows.into_iter()
            .map(
                |(id, device_id, challenged_ms, stored_ms, trusted, reasons)| {
                    let reasons =
                        serde_json::from_str(&reasons).map_err(|e| RegistryError::Corrupt {
                            what: "verdict",
                            detail: format!(
                                "verdict {id}: reasons are not a JSON string list: {e}"
                            ),
                        })?;
                    Ok(StoredVerdict {
                        id,
                        device_id,
                        challenged_ms,
                        stored_ms,
                        trusted,
                        reasons,
                    })
                },
            )
            .collect()
    }
}
