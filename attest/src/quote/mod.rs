//! Quote verification: every check a verifier makes on a TPM2_Quote, reported one by one.
//!
//! [`AkVerifier::verify_quote`] takes the AK (pre-parsed once), the attestation bytes, the
//! signature, the expected nonce, the claimed PCR values and optionally an earlier attestation
//! from the same AK, and returns a [`QuoteVerification`] listing each [`Check`] with its
//! outcome. It never stops at the first failure, so a report can name everything that is wrong.
//!
//! The pcrDigest is recomputed with the signature's hash algorithm: TPM2_Quote hashes the
//! selected PCRs with the hash of the signing scheme it uses.

mod ak;
mod checks;
pub mod counters;

pub use ak::{AkError, AkFormat, AkPublic, AkVerifier};
pub use checks::{Check, CheckFailure, CheckName, Outcome, SkipReason};
pub use counters::{CounterComparison, CounterRelation};

use crate::alg::HashAlg;
use crate::pcrs::PcrBanks;
use crate::tpm::attest::{unwrap_attest, Attest, ST_ATTEST_QUOTE, TPM_GENERATED_VALUE};
use crate::tpm::signature::Signature;
use serde::Serialize;

/// What a device sent for one quote, plus what the verifier expects.
#[derive(Debug, Clone, Copy)]
pub struct QuoteEvidence<'a> {
    /// TPMS_ATTEST or TPM2B_ATTEST bytes.
    pub attest: &'a [u8],
    /// The TPMT_SIGNATURE over the TPMS_ATTEST.
    pub signature: &'a Signature,
    /// The nonce the verifier issued.
    pub nonce: &'a [u8],
    /// Claimed PCR values (may hold more than the quote covers).
    pub pcrs: &'a PcrBanks,
    /// An earlier attestation by the same AK, for the counter checks.
    pub previous: Option<&'a [u8]>,
}

/// The result of verifying one quote.
#[derive(Debug, Clone, Serialize)]
pub struct QuoteVerification {
    /// Every check, in a fixed order.
    pub checks: Vec<Check>,
    /// The parsed attestation, when it parsed.
    pub attest: Option<Attest>,
    /// The quoted PCR values, only when the signature and pcrDigest checks both passed.
    #[serde(serialize_with = "ser_banks")]
    pub quoted: Option<PcrBanks>,
    /// How the counters relate to the previous attestation, when compared successfully.
    pub counters: Option<CounterComparison>,
}

fn ser_banks<S: serde::Serializer>(b: &Option<PcrBanks>, s: S) -> Result<S::Ok, S::Error> {
    b.as_ref().map(PcrBanks::to_json).serialize(s)
}

impl QuoteVerification {
    /// True when no check failed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::ok)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok())
    }

    /// The outcome of one check.
    pub fn check(&self, name: CheckName) -> Option<&Outcome> {
        self.checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.outcome)
    }
}

fn outcome(r: Result<(), CheckFailure>) -> Outcome {
    match r {
        Ok(()) => Outcome::Pass,
        Err(f) => Outcome::Fail(f),
    }
}

/// A supplied PCR value: bank, index, digest.
type PcrValue<'a> = (HashAlg, u32, &'a [u8]);

/// Collects the supplied values of the selected PCRs, in selection order.
fn selected_values<'a>(
    attest: &Attest,
    pcrs: &'a PcrBanks,
) -> Result<Vec<PcrValue<'a>>, CheckFailure> {
    let Some(q) = attest.quote() else {
        return Err(CheckFailure::NotEvaluated(CheckName::AttestType));
    };
    let mut values = Vec::with_capacity(q.pcr_select.len());
    let mut missing = Vec::new();
    for (bank, pcr) in q.pcr_select.iter() {
        match pcrs.get(bank, pcr) {
            Some(v) => {
                if let Some(expected) = bank.digest_len() {
                    if v.len() != expected {
                        return Err(CheckFailure::PcrWrongLength {
                            bank,
                            pcr,
                            size: v.len(),
                            expected,
                        });
                    }
                }
                values.push((bank, pcr, v));
            }
            None => missing.push((bank, pcr)),
        }
    }
    if missing.is_empty() {
        Ok(values)
    } else {
        Err(CheckFailure::PcrMissing(missing))
    }
}

impl AkVerifier {
    /// Runs every quote check; see the module documentation.
    pub fn verify_quote(&self, ev: &QuoteEvidence<'_>) -> QuoteVerification {
        let (bare, _) = unwrap_attest(ev.attest);
        let mut checks = Vec::with_capacity(9);
        let parsed = Attest::parse_bare(bare);
        let sig_result = self.verify(bare, ev.signature);
        let sig_ok = sig_result.is_ok();
        checks.push(Check {
            name: CheckName::Signature,
            outcome: outcome(sig_result),
        });
        checks.push(Check {
            name: CheckName::AkAttributes,
            outcome: match self.missing_attributes() {
                None => Outcome::Skipped(SkipReason::AkAttributesUnknown),
                Some(m) if m.is_empty() => Outcome::Pass,
                Some(missing) => Outcome::Fail(CheckFailure::AkNotRestricted {
                    attributes: self.attributes().map(|a| a.0).unwrap_or_default(),
                    missing,
                }),
            },
        });
        let attest = match parsed {
            Ok(a) => {
                checks.push(Check {
                    name: CheckName::AttestParse,
                    outcome: Outcome::Pass,
                });
                a
            }
            Err(e) => {
                checks.push(Check {
                    name: CheckName::AttestParse,
                    outcome: Outcome::Fail(CheckFailure::AttestUnparsable(e)),
                });
                for name in [
                    CheckName::AttestMagic,
                    CheckName::AttestType,
                    CheckName::Nonce,
                    CheckName::PcrCoverage,
                    CheckName::PcrDigest,
                    CheckName::Counters,
                ] {
                    checks.push(Check {
                        name,
                        outcome: Outcome::Fail(CheckFailure::NotEvaluated(CheckName::AttestParse)),
                    });
                }
                return QuoteVerification {
                    checks,
                    attest: None,
                    quoted: None,
                    counters: None,
                };
            }
        };
        checks.push(Check {
            name: CheckName::AttestMagic,
            outcome: outcome(if attest.magic == TPM_GENERATED_VALUE {
                Ok(())
            } else {
                Err(CheckFailure::BadMagic(attest.magic))
            }),
        });
        let tag = attest.body.tag();
        checks.push(Check {
            name: CheckName::AttestType,
            outcome: outcome(if tag == ST_ATTEST_QUOTE {
                Ok(())
            } else {
                Err(CheckFailure::NotAQuote(tag))
            }),
        });
        checks.push(Check {
            name: CheckName::Nonce,
            outcome: outcome(if attest.extra_data == ev.nonce {
                Ok(())
            } else {
                Err(CheckFailure::NonceMismatch {
                    expected: ev.nonce.to_vec(),
                    found: attest.extra_data.clone(),
                })
            }),
        });
        let values = selected_values(&attest, ev.pcrs);
        let coverage = values.as_ref().map(|_| ()).map_err(Clone::clone);
        checks.push(Check {
            name: CheckName::PcrCoverage,
            outcome: outcome(coverage),
        });
        let digest_result = match (&values, attest.quote()) {
            (Ok(values), Some(q)) => {
                let hash = ev.signature.hash();
                let parts: Vec<&[u8]> = values.iter().map(|(_, _, v)| *v).collect();
                match hash.hash_parts(&parts) {
                    None => Err(CheckFailure::UnsupportedDigestHash(hash)),
                    Some(computed) if computed == q.pcr_digest => Ok(()),
                    Some(computed) => Err(CheckFailure::PcrDigestMismatch {
                        hash,
                        quoted: q.pcr_digest.clone(),
                        computed,
                    }),
                }
            }
            (Err(CheckFailure::NotEvaluated(n)), _) => Err(CheckFailure::NotEvaluated(*n)),
            _ => Err(CheckFailure::NotEvaluated(CheckName::PcrCoverage)),
        };
        let digest_ok = digest_result.is_ok();
        checks.push(Check {
            name: CheckName::PcrDigest,
            outcome: outcome(digest_result),
        });
        let quoted = match (&values, sig_ok && digest_ok) {
            (Ok(values), true) => {
                let mut b = PcrBanks::new();
                for (bank, pcr, v) in values {
                    b.insert(*bank, *pcr, v.to_vec());
                }
                Some(b)
            }
            _ => None,
        };
        let mut counters = None;
        let counter_outcome = match ev.previous {
            None => Outcome::Skipped(SkipReason::NoPrevious),
            Some(prev) => match Attest::parse(prev) {
                Err(e) => Outcome::Fail(CheckFailure::PreviousUnparsable(e)),
                Ok(prev) => match counters::compare(&prev, &attest) {
                    Ok(c) => {
                        counters = Some(c);
                        Outcome::Pass
                    }
                    Err(f) => Outcome::Fail(f),
                },
            },
        };
        checks.push(Check {
            name: CheckName::Counters,
            outcome: counter_outcome,
        });
        QuoteVerification {
            checks,
            attest: Some(attest),
            quoted,
            counters,
        }
    }
}
