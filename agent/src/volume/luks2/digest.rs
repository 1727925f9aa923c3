//! LUKS2 `pbkdf2` digests: PBKDF2 of the volume key with the digest's salt, stored in
//! the `digests` object. A candidate key taken from a keyslot is the volume key exactly
//! when its digest matches; the comparison takes constant time.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::hash::{HashError, LuksHash};
use super::json::{DigestJson, Id};
use super::kdf::decode_b64;

/// Largest digest accepted, in bytes.
const MAX_DIGEST: usize = 64;
/// Salt length of new digests.
pub const SALT_LEN: usize = 32;

/// Errors of digest handling.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// The digest type is not `pbkdf2`.
    #[error("unsupported digest type {0:?}")]
    Unsupported(String),
    /// The digest hash is not supported.
    #[error("the digest hash is unusable")]
    Hash(#[source] HashError),
    /// Salt or digest is not valid base64 of a sane length.
    #[error("digest {field} is not valid base64 of at most {max} bytes")]
    Encoding {
        /// Field name.
        field: &'static str,
        /// Maximum length.
        max: usize,
    },
    /// Zero iterations.
    #[error("digest iteration count must be at least 1")]
    ZeroIterations,
    /// The random source failed.
    #[error("the random source failed")]
    Random(#[source] rand_core::Error),
}

/// Makes the digest object of `volume_key` for `keyslots` and `segments`.
pub fn create(
    volume_key: &[u8],
    keyslots: Vec<Id>,
    segments: Vec<Id>,
    iterations: u32,
    rng: &mut impl rand_core::RngCore,
) -> Result<DigestJson, DigestError> {
    if iterations == 0 {
        return Err(DigestError::ZeroIterations);
    }
    let mut salt = [0u8; SALT_LEN];
    rng.try_fill_bytes(&mut salt).map_err(DigestError::Random)?;
    let hash = LuksHash::Sha256;
    let mut out = vec![0u8; hash.digest_len()];
    hash.pbkdf2(volume_key, &salt, iterations, &mut out);
    Ok(DigestJson {
        kind: "pbkdf2".into(),
        keyslots,
        segments,
        hash: hash.name().into(),
        iterations,
        salt: B64.encode(salt),
        digest: B64.encode(out),
    })
}

/// Whether `candidate` is the key `digest` describes.
pub fn verify(digest: &DigestJson, candidate: &[u8]) -> Result<bool, DigestError> {
    if digest.kind != "pbkdf2" {
        return Err(DigestError::Unsupported(digest.kind.clone()));
    }
    if digest.iterations == 0 {
        return Err(DigestError::ZeroIterations);
    }
    let hash = LuksHash::from_name(&digest.hash).map_err(DigestError::Hash)?;
    let salt = decode_b64(&digest.salt, 1024).ok_or(DigestError::Encoding {
        field: "salt",
        max: 1024,
    })?;
    let want = decode_b64(&digest.digest, MAX_DIGEST)
        .filter(|d| !d.is_empty())
        .ok_or(DigestError::Encoding {
            field: "digest",
            max: MAX_DIGEST,
        })?;
    let mut got = vec![0u8; want.len()];
    hash.pbkdf2(candidate, &salt, digest.iterations, &mut got);
    let diff = got.iter().zip(&want).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    Ok(diff == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn verifies_the_right_key_only() {
        let key = [7u8; 64];
        let d = create(&key, vec![Id(0)], vec![Id(0)], 1000, &mut OsRng).expect("create");
        assert!(verify(&d, &key).expect("verify"));
        let mut other = key;
        other[63] ^= 1;
        assert!(!verify(&d, &other).expect("verify"));
    }

    /// Digest taken from a volume cryptsetup 2.6.1 made: volume key from
    /// `luksDump --dump-volume-key`, digest object from `--dump-json-metadata`.
    #[test]
    fn cryptsetup_digest_known_answer() {
        let d: DigestJson = serde_json::from_str(
            r#"{"type":"pbkdf2","keyslots":["0"],"segments":["0"],"hash":"sha256",
            "iterations":1000,"salt":"U7fbNvaM6AT2dAMy3u0k6ZKi4iHHDEyzpwxilxXedHI=",
            "digest":"0EFZRd6w38c9ygwW5KPX6BkZfQpS4OfSbrF9MPpyWDg="}"#,
        )
        .expect("json");
        let key = hex::decode(CRYPTSETUP_VOLUME_KEY).expect("hex");
        assert!(verify(&d, &key).expect("verify"));
    }

    const CRYPTSETUP_VOLUME_KEY: &str = concat!(
        "321cd9034584c7560a8cc20fb5662fcff39384c071128a36902386ba922d59ff",
        "de35b6d1ef3291b3332b805ac6fa0ca28ee36cb32f56c03f09de535bcbaf7780"
    );
}
