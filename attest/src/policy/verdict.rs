//! What a policy is evaluated on ([`Evidence`]) and what it says ([`Verdict`]): trusted or not,
//! with every failed rule named together with the event and PCR that broke it.

use crate::alg::HashAlg;
use crate::eventlog::EventLog;
use crate::pcrs::PcrBanks;
use serde::Serialize;
use std::fmt;

/// The evidence one verification has about a device.
#[derive(Clone, Copy, Debug)]
pub struct Evidence<'a> {
    /// The parsed event log.
    pub log: &'a EventLog<'a>,
    /// The bank whose event digests are authenticated (the quoted bank the log was matched
    /// against; for a log-only check, [`preferred_bank`](super::preferred_bank)). Event data is
    /// used only when it hashes to the event's digest in this bank.
    pub bank: HashAlg,
    /// The PCR values the `[pcrs]` rules compare with: quoted values the log was matched
    /// against, or the log's replay when there is no quote. A pinned PCR without a value here
    /// fails.
    pub pcrs: &'a PcrBanks,
    /// TPMS_ATTEST firmwareVersion of a verified quote; `None` without a quote.
    pub firmware_version: Option<u64>,
}

/// A rule of the policy format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// An event a rule reads does not decode as its type promises.
    EventDecode,
    /// An event a rule reads has data that does not hash to its digest in the authenticated
    /// bank: its contents cannot be trusted.
    EventDigest,
    /// `secure_boot.required`.
    SecureBoot,
    /// `secure_boot.pk`.
    Pk,
    /// `secure_boot.kek`.
    Kek,
    /// `secure_boot.db`.
    Db,
    /// `secure_boot.dbx`.
    Dbx,
    /// `secure_boot.dbx_contains`.
    DbxContains,
    /// `boot_applications`.
    BootApplication,
    /// `kernel_cmdline`.
    KernelCmdline,
    /// `initrd`.
    Initrd,
    /// `grub_files`.
    GrubFile,
    /// `pcrs`.
    PcrValue,
    /// `firmware.min_tpm_version`.
    TpmFirmwareVersion,
    /// `firmware.s_crtm_versions`.
    #[serde(rename = "s_crtm_version")]
    ScrtmVersion,
}

impl Rule {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::EventDecode => "event_decode",
            Rule::EventDigest => "event_digest",
            Rule::SecureBoot => "secure_boot",
            Rule::Pk => "pk",
            Rule::Kek => "kek",
            Rule::Db => "db",
            Rule::Dbx => "dbx",
            Rule::DbxContains => "dbx_contains",
            Rule::BootApplication => "boot_application",
            Rule::KernelCmdline => "kernel_cmdline",
            Rule::Initrd => "initrd",
            Rule::GrubFile => "grub_file",
            Rule::PcrValue => "pcr_value",
            Rule::TpmFirmwareVersion => "tpm_firmware_version",
            Rule::ScrtmVersion => "s_crtm_version",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleFailure {
    /// The rule.
    pub rule: Rule,
    /// What was found and what the policy wanted.
    pub detail: String,
    /// The event that broke the rule; `None` when the rule failed for something missing.
    pub event_index: Option<usize>,
    /// The PCR concerned.
    pub pcr: Option<u32>,
}

impl fmt::Display for RuleFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.rule)?;
        if let Some(i) = self.event_index {
            write!(f, " (event {i}")?;
            match self.pcr {
                Some(p) => write!(f, ", PCR{p})")?,
                None => f.write_str(")")?,
            }
        } else if let Some(p) = self.pcr {
            write!(f, " (PCR{p})")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// The outcome of [`evaluate`](super::evaluate).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// True when no rule failed.
    pub trusted: bool,
    /// True when untrusted and the policy says `revoke_on_untrusted`.
    pub revoke: bool,
    /// Every failed rule, in policy order.
    pub failures: Vec<RuleFailure>,
}

#[cfg(test)]
mod tests {
    use super::Rule;

    #[test]
    fn serialized_names_are_the_report_names() {
        for r in [
            Rule::EventDecode,
            Rule::EventDigest,
            Rule::SecureBoot,
            Rule::Pk,
            Rule::Kek,
            Rule::Db,
            Rule::Dbx,
            Rule::DbxContains,
            Rule::BootApplication,
            Rule::KernelCmdline,
            Rule::Initrd,
            Rule::GrubFile,
            Rule::PcrValue,
            Rule::TpmFirmwareVersion,
            Rule::ScrtmVersion,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}
