//! Steady state: what a verifier keeps of a trusted appraisal so that the next report on the same,
//! unchanged event log costs a quote check instead of parsing, replaying and evaluating the log
//! again.
//!
//! After an appraisal found nothing wrong, [`SettledLog::new`] keeps the log's length and
//! SHA-256, the verified quoted value of every PCR the log was compared on, the identity of the
//! policy it was evaluated under and the TPM firmware version the quote named. A later report
//! whose log has not grown since (the device sends none of it again) is appraised with
//! [`super::LogEvidence::Settled`]: the quote is checked in full, and each challenged PCR must
//! quote the value kept — the same log explains the same values, so the log comparison and the
//! policy's verdict are those of the earlier appraisal. What that reasoning does not cover is a
//! [`super::Failure::SettledStale`] (another policy, another firmware version, a PCR not kept): the
//! verifier then appraises the whole log again. A kept value that differs from the quoted one is
//! a real mismatch ([`super::Failure::EventlogPcr`]): the log no longer explains the quote.

use crate::alg::HashAlg;
use crate::tpm::PcrSelection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// One PCR value a settled log explains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettledPcr {
    /// The bank.
    pub bank: HashAlg,
    /// The PCR.
    pub pcr: u32,
    /// The value the verified quote had and the log replayed to.
    #[serde(with = "crate::hex_serde")]
    pub value: Vec<u8>,
}

/// A log an appraisal found explaining the quote and meeting the policy; see the module
/// documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettledLog {
    /// The log's length in bytes.
    pub log_len: u64,
    /// SHA-256 of the log.
    #[serde(with = "crate::hex_serde")]
    pub log_sha256: Vec<u8>,
    /// The policy it was evaluated under ([`policy_identity`]); `None` when none applied.
    pub policy: Option<String>,
    /// The TPM firmware version of the quote (a policy may set a minimum).
    pub firmware_version: u64,
    /// Every PCR the log was compared on, with its value.
    pub pcrs: Vec<SettledPcr>,
}

/// The identity of a policy for [`SettledLog::policy`]: its name and the SHA-256 of its
/// contents, so an edited policy under the same name is another policy. Computed once when a
/// policy is loaded.
pub fn policy_identity(name: &str, policy: &crate::policy::Policy) -> String {
    let json = serde_json::to_vec(policy).unwrap_or_default();
    format!("{name}@{}", hex::encode(sha256(&json)))
}

impl SettledLog {
    /// What to keep of `appraisal`, made on the whole `log` under the policy `policy`
    /// ([`policy_identity`]); `None` unless the appraisal found nothing wrong and compared the
    /// log on verified quoted values.
    pub fn new(
        log: &[u8],
        appraisal: &super::Appraisal,
        policy: Option<&str>,
    ) -> Option<SettledLog> {
        if !appraisal.trusted() {
            return None;
        }
        let check = appraisal.eventlog.as_ref().filter(|c| c.passed)?;
        let quoted = appraisal.quote.quoted.as_ref()?;
        let attest = appraisal.quote.attest.as_ref()?;
        let mut pcrs = Vec::new();
        for bank in &check.banks {
            let super::BankMatch::Compared(m) = bank else {
                return None;
            };
            for &pcr in &m.pcrs {
                pcrs.push(SettledPcr {
                    bank: m.bank,
                    pcr,
                    value: quoted.get(m.bank, pcr)?.to_vec(),
                });
            }
        }
        Some(SettledLog {
            log_len: u64::try_from(log.len()).ok()?,
            log_sha256: sha256(log).to_vec(),
            policy: policy.map(str::to_owned),
            firmware_version: attest.firmware_version,
            pcrs,
        })
    }

    /// True when this is what was kept for `log` (same length and SHA-256).
    pub fn is_for(&self, log: &[u8]) -> bool {
        u64::try_from(log.len()).is_ok_and(|l| l == self.log_len)
            && sha256(log)[..] == self.log_sha256[..]
    }

    /// The kept value of `pcr` in `bank`.
    pub fn value(&self, bank: HashAlg, pcr: u32) -> Option<&[u8]> {
        self.pcrs
            .iter()
            .find(|p| p.bank == bank && p.pcr == pcr)
            .map(|p| p.value.as_slice())
    }

    /// True when every PCR of `selection` was kept.
    pub fn covers(&self, selection: &PcrSelection) -> bool {
        selection.iter().all(|(b, p)| self.value(b, p).is_some())
    }
}
