//! Issuing device certificates for keys the fleet never sees: the device's private key lives in
//! its TPM, so the fleet certifies a public key it receives as a DER SubjectPublicKeyInfo or as a
//! DER PKCS#10 CSR (whose self-signature is checked; only its public key is used).
//!
//! The certificate's CN is the device id, which the broker also uses as the MQTT username and as
//! `%u` in the ACL patterns, so device ids are restricted to a safe alphabet (see
//! [`check_device_id`]) and may not take the fleet's or the claim's reserved names.

use super::ca::{CaError, FleetCa, IssuedCertificate, LeafUsage, Validity};
use super::{CLAIM_NAME, FLEET_NAME};
use rcgen::{CertificateSigningRequestParams, SubjectPublicKeyInfo};

/// Longest accepted device id.
pub const DEVICE_ID_MAX: usize = 64;
/// Largest SPKI or CSR accepted, in bytes.
pub const PUBLIC_KEY_INPUT_MAX: usize = 16 * 1024;

/// The public key to certify.
#[derive(Debug, Clone, Copy)]
pub enum DevicePublicKey<'a> {
    /// A DER SubjectPublicKeyInfo (for example the TPM key's public area converted to SPKI).
    Spki(&'a [u8]),
    /// A DER PKCS#10 certification request signed by the device key.
    Csr(&'a [u8]),
}

/// Why a device id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdProblem {
    /// Empty.
    #[error("it is empty")]
    Empty,
    /// Longer than [`DEVICE_ID_MAX`] bytes.
    #[error("it is longer than {DEVICE_ID_MAX} bytes")]
    TooLong,
    /// Holds a character outside `A-Z a-z 0-9 - _ .` (MQTT wildcards and `/` would break the ACL).
    #[error("character {0:?} is not one of A-Z a-z 0-9 - _ .")]
    BadChar(char),
    /// Equals the fleet's or the claim certificate's name.
    #[error("it is reserved for the fleet's own certificates")]
    Reserved,
}

/// Issuing a device certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device id is not acceptable.
    #[error("device id {id:?} refused")]
    DeviceId {
        id: String,
        #[source]
        problem: DeviceIdProblem,
    },
    /// The SPKI or CSR is larger than [`PUBLIC_KEY_INPUT_MAX`].
    #[error("public key input of {len} bytes is larger than {PUBLIC_KEY_INPUT_MAX} bytes")]
    InputTooLarge { len: usize },
    /// The SPKI does not parse or is of an unsupported algorithm.
    #[error("the public key is not a DER SubjectPublicKeyInfo of a supported algorithm")]
    Spki(#[source] rcgen::Error),
    /// The CSR does not parse, has unsupported content, or its signature does not verify.
    #[error("the CSR is not valid DER, has unsupported extensions or a bad signature")]
    Csr(#[source] rcgen::Error),
    /// Signing or recording the certificate failed.
    #[error("cannot issue the device certificate")]
    Issue(#[source] CaError),
}

/// Checks a device id: 1 to [`DEVICE_ID_MAX`] characters from `A-Z a-z 0-9 - _ .`, not one of
/// the reserved names `vouch-fleet` and `vouch-claim`.
pub fn check_device_id(id: &str) -> Result<(), DeviceIdProblem> {
    if id.is_empty() {
        return Err(DeviceIdProblem::Empty);
    }
    if id.len() > DEVICE_ID_MAX {
        return Err(DeviceIdProblem::TooLong);
    }
    if let Some(c) = id
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(DeviceIdProblem::BadChar(c));
    }
    if id == FLEET_NAME || id == CLAIM_NAME {
        return Err(DeviceIdProblem::Reserved);
    }
    Ok(())
}

/// Issues a client certificate (CN = `device_id`, EKU clientAuth, random 128-bit serial recorded
/// in the `issued` index) for a device public key.
pub fn issue_device_certificate(
    ca: &FleetCa,
    device_id: &str,
    public_key: DevicePublicKey<'_>,
    validity: Validity,
) -> Result<IssuedCertificate, DeviceError> {
    check_device_id(device_id).map_err(|problem| DeviceError::DeviceId {
        id: device_id.to_string(),
        problem,
    })?;
    let input = match public_key {
        DevicePublicKey::Spki(b) | DevicePublicKey::Csr(b) => b,
    };
    if input.len() > PUBLIC_KEY_INPUT_MAX {
        return Err(DeviceError::InputTooLarge { len: input.len() });
    }
    let issued = match public_key {
        DevicePublicKey::Spki(der) => {
            let spki = SubjectPublicKeyInfo::from_der(der).map_err(DeviceError::Spki)?;
            ca.issue_leaf(device_id, &[], LeafUsage::Client, &spki, validity)
        }
        DevicePublicKey::Csr(der) => {
            let csr =
                CertificateSigningRequestParams::from_der(&der.into()).map_err(DeviceError::Csr)?;
            ca.issue_leaf(device_id, &[], LeafUsage::Client, &csr.public_key, validity)
        }
    };
    issued.map_err(DeviceError::Issue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids() {
        assert_eq!(check_device_id("node-01.rack_2"), Ok(()));
        assert_eq!(check_device_id(""), Err(DeviceIdProblem::Empty));
        assert_eq!(
            check_device_id(&"a".repeat(65)),
            Err(DeviceIdProblem::TooLong)
        );
        assert_eq!(check_device_id("a/b"), Err(DeviceIdProblem::BadChar('/')));
        assert_eq!(check_device_id("a+"), Err(DeviceIdProblem::BadChar('+')));
        assert_eq!(check_device_id("#"), Err(DeviceIdProblem::BadChar('#')));
        assert_eq!(
            check_device_id("vouch-claim"),
            Err(DeviceIdProblem::Reserved)
        );
        assert_eq!(
            check_device_id("vouch-fleet"),
            Err(DeviceIdProblem::Reserved)
        );
    }
}
