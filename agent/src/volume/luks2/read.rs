//! Finding and checking the two LUKS2 header copies on a device. The primary copy is at
//! offset 0; the secondary at offset `hdr_size`, which is taken from the primary when its
//! binary header is readable and otherwise searched at every allowed header size. Reading
//! never writes to the device.

use super::super::device::{BlockDevice, DeviceError};
use super::header::{self, BinaryHeader, HeaderCopy, HeaderError, BINARY_SIZE, HDR_SIZES};
use super::json::{Metadata, MetadataError};

/// Why one header copy could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The header bytes could not be read (device too small or I/O error).
    #[error("cannot read the header")]
    Device(#[source] DeviceError),
    /// The binary header is invalid.
    #[error(transparent)]
    Header(HeaderError),
    /// The JSON metadata is invalid.
    #[error("the JSON metadata is not valid")]
    Metadata(#[source] MetadataError),
    /// No secondary header was found at any allowed offset.
    #[error("no secondary header at any of the allowed offsets")]
    NoSecondary,
}

/// A header copy that passed every check.
#[derive(Debug, Clone)]
pub struct ValidCopy {
    /// Its binary header.
    pub header: BinaryHeader,
    /// Its metadata.
    pub metadata: Metadata,
}

/// Reads the copy `copy` whose binary header is at `offset`.
pub fn read_copy<D: BlockDevice>(
    dev: &mut D,
    copy: HeaderCopy,
    offset: u64,
) -> Result<ValidCopy, ReadError> {
    let mut first = vec![0u8; BINARY_SIZE];
    dev.read_at(offset, &mut first).map_err(ReadError::Device)?;
    let size = header::peek_size(&first, copy, offset).map_err(ReadError::Header)?;
    // `size` is one of HDR_SIZES (at most 4 MiB), so this allocation is bounded.
    let mut area = vec![0u8; size as usize];
    dev.read_at(offset, &mut area).map_err(ReadError::Device)?;
    let (hdr, json) = header::parse(&area, copy, offset).map_err(ReadError::Header)?;
    let metadata = Metadata::parse(&json, hdr.hdr_size).map_err(ReadError::Metadata)?;
    Ok(ValidCopy {
        header: hdr,
        metadata,
    })
}

/// The primary's `hdr_size` if at least its first bytes look like a LUKS2 header.
pub fn primary_size_hint<D: BlockDevice>(dev: &mut D) -> Option<u64> {
    let mut first = vec![0u8; BINARY_SIZE];
    dev.read_at(0, &mut first).ok()?;
    header::peek_size(&first, HeaderCopy::Primary, 0).ok()
}

/// Reads the secondary copy, at `hint` first and then at every allowed header size.
pub fn read_secondary<D: BlockDevice>(
    dev: &mut D,
    hint: Option<u64>,
) -> Result<ValidCopy, ReadError> {
    let mut first_error = None;
    let candidates = hint
        .into_iter()
        .chain(HDR_SIZES.iter().copied().filter(|s| Some(*s) != hint));
    for offset in candidates {
        match read_copy(dev, HeaderCopy::Secondary, offset) {
            Ok(v) => return Ok(v),
            // A wrong magic just means "not here"; keep the first real failure.
            Err(ReadError::Header(HeaderError::Magic { .. })) => {}
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    Err(first_error.unwrap_or(ReadError::NoSecondary))
}
