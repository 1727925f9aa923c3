//! Credential activation, the TPM-resident TLS key, its TPM2_Certify and TLS signing against a
//! real swtpm, with tpm2-tools as the independent oracle in both directions:
//! `tpm2_makecredential` output is activated by the agent, and `vouch_attest`'s make_credential
//! output is activated by `tpm2_activatecredential` (ECC P-256 and RSA-2048 EKs).

use rand_core::{OsRng, RngCore};
use std::process::Command;
use swtpm_tests::Swtpm;
use tss_esapi::constants::Tss2ResponseCodeKind;
use vouch_agent::tpm::TssError;
use vouch_agent::tpm::{EkAlg, PcrSelection, Tpm, TpmError};
use vouch_attest::credential::{
    make_credential, parse_tools_file, to_tools_file, verify_certification, CertificationError,
};
use vouch_attest::tpm::TpmPublic;
use vouch_attest::HashAlg;

/// The TPM response code kind of a failed activation (None for local errors).
fn tpm_rc(e: &TpmError) -> Option<Tss2ResponseCodeKind> {
    match e {
        TpmError::ActivateCredential(TssError(tss_esapi::Error::Tss2Error(rc))) => rc.kind(),
        _ => None,
    }
}

fn public(tpm2b: &[u8]) -> TpmPublic {
    TpmPublic::parse(tpm2b).unwrap().0
}

fn secret() -> Vec<u8> {
    let mut s = vec![0u8; 32];
    OsRng.fill_bytes(&mut s);
    s
}

#[test]
fn make_credential_round_trips_through_the_tpm_and_leaks_nothing() {
    let tpm = Swtpm::start().unwrap();
    let state = tpm.dir().join("agent");
    {
        let mut agent = tpm.open_esapi(&state).unwrap();
        let ek = public(&agent.endorsement_key(EkAlg::EccP256).unwrap().public);
        let ak_name = public(&agent.attestation_key().unwrap().public)
            .name()
            .unwrap();
        let tls_name = public(&agent.tls_key().unwrap().public).name().unwrap();
        // Three rounds on one swtpm: 5 activations, then every failure mode, each round. A leaked
        // object or session would exhaust the 3 slots long before the end.
        for _round in 0..3 {
            let (mut making, mut activating) = (0f64, 0f64);
            for _ in 0..5 {
                let s = secret();
                let t0 = std::time::Instant::now();
                let (blob, enc) = make_credential(&ek, &ak_name, &s, &mut OsRng).unwrap();
                let t1 = std::time::Instant::now();
                let got = agent
                    .activate_credential(EkAlg::EccP256, &blob, &enc)
                    .unwrap();
                activating += t1.elapsed().as_secs_f64() * 200.0;
                making += (t1 - t0).as_secs_f64() * 200.0;
                assert_eq!(*got, s);
            }
            eprintln!("make_credential {making:.2} ms, activate_credential {activating:.2} ms");
            // Credential made for another object's Name: the integrity HMAC fails in the TPM.
            let (blob, enc) = make_credential(&ek, &tls_name, &secret(), &mut OsRng).unwrap();
            let e = agent
                .activate_credential(EkAlg::EccP256, &blob, &enc)
                .unwrap_err();
            assert_eq!(tpm_rc(&e), Some(Tss2ResponseCodeKind::Integrity), "{e}");
            // A flipped byte in encIdentity or in the HMAC fails the integrity check; one in the
            // ephemeral point puts it off the curve.
            let (blob, enc) = make_credential(&ek, &ak_name, &secret(), &mut OsRng).unwrap();
            let last = blob.len() - 1;
            for at in [last, 5] {
                let mut b = blob.clone();
                b[at] ^= 0x01;
                let e = agent
                    .activate_credential(EkAlg::EccP256, &b, &enc)
                    .unwrap_err();
                assert_eq!(tpm_rc(&e), Some(Tss2ResponseCodeKind::Integrity), "{e}");
            }
            let mut s = enc.clone();
            s[6] ^= 0x01;
            let e = agent
                .activate_credential(EkAlg::EccP256, &blob, &s)
                .unwrap_err();
            assert_eq!(tpm_rc(&e), Some(Tss2ResponseCodeKind::EccPoint), "{e}");
            // Framing errors are caught before the TPM is asked.
            let e = agent
                .activate_credential(EkAlg::EccP256, &blob[1..], &enc)
                .unwrap_err();
            assert!(matches!(e, TpmError::CredentialFormat { .. }), "{e}");
        }
    }
    assert_eq!(tpm.leftovers(), 0, "no transient object or session left");
}

#[test]
fn rsa_ek_credentials_are_activated_by_the_agent() {
    // swtpm certifies its RSA-2048 EK: that is the device EK enrollment uses there.
    let tpm = Swtpm::start().unwrap();
    let state = tpm.dir().join("agent");
    {
        let mut agent = tpm.open_esapi(&state).unwrap();
        let ek = public(&agent.endorsement_key(EkAlg::Rsa2048).unwrap().public);
        let ak_name = public(&agent.attestation_key().unwrap().public)
            .name()
            .unwrap();
        for _ in 0..4 {
            let s = secret();
            let (blob, enc) = make_credential(&ek, &ak_name, &s, &mut OsRng).unwrap();
            assert_eq!(
                *agent
                    .activate_credential(EkAlg::Rsa2048, &blob, &enc)
                    .unwrap(),
                s
            );
            // The same credential cannot be opened with the other EK.
            assert!(agent
                .activate_credential(EkAlg::EccP256, &blob, &enc)
                .is_err());
        }
    }
    assert_eq!(tpm.leftovers(), 0, "no transient object or session left");
}

#[test]
fn tpm2_makecredential_output_is_activated_by_the_agent() {
    let tpm = Swtpm::start().unwrap();
    let state = tpm.dir().join("agent");
    let mut agent = tpm.open_esapi(&state).unwrap();
    let ek = agent.endorsement_key(EkAlg::EccP256).unwrap();
    let ak_name = public(&agent.attestation_key().unwrap().public)
        .name()
        .unwrap();
    let dir = tpm.dir();
    std::fs::write(dir.join("ek.pub"), &ek.public).unwrap();
    let s = secret();
    std::fs::write(dir.join("secret"), &s).unwrap();
    let out = Command::new("tpm2_makecredential")
        .args(["-T", "none", "-u"])
        .arg(dir.join("ek.pub"))
        .arg("-s")
        .arg(dir.join("secret"))
        .args(["-n", &hex::encode(&ak_name), "-o"])
        .arg(dir.join("cred.out"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = std::fs::read(dir.join("cred.out")).unwrap();
    let (blob, enc) = parse_tools_file(&file).unwrap();
    assert_eq!(to_tools_file(&blob, &enc), file);
    assert_eq!(
        *agent
            .activate_credential(EkAlg::EccP256, &blob, &enc)
            .unwrap(),
        s
    );
}

/// Our make_credential for an EK and AK made by tpm2-tools; tpm2_activatecredential recovers it.
fn tools_activate(alg: &str) {
    let tpm = Swtpm::start().unwrap();
    let d = tpm.dir();
    let p = |n: &str| d.join(n).to_str().unwrap().to_string();
    tpm.tpm2(&[
        "tpm2_createek",
        "-G",
        alg,
        "-c",
        &p("ek.ctx"),
        "-u",
        &p("ek.pub"),
        "-f",
        "tss",
    ]);
    tpm.tpm2(&[
        "tpm2_createak",
        "-C",
        &p("ek.ctx"),
        "-c",
        &p("ak.ctx"),
        "-n",
        &p("ak.name"),
        "-G",
        "ecc",
        "-g",
        "sha256",
        "-s",
        "ecdsa",
    ]);
    tpm.tpm2(&["tpm2_flushcontext", "-t"]);
    let ek = public(&std::fs::read(d.join("ek.pub")).unwrap());
    let ak_name = std::fs::read(d.join("ak.name")).unwrap();
    for _ in 0..3 {
        let s = secret();
        let (blob, enc) = make_credential(&ek, &ak_name, &s, &mut OsRng).unwrap();
        std::fs::write(d.join("cred"), to_tools_file(&blob, &enc)).unwrap();
        tpm.tpm2(&[
            "tpm2_startauthsession",
            "--policy-session",
            "-S",
            &p("s.ctx"),
        ]);
        tpm.tpm2(&["tpm2_policysecret", "-S", &p("s.ctx"), "-c", "e"]);
        tpm.tpm2(&[
            "tpm2_activatecredential",
            "-c",
            &p("ak.ctx"),
            "-C",
            &p("ek.ctx"),
            "-i",
            &p("cred"),
            "-o",
            &p("out"),
            "-P",
            &format!("session:{}", p("s.ctx")),
        ]);
        tpm.tpm2(&["tpm2_flushcontext", &p("s.ctx")]);
        tpm.tpm2(&["tpm2_flushcontext", "-t"]);
        assert_eq!(std::fs::read(d.join("out")).unwrap(), s, "{alg} EK");
    }
}

#[test]
fn tpm2_activatecredential_accepts_our_credential_for_an_ecc_ek() {
    tools_activate("ecc");
}

#[test]
fn tpm2_activatecredential_accepts_our_credential_for_an_rsa_2048_ek() {
    tools_activate("rsa");
}

#[test]
fn certification_of_the_tls_key_verifies_and_every_tampering_is_named() {
    let tpm = Swtpm::start().unwrap();
    let state = tpm.dir().join("agent");
    let mut agent = tpm.open_esapi(&state).unwrap();
    let ak = public(&agent.attestation_key().unwrap().public);
    let tls = public(&agent.tls_key().unwrap().public);
    let nonce = b"fleet-nonce-0123456789abcdef";
    let started = std::time::Instant::now();
    let c = agent.certify_tls_key(nonce).unwrap();
    eprintln!(
        "certify_tls_key: {:.2} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    verify_certification(&ak, &tls, &c.attest, &c.signature, nonce).unwrap();

    let e = verify_certification(&ak, &tls, &c.attest, &c.signature, b"other").unwrap_err();
    assert!(
        matches!(e, CertificationError::QualifyingData { .. }),
        "{e}"
    );
    let mut sig = c.signature.clone();
    let last = sig.len() - 1;
    sig[last] ^= 1;
    let e = verify_certification(&ak, &tls, &c.attest, &sig, nonce).unwrap_err();
    assert!(matches!(e, CertificationError::Signature(_)), "{e}");
    let mut attest = c.attest.clone();
    attest[12] ^= 1;
    let e = verify_certification(&ak, &tls, &attest, &c.signature, nonce).unwrap_err();
    assert!(matches!(e, CertificationError::Signature(_)), "{e}");
    // Presenting another key (here the AK) as the TLS key: the certified Name differs.
    let e = verify_certification(&ak, &ak, &c.attest, &c.signature, nonce).unwrap_err();
    assert!(matches!(e, CertificationError::NameMismatch { .. }), "{e}");
    // A quote by the same AK is validly signed but is not a certification.
    let q = agent
        .quote(nonce, &PcrSelection::single(HashAlg::Sha256, [0]))
        .unwrap();
    let e = verify_certification(&ak, &tls, &q.attest, &q.signature, nonce).unwrap_err();
    assert!(matches!(e, CertificationError::NotCertify(0x8018)), "{e}");
    // Signed by a different AK (another state directory, same TPM).
    let other_ak = {
        drop(agent);
        let mut other = tpm.open_esapi(&tpm.dir().join("other")).unwrap();
        public(&other.attestation_key().unwrap().public)
    };
    let e = verify_certification(&other_ak, &tls, &c.attest, &c.signature, nonce).unwrap_err();
    assert!(matches!(e, CertificationError::Signature(_)), "{e}");
    assert_eq!(tpm.leftovers(), 0);
}

#[test]
fn tls_key_persists_and_its_signatures_verify_with_p256_and_ring() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::pkcs8::DecodePublicKey;
    use sha2::Digest;
    let tpm = Swtpm::start().unwrap();
    let state = tpm.dir().join("agent");
    let mut agent = tpm.open_esapi(&state).unwrap();
    let tls = agent.tls_key().unwrap();
    assert_eq!(agent.tls_key().unwrap(), tls, "same key on the second call");
    let key = public(&tls.public);
    let spki = key.key().unwrap().to_spki_der().unwrap();
    let verifying = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
    for i in 0..5u8 {
        let message = [b"tls 1.3 certificate verify ".as_slice(), &[i]].concat();
        let digest = sha2::Sha256::digest(&message);
        let started = std::time::Instant::now();
        let der = agent.sign_tls(&digest).unwrap();
        eprintln!("sign_tls: {:.2} ms", started.elapsed().as_secs_f64() * 1e3);
        let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
        verifying.verify_prehash(&digest, &sig).unwrap();
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            key.key().unwrap().ring_public_key().unwrap(),
        )
        .verify(&message, &der)
        .unwrap();
        assert!(verifying.verify_prehash(&[0u8; 32], &sig).is_err());
    }
    assert!(matches!(
        agent.sign_tls(&[1; 20]),
        Err(TpmError::SignDigest { len: 20 })
    ));
    drop(agent);
    assert_eq!(tpm.leftovers(), 0);
    // A new process with the same state directory uses the same key.
    let mut again = tpm.open_esapi(&state).unwrap();
    assert_eq!(again.tls_key().unwrap(), tls);
    assert!(state.join("tls.pub").exists() && state.join("tls.priv").exists());
}

#[test]
fn memory_tpm_keys_have_the_same_shape_as_the_real_ones() {
    use vouch_agent::tpm::memory::MemoryTpm;
    use vouch_attest::tpm::PublicParams;
    fn without_point(mut p: TpmPublic) -> TpmPublic {
        if let PublicParams::Ecc(e) = &mut p.params {
            e.x.clear();
            e.y.clear();
        }
        p
    }
    let tpm = Swtpm::start().unwrap();
    let mut real = tpm.open_esapi(&tpm.dir().join("agent")).unwrap();
    let mut mem = MemoryTpm::new();
    let pairs: [(Vec<u8>, Vec<u8>); 3] = [
        (
            real.endorsement_key(EkAlg::EccP256).unwrap().public,
            mem.endorsement_key(EkAlg::EccP256).unwrap().public,
        ),
        (
            real.attestation_key().unwrap().public,
            mem.attestation_key().unwrap().public,
        ),
        (
            real.tls_key().unwrap().public,
            mem.tls_key().unwrap().public,
        ),
    ];
    for (r, m) in pairs {
        assert_eq!(without_point(public(&r)), without_point(public(&m)));
    }
}
