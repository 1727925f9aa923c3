//! `appraisal::appraise` on a real event log and quotes made with a software AK: every failed
//! check is recorded (none stops the others), nothing is compared or evaluated on a quote that
//! did not verify, and a policy is never silently skipped.

use p256::ecdsa::signature::Signer;
use p256::ecdsa::SigningKey;
use vouch_attest::appraisal::{
    appraise, AppraisalInput, BankMatch, Failure, LogEvidence, PolicyInput, SettledLog,
};
use vouch_attest::eventlog::{EventLog, MatchError};
use vouch_attest::policy::{PcrPolicy, Policy};
use vouch_attest::quote::{AkVerifier, CheckName};
use vouch_attest::tpm::attest::{ClockInfo, QuoteInfo, TPM_GENERATED_VALUE};
use vouch_attest::tpm::{
    Attest, AttestBody, ObjectAttributes, PcrSelect, PcrSelection, Signature, TpmPublic,
};
use vouch_attest::{HashAlg, PcrBanks};

#[path = "../../testsupport/testdata.rs"]
mod testdata;

/// A crypto-agile log (sha1 + sha256).
const LOG: &str = "keylime_mb_binary_bios_measurements.bin";
const PCRS: [u32; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
const NONCE: [u8; 16] = [7; 16];

struct Quote {
    ak: AkVerifier,
    attest: Vec<u8>,
    signature: Signature,
    pcrs: PcrBanks,
}

fn key(seed: u8) -> (SigningKey, TpmPublic) {
    let sk = SigningKey::from_slice(&[seed; 32]).unwrap();
    let point = sk.verifying_key().to_encoded_point(false);
    let public = TpmPublic::ecc_p256_signing(
        ObjectAttributes::AK_TEMPLATE,
        point.x().unwrap(),
        point.y().unwrap(),
    );
    (sk, public)
}

/// Quotes `banks` (PCRs 0-7 each) of `values`, signed by `signer`; the verifier holds key 0x42.
fn quote(values: &PcrBanks, banks: &[HashAlg], signer: u8) -> Quote {
    let (sk, public) = key(signer);
    let selection = PcrSelection {
        banks: banks
            .iter()
            .map(|b| PcrSelect::new(*b, &PCRS).unwrap())
            .collect(),
    };
    let parts: Vec<&[u8]> = selection
        .iter()
        .map(|(b, p)| values.get(b, p).unwrap())
        .collect();
    let attest = Attest {
        magic: TPM_GENERATED_VALUE,
        qualified_signer: public.name().unwrap(),
        extra_data: NONCE.to_vec(),
        clock_info: ClockInfo {
            clock: 5_000,
            reset_count: 2,
            restart_count: 0,
            safe: true,
        },
        firmware_version: 0x0002_0001_0000_0000,
        body: AttestBody::Quote(QuoteInfo {
            pcr_select: selection,
            pcr_digest: HashAlg::Sha256.hash_parts(&parts).unwrap(),
        }),
    }
    .marshal();
    let sig: p256::ecdsa::Signature = sk.sign(&attest);
    let (r, s) = sig.split_bytes();
    Quote {
        ak: AkVerifier::from_tpm_public(&key(0x42).1).unwrap(),
        attest,
        signature: Signature::Ecdsa {
            hash: HashAlg::Sha256,
            r: r.to_vec(),
            s: s.to_vec(),
        },
        pcrs: values.clone(),
    }
}

fn input<'a>(
    q: &'a Quote,
    nonce: &'a [u8],
    challenged: Option<&'a PcrSelection>,
    eventlog: LogEvidence<'a>,
    policy: PolicyInput<'a>,
) -> AppraisalInput<'a> {
    AppraisalInput {
        ak: &q.ak,
        attest: &q.attest,
        signature: &q.signature,
        nonce,
        pcrs: &q.pcrs,
        challenged,
        eventlog,
        policy,
        previous: None,
    }
}

fn replayed(log: &EventLog<'_>) -> PcrBanks {
    let replay = log.replay();
    let mut values = PcrBanks::new();
    for bank in [HashAlg::Sha1, HashAlg::Sha256] {
        for p in PCRS {
            values.insert(bank, p, replay.get(bank, p).unwrap().to_vec());
        }
    }
    values
}

#[test]
fn good_evidence_is_trusted_and_every_check_ran() {
    let bytes = std::fs::read(testdata::eventlogs_dir().join(LOG)).unwrap();
    let log = EventLog::parse(&bytes).unwrap();
    let values = replayed(&log);
    let q = quote(&values, &[HashAlg::Sha256, HashAlg::Sha1], 0x42);
    let mut policy = Policy::record(&log, &log.replay());
    policy.pcrs = PcrPolicy::from_banks(&values);
    let a = appraise(&input(
        &q,
        &NONCE,
        None,
        LogEvidence::Log(&log),
        PolicyInput::Policy("recorded", &policy),
    ));
    assert!(a.trusted(), "{:?}", a.failures);
    assert!(a.quote_signed());
    let check = a.eventlog.unwrap();
    assert!(check.passed);
    // Both quoted banks compared (the quote's selection stands for the challenge).
    assert_eq!(check.banks.len(), 2);
    assert!(a.policy.unwrap().trusted);
}

#[test]
fn every_failure_is_recorded_not_only_the_first() {
    let bytes = std::fs::read(testdata::eventlogs_dir().join(LOG)).unwrap();
    let log = EventLog::parse(&bytes).unwrap();
    let mut values = replayed(&log);
    // PCR 4 of sha256 differs from the replay (the quote signs the changed value).
    values.insert(HashAlg::Sha256, 4, vec![0x44; 32]);
    let q = quote(&values, &[HashAlg::Sha256], 0x42);
    // The challenge also asked for the sha384 bank, which neither the quote nor the log has.
    let challenged = PcrSelection {
        banks: vec![
            PcrSelect::new(HashAlg::Sha256, &PCRS).unwrap(),
            PcrSelect::new(HashAlg::Sha384, &[0]).unwrap(),
        ],
    };
    let a = appraise(&input(
        &q,
        &[1, 2, 3],
        Some(&challenged),
        LogEvidence::Log(&log),
        PolicyInput::Unusable("gone", "no such policy"),
    ));
    let checks: Vec<String> = a.failures.iter().map(Failure::check).collect();
    assert_eq!(
        checks,
        [
            "quote.nonce",
            "quote.selection",
            "eventlog.pcr4",
            "eventlog.match",
            "policy.unusable"
        ],
        "{:?}",
        a.failures
    );
    assert!(matches!(
        &a.failures[0],
        Failure::Quote {
            check: CheckName::Nonce,
            ..
        }
    ));
    assert_eq!(
        a.failures[1],
        Failure::Selection(vec![(HashAlg::Sha384, 0)])
    );
    assert_eq!(
        a.failures[1].to_string(),
        "the quote does not cover requested PCRs sha384:0"
    );
    assert!(matches!(
        a.eventlog.as_ref().unwrap().banks[1],
        BankMatch::NotCompared {
            not_compared: MatchError::BankNotInLog {
                bank: HashAlg::Sha384
            },
            ..
        }
    ));
    // The nonce failed, but the signature and digest verified: the quote is authentic.
    assert!(a.quote_signed());
}

#[test]
fn nothing_is_compared_or_evaluated_on_an_unverified_quote() {
    let bytes = std::fs::read(testdata::eventlogs_dir().join(LOG)).unwrap();
    let log = EventLog::parse(&bytes).unwrap();
    let values = replayed(&log);
    let policy = Policy::record(&log, &log.replay());
    // Signed by another key.
    let q = quote(&values, &[HashAlg::Sha256], 0x43);
    let a = appraise(&input(
        &q,
        &NONCE,
        None,
        LogEvidence::Log(&log),
        PolicyInput::Policy("p", &policy),
    ));
    let checks: Vec<String> = a.failures.iter().map(Failure::check).collect();
    assert_eq!(checks, ["quote.signature", "policy.evidence"]);
    assert!(!a.quote_signed());
    let check = a.eventlog.unwrap();
    assert!(!check.passed && check.banks.is_empty());
    assert!(a.policy.is_none());
}

#[test]
fn a_missing_log_fails_and_a_policy_is_never_skipped() {
    let bytes = std::fs::read(testdata::eventlogs_dir().join(LOG)).unwrap();
    let log = EventLog::parse(&bytes).unwrap();
    let values = replayed(&log);
    let policy = Policy::record(&log, &log.replay());
    let q = quote(&values, &[HashAlg::Sha256], 0x42);
    let a = appraise(&input(
        &q,
        &NONCE,
        None,
        LogEvidence::Missing,
        PolicyInput::Policy("p", &policy),
    ));
    let checks: Vec<String> = a.failures.iter().map(Failure::check).collect();
    assert_eq!(checks, ["eventlog.missing", "policy.evidence"]);
    // No log check asked for, yet a policy given: not evaluated, and said so.
    let a = appraise(&input(
        &q,
        &NONCE,
        None,
        LogEvidence::NotChecked,
        PolicyInput::Policy("p", &policy),
    ));
    let checks: Vec<String> = a.failures.iter().map(Failure::check).collect();
    assert_eq!(checks, ["policy.evidence"]);
    assert!(a.eventlog.is_none());
    // Quote only: trusted on the quote checks alone.
    let a = appraise(&input(
        &q,
        &NONCE,
        None,
        LogEvidence::NotChecked,
        PolicyInput::None,
    ));
    assert!(a.trusted(), "{:?}", a.failures);
}

/// Steady state: what a trusted appraisal kept stands for the log while the quote shows the same
/// values under the same policy and firmware; a changed value is the log's mismatch, anything the
/// kept appraisal did not cover sends the verifier back to the whole log.
#[test]
fn a_settled_log_is_checked_by_values_and_names_what_changed() {
    let bytes = std::fs::read(testdata::eventlogs_dir().join(LOG)).unwrap();
    let log = EventLog::parse(&bytes).unwrap();
    let values = replayed(&log);
    let q = quote(&values, &[HashAlg::Sha256], 0x42);
    let mut sha256 = PcrBanks::new();
    for p in PCRS {
        sha256.insert(
            HashAlg::Sha256,
            p,
            values.get(HashAlg::Sha256, p).unwrap().to_vec(),
        );
    }
    let mut policy = Policy::record(&log, &log.replay());
    policy.pcrs = PcrPolicy::from_banks(&sha256);
    let id = vouch_attest::appraisal::policy_identity("recorded", &policy);
    let full = appraise(&input(
        &q,
        &NONCE,
        None,
        LogEvidence::Log(&log),
        PolicyInput::Policy("recorded", &policy),
    ));
    assert!(full.trusted(), "{:?}", full.failures);
    let kept = SettledLog::new(&bytes, &full, Some(&id)).expect("a trusted appraisal is kept");
    assert!(kept.is_for(&bytes));
    let mut other = bytes.clone();
    other[100] ^= 1;
    assert!(!kept.is_for(&other) && !kept.is_for(&bytes[..bytes.len() - 1]));
    assert_eq!(kept.pcrs.len(), PCRS.len());
    let steady = |q: &Quote, kept: &SettledLog, id: &str| {
        appraise(&input(
            q,
            &NONCE,
            None,
            LogEvidence::Settled(kept, Some(id)),
            PolicyInput::Policy("recorded", &policy),
        ))
    };

    // The same values: trusted, the log check passed without the log.
    let a = steady(&q, &kept, &id);
    assert!(a.trusted(), "{:?}", a.failures);
    assert!(a.eventlog.as_ref().unwrap().passed && a.quote_signed());

    // PCR 4 quoted otherwise: the log no longer explains it, named like a full appraisal does.
    let mut changed = values.clone();
    changed.insert(HashAlg::Sha256, 4, vec![0x44; 32]);
    let a = steady(&quote(&changed, &[HashAlg::Sha256], 0x42), &kept, &id);
    assert!(!a.trusted());
    assert!(
        a.failures.iter().any(|f| matches!(f,
            Failure::EventlogPcr { bank: HashAlg::Sha256, mismatch } if mismatch.pcr == 4)),
        "{:?}",
        a.failures
    );
    assert!(!a
        .failures
        .iter()
        .any(|f| matches!(f, Failure::SettledStale(_))));

    // Another policy, another TPM firmware, a PCR not kept: the kept appraisal does not apply.
    let stale = |a: vouch_attest::appraisal::Appraisal, what: &str| {
        let found: Vec<String> = a
            .failures
            .iter()
            .filter(|f| matches!(f, Failure::SettledStale(_)))
            .map(ToString::to_string)
            .collect();
        assert!(
            found.len() == 1 && found[0].contains(what) && !a.trusted(),
            "{what}: {:?}",
            a.failures
        );
        assert_eq!(a.failures[0].check(), "eventlog.settled");
    };
    stale(steady(&q, &kept, "recorded@edited"), "recorded@edited");
    let mut older_firmware = kept.clone();
    older_firmware.firmware_version = 0x0001_0000_0000_0000;
    stale(steady(&q, &older_firmware, &id), "firmware version");
    let mut fewer = kept.clone();
    fewer.pcrs.retain(|p| p.pcr != 7);
    stale(steady(&q, &fewer, &id), "sha256:7 was not kept");

    // A quote that does not verify vouches for nothing: no comparison, no policy.
    let forged = steady(&quote(&values, &[HashAlg::Sha256], 0x43), &kept, &id);
    assert!(!forged.quote_signed() && !forged.trusted());
    assert!(!forged.eventlog.as_ref().unwrap().passed);
    assert!(forged
        .failures
        .iter()
        .any(|f| matches!(f, Failure::PolicyNotEvaluated(_))));

    // Nothing is kept of an appraisal that found something wrong.
    let untrusted = appraise(&input(
        &quote(&changed, &[HashAlg::Sha256], 0x42),
        &NONCE,
        None,
        LogEvidence::Log(&log),
        PolicyInput::Policy("recorded", &policy),
    ));
    assert!(SettledLog::new(&bytes, &untrusted, Some(&id)).is_none());
}
