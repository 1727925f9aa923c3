//! SHA-256 of exactly 64 bytes, the input of a PCR extend in a SHA-256 bank, computed with the
//! bare compression function: one block holding the data and the constant padding block
//! (FIPS 180-4 §5.1.1: 0x80, zeros, the bit length 512 as a 64-bit big-endian integer).
//!
//! This skips the buffering of the streaming hasher; `sha2` still picks the SHA-NI / AVX2 /
//! portable backend at run time.

use sha2::digest::core_api::Block;
use sha2::Sha256VarCore;

/// SHA-256 initial hash value (FIPS 180-4 §5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The second block of a 64-byte message: the 0x80 terminator, zeros, and the bit length 512
/// (0x0200) in the last bytes.
const PADDING: [u8; 64] = {
    let mut p = [0u8; 64];
    p[0] = 0x80;
    p[62] = 0x02;
    p
};

/// `cur = SHA-256(cur || digest)`.
pub(crate) fn extend_32(cur: &mut [u8; 32], digest: &[u8; 32]) {
    let mut data = [0u8; 64];
    if let Some((a, b)) = data.split_at_mut_checked(32) {
        a.copy_from_slice(cur);
        b.copy_from_slice(digest);
    }
    let blocks: [Block<Sha256VarCore>; 2] = [data.into(), PADDING.into()];
    let mut state = IV;
    sha2::compress256(&mut state, &blocks);
    for (out, word) in cur.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::extend_32;
    use crate::alg::HashAlg;

    #[test]
    fn equals_the_streaming_hash() {
        let mut cur = [0u8; 32];
        for i in 0..200u8 {
            let digest = [i.wrapping_mul(37); 32];
            let want = HashAlg::Sha256.extend(&cur, &digest).unwrap();
            extend_32(&mut cur, &digest);
            assert_eq!(cur.to_vec(), want, "round {i}");
        }
    }
}
