//! Delivery of a released passphrase: opened by the EK (software EK of the credential test
//! data, activated with `activate_with_ecc_key`) for the AK name it was made for, and only for
//! the device id, volume and boot it names.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::path::PathBuf;
use vouch_attest::boot::BootId;
use vouch_attest::credential::activate_with_ecc_key;
use vouch_attest::escrow_delivery::{unwrap, wrap, DeliveryError};
use vouch_attest::tpm::TpmPublic;

fn data(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/credential")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn only_the_devices_tpm_opens_it_and_only_for_its_volume() {
    let ek = TpmPublic::parse(&data("soft_ek.pub")).unwrap().0;
    let ek_key =
        p256::SecretKey::from_sec1_pem(std::str::from_utf8(&data("soft_ek.key.pem")).unwrap())
            .unwrap();
    let ak_name = TpmPublic::parse(&data("ak.pub")).unwrap().0.name().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let pass = b"correct horse battery staple";
    let boot_1: BootId = "11111111-2222-4333-8444-555555555555".parse().unwrap();
    let r = wrap(&ek, &ak_name, "dev1", "uuid-1", &boot_1, pass, &mut rng).unwrap();
    assert_eq!(r.boot_id, boot_1);
    assert_eq!(r.volume_uuid, "uuid-1");
    let json = String::from_utf8(vouch_attest::protocol::encode(&r)).unwrap();
    assert!(!json.contains("horse"), "{json}");

    let key = activate_with_ecc_key(
        &ek,
        &ek_key,
        &ak_name,
        &r.credential_blob,
        &r.encrypted_secret,
    )
    .unwrap();
    assert_eq!(&unwrap(&r, &key, "dev1").unwrap()[..], pass);

    // Another device id, another volume, a tampered ciphertext: refused.
    assert!(matches!(unwrap(&r, &key, "dev2"), Err(DeliveryError::Open)));
    let mut other = r.clone();
    other.volume_uuid = "uuid-2".into();
    assert!(matches!(
        unwrap(&other, &key, "dev1"),
        Err(DeliveryError::Open)
    ));
    let mut other_boot = r.clone();
    other_boot.boot_id = "11111111-2222-4333-8444-555555555556".parse().unwrap();
    assert!(matches!(
        unwrap(&other_boot, &key, "dev1"),
        Err(DeliveryError::Open)
    ));
    let mut bad = r.clone();
    bad.ciphertext[0] ^= 1;
    assert!(matches!(
        unwrap(&bad, &key, "dev1"),
        Err(DeliveryError::Open)
    ));

    // Another TPM's EK, or another AK, cannot activate the key.
    let stranger = p256::SecretKey::random(&mut rng);
    assert!(activate_with_ecc_key(
        &ek,
        &stranger,
        &ak_name,
        &r.credential_blob,
        &r.encrypted_secret
    )
    .is_err());
    let mut other_ak = ak_name.clone();
    other_ak[5] ^= 1;
    assert!(activate_with_ecc_key(
        &ek,
        &ek_key,
        &other_ak,
        &r.credential_blob,
        &r.encrypted_secret
    )
    .is_err());

    // Sizes.
    assert!(matches!(
        unwrap(&r, &key[..16], "dev1"),
        Err(DeliveryError::KeyLength(16))
    ));
    let mut short = r.clone();
    short.nonce.pop();
    assert!(matches!(
        unwrap(&short, &key, "dev1"),
        Err(DeliveryError::NonceLength(11))
    ));
    assert!(matches!(
        wrap(&ek, &ak_name, "d", "u", &boot_1, b"", &mut rng),
        Err(DeliveryError::PassphraseSize(0))
    ));
    let long = vec![b'x'; 1025];
    assert!(matches!(
        wrap(&ek, &ak_name, "d", "u", &boot_1, &long, &mut rng),
        Err(DeliveryError::PassphraseSize(1025))
    ));
}
