//! Userspace AES-XTS engine (IEEE P1619) for LUKS2 data segments and keyslot areas.
//!
//! LUKS2 uses `aes-xts-plain64`: every sector is an XTS data unit whose tweak is the
//! 64-bit sector number ("plain64" IV) in little-endian byte order, zero-extended to
//! 128 bits (`aes-xts-plain` truncates it to 32 bits first). For data segments the IV
//! counts 512-byte units even when the segment uses 4096-byte sectors, so 4096-byte
//! sector `n` uses IV `8 n` (this is how dm-crypt and cryptsetup behave; it was measured
//! against data cryptsetup wrote). Keyslot areas use 512-byte sectors numbered from 0.
//!
//! Backends ([`Backend`]), chosen once per process at run time from the CPU's features
//! (no build flag a packager must know about): on x86-64, hand-written passes on VAES
//! with AVX-512 (`vaes-avx512`: Ice Lake and Sapphire Rapids servers, AMD Zen 4), on VAES
//! with AVX2 (`vaes-avx2`: AMD Zen 3, recent Intel client cores) and on AES-NI (`aes-ni`:
//! every other x86-64 CPU with AES-NI, PCLMULQDQ and AVX, Skylake and Cascade Lake servers
//! included), all in [`x86`]; everywhere else (other architectures, x86 CPUs without
//! AES-NI, PCLMULQDQ or AVX) the portable pass on RustCrypto's `aes` crate
//! ([`rustcrypto`], `rustcrypto-aes`), which picks ARMv8 AES, AES-NI or its constant-time
//! software implementation itself.
//!
//! AVX-512 CPUs without VAES run `aes-ni`, not `aes-ni-avx512` (the same AES-NI pass in
//! intrinsics on AVX-512VL's 32 XMM registers, which [`Backend::detect`] no longer picks):
//! measured side by side in the same `xts` bench runs, 3 runs on a Sapphire Rapids core
//! (both backends use only AES-NI, PCLMULQDQ and 128-bit registers, so both run there),
//! `aes-ni` was faster at 4096-byte and 1 MiB buffers, encrypt and decrypt (README.md has the
//! figures). Its group is one `asm!` block whose tweak work is interleaved with the rounds;
//! the 32-register pass leaves that order to LLVM. `aes-ni-avx512` stays for the bench
//! and the cross-backend tests.
//!
//! Why hand-written SIMD rather than a crate: `aes` 0.9 now selects its own VAES backend
//! at run time (no `--cfg` flag any more), and the `rustcrypto-aes` pass runs inside it,
//! but its block interface leaves XTS's tweak work outside the vector registers: it
//! measured 0.8-0.9x `openssl speed -evp aes-256-xts` on a VAES CPU. The XTS crate on
//! crates.io (`xts-mode`, unaudited) sits on the same block interface, so it cannot do
//! better. The hand-written pass is one small module whose `unsafe` is limited to
//! feature-checked entry calls and vector loads and stores (see [`x86`]). The `xts`
//! benchmark prints the backend chosen and the CPU flags that chose it, and measures every
//! backend the CPU runs next to `openssl speed` (figures in README.md). All backends are
//! checked against each other and against IEEE P1619 and OpenSSL vectors (`tests.rs`).
//!
//! Sector lengths must be a non-zero multiple of 16 bytes: LUKS sectors always are, so
//! ciphertext stealing is not needed and not implemented.

mod rustcrypto;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

/// XTS block size in bytes.
pub const BLOCK: usize = 16;

/// Errors of the XTS engine.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XtsError {
    /// The XTS key is neither 32 bytes (AES-128) nor 64 bytes (AES-256).
    #[error("XTS key must be 32 or 64 bytes (two AES keys), got {0} bytes")]
    KeyLength(usize),
    /// The sector size is zero or not a multiple of the 16-byte AES block.
    #[error("XTS sector size {0} is not a non-zero multiple of 16 bytes")]
    SectorSize(usize),
    /// The buffer does not hold a whole number of sectors.
    #[error("buffer of {len} bytes is not a whole number of {sector_size}-byte sectors")]
    PartialSector {
        /// Buffer length.
        len: usize,
        /// Sector size.
        sector_size: usize,
    },
    /// The IV of a later sector does not fit in 64 bits.
    #[error("sector IV overflows 64 bits (first IV {first}, step {step}, sector {index})")]
    IvOverflow {
        /// IV of the first sector.
        first: u64,
        /// IV increment per sector.
        step: u64,
        /// Index of the sector whose IV overflowed.
        index: u64,
    },
    /// A backend was asked for that this CPU cannot run.
    #[error("XTS backend {backend} needs CPU features this CPU lacks ({features})")]
    Unsupported {
        /// The backend asked for.
        backend: Backend,
        /// The CPU features it needs.
        features: String,
    },
}

/// An implementation of the XTS pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// VAES and VPCLMULQDQ on 512-bit registers, 16 blocks in flight.
    VaesAvx512,
    /// VAES and VPCLMULQDQ on 256-bit registers, 16 blocks in flight.
    VaesAvx2,
    /// AES-NI and PCLMULQDQ on the 32 128-bit registers of AVX-512VL, 8 blocks in flight
    /// (measured slower than [`Backend::AesNi`], so never chosen at run time: see the
    /// module docs).
    AesNiAvx512,
    /// AES-NI and PCLMULQDQ on the 16 128-bit registers of AVX, 8 blocks in flight (in
    /// `asm!`, the tweaks kept in memory).
    AesNi,
    /// RustCrypto's `aes` crate, which picks its own implementation (portable).
    RustCrypto,
}

impl Backend {
    /// Every backend, fastest first: [`Backend::detect`] takes the first this CPU runs
    /// (so never `AesNiAvx512`, whose CPUs all run the faster `AesNi`).
    pub const ALL: [Backend; 5] = [
        Backend::VaesAvx512,
        Backend::VaesAvx2,
        Backend::AesNi,
        Backend::AesNiAvx512,
        Backend::RustCrypto,
    ];

    /// Short name, as the benchmark and `Debug` of [`Xts`] print it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::VaesAvx512 => "vaes-avx512",
            Backend::VaesAvx2 => "vaes-avx2",
            Backend::AesNiAvx512 => "aes-ni-avx512",
            Backend::AesNi => "aes-ni",
            Backend::RustCrypto => "rustcrypto-aes",
        }
    }

    /// The CPU features (as `/proc/cpuinfo` names them) this backend needs.
    pub fn cpu_features(self) -> &'static [&'static str] {
        match self.width() {
            #[cfg(target_arch = "x86_64")]
            Some(w) => w.features(),
            #[cfg(not(target_arch = "x86_64"))]
            Some(w) => match w {},
            None => &[],
        }
    }

    /// Whether this CPU can run the backend.
    pub fn supported(self) -> bool {
        match self.width() {
            #[cfg(target_arch = "x86_64")]
            Some(w) => x86::Cpu::detect(w).is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            Some(w) => match w {},
            None => true,
        }
    }

    /// The backends this CPU can run, fastest first.
    pub fn available() -> Vec<Backend> {
        Backend::ALL.into_iter().filter(|b| b.supported()).collect()
    }

    /// The fastest backend this CPU runs, detected once per process.
    pub fn detect() -> Backend {
        static CHOSEN: OnceLock<Backend> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            Backend::ALL
                .into_iter()
                .find(|b| b.supported())
                .unwrap_or(Backend::RustCrypto)
        })
    }

    #[cfg(target_arch = "x86_64")]
    fn width(self) -> Option<x86::Width> {
        match self {
            Backend::VaesAvx512 => Some(x86::Width::Zmm),
            Backend::VaesAvx2 => Some(x86::Width::Ymm),
            Backend::AesNiAvx512 => Some(x86::Width::Xmm32),
            Backend::AesNi => Some(x86::Width::Xmm),
            Backend::RustCrypto => None,
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn width(self) -> Option<std::convert::Infallible> {
        None
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The CPU features that decide between the backends, each with whether this CPU has it
/// (for the benchmark's report; empty off x86-64).
pub fn cpu_flags() -> Vec<(&'static str, bool)> {
    #[cfg(target_arch = "x86_64")]
    {
        [
            "aes",
            "pclmulqdq",
            "avx",
            "avx2",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "vaes",
            "vpclmulqdq",
        ]
        .iter()
        .map(|f| (*f, x86::feature_detected(f).unwrap_or(false)))
        .collect()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
}

/// The expanded keys, in the form the chosen backend uses.
enum Keys {
    #[cfg(target_arch = "x86_64")]
    X86(Box<x86::Keys>),
    RustCrypto(rustcrypto::Keys),
}

/// An AES-XTS cipher with its expanded keys.
pub struct Xts {
    keys: Keys,
    key_len: usize,
}

impl std::fmt::Debug for Xts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Xts(aes, {}-bit key, {})",
            self.key_len * 8,
            self.backend()
        )
    }
}

/// Direction of an XTS operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Encrypt,
    Decrypt,
}

impl Xts {
    /// Builds the cipher from an XTS key on the fastest backend this CPU runs: the first
    /// half keys the data cipher, the second half the tweak cipher (32 bytes for
    /// AES-128-XTS, 64 bytes for AES-256-XTS).
    pub fn new(key: &[u8]) -> Result<Self, XtsError> {
        Xts::with_backend(key, Backend::detect())
    }

    /// Builds the cipher on a given backend (tests and the benchmark compare them).
    pub fn with_backend(key: &[u8], backend: Backend) -> Result<Self, XtsError> {
        if key.len() != 32 && key.len() != 64 {
            return Err(XtsError::KeyLength(key.len()));
        }
        let keys = match backend.width() {
            #[cfg(target_arch = "x86_64")]
            Some(w) => {
                let unsupported = || XtsError::Unsupported {
                    backend,
                    features: backend.cpu_features().join(","),
                };
                let cpu = x86::Cpu::detect(w).ok_or_else(unsupported)?;
                Keys::X86(Box::new(
                    x86::Keys::new(cpu, key).ok_or(XtsError::KeyLength(key.len()))?,
                ))
            }
            #[cfg(not(target_arch = "x86_64"))]
            Some(w) => match w {},
            None => Keys::RustCrypto(rustcrypto::Keys::new(key)?),
        };
        Ok(Xts {
            keys,
            key_len: key.len(),
        })
    }

    /// The backend this cipher runs on.
    pub fn backend(&self) -> Backend {
        match &self.keys {
            #[cfg(target_arch = "x86_64")]
            Keys::X86(k) => match k.width() {
                x86::Width::Zmm => Backend::VaesAvx512,
                x86::Width::Ymm => Backend::VaesAvx2,
                x86::Width::Xmm32 => Backend::AesNiAvx512,
                x86::Width::Xmm => Backend::AesNi,
            },
            Keys::RustCrypto(_) => Backend::RustCrypto,
        }
    }

    /// Key length in bytes (both halves).
    pub fn key_len(&self) -> usize {
        self.key_len
    }

    /// Encrypts consecutive sectors in place. Sector `i` of `buf` uses the IV
    /// `first_iv + i * iv_step` as its 128-bit little-endian tweak.
    pub fn encrypt_sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        first_iv: u64,
        iv_step: u64,
    ) -> Result<(), XtsError> {
        self.sectors(Dir::Encrypt, buf, sector_size, first_iv, iv_step)
    }

    /// Decrypts consecutive sectors in place; the inverse of [`Xts::encrypt_sectors`].
    pub fn decrypt_sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        first_iv: u64,
        iv_step: u64,
    ) -> Result<(), XtsError> {
        self.sectors(Dir::Decrypt, buf, sector_size, first_iv, iv_step)
    }

    /// Encrypts one data unit of any non-zero multiple of 16 bytes with a full 128-bit tweak.
    pub fn encrypt_unit(&self, unit: &mut [u8], tweak: u128) -> Result<(), XtsError> {
        check_sector_size(unit.len())?;
        self.run(Dir::Encrypt, unit, unit.len(), tweak, 0);
        Ok(())
    }

    /// Decrypts one data unit; the inverse of [`Xts::encrypt_unit`].
    pub fn decrypt_unit(&self, unit: &mut [u8], tweak: u128) -> Result<(), XtsError> {
        check_sector_size(unit.len())?;
        self.run(Dir::Decrypt, unit, unit.len(), tweak, 0);
        Ok(())
    }

    fn sectors(
        &self,
        dir: Dir,
        buf: &mut [u8],
        sector_size: usize,
        first_iv: u64,
        iv_step: u64,
    ) -> Result<(), XtsError> {
        check_sector_size(sector_size)?;
        if !buf.len().is_multiple_of(sector_size) {
            return Err(XtsError::PartialSector {
                len: buf.len(),
                sector_size,
            });
        }
        let count = (buf.len() / sector_size) as u64;
        // Every sector's IV must fit in 64 bits: the last is first + (count - 1) * step.
        if count > 1 && iv_step > 0 {
            let fitting = (u64::MAX - first_iv) / iv_step;
            if count - 1 > fitting {
                return Err(XtsError::IvOverflow {
                    first: first_iv,
                    step: iv_step,
                    index: fitting + 1,
                });
            }
        }
        if !buf.is_empty() {
            self.run(
                dir,
                buf,
                sector_size,
                u128::from(first_iv),
                u128::from(iv_step),
            );
        }
        Ok(())
    }

    /// XTS over `buf` of whole `sector_size` units (checked), unit `i` with tweak
    /// `first + i * step` (checked not to overflow).
    fn run(&self, dir: Dir, buf: &mut [u8], sector_size: usize, first: u128, step: u128) {
        match &self.keys {
            #[cfg(target_arch = "x86_64")]
            Keys::X86(k) => k.run(dir, buf, sector_size, first, step),
            Keys::RustCrypto(k) => {
                let mut tweak = first;
                for unit in buf.chunks_exact_mut(sector_size) {
                    k.unit(dir, unit, tweak);
                    tweak = tweak.wrapping_add(step);
                }
            }
        }
    }
}

fn check_sector_size(size: usize) -> Result<(), XtsError> {
    if size == 0 || !size.is_multiple_of(BLOCK) {
        return Err(XtsError::SectorSize(size));
    }
    Ok(())
}

/// Multiplies a tweak by the primitive element alpha of GF(2^128) (little-endian
/// convention of IEEE P1619: shift left by one bit, reduce with x^7 + x^2 + x + 1).
#[inline(always)]
fn mul_alpha(t: u128) -> u128 {
    (t << 1) ^ ((t >> 127) * 0x87)
}

/// Multiplies a tweak by alpha^k for k < 64 without a chain of single steps: shift left
/// by k bits and fold the k bits shifted out back in (times x^7 + x^2 + x + 1; the
/// product has fewer than 71 bits, so no second reduction is needed).
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn mul_alpha_pow(t: u128, k: u32) -> u128 {
    if k == 0 || k >= 64 {
        return if k == 0 {
            t
        } else {
            (0..k).fold(t, |t, _| mul_alpha(t))
        };
    }
    let h = t >> (128 - k);
    (t << k) ^ h ^ (h << 1) ^ (h << 2) ^ (h << 7)
}

#[cfg(test)]
mod tests;
