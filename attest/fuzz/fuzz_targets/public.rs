//! Fuzzes AK public key reading: TPM2B_PUBLIC / TPMT_PUBLIC, PEM and DER SubjectPublicKeyInfo.
//! Never panics; TPM public areas round-trip; keys that convert export to SPKI and read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_attest::quote::{AkPublic, AkVerifier};
use vouch_attest::tpm::{PublicKey, TpmPublic};

fuzz_target!(|data: &[u8]| {
    if let Ok((p, _)) = TpmPublic::parse(data) {
        assert_eq!(TpmPublic::parse_bare(&p.marshal()).ok(), Some(p.clone()));
        let _ = p.name();
        let _ = p.key();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PublicKey::from_pem(text);
    }
    if let Ok(k) = PublicKey::from_spki_der(data) {
        if let Ok(der) = k.to_spki_der() {
            assert_eq!(PublicKey::from_spki_der(&der).ok(), Some(k));
        }
    }
    if let Ok(ak) = AkPublic::parse(data) {
        let _ = AkVerifier::new(&ak);
    }
});
