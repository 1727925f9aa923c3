//! tpm2_checkquote (tpm2-tools) as an independent oracle: a quote built with this crate's
//! marshallers and signed with a software P-256 key, written with this crate's PEM export and
//! PCR file writer, must be accepted by `tpm2_checkquote`, and rejected with another nonce or a
//! changed PCR value.

mod quote_support;

use quote_support::soft_quote;
use std::path::Path;
use std::process::Command;
use vouch_attest::pcrfile::{read_tpm_tools, write_tpm_tools};
use vouch_attest::quote::{AkPublic, AkVerifier, QuoteEvidence};
use vouch_attest::tpm::{Attest, Signature, TpmPublic};
use vouch_attest::HashAlg;

fn checkquote(dir: &Path, ak: &str, nonce_hex: &str) -> std::process::Output {
    Command::new("tpm2_checkquote")
        .current_dir(dir)
        .args([
            "-u",
            ak,
            "-m",
            "quote.msg",
            "-s",
            "quote.sig",
            "-f",
            "quote.pcrs",
            "-g",
            "sha256",
            "-q",
            nonce_hex,
        ])
        .output()
        .expect("tpm2_checkquote must be installed (Debian package tpm2-tools)")
}

#[test]
fn software_quote_round_trips_and_passes_our_verifier() {
    let q = soft_quote();
    assert_eq!(Attest::parse(&q.attest.marshal()).unwrap(), q.attest);
    assert_eq!(Attest::parse(&q.attest.marshal_tpm2b()).unwrap(), q.attest);
    assert_eq!(
        Signature::parse(&q.signature.marshal()).unwrap(),
        q.signature
    );
    assert_eq!(
        TpmPublic::parse(&q.public.marshal_tpm2b()).unwrap().0,
        q.public
    );
    let file = write_tpm_tools(&q.selection, &q.pcrs).unwrap();
    assert_eq!(
        read_tpm_tools(&file).unwrap(),
        (q.selection.clone(), q.pcrs.clone())
    );

    let v = AkVerifier::from_tpm_public(&q.public).unwrap();
    let res = v.verify_quote(&QuoteEvidence {
        attest: &q.attest.marshal(),
        signature: &q.signature,
        nonce: &q.nonce,
        pcrs: &q.pcrs,
        previous: None,
    });
    assert!(res.passed(), "{:#?}", res.checks);
}

#[test]
fn tpm2_checkquote_accepts_our_files_and_rejects_tampering() {
    let q = soft_quote();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pem = q.public.key().unwrap().to_pem().unwrap();
    std::fs::write(d.join("ak.pub.pem"), &pem).unwrap();
    std::fs::write(d.join("quote.msg"), q.attest.marshal()).unwrap();
    std::fs::write(d.join("quote.sig"), q.signature.marshal()).unwrap();
    std::fs::write(
        d.join("quote.pcrs"),
        write_tpm_tools(&q.selection, &q.pcrs).unwrap(),
    )
    .unwrap();

    // Our PEM must also be what our own AK reader accepts.
    assert_eq!(
        AkPublic::parse(pem.as_bytes()).unwrap().key,
        q.public.key().unwrap()
    );

    let nonce_hex = hex::encode(&q.nonce);
    let ok = checkquote(d, "ak.pub.pem", &nonce_hex);
    assert!(
        ok.status.success(),
        "tpm2_checkquote rejected our quote: {}\n{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );

    // It printed the PCRs it read from our file, both banks.
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(out.contains("sha256:") && out.contains("sha1:"), "{out}");
    let bad_nonce = checkquote(d, "ak.pub.pem", "00112233445566778899aabbccddeeff01020305");
    let err = String::from_utf8_lossy(&bad_nonce.stderr);
    assert!(err.contains("nonce"), "{err}");
    assert!(
        !bad_nonce.status.success(),
        "tpm2_checkquote accepted another nonce"
    );

    // A changed PCR value in the file must break the digest check.
    let mut pcrs = q.pcrs.clone();
    let mut v = pcrs.get(HashAlg::Sha1, 7).unwrap().to_vec();
    v[0] ^= 1;
    pcrs.insert(HashAlg::Sha1, 7, v);
    std::fs::write(
        d.join("quote.pcrs"),
        write_tpm_tools(&q.selection, &pcrs).unwrap(),
    )
    .unwrap();
    let bad_pcr = checkquote(d, "ak.pub.pem", &nonce_hex);
    let err = String::from_utf8_lossy(&bad_pcr.stderr);
    assert!(err.contains("PCR values failed to match"), "{err}");
    assert!(
        !bad_pcr.status.success(),
        "tpm2_checkquote accepted a changed PCR value"
    );
}
