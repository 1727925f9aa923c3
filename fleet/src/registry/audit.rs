//! The append-only audit log: enrollments (and refusals), verdicts, refused answers,
//! revocations and deletions.
//!
//! Rows live in the `audit` table, which triggers protect against UPDATE and DELETE (and on
//! PostgreSQL TRUNCATE). Each row carries the SHA-256 of its own content chained to the previous
//! row's hash, so a row changed or removed behind the database's back (by editing the file, or
//! by a database superuser) is found by
//! [`Registry::verify_audit`]. The hash input is, in order, each length-prefixed (u64 big-endian):
//! the decimal sequence number, the decimal time, the kind, the device id (empty when none), the
//! detail, and the previous row's hash (64 zeros for the first row).

use super::db::{params, DbError, Row};
use super::{q, Registry, RegistryError};
use serde::Serialize;

/// The previous-hash of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A device enrolled.
    Enrolled,
    /// An enrollment was refused.
    EnrollRefused,
    /// A verdict was stored.
    Verdict,
    /// An attestation answer was refused before appraisal (nonce, format, size).
    AttestationRefused,
    /// A device certificate was revoked.
    Revoked,
    /// A device was decommissioned.
    Deleted,
    /// A volume recovery passphrase was released from escrow (normal or override).
    EscrowRelease,
    /// A device deposited a volume's escrow record.
    EscrowDeposit,
    /// A released passphrase was sent to the device, or the device reported what it did.
    EscrowDelivery,
    /// A message was dropped before its handler: its sender is not an active device, or the
    /// handler failed.
    MessageRefused,
    /// The broker was asked to close a revoked device's connection.
    Disconnected,
    /// A backup of the fleet was taken (`vouch-fleet backup`).
    Backup,
    /// The registry was restored from a backup (`vouch-fleet restore`).
    Restored,
    /// A device became stale: no trusted verdict for the configured number of intervals.
    Stale,
    /// An operator asked for an override escrow release that waits for a second operator, or
    /// approved one.
    EscrowApproval,
    /// An operator certificate of the HTTP API was issued or revoked.
    Operator,
    /// A release was approved or removed (`vouch-fleet release approve|remove`).
    Release,
}

impl AuditKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Enrolled => "enrolled",
            AuditKind::EnrollRefused => "enroll_refused",
            AuditKind::Verdict => "verdict",
            AuditKind::AttestationRefused => "attestation_refused",
            AuditKind::Revoked => "revoked",
            AuditKind::Deleted => "deleted",
            AuditKind::EscrowRelease => "escrow_release",
            AuditKind::EscrowDeposit => "escrow_deposit",
            AuditKind::EscrowDelivery => "escrow_delivery",
            AuditKind::MessageRefused => "message_refused",
            AuditKind::Disconnected => "disconnected",
            AuditKind::Backup => "backup",
            AuditKind::Restored => "restored",
            AuditKind::Stale => "stale",
            AuditKind::EscrowApproval => "escrow_approval",
            AuditKind::Operator => "operator",
            AuditKind::Release => "release",
        }
    }
}

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Sequence number, from 1.
    pub seq: i64,
    /// Time (ms since the epoch).
    pub at_ms: i64,
    /// Kind (see [`AuditKind::as_str`]).
    pub kind: String,
    /// Device concerned, if any.
    pub device_id: Option<String>,
    /// What happened, in words.
    pub detail: String,
    /// Hash of the previous row.
    pub prev_hash: String,
    /// Hash of this row.
    pub hash: String,
}

/// What is wrong with the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ChainProblem {
    /// A sequence number is missing (a row was removed).
    #[error("row {expected} is missing (found {found} next)")]
    Gap { expected: i64, found: i64 },
    /// A row's previous-hash is not the hash of the row before it.
    #[error("row {seq}: previous hash does not match row {}", seq - 1)]
    BrokenLink { seq: i64 },
    /// A row's hash does not match its content (it was altered).
    #[error("row {seq}: content does not match its hash (altered)")]
    Altered { seq: i64 },
}

/// The result of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainCheck {
    /// Rows checked.
    pub rows: usize,
    /// The first problem found, if any.
    pub problem: Option<ChainProblem>,
}

fn row_hash(
    seq: i64,
    at_ms: i64,
    kind: &str,
    device: Option<&str>,
    detail: &str,
    prev: &str,
) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let seq = seq.to_string();
    let at = at_ms.to_string();
    for part in [
        seq.as_str(),
        at.as_str(),
        kind,
        device.unwrap_or(""),
        detail,
        prev,
    ] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    hex::encode(ctx.finish().as_ref())
}

/// The columns [`entry`] reads.
pub(crate) const ENTRY_COLUMNS: &str = "seq, at_ms, kind, device_id, detail, prev_hash, hash";

/// An audit row from the columns [`ENTRY_COLUMNS`].
pub(crate) fn entry(r: &Row) -> Result<AuditEntry, DbError> {
    Ok(AuditEntry {
        seq: r.get(0)?,
        at_ms: r.get(1)?,
        kind: r.get(2)?,
        device_id: r.get(3)?,
        detail: r.get(4)?,
        prev_hash: r.get(5)?,
        hash: r.get(6)?,
    })
}

impl Registry {
    /// Appends a row, chained to the last one; returns its sequence number. The table is
    /// locked from reading the last row to writing the new one, so processes appending at the
    /// same time extend one chain.
    pub fn audit(
        &mut self,
        kind: AuditKind,
        device_id: Option<&str>,
        detail: &str,
        now_ms: i64,
    ) -> Result<i64, RegistryError> {
        let what = "append audit row";
        self.tx(|tx| {
            if let Some(lock) = tx.dialect().lock_table("audit") {
                tx.batch(&lock).map_err(q(what))?;
            }
            let last = tx
                .query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])
                .map_err(q(what))?;
            let (seq, prev) = match last {
                Some(r) => {
                    let s: i64 = r.get(0).map_err(q(what))?;
                    (s.saturating_add(1), r.get::<String>(1).map_err(q(what))?)
                }
                None => (1, GENESIS.to_string()),
            };
            let hash = row_hash(seq, now_ms, kind.as_str(), device_id, detail, &prev);
            tx.exec(
                "INSERT INTO audit (seq, at_ms, kind, device_id, detail, prev_hash, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                params![seq, now_ms, kind.as_str(), device_id, detail, &prev, &hash],
            )
            .map_err(q(what))?;
            Ok(seq)
        })
    }

    /// Every audit row, oldest first (optionally only those of one device).
    pub fn audit_entries(&self, device_id: Option<&str>) -> Result<Vec<AuditEntry>, RegistryError> {
        let what = "read audit log";
        let rows = self.with(|c| {
            c.query(
                &format!(
                    "SELECT {ENTRY_COLUMNS} FROM audit \
                     WHERE CAST($1 AS TEXT) IS NULL OR device_id = $1 ORDER BY seq"
                ),
                params![device_id],
            )
            .map_err(q(what))
        })?;
        rows.iter()
            .map(entry)
            .collect::<Result<_, _>>()
            .map_err(q(what))
    }

    /// Recomputes every row's hash and link; reports the first problem.
    pub fn verify_audit(&self) -> Result<ChainCheck, RegistryError> {
        let rows = self.audit_entries(None)?;
        let mut prev = GENESIS.to_string();
        let mut expected = 1i64;
        for e in &rows {
            let problem = if e.seq != expected {
                Some(ChainProblem::Gap {
                    expected,
                    found: e.seq,
                })
            } else if e.prev_hash != prev {
                Some(ChainProblem::BrokenLink { seq: e.seq })
            } else if row_hash(
                e.seq,
                e.at_ms,
                &e.kind,
                e.device_id.as_deref(),
                &e.detail,
                &e.prev_hash,
            ) != e.hash
            {
                Some(ChainProblem::Altered { seq: e.seq })
            } else {
                None
            };
            if problem.is_some() {
                return Ok(ChainCheck {
                    rows: rows.len(),
                    problem,
                });
            }
            prev.clone_from(&e.hash);
            expected = expected.saturating_add(1);
        }
        Ok(ChainCheck {
            rows: rows.len(),
            problem: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{both_backends, TestDb};
    use crate::registry::Dialect;

    fn chain_verifies_refuses_changes_and_detects_tampering(db: &TestDb) {
        let mut reg = db.open();
        reg.audit(AuditKind::Enrolled, Some("d1"), "enrolled", 10)
            .unwrap();
        reg.audit(AuditKind::Verdict, Some("d1"), "trusted", 20)
            .unwrap();
        reg.audit(AuditKind::Revoked, None, "by operator", 30)
            .unwrap();
        let check = reg.verify_audit().unwrap();
        assert_eq!(check.rows, 3);
        assert_eq!(check.problem, None);
        let rows = reg.audit_entries(None).unwrap();
        assert_eq!(rows[1].prev_hash, rows[0].hash);
        assert_eq!(rows[0].prev_hash, GENESIS);
        assert_eq!(rows[2].device_id, None);
        assert_eq!(reg.audit_entries(Some("d1")).unwrap().len(), 2);

        // The triggers refuse UPDATE and DELETE (and TRUNCATE where there is one).
        let refused = |reg: &Registry, sql: &str| {
            let err = reg.with(|c| c.batch(sql).map_err(q("test"))).unwrap_err();
            let text = vouch_attest::errors::chain(&err);
            assert!(text.contains("append-only"), "{sql}: {text}");
        };
        refused(&reg, "UPDATE audit SET detail = 'x' WHERE seq = 2");
        refused(&reg, "DELETE FROM audit WHERE seq = 2");
        let drop_triggers = match reg.dialect() {
            Dialect::Sqlite => "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;",
            Dialect::Postgres => {
                refused(&reg, "TRUNCATE audit");
                "DROP TRIGGER audit_no_update ON audit; DROP TRIGGER audit_no_delete ON audit;"
            }
        };
        assert_eq!(reg.verify_audit().unwrap().rows, 3);

        // Someone with the database drops the triggers and edits a row: the chain names it.
        let run =
            |reg: &Registry, sql: &str| reg.with(|c| c.batch(sql).map_err(q("test"))).unwrap();
        run(&reg, drop_triggers);
        run(&reg, "UPDATE audit SET detail = 'untrusted' WHERE seq = 2");
        assert_eq!(
            reg.verify_audit().unwrap().problem,
            Some(ChainProblem::Altered { seq: 2 })
        );
        run(&reg, "DELETE FROM audit WHERE seq = 2");
        assert_eq!(
            reg.verify_audit().unwrap().problem,
            Some(ChainProblem::Gap {
                expected: 2,
                found: 3
            })
        );
    }

    /// Four connections (processes) append at once: one chain, no sequence number twice.
    fn concurrent_appends_extend_one_chain(db: &TestDb) {
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    let mut reg = db.open();
                    for i in 0..25 {
                        reg.audit(AuditKind::Verdict, Some("d"), &format!("{t}/{i}"), i)
                            .unwrap();
                    }
                });
            }
        });
        let check = db.open().verify_audit().unwrap();
        assert_eq!((check.rows, check.problem), (100, None));
    }

    both_backends!(
        chain_verifies_refuses_changes_and_detects_tampering,
        concurrent_appends_extend_one_chain
    );
}
