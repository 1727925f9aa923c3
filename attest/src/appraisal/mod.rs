//! One appraisal of a device's evidence: the decision `vouch-fleet quote verify` prints and the
//! fleet server stores as a verdict. Both call [`appraise`]; they only decode their inputs and
//! format the result.
//!
//! The checks, all run (none stops the others), each failure recorded as a typed [`Failure`]:
//!
//! 1. **Quote** ([`crate::quote`]): signature by the AK, AK attributes, TPMS_ATTEST form, nonce,
//!    PCR coverage and pcrDigest of the supplied values, counters against the previous quote.
//! 2. **Selection**: when the quote answers a challenge, it must cover every challenged PCR.
//! 3. **Event log**: replayed per challenged bank and compared with the *verified* quoted values
//!    (see [`match_quoted`], which tries the known firmware workarounds). Every challenged bank
//!    must be comparable (a bank the log lacks is a failure, not a skip), and every compared PCR
//!    must match. Without a verified quote nothing is compared: the quote's failures say why.
//! 4. **Policy** ([`crate::policy`]): evaluated only on verified evidence (quoted values the
//!    quote vouched for, event data whose digests match them).
//!
//! **The challenged banks** are the challenge's selection when there is one, else (a quote
//! checked on its own) the quote's own selection. **The policy's bank**, whose event digests
//! authenticate event data, is the first challenged bank (sha256 when the selection is empty).
//!
//! The evidence is trusted exactly when no check failed.
//!
//! **Steady state** ([`settled`]): a report whose log has not changed since an earlier trusted
//! appraisal is checked against what that appraisal kept ([`LogEvidence::Settled`]) instead of
//! the log: the quote checks above, then each challenged PCR against its kept value.

mod settled;

pub use settled::{policy_identity, SettledLog, SettledPcr};

use crate::alg::HashAlg;
use crate::eventlog::{match_quoted, EventLog, LogMatch, MatchError, ParseError, PcrMismatch};
use crate::pcrs::PcrBanks;
use crate::policy::{evaluate, Evidence, Policy, RuleFailure, Verdict};
use crate::quote::{
    AkVerifier, CheckFailure, CheckName, Outcome, QuoteEvidence, QuoteVerification,
};
use crate::tpm::{PcrSelection, Signature};
use serde::Serialize;
use std::fmt;

/// The event log that came with the evidence.
#[derive(Debug, Clone, Copy)]
pub enum LogEvidence<'a> {
    /// No log check is asked for (a quote checked on its own): no log or policy check.
    NotChecked,
    /// A log is required but none came.
    Missing,
    /// A log came but could not be decoded (for example a compressed log that inflates too far).
    Undecodable(&'a str),
    /// A log came but does not parse.
    Malformed(&'a ParseError),
    /// The parsed log.
    Log(&'a EventLog<'a>),
    /// The log is the one an earlier trusted appraisal kept ([`SettledLog`]), and this is the
    /// identity of the policy that applies now ([`policy_identity`]; `None`: no policy).
    Settled(&'a SettledLog, Option<&'a str>),
}

/// The reference-value policy that applies.
#[derive(Debug, Clone, Copy)]
pub enum PolicyInput<'a> {
    /// No policy applies.
    None,
    /// This policy (its name and contents).
    Policy(&'a str, &'a Policy),
    /// A policy is assigned but cannot be used (its name and why): the evidence fails closed.
    Unusable(&'a str, &'a str),
}

/// Everything one appraisal looks at.
#[derive(Debug, Clone, Copy)]
pub struct AppraisalInput<'a> {
    /// The device's AK.
    pub ak: &'a AkVerifier,
    /// The quote (TPMS_ATTEST or TPM2B_ATTEST bytes).
    pub attest: &'a [u8],
    /// Its signature.
    pub signature: &'a Signature,
    /// The nonce the verifier expects.
    pub nonce: &'a [u8],
    /// The PCR values the device claims (may hold more than the quote covers).
    pub pcrs: &'a PcrBanks,
    /// The PCRs the challenge asked for; `None` when the quote answers no challenge.
    pub challenged: Option<&'a PcrSelection>,
    /// The event log.
    pub eventlog: LogEvidence<'a>,
    /// The policy.
    pub policy: PolicyInput<'a>,
    /// The previous quote accepted from the same AK, for the counter checks.
    pub previous: Option<&'a [u8]>,
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// A quote check failed.
    #[error("{failure}")]
    Quote {
        /// Which check.
        check: CheckName,
        /// Why.
        failure: CheckFailure,
    },
    /// The quote does not cover challenged PCRs.
    #[error("the quote does not cover requested PCRs {}", fmt_pcrs(.0))]
    Selection(Vec<(HashAlg, u32)>),
    /// A log is required but none came.
    #[error("the report has no event log")]
    EventlogMissing,
    /// The log could not be decoded.
    #[error("{0}")]
    EventlogUndecodable(String),
    /// The log does not parse.
    #[error("{0}")]
    EventlogMalformed(ParseError),
    /// A challenged bank cannot be compared with the log.
    #[error("{0}")]
    EventlogNotCompared(MatchError),
    /// A quoted PCR differs from the log's replay.
    #[error("{bank} PCR{} replays from the event log to {} but the quote has {}",
        .mismatch.pcr, hex::encode(&.mismatch.replayed), hex::encode(&.mismatch.quoted))]
    EventlogPcr {
        /// The bank.
        bank: HashAlg,
        /// The PCR and both values.
        mismatch: PcrMismatch,
    },
    /// The assigned policy cannot be used.
    #[error("policy {name}: {why}")]
    PolicyUnusable {
        /// Its name.
        name: String,
        /// Why.
        why: String,
    },
    /// The policy could not be evaluated: no verified quote and event log.
    #[error("policy {0} not evaluated: no verified quote and event log")]
    PolicyNotEvaluated(String),
    /// A policy rule failed.
    #[error("{}", fmt_rule(.0))]
    Policy(RuleFailure),
    /// The kept appraisal of the log does not apply to this report (the verifier appraises the
    /// whole log again): what differs.
    #[error("the earlier appraisal of this log does not apply: {0}")]
    SettledStale(String),
}

fn fmt_pcrs(p: &[(HashAlg, u32)]) -> String {
    p.iter()
        .map(|(b, i)| format!("{b}:{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_rule(f: &RuleFailure) -> String {
    let mut detail = f.detail.clone();
    if let Some(i) = f.event_index {
        detail.push_str(&format!(" (event {i})"));
    }
    if let Some(p) = f.pcr {
        detail.push_str(&format!(" (PCR {p})"));
    }
    detail
}

/// The area a failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    /// The quote itself.
    Quote,
    /// The quote's coverage of the challenge.
    Selection,
    /// The event log.
    Eventlog,
    /// The policy.
    Policy,
}

impl Failure {
    /// The check's name in verdict reasons: `quote.nonce`, `quote.selection`,
    /// `eventlog.missing`, `eventlog.size`, `eventlog.parse`, `eventlog.match`, `eventlog.pcr7`,
    /// `eventlog.settled`,
    /// `policy.unusable`, `policy.evidence`, `policy.<rule>`.
    pub fn check(&self) -> String {
        match self {
            Failure::Quote { check, .. } => format!("quote.{check}"),
            Failure::Selection(_) => "quote.selection".into(),
            Failure::EventlogMissing => "eventlog.missing".into(),
            Failure::EventlogUndecodable(_) => "eventlog.size".into(),
            Failure::EventlogMalformed(_) => "eventlog.parse".into(),
            Failure::EventlogNotCompared(_) => "eventlog.match".into(),
            Failure::EventlogPcr { mismatch, .. } => format!("eventlog.pcr{}", mismatch.pcr),
            Failure::PolicyUnusable { .. } => "policy.unusable".into(),
            Failure::PolicyNotEvaluated(_) => "policy.evidence".into(),
            Failure::Policy(f) => format!("policy.{}", f.rule.as_str()),
            Failure::SettledStale(_) => "eventlog.settled".into(),
        }
    }

    /// The area of the check.
    pub fn area(&self) -> Area {
        match self {
            Failure::Quote { .. } => Area::Quote,
            Failure::Selection(_) => Area::Selection,
            Failure::EventlogMissing
            | Failure::EventlogUndecodable(_)
            | Failure::EventlogMalformed(_)
            | Failure::EventlogNotCompared(_)
            | Failure::EventlogPcr { .. }
            | Failure::SettledStale(_) => Area::Eventlog,
            Failure::PolicyUnusable { .. }
            | Failure::PolicyNotEvaluated(_)
            | Failure::Policy(_) => Area::Policy,
        }
    }
}

/// The comparison of one challenged bank with the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum BankMatch {
    /// Compared (matched or not).
    Compared(LogMatch),
    /// Could not be compared.
    NotCompared {
        /// The bank.
        bank: HashAlg,
        /// Why.
        #[serde(serialize_with = "ser_display")]
        not_compared: MatchError,
    },
}

fn ser_display<S: serde::Serializer, T: fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The event log check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogCheck {
    /// True when the log was compared and explains every challenged PCR.
    pub passed: bool,
    /// One entry per challenged bank; empty when the quote did not verify (nothing vouched for
    /// the values to compare with) or no usable log came.
    pub banks: Vec<BankMatch>,
}

/// The result of [`appraise`].
#[derive(Debug, Clone)]
pub struct Appraisal {
    /// Every quote check.
    pub quote: QuoteVerification,
    /// The event log check; `None` when none was asked for ([`LogEvidence::NotChecked`]).
    pub eventlog: Option<LogCheck>,
    /// The policy's verdict, when a policy was evaluated.
    pub policy: Option<Verdict>,
    /// Every failed check, in check order.
    pub failures: Vec<Failure>,
}

impl Appraisal {
    /// True when no check failed.
    pub fn trusted(&self) -> bool {
        self.failures.is_empty()
    }

    /// True when the quote parsed and its signature verified: it came from the AK, and may serve
    /// as the previous quote of the next counter check.
    pub fn quote_signed(&self) -> bool {
        self.quote.attest.is_some()
            && matches!(self.quote.check(CheckName::Signature), Some(Outcome::Pass))
    }
}

/// Appraises the evidence; see the module documentation.
pub fn appraise(input: &AppraisalInput<'_>) -> Appraisal {
    let quote = input.ak.verify_quote(&QuoteEvidence {
        attest: input.attest,
        signature: input.signature,
        nonce: input.nonce,
        pcrs: input.pcrs,
        previous: input.previous,
    });
    let mut failures: Vec<Failure> = quote
        .failures()
        .filter_map(|c| {
            c.failure().map(|f| Failure::Quote {
                check: c.name,
                failure: f.clone(),
            })
        })
        .collect();
    let quoted_selection = quote
        .attest
        .as_ref()
        .and_then(|a| a.quote())
        .map(|q| &q.pcr_select);
    if let (Some(challenged), Some(quoted)) = (input.challenged, quoted_selection) {
        let missing: Vec<(HashAlg, u32)> = challenged
            .iter()
            .filter(|bp| !quoted.iter().any(|q| q == *bp))
            .collect();
        if !missing.is_empty() {
            failures.push(Failure::Selection(missing));
        }
    }
    let banks: Vec<(HashAlg, Vec<u32>)> = input
        .challenged
        .or(quoted_selection)
        .map(|s| {
            s.banks
                .iter()
                .map(|b| (b.hash, b.pcrs().collect()))
                .collect()
        })
        .unwrap_or_default();
    if let LogEvidence::Settled(kept, policy_id) = input.eventlog {
        let eventlog = settled_banks(
            kept,
            policy_id,
            &quote,
            &banks,
            &input.policy,
            &mut failures,
        );
        return Appraisal {
            quote,
            eventlog: Some(eventlog),
            policy: None,
            failures,
        };
    }
    let log = match input.eventlog {
        LogEvidence::NotChecked | LogEvidence::Settled(..) => None,
        LogEvidence::Missing => {
            failures.push(Failure::EventlogMissing);
            Some(None)
        }
        LogEvidence::Undecodable(why) => {
            failures.push(Failure::EventlogUndecodable(why.to_owned()));
            Some(None)
        }
        LogEvidence::Malformed(e) => {
            failures.push(Failure::EventlogMalformed(e.clone()));
            Some(None)
        }
        LogEvidence::Log(l) => Some(Some(l)),
    };
    let eventlog = log.map(|log| match (log, &quote.quoted) {
        (Some(log), Some(quoted)) => match_banks(log, quoted, &banks, &mut failures),
        _ => LogCheck {
            passed: false,
            banks: Vec::new(),
        },
    });
    let policy = match input.policy {
        PolicyInput::None => None,
        PolicyInput::Unusable(name, why) => {
            failures.push(Failure::PolicyUnusable {
                name: name.to_owned(),
                why: why.to_owned(),
            });
            None
        }
        PolicyInput::Policy(name, policy) => match (log.flatten(), &quote.quoted) {
            (Some(log), Some(quoted)) => {
                let verdict = evaluate(
                    policy,
                    &Evidence {
                        log,
                        bank: banks.first().map_or(HashAlg::Sha256, |(b, _)| *b),
                        pcrs: quoted,
                        firmware_version: quote.attest.as_ref().map(|a| a.firmware_version),
                    },
                );
                failures.extend(verdict.failures.iter().cloned().map(Failure::Policy));
                Some(verdict)
            }
            _ => {
                failures.push(Failure::PolicyNotEvaluated(name.to_owned()));
                None
            }
        },
    };
    Appraisal {
        quote,
        eventlog,
        policy,
        failures,
    }
}

/// The log check of a steady-state report (see [`settled`]): each challenged PCR's verified
/// quoted value against the value kept; the policy's verdict is the kept one when the policy and
/// the firmware version are those it was evaluated under.
fn settled_banks(
    kept: &SettledLog,
    policy_id: Option<&str>,
    quote: &QuoteVerification,
    banks: &[(HashAlg, Vec<u32>)],
    policy: &PolicyInput<'_>,
    failures: &mut Vec<Failure>,
) -> LogCheck {
    let not_passed = LogCheck {
        passed: false,
        banks: Vec::new(),
    };
    if let PolicyInput::Unusable(name, why) = policy {
        failures.push(Failure::PolicyUnusable {
            name: (*name).to_owned(),
            why: (*why).to_owned(),
        });
    }
    let (Some(quoted), Some(attest)) = (&quote.quoted, &quote.attest) else {
        // Nothing vouched for the values: the quote's failures say why.
        if let PolicyInput::Policy(name, _) = policy {
            failures.push(Failure::PolicyNotEvaluated((*name).to_owned()));
        }
        return not_passed;
    };
    let applied = match policy {
        PolicyInput::Policy(..) => policy_id,
        _ => None,
    };
    let mut stale = Vec::new();
    if kept.policy.as_deref() != applied {
        stale.push(format!(
            "kept under policy {}, now {}",
            kept.policy.as_deref().unwrap_or("(none)"),
            applied.unwrap_or("(none)")
        ));
    }
    if applied.is_some() && kept.firmware_version != attest.firmware_version {
        stale.push(format!(
            "TPM firmware version {:#x}, kept under {:#x}",
            attest.firmware_version, kept.firmware_version
        ));
    }
    let mut out = Vec::with_capacity(banks.len());
    for (bank, pcrs) in banks {
        let mut mismatches = Vec::new();
        for &pcr in pcrs {
            match (kept.value(*bank, pcr), quoted.get(*bank, pcr)) {
                (Some(k), Some(q)) if k == q => {}
                (Some(k), Some(q)) => mismatches.push(PcrMismatch {
                    pcr,
                    replayed: k.to_vec(),
                    quoted: q.to_vec(),
                }),
                (None, _) => stale.push(format!("{bank}:{pcr} was not kept")),
                // A challenged PCR the quote lacks: the selection check has said so.
                (Some(_), None) => stale.push(format!("{bank}:{pcr} not quoted")),
            }
        }
        failures.extend(mismatches.iter().map(|mm| Failure::EventlogPcr {
            bank: *bank,
            mismatch: mm.clone(),
        }));
        out.push(BankMatch::Compared(LogMatch {
            bank: *bank,
            pcrs: pcrs.clone(),
            matched: mismatches.is_empty(),
            workaround: None,
            mismatches,
        }));
    }
    if !stale.is_empty() {
        failures.push(Failure::SettledStale(stale.join("; ")));
        return not_passed;
    }
    let passed = !out.is_empty()
        && out
            .iter()
            .all(|b| matches!(b, BankMatch::Compared(m) if m.matched));
    LogCheck { passed, banks: out }
}

/// Replays the log for each challenged bank and records every bank that cannot be compared and
/// every PCR that differs from the quote.
fn match_banks(
    log: &EventLog<'_>,
    quoted: &PcrBanks,
    banks: &[(HashAlg, Vec<u32>)],
    failures: &mut Vec<Failure>,
) -> LogCheck {
    let mut out = Vec::with_capacity(banks.len());
    for (bank, pcrs) in banks {
        match match_quoted(log, quoted, *bank, pcrs) {
            Err(e) => {
                failures.push(Failure::EventlogNotCompared(e.clone()));
                out.push(BankMatch::NotCompared {
                    bank: *bank,
                    not_compared: e,
                });
            }
            Ok(m) => {
                failures.extend(m.mismatches.iter().map(|mm| Failure::EventlogPcr {
                    bank: *bank,
                    mismatch: mm.clone(),
                }));
                out.push(BankMatch::Compared(m));
            }
        }
    }
    let passed = !out.is_empty()
        && out
            .iter()
            .all(|b| matches!(b, BankMatch::Compared(m) if m.matched));
    LogCheck { passed, banks: out }
}
