//! TPM2_PolicyAuthorize: the policy a sealed object carries when a fleet key may approve its
//! PCR policies later, the `aHash` that key signs, the public area under which devices load it
//! (TPM2_LoadExternal), and software verification of an approval.

use super::{hash, initial, PolicyDigestError, MAX_POLICY_REF, TPM_CC_POLICY_AUTHORIZE};
use crate::alg::HashAlg;
use crate::tpm::keys::PublicKey;
use crate::tpm::params::EccCurve;
use crate::tpm::{ObjectAttributes, Signature, TpmPublic};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

/// Attributes of the fleet key's public area as devices load it: a plain signing key with
/// `userWithAuth` (TPM2_VerifySignature needs no authorization). Its Name, and so every sealed
/// object's policy, depends on these bits: they never change.
pub const FLEET_KEY_ATTRIBUTES: ObjectAttributes =
    ObjectAttributes(ObjectAttributes::USER_WITH_AUTH | ObjectAttributes::SIGN);

fn check_ref(policy_ref: &[u8]) -> Result<(), PolicyDigestError> {
    if policy_ref.len() > MAX_POLICY_REF {
        return Err(PolicyDigestError::PolicyRefLength(policy_ref.len()));
    }
    Ok(())
}

/// The policy digest of a fresh session after TPM2_PolicyAuthorize(keySign = `key_name`,
/// `policy_ref`): `H(H(zeros || TPM_CC_PolicyAuthorize || keyName) || policyRef)`.
pub fn policy_authorize(
    alg: HashAlg,
    key_name: &[u8],
    policy_ref: &[u8],
) -> Result<Vec<u8>, PolicyDigestError> {
    check_ref(policy_ref)?;
    let zeros = initial(alg)?;
    let first = hash(
        alg,
        &[&zeros, &TPM_CC_POLICY_AUTHORIZE.to_be_bytes(), key_name],
    )?;
    hash(alg, &[&first, policy_ref])
}

/// `approvedPolicy || policyRef`: the message whose SHA-256 is the `aHash` the fleet key signs
/// (ECDSA-SHA256 over this message is ECDSA over `aHash`).
pub fn approval_message(approved: &[u8], policy_ref: &[u8]) -> Vec<u8> {
    let mut m = approved.to_vec();
    m.extend_from_slice(policy_ref);
    m
}

/// `aHash = H(approvedPolicy || policyRef)`, the digest given to TPM2_VerifySignature (hashed
/// with the signing key's nameAlg, SHA-256 for Vouch's fleet key).
pub fn approval_digest(
    alg: HashAlg,
    approved: &[u8],
    policy_ref: &[u8],
) -> Result<Vec<u8>, PolicyDigestError> {
    check_ref(policy_ref)?;
    hash(alg, &[approved, policy_ref])
}

/// The TPMT_PUBLIC under which a device loads the fleet's ECC P-256 policy key: SHA-256 Name,
/// [`FLEET_KEY_ATTRIBUTES`], ECDSA-SHA256 scheme, no policy.
pub fn fleet_key_public(key: &PublicKey) -> Result<TpmPublic, PolicyDigestError> {
    match key {
        PublicKey::Ec {
            curve: EccCurve::NistP256,
            x,
            y,
        } => Ok(TpmPublic::ecc_p256_signing(FLEET_KEY_ATTRIBUTES, x, y)),
        _ => Err(PolicyDigestError::KeyType),
    }
}

/// Checks in software what TPM2_VerifySignature checks: `signature` is the fleet key's
/// ECDSA-SHA256 signature over `aHash = SHA-256(approved || policy_ref)`.
pub fn verify_approval(
    key: &TpmPublic,
    approved: &[u8],
    policy_ref: &[u8],
    signature: &Signature,
) -> Result<(), PolicyDigestError> {
    check_ref(policy_ref)?;
    verify_ecdsa(key, &approval_message(approved, policy_ref), signature)
}

/// Verifies an ECDSA-SHA256 signature over `message` with an ECC P-256 public area.
pub(crate) fn verify_ecdsa(
    key: &TpmPublic,
    message: &[u8],
    signature: &Signature,
) -> Result<(), PolicyDigestError> {
    let public = key
        .key()
        .map_err(|e| PolicyDigestError::Key(e.to_string()))?;
    if !matches!(
        public,
        PublicKey::Ec {
            curve: EccCurve::NistP256,
            ..
        }
    ) {
        return Err(PolicyDigestError::KeyType);
    }
    let point = public
        .ring_public_key()
        .map_err(|e| PolicyDigestError::Key(e.to_string()))?;
    let (r, s) = match signature {
        Signature::Ecdsa {
            hash: HashAlg::Sha256,
            r,
            s,
        } => (r, s),
        other => return Err(PolicyDigestError::SignatureScheme(other.scheme_name())),
    };
    let fixed = |v: &[u8]| crate::tpm::keys::pad_to(v, 32);
    let (Some(r), Some(s)) = (fixed(r), fixed(s)) else {
        return Err(PolicyDigestError::SignatureInvalid);
    };
    let rs = [r, s].concat();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(message, &rs)
        .map_err(|_| PolicyDigestError::SignatureInvalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature as P256Signature, SigningKey};

    fn key(seed: u8) -> (SigningKey, TpmPublic) {
        let sk = SigningKey::from_slice(&[seed; 32]).unwrap();
        let public = PublicKey::from_sec1(
            EccCurve::NistP256,
            sk.verifying_key().to_encoded_point(false).as_bytes(),
        )
        .unwrap();
        (sk, fleet_key_public(&public).unwrap())
    }

    fn sign(sk: &SigningKey, message: &[u8]) -> Signature {
        let sig: P256Signature = sk.sign(message);
        let (r, s) = sig.split_bytes();
        Signature::Ecdsa {
            hash: HashAlg::Sha256,
            r: r.to_vec(),
            s: s.to_vec(),
        }
    }

    #[test]
    fn policy_authorize_is_two_chained_hashes() {
        let name = [0u8, 0x0b, 9, 9, 9];
        let got = policy_authorize(HashAlg::Sha256, &name, b"ref").unwrap();
        let mut first = vec![0u8; 32];
        first.extend_from_slice(&[0, 0, 1, 0x6a]);
        first.extend_from_slice(&name);
        let first = HashAlg::Sha256.hash(&first).unwrap();
        let want = HashAlg::Sha256.hash_parts(&[&first, b"ref"]).unwrap();
        assert_eq!(got, want);
        assert_ne!(got, policy_authorize(HashAlg::Sha256, &name, b"").unwrap());
        assert_eq!(
            policy_authorize(HashAlg::Sha256, &name, &[0; 65]),
            Err(PolicyDigestError::PolicyRefLength(65))
        );
    }

    #[test]
    fn approvals_verify_only_with_the_signing_key_and_exact_inputs() {
        let (sk, public) = key(3);
        let (_, other) = key(4);
        let approved = [7u8; 32];
        let sig = sign(&sk, &approval_message(&approved, b"vol"));
        verify_approval(&public, &approved, b"vol", &sig).unwrap();
        let bad = [
            verify_approval(&other, &approved, b"vol", &sig),
            verify_approval(&public, &[8u8; 32], b"vol", &sig),
            verify_approval(&public, &approved, b"vom", &sig),
        ];
        for r in bad {
            assert_eq!(r, Err(PolicyDigestError::SignatureInvalid));
        }
        assert_eq!(
            approval_digest(HashAlg::Sha256, &approved, b"vol").unwrap(),
            HashAlg::Sha256
                .hash(&approval_message(&approved, b"vol"))
                .unwrap()
        );
        let rsa = Signature::Rsassa {
            hash: HashAlg::Sha256,
            sig: vec![1; 256],
        };
        assert!(matches!(
            verify_approval(&public, &approved, b"vol", &rsa),
            Err(PolicyDigestError::SignatureScheme(_))
        ));
    }

    #[test]
    fn only_p256_keys_become_fleet_keys() {
        let rsa = PublicKey::rsa(&[0xc5; 256], 65537).unwrap();
        assert_eq!(fleet_key_public(&rsa), Err(PolicyDigestError::KeyType));
        let (_, public) = key(5);
        assert_eq!(public.attributes, FLEET_KEY_ATTRIBUTES);
        assert_eq!(public.name_alg, HashAlg::Sha256);
    }
}
