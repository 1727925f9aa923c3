//! PCR value files: the tpm2-tools serialized format (`tpm2_quote -o`, `tpm2_checkquote -f`)
//! and the JSON shape `{"sha256": {"0": "<hex>", ...}}`, both read and written; readers detect
//! the format.
//!
//! The tpm2-tools format is a host-endian dump of C structs (little-endian on every platform
//! Vouch supports), not TPM marshalling:
//! - TPML_PCR_SELECTION, 132 bytes: u32 count, then 16 slots of TPMS_PCR_SELECTION, each
//!   `u16 hash, u8 sizeofSelect, u8 pcrSelect[4], u8 padding` (8 bytes);
//! - u32 number of TPML_DIGEST blocks;
//! - that many TPML_DIGEST blocks of 532 bytes: u32 count, then 8 slots of TPM2B_DIGEST, each
//!   `u16 size, u8 buffer[64]`.
//!
//! The digests follow the selection order (banks as listed, PCRs ascending), at most 8 per
//! block (TPM2_PCR_Read returns at most 8 per call). The writer packs 8 per block; the reader
//! accepts any split.

use crate::alg::HashAlg;
use crate::pcrs::PcrBanks;
use crate::tpm::selection::{PcrSelect, PcrSelection};
use thiserror::Error;

/// Bytes of the serialized TPML_PCR_SELECTION.
pub const SELECTION_BYTES: usize = 4 + BANK_SLOTS * 8;
/// Bytes of one serialized TPML_DIGEST.
pub const DIGEST_BLOCK_BYTES: usize = 4 + DIGESTS_PER_BLOCK * 66;
/// TPMS_PCR_SELECTION slots in the serialized selection.
pub const BANK_SLOTS: usize = 16;
/// TPM2B_DIGEST slots in one TPML_DIGEST.
pub const DIGESTS_PER_BLOCK: usize = 8;
const SELECT_BYTES: usize = 4;
const DIGEST_BUFFER: usize = 64;

/// Errors reading or writing PCR files.
#[derive(Debug, Error)]
pub enum PcrFileError {
    /// The tpm2-tools file is shorter than a field it must contain.
    #[error("tpm2-tools PCR file: {field} at offset {offset} runs past the end ({len} bytes)")]
    Truncated {
        /// The field.
        field: &'static str,
        /// Its offset.
        offset: usize,
        /// File length.
        len: usize,
    },
    /// A count field is out of range.
    #[error("tpm2-tools PCR file: {field} at offset {offset} is {value}, maximum {max}")]
    CountOutOfRange {
        /// The field.
        field: &'static str,
        /// Its offset.
        offset: usize,
        /// The value found.
        value: u32,
        /// The maximum.
        max: usize,
    },
    /// A digest size does not match its bank.
    #[error("tpm2-tools PCR file: {bank} PCR {pcr} has a {size}-byte digest at offset {offset}, expected {expected}")]
    DigestSize {
        /// The bank.
        bank: HashAlg,
        /// The PCR.
        pcr: u32,
        /// Size found.
        size: usize,
        /// Size expected.
        expected: usize,
        /// Offset of the size field.
        offset: usize,
    },
    /// The file holds a different number of digests than PCRs selected.
    #[error("tpm2-tools PCR file: {selected} PCRs selected but {found} digests present")]
    DigestCount {
        /// PCRs selected.
        selected: usize,
        /// Digests present.
        found: usize,
    },
    /// Bytes follow the last TPML_DIGEST block.
    #[error("tpm2-tools PCR file: {count} trailing bytes at offset {offset}")]
    Trailing {
        /// Offset of the first extra byte.
        offset: usize,
        /// Number of extra bytes.
        count: usize,
    },
    /// Writing: a selected PCR has no value.
    #[error("no value for selected PCR {bank}:{pcr}")]
    MissingValue {
        /// The bank.
        bank: HashAlg,
        /// The PCR.
        pcr: u32,
    },
    /// Writing: the selection does not fit the fixed C structs.
    #[error("selection does not fit the tpm2-tools format: {0}")]
    SelectionTooLarge(&'static str),
    /// Writing: a digest longer than 64 bytes.
    #[error("{bank} PCR {pcr}: a {size}-byte value does not fit a TPM2B_DIGEST")]
    ValueTooLong {
        /// The bank.
        bank: HashAlg,
        /// The PCR.
        pcr: u32,
        /// Its size.
        size: usize,
    },
    /// The JSON is not valid JSON.
    #[error("PCR JSON is not valid JSON")]
    Json(#[source] serde_json::Error),
    /// The JSON has the wrong shape.
    #[error("PCR JSON: {0}")]
    JsonShape(JsonShapeError),
}

/// What is wrong with the shape of a PCR JSON document.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JsonShapeError {
    /// The top level is not an object of banks.
    #[error("top level must be an object of banks")]
    NotAnObject,
    /// A bank name is unknown.
    #[error("unknown bank {0:?}")]
    UnknownBank(String),
    /// A bank is not an object of PCRs.
    #[error("bank {0} must be an object of PCR index to hex digest")]
    BankNotObject(HashAlg),
    /// A PCR key is not a decimal index.
    #[error("bank {bank}: PCR key {key:?} is not a decimal index")]
    BadIndex {
        /// The bank.
        bank: HashAlg,
        /// The key found.
        key: String,
    },
    /// A value is not a hex string.
    #[error("{bank} PCR {pcr}: value is not a hex string")]
    BadHex {
        /// The bank.
        bank: HashAlg,
        /// The PCR.
        pcr: u32,
    },
    /// A digest has the wrong length for its bank.
    #[error("{bank} PCR {pcr}: {size}-byte value, expected {expected}")]
    BadLength {
        /// The bank.
        bank: HashAlg,
        /// The PCR.
        pcr: u32,
        /// Size found.
        size: usize,
        /// Size expected.
        expected: usize,
    },
}

/// The format of a PCR file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PcrFileFormat {
    /// tpm2-tools serialized structs.
    TpmTools,
    /// JSON banks.
    Json,
}

/// Reads a PCR file in either format: JSON when the first non-blank byte is `{`.
pub fn read_pcr_file(data: &[u8]) -> Result<(PcrBanks, PcrFileFormat), PcrFileError> {
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        Ok((read_json(data)?, PcrFileFormat::Json))
    } else {
        Ok((read_tpm_tools(data)?.1, PcrFileFormat::TpmTools))
    }
}

struct LeReader<'a> {
    data: &'a [u8],
}

impl LeReader<'_> {
    fn slice(&self, offset: usize, n: usize, field: &'static str) -> Result<&[u8], PcrFileError> {
        offset
            .checked_add(n)
            .and_then(|end| self.data.get(offset..end))
            .ok_or(PcrFileError::Truncated {
                field,
                offset,
                len: self.data.len(),
            })
    }
    fn array<const N: usize>(
        &self,
        offset: usize,
        field: &'static str,
    ) -> Result<[u8; N], PcrFileError> {
        let s = self.slice(offset, N, field)?;
        s.first_chunk::<N>()
            .copied()
            .ok_or(PcrFileError::Truncated {
                field,
                offset,
                len: self.data.len(),
            })
    }
    fn u8(&self, offset: usize, field: &'static str) -> Result<u8, PcrFileError> {
        Ok(u8::from_le_bytes(self.array(offset, field)?))
    }
    fn u16(&self, offset: usize, field: &'static str) -> Result<u16, PcrFileError> {
        Ok(u16::from_le_bytes(self.array(offset, field)?))
    }
    fn u32(&self, offset: usize, field: &'static str) -> Result<u32, PcrFileError> {
        Ok(u32::from_le_bytes(self.array(offset, field)?))
    }
}

fn count(
    r: &LeReader<'_>,
    offset: usize,
    field: &'static str,
    max: usize,
) -> Result<usize, PcrFileError> {
    let value = r.u32(offset, field)?;
    match usize::try_from(value) {
        Ok(v) if v <= max => Ok(v),
        _ => Err(PcrFileError::CountOutOfRange {
            field,
            offset,
            value,
            max,
        }),
    }
}

/// Reads the tpm2-tools serialized format: the selection and the values it lists.
pub fn read_tpm_tools(data: &[u8]) -> Result<(PcrSelection, PcrBanks), PcrFileError> {
    let r = LeReader { data };
    let nbanks = count(&r, 0, "TPML_PCR_SELECTION.count", BANK_SLOTS)?;
    let mut selection = PcrSelection::default();
    for i in 0..nbanks {
        let at = 4 + i * 8;
        let hash = HashAlg::from_id(r.u16(at, "TPMS_PCR_SELECTION.hash")?);
        let size = r.u8(at + 2, "TPMS_PCR_SELECTION.sizeofSelect")?;
        if usize::from(size) > SELECT_BYTES {
            return Err(PcrFileError::CountOutOfRange {
                field: "TPMS_PCR_SELECTION.sizeofSelect",
                offset: at + 2,
                value: u32::from(size),
                max: SELECT_BYTES,
            });
        }
        let bitmap = r
            .slice(at + 3, usize::from(size), "TPMS_PCR_SELECTION.pcrSelect")?
            .to_vec();
        selection.banks.push(PcrSelect { hash, bitmap });
    }
    // Bound the block count by the bytes present before trusting it.
    let max_blocks = data.len().saturating_sub(SELECTION_BYTES + 4) / DIGEST_BLOCK_BYTES;
    let nblocks = count(&r, SELECTION_BYTES, "digest block count", max_blocks)?;
    let mut digests: Vec<(usize, &[u8])> = Vec::new();
    for b in 0..nblocks {
        let base = SELECTION_BYTES + 4 + b * DIGEST_BLOCK_BYTES;
        let n = count(&r, base, "TPML_DIGEST.count", DIGESTS_PER_BLOCK)?;
        for d in 0..n {
            let at = base + 4 + d * 66;
            let size = usize::from(r.u16(at, "TPM2B_DIGEST.size")?);
            if size > DIGEST_BUFFER {
                return Err(PcrFileError::CountOutOfRange {
                    field: "TPM2B_DIGEST.size",
                    offset: at,
                    value: size as u32,
                    max: DIGEST_BUFFER,
                });
            }
            digests.push((at, r.slice(at + 2, size, "TPM2B_DIGEST.buffer")?));
        }
    }
    let end = SELECTION_BYTES + 4 + nblocks * DIGEST_BLOCK_BYTES;
    if data.len() != end {
        return Err(PcrFileError::Trailing {
            offset: end,
            count: data.len().saturating_sub(end),
        });
    }
    let selected = selection.len();
    if selected != digests.len() {
        return Err(PcrFileError::DigestCount {
            selected,
            found: digests.len(),
        });
    }
    let mut banks = PcrBanks::new();
    for ((bank, pcr), (offset, digest)) in selection.iter().zip(digests) {
        if let Some(expected) = bank.digest_len() {
            if digest.len() != expected {
                return Err(PcrFileError::DigestSize {
                    bank,
                    pcr,
                    size: digest.len(),
                    expected,
                    offset,
                });
            }
        }
        banks.insert(bank, pcr, digest.to_vec());
    }
    Ok((selection, banks))
}

/// Writes the tpm2-tools serialized format for `selection`, taking values from `banks`.
pub fn write_tpm_tools(
    selection: &PcrSelection,
    banks: &PcrBanks,
) -> Result<Vec<u8>, PcrFileError> {
    if selection.banks.len() > BANK_SLOTS {
        return Err(PcrFileError::SelectionTooLarge("more than 16 banks"));
    }
    let mut out = Vec::with_capacity(SELECTION_BYTES + 4 + DIGEST_BLOCK_BYTES);
    out.extend_from_slice(&(selection.banks.len() as u32).to_le_bytes());
    for slot in 0..BANK_SLOTS {
        let mut entry = [0u8; 8];
        if let Some(b) = selection.banks.get(slot) {
            if b.bitmap.len() > SELECT_BYTES {
                return Err(PcrFileError::SelectionTooLarge(
                    "a bank selects PCRs above 31",
                ));
            }
            entry[..2].copy_from_slice(&b.hash.id().to_le_bytes());
            entry[2] = b.bitmap.len() as u8;
            entry[3..3 + b.bitmap.len()].copy_from_slice(&b.bitmap);
        }
        out.extend_from_slice(&entry);
    }
    let mut values = Vec::with_capacity(selection.len());
    for (bank, pcr) in selection.iter() {
        let v = banks
            .get(bank, pcr)
            .ok_or(PcrFileError::MissingValue { bank, pcr })?;
        if v.len() > DIGEST_BUFFER {
            return Err(PcrFileError::ValueTooLong {
                bank,
                pcr,
                size: v.len(),
            });
        }
        values.push(v);
    }
    let blocks: Vec<&[&[u8]]> = values.chunks(DIGESTS_PER_BLOCK).collect();
    out.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
    for block in blocks {
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        for slot in 0..DIGESTS_PER_BLOCK {
            let mut entry = [0u8; 66];
            if let Some(v) = block.get(slot) {
                entry[..2].copy_from_slice(&(v.len() as u16).to_le_bytes());
                entry[2..2 + v.len()].copy_from_slice(v);
            }
            out.extend_from_slice(&entry);
        }
    }
    Ok(out)
}

/// Reads the JSON shape `{"sha256": {"0": "<hex>", ...}, ...}`.
pub fn read_json(data: &[u8]) -> Result<PcrBanks, PcrFileError> {
    let v: serde_json::Value = serde_json::from_slice(data).map_err(PcrFileError::Json)?;
    let shape = PcrFileError::JsonShape;
    let top = v.as_object().ok_or(shape(JsonShapeError::NotAnObject))?;
    let mut banks = PcrBanks::new();
    for (name, bank_v) in top {
        let bank = HashAlg::from_name(name)
            .ok_or_else(|| shape(JsonShapeError::UnknownBank(name.clone())))?;
        let pcrs = bank_v
            .as_object()
            .ok_or(shape(JsonShapeError::BankNotObject(bank)))?;
        for (key, val) in pcrs {
            let pcr: u32 = key.parse().map_err(|_| {
                shape(JsonShapeError::BadIndex {
                    bank,
                    key: key.clone(),
                })
            })?;
            let text = val
                .as_str()
                .ok_or(shape(JsonShapeError::BadHex { bank, pcr }))?;
            let text = text.strip_prefix("0x").unwrap_or(text);
            let digest =
                hex::decode(text).map_err(|_| shape(JsonShapeError::BadHex { bank, pcr }))?;
            if let Some(expected) = bank.digest_len() {
                if digest.len() != expected {
                    return Err(shape(JsonShapeError::BadLength {
                        bank,
                        pcr,
                        size: digest.len(),
                        expected,
                    }));
                }
            }
            banks.insert(bank, pcr, digest);
        }
    }
    Ok(banks)
}

/// Writes the JSON shape, pretty-printed with a trailing newline.
pub fn write_json(banks: &PcrBanks) -> String {
    let mut s = serde_json::to_string_pretty(&banks.to_json()).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (PcrSelection, PcrBanks) {
        let mut banks = PcrBanks::new();
        let s256: Vec<u32> = (0..12).collect();
        for &p in &s256 {
            banks.insert(HashAlg::Sha256, p, vec![p as u8; 32]);
        }
        for p in [0u32, 7, 23] {
            banks.insert(HashAlg::Sha1, p, vec![0x80 | p as u8; 20]);
        }
        let sel = PcrSelection {
            banks: vec![
                PcrSelect::new(HashAlg::Sha256, &s256).unwrap(),
                PcrSelect::new(HashAlg::Sha1, &[0, 7, 23]).unwrap(),
            ],
        };
        (sel, banks)
    }

    #[test]
    fn tpm_tools_round_trip_multi_block_two_banks() {
        let (sel, banks) = sample();
        let bytes = write_tpm_tools(&sel, &banks).unwrap();
        // 15 digests: two blocks.
        assert_eq!(bytes.len(), SELECTION_BYTES + 4 + 2 * DIGEST_BLOCK_BYTES);
        assert_eq!(
            &bytes[SELECTION_BYTES..SELECTION_BYTES + 4],
            &2u32.to_le_bytes()
        );
        let (sel2, banks2) = read_tpm_tools(&bytes).unwrap();
        assert_eq!(sel2, sel);
        assert_eq!(banks2, banks);
        let (banks3, format) = read_pcr_file(&bytes).unwrap();
        assert_eq!((banks3, format), (banks.clone(), PcrFileFormat::TpmTools));
        for n in 0..bytes.len() {
            assert!(read_tpm_tools(&bytes[..n]).is_err(), "prefix {n} accepted");
        }
    }

    #[test]
    fn json_round_trip_and_errors() {
        let (_, banks) = sample();
        let text = write_json(&banks);
        let (back, format) = read_pcr_file(text.as_bytes()).unwrap();
        assert_eq!((back, format), (banks, PcrFileFormat::Json));
        assert!(matches!(read_json(b"{"), Err(PcrFileError::Json(_))));
        assert!(matches!(
            read_json(br#"{"sha256": {"0": "abcd"}}"#),
            Err(PcrFileError::JsonShape(JsonShapeError::BadLength { .. }))
        ));
        assert!(matches!(
            read_json(br#"{"md5": {}}"#),
            Err(PcrFileError::JsonShape(JsonShapeError::UnknownBank(_)))
        ));
        assert!(matches!(
            read_json(br#"{"sha1": {"x": ""}}"#),
            Err(PcrFileError::JsonShape(JsonShapeError::BadIndex { .. }))
        ));
    }

    #[test]
    fn missing_value_is_named() {
        let (sel, mut banks) = sample();
        banks = {
            let mut b = PcrBanks::new();
            for (alg, bank) in banks.banks() {
                for (p, v) in bank {
                    if !(alg == HashAlg::Sha1 && *p == 7) {
                        b.insert(alg, *p, v.clone());
                    }
                }
            }
            b
        };
        assert!(matches!(
            write_tpm_tools(&sel, &banks),
            Err(PcrFileError::MissingValue {
                bank: HashAlg::Sha1,
                pcr: 7
            })
        ));
    }
}
