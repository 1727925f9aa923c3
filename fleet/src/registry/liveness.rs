//! What the HTTP side of the server keeps in the registry: which devices were alerted as stale
//! (so a stale device is alerted once per episode, across restarts), override escrow releases
//! waiting for a second operator's approval, and reading the audit log from a position on (the
//! server's event feed for metrics and webhooks).

use super::audit::{entry, ENTRY_COLUMNS};
use super::db::{params, DbError, Row};
use super::{q, AuditEntry, Registry, RegistryError};
use serde::Serialize;

/// An override escrow release that waits for (or got) a second operator's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EscrowApproval {
    /// Row id.
    pub id: i64,
    /// Device id.
    pub device_id: String,
    /// Volume UUID.
    pub volume_uuid: String,
    /// The override reason.
    pub reason: String,
    /// The operator who asked.
    pub requested_by: String,
    /// When (ms since the epoch).
    pub requested_ms: i64,
    /// The operator who approved, once approved.
    pub approved_by: Option<String>,
    /// When it was approved.
    pub approved_ms: Option<i64>,
    /// The queued release, once approved.
    pub release_id: Option<i64>,
}

const APPROVAL_COLUMNS: &str = "id, device_id, volume_uuid, reason, requested_by, requested_ms, \
                                approved_by, approved_ms, release_id";

fn approval_row(r: &Row) -> Result<EscrowApproval, DbError> {
    Ok(EscrowApproval {
        id: r.get(0)?,
        device_id: r.get(1)?,
        volume_uuid: r.get(2)?,
        reason: r.get(3)?,
        requested_by: r.get(4)?,
        requested_ms: r.get(5)?,
        approved_by: r.get(6)?,
        approved_ms: r.get(7)?,
        release_id: r.get(8)?,
    })
}

impl Registry {
    /// The devices alerted as stale, with the time they were found stale.
    pub fn stale_marks(&self) -> Result<std::collections::HashMap<String, i64>, RegistryError> {
        let what = "list stale marks";
        self.with(|c| {
            c.query("SELECT device_id, since_ms FROM stale_alerts", &[])
                .map_err(q(what))?
                .iter()
                .map(|r| Ok((r.get(0)?, r.get(1)?)))
                .collect::<Result<_, DbError>>()
                .map_err(q(what))
        })
    }

    /// Marks a device alerted as stale (keeping the time of an earlier mark).
    pub fn mark_stale(&self, device_id: &str, now_ms: i64) -> Result<(), RegistryError> {
        self.with(|c| {
            c.exec(
                "INSERT INTO stale_alerts (device_id, since_ms) VALUES ($1, $2) \
                 ON CONFLICT (device_id) DO NOTHING",
                params![device_id, now_ms],
            )
            .map_err(q("mark stale"))
        })?;
        Ok(())
    }

    /// Clears a device's stale mark (it is live again, or no longer active).
    pub fn clear_stale(&self, device_id: &str) -> Result<(), RegistryError> {
        self.with(|c| {
            c.exec(
                "DELETE FROM stale_alerts WHERE device_id = $1",
                params![device_id],
            )
            .map_err(q("clear stale mark"))
        })?;
        Ok(())
    }

    /// The highest audit sequence number (0 when the log is empty).
    pub fn last_audit_seq(&self) -> Result<i64, RegistryError> {
        self.with(|c| {
            c.query_one("SELECT COALESCE(MAX(seq), 0) FROM audit", &[])
                .and_then(|r| r.get(0))
                .map_err(q("read last audit row"))
        })
    }

    /// Audit rows after `seq`, oldest first, at most `limit`.
    pub fn audit_after(&self, seq: i64, limit: u32) -> Result<Vec<AuditEntry>, RegistryError> {
        let what = "read audit rows";
        self.with(|c| {
            c.query(
                &format!("SELECT {ENTRY_COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"),
                params![seq, limit],
            )
            .map_err(q(what))?
            .iter()
            .map(entry)
            .collect::<Result<_, _>>()
            .map_err(q(what))
        })
    }

    /// Records an override release waiting for a second operator; returns its id.
    pub fn request_escrow_approval(
        &self,
        device_id: &str,
        volume_uuid: &str,
        reason: &str,
        requested_by: &str,
        now_ms: i64,
    ) -> Result<i64, RegistryError> {
        self.with(|c| {
            c.query_one(
                "INSERT INTO escrow_approvals (device_id, volume_uuid, reason, requested_by, \
                 requested_ms) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                params![device_id, volume_uuid, reason, requested_by, now_ms],
            )
            .and_then(|r| r.get(0))
            .map_err(q("request escrow approval"))
        })
    }

    /// One approval request.
    pub fn escrow_approval(&self, id: i64) -> Result<Option<EscrowApproval>, RegistryError> {
        let what = "read escrow approval";
        self.with(|c| {
            c.query_opt(
                &format!("SELECT {APPROVAL_COLUMNS} FROM escrow_approvals WHERE id = $1"),
                params![id],
            )
            .map_err(q(what))?
            .as_ref()
            .map(approval_row)
            .transpose()
            .map_err(q(what))
        })
    }

    /// Approval requests, newest first (at most 200).
    pub fn escrow_approvals(&self) -> Result<Vec<EscrowApproval>, RegistryError> {
        let what = "list escrow approvals";
        self.with(|c| {
            c.query(
                &format!(
                    "SELECT {APPROVAL_COLUMNS} FROM escrow_approvals ORDER BY id DESC LIMIT 200"
                ),
                &[],
            )
            .map_err(q(what))?
            .iter()
            .map(approval_row)
            .collect::<Result<_, _>>()
            .map_err(q(what))
        })
    }

    /// Marks an approval request approved by `by`, with the release it queued.
    pub fn approve_escrow(
        &self,
        id: i64,
        by: &str,
        release_id: i64,
        now_ms: i64,
    ) -> Result<(), RegistryError> {
        self.with(|c| {
            c.exec(
                "UPDATE escrow_approvals SET approved_by = $2, approved_ms = $3, \
                 release_id = $4 WHERE id = $1",
                params![id, by, now_ms, release_id],
            )
            .map_err(q("approve escrow release"))
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::registry::AuditKind;

    use crate::registry::testing::{both_backends, TestDb};

    fn stale_marks_audit_tail_and_approvals(db: &TestDb) {
        let mut r = db.open();
        r.mark_stale("a", 5).unwrap();
        r.mark_stale("a", 9).unwrap();
        assert_eq!(r.stale_marks().unwrap().get("a"), Some(&5));
        r.clear_stale("a").unwrap();
        assert!(r.stale_marks().unwrap().is_empty());

        assert_eq!(r.last_audit_seq().unwrap(), 0);
        r.audit(AuditKind::Enrolled, Some("a"), "x", 1).unwrap();
        r.audit(AuditKind::Revoked, Some("a"), "y", 2).unwrap();
        let rows = r.audit_after(1, 10).unwrap();
        assert_eq!((rows.len(), rows[0].kind.as_str()), (1, "revoked"));
        assert_eq!(r.last_audit_seq().unwrap(), 2);

        let id = r
            .request_escrow_approval("a", "u", "why", "alice", 3)
            .unwrap();
        assert_eq!(r.escrow_approval(id).unwrap().unwrap().approved_by, None);
        r.approve_escrow(id, "bob", 7, 4).unwrap();
        let a = r.escrow_approval(id).unwrap().unwrap();
        assert_eq!(
            (a.approved_by.as_deref(), a.release_id),
            (Some("bob"), Some(7))
        );
        assert_eq!(r.escrow_approvals().unwrap().len(), 1);
    }

    both_backends!(stale_marks_audit_tail_and_approvals);
}
