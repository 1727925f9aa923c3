//! The TPM 2.0 key derivation functions (TPM 2.0 Part 1, "Key Derivation Functions"): KDFa, the
//! SP 800-108 counter-mode KDF with HMAC, and KDFe, the SP 800-56A concatenation KDF applied to an
//! ECDH shared secret; plus the HMAC both credential protection steps use.
//!
//! Labels are NUL-terminated on the wire: a label without a trailing zero byte gets one, as the
//! specification requires.

use crate::alg::HashAlg;
use ring::hmac;
use zeroize::Zeroizing;

/// The ring HMAC algorithm for a TPM hash algorithm (SHA-1/256/384/512).
fn hmac_algorithm(alg: HashAlg) -> Option<hmac::Algorithm> {
    match alg {
        HashAlg::Sha1 => Some(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
        HashAlg::Sha256 => Some(hmac::HMAC_SHA256),
        HashAlg::Sha384 => Some(hmac::HMAC_SHA384),
        HashAlg::Sha512 => Some(hmac::HMAC_SHA512),
        HashAlg::Sm3_256 | HashAlg::Unknown(_) => None,
    }
}

/// True when both KDFs and the HMAC can run with `alg`.
pub fn supported(alg: HashAlg) -> bool {
    hmac_algorithm(alg).is_some()
}

/// HMAC over the concatenation of `parts`; `None` for an unsupported hash.
pub fn hmac(alg: HashAlg, key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
    let key = hmac::Key::new(hmac_algorithm(alg)?, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    Some(ctx.sign().as_ref().to_vec())
}

/// Constant-time check of an HMAC tag over the concatenation of `parts`.
pub fn hmac_verify(alg: HashAlg, key: &[u8], parts: &[&[u8]], tag: &[u8]) -> Option<bool> {
    let key = hmac::Key::new(hmac_algorithm(alg)?, key);
    let message: Vec<u8> = parts.concat();
    Some(hmac::verify(&key, &message, tag).is_ok())
}

/// The label as the KDFs use it: with exactly one terminating NUL.
fn terminated(label: &[u8]) -> Vec<u8> {
    let mut out = label.to_vec();
    if out.last() != Some(&0) {
        out.push(0);
    }
    out
}

/// Keeps the rightmost `bits` bits of `out` (masks the first byte when `bits % 8 != 0`).
fn trim(mut out: Zeroizing<Vec<u8>>, bits: u16) -> Zeroizing<Vec<u8>> {
    out.truncate(usize::from(bits).div_ceil(8));
    let extra = bits % 8;
    if extra != 0 {
        if let Some(first) = out.first_mut() {
            *first &= (1u8 << extra) - 1;
        }
    }
    out
}

/// KDFa(hashAlg, key, label, contextU, contextV, bits): HMAC_key(counter || label || contextU ||
/// contextV || bits) for counter = 1, 2, ... until `bits` bits are produced.
pub fn kdfa(
    alg: HashAlg,
    key: &[u8],
    label: &[u8],
    context_u: &[u8],
    context_v: &[u8],
    bits: u16,
) -> Option<Zeroizing<Vec<u8>>> {
    let key = hmac::Key::new(hmac_algorithm(alg)?, key);
    let label = terminated(label);
    let want = usize::from(bits).div_ceil(8);
    let mut out = Zeroizing::new(Vec::with_capacity(want + 64));
    let mut counter = 1u32;
    while out.len() < want {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&counter.to_be_bytes());
        ctx.update(&label);
        ctx.update(context_u);
        ctx.update(context_v);
        ctx.update(&u32::from(bits).to_be_bytes());
        out.extend_from_slice(ctx.sign().as_ref());
        counter += 1;
    }
    Some(trim(out, bits))
}

/// KDFe(hashAlg, Z, label, partyUInfo, partyVInfo, bits): H(counter || Z || label || partyUInfo
/// || partyVInfo) for counter = 1, 2, ... until `bits` bits are produced.
pub fn kdfe(
    alg: HashAlg,
    z: &[u8],
    label: &[u8],
    party_u: &[u8],
    party_v: &[u8],
    bits: u16,
) -> Option<Zeroizing<Vec<u8>>> {
    hmac_algorithm(alg)?;
    let label = terminated(label);
    let want = usize::from(bits).div_ceil(8);
    let mut out = Zeroizing::new(Vec::with_capacity(want + 64));
    let mut counter = 1u32;
    while out.len() < want {
        let block = Zeroizing::new(alg.hash_parts(&[
            &counter.to_be_bytes(),
            z,
            &label,
            party_u,
            party_v,
        ])?);
        out.extend_from_slice(&block);
        counter += 1;
    }
    Some(trim(out, bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_labels_and_masking() {
        let a = kdfa(HashAlg::Sha256, b"k", b"STORAGE", b"u", b"", 128).unwrap();
        assert_eq!(a.len(), 16);
        // The label is NUL-terminated exactly once.
        let b = kdfa(HashAlg::Sha256, b"k", b"STORAGE\0", b"u", b"", 128).unwrap();
        assert_eq!(a, b);
        // More than one block, and the size is part of the input (not a prefix of the longer).
        let long = kdfa(HashAlg::Sha256, b"k", b"STORAGE", b"u", b"", 520).unwrap();
        assert_eq!(long.len(), 65);
        assert_ne!(long[..16], a[..]);
        let odd = kdfa(HashAlg::Sha256, b"k", b"X", b"", b"", 12).unwrap();
        assert_eq!(odd.len(), 2);
        assert_eq!(odd[0] & 0xf0, 0);
        assert!(kdfa(HashAlg::Sm3_256, b"k", b"X", b"", b"", 8).is_none());
        let e = kdfe(HashAlg::Sha384, b"z", b"IDENTITY", b"u", b"v", 384).unwrap();
        assert_eq!(e.len(), 48);
    }
}
