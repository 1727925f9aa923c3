//! Big-endian TPM wire format primitives: a bounds-checked reader and a writer.
//!
//! Every read names the field it reads, so a truncated structure reports which field ran past the
//! end and at which byte offset. Lengths taken from the input are always checked against the bytes
//! that remain before anything is allocated.

use thiserror::Error;

/// A failure to read a TPM structure from bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The input ended inside a field.
    #[error("{field}: needs {needed} bytes at offset {offset}, only {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Offset of the field in the input.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that remained.
        available: usize,
    },
    /// A size field exceeds the maximum the TPM structure allows.
    #[error("{field}: size {size} at offset {offset} exceeds the maximum {max}")]
    TooLarge {
        /// The field being read.
        field: &'static str,
        /// Offset of the size field.
        offset: usize,
        /// The size found.
        size: usize,
        /// The largest size allowed.
        max: usize,
    },
    /// Bytes were left over after a complete structure.
    #[error("{count} unexpected trailing bytes at offset {offset} after {structure}")]
    Trailing {
        /// The structure that was complete.
        structure: &'static str,
        /// Offset of the first extra byte.
        offset: usize,
        /// Number of extra bytes.
        count: usize,
    },
}

/// A cursor over TPM big-endian bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `data`.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, pos: 0 }
    }

    /// Current offset from the start of the input.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// Reads `n` raw bytes.
    pub fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n);
        match end.and_then(|e| self.data.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(WireError::Truncated {
                field,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            }),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let s = self.bytes(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian u32.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian u64.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// Reads a TPM2B: a u16 size followed by that many bytes, at most `max`.
    pub fn tpm2b(&mut self, max: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let offset = self.pos;
        let size = usize::from(self.u16(field)?);
        if size > max {
            return Err(WireError::TooLarge {
                field,
                offset,
                size,
                max,
            });
        }
        self.bytes(size, field)
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self, structure: &'static str) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(WireError::Trailing {
                structure,
                offset: self.pos,
                count,
            }),
        }
    }
}

/// Appends TPM big-endian encodings to a byte vector.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Appends a big-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Appends a big-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Appends a big-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Appends a TPM2B. The caller's types bound the length; anything beyond `u16::MAX` bytes is
    /// truncated to keep the output well-formed (no structure in this crate allows that size).
    pub fn tpm2b(&mut self, b: &[u8]) {
        let len = b.len().min(usize::from(u16::MAX));
        self.u16(len as u16);
        self.buf.extend_from_slice(b.get(..len).unwrap_or_default());
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Prefixes `body` with its u16 size (the TPM2B form of a structure).
pub fn size_prefixed(body: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.tpm2b(body);
    w.into_bytes()
}

/// If `data` is a TPM2B whose u16 size equals the rest of the input, returns the inner bytes.
pub fn strip_size_prefix(data: &[u8]) -> Option<&[u8]> {
    let (size, rest) = data.split_first_chunk::<2>()?;
    (usize::from(u16::from_be_bytes(*size)) == rest.len()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_names_field_and_offset() {
        let mut r = Reader::new(&[0, 5, 1, 2]);
        let e = r.tpm2b(64, "extraData").unwrap_err();
        assert_eq!(
            e,
            WireError::Truncated {
                field: "extraData",
                offset: 2,
                needed: 5,
                available: 2
            }
        );
    }

    #[test]
    fn size_limit_enforced() {
        let mut r = Reader::new(&[0, 65, 0]);
        assert!(matches!(
            r.tpm2b(64, "x"),
            Err(WireError::TooLarge { size: 65, .. })
        ));
    }

    #[test]
    fn size_prefix_round_trip() {
        let inner = [1u8, 2, 3];
        let outer = size_prefixed(&inner);
        assert_eq!(strip_size_prefix(&outer), Some(&inner[..]));
        assert_eq!(strip_size_prefix(&inner), None);
    }
}
