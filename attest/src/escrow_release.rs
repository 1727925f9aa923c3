//! When a volume's recovery passphrase may be released: the rule `vouch-fleet escrow release`
//! applies and the fleet server re-checks before it sends a release.
//!
//! - A release needs the device's last verdict to be trusted, or an operator's override with a
//!   reason (the override is recorded as the basis, naming what it overrode).
//! - A release **to the device** is bound to the boot the device runs now: the device must have
//!   announced a boot, and a trusted verdict counts only when its challenge was issued at or
//!   after that announcement (a verdict on an earlier boot says nothing about this one).
//! - A release **to the operator** (the device cannot be reached) involves no boot: a trusted last
//!   verdict suffices.
//! - A release approved for one boot is sent only while the device still runs that boot
//!   ([`still_for_boot`]).

use std::fmt;

/// The device's last verdict, as the registry keeps it.
#[derive(Debug, Clone, Copy)]
pub struct LastVerdict<'a> {
    /// The verdict's id.
    pub id: i64,
    /// Trusted or not.
    pub trusted: bool,
    /// When the challenge it answered was issued (ms since the epoch).
    pub challenged_ms: i64,
    /// Why it is untrusted (empty when trusted).
    pub reasons: &'a [String],
}

/// Where the passphrase goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To the device, for the boot it announced last (`announced_ms`; `None`: never announced).
    Device {
        /// When the device's current boot was announced (ms since the epoch).
        boot_announced_ms: Option<i64>,
    },
    /// To the operator (no boot involved).
    Operator,
}

/// What the request asks for.
#[derive(Debug, Clone, Copy)]
pub struct ReleaseRequest<'a> {
    /// The device's last verdict, if it has one.
    pub last: Option<LastVerdict<'a>>,
    /// Where the passphrase goes.
    pub destination: Destination,
    /// The operator's override reason (`--override --reason`), if any.
    pub override_reason: Option<&'a str>,
}

/// What an override overrode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overridden {
    /// The device has no verdict.
    NoVerdict,
    /// The last verdict is untrusted.
    Untrusted(i64),
    /// The last verdict is trusted but from before the current boot.
    Stale(i64),
}

/// Why a release is allowed; its text is what the audit log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseBasis {
    /// The last verdict (this id) is trusted (and, to the device, on its current boot).
    Trusted(i64),
    /// The operator overrode the rule.
    Override {
        /// What the rule would have refused.
        overridden: Overridden,
        /// The operator's reason.
        reason: String,
    },
}

impl fmt::Display for ReleaseBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleaseBasis::Trusted(id) => write!(f, "last verdict #{id} trusted"),
            ReleaseBasis::Override { overridden, reason } => {
                f.write_str("OVERRIDE (")?;
                match overridden {
                    Overridden::NoVerdict => f.write_str("no verdict")?,
                    Overridden::Untrusted(id) => write!(f, "last verdict #{id} untrusted")?,
                    Overridden::Stale(id) => write!(
                        f,
                        "last verdict #{id} trusted but older than the current boot"
                    )?,
                }
                write!(f, "): {reason}")
            }
        }
    }
}

/// Why a release is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseRefusal {
    /// A release to the device, which never announced a boot (a release is bound to one).
    #[error("the device has announced no boot: a release goes to the boot the verdict was for; start its agent first")]
    NoBoot,
    /// The device has no verdict.
    #[error("the device has no verdict in the registry (use --override --reason after checking it otherwise)")]
    NoVerdict,
    /// The trusted verdict is older than the device's current boot.
    #[error("the device's last trusted verdict (#{0}) was for an earlier boot than the one it runs now: wait for its verdict on this boot (`vouch-fleet attest`), or use --override --reason")]
    Stale(i64),
    /// The last verdict is untrusted.
    #[error("the device's last verdict (#{verdict}) is untrusted ({reasons}) (use --override --reason after checking it otherwise)")]
    Untrusted {
        /// The verdict's id.
        verdict: i64,
        /// Its reasons, joined.
        reasons: String,
    },
}

/// Decides a release; see the module documentation.
pub fn decide(req: &ReleaseRequest<'_>) -> Result<ReleaseBasis, ReleaseRefusal> {
    let boot = match req.destination {
        Destination::Device {
            boot_announced_ms: None,
        } => return Err(ReleaseRefusal::NoBoot),
        Destination::Device {
            boot_announced_ms: Some(ms),
        } => Some(ms),
        Destination::Operator => None,
    };
    let refusal = match req.last {
        None => ReleaseRefusal::NoVerdict,
        Some(v) if !v.trusted => ReleaseRefusal::Untrusted {
            verdict: v.id,
            reasons: v.reasons.join("; "),
        },
        Some(v) if boot.is_some_and(|announced| v.challenged_ms < announced) => {
            ReleaseRefusal::Stale(v.id)
        }
        Some(v) => return Ok(ReleaseBasis::Trusted(v.id)),
    };
    let Some(reason) = req.override_reason else {
        return Err(refusal);
    };
    let overridden = match refusal {
        ReleaseRefusal::NoVerdict | ReleaseRefusal::NoBoot => Overridden::NoVerdict,
        ReleaseRefusal::Untrusted { verdict, .. } => Overridden::Untrusted(verdict),
        ReleaseRefusal::Stale(id) => Overridden::Stale(id),
    };
    Ok(ReleaseBasis::Override {
        overridden,
        reason: reason.to_owned(),
    })
}

/// The device booted again after a release was approved for an earlier boot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the device rebooted (boot {now}) since the release for boot {approved} was approved: release again after its verdict on this boot")]
pub struct Rebooted {
    /// The boot the release was approved for.
    pub approved: String,
    /// The boot the device announced last (empty: none).
    pub now: String,
}

/// A release approved for boot `approved` may be sent only while the device's last announced
/// boot (`current`) is that boot.
pub fn still_for_boot(approved: &str, current: Option<&str>) -> Result<(), Rebooted> {
    match current {
        Some(now) if now == approved => Ok(()),
        other => Err(Rebooted {
            approved: approved.to_owned(),
            now: other.unwrap_or_default().to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCR7: &[String] = &[];

    fn verdict(id: i64, trusted: bool, challenged_ms: i64, reasons: &[String]) -> LastVerdict<'_> {
        LastVerdict {
            id,
            trusted,
            challenged_ms,
            reasons,
        }
    }

    fn to_device(
        last: Option<LastVerdict<'_>>,
        announced: Option<i64>,
        force: Option<&str>,
    ) -> Result<ReleaseBasis, ReleaseRefusal> {
        decide(&ReleaseRequest {
            last,
            destination: Destination::Device {
                boot_announced_ms: announced,
            },
            override_reason: force,
        })
    }

    #[test]
    fn a_release_to_the_device_needs_a_trusted_verdict_on_its_current_boot() {
        let reasons = vec!["pcr7".to_string()];
        let on_boot = verdict(7, true, 150, PCR7);
        let before = verdict(6, true, 50, PCR7);
        let bad = verdict(8, false, 150, &reasons);
        let ok = to_device(Some(on_boot), Some(100), None).unwrap();
        assert_eq!(ok.to_string(), "last verdict #7 trusted");
        // Challenged in the same millisecond as the announcement: on this boot.
        assert_eq!(
            to_device(Some(verdict(9, true, 100, PCR7)), Some(100), None),
            Ok(ReleaseBasis::Trusted(9))
        );
        assert_eq!(
            to_device(Some(before), Some(100), None),
            Err(ReleaseRefusal::Stale(6))
        );
        assert_eq!(
            to_device(Some(bad), Some(100), None),
            Err(ReleaseRefusal::Untrusted {
                verdict: 8,
                reasons: "pcr7".into()
            })
        );
        assert_eq!(
            to_device(None, Some(100), None),
            Err(ReleaseRefusal::NoVerdict)
        );
        // No boot announced: refused even with an override (there is no boot to bind to).
        assert_eq!(
            to_device(Some(on_boot), None, Some("why")),
            Err(ReleaseRefusal::NoBoot)
        );
        let forced = to_device(Some(before), Some(100), Some("update"))
            .unwrap()
            .to_string();
        assert_eq!(
            forced,
            "OVERRIDE (last verdict #6 trusted but older than the current boot): update"
        );
        assert_eq!(
            to_device(Some(bad), Some(100), Some("fw"))
                .unwrap()
                .to_string(),
            "OVERRIDE (last verdict #8 untrusted): fw"
        );
        assert_eq!(
            to_device(None, Some(100), Some("new")).unwrap().to_string(),
            "OVERRIDE (no verdict): new"
        );
    }

    #[test]
    fn a_release_to_the_operator_involves_no_boot() {
        let before = verdict(6, true, 50, PCR7);
        let operator = |last, force| {
            decide(&ReleaseRequest {
                last,
                destination: Destination::Operator,
                override_reason: force,
            })
        };
        assert_eq!(operator(Some(before), None), Ok(ReleaseBasis::Trusted(6)));
        assert_eq!(operator(None, None), Err(ReleaseRefusal::NoVerdict));
        assert_eq!(
            operator(None, Some("lost")).unwrap().to_string(),
            "OVERRIDE (no verdict): lost"
        );
    }

    #[test]
    fn a_release_is_sent_only_to_the_boot_it_was_approved_for() {
        assert_eq!(still_for_boot("b1", Some("b1")), Ok(()));
        assert_eq!(
            still_for_boot("b1", Some("b2")),
            Err(Rebooted {
                approved: "b1".into(),
                now: "b2".into()
            })
        );
        assert!(still_for_boot("b1", None).is_err());
        // An empty approved boot never matches a device that announced nothing.
        assert!(still_for_boot("", None).is_err());
    }
}
