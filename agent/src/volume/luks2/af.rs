//! The LUKS anti-forensic information splitter (AF, "luks1" type): a key of `n` bytes is
//! stored as `stripes` blocks of `n` bytes, so that destroying any part of the area
//! destroys the key. Splitting draws `stripes - 1` random blocks and folds them with the
//! diffusion function; the last block is the key XOR the fold. Merging recomputes the fold.
//!
//! Diffusion: the block is cut into digest-sized pieces (the last may be shorter);
//! piece `i` is replaced by `hash(be32(i) || piece)` truncated to the piece's length.

use zeroize::Zeroizing;

use super::hash::LuksHash;

/// Errors of the AF splitter.
#[derive(Debug, thiserror::Error)]
pub enum AfError {
    /// The split material does not have `key_len * stripes` bytes.
    #[error("AF material is {len} bytes, expected {key_len} x {stripes} stripes")]
    Length {
        /// Material length.
        len: usize,
        /// Key length.
        key_len: usize,
        /// Stripes.
        stripes: u32,
    },
    /// Zero stripes or an empty key.
    #[error(
        "AF needs at least one stripe and a non-empty key (stripes {stripes}, key {key_len} bytes)"
    )]
    Empty {
        /// Stripes.
        stripes: u32,
        /// Key length.
        key_len: usize,
    },
    /// The random source failed.
    #[error("the random source failed")]
    Random(#[source] rand_core::Error),
}

fn diffuse(block: &mut [u8], hash: LuksHash) {
    let d = hash.digest_len();
    for (i, piece) in block.chunks_mut(d).enumerate() {
        let h = hash.digest(&[&(i as u32).to_be_bytes(), piece]);
        let n = piece.len();
        piece.copy_from_slice(h.get(..n).unwrap_or_default());
    }
}

fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

/// Splits `key` into `stripes` blocks, using `rng` for the random stripes.
pub fn split(
    key: &[u8],
    stripes: u32,
    hash: LuksHash,
    rng: &mut impl rand_core::RngCore,
) -> Result<Zeroizing<Vec<u8>>, AfError> {
    let n = key.len();
    if stripes == 0 || n == 0 {
        return Err(AfError::Empty {
            stripes,
            key_len: n,
        });
    }
    let mut out = Zeroizing::new(vec![0u8; n * stripes as usize]);
    let mut fold = Zeroizing::new(vec![0u8; n]);
    let (random, last) = out.split_at_mut(n * (stripes as usize - 1));
    rng.try_fill_bytes(random).map_err(AfError::Random)?;
    for stripe in random.chunks_exact(n) {
        xor_into(&mut fold, stripe);
        diffuse(&mut fold, hash);
    }
    last.copy_from_slice(&fold);
    xor_into(last, key);
    Ok(out)
}

/// Recovers a `key_len`-byte key from split material.
pub fn merge(
    material: &[u8],
    key_len: usize,
    stripes: u32,
    hash: LuksHash,
) -> Result<Zeroizing<Vec<u8>>, AfError> {
    if stripes == 0 || key_len == 0 {
        return Err(AfError::Empty { stripes, key_len });
    }
    let wrong = AfError::Length {
        len: material.len(),
        key_len,
        stripes,
    };
    if key_len.checked_mul(stripes as usize) != Some(material.len()) {
        return Err(wrong);
    }
    let (random, last) = material.split_at(key_len * (stripes as usize - 1));
    let mut fold = Zeroizing::new(vec![0u8; key_len]);
    for stripe in random.chunks_exact(key_len) {
        xor_into(&mut fold, stripe);
        diffuse(&mut fold, hash);
    }
    xor_into(&mut fold, last);
    Ok(fold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn split_then_merge_recovers_the_key() {
        let key: Vec<u8> = (0..64u8).collect();
        for hash in [LuksHash::Sha1, LuksHash::Sha256, LuksHash::Sha512] {
            let m = split(&key, 4000, hash, &mut OsRng).expect("split");
            assert_eq!(m.len(), 64 * 4000);
            assert_eq!(merge(&m, 64, 4000, hash).expect("merge").as_slice(), key);
            // Flipping one bit of any stripe destroys the key.
            let mut bad = m.clone();
            bad[1234] ^= 1;
            assert_ne!(merge(&bad, 64, 4000, hash).expect("merge").as_slice(), key);
        }
    }

    /// With one stripe the material is the key itself; with two, stripe 0 is
    /// random R and stripe 1 is key XOR diffuse(R): check diffusion by hand.
    #[test]
    fn two_stripe_layout_matches_the_definition() {
        let key = [0xa5u8; 40];
        let m = split(&key, 2, LuksHash::Sha256, &mut OsRng).expect("split");
        let (r, last) = m.split_at(40);
        let h0 = LuksHash::Sha256.digest(&[&0u32.to_be_bytes(), &r[..32]]);
        let h1 = LuksHash::Sha256.digest(&[&1u32.to_be_bytes(), &r[32..]]);
        let mut expect: Vec<u8> = h0.into_iter().chain(h1.into_iter().take(8)).collect();
        xor_into(&mut expect, &key);
        assert_eq!(last, expect.as_slice());
        assert_eq!(
            merge(&key, 40, 1, LuksHash::Sha256)
                .expect("one")
                .as_slice(),
            key
        );
    }

    #[test]
    fn wrong_length_is_refused() {
        assert!(matches!(
            merge(&[0u8; 100], 64, 2, LuksHash::Sha256),
            Err(AfError::Length {
                len: 100,
                key_len: 64,
                stripes: 2
            })
        ));
    }
}
