//! The kernel's boot id: a random 128-bit value the kernel draws at every boot
//! (`/proc/sys/kernel/random/boot_id`, or systemd's `%b` specifier). Vouch binds an escrow
//! release to one boot with it, so it is a type, parsed once where it is read: either a valid id
//! or an error, never a default such as "unknown" that would compare equal across boots.

use std::fmt;
use std::str::FromStr;

/// A boot id. Displayed (and sent on the wire) as the kernel prints it: lowercase hex in the
/// 8-4-4-4-12 form.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BootId([u8; 16]);

/// A text that is not a boot id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a boot id (32 hex digits, optionally in the 8-4-4-4-12 form)")]
pub struct BootIdError {
    /// The text (at most 64 characters of it).
    pub text: String,
}

impl BootId {
    /// The 16 bytes.
    pub fn bytes(&self) -> [u8; 16] {
        self.0
    }

    /// From 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> BootId {
        BootId(bytes)
    }
}

impl FromStr for BootId {
    type Err = BootIdError;

    /// Accepts the kernel's form (`/proc/sys/kernel/random/boot_id`, with dashes at the UUID
    /// positions) and systemd's `%b` (32 hex digits), in either case; surrounding whitespace
    /// (the kernel's trailing newline) is ignored.
    fn from_str(s: &str) -> Result<BootId, BootIdError> {
        let err = || BootIdError {
            text: s.chars().take(64).collect(),
        };
        let t = s.trim();
        let hex: String = match t.len() {
            32 => t.to_string(),
            36 => {
                let dashes = [8, 13, 18, 23];
                if !t
                    .char_indices()
                    .all(|(i, c)| (c == '-') == dashes.contains(&i))
                {
                    return Err(err());
                }
                t.chars().filter(|c| *c != '-').collect()
            }
            _ => return Err(err()),
        };
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(&hex, &mut bytes).map_err(|_| err())?;
        Ok(BootId(bytes))
    }
}

impl fmt::Display for BootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

impl fmt::Debug for BootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootId({self})")
    }
}

impl serde::Serialize for BootId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for BootId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BootId, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL: &str = "0f1e8a3c-5b7d-4e2a-9c61-3d4b5a6f7e80\n";

    #[test]
    fn kernel_and_systemd_forms_are_one_id() {
        let a: BootId = KERNEL.parse().unwrap();
        let b: BootId = "0F1E8A3C5B7D4E2A9C613D4B5A6F7E80".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), KERNEL.trim());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!("\"{}\"", KERNEL.trim()));
        assert_eq!(serde_json::from_str::<BootId>(&json).unwrap(), a);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "unknown",
            "boot-1",
            "0f1e8a3c5b7d4e2a9c613d4b5a6f7e8",
            "0f1e8a3c-5b7d4-e2a-9c61-3d4b5a6f7e80",
            "0f1e8a3c-5b7d-4e2a-9c61-3d4b5a6f7e8g",
            "0f1e8a3c-5b7d-4e2a-9c61-3d4b5a6f7e80-",
        ] {
            assert!(bad.parse::<BootId>().is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<BootId>("\"unknown\"").is_err());
    }
}
