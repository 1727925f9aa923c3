//! Requests the running server carries out, queued in the registry so that any process (the
//! command line, the server itself) can ask and a request made while the server is down is
//! served when it starts. The server polls every second, takes the rows not yet taken and marks
//! them taken.
//! - `attest_requests`: `vouch-fleet attest ID` asks for a challenge now.
//! - `disconnect_requests`: a revocation (from any path) asks the server to have the broker
//!   close the device's live connection.

use super::{q, Registry, RegistryError};
use rusqlite::params;

/// A request waiting for the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Row id.
    pub id: i64,
    /// The device concerned.
    pub device_id: String,
    /// When it was asked for (ms since the epoch).
    pub requested_ms: i64,
}

/// A request to challenge a device now.
pub type AttestRequest = Request;

/// The kinds of queued request (one table each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Attest,
    Disconnect,
}

impl Queue {
    fn table(self) -> &'static str {
        match self {
            Queue::Attest => "attest_requests",
            Queue::Disconnect => "disconnect_requests",
        }
    }
}

impl Registry {
    fn push_request(
        &self,
        queue: Queue,
        device_id: &str,
        now_ms: i64,
    ) -> Result<i64, RegistryError> {
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO {} (device_id, requested_ms) VALUES (?1, ?2)",
                    queue.table()
                ),
                params![device_id, now_ms],
            )
            .map_err(q("queue request"))?;
        Ok(self.conn().last_insert_rowid())
    }

    fn take_requests(&mut self, queue: Queue, now_ms: i64) -> Result<Vec<Request>, RegistryError> {
        let what = "take queued requests";
        let tx = self.conn_mut().transaction().map_err(q(what))?;
        let rows = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT id, device_id, requested_ms FROM {} \
                     WHERE taken_ms IS NULL ORDER BY id LIMIT 1000",
                    queue.table()
                ))
                .map_err(q(what))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(Request {
                        id: r.get(0)?,
                        device_id: r.get(1)?,
                        requested_ms: r.get(2)?,
                    })
                })
                .map_err(q(what))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(q(what))?;
            rows
        };
        for r in &rows {
            tx.execute(
                &format!("UPDATE {} SET taken_ms = ?2 WHERE id = ?1", queue.table()),
                params![r.id, now_ms],
            )
            .map_err(q(what))?;
        }
        tx.commit().map_err(q(what))?;
        Ok(rows)
    }

    /// Queues a request to challenge `device_id` now; returns its row id.
    pub fn request_attestation(&self, device_id: &str, now_ms: i64) -> Result<i64, RegistryError> {
        self.push_request(Queue::Attest, device_id, now_ms)
    }

    /// Takes every queued attestation request (marks them taken), oldest first.
    pub fn take_attest_requests(&mut self, now_ms: i64) -> Result<Vec<Request>, RegistryError> {
        self.take_requests(Queue::Attest, now_ms)
    }

    /// The attestation requests for `device_id`, oldest first, each with when the server took
    /// it (ms since the epoch; `None` while it waits).
    pub fn attest_requests_of(
        &self,
        device_id: &str,
    ) -> Result<Vec<(AttestRequest, Option<i64>)>, RegistryError> {
        let what = "list attestation requests";
        let mut stmt = self
            .conn()
            .prepare(
                "SELECT id, device_id, requested_ms, taken_ms FROM attest_requests \
                 WHERE device_id = ?1 ORDER BY id",
            )
            .map_err(q(what))?;
        let rows = stmt
            .query_map([device_id], |r| {
                let request = Request {
                    id: r.get(0)?,
                    device_id: r.get(1)?,
                    requested_ms: r.get(2)?,
                };
                Ok((request, r.get(3)?))
            })
            .map_err(q(what))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(q(what))?;
        Ok(rows)
    }

    /// Queues a request to close `device_id`'s live broker connection; returns its row id.
    pub fn request_disconnect(&self, device_id: &str, now_ms: i64) -> Result<i64, RegistryError> {
        self.push_request(Queue::Disconnect, device_id, now_ms)
    }

    /// Takes every queued disconnect request (marks them taken), oldest first.
    pub fn take_disconnect_requests(&mut self, now_ms: i64) -> Result<Vec<Request>, RegistryError> {
        self.take_requests(Queue::Disconnect, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_are_separate_and_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        r.request_attestation("a", 1).unwrap();
        r.request_disconnect("b", 2).unwrap();
        r.request_disconnect("c", 3).unwrap();
        let d: Vec<String> = r
            .take_disconnect_requests(4)
            .unwrap()
            .into_iter()
            .map(|x| x.device_id)
            .collect();
        assert_eq!(d, ["b", "c"]);
        assert!(r.take_disconnect_requests(5).unwrap().is_empty());
        let a = r.take_attest_requests(6).unwrap();
        assert_eq!((a.len(), a[0].device_id.as_str()), (1, "a"));
    }
}
