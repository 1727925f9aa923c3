//! The digests one event carries, one per bank, borrowed from the input.
//!
//! Logs declare at most a handful of banks, so up to [`INLINE`] digests are stored inline and only
//! logs declaring more banks pay for a heap allocation per event.

use crate::alg::HashAlg;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::ops::Deref;

/// How many digests an event stores without allocating.
pub const INLINE: usize = 5;

/// One digest of an event: the bank's algorithm and the digest bytes as logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest<'a> {
    /// The bank (TPM_ALG_ID) this digest is for.
    pub alg: HashAlg,
    /// The digest bytes, borrowed from the log.
    pub bytes: &'a [u8],
}

const EMPTY: Digest<'static> = Digest {
    alg: HashAlg::Sha1,
    bytes: &[],
};

/// The digests of one event, in log order.
#[derive(Clone, Debug)]
pub struct DigestList<'a> {
    repr: Repr<'a>,
}

#[derive(Clone, Debug)]
enum Repr<'a> {
    Inline {
        len: usize,
        items: [Digest<'a>; INLINE],
    },
    Heap(Vec<Digest<'a>>),
}

impl<'a> DigestList<'a> {
    /// An empty list.
    pub fn new() -> DigestList<'a> {
        DigestList {
            repr: Repr::Inline {
                len: 0,
                items: [EMPTY; INLINE],
            },
        }
    }

    /// A list holding one digest.
    pub fn one(d: Digest<'a>) -> DigestList<'a> {
        let mut l = DigestList::new();
        l.push(d);
        l
    }

    /// Appends a digest.
    pub fn push(&mut self, d: Digest<'a>) {
        match &mut self.repr {
            Repr::Inline { len, items } => match items.get_mut(*len) {
                Some(slot) => {
                    *slot = d;
                    *len += 1;
                }
                None => {
                    let mut v = items.to_vec();
                    v.push(d);
                    self.repr = Repr::Heap(v);
                }
            },
            Repr::Heap(v) => v.push(d),
        }
    }

    /// The digest for `alg`, if the event carries one.
    pub fn get(&self, alg: HashAlg) -> Option<&'a [u8]> {
        self.iter().find(|d| d.alg == alg).map(|d| d.bytes)
    }
}

impl Default for DigestList<'_> {
    fn default() -> Self {
        DigestList::new()
    }
}

impl<'a> Deref for DigestList<'a> {
    type Target = [Digest<'a>];
    fn deref(&self) -> &[Digest<'a>] {
        match &self.repr {
            Repr::Inline { len, items } => items.get(..*len).unwrap_or(&[]),
            Repr::Heap(v) => v,
        }
    }
}

/// Serialized as `{"sha256": "<hex>", ...}`.
impl Serialize for DigestList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len()))?;
        for d in self.iter() {
            m.serialize_entry(&d.alg.name(), &hex::encode(d.bytes))?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spills_to_the_heap_past_inline_capacity() {
        let bytes = [7u8; 4];
        let mut l = DigestList::new();
        for id in 0..(INLINE as u16 + 3) {
            l.push(Digest {
                alg: HashAlg::Unknown(0x100 + id),
                bytes: &bytes,
            });
        }
        assert_eq!(l.len(), INLINE + 3);
        assert_eq!(
            l.get(HashAlg::Unknown(0x100 + INLINE as u16 + 2)),
            Some(&bytes[..])
        );
        assert_eq!(l.get(HashAlg::Sha1), None);
    }
}
