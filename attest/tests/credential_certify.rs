//! `verify_certification` on real TPM2_Certify output (swtpm through tpm2-tools, see
//! tests/data/credential/README.md) and on certifications signed by a software AK for the cases a
//! TPM would not produce. Every refusal names its reason.

use p256::ecdsa::signature::Signer;
use std::path::PathBuf;
use vouch_attest::credential::{verify_certification, CertificationError};
use vouch_attest::tpm::attest::{CertifyInfo, TPM_GENERATED_VALUE};
use vouch_attest::tpm::{Attest, AttestBody, ClockInfo, ObjectAttributes, Signature, TpmPublic};
use vouch_attest::HashAlg;

fn data(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/credential")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn public(name: &str) -> TpmPublic {
    TpmPublic::parse(&data(name)).unwrap().0
}

/// tpm2_certify 5.4 always passes this qualifying data (it has no option for it).
const TOOLS_QUALIFYING_DATA: &[u8] = &[0x00, 0xff, 0x55, 0xaa];

fn real(key: &str) -> (TpmPublic, Vec<u8>, Vec<u8>) {
    (
        public(&format!("{key}.pub")),
        data(&format!("{key}.certify.attest")),
        data(&format!("{key}.certify.sig")),
    )
}

fn attribute(e: CertificationError) -> (&'static str, bool) {
    match e {
        CertificationError::TlsAttribute {
            attribute,
            required,
        } => (attribute, required),
        other => panic!("expected an attribute failure, got {other}"),
    }
}

#[test]
fn real_certifications() {
    let ak = public("ak.pub");
    let (tls, attest, sig) = real("tls");
    verify_certification(&ak, &tls, &attest, &sig, TOOLS_QUALIFYING_DATA).unwrap();

    let e = verify_certification(&ak, &tls, &attest, &sig, b"nonce").unwrap_err();
    assert!(
        matches!(e, CertificationError::QualifyingData { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("6e6f6e6365"), "{e}");

    let (decrypt, d_attest, d_sig) = real("tls_decrypt");
    let e =
        verify_certification(&ak, &decrypt, &d_attest, &d_sig, TOOLS_QUALIFYING_DATA).unwrap_err();
    assert_eq!(attribute(e), ("decrypt", false));
    let (exportable, x_attest, x_sig) = real("tls_exportable");
    let e = verify_certification(&ak, &exportable, &x_attest, &x_sig, TOOLS_QUALIFYING_DATA)
        .unwrap_err();
    assert_eq!(attribute(e), ("fixedTPM", true));

    // A genuine certification of another key does not vouch for this one.
    let e = verify_certification(&ak, &tls, &d_attest, &d_sig, TOOLS_QUALIFYING_DATA).unwrap_err();
    assert!(matches!(e, CertificationError::NameMismatch { .. }), "{e}");
    // Mixing a signature of one attestation with another.
    let e = verify_certification(&ak, &tls, &attest, &d_sig, TOOLS_QUALIFYING_DATA).unwrap_err();
    assert!(matches!(e, CertificationError::Signature(_)), "{e}");
    // Every flipped byte of the attestation breaks the signature.
    for at in 0..attest.len() {
        let mut a = attest.clone();
        a[at] ^= 0x01;
        assert!(verify_certification(&ak, &tls, &a, &sig, TOOLS_QUALIFYING_DATA).is_err());
    }
    for n in 0..sig.len() {
        let e =
            verify_certification(&ak, &tls, &attest, &sig[..n], TOOLS_QUALIFYING_DATA).unwrap_err();
        assert!(matches!(e, CertificationError::SignatureFormat(_)), "{e}");
    }
    // The TLS key is not an AK: it is not restricted.
    let e = verify_certification(&tls, &tls, &attest, &sig, TOOLS_QUALIFYING_DATA).unwrap_err();
    assert!(
        matches!(&e, CertificationError::AkAttributes(m) if m == &["restricted"]),
        "{e}"
    );
}

struct SoftAk {
    key: p256::ecdsa::SigningKey,
    public: TpmPublic,
}

impl SoftAk {
    fn new() -> SoftAk {
        let key = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
        let point = key.verifying_key().to_encoded_point(false);
        let public = TpmPublic::ecc_p256_signing(
            ObjectAttributes::AK_TEMPLATE,
            point.x().unwrap(),
            point.y().unwrap(),
        );
        SoftAk { key, public }
    }

    fn certify(&self, magic: u32, body: AttestBody) -> (Vec<u8>, Vec<u8>) {
        let attest = Attest {
            magic,
            qualified_signer: self.public.name().unwrap(),
            extra_data: b"q".to_vec(),
            clock_info: ClockInfo {
                clock: 1,
                reset_count: 0,
                restart_count: 0,
                safe: true,
            },
            firmware_version: 0,
            body,
        }
        .marshal();
        let sig: p256::ecdsa::Signature = self.key.sign(&attest);
        let (r, s) = sig.split_bytes();
        let sig = Signature::Ecdsa {
            hash: HashAlg::Sha256,
            r: r.to_vec(),
            s: s.to_vec(),
        };
        (attest, sig.marshal())
    }
}

fn certify_body(key: &TpmPublic) -> AttestBody {
    AttestBody::Certify(CertifyInfo {
        name: key.name().unwrap(),
        qualified_name: key.name().unwrap(),
    })
}

#[test]
fn software_signed_cases() {
    let ak = SoftAk::new();
    let good = public("tls.pub");
    let (a, s) = ak.certify(TPM_GENERATED_VALUE, certify_body(&good));
    verify_certification(&ak.public, &good, &a, &s, b"q").unwrap();
    // The same bytes as a TPM2B_ATTEST are accepted too.
    let framed = [&(a.len() as u16).to_be_bytes()[..], &a].concat();
    verify_certification(&ak.public, &good, &framed, &s, b"q").unwrap();

    let (a, s) = ak.certify(0x1234_5678, certify_body(&good));
    let e = verify_certification(&ak.public, &good, &a, &s, b"q").unwrap_err();
    assert!(matches!(e, CertificationError::Magic(0x1234_5678)), "{e}");

    let quote = AttestBody::Other {
        tag: 0x8016,
        body: vec![],
    };
    let (a, s) = ak.certify(TPM_GENERATED_VALUE, quote);
    let e = verify_certification(&ak.public, &good, &a, &s, b"q").unwrap_err();
    assert!(matches!(e, CertificationError::NotCertify(0x8016)), "{e}");

    for (bit, name, required) in [
        (ObjectAttributes::FIXED_PARENT, "fixedParent", true),
        (
            ObjectAttributes::SENSITIVE_DATA_ORIGIN,
            "sensitiveDataOrigin",
            true,
        ),
        (ObjectAttributes::SIGN, "sign", true),
        (ObjectAttributes::RESTRICTED, "restricted", false),
        (ObjectAttributes::DECRYPT, "decrypt", false),
        (ObjectAttributes::FIXED_TPM, "fixedTPM", true),
    ] {
        let mut key = good.clone();
        key.attributes = ObjectAttributes(key.attributes.0 ^ bit);
        let (a, s) = ak.certify(TPM_GENERATED_VALUE, certify_body(&key));
        let e = verify_certification(&ak.public, &key, &a, &s, b"q").unwrap_err();
        assert_eq!(attribute(e), (name, required));
    }
}
