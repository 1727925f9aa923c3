//! Certificate serial numbers: 16 random bytes from the system RNG, written as lowercase hex.
//!
//! The top bit is cleared (DER integers are signed, so the serial stays positive without a
//! padding byte) and the next bit is set (so the encoding is always exactly 16 bytes and the hex
//! form is canonical): 126 random bits per serial.

use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;
use std::str::FromStr;

/// Length of a serial in bytes.
pub const SERIAL_LEN: usize = 16;

/// A serial number problem.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// The text is not 32 hex digits (colons allowed between bytes).
    #[error("serial {text:?} is not {SERIAL_LEN} bytes of hex")]
    BadHex { text: String },
    /// The serial does not have the shape this CA gives every serial.
    #[error("serial {text:?} was not made by this CA (top bits must be 01)")]
    NotOurs { text: String },
}

/// A certificate serial number issued by the fleet CA.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial([u8; SERIAL_LEN]);

impl Serial {
    /// Draws a fresh random serial.
    pub fn random() -> Result<Self, SerialError> {
        let mut b = [0u8; SERIAL_LEN];
        SystemRandom::new()
            .fill(&mut b)
            .map_err(|_| SerialError::Random)?;
        b[0] = (b[0] & 0x3f) | 0x40;
        Ok(Serial(b))
    }

    /// Builds a serial from its big-endian bytes, as found in a certificate.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SerialError> {
        let text = hex::encode(bytes);
        let arr: [u8; SERIAL_LEN] = bytes
            .try_into()
            .map_err(|_| SerialError::BadHex { text: text.clone() })?;
        if arr[0] & 0xc0 != 0x40 {
            return Err(SerialError::NotOurs { text });
        }
        Ok(Serial(arr))
    }

    /// The big-endian bytes.
    pub fn as_bytes(&self) -> &[u8; SERIAL_LEN] {
        &self.0
    }

    /// The serial in rcgen's type.
    pub(crate) fn to_rcgen(self) -> rcgen::SerialNumber {
        rcgen::SerialNumber::from_slice(&self.0)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

impl FromStr for Serial {
    type Err = SerialError;

    /// Parses 32 hex digits, either case, optionally with colons between bytes (OpenSSL style).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let compact: String = s.trim().chars().filter(|&c| c != ':').collect();
        let bytes = hex::decode(&compact).map_err(|_| SerialError::BadHex {
            text: s.to_string(),
        })?;
        if bytes.len() != SERIAL_LEN {
            return Err(SerialError::BadHex {
                text: s.to_string(),
            });
        }
        Serial::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_serials_differ_and_have_fixed_top_bits() {
        let a = Serial::random().unwrap();
        let b = Serial::random().unwrap();
        assert_ne!(a, b);
        for s in [a, b] {
            assert_eq!(s.as_bytes()[0] & 0xc0, 0x40);
            assert_eq!(s.to_string().len(), 32);
        }
    }

    #[test]
    fn parses_plain_and_openssl_forms() {
        let s = Serial::random().unwrap();
        let plain = s.to_string();
        assert_eq!(plain.parse::<Serial>().unwrap(), s);
        let colons: Vec<String> = s.as_bytes().iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(colons.join(":").parse::<Serial>().unwrap(), s);
        assert!(matches!(
            "abcd".parse::<Serial>(),
            Err(SerialError::BadHex { .. })
        ));
        assert!(matches!(
            "ff".repeat(16).parse::<Serial>(),
            Err(SerialError::NotOurs { .. })
        ));
    }
}
