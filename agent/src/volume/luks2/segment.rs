//! Encrypted data segments: sector I/O through the XTS engine. Sector `n` of a segment
//! (in the segment's sector size, counted from the segment's start) uses the IV
//! `iv_tweak + n * sector_size / 512`: dm-crypt counts IVs in 512-byte units even for
//! 4096-byte sectors (measured against data cryptsetup wrote).

use zeroize::Zeroizing;

use super::super::device::{check_range, BlockDevice, DeviceError};
use super::super::xts::{Xts, XtsError};
use super::cipher::{CipherError, IvMode};
use super::json::{Segment, SegmentSize};

/// Errors of data segment access.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The segment is not of type `crypt`.
    #[error("segment type {0:?} is not an encrypted segment")]
    Kind(String),
    /// The segment has no cipher.
    #[error("segment has no encryption field")]
    NoCipher,
    /// The cipher is not supported.
    #[error("the segment cipher is unusable")]
    Cipher(#[source] CipherError),
    /// The sector size is not a power of two from 512 to 4096.
    #[error("segment sector size {0} is not 512, 1024, 2048 or 4096")]
    SectorSize(u32),
    /// The volume key does not suit the cipher.
    #[error("the volume key is unusable")]
    Key(#[source] XtsError),
    /// The buffer is not a whole number of sectors.
    #[error("buffer of {len} bytes is not a whole number of {sector_size}-byte sectors")]
    Partial {
        /// Buffer length.
        len: usize,
        /// Sector size.
        sector_size: u32,
    },
    /// The sectors lie beyond the segment's end.
    #[error("sectors {first}..{end} lie beyond the segment's {count} sectors")]
    OutOfSegment {
        /// First sector.
        first: u64,
        /// End sector (exclusive).
        end: u64,
        /// Sectors in the segment.
        count: u64,
    },
    /// An IV does not fit in 64 bits.
    #[error("IV of sector {0} overflows")]
    IvOverflow(u64),
    /// Device access failed.
    #[error("data device access failed")]
    Device(#[source] DeviceError),
    /// Encryption failed.
    #[error("XTS encryption failed")]
    Xts(#[source] XtsError),
}

/// An opened encrypted segment.
pub struct DataSegment {
    xts: Xts,
    iv: IvMode,
    /// Byte offset of the segment on the data device.
    pub offset: u64,
    /// Segment size.
    pub size: SegmentSize,
    /// Sector size in bytes.
    pub sector_size: u32,
    /// IV of the segment's first sector, in 512-byte units.
    pub iv_tweak: u64,
}

impl std::fmt::Debug for DataSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataSegment")
            .field("offset", &self.offset)
            .field("size", &self.size)
            .field("sector_size", &self.sector_size)
            .field("iv_tweak", &self.iv_tweak)
            .finish_non_exhaustive()
    }
}

impl DataSegment {
    /// Opens segment `seg` with `volume_key`.
    pub fn new(seg: &Segment, volume_key: &Zeroizing<Vec<u8>>) -> Result<Self, SegmentError> {
        if seg.kind != "crypt" {
            return Err(SegmentError::Kind(seg.kind.clone()));
        }
        let spec = seg.encryption.as_deref().ok_or(SegmentError::NoCipher)?;
        let iv = IvMode::parse(spec).map_err(SegmentError::Cipher)?;
        let sector_size = seg.sector_size.unwrap_or(512);
        if ![512, 1024, 2048, 4096].contains(&sector_size) {
            return Err(SegmentError::SectorSize(sector_size));
        }
        Ok(DataSegment {
            xts: Xts::new(volume_key).map_err(SegmentError::Key)?,
            iv,
            offset: seg.offset.0,
            size: seg.size,
            sector_size,
            iv_tweak: seg.iv_tweak.map(|d| d.0).unwrap_or(0),
        })
    }

    /// Number of sectors in the segment on a data device of `dev_size` bytes.
    pub fn sectors(&self, dev_size: u64) -> u64 {
        let bytes = match self.size {
            SegmentSize::Dynamic => dev_size.saturating_sub(self.offset),
            SegmentSize::Bytes(n) => n,
        };
        bytes / u64::from(self.sector_size)
    }

    fn check(&self, first: u64, len: usize, count: Option<u64>) -> Result<u64, SegmentError> {
        let ss = self.sector_size as usize;
        if !len.is_multiple_of(ss) {
            return Err(SegmentError::Partial {
                len,
                sector_size: self.sector_size,
            });
        }
        let n = (len / ss) as u64;
        let end = first
            .checked_add(n)
            .ok_or(SegmentError::IvOverflow(first))?;
        if let Some(count) = count {
            if end > count {
                return Err(SegmentError::OutOfSegment { first, end, count });
            }
        }
        Ok(n)
    }

    fn crypt(&self, first: u64, buf: &mut [u8], encrypt: bool) -> Result<(), SegmentError> {
        let n = self.check(first, buf.len(), None)?;
        let step = u64::from(self.sector_size / 512);
        let ss = self.sector_size as usize;
        let iv_of = |s: u64| -> Result<u64, SegmentError> {
            s.checked_mul(step)
                .and_then(|v| v.checked_add(self.iv_tweak))
                .ok_or(SegmentError::IvOverflow(s))
        };
        if self.iv == IvMode::Plain64 {
            // One call for the whole run: IVs are consecutive multiples of `step`.
            let first_iv = iv_of(first)?;
            iv_of(first + n.saturating_sub(1))?;
            let r = if encrypt {
                self.xts.encrypt_sectors(buf, ss, first_iv, step)
            } else {
                self.xts.decrypt_sectors(buf, ss, first_iv, step)
            };
            return r.map_err(SegmentError::Xts);
        }
        for (i, sector) in (first..).zip(buf.chunks_exact_mut(ss)) {
            let iv = self.iv.iv(iv_of(i)?);
            let r = if encrypt {
                self.xts.encrypt_sectors(sector, ss, iv, 0)
            } else {
                self.xts.decrypt_sectors(sector, ss, iv, 0)
            };
            r.map_err(SegmentError::Xts)?;
        }
        Ok(())
    }

    /// Encrypts whole sectors in memory; `first` is the segment sector of `buf`'s start.
    pub fn encrypt(&self, first: u64, buf: &mut [u8]) -> Result<(), SegmentError> {
        self.crypt(first, buf, true)
    }

    /// Decrypts whole sectors in memory.
    pub fn decrypt(&self, first: u64, buf: &mut [u8]) -> Result<(), SegmentError> {
        self.crypt(first, buf, false)
    }

    fn byte_offset(&self, first: u64) -> Result<u64, SegmentError> {
        first
            .checked_mul(u64::from(self.sector_size))
            .and_then(|b| b.checked_add(self.offset))
            .ok_or(SegmentError::IvOverflow(first))
    }

    /// Reads and decrypts sectors starting at segment sector `first` into `buf`.
    pub fn read<D: BlockDevice>(
        &self,
        dev: &mut D,
        first: u64,
        buf: &mut [u8],
    ) -> Result<(), SegmentError> {
        let size = dev.size().map_err(SegmentError::Device)?;
        self.check(first, buf.len(), Some(self.sectors(size)))?;
        let at = self.byte_offset(first)?;
        check_range(at, buf.len() as u64, size).map_err(SegmentError::Device)?;
        dev.read_at(at, buf).map_err(SegmentError::Device)?;
        self.decrypt(first, buf)
    }

    /// Encrypts `buf` in place and writes it at segment sector `first` (on return `buf`
    /// holds ciphertext).
    pub fn write<D: BlockDevice>(
        &self,
        dev: &mut D,
        first: u64,
        buf: &mut [u8],
    ) -> Result<(), SegmentError> {
        let size = dev.size().map_err(SegmentError::Device)?;
        self.check(first, buf.len(), Some(self.sectors(size)))?;
        let at = self.byte_offset(first)?;
        self.encrypt(first, buf)?;
        dev.write_at(at, buf).map_err(SegmentError::Device)
    }
}
