//! The individual checks of a quote verification and their typed outcomes.

use crate::alg::HashAlg;
use crate::tpm::attest::AttestError;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use thiserror::Error;

/// One named check of a quote verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    /// The attestation bytes parse as a TPMS_ATTEST.
    AttestParse,
    /// The signature over the attestation verifies with the AK.
    Signature,
    /// The AK is a restricted signing key (only TPM-generated data can carry its signature).
    AkAttributes,
    /// The attestation starts with TPM_GENERATED_VALUE.
    AttestMagic,
    /// The attestation is a quote (TPM_ST_ATTEST_QUOTE).
    AttestType,
    /// extraData equals the expected nonce.
    Nonce,
    /// The supplied PCR values cover every quoted PCR.
    PcrCoverage,
    /// pcrDigest equals the hash of the supplied values of the quoted PCRs.
    PcrDigest,
    /// clock / resetCount / restartCount did not go backwards since the previous attestation.
    Counters,
}

impl CheckName {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::AttestParse => "attest_parse",
            CheckName::Signature => "signature",
            CheckName::AkAttributes => "ak_attributes",
            CheckName::AttestMagic => "attest_magic",
            CheckName::AttestType => "attest_type",
            CheckName::Nonce => "nonce",
            CheckName::PcrCoverage => "pcr_coverage",
            CheckName::PcrDigest => "pcr_digest",
            CheckName::Counters => "counters",
        }
    }
}

impl std::fmt::Display for CheckName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckFailure {
    /// The attestation bytes do not parse.
    #[error("attestation does not parse: {0}")]
    AttestUnparsable(AttestError),
    /// The check depends on another that failed.
    #[error("not evaluated because {0} failed")]
    NotEvaluated(CheckName),
    /// The signature does not verify.
    #[error("{scheme}/{hash} signature does not verify with the AK over the attestation bytes")]
    SignatureInvalid {
        /// Scheme name.
        scheme: &'static str,
        /// Hash algorithm.
        hash: HashAlg,
    },
    /// The signature scheme, hash and key combination is not supported.
    #[error("unsupported signature: {scheme}/{hash} with a {key} key")]
    UnsupportedSignature {
        /// Scheme name.
        scheme: &'static str,
        /// Hash algorithm.
        hash: HashAlg,
        /// Key kind.
        key: &'static str,
    },
    /// The signature scheme does not fit the key type.
    #[error("{scheme} signature cannot come from a {key} key")]
    KeyMismatch {
        /// Scheme name.
        scheme: &'static str,
        /// Key kind.
        key: &'static str,
    },
    /// The AK lacks attributes an attestation key must have.
    #[error("AK attributes 0x{attributes:08x} lack {missing:?}; an unrestricted key can sign forged attestations")]
    AkNotRestricted {
        /// The attributes found.
        attributes: u32,
        /// The missing flags.
        missing: Vec<&'static str>,
    },
    /// The magic is not TPM_GENERATED_VALUE.
    #[error("magic is 0x{0:08x}, expected 0xff544347 (TPM_GENERATED_VALUE)")]
    BadMagic(u32),
    /// The attestation type is not a quote.
    #[error("attestation type is 0x{0:04x}, expected 0x8018 (TPM_ST_ATTEST_QUOTE)")]
    NotAQuote(u16),
    /// extraData differs from the nonce.
    #[error("extraData {found} does not equal the expected nonce {expected}", found = hex_or_empty(.found), expected = hex_or_empty(.expected))]
    NonceMismatch {
        /// The nonce expected.
        expected: Vec<u8>,
        /// extraData found.
        found: Vec<u8>,
    },
    /// Quoted PCRs without a supplied value.
    #[error("no value supplied for quoted PCRs {}", fmt_pcrs(.0))]
    PcrMissing(Vec<(HashAlg, u32)>),
    /// A supplied PCR value has the wrong size for its bank.
    #[error("{bank} PCR {pcr}: supplied value has {size} bytes, expected {expected}")]
    PcrWrongLength {
        /// Bank.
        bank: HashAlg,
        /// PCR.
        pcr: u32,
        /// Size supplied.
        size: usize,
        /// Size expected.
        expected: usize,
    },
    /// The digest hash cannot be computed.
    #[error("cannot compute a {0} digest")]
    UnsupportedDigestHash(HashAlg),
    /// pcrDigest differs from the hash of the supplied values.
    #[error("pcrDigest {quoted} != {hash}(supplied PCR values) {computed}", quoted = hex::encode(.quoted), computed = hex::encode(.computed))]
    PcrDigestMismatch {
        /// Hash used.
        hash: HashAlg,
        /// pcrDigest in the quote.
        quoted: Vec<u8>,
        /// Digest of the supplied values.
        computed: Vec<u8>,
    },
    /// The previous attestation does not parse.
    #[error("previous attestation does not parse: {0}")]
    PreviousUnparsable(AttestError),
    /// resetCount went backwards.
    #[error("resetCount went backwards: {previous:#010x} -> {current:#010x}")]
    ResetCountBackwards {
        /// Previous value.
        previous: u32,
        /// Current value.
        current: u32,
    },
    /// restartCount went backwards within a boot.
    #[error(
        "restartCount went backwards within the same boot: {previous:#010x} -> {current:#010x}"
    )]
    RestartCountBackwards {
        /// Previous value.
        previous: u32,
        /// Current value.
        current: u32,
    },
    /// clock went backwards.
    #[error("clock went backwards: {previous} ms -> {current} ms ({context})")]
    ClockBackwards {
        /// Previous value.
        previous: u64,
        /// Current value.
        current: u64,
        /// Same boot cycle, or across reboot/resume with safe = YES.
        context: &'static str,
    },
}

fn hex_or_empty(b: &[u8]) -> String {
    if b.is_empty() {
        "(empty)".into()
    } else {
        hex::encode(b)
    }
}

fn fmt_pcrs(p: &[(HashAlg, u32)]) -> String {
    p.iter()
        .map(|(b, i)| format!("{b}:{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a check was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SkipReason {
    /// No previous attestation was supplied.
    #[error("no previous attestation supplied")]
    NoPrevious,
    /// The AK was given as a plain key, so its TPM attributes are unknown.
    #[error("AK given as a plain public key: TPM attributes unknown")]
    AkAttributesUnknown,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed.
    Pass,
    /// Failed, with the reason.
    Fail(CheckFailure),
    /// Not applicable with the inputs given; not a failure.
    Skipped(SkipReason),
}

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Which check.
    pub name: CheckName,
    /// What happened.
    pub outcome: Outcome,
}

impl Check {
    /// True unless the check failed.
    pub fn ok(&self) -> bool {
        !matches!(self.outcome, Outcome::Fail(_))
    }

    /// The failure, if any.
    pub fn failure(&self) -> Option<&CheckFailure> {
        match &self.outcome {
            Outcome::Fail(f) => Some(f),
            _ => None,
        }
    }
}

impl Serialize for Check {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Check", 3)?;
        st.serialize_field("check", self.name.as_str())?;
        let (status, detail) = match &self.outcome {
            Outcome::Pass => ("pass", None),
            Outcome::Fail(f) => ("fail", Some(f.to_string())),
            Outcome::Skipped(r) => ("skipped", Some(r.to_string())),
        };
        st.serialize_field("status", status)?;
        st.serialize_field("detail", &detail)?;
        st.end()
    }
}
