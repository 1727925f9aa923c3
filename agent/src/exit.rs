//! Exit codes of `vouch-agent`, and the one table that maps every error to them (the README's
//! "Exit codes" list is this table in words). Commands only return errors; `main` asks
//! [`code`] which number to exit with, so one failure means one code whichever command hit it
//! (a refused signed policy is 1 from `unseal` and from `volume unlock` alike).

use crate::cmd::volume::VolumeError;
use crate::cmd::CmdError;
use crate::daemon::DaemonError;
use crate::identity::IdentityError;
use crate::seal::{PolicyError, SealError};
use crate::tpm::TpmError;
use crate::volume::dm::DmError;

/// Success.
pub const OK: u8 = 0;
/// The command ran but its check failed (e.g. a verdict or comparison said no).
pub const FAILED: u8 = 1;
/// Bad usage or bad input (also what clap uses for usage errors).
pub const USAGE: u8 = 2;
/// No TPM could be reached through the configured TCTI.
pub const NO_TPM: u8 = 3;
/// The TPM refused or failed an operation.
pub const TPM: u8 = 4;
/// Reading or writing files (state directory, output) failed.
pub const IO: u8 = 5;
/// The configuration file is missing or invalid.
pub const CONFIG: u8 = 6;
/// Unsealing refused: a PCR the secret is bound to holds another value (the boot state changed).
pub const BOOT_STATE: u8 = 7;
/// No device-mapper on this machine (`/dev/mapper/control` missing): a volume cannot be mapped.
pub const NO_DEVICE_MAPPER: u8 = 8;
/// A bug: something that should not happen.
pub const INTERNAL: u8 = 70;

/// An error and its causes on one line, `message: cause: cause`, as `main` prints it. No error
/// of the agent repeats its source in its message, and tss-esapi's errors (which do) are held as
/// [`TssError`](crate::tpm::TssError), so every fact prints once; this is vouch-attest's
/// [`chain`](vouch_attest::errors::chain), shared with the fleet.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    vouch_attest::errors::chain(e)
}

/// [`chain`] as a `Display` value, for log fields: `error = %Chain(&e)`.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&chain(self.0))
    }
}

/// The exit code for an error of any command.
pub fn code(e: &CmdError) -> u8 {
    match e {
        CmdError::Tpm(t) => tpm(t),
        CmdError::Write { .. } => IO,
        CmdError::Decode { .. } => TPM,
        CmdError::Identity(i) => identity(i),
        CmdError::Daemon(d) => daemon(d),
        CmdError::Seal(s) => seal(s),
        CmdError::Json(_) => INTERNAL,
        CmdError::Volume(v) => volume(v),
    }
}

fn tpm(e: &TpmError) -> u8 {
    use TpmError as T;
    match e {
        T::Connect { .. } => NO_TPM,
        T::Policy(p) => policy(p),
        T::SystemdPolicyMismatch { .. } => BOOT_STATE,
        // A signed policy the TPM refused: the check said no.
        T::ApprovalRefused(_) => FAILED,
        #[cfg(any(test, feature = "memory-tpm"))]
        T::MemoryApproval(_) => FAILED,
        T::SecretSize { .. } => USAGE,
        T::KeyState { .. } => IO,
        T::WorkerGone => INTERNAL,
        _ => TPM,
    }
}

fn policy(e: &PolicyError) -> u8 {
    match e {
        PolicyError::BootStateChanged { .. } => BOOT_STATE,
        // A signed policy that does not fit the secret: the check said no.
        PolicyError::AuthorizationMissing
        | PolicyError::AuthorizationKey { .. }
        | PolicyError::AuthorizationRef { .. } => FAILED,
        PolicyError::Digest(_) => USAGE,
    }
}

fn identity(e: &IdentityError) -> u8 {
    match e {
        IdentityError::Tpm(t) => tpm(t),
        IdentityError::EkPublic(_) => TPM,
    }
}

fn seal(e: &SealError) -> u8 {
    use SealError as S;
    match e {
        S::Read { .. } | S::Write { .. } => IO,
        S::TooLarge { .. }
        | S::SecretSize { .. }
        | S::Blob { .. }
        | S::PcrValues { .. }
        | S::PolicyKey { .. }
        | S::PolicyRef(_) => USAGE,
        S::SignedPolicy { .. }
        | S::OlderPolicy { .. }
        | S::SerialReused { .. }
        | S::NoSignedPolicy { .. } => FAILED,
        // A signed policy that does not name the blob's key or policyRef.
        S::Mismatch(p) => policy(p),
    }
}

fn daemon(e: &DaemonError) -> u8 {
    use DaemonError as D;
    match e {
        D::Tpm(t) => tpm(t),
        D::Config(_) | D::Tcti(..) | D::BootId(_) => CONFIG,
        D::Root => USAGE,
        D::Session(_) => IO,
        D::Runtime(_) => INTERNAL,
    }
}

/// The exit code for a volume error (also reported per volume by `volume unlock --json`).
pub fn volume(e: &VolumeError) -> u8 {
    use VolumeError as V;
    match e {
        V::Tpm(t) => tpm(t),
        V::Identity(i) => identity(i),
        V::Seal(s) => seal(s),
        V::Dm { source, .. } => match **source {
            DmError::NoDeviceMapper => NO_DEVICE_MAPPER,
            DmError::Name(_) | DmError::NotBlock { .. } => USAGE,
            _ => FAILED,
        },
        V::SecretRejected { .. } | V::RecoveryRejected { .. } => FAILED,
        V::Open { .. } | V::Device { .. } | V::Write { .. } => IO,
        V::SizeRequired(_) | V::PolicyKey { .. } | V::Escrow { .. } => USAGE,
        V::Header { .. } | V::Token { .. } => FAILED,
        V::Format { .. } | V::Inplace { .. } | V::AddToken { .. } => IO,
        V::Config(_) => CONFIG,
        V::Several { first, .. } => volume(first),
        V::Random(_) | V::Json(_) => INTERNAL,
        V::RecoveryFile(crate::volume::recovery::RecoveryFileError::Io { .. }) => IO,
        V::RecoveryFile(_) => USAGE,
        V::NoReleasedPassphrase { .. } => FAILED,
        V::ReleasedForOtherBoot { .. } => BOOT_STATE,
        V::NoSystemdToken { .. }
        | V::SeveralSystemdTokens { .. }
        | V::SystemdUnsupported { .. }
        | V::SystemdSelection { .. }
        | V::AlreadyVouch { .. } => USAGE,
        V::SystemdToken { .. } => FAILED,
        V::AddKeyslot { .. } => IO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11: each fact of a nested error prints once. tss-esapi's error displays its response
    /// code and returns it again as its source; the old messages also repeated their sources
    /// (`reading PCRs failed: {0}`), which `main` hid by skipping a cause its predecessor contained.
    #[test]
    fn a_nested_tpm_error_prints_each_message_once() {
        use tss_esapi::constants::response_code::Tss2ResponseCode;
        // TPM_RC_SIGNATURE (format one) for parameter 1.
        let rc = Tss2ResponseCode::from(tss_esapi::constants::tss::TPM2_RC_SIGNATURE | 0x140);
        let raw = tss_esapi::Error::Tss2Error(rc);
        let meaning = rc.to_string();
        // The library's own chain repeats itself: this is what the wrapper is for.
        let mut plain = raw.to_string();
        let mut cause = std::error::Error::source(&raw);
        while let Some(c) = cause {
            plain.push_str(&format!(": {c}"));
            cause = c.source();
        }
        assert_eq!(plain.matches(&meaning).count(), 2, "{plain}");

        let e = CmdError::Tpm(TpmError::PcrRead(crate::tpm::TssError(raw)));
        let line = chain(&e);
        assert!(line.starts_with("reading PCRs failed: "), "{line}");
        assert_eq!(line.matches(&meaning).count(), 1, "{line}");
        assert_eq!(line.matches("Response code value").count(), 1, "{line}");
        let mut messages = vec![e.to_string()];
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            messages.push(c.to_string());
            cause = c.source();
        }
        for (i, m) in messages.iter().enumerate() {
            for later in &messages[i + 1..] {
                assert!(!m.contains(later.as_str()), "{m:?} repeats {later:?}");
            }
        }
        assert_eq!(line, messages.join(": "));
    }

    fn signed_policy_refusals() -> Vec<TpmError> {
        vec![
            TpmError::Policy(PolicyError::AuthorizationMissing),
            TpmError::Policy(PolicyError::AuthorizationKey {
                sealed: "a".into(),
                signed: "b".into(),
            }),
            TpmError::Policy(PolicyError::AuthorizationRef {
                sealed: "a".into(),
                signed: "b".into(),
            }),
        ]
    }

    /// Issue 11, defect 3: the same refused signed policy exited 1 from `unseal` and 2 or 4
    /// from `volume unlock`.
    #[test]
    fn a_refusal_has_one_code_whichever_command_hit_it() {
        for t in signed_policy_refusals() {
            let name = format!("{t:?}");
            let from_unseal = code(&CmdError::Tpm(t));
            assert_eq!(from_unseal, FAILED, "{name}");
        }
        for t in signed_policy_refusals() {
            let name = format!("{t:?}");
            let from_volume = code(&CmdError::Volume(Box::new(VolumeError::Tpm(t))));
            assert_eq!(from_volume, FAILED, "{name}");
        }
        let older = || SealError::OlderPolicy { given: 1, held: 2 };
        assert_eq!(code(&CmdError::Seal(older())), FAILED);
        assert_eq!(
            code(&CmdError::Volume(Box::new(VolumeError::Seal(older())))),
            FAILED
        );
        let serial = || SealError::SerialReused { serial: 3 };
        assert_eq!(code(&CmdError::Seal(serial())), FAILED);
        assert_eq!(
            code(&CmdError::Volume(Box::new(VolumeError::Seal(serial())))),
            FAILED
        );
    }

    #[test]
    fn boot_state_no_tpm_and_no_device_mapper_are_distinct() {
        let changed = || {
            TpmError::Policy(PolicyError::BootStateChanged {
                bound: "sha256:7".into(),
                changed: "sha256:7".into(),
            })
        };
        assert_eq!(code(&CmdError::Tpm(changed())), BOOT_STATE);
        let changed_policy = PolicyError::BootStateChanged {
            bound: "sha256:7".into(),
            changed: "sha256:7".into(),
        };
        assert_eq!(
            code(&CmdError::Seal(SealError::Mismatch(changed_policy))),
            BOOT_STATE
        );
        assert_eq!(
            code(&CmdError::Volume(Box::new(VolumeError::Tpm(changed())))),
            BOOT_STATE
        );
        let unreachable = TpmError::Connect {
            tcti: "device:/dev/tpmrm0".into(),
            source: "no such file".into(),
        };
        assert_eq!(code(&CmdError::Tpm(unreachable)), NO_TPM);
        let dm = VolumeError::Dm {
            name: "x".into(),
            source: Box::new(DmError::NoDeviceMapper),
        };
        assert_eq!(code(&CmdError::Volume(Box::new(dm))), NO_DEVICE_MAPPER);
        let several = VolumeError::Several {
            failed: 1,
            total: 2,
            names: "a".into(),
            first: Box::new(VolumeError::Tpm(changed())),
        };
        assert_eq!(code(&CmdError::Volume(Box::new(several))), BOOT_STATE);
    }
}
