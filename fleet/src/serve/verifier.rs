//! Appraisal of one attestation report. The decision is `vouch_attest::appraisal::appraise`
//! (quote checks, coverage of the challenged PCRs, the event log replayed against the quoted
//! PCRs, the device's policy), the same one `vouch-fleet quote verify` makes; this module only
//! decodes the report's parts (signature, PCR values as JSON, the gzip-compressed log) and turns
//! every failed check into a [`Reason`]. The verdict is trusted exactly when there is no reason.
//!
//! **Steady state.** A report may carry only what was appended to the device's log since the part
//! the fleet holds (`eventlog_from`): the whole log is the held one followed by those bytes. When
//! nothing was appended and the last appraisal of the held log was trusted, the report is appraised
//! against what that appraisal kept (`LogEvidence::Settled`: quote checks and a comparison of
//! values, no parsing); if that does not apply (another policy, another TPM firmware version), the
//! held log is appraised again in full.

use super::evidence;
use super::policies::Resolved;
use crate::registry::HeldLog;
use serde::Serialize;
use vouch_attest::appraisal::{self, Failure, LogEvidence, PolicyInput, SettledLog};
use vouch_attest::errors::chain;
use vouch_attest::eventlog::EventLog;
use vouch_attest::protocol::AttestationReport;
use vouch_attest::quote::AkVerifier;
use vouch_attest::tpm::{PcrSelection, Signature, TpmPublic};

/// One reason a device is not trusted: the check (`quote.pcr_digest`, `eventlog.pcr7`, ...)
/// and what it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// Which check.
    pub check: String,
    /// What was wrong.
    pub detail: String,
}

impl Reason {
    /// A reason from a check name and a detail.
    pub fn new(check: impl Into<String>, detail: impl std::fmt::Display) -> Reason {
        Reason {
            check: check.into(),
            detail: detail.to_string(),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.check, self.detail)
    }
}

/// What one appraisal needs.
#[derive(Debug, Clone, Copy)]
pub struct AppraisalInput<'a> {
    /// The device's AK.
    pub ak: &'a TpmPublic,
    /// The nonce of the challenge answered.
    pub nonce: &'a [u8],
    /// The PCRs the challenge asked for.
    pub selection: &'a PcrSelection,
    /// The report.
    pub report: &'a AttestationReport,
    /// The device's previous accepted quote (TPMS_ATTEST), for the counter checks.
    pub previous: Option<&'a [u8]>,
    /// The reference-value policy that applies to the device.
    pub policy: Resolved<'a>,
    /// Its identity (`vouch_attest::appraisal::policy_identity`), when it is loaded.
    pub policy_id: Option<&'a str>,
    /// The log the fleet holds for the device, when its report continues one.
    pub held: Option<&'a HeldLog>,
}

/// The outcome of an appraisal.
#[derive(Debug, Clone)]
pub struct Appraisal {
    /// Every reason the device is not trusted (empty: trusted).
    pub reasons: Vec<Reason>,
    /// The quote, when it parsed and its signature verified (kept for the next counter check).
    pub verified_attest: Option<Vec<u8>>,
    /// The applied policy asks for revocation when the device is untrusted.
    pub revoke: bool,
    /// What the fleet holds for the device from now on, when the report came from an agent that
    /// sends appended parts ([`Held`]).
    pub held: Held,
}

/// What happens to the log the fleet holds for a device after a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// The device sends whole logs only (an older agent), or its log could not be had: hold
    /// nothing.
    Drop,
    /// The held log is still the device's log; what was kept of it stays, or goes when this
    /// appraisal of it was not trusted.
    Unchanged {
        /// This appraisal was trusted.
        trusted: bool,
    },
    /// Hold this log from now on, with what its appraisal kept (`None`: not trusted).
    Replace(Vec<u8>, Option<SettledLog>),
}

/// The report's log, whole, as far as it can be had.
enum ReportLog<'a> {
    Missing,
    Undecodable(String),
    /// The held log, nothing appended.
    Held(&'a HeldLog),
    /// A log to parse (sent whole, or the held one with appended bytes).
    Bytes(Vec<u8>),
}

fn report_log<'a>(report: &AttestationReport, held: Option<&'a HeldLog>) -> ReportLog<'a> {
    let Some(gz) = report.eventlog_gz.as_deref() else {
        return ReportLog::Missing;
    };
    let sent = match evidence::gunzip_eventlog(gz) {
        Ok(b) => b,
        Err(e) => return ReportLog::Undecodable(chain(&e)),
    };
    let from = report.eventlog_from.unwrap_or(0);
    if from == 0 {
        return ReportLog::Bytes(sent);
    }
    let Some(held) = held.filter(|h| h.log.len() as u64 == from) else {
        return ReportLog::Undecodable(format!(
            "the report continues the event log at byte {from}, but the fleet holds {}",
            held.map_or_else(
                || "none of it".to_string(),
                |h| format!("{} bytes", h.log.len())
            )
        ));
    };
    if sent.is_empty() {
        return ReportLog::Held(held);
    }
    if held.log.len() + sent.len() > evidence::MAX_EVENTLOG_BYTES as usize {
        return ReportLog::Undecodable(chain(&evidence::EvidenceError::TooLarge));
    }
    let mut whole = held.log.clone();
    whole.extend_from_slice(&sent);
    ReportLog::Bytes(whole)
}

impl Appraisal {
    /// True when no check gave a reason.
    pub fn trusted(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// Appraises reports; see the module documentation.
#[derive(Debug, Default)]
pub struct Verifier;

impl Verifier {
    /// A verifier.
    pub fn new() -> Verifier {
        Verifier
    }

    /// Appraises one report.
    pub fn appraise(&self, input: &AppraisalInput<'_>) -> Appraisal {
        let mut reasons = Vec::new();
        let report = input.report;
        let revoke = matches!(input.policy, Resolved::Policy(_, p) if p.revoke_on_untrusted);
        let signature = Signature::parse(&report.signature)
            .map_err(|e| reasons.push(Reason::new("quote.signature_format", e)));
        let pcrs = evidence::parse_pcr_values(&report.pcrs)
            .map_err(|e| reasons.push(Reason::new("report.pcrs", e)));
        let ak =
            AkVerifier::from_tpm_public(input.ak).map_err(|e| reasons.push(Reason::new("ak", e)));
        let selection = input.selection;
        let (Ok(signature), Ok(pcrs), Ok(ak)) = (signature, pcrs, ak) else {
            return Appraisal {
                reasons,
                verified_attest: None,
                revoke,
                held: Held::Drop,
            };
        };
        let policy = match input.policy {
            Resolved::None => PolicyInput::None,
            Resolved::Policy(name, p) => PolicyInput::Policy(name, p),
            Resolved::Unusable(name, why) => PolicyInput::Unusable(name, why),
        };
        let policy_id = match input.policy {
            Resolved::Policy(..) => input.policy_id,
            _ => None,
        };
        let run = |eventlog: LogEvidence<'_>| {
            appraisal::appraise(&appraisal::AppraisalInput {
                ak: &ak,
                attest: &report.quote,
                signature: &signature,
                nonce: input.nonce,
                pcrs: &pcrs,
                challenged: Some(selection),
                eventlog,
                policy,
                previous: input.previous,
            })
        };
        // The whole log: appraised, and what to hold of it.
        let whole = |bytes: &[u8]| {
            let result = match EventLog::parse(bytes) {
                Ok(log) => run(LogEvidence::Log(&log)),
                Err(e) => run(LogEvidence::Malformed(&e)),
            };
            let settled = SettledLog::new(bytes, &result, policy_id);
            (result, settled)
        };
        let sends_parts = report.eventlog_from.is_some();
        let (result, held) = match report_log(report, input.held) {
            ReportLog::Missing => (run(LogEvidence::Missing), Held::Drop),
            ReportLog::Undecodable(why) => (run(LogEvidence::Undecodable(&why)), Held::Drop),
            ReportLog::Held(h) => {
                let steady = h
                    .settled
                    .as_ref()
                    .filter(|s| s.log_len == h.log.len() as u64)
                    .map(|s| run(LogEvidence::Settled(s, policy_id)))
                    .filter(|r| {
                        !r.failures
                            .iter()
                            .any(|f| matches!(f, Failure::SettledStale(_)))
                    });
                match steady {
                    Some(r) => {
                        let trusted = r.trusted();
                        (r, Held::Unchanged { trusted })
                    }
                    None => {
                        let (r, settled) = whole(&h.log);
                        (r, Held::Replace(h.log.clone(), settled))
                    }
                }
            }
            ReportLog::Bytes(bytes) => {
                let (r, settled) = whole(&bytes);
                let held = if sends_parts {
                    Held::Replace(bytes, settled)
                } else {
                    Held::Drop
                };
                (r, held)
            }
        };
        reasons.extend(result.failures.iter().map(|f| Reason::new(f.check(), f)));
        Appraisal {
            reasons,
            verified_attest: result.quote_signed().then(|| report.quote.clone()),
            revoke,
            held,
        }
    }
}
