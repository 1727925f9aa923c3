//! Appraisal of one attestation report. The decision is `vouch_attest::appraisal::appraise`
//! (quote checks, coverage of the challenged PCRs, the event log replayed against the quoted
//! PCRs, the device's policy), the same one `vouch-fleet quote verify` makes; this module only
//! decodes the report's parts (signature, PCR values as JSON, the gzip-compressed log) and turns
//! every failed check into a [`Reason`]. The verdict is trusted exactly when there is no reason.

use super::evidence;
use super::policies::Resolved;
use serde::Serialize;
use vouch_attest::appraisal::{self, LogEvidence, PolicyInput};
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
            };
        };
        let (why, bytes, parsed);
        let eventlog = match report.eventlog_gz.as_deref().map(evidence::gunzip_eventlog) {
            None => LogEvidence::Missing,
            Some(Err(e)) => {
                why = chain(&e);
                LogEvidence::Undecodable(&why)
            }
            Some(Ok(inflated)) => {
                bytes = inflated;
                parsed = EventLog::parse(&bytes);
                match &parsed {
                    Ok(log) => LogEvidence::Log(log),
                    Err(e) => LogEvidence::Malformed(e),
                }
            }
        };
        let policy = match input.policy {
            Resolved::None => PolicyInput::None,
            Resolved::Policy(name, p) => PolicyInput::Policy(name, p),
            Resolved::Unusable(name, why) => PolicyInput::Unusable(name, why),
        };
        let result = appraisal::appraise(&appraisal::AppraisalInput {
            ak: &ak,
            attest: &report.quote,
            signature: &signature,
            nonce: input.nonce,
            pcrs: &pcrs,
            challenged: Some(selection),
            eventlog,
            policy,
            previous: input.previous,
        });
        reasons.extend(result.failures.iter().map(|f| Reason::new(f.check(), f)));
        Appraisal {
            reasons,
            verified_attest: result.quote_signed().then(|| report.quote.clone()),
            revoke,
        }
    }
}
