//! Shared helpers for the quote integration tests: loading go-attestation's real TPM output.
#![allow(dead_code)]

use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::SigningKey;
use std::path::PathBuf;
use vouch_attest::tpm::attest::{ClockInfo, QuoteInfo, TPM_GENERATED_VALUE};
use vouch_attest::tpm::{
    Attest, AttestBody, ObjectAttributes, PcrSelect, PcrSelection, Signature, TpmPublic,
};
use vouch_attest::{HashAlg, PcrBanks};

/// Path of a file under the shared test data's `eventlogs/` folder (see
/// `testsupport/testdata.rs`).
pub fn eventlog_data(name: &str) -> PathBuf {
    testdata::eventlogs_dir().join(name)
}

#[path = "../../../testsupport/testdata.rs"]
mod testdata;

/// The pieces of go-attestation's `windows_gcp_shielded_vm.json`: a real TPM's AK and quote.
pub struct GcpSample {
    pub ak_public: Vec<u8>,
    pub create_data: Vec<u8>,
    pub create_attestation: Vec<u8>,
    pub create_signature: Vec<u8>,
    pub quote: Vec<u8>,
    pub signature: Vec<u8>,
    pub nonce: Vec<u8>,
    pub pcrs: PcrBanks,
}

fn b64(v: &serde_json::Value, what: &str) -> Vec<u8> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string"));
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Loads the GCP Shielded VM sample.
pub fn gcp() -> GcpSample {
    let path = eventlog_data("goattest_windows_gcp_shielded_vm.bin.source.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).expect("source JSON");
    let mut pcrs = PcrBanks::new();
    for p in v["Log"]["PCRs"].as_array().expect("Log.PCRs") {
        // DigestAlg is Go's crypto.Hash: 3 = SHA1, 5 = SHA256.
        let alg = match p["DigestAlg"].as_u64() {
            Some(3) => HashAlg::Sha1,
            Some(5) => HashAlg::Sha256,
            other => panic!("unexpected DigestAlg {other:?}"),
        };
        let index = p["Index"].as_u64().expect("Index") as u32;
        pcrs.insert(alg, index, b64(&p["Digest"], "Digest"));
    }
    GcpSample {
        ak_public: b64(&v["AK"]["Public"], "AK.Public"),
        create_data: b64(&v["AK"]["CreateData"], "AK.CreateData"),
        create_attestation: b64(&v["AK"]["CreateAttestation"], "AK.CreateAttestation"),
        create_signature: b64(&v["AK"]["CreateSignature"], "AK.CreateSignature"),
        quote: b64(&v["Quote"]["Quote"], "Quote.Quote"),
        signature: b64(&v["Quote"]["Signature"], "Quote.Signature"),
        nonce: b64(&v["Quote"]["Nonce"], "Quote.Nonce"),
        pcrs,
    }
}

/// A quote made in software with this crate's marshallers and a fixed P-256 key.
pub struct SoftQuote {
    pub public: TpmPublic,
    pub attest: Attest,
    pub signature: Signature,
    pub selection: PcrSelection,
    pub pcrs: PcrBanks,
    pub nonce: Vec<u8>,
}

/// Builds and signs a quote over sha256 PCRs 0-11 and sha1 PCRs 0 and 7 (14 digests, so the PCR
/// file needs two TPML_DIGEST blocks).
pub fn soft_quote() -> SoftQuote {
    let sk = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let point = sk.verifying_key().to_encoded_point(false);
    let public = TpmPublic::ecc_p256_signing(
        ObjectAttributes::AK_TEMPLATE,
        point.x().unwrap(),
        point.y().unwrap(),
    );
    let s256: Vec<u32> = (0..12).collect();
    let selection = PcrSelection {
        banks: vec![
            PcrSelect::new(HashAlg::Sha256, &s256).unwrap(),
            PcrSelect::new(HashAlg::Sha1, &[0, 7]).unwrap(),
        ],
    };
    let mut pcrs = PcrBanks::new();
    for (bank, pcr) in selection.iter() {
        let v = bank.hash(format!("{bank} pcr {pcr}").as_bytes()).unwrap();
        pcrs.insert(bank, pcr, v);
    }
    let parts: Vec<&[u8]> = selection
        .iter()
        .map(|(b, p)| pcrs.get(b, p).unwrap())
        .collect();
    let nonce = hex::decode("00112233445566778899aabbccddeeff01020304").unwrap();
    let attest = Attest {
        magic: TPM_GENERATED_VALUE,
        qualified_signer: public.name().unwrap(),
        extra_data: nonce.clone(),
        clock_info: ClockInfo {
            clock: 987_654,
            reset_count: 3,
            restart_count: 0,
            safe: true,
        },
        firmware_version: 0x2000_0001_0000_0000,
        body: AttestBody::Quote(QuoteInfo {
            pcr_select: selection.clone(),
            pcr_digest: HashAlg::Sha256.hash_parts(&parts).unwrap(),
        }),
    };
    let sig: p256::ecdsa::Signature = sk.sign(&attest.marshal());
    let (r, s) = sig.split_bytes();
    let signature = Signature::Ecdsa {
        hash: HashAlg::Sha256,
        r: r.to_vec(),
        s: s.to_vec(),
    };
    SoftQuote {
        public,
        attest,
        signature,
        selection,
        pcrs,
        nonce,
    }
}
