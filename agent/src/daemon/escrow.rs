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
use crate::tpm::{TpmError, TssError};
use crate::volume::recovery::{self, RecoveryFileError, RECOVERY_PCRS};
use std::path::Path;
use vouch_attest::boot::BootId;
use vouch_attest::escrow::EscrowRecord;
use vouch_attest::escrow_delivery::{self, DeliveryError};
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
    #[error("reading the device identity failed")]
    Identity(#[from] IdentityError),
    /// A TPM operation failed (activation or sealing).
    #[error(transparent)]
    Tpm(#[from] TpmError),
    /// The delivery does not decrypt.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// The TPM refused to activate the credential: it was made for another TPM's EK or another
    /// AK, or was altered on the way.
    #[error("the release's credential is not for this TPM (the TPM refused to activate it: {0})")]
    NotForThisTpm(String),
    /// The release was approved for another boot than this one.
    #[error("the release is for boot {release}, this is boot {current}: refused (the fleet must see this boot trusted first)")]
    OtherBoot { release: BootId, current: BootId },
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
                tracing::warn!(error = %crate::exit::Chain(&e), "cannot read an escrow record");
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
                tracing::warn!(file = %name, error = %crate::exit::Chain(&e), "malformed escrow record; not deposited")
            }
        }
    }
    out
}

/// A release is used only in the boot the fleet's verdict was for: the TPM would activate the
/// credential in any boot, so this check is what keeps a passphrase approved for a trusted boot
/// from reaching a later, unverified one.
fn check_boot(release: &BootId, current: &BootId) -> Result<(), RecoverError> {
    if release == current {
        Ok(())
    } else {
        Err(RecoverError::OtherBoot {
            release: *release,
            current: *current,
        })
    }
}

/// `Some(why)` when an activation failed because the credential does not fit this TPM (made
/// for another EK or AK, or altered), not because the TPM failed: the integrity HMAC does not
/// verify (TPM_RC_INTEGRITY, what another ECC EK or AK gives), the RSA secret does not decrypt
/// (TPM_RC_VALUE), the ECC point is not on the curve (TPM_RC_ECC_POINT), or a size is wrong
/// (TPM_RC_SIZE); malformed framing and the in-memory TPM's refusals count too.
pub fn refused_credential(e: &TpmError) -> Option<String> {
    use tss_esapi::constants::Tss2ResponseCodeKind as Kind;
    match e {
        TpmError::ActivateCredential(TssError(tss_esapi::Error::Tss2Error(rc))) => {
            match rc.kind() {
                Some(Kind::Integrity | Kind::Value | Kind::EccPoint | Kind::Size) => {
                    Some(format!("{rc}"))
                }
                _ => None,
            }
        }
        TpmError::CredentialFormat { .. } => Some(e.to_string()),
        #[cfg(any(test, feature = "memory-tpm"))]
        TpmError::MemoryCredential(_) => Some(crate::exit::chain(e)),
        _ => None,
    }
}

/// Handles a release: returns what to tell the fleet.
/// Uses a release in boot `boot` (this boot's id, read once when the agent started).
pub async fn recover(
    tpm: &TpmClient,
    state: &Path,
    device_id: &str,
    boot: &BootId,
    release: EscrowRelease,
) -> RecoveryResult {
    let volume_uuid = release.volume_uuid.clone();
    match keep(tpm, state, device_id, boot, release).await {
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
            tracing::warn!(volume = %volume_uuid, error = %crate::exit::Chain(&e), "cannot use a released recovery passphrase");
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
    boot: &BootId,
    release: EscrowRelease,
) -> Result<std::path::PathBuf, RecoverError> {
    check_boot(&release.boot_id, boot)?;
    let record = recovery::record_path(state, &release.volume_uuid)?;
    if !record.exists() {
        return Err(RecoverError::UnknownVolume(release.volume_uuid));
    }
    let out = recovery::sealed_path(state, &release.volume_uuid)?;
    let selection = RECOVERY_PCRS
        .parse::<vouch_attest::tpm::PcrSelection>()
        .map_err(|e| RecoverError::Selection(e.to_string()))?;
    let device_id = device_id.to_owned();
    let sealed = tpm_call(tpm, move |t| {
        let alg = match device_identity(t) {
            Ok(id) => id.ek.alg,
            Err(e) => return Ok(Err(RecoverError::Identity(e))),
        };
        let key =
            match t.activate_credential(alg, &release.credential_blob, &release.encrypted_secret) {
                Ok(k) => k,
                Err(e) => match refused_credential(&e) {
                    Some(why) => return Ok(Err(RecoverError::NotForThisTpm(why))),
                    None => return Err(e),
                },
            };
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

    fn activation(rc: u32) -> TpmError {
        TpmError::ActivateCredential(TssError(tss_esapi::Error::Tss2Error(
            tss_esapi::constants::response_code::Tss2ResponseCode::from(rc),
        )))
    }

    #[test]
    fn a_credential_the_tpm_refuses_is_not_for_this_tpm_but_a_tpm_failure_is_not() {
        // Format-1 codes with the parameter bit (0x040) and number (<< 8): TPM_RC_INTEGRITY
        // (0x09F) on parameter 1, TPM_RC_VALUE (0x084) on parameter 2,
        // TPM_RC_ECC_POINT (0x0A7) on parameter 2, TPM_RC_SIZE (0x095) on parameter 1.
        for rc in [0x1DF, 0x2C4, 0x2E7, 0x1D5] {
            let why = refused_credential(&activation(rc)).unwrap_or_else(|| panic!("{rc:#x}"));
            let e = RecoverError::NotForThisTpm(why).to_string();
            assert!(e.contains("not for this TPM"), "{e}");
        }
        // TPM_RC_FAILURE, TPM_RC_LOCKOUT, and other operations: real TPM trouble.
        assert!(refused_credential(&activation(0x101)).is_none());
        assert!(refused_credential(&activation(0x921)).is_none());
        assert!(refused_credential(&TpmError::WorkerGone).is_none());
    }

    #[test]
    fn a_release_for_another_boot_is_refused() {
        let b1: BootId = "11111111-2222-4333-8444-555555555555".parse().unwrap();
        let b2: BootId = "11111111-2222-4333-8444-555555555556".parse().unwrap();
        assert!(check_boot(&b1, &b1).is_ok());
        let e = check_boot(&b1, &b2).unwrap_err().to_string();
        assert!(
            e.contains(&format!("boot {b1}")) && e.contains(&format!("boot {b2}")),
            "{e}"
        );
    }
}
