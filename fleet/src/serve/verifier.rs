//! Appraisal of one attestation report: the quote checks of `vouch-attest` (signature by the
//! device's AK, nonce, PCR digest, counters against the previous quote), the coverage of the
//! PCRs the challenge asked for, and the event log replayed against the quoted PCRs.
//!
//! [`Verifier`] is the seam for more checks: anything implementing [`EvidenceCheck`] (the
//! coming policy engine) is given the verified evidence ([`Evidence`]) and adds its own reasons;
//! [`Verifier::with_check`] plugs one in without touching the rest. The verdict is trusted
//! exactly when no check gave a reason.

use super::evidence::{self, Selection};
use super::policies::Resolved;
use serde::Serialize;
use vouch_attest::eventlog::{match_quoted, EventLog};
use vouch_attest::policy::{evaluate, Evidence as PolicyEvidence};
use vouch_attest::protocol::AttestationReport;
use vouch_attest::quote::{AkVerifier, QuoteEvidence, QuoteVerification};
use vouch_attest::tpm::{Attest, Signature, TpmPublic};
use vouch_attest::PcrBanks;

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
    /// The device.
    pub device_id: &'a str,
    /// Its AK.
    pub ak: &'a TpmPublic,
    /// The nonce of the challenge answered.
    pub nonce: &'a [u8],
    /// The PCRs the challenge asked for.
    pub selection: &'a Selection,
    /// The report.
    pub report: &'a AttestationReport,
    /// The device's previous accepted quote (TPMS_ATTEST), for the counter checks.
    pub previous: Option<&'a [u8]>,
    /// The reference-value policy that applies to the device.
    pub policy: Resolved<'a>,
}

/// The verified evidence handed to extra checks.
#[derive(Debug)]
pub struct Evidence<'a> {
    /// The device.
    pub device_id: &'a str,
    /// Every quote check.
    pub quote: &'a QuoteVerification,
    /// The quoted PCR values (present only when signature and pcrDigest verified).
    pub quoted: Option<&'a PcrBanks>,
    /// The parsed event log, when one was sent and parsed.
    pub eventlog: Option<&'a EventLog<'a>>,
}

/// A further check on verified evidence (for example a policy).
pub trait EvidenceCheck: Send + Sync {
    /// Name used as the prefix of its reasons.
    fn name(&self) -> &'static str;
    /// Reasons the evidence is not acceptable (empty when it is).
    fn check(&self, evidence: &Evidence<'_>) -> Vec<Reason>;
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

/// Runs the checks; see the module documentation.
#[derive(Default)]
pub struct Verifier {
    extra: Vec<Box<dyn EvidenceCheck>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.extra.iter().map(|c| c.name()).collect();
        f.debug_struct("Verifier").field("extra", &names).finish()
    }
}

impl Verifier {
    /// The built-in checks only.
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// Adds a check run after the built-in ones.
    pub fn with_check(mut self, check: Box<dyn EvidenceCheck>) -> Verifier {
        self.extra.push(check);
        self
    }

    /// Appraises one report.
    pub fn appraise(&self, input: &AppraisalInput<'_>) -> Appraisal {
        let mut reasons = Vec::new();
        let report = input.report;
        let signature = Signature::parse(&report.signature)
            .map_err(|e| reasons.push(Reason::new("quote.signature_format", e)));
        let pcrs = evidence::parse_pcr_values(&report.pcrs)
            .map_err(|e| reasons.push(Reason::new("report.pcrs", e)));
        let ak =
            AkVerifier::from_tpm_public(input.ak).map_err(|e| reasons.push(Reason::new("ak", e)));
        let (Ok(signature), Ok(pcrs), Ok(ak)) = (signature, pcrs, ak) else {
            return Appraisal {
                reasons,
                verified_attest: None,
                revoke: policy_revokes(&input.policy),
            };
        };
        let quote = ak.verify_quote(&QuoteEvidence {
            attest: &report.quote,
            signature: &signature,
            nonce: input.nonce,
            pcrs: &pcrs,
            previous: input.previous,
        });
        for c in quote.failures() {
            let detail = c
                .failure()
                .map(ToString::to_string)
                .unwrap_or_else(|| "failed".into());
            reasons.push(Reason::new(format!("quote.{}", c.name), detail));
        }
        if let Some(a) = &quote.attest {
            coverage(a, input.selection, &mut reasons);
        }
        let sig_ok = quote
            .check(vouch_attest::quote::CheckName::Signature)
            .is_some_and(|o| matches!(o, vouch_attest::quote::Outcome::Pass));
        let verified_attest = match (&quote.attest, sig_ok) {
            (Some(_), true) => Some(report.quote.clone()),
            _ => None,
        };
        let log_bytes = match &report.eventlog_gz {
            None => {
                reasons.push(Reason::new(
                    "eventlog.missing",
                    "the report has no event log",
                ));
                None
            }
            Some(gz) => evidence::gunzip_eventlog(gz)
                .map_err(|e| reasons.push(Reason::new("eventlog.size", e)))
                .ok(),
        };
        let log = log_bytes.as_deref().and_then(|b| {
            EventLog::parse(b)
                .map_err(|e| reasons.push(Reason::new("eventlog.parse", e)))
                .ok()
        });
        if let (Some(log), Some(quoted)) = (&log, &quote.quoted) {
            match_log(log, quoted, input.selection, &mut reasons);
        }
        let firmware = quote.attest.as_ref().map(|a| a.firmware_version);
        apply_policy(
            &input.policy,
            log.as_ref(),
            quote.quoted.as_ref(),
            input.selection,
            firmware,
            &mut reasons,
        );
        let ev = Evidence {
            device_id: input.device_id,
            quote: &quote,
            quoted: quote.quoted.as_ref(),
            eventlog: log.as_ref(),
        };
        for check in &self.extra {
            reasons.extend(check.check(&ev));
        }
        Appraisal {
            reasons,
            verified_attest,
            revoke: policy_revokes(&input.policy),
        }
    }
}

fn policy_revokes(policy: &Resolved<'_>) -> bool {
    matches!(policy, Resolved::Policy(_, p) if p.revoke_on_untrusted)
}

/// Evaluates the device's policy on the authenticated evidence: only PCR values the quote
/// vouched for and event data whose digests match them (see `vouch_attest::policy`).
fn apply_policy(
    policy: &Resolved<'_>,
    log: Option<&EventLog<'_>>,
    quoted: Option<&PcrBanks>,
    selection: &Selection,
    firmware_version: Option<u64>,
    reasons: &mut Vec<Reason>,
) {
    let (name, policy) = match policy {
        Resolved::None => return,
        Resolved::Unusable(name, why) => {
            reasons.push(Reason::new(
                "policy.unusable",
                format!("policy {name}: {why}"),
            ));
            return;
        }
        Resolved::Policy(name, p) => (*name, *p),
    };
    let (Some(log), Some(quoted)) = (log, quoted) else {
        reasons.push(Reason::new(
            "policy.evidence",
            format!("policy {name} not evaluated: no verified quote and event log"),
        ));
        return;
    };
    let bank = selection
        .first()
        .map(|(b, _)| *b)
        .unwrap_or(vouch_attest::HashAlg::Sha256);
    let verdict = evaluate(
        policy,
        &PolicyEvidence {
            log,
            bank,
            pcrs: quoted,
            firmware_version,
        },
    );
    for f in &verdict.failures {
        let mut detail = f.detail.clone();
        if let Some(i) = f.event_index {
            detail.push_str(&format!(" (event {i})"));
        }
        if let Some(p) = f.pcr {
            detail.push_str(&format!(" (PCR {p})"));
        }
        reasons.push(Reason::new(format!("policy.{}", f.rule.as_str()), detail));
    }
}

/// The quote must cover every PCR the challenge asked for.
fn coverage(attest: &Attest, selection: &Selection, reasons: &mut Vec<Reason>) {
    let Some(q) = attest.quote() else { return };
    let quoted: Vec<_> = q.pcr_select.iter().collect();
    let missing: Vec<String> = selection
        .iter()
        .flat_map(|(bank, pcrs)| pcrs.iter().map(move |p| (*bank, *p)))
        .filter(|bp| !quoted.contains(bp))
        .map(|(b, p)| format!("{b}:{p}"))
        .collect();
    if !missing.is_empty() {
        reasons.push(Reason::new(
            "quote.selection",
            format!(
                "the quote does not cover requested PCRs {}",
                missing.join(", ")
            ),
        ));
    }
}

/// Replays the log for each requested bank and names every PCR that differs from the quote.
fn match_log(log: &EventLog<'_>, quoted: &PcrBanks, selection: &Selection, out: &mut Vec<Reason>) {
    for (bank, pcrs) in selection {
        match match_quoted(log, quoted, *bank, pcrs) {
            Err(e) => out.push(Reason::new("eventlog.match", e)),
            Ok(m) if m.matched => {}
            Ok(m) => {
                for mm in &m.mismatches {
                    out.push(Reason::new(
                        format!("eventlog.pcr{}", mm.pcr),
                        format!(
                            "{bank} PCR{} replays from the event log to {} but the quote has {}",
                            mm.pcr,
                            hex::encode(&mm.replayed),
                            hex::encode(&mm.quoted)
                        ),
                    ));
                }
            }
        }
    }
}
