//! MakeCredential against an independent implementation: a credential written by
//! `tpm2_makecredential` (tpm2-tools 5.4) for a software EK is opened by
//! `activate_with_ecc_key`, which is exactly the inverse of our `make_credential`; and our own
//! credentials round-trip, are deterministic for a given RNG and refuse wrong Names and inputs.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::path::PathBuf;
use vouch_attest::credential::{
    activate_with_ecc_key, make_credential, parse_tools_file, to_tools_file, BlobError,
    CredentialError,
};
use vouch_attest::tpm::TpmPublic;

fn data(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/credential")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn public(name: &str) -> TpmPublic {
    TpmPublic::parse(&data(name)).unwrap().0
}

fn ek_key() -> p256::SecretKey {
    p256::SecretKey::from_sec1_pem(std::str::from_utf8(&data("soft_ek.key.pem")).unwrap()).unwrap()
}

#[test]
fn tpm2_makecredential_output_opens_with_the_ek_key() {
    let ek = public("soft_ek.pub");
    let ak_name = public("ak.pub").name().unwrap();
    let file = data("soft_ek.cred");
    let (blob, secret) = parse_tools_file(&file).unwrap();
    assert_eq!(to_tools_file(&blob, &secret), file);
    let got = activate_with_ecc_key(&ek, &ek_key(), &ak_name, &blob, &secret).unwrap();
    assert_eq!(*got, data("secret"));

    // Another object's Name, or any flipped byte of encIdentity, fails the integrity check.
    let tls_name = public("tls.pub").name().unwrap();
    assert!(matches!(
        activate_with_ecc_key(&ek, &ek_key(), &tls_name, &blob, &secret),
        Err(CredentialError::Blob(BlobError::Integrity))
    ));
    for at in 4..blob.len() {
        let mut b = blob.clone();
        b[at] ^= 0x80;
        assert!(matches!(
            activate_with_ecc_key(&ek, &ek_key(), &ak_name, &b, &secret),
            Err(CredentialError::Blob(BlobError::Integrity))
        ));
    }
    // A different EK private key derives a different seed.
    let other = p256::SecretKey::random(&mut ChaCha20Rng::seed_from_u64(9));
    assert!(activate_with_ecc_key(&ek, &other, &ak_name, &blob, &secret).is_err());
    // Truncations are errors, never panics.
    for n in 0..file.len() {
        assert!(parse_tools_file(&file[..n]).is_err());
    }
    for n in 0..secret.len() {
        assert!(activate_with_ecc_key(&ek, &ek_key(), &ak_name, &blob, &secret[..n]).is_err());
    }
}

#[test]
fn our_credentials_round_trip_and_have_the_tpm_layout() {
    let ek = public("soft_ek.pub");
    let ak_name = public("ak.pub").name().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for len in [1usize, 20, 32] {
        let secret = vec![0xa5; len];
        let (blob, enc) = make_credential(&ek, &ak_name, &secret, &mut rng).unwrap();
        // TPM2B_ID_OBJECT: size, TPM2B_DIGEST(32-byte HMAC), encIdentity (2 + len bytes).
        assert_eq!(blob.len(), 2 + 2 + 32 + 2 + len);
        assert_eq!(&blob[2..4], &[0, 32]);
        // TPM2B_ENCRYPTED_SECRET holding a TPMS_ECC_POINT with 32-byte coordinates.
        assert_eq!(enc.len(), 2 + 2 + 32 + 2 + 32);
        let got = activate_with_ecc_key(&ek, &ek_key(), &ak_name, &blob, &enc).unwrap();
        assert_eq!(*got, secret);
    }
    let a = make_credential(&ek, &ak_name, b"x", &mut ChaCha20Rng::seed_from_u64(7)).unwrap();
    let b = make_credential(&ek, &ak_name, b"x", &mut ChaCha20Rng::seed_from_u64(7)).unwrap();
    let c = make_credential(&ek, &ak_name, b"x", &mut ChaCha20Rng::seed_from_u64(8)).unwrap();
    assert_eq!(a, b, "the RNG is the only source of randomness");
    assert_ne!(a, c);
}

#[test]
fn invalid_inputs_are_named() {
    let ek = public("soft_ek.pub");
    let ak = public("ak.pub");
    let name = ak.name().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    assert!(matches!(
        make_credential(&ek, &name, &[], &mut rng),
        Err(CredentialError::SecretSize { len: 0, max: 32 })
    ));
    assert!(matches!(
        make_credential(&ek, &name, &[1; 33], &mut rng),
        Err(CredentialError::SecretSize { len: 33, max: 32 })
    ));
    assert!(matches!(
        make_credential(&ek, &name[..20], b"s", &mut rng),
        Err(CredentialError::ObjectName { len: 20 })
    ));
    assert!(matches!(
        make_credential(&ak, &name, b"s", &mut rng),
        Err(CredentialError::EkNotStorageKey {
            restricted: true,
            decrypt: false
        })
    ));
    let mut bad_point = ek.clone();
    if let vouch_attest::tpm::PublicParams::Ecc(p) = &mut bad_point.params {
        p.y[31] ^= 1;
    }
    assert!(matches!(
        make_credential(&bad_point, &name, b"s", &mut rng),
        Err(CredentialError::Seed(_))
    ));
}
