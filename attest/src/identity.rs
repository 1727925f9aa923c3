//! The device id: the lowercase hex SHA-256 of the DER SubjectPublicKeyInfo of the device's
//! endorsement key. The agent computes it from the EK its TPM reports, the fleet from the EK
//! certificate it verified at enrollment; both call [`DeviceId::of_ek_spki`], so the two cannot
//! drift. Anyone can recompute it with standard tools (`openssl pkey -pubin -outform DER |
//! sha256sum`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Length of a device id in characters (64 hex digits).
pub const DEVICE_ID_LEN: usize = 64;

/// A device id: 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

/// Text that is not a device id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    /// Not 64 characters long.
    #[error("a device id is {DEVICE_ID_LEN} hex digits, this one has {0} characters")]
    Length(usize),
    /// A character that is not a lowercase hex digit.
    #[error("a device id is lowercase hex; found {0:?}")]
    NotHex(char),
}

impl DeviceId {
    /// The id of the device whose EK has this SubjectPublicKeyInfo (DER).
    pub fn of_ek_spki(spki_der: &[u8]) -> DeviceId {
        DeviceId(hex::encode(Sha256::digest(spki_der)))
    }

    /// Parses a device id (exactly 64 lowercase hex digits).
    pub fn parse(text: &str) -> Result<DeviceId, DeviceIdError> {
        if text.len() != DEVICE_ID_LEN {
            return Err(DeviceIdError::Length(text.chars().count()));
        }
        if let Some(c) = text.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(DeviceIdError::NotHex(c));
        }
        Ok(DeviceId(text.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DeviceId {
    type Err = DeviceIdError;
    fn from_str(s: &str) -> Result<DeviceId, DeviceIdError> {
        DeviceId::parse(s)
    }
}

impl TryFrom<String> for DeviceId {
    type Error = DeviceIdError;
    fn try_from(s: String) -> Result<DeviceId, DeviceIdError> {
        DeviceId::parse(&s)
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> String {
        id.0
    }
}

impl AsRef<str> for DeviceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_the_hex_sha256_of_the_spki() {
        // Expected value from `printf 'vouch test spki' | sha256sum`, not from this code.
        let id = DeviceId::of_ek_spki(b"vouch test spki");
        assert_eq!(
            id.as_str(),
            "25657016354c676047ce4f0ebba7fcbf510e8c0434fc1aecae31f7e0304b8501"
        );
        assert_eq!(DeviceId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(id.to_string().parse::<DeviceId>(), Ok(id));
    }

    #[test]
    fn parse_refuses_what_no_ek_gives() {
        assert_eq!(DeviceId::parse("abc"), Err(DeviceIdError::Length(3)));
        let upper = "25657016354C676047ce4f0ebba7fcbf510e8c0434fc1aecae31f7e0304b8501";
        assert_eq!(DeviceId::parse(upper), Err(DeviceIdError::NotHex('C')));
        let multibyte = format!("{}é", "0".repeat(62));
        assert_eq!(multibyte.len(), 64);
        assert_eq!(DeviceId::parse(&multibyte), Err(DeviceIdError::NotHex('é')));
        assert!(serde_json::from_str::<DeviceId>("\"nope\"").is_err());
    }
}
