//! Hash functions named in LUKS2 metadata (`"sha1"`, `"sha256"`, `"sha512"`): plain
//! digests for the anti-forensic splitter and header checksums, and PBKDF2-HMAC.

use sha2::Digest;

/// Errors of hash selection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    /// The metadata names a hash this implementation does not support.
    #[error("unsupported hash {0:?} (supported: sha1, sha256, sha512)")]
    Unsupported(String),
}

/// A hash function usable in LUKS2 metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LuksHash {
    /// SHA-1 (legacy volumes only).
    Sha1,
    /// SHA-256, the LUKS2 default.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl LuksHash {
    /// Parses the name used in LUKS2 JSON.
    pub fn from_name(name: &str) -> Result<Self, HashError> {
        match name {
            "sha1" => Ok(LuksHash::Sha1),
            "sha256" => Ok(LuksHash::Sha256),
            "sha512" => Ok(LuksHash::Sha512),
            other => Err(HashError::Unsupported(other.to_string())),
        }
    }

    /// The name used in LUKS2 JSON.
    pub fn name(self) -> &'static str {
        match self {
            LuksHash::Sha1 => "sha1",
            LuksHash::Sha256 => "sha256",
            LuksHash::Sha512 => "sha512",
        }
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            LuksHash::Sha1 => 20,
            LuksHash::Sha256 => 32,
            LuksHash::Sha512 => 64,
        }
    }

    /// Digest of the concatenation of `parts`.
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            LuksHash::Sha1 => run::<sha1::Sha1>(parts),
            LuksHash::Sha256 => run::<sha2::Sha256>(parts),
            LuksHash::Sha512 => run::<sha2::Sha512>(parts),
        }
    }

    /// PBKDF2-HMAC with this hash, filling `out`.
    pub fn pbkdf2(self, password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
        match self {
            LuksHash::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, out),
            LuksHash::Sha256 => {
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, out)
            }
            LuksHash::Sha512 => {
                pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7914 section 11 test vector for PBKDF2-HMAC-SHA256.
    #[test]
    fn pbkdf2_sha256_rfc7914() {
        let mut out = [0u8; 64];
        LuksHash::Sha256.pbkdf2(b"passwd", b"salt", 1, &mut out);
        assert_eq!(
            hex::encode(out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
             49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
        );
    }

    #[test]
    fn names_round_trip_and_unknown_is_rejected() {
        for h in [LuksHash::Sha1, LuksHash::Sha256, LuksHash::Sha512] {
            assert_eq!(LuksHash::from_name(h.name()), Ok(h));
            assert_eq!(h.digest(&[b"abc"]).len(), h.digest_len());
        }
        assert_eq!(
            LuksHash::from_name("whirlpool"),
            Err(HashError::Unsupported("whirlpool".into()))
        );
    }
}
