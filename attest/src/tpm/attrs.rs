//! TPMA_OBJECT: object attribute flags of a TPM key (fixedTPM, restricted, sign, ...).

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

/// TPMA_OBJECT bits with their TCG names, lowest bit first.
const FLAGS: [(u32, &str); 12] = [
    (1 << 1, "fixedTPM"),
    (1 << 2, "stClear"),
    (1 << 4, "fixedParent"),
    (1 << 5, "sensitiveDataOrigin"),
    (1 << 6, "userWithAuth"),
    (1 << 7, "adminWithPolicy"),
    (1 << 10, "noDA"),
    (1 << 11, "encryptedDuplication"),
    (1 << 16, "restricted"),
    (1 << 17, "decrypt"),
    (1 << 18, "sign"),
    (1 << 19, "x509sign"),
];

/// A TPMA_OBJECT value. Bits are kept as found, including reserved ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ObjectAttributes(pub u32);

impl ObjectAttributes {
    /// fixedTPM: the key cannot be duplicated to another TPM.
    pub const FIXED_TPM: u32 = 1 << 1;
    /// stClear: the object cannot be loaded again after a TPM Restart.
    pub const ST_CLEAR: u32 = 1 << 2;
    /// fixedParent: the key cannot be duplicated to another parent.
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// sensitiveDataOrigin: the TPM generated the private part.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// userWithAuth: user role usable with authValue or HMAC.
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    /// adminWithPolicy: admin role needs a policy session.
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    /// noDA: not subject to dictionary-attack protection.
    pub const NO_DA: u32 = 1 << 10;
    /// encryptedDuplication: duplication needs an inner wrapper.
    pub const ENCRYPTED_DUPLICATION: u32 = 1 << 11;
    /// restricted: signs only TPM-generated structures (or decrypts only TPM formats).
    pub const RESTRICTED: u32 = 1 << 16;
    /// decrypt: a decryption key.
    pub const DECRYPT: u32 = 1 << 17;
    /// sign (also "encrypt" for symmetric keys): a signing key.
    pub const SIGN: u32 = 1 << 18;
    /// x509sign: may sign X.509 TBS structures only.
    pub const X509_SIGN: u32 = 1 << 19;

    /// The usual attestation key template: fixedTPM, fixedParent, sensitiveDataOrigin,
    /// userWithAuth, noDA, restricted, sign.
    pub const AK_TEMPLATE: ObjectAttributes = ObjectAttributes(
        Self::FIXED_TPM
            | Self::FIXED_PARENT
            | Self::SENSITIVE_DATA_ORIGIN
            | Self::USER_WITH_AUTH
            | Self::NO_DA
            | Self::RESTRICTED
            | Self::SIGN,
    );

    fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    /// fixedTPM is set.
    pub fn fixed_tpm(self) -> bool {
        self.has(Self::FIXED_TPM)
    }
    /// stClear is set.
    pub fn st_clear(self) -> bool {
        self.has(Self::ST_CLEAR)
    }
    /// fixedParent is set.
    pub fn fixed_parent(self) -> bool {
        self.has(Self::FIXED_PARENT)
    }
    /// sensitiveDataOrigin is set.
    pub fn sensitive_data_origin(self) -> bool {
        self.has(Self::SENSITIVE_DATA_ORIGIN)
    }
    /// userWithAuth is set.
    pub fn user_with_auth(self) -> bool {
        self.has(Self::USER_WITH_AUTH)
    }
    /// adminWithPolicy is set.
    pub fn admin_with_policy(self) -> bool {
        self.has(Self::ADMIN_WITH_POLICY)
    }
    /// noDA is set.
    pub fn no_da(self) -> bool {
        self.has(Self::NO_DA)
    }
    /// encryptedDuplication is set.
    pub fn encrypted_duplication(self) -> bool {
        self.has(Self::ENCRYPTED_DUPLICATION)
    }
    /// restricted is set.
    pub fn restricted(self) -> bool {
        self.has(Self::RESTRICTED)
    }
    /// decrypt is set.
    pub fn decrypt(self) -> bool {
        self.has(Self::DECRYPT)
    }
    /// sign is set.
    pub fn sign(self) -> bool {
        self.has(Self::SIGN)
    }
    /// x509sign is set.
    pub fn x509_sign(self) -> bool {
        self.has(Self::X509_SIGN)
    }

    /// TCG names of the set flags, lowest bit first (reserved bits are not named).
    pub fn names(self) -> Vec<&'static str> {
        FLAGS
            .iter()
            .filter(|(bit, _)| self.has(*bit))
            .map(|(_, n)| *n)
            .collect()
    }
}

impl Serialize for ObjectAttributes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ObjectAttributes", 2)?;
        st.serialize_field("raw", &format!("0x{:08x}", self.0))?;
        st.serialize_field("flags", &self.names())?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_real_ak_attributes() {
        // Attributes of the AK in go-attestation's GCP Shielded VM sample.
        let a = ObjectAttributes(0x0005_0472);
        assert_eq!(
            a.names(),
            vec![
                "fixedTPM",
                "fixedParent",
                "sensitiveDataOrigin",
                "userWithAuth",
                "noDA",
                "restricted",
                "sign"
            ]
        );
        assert_eq!(a, ObjectAttributes::AK_TEMPLATE);
        assert!(!a.decrypt() && a.restricted() && a.sign() && a.fixed_tpm());
    }
}
