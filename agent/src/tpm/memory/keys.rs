//! The in-memory TPM's credential activation, TLS key, TPM2_Certify and TLS signing, shaped like
//! the tss-esapi backend's: the same TPM structures (TPM2B_PUBLIC, TPMS_ATTEST of type CERTIFY,
//! ECDSA-SHA256 TPMT_SIGNATURE by the AK, DER ECDSA for TLS), so `vouch-attest` checks both alike.
//!
//! It models no key hierarchy: qualifiedSigner and qualifiedName hold the objects' Names.

use super::MemoryTpm;
use crate::tpm::{Certification, TpmError};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature as EcdsaSignature, SigningKey};
use vouch_attest::tpm::attest::{CertifyInfo, TPM_GENERATED_VALUE};
use vouch_attest::tpm::{Attest, AttestBody, ClockInfo, ObjectAttributes, Signature, TpmPublic};
use vouch_attest::HashAlg;
use zeroize::Zeroizing;

/// The policy digest of TCG EK template L-2: PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256.
pub const EK_POLICY: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];

/// Attributes of the TLS key, as the tss-esapi backend's template sets them.
pub const TLS_ATTRIBUTES: ObjectAttributes = ObjectAttributes(
    ObjectAttributes::FIXED_TPM
        | ObjectAttributes::FIXED_PARENT
        | ObjectAttributes::SENSITIVE_DATA_ORIGIN
        | ObjectAttributes::USER_WITH_AUTH
        | ObjectAttributes::NO_DA
        | ObjectAttributes::SIGN,
);

/// Signs TPMS_ATTEST bytes with ECDSA-SHA256 and returns the TPMT_SIGNATURE.
pub fn sign_attest(key: &SigningKey, attest: &[u8]) -> Vec<u8> {
    let sig: EcdsaSignature = key.sign(attest);
    let (r, s) = sig.split_bytes();
    Signature::Ecdsa {
        hash: HashAlg::Sha256,
        r: r.to_vec(),
        s: s.to_vec(),
    }
    .marshal()
}

/// The TLS key's public area.
pub fn tls_public(tpm: &MemoryTpm) -> TpmPublic {
    MemoryTpm::public(&tpm.tls, TLS_ATTRIBUTES, false)
}

/// Activates a credential with the software EK and AK.
pub fn activate(
    tpm: &MemoryTpm,
    credential_blob: &[u8],
    encrypted_secret: &[u8],
) -> Result<Zeroizing<Vec<u8>>, TpmError> {
    let ak_name = tpm
        .ak_public()
        .name()
        .map_err(|_| TpmError::Memory("AK name"))?;
    let ek_key = p256::SecretKey::from(tpm.ek.as_nonzero_scalar());
    vouch_attest::credential::activate_with_ecc_key(
        &tpm.ek_public(),
        &ek_key,
        &ak_name,
        credential_blob,
        encrypted_secret,
    )
    .map_err(TpmError::MemoryCredential)
}

/// TPM2_Certify of the TLS key by the AK.
pub fn certify(tpm: &mut MemoryTpm, qualifying_data: &[u8]) -> Result<Certification, TpmError> {
    if qualifying_data.len() > 64 {
        return Err(TpmError::Memory("qualifying data longer than 64 bytes"));
    }
    let name = tls_public(tpm)
        .name()
        .map_err(|_| TpmError::Memory("TLS key name"))?;
    let signer = tpm
        .ak_public()
        .name()
        .map_err(|_| TpmError::Memory("AK name"))?;
    tpm.clock += 1;
    let attest = Attest {
        magic: TPM_GENERATED_VALUE,
        qualified_signer: signer,
        extra_data: qualifying_data.to_vec(),
        clock_info: ClockInfo {
            clock: tpm.clock,
            reset_count: 0,
            restart_count: 0,
            safe: true,
        },
        firmware_version: super::FIRMWARE,
        body: AttestBody::Certify(CertifyInfo {
            qualified_name: name.clone(),
            name,
        }),
    }
    .marshal();
    Ok(Certification {
        signature: sign_attest(&tpm.ak, &attest),
        attest,
    })
}

/// Signs a SHA-256 digest with the TLS key.
pub fn sign(tpm: &MemoryTpm, digest: &[u8]) -> Result<Vec<u8>, TpmError> {
    if digest.len() != 32 {
        return Err(TpmError::SignDigest { len: digest.len() });
    }
    let sig: EcdsaSignature = tpm
        .tls
        .sign_prehash(digest)
        .map_err(|_| TpmError::Memory("ECDSA signing failed"))?;
    Ok(sig.to_der().as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use crate::tpm::memory::MemoryTpm;
    use crate::tpm::{EkAlg, Tpm, TpmError};
    use rand_core::OsRng;
    use vouch_attest::credential::{
        make_credential, verify_certification, BlobError, CertificationError, CredentialError,
    };
    use vouch_attest::tpm::TpmPublic;

    fn public(tpm2b: &[u8]) -> TpmPublic {
        TpmPublic::parse(tpm2b).unwrap().0
    }

    #[test]
    fn activation_recovers_the_secret_only_for_the_ak() {
        let mut tpm = MemoryTpm::new();
        let ek = public(&tpm.endorsement_key(EkAlg::EccP256).unwrap().public);
        let ak = public(&tpm.attestation_key().unwrap().public)
            .name()
            .unwrap();
        let tls = public(&tpm.tls_key().unwrap().public).name().unwrap();
        for len in [1usize, 16, 32] {
            let secret = vec![0x5a; len];
            let (blob, enc) = make_credential(&ek, &ak, &secret, &mut OsRng).unwrap();
            assert_eq!(
                *tpm.activate_credential(EkAlg::EccP256, &blob, &enc)
                    .unwrap(),
                secret
            );
        }
        let (blob, enc) = make_credential(&ek, &tls, b"secret", &mut OsRng).unwrap();
        assert!(matches!(
            tpm.activate_credential(EkAlg::EccP256, &blob, &enc),
            Err(TpmError::MemoryCredential(CredentialError::Blob(
                BlobError::Integrity
            )))
        ));
        // A credential for another TPM's EK cannot be opened here.
        let other = public(
            &MemoryTpm::new()
                .endorsement_key(EkAlg::EccP256)
                .unwrap()
                .public,
        );
        let (blob, enc) = make_credential(&other, &ak, b"secret", &mut OsRng).unwrap();
        assert!(tpm
            .activate_credential(EkAlg::EccP256, &blob, &enc)
            .is_err());
    }

    #[test]
    fn certification_passes_the_fleet_check_and_signatures_verify() {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let mut tpm = MemoryTpm::new();
        let ak = public(&tpm.attestation_key().unwrap().public);
        let tls = public(&tpm.tls_key().unwrap().public);
        let c = tpm.certify_tls_key(b"nonce").unwrap();
        verify_certification(&ak, &tls, &c.attest, &c.signature, b"nonce").unwrap();
        assert!(matches!(
            verify_certification(&ak, &tls, &c.attest, &c.signature, b"other"),
            Err(CertificationError::QualifyingData { .. })
        ));
        assert!(tpm.certify_tls_key(&[0; 65]).is_err());

        let digest = [7u8; 32];
        let der = tpm.sign_tls(&digest).unwrap();
        let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
        let spki = tls.key().unwrap().ring_public_key().unwrap();
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&spki).unwrap();
        key.verify_prehash(&digest, &sig).unwrap();
        assert!(key.verify_prehash(&[8u8; 32], &sig).is_err());
        assert!(matches!(
            tpm.sign_tls(&[0; 48]),
            Err(TpmError::SignDigest { len: 48 })
        ));
    }
}
