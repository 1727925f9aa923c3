//! The server's view of what changed, once a second (called from [`Server::tick`]): the verdicts
//! stored and the audit rows written since the last round feed the counters of
//! [`super::metrics`] and the webhook events (a verdict that changes a device between trusted
//! and untrusted, a revocation from any path, including the command line), and the liveness
//! rule ([`crate::serve::liveness`]) finds devices that became stale: each is alerted once per
//! episode (`fleet/alerts`, audit, webhook), its mark kept in the registry until it is live
//! again.
//!
//! History before the server started is not replayed: the first round only notes where the
//! verdicts and the audit log end.

use super::metrics::{Delivery, Metrics};
use super::webhooks::Event;
use crate::registry::{rfc3339_ms, AuditKind, Registry, RegistryError};
use crate::serve::liveness::Liveness;
use crate::serve::{Outgoing, Server};
use std::sync::{Mutex, OnceLock};
use vouch_attest::errors::chain;
use vouch_attest::protocol::{self, Alert};

/// Rows read per round from each of the verdicts and the audit log.
const BATCH: u32 = 1000;

/// What the rounds keep between them.
#[derive(Debug, Default)]
pub struct Observer {
    /// The metrics.
    pub metrics: Metrics,
    cursors: Mutex<Option<(i64, i64)>>,
    events: OnceLock<tokio::sync::mpsc::Sender<Event>>,
}

/// The check name of a stored reason (`policy.secure_boot: ...` → `policy.secure_boot`).
pub fn check_of(reason: &str) -> &str {
    reason.split_once(": ").map_or(reason, |(c, _)| c)
}

impl Observer {
    /// Events go to `tx` from now on (the webhook deliverer); set once.
    pub fn send_events_to(&self, tx: tokio::sync::mpsc::Sender<Event>) {
        let _ = self.events.set(tx);
    }

    fn emit(&self, e: Event) {
        if let Some(tx) = self.events.get() {
            if tx.try_send(e).is_err() {
                self.metrics.webhook(Delivery::Dropped);
            }
        }
    }

    /// One round at `now_ms`; returns the alerts to publish.
    pub fn round(&self, srv: &Server, now_ms: i64) -> Vec<Outgoing> {
        let liveness = Liveness::of(&srv.cfg);
        let result = srv.with_registry(|reg| self.round_in(reg, liveness, now_ms));
        match result {
            Ok(out) => out,
            Err(e) => {
                srv.log(&format!("observer: {}", chain(&e)));
                Vec::new()
            }
        }
    }

    fn round_in(
        &self,
        reg: &mut Registry,
        liveness: Liveness,
        now_ms: i64,
    ) -> Result<Vec<Outgoing>, RegistryError> {
        let mut cursors = self
            .cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut vid, mut seq) = match *cursors {
            Some(c) => c,
            None => {
                *cursors = Some((reg.last_verdict_id()?, reg.last_audit_seq()?));
                return Ok(Vec::new());
            }
        };
        for v in reg.verdicts_after(vid, BATCH)? {
            vid = v.id;
            self.metrics
                .attestation(v.trusted, v.reasons.iter().map(|r| check_of(r)));
            let before = reg.verdict_before(&v.device_id, v.id)?;
            if before != Some(v.trusted) {
                self.emit(Event::verdict_changed(&v, before));
            }
        }
        for row in reg.audit_after(seq, BATCH)? {
            seq = row.seq;
            match row.kind.as_str() {
                "enrolled" => self.metrics.enrollment(),
                "revoked" | "deleted" => {
                    self.metrics.revocation();
                    self.emit(Event::revoked(&row));
                }
                _ => {}
            }
        }
        *cursors = Some((vid, seq));
        drop(cursors);
        let marks = reg.stale_marks()?;
        let trusted = reg.last_trusted_ms()?;
        let mut out = Vec::new();
        for (d, stale) in liveness.devices(reg, now_ms)? {
            let marked = marks.contains_key(&d.id);
            if stale && !marked {
                let last = trusted.get(&d.id).copied();
                let why = match last {
                    Some(t) => format!("no trusted verdict since {}", rfc3339_ms(t)),
                    None => format!(
                        "no trusted verdict since it enrolled at {}",
                        rfc3339_ms(d.enrolled_ms)
                    ),
                };
                reg.mark_stale(&d.id, now_ms)?;
                reg.audit(AuditKind::Stale, Some(&d.id), &why, now_ms)?;
                self.emit(Event::stale(&d.id, &why, now_ms));
                out.push(Outgoing {
                    topic: crate::serve::attest::ALERT_TOPIC.to_string(),
                    payload: protocol::encode(&Alert {
                        device_id: d.id.clone(),
                        kind: "stale".into(),
                        reasons: vec![why],
                    }),
                });
            } else if !stale && marked {
                reg.clear_stale(&d.id)?;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::check_of;

    #[test]
    fn check_names() {
        assert_eq!(
            check_of("policy.secure_boot: SecureBoot is off (event 3)"),
            "policy.secure_boot"
        );
        assert_eq!(check_of("odd"), "odd");
    }
}
