//! Requests the running server carries out, queued in the registry so that any process (the
//! command line, the server itself) can ask and a request made while the server is down is
//! served when it starts. The server polls every second, takes the rows not yet taken and marks
//! them taken.
//! - `attest_requests`: `vouch-fleet attest ID` asks for a challenge now.
//! - `disconnect_requests`: a revocation (from any path) asks the server to have the broker
//!   close the device's live connection.

use super::db::{params, DbError, Row, RowLock};
use super::{q, Registry, RegistryError};

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

fn request_row(r: &Row) -> Result<Request, DbError> {
    Ok(Request {
        id: r.get(0)?,
        device_id: r.get(1)?,
        requested_ms: r.get(2)?,
    })
}

impl Registry {
    fn push_request(
        &self,
        queue: Queue,
        device_id: &str,
        now_ms: i64,
    ) -> Result<i64, RegistryError> {
        self.with(|c| {
            c.query_one(
                &format!(
                    "INSERT INTO {} (device_id, requested_ms) VALUES ($1, $2) RETURNING id",
                    queue.table()
                ),
                params![device_id, now_ms],
            )
            .and_then(|r| r.get(0))
            .map_err(q("queue request"))
        })
    }

    /// Takes the rows not taken yet, at most 1000, and marks them taken in one transaction.
    /// Rows another process is taking at the same moment are skipped, not waited for: each
    /// request is taken once.
    fn take_requests(&mut self, queue: Queue, now_ms: i64) -> Result<Vec<Request>, RegistryError> {
        let what = "take queued requests";
        let table = queue.table();
        self.tx(|tx| {
            let lock = tx.dialect().row_lock(RowLock::SkipLocked);
            let rows = tx
                .query(
                    &format!(
                        "SELECT id, device_id, requested_ms FROM {table} \
                         WHERE taken_ms IS NULL ORDER BY id LIMIT 1000{lock}"
                    ),
                    &[],
                )
                .map_err(q(what))?
                .iter()
                .map(request_row)
                .collect::<Result<Vec<_>, _>>()
                .map_err(q(what))?;
            for r in &rows {
                tx.exec(
                    &format!("UPDATE {table} SET taken_ms = $2 WHERE id = $1"),
                    params![r.id, now_ms],
                )
                .map_err(q(what))?;
            }
            Ok(rows)
        })
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
        self.with(|c| {
            c.query(
                "SELECT id, device_id, requested_ms, taken_ms FROM attest_requests \
                 WHERE device_id = $1 ORDER BY id",
                params![device_id],
            )
            .map_err(q(what))?
            .iter()
            .map(|r| Ok((request_row(r)?, r.get(3)?)))
            .collect::<Result<_, DbError>>()
            .map_err(q(what))
        })
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

    use crate::registry::testing::{both_backends, TestDb};

    fn queues_are_separate_and_taken_once(db: &TestDb) {
        let mut r = db.open();
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

    /// Four connections (server processes) take the same queue at once: every request is
    /// taken exactly once.
    fn concurrent_takers_take_each_request_once(db: &TestDb) {
        let r = db.open();
        for i in 0..200 {
            r.request_attestation(&format!("d{i}"), i).unwrap();
        }
        let taken: Vec<Request> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut reg = db.open();
                        let mut mine = Vec::new();
                        for round in 0..50 {
                            mine.extend(reg.take_attest_requests(1000 + round).unwrap());
                        }
                        mine
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        let mut ids: Vec<i64> = taken.iter().map(|t| t.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!((taken.len(), ids.len()), (200, 200));
    }

    both_backends!(
        queues_are_separate_and_taken_once,
        concurrent_takers_take_each_request_once
    );
}
