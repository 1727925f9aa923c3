//! Hand-written x86-64 XTS backends: VAES on AVX-512 registers (4 blocks per ZMM), VAES on
//! AVX2 registers (2 blocks per YMM, e.g. AMD Zen 3) and AES-NI (1 block per XMM), the
//! latter on the 16 registers of AVX in `asm!` ([`xmm_xts`]: 8 blocks and their 8 tweaks
//! fill 16 registers, and LLVM then ran part of each group one block at a time, 0.90-0.94x
//! OpenSSL; the `asm!` pass keeps the tweaks in memory, prepares them between the rounds as
//! OpenSSL does, and measured 1.0-1.1x) and in intrinsics on the 32 of AVX-512VL
//! ([`xmm32_xts`], medians 0.98-1.00x: slower than the `asm!` pass in every run, so
//! never chosen at run time; it stays for comparison). The only module of the XTS engine
//! with `unsafe` code.
//!
//! Wiping: the passes zeroize their per-call secrets (broadcast round keys, encrypted
//! tweaks, the `asm!` pass's tweak state) with vector-sized stores, never through a memset
//! call (in the `asm!` pass that call cost about 200 cycles, 5-10%, per 4096-byte call).
//!
//! Why hand-written: RustCrypto's `aes` 0.9 does select VAES at run time, but only
//! behind its block-cipher interface: XTS has to XOR tweaks into the blocks in memory
//! before and after each batch, compute the tweaks in general-purpose registers, and
//! re-broadcast the round keys for every data unit. On a VAES CPU that left the engine
//! at 0.8-0.9x `openssl speed -evp aes-256-xts` (see the `xts` benchmark). Here one
//! function does a whole XTS pass in vector registers: the tweaks live in vector
//! registers next to the data (advanced per group of 16 blocks by alpha^16 with a byte
//! shift and one carry-less multiply, the method of Intel's VAES XTS code), the tweak
//! XOR after the last round is folded into the last round key (AESENCLAST XORs its key
//! last), 16 blocks (8 for AES-NI) are in flight, the round keys are broadcast once per
//! call, and the tweaks of up to 16 sectors are encrypted together. The same code is
//! instantiated for the three widths with enough registers by two macros (`width_ops!` defines a
//! width's operations, `xts_width!` the pass over them).
//!
//! `unsafe` discipline (as in `volume::dm`): each width's operations are safe functions
//! with `#[target_feature]`, so calling them is only allowed from functions compiled
//! with the same features; the only entry from plain code is [`Keys::run`] (and key
//! expansion in [`Keys::new`]), which holds a [`Cpu`] token that exists only when
//! `is_x86_feature_detected!` confirmed every feature of that width. Those entry calls
//! and the unaligned vector loads and stores (pointers from references to arrays of the
//! vector's size) are the `unsafe` blocks, each with its `SAFETY:` note, and so is the one
//! `asm!` block of the 16-register AES-NI pass (the registers and memory it touches are
//! listed in its note).
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use zeroize::Zeroize;

use super::{Dir, BLOCK};

/// The vector width a hand-written backend uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Width {
    /// VAES + VPCLMULQDQ on 512-bit registers (AVX-512F/BW).
    Zmm,
    /// VAES + VPCLMULQDQ on 256-bit registers (AVX2).
    Ymm,
    /// AES-NI + PCLMULQDQ on 128-bit registers, 32 of them (AVX-512VL: Skylake and
    /// Cascade Lake servers, which have AVX-512 but not VAES).
    Xmm32,
    /// AES-NI + PCLMULQDQ on 128-bit registers, 16 of them (AVX).
    Xmm,
}

impl Width {
    /// The CPU features this width needs, as `/proc/cpuinfo` and
    /// `is_x86_feature_detected!` name them.
    pub(super) fn features(self) -> &'static [&'static str] {
        match self {
            Width::Zmm => &[
                "aes",
                "pclmulqdq",
                "avx",
                "avx2",
                "avx512f",
                "avx512bw",
                "vaes",
                "vpclmulqdq",
            ],
            Width::Ymm => &["aes", "pclmulqdq", "avx", "avx2", "vaes", "vpclmulqdq"],
            Width::Xmm32 => &["aes", "pclmulqdq", "avx", "avx512f", "avx512vl"],
            Width::Xmm => &["aes", "pclmulqdq", "avx"],
        }
    }

    /// Whether this CPU has every feature of [`Width::features`].
    fn detected(self) -> bool {
        let base = is_x86_feature_detected!("aes")
            && is_x86_feature_detected!("pclmulqdq")
            && is_x86_feature_detected!("avx");
        let vaes = base
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("vaes")
            && is_x86_feature_detected!("vpclmulqdq");
        match self {
            Width::Xmm => base,
            Width::Xmm32 => {
                base && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl")
            }
            Width::Ymm => vaes,
            Width::Zmm => {
                vaes && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
            }
        }
    }
}

/// Whether this CPU has the named feature (for the benchmark's report).
pub(super) fn feature_detected(name: &str) -> Option<bool> {
    Some(match name {
        "aes" => is_x86_feature_detected!("aes"),
        "pclmulqdq" => is_x86_feature_detected!("pclmulqdq"),
        "avx" => is_x86_feature_detected!("avx"),
        "avx2" => is_x86_feature_detected!("avx2"),
        "avx512f" => is_x86_feature_detected!("avx512f"),
        "avx512bw" => is_x86_feature_detected!("avx512bw"),
        "avx512vl" => is_x86_feature_detected!("avx512vl"),
        "vaes" => is_x86_feature_detected!("vaes"),
        "vpclmulqdq" => is_x86_feature_detected!("vpclmulqdq"),
        _ => return None,
    })
}

/// Proof that this CPU has the features of a width: only [`Cpu::detect`] builds one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cpu(Width);

impl Cpu {
    /// The token for `width` if this CPU has all of its features.
    pub(super) fn detect(width: Width) -> Option<Cpu> {
        width.detected().then_some(Cpu(width))
    }
}

/// Most round keys (AES-256: 14 rounds).
const MAX_KEYS: usize = 15;

/// Expanded keys of an XTS key for a hand-written backend, as little-endian `u128`s
/// (zeroized on drop).
pub(super) struct Keys {
    cpu: Cpu,
    rounds: usize,
    data_enc: [u128; MAX_KEYS],
    data_dec: [u128; MAX_KEYS],
    tweak_enc: [u128; MAX_KEYS],
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.data_enc.zeroize();
        self.data_dec.zeroize();
        self.tweak_enc.zeroize();
    }
}

impl Keys {
    /// Expands an XTS key of 32 or 64 bytes (`None` for other lengths): the first half
    /// keys the data cipher, the second half the tweak cipher.
    pub(super) fn new(cpu: Cpu, key: &[u8]) -> Option<Keys> {
        let (k1, k2) = key.split_at(key.len() / 2);
        let mut keys = Keys {
            cpu,
            rounds: 0,
            data_enc: [0; MAX_KEYS],
            data_dec: [0; MAX_KEYS],
            tweak_enc: [0; MAX_KEYS],
        };
        let mut tweak_dec = [0u128; MAX_KEYS];
        // SAFETY: `expand_key` needs AES-NI, which every `Cpu` token's width includes and
        // `Cpu::detect` confirmed.
        let rounds = unsafe { expand_key(k1, &mut keys.data_enc, &mut keys.data_dec) }?;
        // SAFETY: as above.
        let tweak_rounds = unsafe { expand_key(k2, &mut keys.tweak_enc, &mut tweak_dec) };
        tweak_dec.zeroize();
        (tweak_rounds == Some(rounds)).then_some(())?;
        keys.rounds = rounds;
        Some(keys)
    }

    /// The width this key set runs on.
    pub(super) fn width(&self) -> Width {
        self.cpu.0
    }

    /// XTS over the whole `buf` of `sector_size`-byte units (checked by the caller: a
    /// non-zero multiple of 16 that divides `buf.len()`); unit `i` has the tweak
    /// `first + i * step` (checked by the caller not to overflow).
    pub(super) fn run(
        &self,
        dir: Dir,
        buf: &mut [u8],
        sector_size: usize,
        first: u128,
        step: u128,
    ) {
        let job = Job {
            keys: self,
            dir,
            sector_size,
            first,
            step,
        };
        match self.cpu.0 {
            // SAFETY: `self.cpu` is a `Cpu(Width::Zmm)` token, which `Cpu::detect` only
            // builds after `is_x86_feature_detected!` confirmed every feature that
            // `zmm_xts::run` is compiled with.
            Width::Zmm => unsafe { zmm_xts::run(&job, buf) },
            // SAFETY: as above, for `Width::Ymm` and `ymm_xts::run`.
            Width::Ymm => unsafe { ymm_xts::run(&job, buf) },
            // SAFETY: as above, for `Width::Xmm32` and `xmm32_xts::run`.
            Width::Xmm32 => unsafe { xmm32_xts::run(&job, buf) },
            // SAFETY: as above, for `Width::Xmm` and `xmm_xts::run`.
            Width::Xmm => unsafe { xmm_xts::run(&job, buf) },
        }
    }
}

/// One call's parameters, as handed to a width's `run`.
struct Job<'a> {
    keys: &'a Keys,
    dir: Dir,
    sector_size: usize,
    first: u128,
    step: u128,
}

/// A `u128` (little-endian block) in an XMM register.
#[target_feature(enable = "sse2")]
#[inline]
fn to_m128(v: u128) -> __m128i {
    _mm_set_epi64x((v >> 64) as i64, v as i64)
}

/// An XMM register as a `u128` (little-endian block).
#[target_feature(enable = "sse2")]
#[inline]
fn from_m128(v: __m128i) -> u128 {
    let lo = _mm_cvtsi128_si64(v) as u64;
    let hi = _mm_cvtsi128_si64(_mm_unpackhi_epi64(v, v)) as u64;
    (u128::from(hi) << 64) | u128::from(lo)
}

/// `prev` with each 32-bit word XORed with all words below it (the key schedule's
/// running XOR), then XORed with `assist`.
#[target_feature(enable = "sse2")]
#[inline]
fn schedule_step(prev: __m128i, assist: __m128i) -> __m128i {
    let mut x = prev;
    let mut s = _mm_slli_si128::<4>(prev);
    x = _mm_xor_si128(x, s);
    s = _mm_slli_si128::<4>(s);
    x = _mm_xor_si128(x, s);
    s = _mm_slli_si128::<4>(s);
    x = _mm_xor_si128(x, s);
    _mm_xor_si128(x, assist)
}

/// The next AES-128 round key (also the even round keys of AES-256).
#[target_feature(enable = "aes")]
fn next_key_a<const RCON: i32>(prev: __m128i, last: __m128i) -> __m128i {
    let assist = _mm_aeskeygenassist_si128::<RCON>(last);
    schedule_step(prev, _mm_shuffle_epi32::<0xff>(assist))
}

/// The odd round keys of AES-256 (SubWord without rotation or round constant).
#[target_feature(enable = "aes")]
fn next_key_b(prev: __m128i, last: __m128i) -> __m128i {
    let assist = _mm_aeskeygenassist_si128::<0x00>(last);
    schedule_step(prev, _mm_shuffle_epi32::<0xaa>(assist))
}

/// FIPS-197 key expansion of a 16- or 32-byte AES key into `enc`, and the round keys of
/// the equivalent inverse cipher (for AESDEC) into `dec`. Returns the number of rounds,
/// `None` for other key lengths.
#[target_feature(enable = "aes")]
fn expand_key(key: &[u8], enc: &mut [u128; MAX_KEYS], dec: &mut [u128; MAX_KEYS]) -> Option<usize> {
    let half = |i: usize| -> Option<__m128i> {
        let bytes: [u8; BLOCK] = key.get(i * BLOCK..(i + 1) * BLOCK)?.try_into().ok()?;
        Some(to_m128(u128::from_le_bytes(bytes)))
    };
    let mut rk = [_mm_setzero_si128(); MAX_KEYS];
    let rounds = match key.len() {
        16 => {
            rk[0] = half(0)?;
            rk[1] = next_key_a::<0x01>(rk[0], rk[0]);
            rk[2] = next_key_a::<0x02>(rk[1], rk[1]);
            rk[3] = next_key_a::<0x04>(rk[2], rk[2]);
            rk[4] = next_key_a::<0x08>(rk[3], rk[3]);
            rk[5] = next_key_a::<0x10>(rk[4], rk[4]);
            rk[6] = next_key_a::<0x20>(rk[5], rk[5]);
            rk[7] = next_key_a::<0x40>(rk[6], rk[6]);
            rk[8] = next_key_a::<0x80>(rk[7], rk[7]);
            rk[9] = next_key_a::<0x1b>(rk[8], rk[8]);
            rk[10] = next_key_a::<0x36>(rk[9], rk[9]);
            10
        }
        32 => {
            rk[0] = half(0)?;
            rk[1] = half(1)?;
            rk[2] = next_key_a::<0x01>(rk[0], rk[1]);
            rk[3] = next_key_b(rk[1], rk[2]);
            rk[4] = next_key_a::<0x02>(rk[2], rk[3]);
            rk[5] = next_key_b(rk[3], rk[4]);
            rk[6] = next_key_a::<0x04>(rk[4], rk[5]);
            rk[7] = next_key_b(rk[5], rk[6]);
            rk[8] = next_key_a::<0x08>(rk[6], rk[7]);
            rk[9] = next_key_b(rk[7], rk[8]);
            rk[10] = next_key_a::<0x10>(rk[8], rk[9]);
            rk[11] = next_key_b(rk[9], rk[10]);
            rk[12] = next_key_a::<0x20>(rk[10], rk[11]);
            rk[13] = next_key_b(rk[11], rk[12]);
            rk[14] = next_key_a::<0x40>(rk[12], rk[13]);
            14
        }
        _ => return None,
    };
    for (out, k) in enc.iter_mut().zip(rk.iter()) {
        *out = from_m128(*k);
    }
    // Equivalent inverse cipher: the round keys in reverse order, InvMixColumns applied
    // to all but the first and last.
    for (i, out) in dec.iter_mut().enumerate().take(rounds + 1) {
        let k = rk[rounds - i];
        *out = from_m128(if i == 0 || i == rounds {
            k
        } else {
            _mm_aesimc_si128(k)
        });
    }
    rk.zeroize();
    Some(rounds)
}

/// The operations of one register width, each a safe function compiled with that
/// width's features (so only callable from code compiled with them too).
macro_rules! width_ops {
    (
        $(#[$feat:meta])*
        mod $name:ident {
            type V = $v:ty;
            const W: usize = $w:expr;
            load = $load:ident, store = $store:ident, xor = $xor:ident, splat = $splat:path,
            enc = $enc:ident, enc_last = $enc_last:ident, dec = $dec:ident, dec_last = $dec_last:ident,
            shl = $shl:ident, shr = $shr:ident, clmul = $clmul:ident, poly = $poly:expr,
            lanes = |$l:ident| $lanes:expr,
        }
    ) => {
        mod $name {
            use std::arch::x86_64::*;

            /// The vector type.
            pub(super) type V = $v;
            /// AES blocks per vector.
            pub(super) const W: usize = $w;
            /// Bytes per vector.
            pub(super) const BYTES: usize = W * super::BLOCK;

            $(#[$feat])*
            #[inline]
            pub(super) fn load(bytes: &[u8; BYTES]) -> V {
                // SAFETY: the pointer comes from a reference to exactly one vector's
                // bytes, and the load is unaligned.
                unsafe { $load(bytes.as_ptr().cast()) }
            }

            $(#[$feat])*
            #[inline]
            pub(super) fn store(bytes: &mut [u8; BYTES], v: V) {
                // SAFETY: the pointer comes from an exclusive reference to exactly one
                // vector's bytes, and the store is unaligned.
                unsafe { $store(bytes.as_mut_ptr().cast(), v) }
            }

            $(#[$feat])*
            #[inline]
            pub(super) fn xor(a: V, b: V) -> V {
                $xor(a, b)
            }

            /// A round key in every 128-bit lane.
            $(#[$feat])*
            #[inline]
            pub(super) fn splat(k: u128) -> V {
                $splat(super::to_m128(k))
            }

            $(#[$feat])*
            #[inline]
            pub(super) fn enc(x: V, k: V) -> V {
                $enc(x, k)
            }

            $(#[$feat])*
            #[inline]
            pub(super) fn enc_last(x: V, k: V) -> V {
                $enc_last(x, k)
            }

            $(#[$feat])*
            #[inline]
            pub(super) fn dec(x: V, k: V) -> V {
                $dec(x, k)
            }

            $(#[$feat])*
            #[inline]
            pub(super) fn dec_last(x: V, k: V) -> V {
                $dec_last(x, k)
            }

            /// Lane `i` holds `t * alpha^(first + i)`: the tweaks of `W` consecutive
            /// blocks (each computed on its own, so without a serial chain).
            $(#[$feat])*
            #[inline]
            pub(super) fn tweaks(t: u128, first: usize) -> V {
                let $l = |i: usize| {
                    let v = super::super::mul_alpha_pow(t, (first + i) as u32);
                    ((v >> 64) as i64, v as i64)
                };
                $lanes
            }

            /// x^7 + x^2 + x + 1 in the low 64 bits of every lane.
            $(#[$feat])*
            #[inline]
            pub(super) fn poly() -> V {
                $poly
            }

            /// Each lane's tweak times alpha^(8 SHL): shift the lane left by SHL bytes
            /// and fold the SHL bytes shifted out (moved down by SHR = 16 - SHL bytes)
            /// back in with one carry-less multiply (the product has < 64 bits).
            $(#[$feat])*
            #[inline]
            pub(super) fn mul_alpha_bytes<const SHL: i32, const SHR: i32>(t: V, poly: V) -> V {
                let out = $shr::<SHR>(t);
                $xor($shl::<SHL>(t), $clmul::<0x00>(out, poly))
            }
        }
    };
}

/// One XTS pass over whole sectors for one width: `G` vectors (`G * W` blocks) in
/// flight, tweaks advanced by alpha^(G W) per group with `step`.
macro_rules! xts_width {
    (
        $(#[$feat:meta])*
        mod $name:ident for $ops:ident { G = $g:expr, step = $step:path }
    ) => {
        mod $name {
            use super::$ops as p;
            use super::{Dir, Job, BLOCK, MAX_KEYS};
            use zeroize::Zeroize;

            /// Vectors in flight.
            const G: usize = $g;
            /// Blocks in flight.
            const GROUP: usize = G * p::W;
            /// Bytes in flight.
            const GROUP_BYTES: usize = GROUP * BLOCK;

            /// XTS over all sectors of `buf` (see [`super::Keys::run`]).
            $(#[$feat])*
            pub(super) fn run(job: &Job<'_>, buf: &mut [u8]) {
                match (job.keys.rounds, job.dir) {
                    (10, Dir::Encrypt) => sectors::<10, false>(job, buf),
                    (10, Dir::Decrypt) => sectors::<10, true>(job, buf),
                    (_, Dir::Encrypt) => sectors::<14, false>(job, buf),
                    (_, Dir::Decrypt) => sectors::<14, true>(job, buf),
                }
            }

            /// The `R + 1` round keys, each broadcast to every lane.
            $(#[$feat])*
            #[inline]
            fn broadcast<const R: usize>(keys: &[u128; MAX_KEYS]) -> [p::V; MAX_KEYS] {
                let mut out = [p::splat(0); MAX_KEYS];
                for (o, k) in out.iter_mut().zip(keys.iter()).take(R + 1) {
                    *o = p::splat(*k);
                }
                out
            }

            $(#[$feat])*
            fn sectors<const R: usize, const DEC: bool>(job: &Job<'_>, buf: &mut [u8]) {
                let keys = job.keys;
                let mut data = broadcast::<R>(if DEC { &keys.data_dec } else { &keys.data_enc });
                let mut tweak_keys = broadcast::<R>(&keys.tweak_enc);
                let poly = p::poly();
                let mut index: u128 = 0;
                // The tweaks of up to GROUP sectors are encrypted together.
                for chunk in buf.chunks_mut(job.sector_size.saturating_mul(GROUP)) {
                    let mut tweaks = [0u8; GROUP_BYTES];
                    for (n, t) in tweaks.as_chunks_mut::<BLOCK>().0.iter_mut().enumerate() {
                        let iv = job
                            .first
                            .wrapping_add(job.step.wrapping_mul(index + n as u128));
                        *t = iv.to_le_bytes();
                    }
                    let vectors = (chunk.len() / job.sector_size).div_ceil(p::W);
                    ecb::<R>(&tweak_keys, &mut tweaks, vectors);
                    let units = chunk.chunks_exact_mut(job.sector_size);
                    for (unit, t) in units.zip(tweaks.as_chunks::<BLOCK>().0) {
                        sector::<R, DEC>(&data, unit, u128::from_le_bytes(*t), poly);
                    }
                    // The encrypted tweaks, as the `aes-ni` pass wipes its own. Wiped as a
                    // slice (a fill and an optimization barrier: a few vector stores for
                    // these 128 or 256 bytes, no memset call); `zeroize` on the array would
                    // write it byte by byte, once per GROUP sectors.
                    tweaks.as_mut_slice().zeroize();
                    index += GROUP as u128;
                }
                // The broadcast round keys (what spilled to the stack is beyond reach, as
                // with the `aes` crate's own VAES backend).
                data.zeroize();
                tweak_keys.zeroize();
            }

            /// XTS over one data unit with encrypted tweak `tweak`.
            $(#[$feat])*
            #[inline]
            fn sector<const R: usize, const DEC: bool>(
                rk: &[p::V; MAX_KEYS],
                unit: &mut [u8],
                tweak: u128,
                poly: p::V,
            ) {
                // Tweaks of the first group: tweak * alpha^i for block i.
                let mut t = [p::splat(0); G];
                for (j, tv) in t.iter_mut().enumerate() {
                    *tv = p::tweaks(tweak, j * p::W);
                }
                let (groups, tail) = unit.as_chunks_mut::<GROUP_BYTES>();
                for g in groups {
                    group::<R, DEC>(rk, g, &mut t, poly);
                }
                if !tail.is_empty() {
                    // Fewer blocks than a group (units that are not a multiple of it):
                    // run a whole group over a copy and keep the blocks that exist.
                    let mut scratch = [0u8; GROUP_BYTES];
                    let n = tail.len();
                    if let Some(part) = scratch.get_mut(..n) {
                        part.copy_from_slice(tail);
                    }
                    group::<R, DEC>(rk, &mut scratch, &mut t, poly);
                    if let Some(part) = scratch.get(..n) {
                        tail.copy_from_slice(part);
                    }
                    scratch.zeroize();
                }
            }

            /// AES encryption of the first `vectors` vectors of `bytes` (the sectors'
            /// tweaks).
            $(#[$feat])*
            #[inline]
            fn ecb<const R: usize>(
                rk: &[p::V; MAX_KEYS],
                bytes: &mut [u8; GROUP_BYTES],
                vectors: usize,
            ) {
                let (vs, _) = bytes.as_chunks_mut::<{ p::BYTES }>();
                let mut x = [p::splat(0); G];
                for (x, v) in x.iter_mut().zip(vs.iter()).take(vectors) {
                    *x = p::xor(p::load(v), rk[0]);
                }
                for k in &rk[1..R] {
                    for x in x.iter_mut().take(vectors) {
                        *x = p::enc(*x, *k);
                    }
                }
                for (x, v) in x.iter().zip(vs.iter_mut()).take(vectors) {
                    p::store(v, p::enc_last(*x, rk[R]));
                }
            }

            /// XTS over one group of blocks whose tweaks are in `t`; advances `t` to the
            /// next group's tweaks.
            $(#[$feat])*
            #[inline]
            fn group<const R: usize, const DEC: bool>(
                rk: &[p::V; MAX_KEYS],
                bytes: &mut [u8; GROUP_BYTES],
                t: &mut [p::V; G],
                poly: p::V,
            ) {
                let (vs, _) = bytes.as_chunks_mut::<{ p::BYTES }>();
                let mut x = [p::splat(0); G];
                for ((x, v), t) in x.iter_mut().zip(vs.iter()).zip(t.iter()) {
                    *x = p::xor(p::xor(p::load(v), *t), rk[0]);
                }
                for k in &rk[1..R] {
                    for x in x.iter_mut() {
                        *x = if DEC { p::dec(*x, *k) } else { p::enc(*x, *k) };
                    }
                }
                // The last round XORs its key last, so the tweak joins that key.
                for ((x, v), t) in x.iter().zip(vs.iter_mut()).zip(t.iter_mut()) {
                    let last = p::xor(rk[R], *t);
                    let y = if DEC {
                        p::dec_last(*x, last)
                    } else {
                        p::enc_last(*x, last)
                    };
                    p::store(v, y);
                    *t = $step(*t, poly);
                }
            }
        }
    };
}

width_ops! {
    #[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512bw,vaes,vpclmulqdq")]
    mod zmm {
        type V = __m512i;
        const W: usize = 4;
        load = _mm512_loadu_si512, store = _mm512_storeu_si512, xor = _mm512_xor_si512,
        splat = _mm512_broadcast_i32x4,
        enc = _mm512_aesenc_epi128, enc_last = _mm512_aesenclast_epi128,
        dec = _mm512_aesdec_epi128, dec_last = _mm512_aesdeclast_epi128,
        shl = _mm512_bslli_epi128, shr = _mm512_bsrli_epi128, clmul = _mm512_clmulepi64_epi128,
        poly = _mm512_set1_epi64(0x87),
        lanes = |l| {
            let ((h0, l0), (h1, l1), (h2, l2), (h3, l3)) = (l(0), l(1), l(2), l(3));
            _mm512_set_epi64(h3, l3, h2, l2, h1, l1, h0, l0)
        },
    }
}

width_ops! {
    #[target_feature(enable = "aes,pclmulqdq,avx2,vaes,vpclmulqdq")]
    mod ymm {
        type V = __m256i;
        const W: usize = 2;
        load = _mm256_loadu_si256, store = _mm256_storeu_si256, xor = _mm256_xor_si256,
        splat = _mm256_broadcastsi128_si256,
        enc = _mm256_aesenc_epi128, enc_last = _mm256_aesenclast_epi128,
        dec = _mm256_aesdec_epi128, dec_last = _mm256_aesdeclast_epi128,
        shl = _mm256_bslli_epi128, shr = _mm256_bsrli_epi128, clmul = _mm256_clmulepi64_epi128,
        poly = _mm256_set1_epi64x(0x87),
        lanes = |l| {
            let ((h0, l0), (h1, l1)) = (l(0), l(1));
            _mm256_set_epi64x(h1, l1, h0, l0)
        },
    }
}

width_ops! {
    #[target_feature(enable = "aes,pclmulqdq,avx,avx512f,avx512vl")]
    mod xmm32 {
        type V = __m128i;
        const W: usize = 1;
        load = _mm_loadu_si128, store = _mm_storeu_si128, xor = _mm_xor_si128,
        splat = std::convert::identity,
        enc = _mm_aesenc_si128, enc_last = _mm_aesenclast_si128,
        dec = _mm_aesdec_si128, dec_last = _mm_aesdeclast_si128,
        shl = _mm_bslli_si128, shr = _mm_bsrli_si128, clmul = _mm_clmulepi64_si128,
        poly = _mm_set_epi64x(0, 0x87),
        lanes = |l| {
            let (h0, l0) = l(0);
            _mm_set_epi64x(h0, l0)
        },
    }
}

xts_width! {
    #[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512bw,vaes,vpclmulqdq")]
    mod zmm_xts for zmm { G = 4, step = p::mul_alpha_bytes::<2, 14> }
}

xts_width! {
    #[target_feature(enable = "aes,pclmulqdq,avx2,vaes,vpclmulqdq")]
    mod ymm_xts for ymm { G = 8, step = p::mul_alpha_bytes::<2, 14> }
}

xts_width! {
    #[target_feature(enable = "aes,pclmulqdq,avx,avx512f,avx512vl")]
    mod xmm32_xts for xmm32 { G = 8, step = p::mul_alpha_bytes::<1, 15> }
}

/// The instructions of one group of 8 blocks of the `aes-ni` pass (see [`xmm_xts`]).
/// `$aes`/`$aes_last` name the round instructions (`vaesenc`/`vaesenclast` or the `dec`
/// pair); each `($key, $block)` is a middle round (key offset in bytes) that also prepares
/// one block (offset) of the next group; each `$key` after the `;` is a plain middle round.
///
/// Registers: xmm0-7 the 8 blocks, xmm8 the round key, xmm9-10 scratch for the tweaks,
/// xmm11 the first round key, xmm12 the last, xmm13 x^7 + x^2 + x + 1. Memory (16-byte
/// unaligned loads and stores): `{buf}` the 128 bytes, `{keys}` the round keys, `{cur}` this
/// group's prepared tweaks (8 of tweak XOR first round key, then 8 of tweak XOR last round
/// key), `{next}` the next group's (written here), `{tw}` the 8 tweaks of the next group
/// (replaced by those of the group after it).
macro_rules! xts8_asm {
    ($aes:literal, $aes_last:literal; $(($kp:literal, $bp:literal))*; $($k:literal)*) => {
        concat!(
            xts8_asm!(@enter "xmm0", 0), xts8_asm!(@enter "xmm1", 16),
            xts8_asm!(@enter "xmm2", 32), xts8_asm!(@enter "xmm3", 48),
            xts8_asm!(@enter "xmm4", 64), xts8_asm!(@enter "xmm5", 80),
            xts8_asm!(@enter "xmm6", 96), xts8_asm!(@enter "xmm7", 112),
            $( xts8_asm!(@round $aes, $kp), xts8_asm!(@prepare $bp), )*
            $( xts8_asm!(@round $aes, $k), )*
            xts8_asm!(@leave $aes_last, "xmm0", 0), xts8_asm!(@leave $aes_last, "xmm1", 16),
            xts8_asm!(@leave $aes_last, "xmm2", 32), xts8_asm!(@leave $aes_last, "xmm3", 48),
            xts8_asm!(@leave $aes_last, "xmm4", 64), xts8_asm!(@leave $aes_last, "xmm5", 80),
            xts8_asm!(@leave $aes_last, "xmm6", 96), xts8_asm!(@leave $aes_last, "xmm7", 112),
        )
    };
    // Block = data XOR (tweak XOR first round key): the tweak and round 0 in one XOR.
    (@enter $x:literal, $o:literal) => {
        concat!(
            "vmovdqu ", $x, ", xmmword ptr [{cur} + ", $o, "]\n",
            "vpxor ", $x, ", ", $x, ", xmmword ptr [{buf} + ", $o, "]\n",
        )
    };
    // One middle round of the 8 blocks.
    (@round $aes:literal, $k:literal) => {
        concat!(
            "vmovdqu xmm8, xmmword ptr [{keys} + ", $k, "]\n",
            $aes, " xmm0, xmm0, xmm8\n", $aes, " xmm1, xmm1, xmm8\n",
            $aes, " xmm2, xmm2, xmm8\n", $aes, " xmm3, xmm3, xmm8\n",
            $aes, " xmm4, xmm4, xmm8\n", $aes, " xmm5, xmm5, xmm8\n",
            $aes, " xmm6, xmm6, xmm8\n", $aes, " xmm7, xmm7, xmm8\n",
        )
    };
    // One block of the next group, between the rounds of this one (so the vector ALUs
    // that AES leaves free do it): its tweak XOR the first and the last round key, and the
    // tweak 8 blocks later (times alpha^8: a byte shift left, the byte shifted out times
    // x^7 + x^2 + x + 1 with one carry-less multiply).
    (@prepare $o:literal) => {
        concat!(
            "vmovdqu xmm9, xmmword ptr [{tw} + ", $o, "]\n",
            "vpxor xmm10, xmm9, xmm11\n",
            "vmovdqu xmmword ptr [{next} + ", $o, "], xmm10\n",
            "vpxor xmm10, xmm9, xmm12\n",
            "vmovdqu xmmword ptr [{next} + ", $o, " + 128], xmm10\n",
            "vpsrldq xmm10, xmm9, 15\n",
            "vpslldq xmm9, xmm9, 1\n",
            "vpclmulqdq xmm10, xmm10, xmm13, 0\n",
            "vpxor xmm9, xmm9, xmm10\n",
            "vmovdqu xmmword ptr [{tw} + ", $o, "], xmm9\n",
        )
    };
    // The last round, whose key already holds the tweak (AESENCLAST XORs its key last),
    // and the store.
    (@leave $aes_last:literal, $x:literal, $o:literal) => {
        concat!(
            $aes_last, " ", $x, ", ", $x, ", xmmword ptr [{cur} + ", $o, " + 128]\n",
            "vmovdqu xmmword ptr [{buf} + ", $o, "], ", $x, "\n",
        )
    };
}

/// The `aes-ni` pass (AES-NI on the 16 XMM registers of AVX), in `asm!`: 8 blocks in
/// flight, as in the other passes, but with the tweak material in memory rather than in
/// registers, where 8 blocks, their 8 tweaks and the round keys do not fit. Written with
/// intrinsics, LLVM's scheduler ran part of each group one block after another to save
/// registers (0.90-0.94x OpenSSL); in `asm!` the register use is fixed: each group is one
/// `asm!` block ([`xts8_asm!`]) whose middle rounds also prepare the next group's tweaks,
/// the way OpenSSL's `aesni_xts_encrypt` interleaves its tweak arithmetic with the rounds.
/// The per-call scratch is zeroized with 16-byte stores: zeroizing it through memset
/// (`rep stosb`) cost 5-10% on 4096-byte calls.
mod xmm_xts {
    use std::arch::x86_64::*;

    use zeroize::Zeroize;

    use super::{to_m128, Dir, Job, BLOCK, MAX_KEYS};

    /// Blocks in flight.
    const GROUP: usize = 8;
    /// Bytes in flight.
    const GROUP_BYTES: usize = GROUP * BLOCK;

    /// A group's prepared tweaks: each block's tweak XOR the first round key, then each
    /// block's tweak XOR the last round key.
    type Prepared = [__m128i; 2 * GROUP];

    /// Tweak material of one call, kept in memory between groups (zeroized at the end).
    struct State {
        /// The current group's and the next group's prepared tweaks (they swap roles
        /// after every group).
        prepared: [Prepared; 2],
        /// The tweaks of the group after the next.
        tweaks: [__m128i; GROUP],
    }

    /// XTS over all sectors of `buf` (see [`super::Keys::run`]).
    #[target_feature(enable = "aes,pclmulqdq,avx")]
    pub(super) fn run(job: &Job<'_>, buf: &mut [u8]) {
        match (job.keys.rounds, job.dir) {
            (10, Dir::Encrypt) => sectors::<10, false>(job, buf),
            (10, Dir::Decrypt) => sectors::<10, true>(job, buf),
            (_, Dir::Encrypt) => sectors::<14, false>(job, buf),
            (_, Dir::Decrypt) => sectors::<14, true>(job, buf),
        }
    }

    #[target_feature(enable = "aes,pclmulqdq,avx")]
    fn sectors<const R: usize, const DEC: bool>(job: &Job<'_>, buf: &mut [u8]) {
        let keys = job.keys;
        let data = if DEC { &keys.data_dec } else { &keys.data_enc };
        // Every slot is written before it is read; a filler that is not a constant keeps
        // the compiler from initializing through memset.
        let fill = to_m128(data[0]);
        let mut state = State {
            prepared: [[fill; 2 * GROUP]; 2],
            tweaks: [fill; GROUP],
        };
        let mut iv = job.first;
        for unit in buf.chunks_exact_mut(job.sector_size) {
            // Each sector's tweak on its own: out-of-order execution overlaps it with the
            // previous sector's last groups.
            let tweak = encrypt_block::<R>(&keys.tweak_enc, to_m128(iv));
            sector::<R, DEC>(data, unit, tweak, &mut state);
            iv = iv.wrapping_add(job.step);
        }
        state.prepared.zeroize();
        state.tweaks.zeroize();
    }

    /// AES encryption of one block (a sector's tweak).
    #[target_feature(enable = "aes,pclmulqdq,avx")]
    #[inline]
    fn encrypt_block<const R: usize>(keys: &[u128; MAX_KEYS], x: __m128i) -> __m128i {
        let mut x = _mm_xor_si128(x, to_m128(keys[0]));
        for k in &keys[1..R] {
            x = _mm_aesenc_si128(x, to_m128(*k));
        }
        _mm_aesenclast_si128(x, to_m128(keys[R]))
    }

    /// `t` times alpha^S (S < 64, SR = 64 - S): both 64-bit halves shifted left by S bits,
    /// the low half's top bits carried into the high half, and the high half's top bits
    /// folded back in times x^7 + x^2 + x + 1 with one carry-less multiply.
    #[target_feature(enable = "aes,pclmulqdq,avx")]
    #[inline]
    fn mul_alpha_bits<const S: i32, const SR: i32>(t: __m128i, poly: __m128i) -> __m128i {
        let out = _mm_srli_epi64::<SR>(t);
        let shifted = _mm_xor_si128(_mm_slli_epi64::<S>(t), _mm_bslli_si128::<8>(out));
        _mm_xor_si128(shifted, _mm_clmulepi64_si128::<0x01>(out, poly))
    }

    /// `t` times alpha^8 (as the `asm!` group does it).
    #[target_feature(enable = "aes,pclmulqdq,avx")]
    #[inline]
    fn mul_alpha8(t: __m128i, poly: __m128i) -> __m128i {
        let out = _mm_bsrli_si128::<15>(t);
        _mm_xor_si128(
            _mm_bslli_si128::<1>(t),
            _mm_clmulepi64_si128::<0x00>(out, poly),
        )
    }

    /// XTS over one data unit with encrypted tweak `tweak`.
    #[target_feature(enable = "aes,pclmulqdq,avx")]
    #[inline]
    fn sector<const R: usize, const DEC: bool>(
        rk: &[u128; MAX_KEYS],
        unit: &mut [u8],
        tweak: __m128i,
        state: &mut State,
    ) {
        let poly = _mm_set_epi64x(0, 0x87);
        let (first_key, last_key) = (to_m128(rk[0]), to_m128(rk[R]));
        // The first group's tweaks: tweak times alpha^i for block i.
        let tweaks = [
            tweak,
            mul_alpha_bits::<1, 63>(tweak, poly),
            mul_alpha_bits::<2, 62>(tweak, poly),
            mul_alpha_bits::<3, 61>(tweak, poly),
            mul_alpha_bits::<4, 60>(tweak, poly),
            mul_alpha_bits::<5, 59>(tweak, poly),
            mul_alpha_bits::<6, 58>(tweak, poly),
            mul_alpha_bits::<7, 57>(tweak, poly),
        ];
        let [cur, next] = &mut state.prepared;
        let (mut cur, mut next) = (cur, next);
        for (i, t) in tweaks.into_iter().enumerate() {
            cur[i] = _mm_xor_si128(t, first_key);
            cur[GROUP + i] = _mm_xor_si128(t, last_key);
            state.tweaks[i] = mul_alpha8(t, poly);
        }
        let (groups, tail) = unit.as_chunks_mut::<GROUP_BYTES>();
        for g in groups {
            group::<R, DEC>(rk, g, cur, next, &mut state.tweaks);
            std::mem::swap(&mut cur, &mut next);
        }
        if !tail.is_empty() {
            // Fewer blocks than a group (units that are not a multiple of 128 bytes): run a
            // whole group over a copy and keep the blocks that exist.
            let mut scratch = [0u8; GROUP_BYTES];
            let n = tail.len();
            if let Some(part) = scratch.get_mut(..n) {
                part.copy_from_slice(tail);
            }
            group::<R, DEC>(rk, &mut scratch, cur, next, &mut state.tweaks);
            if let Some(part) = scratch.get(..n) {
                tail.copy_from_slice(part);
            }
            scratch.zeroize();
        }
    }

    /// XTS over one group of 8 blocks whose prepared tweaks are in `cur`; prepares the
    /// next group's into `next` and advances `tweaks` by 8 blocks.
    #[target_feature(enable = "aes,pclmulqdq,avx")]
    #[inline]
    fn group<const R: usize, const DEC: bool>(
        rk: &[u128; MAX_KEYS],
        bytes: &mut [u8; GROUP_BYTES],
        cur: &Prepared,
        next: &mut Prepared,
        tweaks: &mut [__m128i; GROUP],
    ) {
        let first_key = to_m128(rk[0]);
        let last_key = to_m128(rk[R]);
        let poly = _mm_set_epi64x(0, 0x87);
        macro_rules! group_asm {
            ($($rounds:tt)*) => {
                // SAFETY: this function is compiled with AES, PCLMULQDQ and AVX (the only
                // instruction sets the block uses), and only runs where `Cpu::detect`
                // confirmed them (see `Keys::run`). The block touches memory only through
                // the five pointers, each from a reference to an array at least as long as
                // every offset it uses: `buf` 128 bytes (offsets 0-127, read and written,
                // `&mut`), `keys` 15 round keys (offsets 16 to 16 (R - 1) <= 208, read), `cur`
                // 16 blocks (read), `next` 16 blocks and `tw` 8 blocks (written, `&mut`,
                // distinct from `cur`). It writes xmm0-xmm10 (declared clobbered), only
                // reads its inputs xmm11-xmm13, uses no stack and leaves the flags alone.
                unsafe {
                    std::arch::asm!(
                        xts8_asm!($($rounds)*),
                        buf = in(reg) bytes.as_mut_ptr(),
                        keys = in(reg) rk.as_ptr(),
                        cur = in(reg) cur.as_ptr(),
                        next = in(reg) next.as_mut_ptr(),
                        tw = in(reg) tweaks.as_mut_ptr(),
                        in("xmm11") first_key,
                        in("xmm12") last_key,
                        in("xmm13") poly,
                        out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                        out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
                        out("xmm8") _, out("xmm9") _, out("xmm10") _,
                        options(nostack, preserves_flags),
                    )
                }
            };
        }
        // Rounds 1-8 each prepare one block of the next group; the rest are plain.
        match (R, DEC) {
            (10, false) => group_asm!("vaesenc", "vaesenclast";
                (16, 0) (32, 16) (48, 32) (64, 48) (80, 64) (96, 80) (112, 96) (128, 112);
                144),
            (10, true) => group_asm!("vaesdec", "vaesdeclast";
                (16, 0) (32, 16) (48, 32) (64, 48) (80, 64) (96, 80) (112, 96) (128, 112);
                144),
            (_, false) => group_asm!("vaesenc", "vaesenclast";
                (16, 0) (32, 16) (48, 32) (64, 48) (80, 64) (96, 80) (112, 96) (128, 112);
                144 160 176 192 208),
            (_, true) => group_asm!("vaesdec", "vaesdeclast";
                (16, 0) (32, 16) (48, 32) (64, 48) (80, 64) (96, 80) (112, 96) (128, 112);
                144 160 176 192 208),
        }
    }
}
