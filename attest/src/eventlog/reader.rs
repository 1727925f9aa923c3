//! Bounds-checked little-endian reading over a borrowed byte buffer.
//!
//! Every read either returns the requested bytes or `None`; callers turn `None` into an error that
//! names the field and the byte offset. Nothing here allocates.

/// A cursor over `buf`, remembering the absolute offset of `buf[0]` in the original input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf` whose first byte sits at absolute offset `base` in the whole input.
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Reader<'a> {
        Reader { buf, pos: 0, base }
    }

    /// Absolute offset of the next byte to be read.
    pub(crate) fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The unread tail.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// Takes the next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::Reader;

    #[test]
    fn reads_little_endian_and_stops_at_the_end() {
        let mut r = Reader::new(&[1, 0, 2, 0, 0, 0, 9], 100);
        assert_eq!(r.u16(), Some(1));
        assert_eq!(r.offset(), 102);
        assert_eq!(r.u32(), Some(2));
        assert_eq!(r.u16(), None);
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.u8(), Some(9));
        assert_eq!(r.take(1), None);
        assert_eq!(r.take(usize::MAX), None);
    }
}
