//! The LUKS2 binary header: the 4096-byte structure at the start of each of the two
//! header copies (primary at offset 0, secondary at offset `hdr_size`), followed by the
//! JSON metadata area. Parsing checks magic, version, size, position and the checksum
//! (the hash named in `checksum_alg` over the whole `hdr_size` bytes with the checksum
//! field zeroed); serialising computes it.
//!
//! Layout (big-endian integers): magic[6] @0, version u16 @6, hdr_size u64 @8,
//! seqid u64 @16, label[48] @24, checksum_alg[32] @72, salt[64] @104, uuid[40] @168,
//! subsystem[48] @208, hdr_offset u64 @256, padding[184] @264, csum[64] @448,
//! padding to 4096.

use super::hash::LuksHash;

/// Size of the binary part of a header.
pub const BINARY_SIZE: usize = 4096;
/// Header sizes (binary header + JSON area) allowed by the specification.
pub const HDR_SIZES: [u64; 9] = [
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x10_0000, 0x20_0000, 0x40_0000,
];
/// Magic of the primary header.
pub const MAGIC_PRIMARY: [u8; 6] = *b"LUKS\xba\xbe";
/// Magic of the secondary header.
pub const MAGIC_SECONDARY: [u8; 6] = *b"SKUL\xba\xbe";

const OFF_VERSION: usize = 6;
const OFF_HDR_SIZE: usize = 8;
const OFF_SEQID: usize = 16;
const OFF_LABEL: usize = 24;
const LEN_LABEL: usize = 48;
const OFF_CSUM_ALG: usize = 72;
const LEN_CSUM_ALG: usize = 32;
const OFF_SALT: usize = 104;
const LEN_SALT: usize = 64;
const OFF_UUID: usize = 168;
const LEN_UUID: usize = 40;
const OFF_SUBSYSTEM: usize = 208;
const LEN_SUBSYSTEM: usize = 48;
const OFF_HDR_OFFSET: usize = 256;
const OFF_CSUM: usize = 448;
const LEN_CSUM: usize = 64;

/// Errors of binary header parsing and serialising.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than the header needs.
    #[error("header area truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: u64,
        /// Bytes available.
        have: u64,
    },
    /// The magic is not the one expected at this position.
    #[error("bad magic {found:02x?} at offset {offset} (expected {expected:02x?})")]
    Magic {
        /// Device offset of the header.
        offset: u64,
        /// Magic found.
        found: [u8; 6],
        /// Magic expected.
        expected: [u8; 6],
    },
    /// The version is not 2.
    #[error("header at offset {offset} has version {version}, not LUKS2")]
    Version {
        /// Device offset of the header.
        offset: u64,
        /// Version found.
        version: u16,
    },
    /// `hdr_size` is not one of the allowed sizes.
    #[error("header at offset {offset} has invalid hdr_size {size}")]
    HdrSize {
        /// Device offset of the header.
        offset: u64,
        /// Size found.
        size: u64,
    },
    /// `hdr_offset` does not match where the header was found.
    #[error("header found at offset {offset} claims hdr_offset {claimed}")]
    HdrOffset {
        /// Where it was found.
        offset: u64,
        /// What it says.
        claimed: u64,
    },
    /// A text field is not NUL-terminated UTF-8.
    #[error("header field {field} at offset {offset} is not NUL-terminated UTF-8")]
    Text {
        /// Field name.
        field: &'static str,
        /// Device offset of the header.
        offset: u64,
    },
    /// The checksum algorithm is not supported.
    #[error("header at offset {offset}: unsupported checksum algorithm {alg:?}")]
    ChecksumAlg {
        /// Device offset of the header.
        offset: u64,
        /// Algorithm named.
        alg: String,
    },
    /// The checksum does not match.
    #[error("header at offset {offset}: checksum mismatch (header or JSON area corrupt)")]
    Checksum {
        /// Device offset of the header.
        offset: u64,
    },
    /// The JSON area holds no NUL terminator or is not UTF-8.
    #[error("header at offset {offset}: JSON area is not NUL-terminated UTF-8")]
    JsonText {
        /// Device offset of the header.
        offset: u64,
    },
    /// A text field is too long to serialise.
    #[error("{field} is {len} bytes, at most {max} fit")]
    FieldTooLong {
        /// Field name.
        field: &'static str,
        /// Its length.
        len: usize,
        /// Maximum length.
        max: usize,
    },
    /// The JSON text does not fit in the JSON area (one NUL must follow it).
    #[error("JSON metadata of {len} bytes does not fit the {area}-byte JSON area")]
    JsonTooLarge {
        /// JSON length.
        len: usize,
        /// JSON area size.
        area: u64,
    },
}

/// Which of the two header copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCopy {
    /// The primary header at offset 0.
    Primary,
    /// The secondary header at offset `hdr_size`.
    Secondary,
}

impl HeaderCopy {
    fn magic(self) -> [u8; 6] {
        match self {
            HeaderCopy::Primary => MAGIC_PRIMARY,
            HeaderCopy::Secondary => MAGIC_SECONDARY,
        }
    }
}

/// The fields of a LUKS2 binary header (checksum and magic are derived).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryHeader {
    /// Header size: binary header plus JSON area.
    pub hdr_size: u64,
    /// Sequence id, increased on every update.
    pub seqid: u64,
    /// Volume label (at most 47 bytes).
    pub label: String,
    /// Checksum algorithm name (`sha256`).
    pub checksum_alg: String,
    /// Per-copy random salt.
    pub salt: [u8; LEN_SALT],
    /// Volume UUID in text form.
    pub uuid: String,
    /// Subsystem label (at most 47 bytes).
    pub subsystem: String,
    /// Offset of this copy on the device.
    pub hdr_offset: u64,
}

fn be_u16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn be_u64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

fn text(
    b: &[u8],
    off: usize,
    len: usize,
    field: &'static str,
    at: u64,
) -> Result<String, HeaderError> {
    let raw = b.get(off..off + len).ok_or(HeaderError::Truncated {
        need: (off + len) as u64,
        have: b.len() as u64,
    })?;
    let end = raw
        .iter()
        .position(|&c| c == 0)
        .ok_or(HeaderError::Text { field, offset: at })?;
    let s = raw.get(..end).unwrap_or_default();
    std::str::from_utf8(s)
        .map(str::to_string)
        .map_err(|_| HeaderError::Text { field, offset: at })
}

/// Reads `hdr_size` from the first bytes of a header after checking magic and version,
/// so that the caller knows how much to read. `offset` is where the bytes were read.
pub fn peek_size(first: &[u8], copy: HeaderCopy, offset: u64) -> Result<u64, HeaderError> {
    let magic: [u8; 6] =
        first
            .get(..6)
            .and_then(|m| m.try_into().ok())
            .ok_or(HeaderError::Truncated {
                need: BINARY_SIZE as u64,
                have: first.len() as u64,
            })?;
    if magic != copy.magic() {
        return Err(HeaderError::Magic {
            offset,
            found: magic,
            expected: copy.magic(),
        });
    }
    let version = be_u16(first, OFF_VERSION).ok_or(HeaderError::Truncated {
        need: BINARY_SIZE as u64,
        have: first.len() as u64,
    })?;
    if version != 2 {
        return Err(HeaderError::Version { offset, version });
    }
    let size = be_u64(first, OFF_HDR_SIZE).ok_or(HeaderError::Truncated {
        need: BINARY_SIZE as u64,
        have: first.len() as u64,
    })?;
    if !HDR_SIZES.contains(&size) {
        return Err(HeaderError::HdrSize { offset, size });
    }
    Ok(size)
}

/// Parses a whole header copy (`area` holds at least `hdr_size` bytes read at `offset`)
/// and returns the binary header and the JSON text.
pub fn parse(
    area: &[u8],
    copy: HeaderCopy,
    offset: u64,
) -> Result<(BinaryHeader, String), HeaderError> {
    let hdr_size = peek_size(area, copy, offset)?;
    let whole = usize::try_from(hdr_size)
        .ok()
        .and_then(|n| area.get(..n))
        .ok_or(HeaderError::Truncated {
            need: hdr_size,
            have: area.len() as u64,
        })?;
    let hdr_offset = be_u64(whole, OFF_HDR_OFFSET).unwrap_or(u64::MAX);
    if hdr_offset != offset {
        return Err(HeaderError::HdrOffset {
            offset,
            claimed: hdr_offset,
        });
    }
    let checksum_alg = text(whole, OFF_CSUM_ALG, LEN_CSUM_ALG, "checksum_alg", offset)?;
    let hash = LuksHash::from_name(&checksum_alg).map_err(|_| HeaderError::ChecksumAlg {
        offset,
        alg: checksum_alg.clone(),
    })?;
    let stored = whole
        .get(OFF_CSUM..OFF_CSUM + hash.digest_len())
        .unwrap_or_default();
    let computed = checksum(whole, hash);
    if stored != computed.as_slice() {
        return Err(HeaderError::Checksum { offset });
    }
    let mut salt = [0u8; LEN_SALT];
    salt.copy_from_slice(
        whole
            .get(OFF_SALT..OFF_SALT + LEN_SALT)
            .unwrap_or(&[0u8; LEN_SALT]),
    );
    let header = BinaryHeader {
        hdr_size,
        seqid: be_u64(whole, OFF_SEQID).unwrap_or_default(),
        label: text(whole, OFF_LABEL, LEN_LABEL, "label", offset)?,
        checksum_alg,
        salt,
        uuid: text(whole, OFF_UUID, LEN_UUID, "uuid", offset)?,
        subsystem: text(whole, OFF_SUBSYSTEM, LEN_SUBSYSTEM, "subsystem", offset)?,
        hdr_offset,
    };
    let json_area = whole.get(BINARY_SIZE..).unwrap_or_default();
    let end = json_area
        .iter()
        .position(|&c| c == 0)
        .ok_or(HeaderError::JsonText { offset })?;
    let json = std::str::from_utf8(json_area.get(..end).unwrap_or_default())
        .map_err(|_| HeaderError::JsonText { offset })?
        .to_string();
    Ok((header, json))
}

/// Checksum of a whole header copy with its checksum field taken as zero.
fn checksum(whole: &[u8], hash: LuksHash) -> Vec<u8> {
    let before = whole.get(..OFF_CSUM).unwrap_or_default();
    let after = whole.get(OFF_CSUM + LEN_CSUM..).unwrap_or_default();
    hash.digest(&[before, &[0u8; LEN_CSUM], after])
}

fn put_text(
    buf: &mut [u8],
    off: usize,
    len: usize,
    value: &str,
    field: &'static str,
) -> Result<(), HeaderError> {
    let bytes = value.as_bytes();
    if bytes.len() >= len || bytes.contains(&0) {
        return Err(HeaderError::FieldTooLong {
            field,
            len: bytes.len(),
            max: len - 1,
        });
    }
    if let Some(dst) = buf.get_mut(off..off + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
    Ok(())
}

/// Serialises one header copy: binary header (with `copy`'s magic and `hdr_offset`)
/// plus `json` NUL-padded to the JSON area, with its checksum.
pub fn serialize(
    header: &BinaryHeader,
    copy: HeaderCopy,
    json: &str,
) -> Result<Vec<u8>, HeaderError> {
    let hash = LuksHash::from_name(&header.checksum_alg).map_err(|_| HeaderError::ChecksumAlg {
        offset: header.hdr_offset,
        alg: header.checksum_alg.clone(),
    })?;
    let size = usize::try_from(header.hdr_size)
        .ok()
        .filter(|_| HDR_SIZES.contains(&header.hdr_size))
        .ok_or(HeaderError::HdrSize {
            offset: header.hdr_offset,
            size: header.hdr_size,
        })?;
    let area = header.hdr_size - BINARY_SIZE as u64;
    if json.len() as u64 >= area {
        return Err(HeaderError::JsonTooLarge {
            len: json.len(),
            area,
        });
    }
    let mut buf = vec![0u8; size];
    let fields: [(usize, &[u8]); 4] = [
        (0, &copy.magic()),
        (OFF_VERSION, &2u16.to_be_bytes()),
        (OFF_HDR_SIZE, &header.hdr_size.to_be_bytes()),
        (OFF_SEQID, &header.seqid.to_be_bytes()),
    ];
    for (off, bytes) in fields {
        if let Some(dst) = buf.get_mut(off..off + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    put_text(&mut buf, OFF_LABEL, LEN_LABEL, &header.label, "label")?;
    put_text(
        &mut buf,
        OFF_CSUM_ALG,
        LEN_CSUM_ALG,
        &header.checksum_alg,
        "checksum_alg",
    )?;
    if let Some(dst) = buf.get_mut(OFF_SALT..OFF_SALT + LEN_SALT) {
        dst.copy_from_slice(&header.salt);
    }
    put_text(&mut buf, OFF_UUID, LEN_UUID, &header.uuid, "uuid")?;
    put_text(
        &mut buf,
        OFF_SUBSYSTEM,
        LEN_SUBSYSTEM,
        &header.subsystem,
        "subsystem",
    )?;
    if let Some(dst) = buf.get_mut(OFF_HDR_OFFSET..OFF_HDR_OFFSET + 8) {
        dst.copy_from_slice(&header.hdr_offset.to_be_bytes());
    }
    if let Some(dst) = buf.get_mut(BINARY_SIZE..BINARY_SIZE + json.len()) {
        dst.copy_from_slice(json.as_bytes());
    }
    let sum = checksum(&buf, hash);
    if let Some(dst) = buf.get_mut(OFF_CSUM..OFF_CSUM + sum.len()) {
        dst.copy_from_slice(&sum);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests;
