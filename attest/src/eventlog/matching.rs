//! Comparison of a replayed log with PCR values quoted by a TPM, with the known firmware
//! workarounds tried where they differ.
//!
//! Workarounds (each tried only when plain replay does not match):
//! - [`Workaround::ExitBootServicesUnlogged`]: firmware that extends the two ExitBootServices
//!   EV_EFI_ACTION events ("Exit Boot Services Invocation", "Exit Boot Services Returned with
//!   Success") into PCR5 without logging them.

use super::log::EventLog;
use super::replay::{reset_value, Bank};
use super::ser::hex_vec;
use crate::alg::HashAlg;
use crate::pcrs::PcrBanks;
use serde::Serialize;

/// The EV_EFI_ACTION strings of ExitBootServices, in the order firmware extends them.
const EBS_ACTIONS: [&[u8]; 2] = [
    b"Exit Boot Services Invocation",
    b"Exit Boot Services Returned with Success",
];
/// PCR the ExitBootServices actions go to.
const EBS_PCR: u32 = 5;

/// Why a log could not be compared with quoted values at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// The log carries no digests for the bank.
    #[error("the event log has no {bank} digests")]
    BankNotInLog {
        /// The bank asked for.
        bank: HashAlg,
    },
    /// The bank's algorithm cannot be computed by this crate.
    #[error("cannot replay bank {bank}: unknown hash algorithm")]
    BankNotComputable {
        /// The bank asked for.
        bank: HashAlg,
    },
    /// The quoted values lack a PCR that was asked for.
    #[error("the quoted {bank} values have no PCR{pcr}")]
    QuotedPcrMissing {
        /// The bank.
        bank: HashAlg,
        /// The missing PCR.
        pcr: u32,
    },
}

/// A known firmware deviation that explains a difference between log and quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workaround {
    /// The two ExitBootServices EV_EFI_ACTION events were extended into PCR5 but not logged.
    ExitBootServicesUnlogged,
}

/// One PCR whose replayed value differs from the quoted one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PcrMismatch {
    /// The PCR.
    pub pcr: u32,
    /// Value from replaying the log.
    #[serde(serialize_with = "hex_vec")]
    pub replayed: Vec<u8>,
    /// Value from the quote.
    #[serde(serialize_with = "hex_vec")]
    pub quoted: Vec<u8>,
}

/// The outcome of [`match_quoted`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogMatch {
    /// The bank compared.
    pub bank: HashAlg,
    /// The PCRs compared.
    pub pcrs: Vec<u32>,
    /// True when every PCR matches (possibly after `workaround`).
    pub matched: bool,
    /// The workaround that made the log match, if one was needed.
    pub workaround: Option<Workaround>,
    /// PCRs that differ under plain replay when nothing made them match (empty when matched).
    pub mismatches: Vec<PcrMismatch>,
}

/// The replayed value of `pcr`, or its reset value when no event extends it.
fn value(replay: &Bank, bank: HashAlg, pcr: u32, locality: u8) -> Vec<u8> {
    match replay.get(pcr) {
        Some(v) => v.to_vec(),
        None => reset_value(bank, pcr, locality).unwrap_or_default(),
    }
}

fn diff(
    replay: &Bank,
    quoted: &PcrBanks,
    bank: HashAlg,
    pcrs: &[u32],
    locality: u8,
) -> Result<Vec<PcrMismatch>, MatchError> {
    let mut out = Vec::new();
    for &pcr in pcrs {
        let q = quoted
            .get(bank, pcr)
            .ok_or(MatchError::QuotedPcrMissing { bank, pcr })?;
        if replay.get(pcr) == Some(q) {
            continue;
        }
        let r = value(replay, bank, pcr, locality);
        if r != q {
            out.push(PcrMismatch {
                pcr,
                replayed: r,
                quoted: q.to_vec(),
            });
        }
    }
    Ok(out)
}

/// Compares the log's replay of `bank` with `quoted` for `pcrs`, trying the known workarounds
/// where they differ.
pub fn match_quoted(
    log: &EventLog<'_>,
    quoted: &PcrBanks,
    bank: HashAlg,
    pcrs: &[u32],
) -> Result<LogMatch, MatchError> {
    if !log.has_bank(bank) {
        return Err(MatchError::BankNotInLog { bank });
    }
    // Only the compared PCRs are replayed: events extending other PCRs are not hashed.
    let Some(replay) = log.replay_selected(bank, pcrs) else {
        return Err(MatchError::BankNotComputable { bank });
    };
    let locality = log.pcr0_start_locality();
    let mismatches = diff(&replay, quoted, bank, pcrs, locality)?;
    let mut result = LogMatch {
        bank,
        pcrs: pcrs.to_vec(),
        matched: mismatches.is_empty(),
        workaround: None,
        mismatches,
    };
    if result.matched {
        return Ok(result);
    }
    if result.mismatches.iter().any(|m| m.pcr == EBS_PCR) {
        let mut fixed = replay.clone();
        let mut pcr5 = value(&replay, bank, EBS_PCR, locality);
        for action in EBS_ACTIONS {
            let digest = bank.hash(action).unwrap_or_default();
            pcr5 = bank.extend(&pcr5, &digest).unwrap_or_default();
        }
        fixed.set(EBS_PCR, &pcr5);
        if diff(&fixed, quoted, bank, pcrs, locality)?.is_empty() {
            result.matched = true;
            result.workaround = Some(Workaround::ExitBootServicesUnlogged);
            result.mismatches.clear();
        }
    }
    Ok(result)
}
