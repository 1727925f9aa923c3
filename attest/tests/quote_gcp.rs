//! Quote verification against a real TPM's output: the AK, creation attestation and quote of a
//! Windows GCP Shielded VM, as shipped by go-attestation.

mod quote_support;

use quote_support::gcp;
use vouch_attest::quote::{
    AkFormat, AkPublic, AkVerifier, CheckFailure, CheckName, CounterRelation, Outcome,
    QuoteEvidence, SkipReason,
};
use vouch_attest::tpm::attest::{AttestBody, AttestForm};
use vouch_attest::tpm::public::{PublicForm, PublicParams};
use vouch_attest::tpm::{AsymScheme, Attest, ObjectAttributes, Signature, TpmPublic};
use vouch_attest::{HashAlg, PcrBanks};

fn failed(v: &vouch_attest::quote::QuoteVerification) -> Vec<CheckName> {
    v.failures().map(|c| c.name).collect()
}

#[test]
fn ak_public_is_a_tpmt_public_rsa_key_and_re_marshals_bit_exactly() {
    let s = gcp();
    let (ak, form) = TpmPublic::parse(&s.ak_public).unwrap();
    assert_eq!(form, PublicForm::Bare);
    assert_eq!(ak.name_alg, HashAlg::Sha256);
    assert_eq!(ak.attributes, ObjectAttributes(0x0005_0472));
    assert!(ak.attributes.restricted() && ak.attributes.sign() && !ak.attributes.decrypt());
    assert_eq!(ak.auth_policy.len(), 32);
    let PublicParams::Rsa(rsa) = &ak.params else {
        panic!("not RSA")
    };
    assert_eq!(rsa.key_bits, 2048);
    assert_eq!(rsa.exponent, 0);
    assert_eq!(rsa.scheme, AsymScheme::Rsassa(HashAlg::Sha1));
    assert_eq!(rsa.modulus.len(), 256);
    assert_eq!(ak.marshal(), s.ak_public);
    // The size-prefixed form is detected too.
    let (again, form) = TpmPublic::parse(&ak.marshal_tpm2b()).unwrap();
    assert_eq!((again, form), (ak.clone(), PublicForm::SizePrefixed));
    // PEM export parses back to the same key.
    let pem = ak.key().unwrap().to_pem().unwrap();
    let from_pem = AkPublic::parse(pem.as_bytes()).unwrap();
    assert_eq!(from_pem.format, AkFormat::Pem);
    assert_eq!(from_pem.key, ak.key().unwrap());
}

#[test]
fn creation_attestation_names_the_ak_and_hashes_the_creation_data() {
    let s = gcp();
    let (ak, _) = TpmPublic::parse(&s.ak_public).unwrap();
    let att = Attest::parse(&s.create_attestation).unwrap();
    assert_eq!(att.marshal(), s.create_attestation);
    let AttestBody::Creation(c) = &att.body else {
        panic!("not a creation attestation: {:?}", att.body)
    };
    // The TPM-computed Name of the AK must equal ours.
    assert_eq!(c.object_name, ak.name().unwrap());
    assert_eq!(
        Some(c.creation_hash.clone()),
        HashAlg::Sha256.hash(&s.create_data)
    );
    // The AK certified its own creation; the signature verifies.
    let sig = Signature::parse(&s.create_signature).unwrap();
    assert_eq!(sig.marshal(), s.create_signature);
    let v = AkVerifier::from_tpm_public(&ak).unwrap();
    v.verify(&s.create_attestation, &sig).unwrap();
    let mut bad = s.create_attestation.clone();
    bad[20] ^= 1;
    assert!(matches!(
        v.verify(&bad, &sig),
        Err(CheckFailure::SignatureInvalid { .. })
    ));
}

#[test]
fn real_quote_verifies_and_reports_every_check() {
    let s = gcp();
    let ak = AkPublic::parse(&s.ak_public).unwrap();
    assert_eq!(ak.format, AkFormat::TpmtPublic);
    let verifier = AkVerifier::new(&ak).unwrap();
    let sig = Signature::parse(&s.signature).unwrap();
    assert_eq!(sig.hash(), HashAlg::Sha1);
    let attest = Attest::parse(&s.quote).unwrap();
    assert_eq!(attest.marshal(), s.quote);
    let q = attest.quote().unwrap();
    assert_eq!(q.pcr_select.len(), 24);
    let ev = QuoteEvidence {
        attest: &s.quote,
        signature: &sig,
        nonce: &s.nonce,
        pcrs: &s.pcrs,
        previous: None,
    };
    let v = verifier.verify_quote(&ev);
    assert!(v.passed(), "{:#?}", v.checks);
    assert_eq!(v.checks.len(), 9);
    assert_eq!(
        v.check(CheckName::Counters),
        Some(&Outcome::Skipped(SkipReason::NoPrevious))
    );
    assert_eq!(v.quoted.as_ref().unwrap(), &s.pcrs);

    // The TPM2B_ATTEST form verifies the same way.
    let mut framed = (s.quote.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&s.quote);
    assert_eq!(
        vouch_attest::tpm::attest::unwrap_attest(&framed).1,
        AttestForm::SizePrefixed
    );
    assert!(verifier
        .verify_quote(&QuoteEvidence {
            attest: &framed,
            ..ev
        })
        .passed());

    // The AK given as PEM verifies too, with the attribute check skipped.
    let pem = ak.key.to_pem().unwrap();
    let pem_ak = AkVerifier::new(&AkPublic::parse(pem.as_bytes()).unwrap()).unwrap();
    let v = pem_ak.verify_quote(&ev);
    assert!(v.passed());
    assert_eq!(
        v.check(CheckName::AkAttributes),
        Some(&Outcome::Skipped(SkipReason::AkAttributesUnknown))
    );
}

#[test]
fn tampering_fails_exactly_the_right_checks() {
    let s = gcp();
    let verifier = AkVerifier::new(&AkPublic::parse(&s.ak_public).unwrap()).unwrap();
    let sig = Signature::parse(&s.signature).unwrap();
    let base = QuoteEvidence {
        attest: &s.quote,
        signature: &sig,
        nonce: &s.nonce,
        pcrs: &s.pcrs,
        previous: None,
    };

    // A flipped signature bit.
    let mut bad_sig_bytes = s.signature.clone();
    let last = bad_sig_bytes.len() - 1;
    bad_sig_bytes[last] ^= 0x01;
    let bad_sig = Signature::parse(&bad_sig_bytes).unwrap();
    let v = verifier.verify_quote(&QuoteEvidence {
        signature: &bad_sig,
        ..base
    });
    assert_eq!(failed(&v), vec![CheckName::Signature]);
    assert!(v.quoted.is_none());

    // Another nonce.
    let v = verifier.verify_quote(&QuoteEvidence {
        nonce: b"fresh",
        ..base
    });
    assert_eq!(failed(&v), vec![CheckName::Nonce]);

    // One flipped PCR value.
    let mut pcrs = PcrBanks::new();
    for (alg, bank) in s.pcrs.banks() {
        for (i, val) in bank {
            let mut val = val.clone();
            if *i == 7 {
                val[0] ^= 0x80;
            }
            pcrs.insert(alg, *i, val);
        }
    }
    let v = verifier.verify_quote(&QuoteEvidence {
        pcrs: &pcrs,
        ..base
    });
    assert_eq!(failed(&v), vec![CheckName::PcrDigest]);

    // A missing PCR value: coverage fails and the digest cannot be checked.
    let mut partial = PcrBanks::new();
    for (alg, bank) in s.pcrs.banks() {
        for (i, val) in bank {
            if *i != 23 {
                partial.insert(alg, *i, val.clone());
            }
        }
    }
    let v = verifier.verify_quote(&QuoteEvidence {
        pcrs: &partial,
        ..base
    });
    assert_eq!(
        failed(&v),
        vec![CheckName::PcrCoverage, CheckName::PcrDigest]
    );
    assert_eq!(
        v.check(CheckName::PcrCoverage),
        Some(&Outcome::Fail(CheckFailure::PcrMissing(vec![(
            HashAlg::Sha1,
            23
        )])))
    );

    // A creation attestation presented as a quote: signature fine, type wrong.
    let create_sig = Signature::parse(&s.create_signature).unwrap();
    let v = verifier.verify_quote(&QuoteEvidence {
        attest: &s.create_attestation,
        signature: &create_sig,
        ..base
    });
    assert_eq!(
        failed(&v),
        vec![
            CheckName::AttestType,
            CheckName::PcrCoverage,
            CheckName::PcrDigest
        ]
    );

    // Everything at once: each failure is still reported.
    let v = verifier.verify_quote(&QuoteEvidence {
        signature: &bad_sig,
        nonce: b"x",
        pcrs: &pcrs,
        ..base
    });
    assert_eq!(
        failed(&v),
        vec![CheckName::Signature, CheckName::Nonce, CheckName::PcrDigest]
    );

    // Garbage attestation bytes.
    let v = verifier.verify_quote(&QuoteEvidence {
        attest: &s.quote[..40],
        ..base
    });
    assert!(failed(&v).contains(&CheckName::AttestParse));
    assert!(failed(&v).contains(&CheckName::Signature));
}

#[test]
fn counters_against_the_earlier_creation_attestation() {
    let s = gcp();
    let verifier = AkVerifier::new(&AkPublic::parse(&s.ak_public).unwrap()).unwrap();
    let sig = Signature::parse(&s.signature).unwrap();
    let v = verifier.verify_quote(&QuoteEvidence {
        attest: &s.quote,
        signature: &sig,
        nonce: &s.nonce,
        pcrs: &s.pcrs,
        previous: Some(&s.create_attestation),
    });
    assert!(v.passed(), "{:#?}", v.checks);
    let c = v.counters.unwrap();
    // The AK was created 0x9c8313 - 0x9c82e7 = 44 ms before the quote, in the same boot.
    assert_eq!(
        c.relation,
        CounterRelation::SameBoot {
            clock_advance_ms: 44
        }
    );
    assert!(!c.firmware_changed);

    // Swapped, the quote's clock is later than the "current" one: fails.
    let quote = Attest::parse(&s.quote).unwrap();
    let create = Attest::parse(&s.create_attestation).unwrap();
    assert!(matches!(
        vouch_attest::quote::counters::compare(&quote, &create),
        Err(CheckFailure::ClockBackwards { .. })
    ));
}

#[test]
fn verification_result_serializes_with_named_checks() {
    let s = gcp();
    let verifier = AkVerifier::new(&AkPublic::parse(&s.ak_public).unwrap()).unwrap();
    let sig = Signature::parse(&s.signature).unwrap();
    let v = verifier.verify_quote(&QuoteEvidence {
        attest: &s.quote,
        signature: &sig,
        nonce: b"n",
        pcrs: &s.pcrs,
        previous: None,
    });
    let j = serde_json::to_value(&v).unwrap();
    let nonce = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "nonce")
        .unwrap();
    assert_eq!(nonce["status"], "fail");
    assert!(nonce["detail"].as_str().unwrap().contains("6e"));
    assert_eq!(j["attest"]["body"]["type"], "quote");
}
