//! Key derivation for keyslots: PBKDF2 (HMAC with sha1/sha256/sha512) and Argon2i /
//! Argon2id (version 0x13), read from and written to the keyslot `kdf` JSON object.
//!
//! Argon2 memory comes from the metadata, so it is bounded ([`MAX_ARGON2_MEMORY_KIB`],
//! the 4 GiB limit cryptsetup also applies) before anything is allocated.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use zeroize::Zeroizing;

use super::hash::{HashError, LuksHash};
use super::json::KdfJson;

/// Largest Argon2 memory cost accepted, in KiB (4 GiB).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// Largest Argon2 parallelism accepted.
pub const MAX_ARGON2_LANES: u32 = 16;
/// Largest salt accepted, in bytes.
pub const MAX_SALT: usize = 1024;

/// Errors of key derivation.
#[derive(Debug, thiserror::Error)]
pub enum KdfError {
    /// The KDF type is not supported.
    #[error("unsupported KDF type {0:?}")]
    Unsupported(String),
    /// A parameter the KDF type needs is missing.
    #[error("{kdf} KDF is missing parameter {param:?}")]
    Missing {
        /// KDF type.
        kdf: &'static str,
        /// Missing parameter.
        param: &'static str,
    },
    /// The PBKDF2 hash is not supported.
    #[error("the PBKDF2 hash is unusable")]
    Hash(#[source] HashError),
    /// The salt is not valid base64 or too long.
    #[error("KDF salt is not valid base64 of at most {MAX_SALT} bytes")]
    Salt,
    /// Argon2 parameters out of range (cost limits or argon2 crate limits).
    #[error("argon2 parameters out of range: time {time}, memory {memory_kib} KiB, lanes {lanes}")]
    Argon2Params {
        /// Time cost.
        time: u32,
        /// Memory cost in KiB.
        memory_kib: u32,
        /// Parallelism.
        lanes: u32,
    },
    /// The Argon2 computation failed.
    #[error("argon2 derivation failed: {0}")]
    Argon2(argon2::Error),
    /// PBKDF2 with zero iterations.
    #[error("PBKDF2 iteration count must be at least 1")]
    ZeroIterations,
}

/// Argon2 variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argon2Variant {
    /// Argon2i.
    I,
    /// Argon2id.
    Id,
}

/// A key derivation function with its cost parameters (the salt is kept apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kdf {
    /// PBKDF2-HMAC.
    Pbkdf2 {
        /// Hash.
        hash: LuksHash,
        /// Iterations.
        iterations: u32,
    },
    /// Argon2.
    Argon2 {
        /// Variant.
        variant: Argon2Variant,
        /// Time cost (passes).
        time: u32,
        /// Memory cost in KiB.
        memory_kib: u32,
        /// Parallelism (lanes).
        lanes: u32,
    },
}

fn need(v: Option<u32>, kdf: &'static str, param: &'static str) -> Result<u32, KdfError> {
    v.ok_or(KdfError::Missing { kdf, param })
}

impl Kdf {
    /// Reads the KDF and its salt from a keyslot's JSON.
    pub fn from_json(j: &KdfJson) -> Result<(Kdf, Vec<u8>), KdfError> {
        let salt = decode_b64(&j.salt, MAX_SALT).ok_or(KdfError::Salt)?;
        let kdf = match j.kind.as_str() {
            "pbkdf2" => {
                let hash = j.hash.as_deref().ok_or(KdfError::Missing {
                    kdf: "pbkdf2",
                    param: "hash",
                })?;
                Kdf::Pbkdf2 {
                    hash: LuksHash::from_name(hash).map_err(KdfError::Hash)?,
                    iterations: need(j.iterations, "pbkdf2", "iterations")?,
                }
            }
            "argon2i" | "argon2id" => {
                let (variant, name) = if j.kind == "argon2i" {
                    (Argon2Variant::I, "argon2i")
                } else {
                    (Argon2Variant::Id, "argon2id")
                };
                Kdf::Argon2 {
                    variant,
                    time: need(j.time, name, "time")?,
                    memory_kib: need(j.memory, name, "memory")?,
                    lanes: need(j.cpus, name, "cpus")?,
                }
            }
            other => return Err(KdfError::Unsupported(other.to_string())),
        };
        Ok((kdf, salt))
    }

    /// The JSON object for this KDF with `salt`.
    pub fn to_json(&self, salt: &[u8]) -> KdfJson {
        match *self {
            Kdf::Pbkdf2 { hash, iterations } => KdfJson {
                kind: "pbkdf2".into(),
                hash: Some(hash.name().into()),
                iterations: Some(iterations),
                time: None,
                memory: None,
                cpus: None,
                salt: B64.encode(salt),
            },
            Kdf::Argon2 {
                variant,
                time,
                memory_kib,
                lanes,
            } => KdfJson {
                kind: match variant {
                    Argon2Variant::I => "argon2i".into(),
                    Argon2Variant::Id => "argon2id".into(),
                },
                hash: None,
                iterations: None,
                time: Some(time),
                memory: Some(memory_kib),
                cpus: Some(lanes),
                salt: B64.encode(salt),
            },
        }
    }

    /// Derives `out_len` bytes from `secret` and `salt`.
    pub fn derive(
        &self,
        secret: &[u8],
        salt: &[u8],
        out_len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, KdfError> {
        let mut out = Zeroizing::new(vec![0u8; out_len]);
        match *self {
            Kdf::Pbkdf2 { hash, iterations } => {
                if iterations == 0 {
                    return Err(KdfError::ZeroIterations);
                }
                hash.pbkdf2(secret, salt, iterations, &mut out);
            }
            Kdf::Argon2 {
                variant,
                time,
                memory_kib,
                lanes,
            } => {
                let bad = KdfError::Argon2Params {
                    time,
                    memory_kib,
                    lanes,
                };
                if memory_kib > MAX_ARGON2_MEMORY_KIB || lanes > MAX_ARGON2_LANES || lanes == 0 {
                    return Err(bad);
                }
                let params =
                    argon2::Params::new(memory_kib, time, lanes, Some(out_len)).map_err(|_| bad)?;
                let alg = match variant {
                    Argon2Variant::I => argon2::Algorithm::Argon2i,
                    Argon2Variant::Id => argon2::Algorithm::Argon2id,
                };
                argon2::Argon2::new(alg, argon2::Version::V0x13, params)
                    .hash_password_into(secret, salt, &mut out)
                    .map_err(KdfError::Argon2)?;
            }
        }
        Ok(out)
    }
}

/// Decodes base64, refusing inputs that would decode to more than `max` bytes.
pub fn decode_b64(s: &str, max: usize) -> Option<Vec<u8>> {
    if s.len() / 4 * 3 > max + 3 {
        return None;
    }
    let v = B64.decode(s).ok()?;
    (v.len() <= max).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Determinism, salt sensitivity and JSON round trip (known answers for argon2 come
    /// from cryptsetup-made volumes in the integration tests).
    #[test]
    fn argon2id_depends_on_salt_and_round_trips_json() {
        let kdf = Kdf::Argon2 {
            variant: Argon2Variant::Id,
            time: 1,
            memory_kib: 64,
            lanes: 1,
        };
        let a = kdf.derive(b"pw", b"saltsaltsaltsalt", 64).expect("derive");
        let b = kdf.derive(b"pw", b"saltsaltsaltsalt", 64).expect("derive");
        let c = kdf.derive(b"pw", b"saltsaltsaltsalX", 64).expect("derive");
        assert_eq!(a, b);
        assert_ne!(a, c);
        let json = kdf.to_json(b"saltsaltsaltsalt");
        let (back, salt) = Kdf::from_json(&json).expect("from json");
        assert_eq!(back, kdf);
        assert_eq!(salt, b"saltsaltsaltsalt");
    }

    #[test]
    fn oversized_argon2_memory_is_refused_before_allocation() {
        let kdf = Kdf::Argon2 {
            variant: Argon2Variant::Id,
            time: 1,
            memory_kib: u32::MAX,
            lanes: 1,
        };
        assert!(matches!(
            kdf.derive(b"pw", b"saltsaltsaltsalt", 64),
            Err(KdfError::Argon2Params { .. })
        ));
    }

    #[test]
    fn missing_parameters_are_named() {
        let j = KdfJson {
            kind: "pbkdf2".into(),
            hash: Some("sha256".into()),
            iterations: None,
            time: None,
            memory: None,
            cpus: None,
            salt: "AAAA".into(),
        };
        assert!(matches!(
            Kdf::from_json(&j),
            Err(KdfError::Missing {
                kdf: "pbkdf2",
                param: "iterations"
            })
        ));
    }
}
