//! TPML_PCR_SELECTION: which PCRs of which banks a quote covers.

use super::wire::{Reader, WireError, Writer};
use crate::alg::HashAlg;
use serde::Serialize;
use thiserror::Error;

/// Most banks a selection may list (TPM2_NUM_PCR_BANKS in the TSS headers).
pub const MAX_BANKS: usize = 16;
/// Most bitmap bytes per bank this crate accepts (256 PCRs).
pub const MAX_SELECT_BYTES: usize = 32;

/// Errors reading or building a PCR selection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectionError {
    /// The bytes ended early or a size was out of range.
    #[error("malformed TPML_PCR_SELECTION")]
    Wire(#[from] WireError),
    /// The selection lists more banks than allowed.
    #[error("TPML_PCR_SELECTION: count {count} at offset {offset} exceeds {MAX_BANKS} banks")]
    TooManyBanks {
        /// The count found.
        count: u32,
        /// Offset of the count.
        offset: usize,
    },
    /// A bank's bitmap is longer than allowed.
    #[error(
        "TPMS_PCR_SELECTION: sizeofSelect {size} at offset {offset} exceeds {MAX_SELECT_BYTES}"
    )]
    BitmapTooLong {
        /// sizeofSelect found.
        size: u8,
        /// Offset of the field.
        offset: usize,
    },
    /// A PCR index cannot be represented in a bitmap of the allowed size.
    #[error("PCR index {0} is out of range (max {max})", max = MAX_SELECT_BYTES * 8 - 1)]
    PcrOutOfRange(u32),
}

/// One bank's selection (TPMS_PCR_SELECTION): hash algorithm and PCR bitmap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PcrSelect {
    /// The PCR bank.
    pub hash: HashAlg,
    /// The bitmap: bit `j` of byte `i` selects PCR `8 * i + j`.
    #[serde(serialize_with = "crate::tpm::ser_hex")]
    pub bitmap: Vec<u8>,
}

impl PcrSelect {
    /// Selects `pcrs` in bank `hash`, with the usual minimum bitmap of 3 bytes (24 PCRs).
    pub fn new(hash: HashAlg, pcrs: &[u32]) -> Result<PcrSelect, SelectionError> {
        let mut bitmap = vec![0u8; 3];
        for &pcr in pcrs {
            let byte = usize::try_from(pcr / 8).map_err(|_| SelectionError::PcrOutOfRange(pcr))?;
            if byte >= MAX_SELECT_BYTES {
                return Err(SelectionError::PcrOutOfRange(pcr));
            }
            if bitmap.len() <= byte {
                bitmap.resize(byte + 1, 0);
            }
            if let Some(b) = bitmap.get_mut(byte) {
                *b |= 1 << (pcr % 8);
            }
        }
        Ok(PcrSelect { hash, bitmap })
    }

    /// The selected PCR indices, ascending.
    pub fn pcrs(&self) -> impl Iterator<Item = u32> + '_ {
        self.bitmap.iter().enumerate().flat_map(|(i, byte)| {
            (0..8u32).filter_map(move |bit| (byte & (1 << bit) != 0).then_some(i as u32 * 8 + bit))
        })
    }
}

/// TPML_PCR_SELECTION: the banks and PCRs, in the order the TPM digests them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PcrSelection {
    /// Per-bank selections, in order.
    pub banks: Vec<PcrSelect>,
}

impl PcrSelection {
    /// Reads a TPML_PCR_SELECTION.
    pub fn read(r: &mut Reader<'_>) -> Result<PcrSelection, SelectionError> {
        let offset = r.offset();
        let count = r.u32("TPML_PCR_SELECTION.count")?;
        if count as usize > MAX_BANKS {
            return Err(SelectionError::TooManyBanks { count, offset });
        }
        let mut banks = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let hash = HashAlg::from_id(r.u16("TPMS_PCR_SELECTION.hash")?);
            let offset = r.offset();
            let size = r.u8("TPMS_PCR_SELECTION.sizeofSelect")?;
            if usize::from(size) > MAX_SELECT_BYTES {
                return Err(SelectionError::BitmapTooLong { size, offset });
            }
            let bitmap = r
                .bytes(usize::from(size), "TPMS_PCR_SELECTION.pcrSelect")?
                .to_vec();
            banks.push(PcrSelect { hash, bitmap });
        }
        Ok(PcrSelection { banks })
    }

    /// Writes a TPML_PCR_SELECTION.
    pub fn write(&self, w: &mut Writer) {
        w.u32(self.banks.len() as u32);
        for b in &self.banks {
            w.u16(b.hash.id());
            w.u8(b.bitmap.len() as u8);
            w.bytes(&b.bitmap);
        }
    }

    /// Every selected (bank, PCR) pair in digest order: banks as listed, PCRs ascending.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, u32)> + '_ {
        self.banks
            .iter()
            .flat_map(|b| b.pcrs().map(move |p| (b.hash, p)))
    }

    /// Number of selected PCRs over all banks.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when no PCR is selected.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_and_order() {
        let sel = PcrSelection {
            banks: vec![
                PcrSelect::new(HashAlg::Sha256, &[7, 0, 23]).unwrap(),
                PcrSelect::new(HashAlg::Sha1, &[1]).unwrap(),
            ],
        };
        assert_eq!(sel.banks[0].bitmap, vec![0x81, 0x00, 0x80]);
        let order: Vec<_> = sel.iter().collect();
        assert_eq!(
            order,
            vec![
                (HashAlg::Sha256, 0),
                (HashAlg::Sha256, 7),
                (HashAlg::Sha256, 23),
                (HashAlg::Sha1, 1)
            ]
        );
        let mut w = Writer::new();
        sel.write(&mut w);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(PcrSelection::read(&mut r).unwrap(), sel);
        r.finish("sel").unwrap();
    }

    #[test]
    fn rejects_huge_counts() {
        let bytes = [0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            PcrSelection::read(&mut Reader::new(&bytes)),
            Err(SelectionError::TooManyBanks { .. })
        ));
        assert!(PcrSelect::new(HashAlg::Sha1, &[256]).is_err());
    }
}
