//! Signature schemes beyond the real RSASSA-SHA1 and software P-256 quotes: ECDSA P-384/SHA-384
//! (key made and signed with ring), RSASSA-PKCS1-v1_5 and RSA-PSS with SHA-256 (key made by
//! `openssl genpkey`, signed with ring, which like TPMs uses a salt as long as the digest).

use ring::rand::SystemRandom;
use ring::signature::{self as rs, EcdsaKeyPair, KeyPair, RsaKeyPair};
use std::process::Command;
use vouch_attest::quote::{AkVerifier, CheckFailure, CheckName, QuoteEvidence};
use vouch_attest::tpm::attest::{ClockInfo, QuoteInfo, TPM_GENERATED_VALUE};
use vouch_attest::tpm::params::{AsymScheme, EccCurve, KdfScheme, SymDef};
use vouch_attest::tpm::public::{EccPublic, PublicParams, RsaPublic};
use vouch_attest::tpm::{
    Attest, AttestBody, ObjectAttributes, PcrSelect, PcrSelection, Signature, TpmPublic,
};
use vouch_attest::{HashAlg, PcrBanks};

/// A quote over sha256 PCRs 0-7 whose pcrDigest uses `hash`.
fn quote_for(public: &TpmPublic, hash: HashAlg, nonce: &[u8]) -> (Attest, PcrBanks) {
    let sel = PcrSelection {
        banks: vec![PcrSelect::new(HashAlg::Sha256, &(0..8).collect::<Vec<_>>()).unwrap()],
    };
    let mut pcrs = PcrBanks::new();
    for (b, p) in sel.iter() {
        pcrs.insert(b, p, b.hash(&p.to_be_bytes()).unwrap());
    }
    let parts: Vec<&[u8]> = sel.iter().map(|(b, p)| pcrs.get(b, p).unwrap()).collect();
    let attest = Attest {
        magic: TPM_GENERATED_VALUE,
        qualified_signer: public.name().unwrap(),
        extra_data: nonce.to_vec(),
        clock_info: ClockInfo {
            clock: 1,
            reset_count: 1,
            restart_count: 0,
            safe: true,
        },
        firmware_version: 7,
        body: AttestBody::Quote(QuoteInfo {
            pcr_select: sel,
            pcr_digest: hash.hash_parts(&parts).unwrap(),
        }),
    };
    (attest, pcrs)
}

fn check(public: &TpmPublic, attest: &Attest, sig: &Signature, pcrs: &PcrBanks, nonce: &[u8]) {
    let v = AkVerifier::from_tpm_public(public).unwrap();
    let bytes = attest.marshal();
    let ev = QuoteEvidence {
        attest: &bytes,
        signature: sig,
        nonce,
        pcrs,
        previous: None,
    };
    let res = v.verify_quote(&ev);
    assert!(res.passed(), "{:#?}", res.checks);
    let mut tampered = bytes.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let res = v.verify_quote(&QuoteEvidence {
        attest: &tampered,
        ..ev
    });
    let failed: Vec<_> = res.failures().map(|c| c.name).collect();
    assert_eq!(failed, vec![CheckName::Signature, CheckName::PcrDigest]);
}

#[test]
fn ecdsa_p384_sha384() {
    let rng = SystemRandom::new();
    let alg = &rs::ECDSA_P384_SHA384_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let kp = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let point = kp.public_key().as_ref();
    let public = TpmPublic {
        name_alg: HashAlg::Sha384,
        attributes: ObjectAttributes::AK_TEMPLATE,
        auth_policy: vec![],
        params: PublicParams::Ecc(EccPublic {
            symmetric: SymDef::Null,
            scheme: AsymScheme::Ecdsa(HashAlg::Sha384),
            curve: EccCurve::NistP384,
            kdf: KdfScheme::Null,
            x: point[1..49].to_vec(),
            y: point[49..97].to_vec(),
        }),
    };
    assert_eq!(TpmPublic::parse(&public.marshal_tpm2b()).unwrap().0, public);
    let nonce = b"p384 nonce";
    let (attest, pcrs) = quote_for(&public, HashAlg::Sha384, nonce);
    let rs_bytes = kp.sign(&rng, &attest.marshal()).unwrap();
    let (r, s) = rs_bytes.as_ref().split_at(48);
    let sig = Signature::Ecdsa {
        hash: HashAlg::Sha384,
        r: r.to_vec(),
        s: s.to_vec(),
    };
    check(&public, &attest, &sig, &pcrs, nonce);
    // PEM export of a P-384 key reads back.
    let pem = public.key().unwrap().to_pem().unwrap();
    assert_eq!(
        vouch_attest::tpm::PublicKey::from_pem(&pem).unwrap(),
        public.key().unwrap()
    );
}

fn openssl_rsa_key() -> RsaKeyPair {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-outform",
            "DER",
        ])
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // OpenSSL 3 writes the traditional RSAPrivateKey for `-outform DER`; accept either form.
    RsaKeyPair::from_der(&out.stdout)
        .or_else(|_| RsaKeyPair::from_pkcs8(&out.stdout))
        .unwrap()
}

#[test]
fn rsassa_and_rsapss_sha256() {
    let kp = openssl_rsa_key();
    let modulus = kp.public().modulus_len();
    let comps = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(kp.public());
    assert_eq!(comps.e, vec![0x01, 0x00, 0x01]);
    let m = comps.n;
    let public = TpmPublic {
        name_alg: HashAlg::Sha256,
        attributes: ObjectAttributes::AK_TEMPLATE,
        auth_policy: vec![],
        params: PublicParams::Rsa(RsaPublic {
            symmetric: SymDef::Null,
            scheme: AsymScheme::Null,
            key_bits: 2048,
            exponent: 0,
            modulus: m,
        }),
    };
    let rng = SystemRandom::new();
    let nonce = b"rsa nonce";
    let (attest, pcrs) = quote_for(&public, HashAlg::Sha256, nonce);
    let msg = attest.marshal();
    let mut sig = vec![0u8; modulus];

    kp.sign(&rs::RSA_PKCS1_SHA256, &rng, &msg, &mut sig)
        .unwrap();
    let pkcs1 = Signature::Rsassa {
        hash: HashAlg::Sha256,
        sig: sig.clone(),
    };
    check(&public, &attest, &pkcs1, &pcrs, nonce);

    kp.sign(&rs::RSA_PSS_SHA256, &rng, &msg, &mut sig).unwrap();
    let pss = Signature::Rsapss {
        hash: HashAlg::Sha256,
        sig: sig.clone(),
    };
    check(&public, &attest, &pss, &pcrs, nonce);

    // The same bytes presented as the other RSA scheme do not verify.
    let v = AkVerifier::from_tpm_public(&public).unwrap();
    let swapped = Signature::Rsassa {
        hash: HashAlg::Sha256,
        sig,
    };
    assert!(matches!(
        v.verify(&msg, &swapped),
        Err(CheckFailure::SignatureInvalid { .. })
    ));
    // RSA-PSS with SHA-1 is not supported by ring: reported, not panicking.
    let pss1 = Signature::Rsapss {
        hash: HashAlg::Sha1,
        sig: vec![0; modulus],
    };
    assert!(matches!(
        v.verify(&msg, &pss1),
        Err(CheckFailure::UnsupportedSignature { .. })
    ));
    // An ECDSA signature cannot come from an RSA key.
    let ec = Signature::Ecdsa {
        hash: HashAlg::Sha256,
        r: vec![1; 32],
        s: vec![1; 32],
    };
    assert!(matches!(
        v.verify(&msg, &ec),
        Err(CheckFailure::KeyMismatch { .. })
    ));
}
