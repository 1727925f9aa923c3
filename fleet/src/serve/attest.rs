//! Challenges and their answers: nonces go out on `devices/<id>/cmd/attest`, reports come back
//! on `devices/<id>/attestation`, boot announcements on `devices/<id>/boot` trigger a challenge.
//!
//! A report is refused before appraisal (and the refusal audited) when it is oversized or
//! malformed, comes from a device that is not active, or carries a nonce that is unknown,
//! already used or expired. Otherwise it is appraised by the [`super::verifier::Verifier`] (the
//! decision of `vouch_attest::appraisal`), the verdict stored with its reasons, and an untrusted
//! device is marked, alerted on `fleet/alerts` and, when configured, revoked.

use super::verifier::{AppraisalInput, Held};
use super::{Outgoing, Server};
use crate::registry::{AuditKind, DeviceStatus, RegistryError, VerdictRecord};
use vouch_attest::errors::chain;
use vouch_attest::protocol::{
    self, Alert, AttestChallenge, AttestationReport, BootAnnouncement, KnownLog,
};
use vouch_attest::tpm::PcrSelection;
use vouch_attest::tpm::TpmPublic;

/// PCRs every challenge asks for: the firmware PCRs the UEFI event log describes.
/// Topic of operator alerts.
pub const ALERT_TOPIC: &str = "fleet/alerts";

/// Builds a challenge for `device_id` and records its nonce; `None` when the device is not
/// active.
pub fn challenge(
    srv: &Server,
    device_id: &str,
    now_ms: i64,
) -> Result<Option<Outgoing>, RegistryError> {
    let mut nonce = vec![0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    let lifetime = i64::try_from(srv.cfg.nonce_lifetime.as_millis()).unwrap_or(i64::MAX);
    // With IMA appraised, PCR 10 is quoted too.
    let pcrs = match &srv.ima {
        Some(_) => super::ima::with_pcr10(&srv.cfg.challenge_pcrs),
        None => srv.cfg.challenge_pcrs.clone(),
    };
    let issued = srv.with_registry(|reg| {
        let Some(d) = reg.device(device_id)? else {
            return Ok(None);
        };
        if !d.status.is_active() {
            return Ok(None);
        }
        reg.issue_nonce(
            &nonce,
            device_id,
            &pcrs.to_string(),
            now_ms,
            now_ms.saturating_add(lifetime),
        )?;
        let ima_offset = match &srv.ima {
            Some(_) => Some(super::ima::challenge_offset(
                reg.ima_state(device_id)?.as_ref(),
                d.last_boot_id.as_deref().unwrap_or_default(),
            )),
            None => None,
        };
        // Offered only to devices whose agent sends appended parts (the fleet holds a log only
        // for those).
        let known = reg.held_head(device_id)?.map(|h| KnownLog {
            len: h.len,
            sha256: h.sha256,
        });
        Ok(Some((ima_offset, known)))
    })?;
    Ok(issued.map(|(ima_offset, eventlog_known)| Outgoing {
        topic: format!("devices/{device_id}/cmd/attest"),
        payload: protocol::encode(&AttestChallenge {
            nonce,
            pcrs,
            ima_offset,
            eventlog_known,
        }),
    }))
}

/// Handles a boot announcement: remembers the boot id and challenges the device.
pub fn handle_boot(srv: &Server, device_id: &str, payload: &[u8], now_ms: i64) -> Vec<Outgoing> {
    let boot = match protocol::decode::<BootAnnouncement>("boot", payload) {
        Ok(b) => b,
        Err(e) => {
            srv.refuse_message(
                Some(device_id),
                "boot_malformed",
                &format!("devices/{device_id}/boot"),
                &chain(&e),
                now_ms,
            );
            return Vec::new();
        }
    };
    let result = srv
        .with_registry(|reg| match reg.device(device_id)? {
            Some(d) if d.status.is_active() => {
                let boot_id = boot.boot_id.to_string();
                reg.set_boot_id(device_id, &boot_id)?;
                reg.record_boot(device_id, &boot_id, now_ms)?;
                Ok(true)
            }
            _ => Ok(false),
        })
        .and_then(|active| {
            if active {
                challenge(srv, device_id, now_ms)
            } else {
                Ok(None)
            }
        });
    match result {
        Ok(out) => out.into_iter().collect(),
        Err(e) => {
            srv.log(&format!(
                "device {device_id}: boot announcement: {}",
                chain(&e)
            ));
            Vec::new()
        }
    }
}

fn refuse(srv: &Server, device_id: &str, reason: &str, now_ms: i64) -> Vec<Outgoing> {
    srv.log(&format!(
        "device {device_id}: attestation refused: {reason}"
    ));
    srv.audit(
        AuditKind::AttestationRefused,
        Some(device_id),
        reason,
        now_ms,
    );
    srv.count_refusal(reason);
    Vec::new()
}

/// Handles an attestation report.
pub fn handle_report(srv: &Server, device_id: &str, payload: &[u8], now_ms: i64) -> Vec<Outgoing> {
    let report = match protocol::decode::<AttestationReport>("attestation", payload) {
        Ok(r) => r,
        Err(e @ protocol::ProtocolError::TooLarge { .. }) => {
            return refuse(
                srv,
                device_id,
                &format!("message_too_large: {}", chain(&e)),
                now_ms,
            )
        }
        Err(e) => return refuse(srv, device_id, &format!("malformed: {}", chain(&e)), now_ms),
    };
    let looked_up = srv.with_registry(|reg| {
        let device = reg.device(device_id)?;
        let nonce = match &device {
            Some(d) if d.status.is_active() => {
                Some(reg.consume_nonce(&report.nonce, device_id, now_ms)?)
            }
            _ => None,
        };
        // The held log, when the report continues it.
        let held = match report.eventlog_from {
            Some(from) if from > 0 => reg.held_log(device_id)?,
            _ => None,
        };
        Ok((device, nonce, reg.policy_of(device_id)?, held))
    });
    let (device, nonce, assigned, held) = match looked_up {
        Ok((Some(d), Some(n), assigned, held)) => (d, n, assigned, held),
        Ok(_) => {
            return refuse(
                srv,
                device_id,
                "device_inactive: not an active device",
                now_ms,
            )
        }
        Err(e) => {
            srv.log(&format!("device {device_id}: registry: {}", chain(&e)));
            return Vec::new();
        }
    };
    let issued = match nonce {
        Ok(n) => n,
        Err(refusal) => return refuse(srv, device_id, refusal.as_str(), now_ms),
    };
    let Some(ak_bytes) = device.ak_public.as_deref() else {
        return refuse(srv, device_id, "device_inactive: no AK stored", now_ms);
    };
    let selection = match (
        TpmPublic::parse(ak_bytes),
        issued.pcrs.parse::<PcrSelection>(),
    ) {
        (Ok((ak, _)), Ok(sel)) => (ak, sel),
        (Err(e), _) => {
            return refuse(
                srv,
                device_id,
                &format!("registry: stored AK: {}", chain(&e)),
                now_ms,
            )
        }
        (_, Err(e)) => return refuse(srv, device_id, &format!("registry: {}", chain(&e)), now_ms),
    };
    let (ak, selection) = selection;
    let started = std::time::Instant::now();
    // PCR 10 is IMA's: the UEFI event log is compared on the other challenged PCRs, and the
    // IMA appraisal below checks the quote covers PCR 10.
    let log_selection = match &srv.ima {
        Some(_) => super::ima::without_pcr10(&selection),
        None => selection.clone(),
    };
    let mut appraisal = srv.with_policies(|store| {
        let policy = store.resolve(assigned.as_deref(), srv.cfg.default_policy.as_deref());
        let policy_id = match policy {
            super::policies::Resolved::Policy(name, _) => store.identity(name),
            _ => None,
        };
        srv.verifier.appraise(&AppraisalInput {
            ak: &ak,
            nonce: &report.nonce,
            selection: &log_selection,
            report: &report,
            previous: device.last_attest.as_deref(),
            policy,
            policy_id,
            held: held.as_ref(),
        })
    });
    srv.observer.metrics.appraisal_latency(started.elapsed());
    let mut ima_store = None;
    let mut ima_incomplete = false;
    if let Some(setup) = &srv.ima {
        let verified = appraisal.verified_attest.is_some()
            && !appraisal
                .reasons
                .iter()
                .any(|r| r.check.starts_with("quote.") || r.check == "report.pcrs");
        let pcrs = super::evidence::parse_pcr_values(&report.pcrs).ok();
        let quoted = super::ima::quoted_pcr10(&report, pcrs.as_ref(), verified);
        let aggregates = super::ima::quoted_boot_aggregates(&report, pcrs.as_ref(), verified);
        match srv.with_registry(|reg| reg.ima_state(device_id)) {
            Ok(stored) => {
                let outcome = super::ima::appraise(
                    setup,
                    stored.as_ref(),
                    device.last_boot_id.as_deref().unwrap_or_default(),
                    &report,
                    quoted.as_deref(),
                    &aggregates,
                );
                appraisal.reasons.extend(outcome.reasons);
                ima_store = outcome.store;
                ima_incomplete = outcome.incomplete;
            }
            Err(e) => {
                srv.log(&format!("device {device_id}: registry: {}", chain(&e)));
                return Vec::new();
            }
        }
    }
    if ima_incomplete
        && appraisal
            .reasons
            .iter()
            .all(|r| r.check == super::ima::INCOMPLETE)
    {
        // Part of a long IMA list, nothing wrong so far: keep the state, no verdict yet, and ask
        // for the rest now.
        let kept = srv.with_registry(|reg| match &ima_store {
            Some(r) => reg.set_ima_state(device_id, r),
            None => Ok(()),
        });
        return match kept.and_then(|()| challenge(srv, device_id, now_ms)) {
            Ok(next) => next.into_iter().collect(),
            Err(e) => {
                srv.log(&format!("device {device_id}: registry: {}", chain(&e)));
                Vec::new()
            }
        };
    }
    let reasons: Vec<String> = appraisal.reasons.iter().map(ToString::to_string).collect();
    let trusted = appraisal.trusted();
    let status = if trusted {
        DeviceStatus::Trusted
    } else {
        DeviceStatus::Untrusted
    };
    let stored = srv.with_registry(|reg| {
        if let Some(a) = &appraisal.verified_attest {
            reg.set_last_attest(device_id, a)?;
        }
        if let Some(r) = &ima_store {
            reg.set_ima_state(device_id, r)?;
        }
        match &appraisal.held {
            Held::Drop => reg.drop_held_log(device_id)?,
            Held::Unchanged { trusted: true } => {}
            // Not trusted now: the next report on this log is appraised in full again.
            Held::Unchanged { trusted: false } => reg.set_settled(device_id, None)?,
            // With IMA incomplete or failing the verdict is not the log's alone: keep the log,
            // not the verdict.
            Held::Replace(log, settled) => {
                reg.hold_log(device_id, log, settled.as_ref().filter(|_| trusted))?
            }
        }
        reg.set_status(device_id, status, now_ms)?;
        reg.store_verdict(
            &VerdictRecord {
                device_id,
                challenged_ms: issued.issued_ms,
                trusted,
                reasons: &reasons,
            },
            // The time of storing, after the appraisal (`now_ms` is when the report arrived),
            // so that stored_ms - challenged_ms is the whole end-to-end latency.
            crate::registry::now_ms(),
        )
    });
    if let Err(e) = stored {
        srv.log(&format!(
            "device {device_id}: cannot store verdict: {}",
            chain(&e)
        ));
    }
    let summary = if trusted {
        "trusted".to_string()
    } else {
        format!("untrusted: {}", reasons.join("; "))
    };
    srv.audit(AuditKind::Verdict, Some(device_id), &summary, now_ms);
    if trusted {
        return Vec::new();
    }
    srv.log(&format!("device {device_id} {summary}"));
    let mut out = vec![Outgoing {
        topic: ALERT_TOPIC.to_string(),
        payload: protocol::encode(&Alert {
            device_id: device_id.to_string(),
            kind: "untrusted".into(),
            reasons: reasons.clone(),
        }),
    }];
    if srv.cfg.revoke_on_untrusted || appraisal.revoke {
        match srv.revoke(device_id, "untrusted verdict", now_ms) {
            Ok(()) => out.push(Outgoing {
                topic: ALERT_TOPIC.to_string(),
                payload: protocol::encode(&Alert {
                    device_id: device_id.to_string(),
                    kind: "revoked".into(),
                    reasons,
                }),
            }),
            Err(e) => srv.log(&format!(
                "device {device_id}: revocation failed: {}",
                chain(&e)
            )),
        }
    }
    out
}
