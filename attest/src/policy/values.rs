//! Scalar values of the policy format: hex byte strings (digests, dbx entries) and the TPM
//! firmware version, each with the TOML spelling documented in `tpm-policies/README.md`.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Bytes written as a hex string (`"9f86d081..."`, case-insensitive, optional `0x` prefix).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HexBytes(pub Vec<u8>);

impl HexBytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HexBytes, D::Error> {
        let text = String::deserialize(d)?;
        parse_hex(&text).map(HexBytes).map_err(de::Error::custom)
    }
}

/// Decodes a hex string; the message names what was wrong.
fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    if t.is_empty() {
        return Err("empty hex string".to_owned());
    }
    hex::decode(t).map_err(|e| format!("not a hex string ({e}): {text:?}"))
}

/// The TPMS_ATTEST firmwareVersion (a vendor-defined u64; TPM vendors encode a version so that
/// a numeric comparison orders releases).
///
/// Written as a TOML integer (when it fits in i64) or a string: `"0x0002000100000000"`, or
/// decimal digits; `_` separators are allowed in strings. Serialized as a 16-digit hex string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FirmwareVersion(pub u64);

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:016x}", self.0)
    }
}

impl Serialize for FirmwareVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

struct FirmwareVisitor;

impl Visitor<'_> for FirmwareVisitor {
    type Value = FirmwareVersion;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative integer or a \"0x...\" / decimal string fitting in 64 bits")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<FirmwareVersion, E> {
        Ok(FirmwareVersion(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<FirmwareVersion, E> {
        u64::try_from(v)
            .map(FirmwareVersion)
            .map_err(|_| E::custom(format!("firmware version {v} is negative")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<FirmwareVersion, E> {
        let t: String = v.trim().chars().filter(|&c| c != '_').collect();
        let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(h) => u64::from_str_radix(h, 16),
            None => t.parse::<u64>(),
        };
        parsed
            .map(FirmwareVersion)
            .map_err(|e| E::custom(format!("firmware version {v:?}: {e}")))
    }
}

impl<'de> Deserialize<'de> for FirmwareVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FirmwareVersion, D::Error> {
        d.deserialize_any(FirmwareVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_hex, FirmwareVersion};

    #[derive(serde::Deserialize)]
    struct V {
        v: FirmwareVersion,
    }

    fn fw(toml_text: &str) -> Result<u64, String> {
        toml::from_str::<V>(toml_text)
            .map(|x| x.v.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn firmware_version_spellings() {
        assert_eq!(fw("v = 42"), Ok(42));
        assert_eq!(
            fw("v = \"0x0002_0001_0000_0000\""),
            Ok(0x0002_0001_0000_0000)
        );
        assert_eq!(fw("v = \"18446744073709551615\""), Ok(u64::MAX));
        assert!(fw("v = -1").unwrap_err().contains("negative"));
        assert!(fw("v = \"0x1_0000_0000_0000_0000\"").is_err());
        assert!(fw("v = 1.5").is_err());
        assert_eq!(FirmwareVersion(0x20).to_string(), "0x0000000000000020");
    }

    #[test]
    fn hex_spellings() {
        assert_eq!(parse_hex("0xAbCd"), Ok(vec![0xab, 0xcd]));
        assert!(parse_hex("").unwrap_err().contains("empty"));
        assert!(parse_hex("abc").unwrap_err().contains("not a hex string"));
    }
}
