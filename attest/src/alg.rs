//! TPM hash algorithms (TPM_ALG_ID) as used by PCR banks, event logs and quotes.

use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use sm3::Sm3;

/// A TPM hash algorithm identifier (TPM_ALG_ID) for a PCR bank or digest.
///
/// Unknown algorithms are kept with their id so that event logs declaring banks this crate cannot
/// compute can still be parsed (their digests are carried, not replayed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum HashAlg {
    /// TPM_ALG_SHA1 (0x0004).
    Sha1,
    /// TPM_ALG_SHA256 (0x000B).
    Sha256,
    /// TPM_ALG_SHA384 (0x000C).
    Sha384,
    /// TPM_ALG_SHA512 (0x000D).
    Sha512,
    /// TPM_ALG_SM3_256 (0x0012).
    Sm3_256,
    /// Any other algorithm id; digest size is unknown to this crate.
    Unknown(u16),
}

impl HashAlg {
    /// Maps a TPM_ALG_ID to a hash algorithm.
    pub fn from_id(id: u16) -> HashAlg {
        match id {
            0x0004 => HashAlg::Sha1,
            0x000B => HashAlg::Sha256,
            0x000C => HashAlg::Sha384,
            0x000D => HashAlg::Sha512,
            0x0012 => HashAlg::Sm3_256,
            other => HashAlg::Unknown(other),
        }
    }

    /// The TPM_ALG_ID of this algorithm.
    pub fn id(self) -> u16 {
        match self {
            HashAlg::Sha1 => 0x0004,
            HashAlg::Sha256 => 0x000B,
            HashAlg::Sha384 => 0x000C,
            HashAlg::Sha512 => 0x000D,
            HashAlg::Sm3_256 => 0x0012,
            HashAlg::Unknown(id) => id,
        }
    }

    /// Digest size in bytes, or `None` for an unknown algorithm.
    pub fn digest_len(self) -> Option<usize> {
        match self {
            HashAlg::Sha1 => Some(20),
            HashAlg::Sha256 | HashAlg::Sm3_256 => Some(32),
            HashAlg::Sha384 => Some(48),
            HashAlg::Sha512 => Some(64),
            HashAlg::Unknown(_) => None,
        }
    }

    /// Lower-case name as used by tpm2-tools (`sha1`, `sha256`, `sm3_256`, ...).
    pub fn name(self) -> String {
        match self {
            HashAlg::Sha1 => "sha1".into(),
            HashAlg::Sha256 => "sha256".into(),
            HashAlg::Sha384 => "sha384".into(),
            HashAlg::Sha512 => "sha512".into(),
            HashAlg::Sm3_256 => "sm3_256".into(),
            HashAlg::Unknown(id) => format!("alg_0x{id:04x}"),
        }
    }

    /// Parses a name as written by [`HashAlg::name`].
    pub fn from_name(name: &str) -> Option<HashAlg> {
        Some(match name.to_ascii_lowercase().as_str() {
            "sha1" => HashAlg::Sha1,
            "sha256" => HashAlg::Sha256,
            "sha384" => HashAlg::Sha384,
            "sha512" => HashAlg::Sha512,
            "sm3_256" | "sm3" => HashAlg::Sm3_256,
            other => {
                let hex = other.strip_prefix("alg_0x")?;
                HashAlg::Unknown(u16::from_str_radix(hex, 16).ok()?)
            }
        })
    }

    /// Hashes `data` with this algorithm, or `None` for an unknown algorithm.
    pub fn hash(self, data: &[u8]) -> Option<Vec<u8>> {
        self.hash_parts(&[data])
    }

    /// Hashes the concatenation of `parts`, or `None` for an unknown algorithm.
    pub fn hash_parts(self, parts: &[&[u8]]) -> Option<Vec<u8>> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        Some(match self {
            HashAlg::Sha1 => run::<Sha1>(parts),
            HashAlg::Sha256 => run::<Sha256>(parts),
            HashAlg::Sha384 => run::<Sha384>(parts),
            HashAlg::Sha512 => run::<Sha512>(parts),
            HashAlg::Sm3_256 => run::<Sm3>(parts),
            HashAlg::Unknown(_) => return None,
        })
    }

    /// PCR extend: `new = H(old || digest)`. `None` for an unknown algorithm.
    pub fn extend(self, old: &[u8], digest: &[u8]) -> Option<Vec<u8>> {
        self.hash_parts(&[old, digest])
    }
}

impl From<HashAlg> for String {
    fn from(a: HashAlg) -> String {
        a.name()
    }
}

impl TryFrom<String> for HashAlg {
    type Error = String;
    fn try_from(s: String) -> Result<HashAlg, String> {
        HashAlg::from_name(&s).ok_or_else(|| format!("unknown hash algorithm {s:?}"))
    }
}

impl std::fmt::Display for HashAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_round_trip() {
        for id in [0x0004u16, 0x000B, 0x000C, 0x000D, 0x0012, 0x7777] {
            let a = HashAlg::from_id(id);
            assert_eq!(a.id(), id);
            assert_eq!(HashAlg::from_name(&a.name()), Some(a));
        }
    }

    #[test]
    fn extend_matches_manual_hash() {
        let zero = [0u8; 32];
        let d = [1u8; 32];
        let mut cat = zero.to_vec();
        cat.extend_from_slice(&d);
        assert_eq!(
            HashAlg::Sha256.extend(&zero, &d),
            HashAlg::Sha256.hash(&cat)
        );
        assert_eq!(HashAlg::Unknown(9).extend(&zero, &d), None);
    }
}
