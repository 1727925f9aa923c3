//! Unit tests of sealing on the in-memory TPM, the blob format and the policy store.

use super::blob::{decode, encode, BlobError};
use super::store::{Offer, PolicyStore};
use super::*;
use crate::tpm::memory::MemoryTpm;
use crate::tpm::Tpm;
use crate::tpm::TpmError;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature as P256Signature, SigningKey};
use vouch_attest::policy_digest::fleet_key_public;
use vouch_attest::policy_digest::signed::PolicyDraft;
use vouch_attest::tpm::keys::PublicKey;
use vouch_attest::tpm::{EccCurve, Signature};
use vouch_attest::HashAlg;

fn pcr7() -> PcrSelection {
    "sha256:7".parse().unwrap()
}

fn fleet(seed: u8) -> (SigningKey, TpmPublic) {
    let sk = SigningKey::from_slice(&[seed; 32]).unwrap();
    let key = PublicKey::from_sec1(
        EccCurve::NistP256,
        sk.verifying_key().to_encoded_point(false).as_bytes(),
    )
    .unwrap();
    (sk, fleet_key_public(&key).unwrap())
}

fn ecdsa(sk: &SigningKey, message: &[u8]) -> Signature {
    let sig: P256Signature = sk.sign(message);
    let (r, s) = sig.split_bytes();
    Signature::Ecdsa {
        hash: HashAlg::Sha256,
        r: r.to_vec(),
        s: s.to_vec(),
    }
}

fn approve(sk: &SigningKey, key: &TpmPublic, serial: u64, values: &PcrBanks) -> SignedPolicy {
    let d = PolicyDraft::new(
        serial,
        pcr7(),
        values,
        DEFAULT_POLICY_REF.to_vec(),
        key.clone(),
    )
    .unwrap();
    let (a, s) = (
        ecdsa(sk, &d.approval_message()),
        ecdsa(sk, &d.statement().unwrap()),
    );
    d.finish(a, s).unwrap()
}

fn current(tpm: &mut MemoryTpm) -> PcrBanks {
    tpm.pcr_read(&pcr7()).unwrap()
}

fn update(tpm: &mut MemoryTpm) {
    tpm.pcr_extend(7, &[(HashAlg::Sha256, vec![0x42; 32])])
        .unwrap();
}

#[test]
fn pcr_seal_unseals_until_pcr7_changes_and_names_it() {
    let mut tpm = MemoryTpm::new();
    let policy = SealPolicy::Pcr {
        selection: pcr7(),
        values: None,
    };
    let sealed = tpm.seal(b"volume key", &policy).unwrap();
    assert_eq!(*tpm.unseal(&sealed, None).unwrap(), b"volume key");
    // The blob survives its file format.
    let sealed = decode(&encode(&sealed)).unwrap();
    assert_eq!(*tpm.unseal(&sealed, None).unwrap(), b"volume key");
    update(&mut tpm);
    match tpm.unseal(&sealed, None) {
        Err(TpmError::Policy(PolicyError::BootStateChanged { bound, changed })) => {
            assert_eq!((bound.as_str(), changed.as_str()), ("sha256:7", "sha256:7"));
        }
        other => panic!("expected a boot-state error, got {:?}", other.map(|_| ())),
    }
    // Another TPM cannot open it, whatever its PCRs.
    assert!(matches!(
        MemoryTpm::new().unseal(&sealed, None),
        Err(TpmError::Memory(_))
    ));
    assert!(matches!(
        tpm.seal(&[0; 129], &policy),
        Err(TpmError::SecretSize { len: 129 })
    ));
    assert!(matches!(
        tpm.seal(b"", &policy),
        Err(TpmError::SecretSize { len: 0 })
    ));
}

#[test]
fn sealing_to_given_values_unlocks_only_once_the_pcrs_reach_them() {
    let mut tpm = MemoryTpm::new();
    let mut future = MemoryTpm::new();
    update(&mut future);
    let values = current(&mut future);
    let sealed = tpm
        .seal(
            b"k",
            &SealPolicy::Pcr {
                selection: pcr7(),
                values: Some(values),
            },
        )
        .unwrap();
    assert!(matches!(
        tpm.unseal(&sealed, None),
        Err(TpmError::Policy(PolicyError::BootStateChanged { .. }))
    ));
    update(&mut tpm);
    assert_eq!(*tpm.unseal(&sealed, None).unwrap(), b"k");
}

#[test]
fn authorized_seal_follows_fleet_approvals_without_resealing() {
    let mut tpm = MemoryTpm::new();
    let (sk, key) = fleet(1);
    let (other_sk, other_key) = fleet(2);
    let sealed = tpm
        .seal(
            b"secret",
            &SealPolicy::Authorized {
                key: key.clone(),
                policy_ref: DEFAULT_POLICY_REF.to_vec(),
            },
        )
        .unwrap();
    let sealed = decode(&encode(&sealed)).unwrap();
    assert!(matches!(
        tpm.unseal(&sealed, None),
        Err(TpmError::Policy(PolicyError::AuthorizationMissing))
    ));
    let old = approve(&sk, &key, 1, &current(&mut tpm));
    assert_eq!(*tpm.unseal(&sealed, Some(&old)).unwrap(), b"secret");

    // The fleet approves the update's PCR 7 before it happens.
    let mut updated = MemoryTpm::new();
    update(&mut updated);
    let new = approve(&sk, &key, 2, &current(&mut updated));
    update(&mut tpm);
    assert!(matches!(
        tpm.unseal(&sealed, Some(&old)),
        Err(TpmError::Policy(PolicyError::BootStateChanged { .. }))
    ));
    assert_eq!(*tpm.unseal(&sealed, Some(&new)).unwrap(), b"secret");

    // Approved by another fleet key: refused by name, and by signature when forged.
    let foreign = approve(&other_sk, &other_key, 3, &current(&mut tpm));
    assert!(matches!(
        tpm.unseal(&sealed, Some(&foreign)),
        Err(TpmError::Policy(PolicyError::AuthorizationKey { .. }))
    ));
    let mut forged = new.clone();
    forged.approval_signature = ecdsa(&other_sk, &new.draft.approval_message());
    assert!(matches!(
        tpm.unseal(&sealed, Some(&forged)),
        Err(TpmError::MemoryApproval(_))
    ));
}

#[test]
fn blob_decoding_names_problems_and_never_panics() {
    let mut tpm = MemoryTpm::new();
    let (_, key) = fleet(1);
    for policy in [
        SealPolicy::Pcr {
            selection: "sha256:0,7+sha1:7".parse().unwrap(),
            values: None,
        },
        SealPolicy::Authorized {
            key,
            policy_ref: b"disk".to_vec(),
        },
    ] {
        let blob = encode(&tpm.seal(b"x", &policy).unwrap());
        assert_eq!(encode(&decode(&blob).unwrap()), blob);
        for len in 0..blob.len() {
            assert!(decode(&blob[..len]).is_err(), "prefix of {len} bytes");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(BlobError::Wire(_))));
    }
    let mut blob = encode(
        &tpm.seal(
            b"x",
            &SealPolicy::Pcr {
                selection: pcr7(),
                values: None,
            },
        )
        .unwrap(),
    );
    blob[0] ^= 1;
    assert_eq!(decode(&blob), Err(BlobError::Magic));
    blob[0] ^= 1;
    blob[9] = 2;
    assert_eq!(decode(&blob), Err(BlobError::Version(2)));
    blob[9] = 1;
    blob[10] = 9;
    assert!(matches!(
        decode(&blob),
        Err(BlobError::Kind { kind: 9, .. })
    ));
}

#[test]
fn the_store_keeps_the_newest_policy_and_refuses_older_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = PolicyStore::new(dir.path());
    let (sk, key) = fleet(1);
    let mut values = PcrBanks::new();
    values.insert(HashAlg::Sha256, 7, vec![1; 32]);
    let p5 = approve(&sk, &key, 5, &values);
    let name = key.name().unwrap();
    assert_eq!(store.newest(&name, DEFAULT_POLICY_REF).unwrap(), None);
    assert_eq!(store.offer(&p5).unwrap(), Offer::Stored);
    assert_eq!(store.offer(&p5).unwrap(), Offer::AlreadyHeld);
    assert!(matches!(
        store.offer(&approve(&sk, &key, 4, &values)),
        Err(SealError::OlderPolicy { given: 4, held: 5 })
    ));
    values.insert(HashAlg::Sha256, 7, vec![2; 32]);
    assert!(matches!(
        store.offer(&approve(&sk, &key, 5, &values)),
        Err(SealError::SerialReused { serial: 5 })
    ));
    let p6 = approve(&sk, &key, 6, &values);
    assert_eq!(store.offer(&p6).unwrap(), Offer::Stored);
    assert_eq!(store.newest(&name, DEFAULT_POLICY_REF).unwrap(), Some(p6));
    // Another policyRef is another slot.
    assert_eq!(store.newest(&name, b"other").unwrap(), None);
}
