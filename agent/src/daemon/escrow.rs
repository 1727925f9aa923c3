//! The daemon's part in volume recovery. At the start of each session it deposits the escrow
//! records `volume create` left in `<state>/escrow` (ciphertext for the fleet's escrow key
//! only). When the fleet releases a passphrase (`devices/<id>/cmd/escrow`), the daemon recovers
//! the delivery key with TPM2_ActivateCredential (only this TPM's EK and AK can) if the release
//! is for this boot (the one the fleet's trusted verdict was about), decrypts the
//! passphrase and seals it straight back to the TPM under PolicyPCR over the current boot
//! ([`RECOVERY_PCRS`]), for `vouch-agent volume reseal` (run as root) to use. The passphrase is
//! never written anywhere in clear and never logged; the fleet gets a [`RecoveryResult`].

use super::mqtt::tpm_call;
use crate::identity::{device_identity, IdentityError};
use crate::seal::SealPolicy;
use crate::tpm::worker::TpmClient;
use crate::tpm::TpmError;
use crate::volume::recovery::{self, RecoveryFileError, RECOVERY_PCRS};
use std::path::Path;
use vouch_attest::escrow::EscrowRecord;
use vouch_attest::escrow_delivery::{self, DeliveryError};
use vouch_attest::policy_digest::parse_selection;
use vouch_attest::protocol::{self, EscrowDeposit, EscrowRelease, RecoveryResult};

/// Why a released passphrase could not be kept for re-sealing.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The UUID is not usable, or the sealed file could not be written.
    #[error(transparent)]
    File(#[from] RecoveryFileError),
    /// This device made no volume with that UUID (no escrow record copy).
    #[error("no volume {0} was created on this device (no escrow record in the state directory)")]
    UnknownVolume(String),
    /// The device identity could not be read.
    #[error("reading the device identity: {0}")]
    Identity(#[from] IdentityError),
    /// A TPM operation failed (activation or sealing).
    #[error("TPM: {0}")]
    Tpm(#[from] TpmError),
    /// The delivery does not decrypt.
    #[error("{0}")]
    Delivery(#[from] DeliveryError),
    /// The release was approved for another boot than this one.
    #[error("the release is for boot {release}, this is boot {current}: refused (the fleet must see this boot trusted first)")]
    OtherBoot { release: String, current: String },
    /// The recovery PCR selection does not parse (a constant: a bug).
    #[error("recovery PCR selection {RECOVERY_PCRS}: {0}")]
    Selection(String),
}

/// Deposit messages for every escrow record in `<state>/escrow` that parses and names this
/// device; the others are logged and skipped.
pub fn deposits(state: &Path, device_id: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in recovery::records(state) {
        let (name, data) = match entry {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read an escrow record");
                continue;
            }
        };
        match EscrowRecord::parse(&data) {
            Ok(r) if r.device_id == device_id && r.volume_uuid == name => {
                let record = String::from_utf8_lossy(&data).into_owned();
                out.push(protocol::encode(&EscrowDeposit { record }));
            }
            Ok(r) => tracing::warn!(
                file = %name, device = %r.device_id, volume = %r.volume_uuid,
                "escrow record is for another device or volume; not deposited"
            ),
            Err(e) => {
                tracing::warn!(file = %name, error = %e, "malformed escrow record; not deposited")
            }
        }
    }
    out
}

/// A release is used only in the boot the fleet's verdict was for: the TPM would activate the
/// credential in any boot, so this check is what keeps a passphrase approved for a trusted boot
/// from reaching a later, unverified one.
fn check_boot(release: &str, current: &str) -> Result<(), RecoverError> {
    if release == current {
        Ok(())
    } else {
        Err(RecoverError::OtherBoot {
            release: release.to_owned(),
            current: current.to_owned(),
        })
    }
}

/// Handles a release: returns what to tell the fleet.
pub async fn recover(
    tpm: &TpmClient,
    state: &Path,
    device_id: &str,
    release: EscrowRelease,
) -> RecoveryResult {
    let volume_uuid = release.volume_uuid.clone();
    match keep(tpm, state, device_id, release).await {
        Ok(path) => {
            tracing::info!(volume = %volume_uuid, file = %path.display(), "recovery passphrase received and sealed to this boot");
            RecoveryResult {
                volume_uuid,
                ok: true,
                detail: format!(
                    "recovery passphrase sealed to this TPM and boot ({RECOVERY_PCRS}); run \
                     `vouch-agent volume reseal --device DEVICE` as root to re-seal keyslot 0"
                ),
            }
        }
        Err(e) => {
            tracing::warn!(volume = %volume_uuid, error = %e, "cannot use a released recovery passphrase");
            RecoveryResult {
                volume_uuid,
                ok: false,
                detail: e.to_string(),
            }
        }
    }
}

async fn keep(
    tpm: &TpmClient,
    state: &Path,
    device_id: &str,
    release: EscrowRelease,
) -> Result<std::path::PathBuf, RecoverError> {
    check_boot(&release.boot_id, &super::session::boot_id())?;
    let record = recovery::record_path(state, &release.volume_uuid)?;
    if !record.exists() {
        return Err(RecoverError::UnknownVolume(release.volume_uuid));
    }
    let out = recovery::sealed_path(state, &release.volume_uuid)?;
    let selection =
        parse_selection(RECOVERY_PCRS).map_err(|e| RecoverError::Selection(e.to_string()))?;
    let device_id = device_id.to_owned();
    let sealed = tpm_call(tpm, move |t| {
        let alg = match device_identity(t) {
            Ok(id) => id.ek.alg,
            Err(e) => return Ok(Err(RecoverError::Identity(e))),
        };
        let key =
            t.activate_credential(alg, &release.credential_blob, &release.encrypted_secret)?;
        let pass = match escrow_delivery::unwrap(&release, &key, &device_id) {
            Ok(p) => p,
            Err(e) => return Ok(Err(RecoverError::Delivery(e))),
        };
        let policy = SealPolicy::Pcr {
            selection,
            values: None,
        };
        Ok(Ok(t.seal(&pass, &policy)?))
    })
    .await??;
    recovery::write_atomic(&out, &crate::seal::blob::encode(&sealed), 0o600)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_for_another_boot_is_refused() {
        assert!(check_boot("b1", "b1").is_ok());
        let e = check_boot("b1", "b2").unwrap_err().to_string();
        assert!(e.contains("boot b1") && e.contains("boot b2"), "{e}");
    }
}
