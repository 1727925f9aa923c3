//! Cipher specifications of LUKS2 keyslot areas and segments. Supported: AES in XTS
//! mode with the `plain64` IV (64-bit sector number) or `plain` (sector number
//! truncated to 32 bits), 256- or 512-bit keys.

/// Errors of cipher specification parsing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    /// The cipher specification is not supported.
    #[error("unsupported cipher {0:?} (supported: aes-xts-plain64, aes-xts-plain)")]
    Unsupported(String),
}

/// How a sector number becomes the XTS tweak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IvMode {
    /// Full 64-bit sector number.
    Plain64,
    /// Sector number truncated to 32 bits.
    Plain,
}

impl IvMode {
    /// Parses a cipher specification such as `aes-xts-plain64`.
    pub fn parse(spec: &str) -> Result<Self, CipherError> {
        match spec {
            "aes-xts-plain64" => Ok(IvMode::Plain64),
            "aes-xts-plain" => Ok(IvMode::Plain),
            other => Err(CipherError::Unsupported(other.to_string())),
        }
    }

    /// The IV value for a sector number.
    pub fn iv(self, sector_number: u64) -> u64 {
        match self {
            IvMode::Plain64 => sector_number,
            IvMode::Plain => sector_number & 0xffff_ffff,
        }
    }
}
