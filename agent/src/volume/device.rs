//! Block storage behind a volume: image files, block devices and in-memory buffers,
//! read and written at byte offsets with every range checked against the device size.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;

/// Errors of block device access.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device size could not be determined.
    #[error("cannot determine the device size")]
    Size(#[source] std::io::Error),
    /// A read or write would go past the end of the device (a truncated device).
    #[error(
        "range {offset}+{len} lies beyond the end of the device ({size} bytes): device truncated?"
    )]
    BeyondEnd {
        /// Start of the range in bytes.
        offset: u64,
        /// Length of the range in bytes.
        len: u64,
        /// Size of the device in bytes.
        size: u64,
    },
    /// Reading failed.
    #[error("read of {len} bytes at offset {offset} failed")]
    Read {
        /// Offset of the read.
        offset: u64,
        /// Length of the read.
        len: usize,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing failed.
    #[error("write of {len} bytes at offset {offset} failed")]
    Write {
        /// Offset of the write.
        offset: u64,
        /// Length of the write.
        len: usize,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Flushing to stable storage failed.
    #[error("sync to stable storage failed")]
    Sync(#[source] std::io::Error),
}

/// Byte-addressed storage that holds a volume (or a detached LUKS2 header).
pub trait BlockDevice {
    /// Size in bytes.
    fn size(&mut self) -> Result<u64, DeviceError>;
    /// Reads exactly `buf.len()` bytes at `offset`; fails if the range passes the end.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError>;
    /// Writes all of `buf` at `offset`. Image files may grow; other devices fail past the end.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DeviceError>;
    /// Flushes written data to stable storage.
    fn sync(&mut self) -> Result<(), DeviceError>;
}

/// Checks that `offset..offset+len` lies within a device of `size` bytes.
pub fn check_range(offset: u64, len: u64, size: u64) -> Result<(), DeviceError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(DeviceError::BeyondEnd { offset, len, size }),
    }
}

impl BlockDevice for File {
    fn size(&mut self) -> Result<u64, DeviceError> {
        // Seeking to the end works for block devices, where metadata().len() is 0.
        let end = self.seek(SeekFrom::End(0)).map_err(DeviceError::Size)?;
        Ok(end)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let size = self.size()?;
        check_range(offset, buf.len() as u64, size)?;
        self.read_exact_at(buf, offset)
            .map_err(|source| DeviceError::Read {
                offset,
                len: buf.len(),
                source,
            })
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        self.write_all_at(buf, offset)
            .map_err(|source| DeviceError::Write {
                offset,
                len: buf.len(),
                source,
            })
    }

    fn sync(&mut self) -> Result<(), DeviceError> {
        self.sync_data().map_err(DeviceError::Sync)
    }
}

/// An in-memory device of fixed size (tests, fuzzing, building images in memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemDevice(pub Vec<u8>);

impl MemDevice {
    /// The byte range `offset..offset + len`, checked against the device size.
    fn range(&self, offset: u64, len: usize) -> Result<std::ops::Range<usize>, DeviceError> {
        let size = self.0.len() as u64;
        check_range(offset, len as u64, size)?;
        let beyond = || DeviceError::BeyondEnd {
            offset,
            len: len as u64,
            size,
        };
        let start = usize::try_from(offset).map_err(|_| beyond())?;
        let end = start.checked_add(len).ok_or_else(beyond)?;
        if end > self.0.len() {
            return Err(beyond());
        }
        Ok(start..end)
    }
}

impl BlockDevice for MemDevice {
    fn size(&mut self) -> Result<u64, DeviceError> {
        Ok(self.0.len() as u64)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let range = self.range(offset, buf.len())?;
        buf.copy_from_slice(&self.0[range]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        let range = self.range(offset, buf.len())?;
        self.0[range].copy_from_slice(buf);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}
