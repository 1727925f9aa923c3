//! Escrow on the server side: devices deposit their volumes' escrow records
//! (`devices/<id>/escrow`), approved releases (queued by `vouch-fleet escrow release ID VOLUME`)
//! are opened with the fleet's escrow key and sent to the device encrypted for its TPM
//! (`devices/<id>/cmd/escrow`, see `vouch_attest::escrow_delivery`) and bound to the boot the
//! release was approved for (not sent when the device has booted again since), and the answer
//! (`devices/<id>/recovery`) is recorded. Every step is written to the audit log; the passphrase
//! itself never is, and it never leaves this process in clear.

use super::{Outgoing, Server};
use crate::registry::{AuditKind, EscrowRelease, RegistryError};
use std::path::PathBuf;
use vouch_attest::errors::chain;
use vouch_attest::escrow::{self, EscrowError, EscrowRecord};
use vouch_attest::escrow_delivery::{self, DeliveryError};
use vouch_attest::escrow_release::{still_for_boot, Rebooted};
use vouch_attest::protocol::{self, EscrowDeposit, RecoveryResult};
use vouch_attest::tpm::{PublicError, TpmPublic};

/// Why a release could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The registry failed.
    #[error("registry failed")]
    Registry(#[from] RegistryError),
    /// The device or its keys are gone.
    #[error("device {0} is not enrolled (or was deleted)")]
    NoDevice(String),
    /// The device booted again after the release was approved.
    #[error(transparent)]
    Rebooted(#[from] Rebooted),
    /// No record was deposited for that volume.
    #[error("no escrow record of volume {0}")]
    NoRecord(String),
    /// The stored record or the escrow key is unusable, or the record does not open.
    #[error("unusable escrow record or key")]
    Escrow(#[from] EscrowError),
    /// The escrow key file cannot be read.
    #[error("cannot read the escrow key {path}")]
    Key {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The stored EK or AK does not parse.
    #[error("stored {what} of the device does not parse")]
    Public {
        what: &'static str,
        #[source]
        source: PublicError,
    },
    /// Encrypting for the device's TPM failed.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// The boot the release was queued for is not a boot id (a registry written before boot
    /// ids were checked).
    #[error("the release names no valid boot")]
    BootId(#[source] vouch_attest::boot::BootIdError),
}

/// The escrow private key of the fleet (`escrow.key.pem` in the state directory).
pub fn key_path(srv: &Server) -> PathBuf {
    srv.cfg.state_dir.join("escrow.key.pem")
}

/// `devices/<id>/escrow`: stores the record when it is this device's and well formed.
pub fn handle_deposit(srv: &Server, device_id: &str, payload: &[u8], now_ms: i64) {
    let checked = protocol::decode::<EscrowDeposit>("escrow deposit", payload)
        .map_err(|e| chain(&e))
        .and_then(|d| {
            let record = EscrowRecord::parse(d.record.as_bytes()).map_err(|e| chain(&e))?;
            record.blob_bytes().map_err(|e| chain(&e))?;
            if record.device_id != device_id {
                return Err(format!("the record names device {}", record.device_id));
            }
            Ok((record.volume_uuid, d.record))
        });
    let (volume, text) = match checked {
        Ok(v) => v,
        Err(why) => {
            srv.refuse_message(
                Some(device_id),
                "escrow_deposit_malformed",
                &format!("devices/{device_id}/escrow"),
                &format!("escrow deposit: {why}"),
                now_ms,
            );
            return;
        }
    };
    let known = srv.with_registry(|reg| {
        if reg.device(device_id)?.is_none() {
            return Ok(None);
        }
        let same = reg
            .escrow(device_id, &volume)?
            .is_some_and(|e| e.record == text);
        if !same {
            reg.deposit_escrow(device_id, &volume, &text, now_ms)?;
        }
        Ok(Some(same))
    });
    match known {
        Ok(Some(false)) => srv.audit(
            AuditKind::EscrowDeposit,
            Some(device_id),
            &format!("escrow record of volume {volume} deposited"),
            now_ms,
        ),
        Ok(Some(true)) => {}
        Ok(None) => srv.log(&format!(
            "device {device_id}: escrow deposit from an unknown device ignored"
        )),
        Err(e) => srv.log(&format!(
            "device {device_id}: cannot store escrow record: {}",
            chain(&e)
        )),
    }
}

/// `devices/<id>/recovery`: records and audits what the device did with a release.
pub fn handle_result(srv: &Server, device_id: &str, payload: &[u8], now_ms: i64) {
    let r = match protocol::decode::<RecoveryResult>("recovery result", payload) {
        Ok(r) => r,
        Err(e) => {
            srv.refuse_message(
                Some(device_id),
                "recovery_result_malformed",
                &format!("devices/{device_id}/recovery"),
                &chain(&e),
                now_ms,
            );
            return;
        }
    };
    let detail: String = r.detail.chars().take(500).collect();
    let text = format!("{}: {detail}", if r.ok { "ok" } else { "failed" });
    match srv
        .with_registry(|reg| reg.record_escrow_result(device_id, &r.volume_uuid, &text, now_ms))
    {
        Ok(true) => srv.audit(
            AuditKind::EscrowDelivery,
            Some(device_id),
            &format!("volume {}: device reports {text}", r.volume_uuid),
            now_ms,
        ),
        Ok(false) => srv.log(&format!(
            "device {device_id}: recovery result for volume {} that was not sent",
            r.volume_uuid
        )),
        Err(e) => srv.log(&format!(
            "device {device_id}: cannot record recovery result: {}",
            chain(&e)
        )),
    }
}

/// Sends every approved release not sent yet. A release that cannot be sent is marked sent
/// with its error as the result (and audited), so it is not retried forever; the operator
/// releases again after fixing the cause.
pub fn send_pending(srv: &Server, now_ms: i64) -> Vec<Outgoing> {
    let pending = match srv.with_registry(|reg| reg.unsent_escrow_releases()) {
        Ok(p) => p,
        Err(e) => {
            srv.log(&format!("escrow releases: {}", chain(&e)));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for r in pending {
        let sent = prepare(srv, &r);
        let marked = srv.with_registry(|reg| {
            reg.mark_escrow_sent(r.id, now_ms)?;
            if let Err(e) = &sent {
                reg.record_escrow_result(
                    &r.device_id,
                    &r.volume_uuid,
                    &format!("not sent: {}", chain(&e)),
                    now_ms,
                )?;
            }
            Ok(())
        });
        if let Err(e) = marked {
            srv.log(&format!("escrow release #{}: {}", r.id, chain(&e)));
            continue;
        }
        match sent {
            Ok(o) => {
                srv.audit(
                    AuditKind::EscrowDelivery,
                    Some(&r.device_id),
                    &format!(
                        "release #{} of volume {} sent, encrypted to the device's TPM",
                        r.id, r.volume_uuid
                    ),
                    now_ms,
                );
                out.push(o);
            }
            Err(e) => {
                srv.audit(
                    AuditKind::EscrowDelivery,
                    Some(&r.device_id),
                    &format!(
                        "release #{} of volume {} not sent: {}",
                        r.id,
                        r.volume_uuid,
                        chain(&e)
                    ),
                    now_ms,
                );
                srv.log(&format!(
                    "device {}: escrow release not sent: {}",
                    r.device_id,
                    chain(&e)
                ));
            }
        }
    }
    out
}

fn prepare(srv: &Server, r: &EscrowRelease) -> Result<Outgoing, SendError> {
    let (device, stored, boot) = srv.with_registry(|reg| {
        Ok((
            reg.device(&r.device_id)?,
            reg.escrow(&r.device_id, &r.volume_uuid)?,
            reg.last_boot(&r.device_id)?,
        ))
    })?;
    still_for_boot(&r.boot_id, boot.as_ref().map(|b| b.boot_id.as_str()))?;
    let device = device.ok_or_else(|| SendError::NoDevice(r.device_id.clone()))?;
    let (Some(ek), Some(ak)) = (device.ek_public, device.ak_public) else {
        return Err(SendError::NoDevice(r.device_id.clone()));
    };
    let stored = stored.ok_or_else(|| SendError::NoRecord(r.volume_uuid.clone()))?;
    let record = EscrowRecord::parse(stored.record.as_bytes())?;
    let path = key_path(srv);
    let pem = std::fs::read_to_string(&path).map_err(|source| SendError::Key {
        path: path.clone(),
        source,
    })?;
    let key = escrow::secret_from_pem(&pem)?;
    let passphrase = record.open(&key)?;
    let (ek, _) =
        TpmPublic::parse(&ek).map_err(|source| SendError::Public { what: "EK", source })?;
    let (ak, _) =
        TpmPublic::parse(&ak).map_err(|source| SendError::Public { what: "AK", source })?;
    let ak_name = ak
        .name()
        .map_err(|source| SendError::Public { what: "AK", source })?;
    let boot_id: vouch_attest::boot::BootId = r.boot_id.parse().map_err(SendError::BootId)?;
    let release = escrow_delivery::wrap(
        &ek,
        &ak_name,
        &r.device_id,
        &r.volume_uuid,
        &boot_id,
        &passphrase,
        &mut rand::rngs::OsRng,
    )?;
    Ok(Outgoing {
        topic: format!("devices/{}/cmd/escrow", r.device_id),
        payload: protocol::encode(&release),
    })
}
