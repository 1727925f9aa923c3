//! On-demand attestation requests: `vouch-fleet attest ID` inserts a row, the running server
//! polls for rows not yet taken, challenges those devices and marks the rows taken.

use super::{q, Registry, RegistryError};
use rusqlite::params;

/// A request waiting for the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestRequest {
    /// Row id.
    pub id: i64,
    /// Device to challenge.
    pub device_id: String,
    /// When it was asked for (ms since the epoch).
    pub requested_ms: i64,
}

impl Registry {
    /// Queues a request to challenge `device_id` now; returns its row id.
    pub fn request_attestation(&self, device_id: &str, now_ms: i64) -> Result<i64, RegistryError> {
        self.conn()
            .execute(
                "INSERT INTO attest_requests (device_id, requested_ms) VALUES (?1, ?2)",
                params![device_id, now_ms],
            )
            .map_err(q("queue attestation request"))?;
        Ok(self.conn().last_insert_rowid())
    }

    /// Takes every queued request (marks them taken) and returns them, oldest first.
    pub fn take_attest_requests(
        &mut self,
        now_ms: i64,
    ) -> Result<Vec<AttestRequest>, RegistryError> {
        let tx = self
            .conn_mut()
            .transaction()
            .map_err(q("take attestation requests"))?;
        let rows = {
            let mut stmt = tx
                .prepare(
                    "SELECT id, device_id, requested_ms FROM attest_requests \
                     WHERE taken_ms IS NULL ORDER BY id LIMIT 1000",
                )
                .map_err(q("take attestation requests"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(AttestRequest {
                        id: r.get(0)?,
                        device_id: r.get(1)?,
                        requested_ms: r.get(2)?,
                    })
                })
                .map_err(q("take attestation requests"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(q("take attestation requests"))?;
            rows
        };
        for r in &rows {
            tx.execute(
                "UPDATE attest_requests SET taken_ms = ?2 WHERE id = ?1",
                params![r.id, now_ms],
            )
            .map_err(q("take attestation requests"))?;
        }
        tx.commit().map_err(q("take attestation requests"))?;
        Ok(rows)
    }
}
