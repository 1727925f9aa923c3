//! The kernel's binary measurement list (`/sys/kernel/security/ima/binary_runtime_measurements`,
//! and the per-bank `binary_runtime_measurements_<alg>` of newer kernels), one entry at a time.
//!
//! An entry: PCR (u32), template hash (20 bytes in the classic list, the bank's size in a
//! per-bank list), template name length (u32) and name, then for every template but `ima` the
//! template data length (u32) and data; the `ima` template has a 20-byte digest and a
//! length-prefixed name instead. Integers are little-endian (the kernel's `ima_canonical_fmt`
//! on little-endian machines, which is every machine Vouch supports).
//!
//! [`parse_entry`] works on a buffer that may end mid-entry: it reports "need more bytes"
//! rather than an error, so a reader can keep one entry in memory, never the whole list.

use super::entry::{template_hash_alg, Entry, FieldError, Template};

/// The largest template data accepted (an `ima-buf` entry holding a certificate is a few KiB).
pub const MAX_TEMPLATE_DATA: u32 = 1 << 20;
/// The longest template name the kernel allows.
pub const MAX_TEMPLATE_NAME: u32 = 15;
/// The highest PCR index.
const MAX_PCR: u32 = 23;

/// What is wrong with an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The PCR index is above 23.
    #[error("PCR index {0} is above 23")]
    Pcr(u32),
    /// The template name length is 0 or above 15.
    #[error("template name length {0} is not 1..=15")]
    TemplateNameLen(u32),
    /// The template name holds bytes other than letters, digits, `-` and `_`.
    #[error("template name {0:?} is not a template name")]
    TemplateName(String),
    /// The template data length is above [`MAX_TEMPLATE_DATA`].
    #[error("template data length {0} is above 1 MiB")]
    DataLen(u32),
    /// The template data does not decode.
    #[error("template data")]
    Field(#[source] FieldError),
    /// The list ends inside an entry.
    #[error("the list ends inside an entry ({0} bytes left)")]
    Truncated(usize),
    /// The template hash length names no known algorithm.
    #[error("template hash length {0} is not 20, 32, 48 or 64 bytes")]
    HashLen(usize),
    /// Neither a 20- nor a 32-byte template hash makes the first entry parse.
    #[error(
        "not an IMA binary measurement list (the first entry parses with no template hash size)"
    )]
    Undetected,
}

/// An entry that does not parse, and where it starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("IMA entry {index} at byte offset {offset}")]
pub struct ParseError {
    /// The entry's position in what was parsed (0-based).
    pub index: u64,
    /// Its byte offset in what was parsed.
    pub offset: u64,
    /// What is wrong.
    #[source]
    pub kind: ParseErrorKind,
}

fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    let b = buf.get(off..off + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses the entry at the start of `buf` whose template hash is `hash_len` bytes.
///
/// `Ok(None)` when `buf` ends before the entry does (read more and call again);
/// `Ok(Some((entry, consumed)))` otherwise.
pub fn parse_entry(buf: &[u8], hash_len: usize) -> Result<Option<(Entry, usize)>, ParseErrorKind> {
    if template_hash_alg(hash_len).is_none() {
        return Err(ParseErrorKind::HashLen(hash_len));
    }
    let Some(pcr) = u32_at(buf, 0) else {
        return Ok(None);
    };
    if pcr > MAX_PCR {
        return Err(ParseErrorKind::Pcr(pcr));
    }
    let mut off = 4;
    let Some(hash) = buf.get(off..off + hash_len) else {
        return Ok(None);
    };
    off += hash_len;
    let Some(name_len) = u32_at(buf, off) else {
        return Ok(None);
    };
    if name_len == 0 || name_len > MAX_TEMPLATE_NAME {
        return Err(ParseErrorKind::TemplateNameLen(name_len));
    }
    off += 4;
    let Some(name) = buf.get(off..off + name_len as usize) else {
        return Ok(None);
    };
    if !name
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    {
        return Err(ParseErrorKind::TemplateName(
            String::from_utf8_lossy(name).into_owned(),
        ));
    }
    off += name_len as usize;
    let template = Template::from_name(std::str::from_utf8(name).unwrap_or_default());
    let data_len = if template == Template::Ima {
        // 20-byte digest, then the name's length and the name.
        let Some(len) = u32_at(buf, off + 20) else {
            return Ok(None);
        };
        if len > super::entry::IMA_NAME_MAX as u32 {
            return Err(ParseErrorKind::Field(FieldError::ImaTemplate(
                "name longer than 255 bytes",
            )));
        }
        24 + len as usize
    } else {
        let Some(len) = u32_at(buf, off) else {
            return Ok(None);
        };
        if len > MAX_TEMPLATE_DATA {
            return Err(ParseErrorKind::DataLen(len));
        }
        off += 4;
        len as usize
    };
    let Some(data) = buf.get(off..off + data_len) else {
        return Ok(None);
    };
    let entry = Entry::from_template_data(pcr, hash.to_vec(), template, data)
        .map_err(ParseErrorKind::Field)?;
    Ok(Some((entry, off + data_len)))
}

/// The template hash size of a binary list: the first of 20 (the classic list) and 32 (a
/// per-bank SHA-256 list) with which the first entry parses; 48 and 64 are tried last.
/// `None` when the list is empty.
pub fn detect_hash_len(bytes: &[u8]) -> Result<Option<usize>, ParseErrorKind> {
    if bytes.is_empty() {
        return Ok(None);
    }
    for len in [20, 32, 48, 64] {
        if let Ok(Some(_)) = parse_entry(bytes, len) {
            return Ok(Some(len));
        }
    }
    Err(ParseErrorKind::Undetected)
}

/// The entries of a whole binary list held in memory, each with its byte offset.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    bytes: &'a [u8],
    hash_len: usize,
    offset: usize,
    index: u64,
    done: bool,
}

impl<'a> Entries<'a> {
    /// Iterates over `bytes` (a list or a tail of one starting at an entry) whose template hashes
    /// are `hash_len` bytes.
    pub fn new(bytes: &'a [u8], hash_len: usize) -> Entries<'a> {
        Entries {
            bytes,
            hash_len,
            offset: 0,
            index: 0,
            done: false,
        }
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<(u64, Entry), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.offset >= self.bytes.len() {
            return None;
        }
        let rest = &self.bytes[self.offset..];
        let err = |kind| ParseError {
            index: self.index,
            offset: self.offset as u64,
            kind,
        };
        match parse_entry(rest, self.hash_len) {
            Ok(Some((entry, used))) => {
                let at = self.offset as u64;
                self.offset += used;
                self.index += 1;
                Some(Ok((at, entry)))
            }
            Ok(None) => {
                self.done = true;
                Some(Err(err(ParseErrorKind::Truncated(rest.len()))))
            }
            Err(kind) => {
                self.done = true;
                Some(Err(err(kind)))
            }
        }
    }
}

/// Encodes an entry in the binary list form (the agent's tests and the fuzz target build lists
/// with it).
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(entry.template_data.len() + 64);
    out.extend_from_slice(&entry.pcr.to_le_bytes());
    out.extend_from_slice(&entry.template_hash);
    let name = entry.template.name().as_bytes();
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(name);
    if entry.template == Template::Ima {
        // The hashed form: digest, then the name zero-padded (a name holds no NUL).
        let (digest, padded) = entry
            .template_data
            .split_at(20.min(entry.template_data.len()));
        out.extend_from_slice(digest);
        let n = padded.split(|b| *b == 0).next().unwrap_or_default();
        out.extend_from_slice(&(n.len() as u32).to_le_bytes());
        out.extend_from_slice(n);
    } else {
        out.extend_from_slice(&(entry.template_data.len() as u32).to_le_bytes());
        out.extend_from_slice(&entry.template_data);
    }
    out
}

/// Decodes a binary list fed in pieces (as read from a file or received), holding at most one
/// entry's bytes beyond what is fed: the caller feeds, takes entries, and feeds again.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
    hash_len: Option<usize>,
    offset: u64,
    index: u64,
}

/// One decoded entry with its place in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The entry's index (counted from where decoding started).
    pub index: u64,
    /// Its byte offset (counted from where decoding started).
    pub offset: u64,
    /// How many bytes it takes.
    pub len: u64,
    /// The entry.
    pub entry: Entry,
}

impl Decoder {
    /// A decoder for template hashes of `hash_len` bytes, or detecting the size from the first
    /// entry when `None`.
    pub fn new(hash_len: Option<usize>) -> Decoder {
        Decoder {
            hash_len,
            ..Decoder::default()
        }
    }

    /// A decoder continuing a list at entry `index`, byte `offset`.
    pub fn resume(hash_len: usize, index: u64, offset: u64) -> Decoder {
        Decoder {
            hash_len: Some(hash_len),
            index,
            offset,
            ..Decoder::default()
        }
    }

    /// A decoder starting at byte `offset` of a list (an entry boundary), detecting the
    /// template hash size from the first entry there.
    pub fn resume_detecting(offset: u64) -> Decoder {
        Decoder {
            offset,
            ..Decoder::default()
        }
    }

    /// The template hash size in use (once known).
    pub fn hash_len(&self) -> Option<usize> {
        self.hash_len
    }

    /// Bytes fed but not yet decoded.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Feeds more bytes of the list.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete entry; `Ok(None)` when more bytes are needed (or the list ended).
    pub fn next_entry(&mut self) -> Result<Option<Decoded>, ParseError> {
        let rest = &self.buf[self.start..];
        let err = |kind| ParseError {
            index: self.index,
            offset: self.offset,
            kind,
        };
        let hash_len = match self.hash_len {
            Some(l) => l,
            None => {
                // Detect once a whole first entry (of some size) is here.
                let Some(l) = [20, 32, 48, 64]
                    .into_iter()
                    .find(|l| matches!(parse_entry(rest, *l), Ok(Some(_))))
                else {
                    let possible = [20, 32, 48, 64]
                        .into_iter()
                        .any(|l| matches!(parse_entry(rest, l), Ok(None)));
                    return if possible {
                        Ok(None)
                    } else {
                        Err(err(ParseErrorKind::Undetected))
                    };
                };
                self.hash_len = Some(l);
                l
            }
        };
        match parse_entry(rest, hash_len).map_err(err)? {
            None => Ok(None),
            Some((entry, used)) => {
                let d = Decoded {
                    index: self.index,
                    offset: self.offset,
                    len: used as u64,
                    entry,
                };
                self.start += used;
                self.offset += used as u64;
                self.index += 1;
                Ok(Some(d))
            }
        }
    }

    /// Ends the list: an error when bytes of an incomplete entry are left.
    pub fn finish(&self) -> Result<(), ParseError> {
        match self.pending() {
            0 => Ok(()),
            n => Err(ParseError {
                index: self.index,
                offset: self.offset,
                kind: ParseErrorKind::Truncated(n),
            }),
        }
    }
}
