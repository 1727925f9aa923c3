//! Reading the kernel's IMA measurement list incrementally: the entries from a byte offset on
//! (where the fleet's last accepted report ended), whole entries only, at most about
//! [`MAX_CHUNK`] bytes a report, with memory bounded by the chunk and one entry however long
//! the list is (it is never read whole).
//!
//! The binary list (`binary_runtime_measurements`) is read rather than the text one: it is what
//! the kernel hashed, so the fleet can check every template hash and replay PCR 10 exactly.
//! Entry boundaries are found with `vouch_attest::ima::binary::Decoder`, the fleet's own parser.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use vouch_attest::ima::binary::{Decoder, ParseError};

/// Where the kernel publishes the list (SHA-1 template hashes; the fleet recomputes the
/// PCR bank's hash from the template data).
pub const DEFAULT_PATH: &str = "/sys/kernel/security/ima/binary_runtime_measurements";

/// The most list bytes one report carries (base64 in a 1 MiB message, after gzip); one entry
/// longer than this is still sent whole, alone.
pub const MAX_CHUNK: usize = 512 * 1024;

/// How much is read from the file at a time.
const READ_PIECE: usize = 64 * 1024;

/// Why the list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImaReadError {
    /// The file could not be opened, positioned or read.
    #[error("reading the IMA measurement list {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes at the offset are not whole IMA entries.
    #[error("the IMA measurement list {path} does not parse from byte offset {offset}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The offset asked for.
        offset: u64,
        /// What is wrong and where.
        source: ParseError,
    },
}

/// Entries of the list from an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaChunk {
    /// The byte offset of the first entry sent.
    pub offset: u64,
    /// How many entries `bytes` holds.
    pub entries: u64,
    /// The template hash size of the list (20 for the classic list), when an entry was read.
    pub hash_len: Option<usize>,
    /// Whole binary entries.
    pub bytes: Vec<u8>,
    /// True when the list had more entries than fit in this chunk.
    pub more: bool,
}

/// Reads the entries from byte `offset` of the list at `path`, up to `max` bytes of whole
/// entries (at least one entry when any is there). Entries the kernel has not finished writing
/// at the end of the file are left for the next read.
pub fn read_chunk(path: &Path, offset: u64, max: usize) -> Result<ImaChunk, ImaReadError> {
    let io = |source| ImaReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut decoder = Decoder::resume_detecting(offset);
    let mut out = Vec::new();
    let mut entries = 0u64;
    let mut piece = vec![0u8; READ_PIECE];
    loop {
        let got = file.read(&mut piece).map_err(io)?;
        if got == 0 {
            // A partial entry at the end is not an error: the kernel appends while we read.
            return Ok(ImaChunk {
                offset,
                entries,
                hash_len: decoder.hash_len(),
                bytes: out,
                more: false,
            });
        }
        decoder.feed(&piece[..got]);
        loop {
            let d = decoder.next_entry().map_err(|source| ImaReadError::Parse {
                path: path.to_path_buf(),
                offset,
                source,
            })?;
            let Some(d) = d else { break };
            if entries > 0 && out.len() + d.len as usize > max {
                return Ok(ImaChunk {
                    offset,
                    entries,
                    hash_len: decoder.hash_len(),
                    bytes: out,
                    more: true,
                });
            }
            out.extend_from_slice(&vouch_attest::ima::binary::encode_entry(&d.entry));
            entries += 1;
        }
    }
}
