//! The device's identity: which endorsement key speaks for this TPM, and the device id.
//!
//! The device EK is the one a manufacturer certificate vouches for: the ECC P-256 EK when an EK
//! certificate is stored at NV 0x01c0000a, else the RSA-2048 EK when one is at 0x01c00002 (what
//! swtpm_setup and many discrete TPMs provide), else the ECC P-256 EK without a certificate.
//! The device id is the hex SHA-256 of that EK's SubjectPublicKeyInfo DER
//! ([`vouch_attest::identity::DeviceId`], the function the fleet uses too), so anyone can
//! recompute it with standard tools, and the fleet derives the same id from the certificate it
//! verified.

use crate::tpm::{EkAlg, EkCertificate, EndorsementKey, Tpm, TpmError};
use vouch_attest::identity::DeviceId;
use vouch_attest::tpm::TpmPublic;

/// NV index of the RSA-2048 EK certificate (TCG EK Credential Profile).
pub const NV_EK_CERT_RSA2048: u32 = 0x01c0_0002;
/// NV index of the ECC P-256 EK certificate.
pub const NV_EK_CERT_ECC_P256: u32 = 0x01c0_000a;

/// Errors establishing the identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The TPM failed.
    #[error(transparent)]
    Tpm(#[from] TpmError),
    /// The EK public area from the TPM could not be decoded.
    #[error("decoding the EK public key: {0}")]
    EkPublic(String),
}

/// The device EK, its SPKI, the device id and the EK certificates (the device EK's first).
#[derive(Clone, Debug)]
pub struct DeviceIdentity {
    /// The endorsement key that identifies the device.
    pub ek: EndorsementKey,
    /// Its SubjectPublicKeyInfo, DER.
    pub ek_spki: Vec<u8>,
    /// Hex SHA-256 of `ek_spki`.
    pub device_id: String,
    /// EK certificates from NV, the one for `ek` first when present.
    pub certificates: Vec<EkCertificate>,
}

impl DeviceIdentity {
    /// True when a certificate for the device EK was found.
    pub fn ek_certified(&self) -> bool {
        self.certificates
            .first()
            .is_some_and(|c| c.nv_index == cert_index(self.ek.alg))
    }
}

fn cert_index(alg: EkAlg) -> u32 {
    match alg {
        EkAlg::EccP256 => NV_EK_CERT_ECC_P256,
        EkAlg::Rsa2048 => NV_EK_CERT_RSA2048,
    }
}

/// SPKI DER of an EK from its TPM2B_PUBLIC.
pub fn ek_spki_der(ek: &EndorsementKey) -> Result<Vec<u8>, IdentityError> {
    let bad = |e: &dyn std::fmt::Display| IdentityError::EkPublic(e.to_string());
    let (public, _) = TpmPublic::parse(&ek.public).map_err(|e| bad(&e))?;
    public
        .key()
        .map_err(|e| bad(&e))?
        .to_spki_der()
        .map_err(|e| bad(&e))
}

/// Reads the identity from the TPM.
pub fn device_identity(tpm: &mut dyn Tpm) -> Result<DeviceIdentity, IdentityError> {
    let mut certificates = tpm.ek_certificates()?;
    let has = |i: u32| certificates.iter().any(|c| c.nv_index == i);
    let alg = if has(NV_EK_CERT_ECC_P256) {
        EkAlg::EccP256
    } else if has(NV_EK_CERT_RSA2048) {
        EkAlg::Rsa2048
    } else {
        EkAlg::EccP256
    };
    let own = cert_index(alg);
    certificates.sort_by_key(|c| (c.nv_index != own, c.nv_index));
    let ek = tpm.endorsement_key(alg)?;
    let ek_spki = ek_spki_der(&ek)?;
    let device_id = DeviceId::of_ek_spki(&ek_spki).to_string();
    Ok(DeviceIdentity {
        ek,
        ek_spki,
        device_id,
        certificates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::memory::MemoryTpm;
    use sha2::{Digest, Sha256};

    #[test]
    fn uncertified_tpm_uses_the_ecc_ek() {
        let mut tpm = MemoryTpm::new();
        let id = device_identity(&mut tpm).unwrap();
        assert_eq!(id.ek.alg, EkAlg::EccP256);
        assert!(!id.ek_certified());
        assert_eq!(id.device_id.len(), 64);
        assert_eq!(hex::encode(Sha256::digest(&id.ek_spki)), id.device_id);
    }

    #[test]
    fn a_certificate_for_the_ecc_ek_is_listed_first() {
        let mut tpm = MemoryTpm::new()
            .with_ek_certificate(EkCertificate {
                nv_index: 0x01c0_0016,
                der: vec![1],
            })
            .with_ek_certificate(EkCertificate {
                nv_index: NV_EK_CERT_ECC_P256,
                der: vec![2],
            });
        let id = device_identity(&mut tpm).unwrap();
        assert!(id.ek_certified());
        assert_eq!(id.certificates[0].der, vec![2]);
    }
}
