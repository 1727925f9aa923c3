//! PCR selections: which PCRs of which banks a quote covers or a policy binds. One type,
//! [`PcrSelection`] (TPML_PCR_SELECTION), for every use: read from and written to TPM wire
//! format, parsed from and printed as the text form `sha256:0-9+sha1:7` (the only parser of that
//! form: command lines, configuration files), and carried in protocol messages as a typed list
//! ([`wire`]), so no side passes a string the other re-parses.

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
    /// A selection in text (or wire) form is malformed.
    #[error("PCR selection {text:?}: {reason}")]
    Text {
        /// The offending part.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Highest PCR index the text and wire forms accept (PC Client TPMs have 24 PCRs).
pub const MAX_PCR: u32 = 23;

const PCRS_REASON: &str = "PCRs are 0-23, lists as 0,7 and ranges as 0-7";

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

    /// One bank with `pcrs` (those above 23 are left out).
    pub fn single(hash: HashAlg, pcrs: impl IntoIterator<Item = u32>) -> PcrSelection {
        let pcrs: Vec<u32> = pcrs.into_iter().filter(|p| *p <= MAX_PCR).collect();
        let bank = PcrSelect::new(hash, &pcrs).unwrap_or(PcrSelect {
            hash,
            bitmap: vec![0; 3],
        });
        PcrSelection { banks: vec![bank] }
    }

    /// Banks in order with their PCRs ascending.
    pub fn bank_pcrs(&self) -> Vec<(HashAlg, Vec<u32>)> {
        self.banks
            .iter()
            .map(|b| (b.hash, b.pcrs().collect()))
            .collect()
    }

    /// A selection of `banks` (in this order) with their PCRs, checked as the text form is:
    /// each bank a digest algorithm listed once, PCRs 0..=23, none empty.
    pub fn from_bank_pcrs(
        banks: impl IntoIterator<Item = (HashAlg, Vec<u32>)>,
    ) -> Result<PcrSelection, SelectionError> {
        let mut out: Vec<PcrSelect> = Vec::new();
        for (alg, pcrs) in banks {
            let part = || format!("{}:{:?}", alg.name(), pcrs);
            let bad = |reason| SelectionError::Text {
                text: part(),
                reason,
            };
            if alg.digest_len().is_none() {
                return Err(bad("unknown bank (sha1, sha256, sha384, sha512, sm3_256)"));
            }
            if out.iter().any(|b| b.hash == alg) {
                return Err(bad("bank listed twice"));
            }
            if pcrs.is_empty() || pcrs.iter().any(|p| *p > MAX_PCR) {
                return Err(bad(PCRS_REASON));
            }
            out.push(PcrSelect::new(alg, &pcrs).map_err(|_| bad(PCRS_REASON))?);
        }
        if out.is_empty() {
            return Err(SelectionError::Text {
                text: String::new(),
                reason: "no bank selected",
            });
        }
        Ok(PcrSelection { banks: out })
    }
}

impl std::str::FromStr for PcrSelection {
    type Err = SelectionError;

    /// Parses `sha256:7` or `sha256:0,2-4+sha1:7`: banks in the order given, each once, PCRs
    /// 0..=23 (ascending in the result). No spaces: a selection with one is refused, not
    /// trimmed, so what one side accepts the other does too.
    fn from_str(text: &str) -> Result<PcrSelection, SelectionError> {
        let bad = |part: &str, reason| SelectionError::Text {
            text: part.to_string(),
            reason,
        };
        let mut banks = Vec::new();
        for part in text.split('+') {
            let (bank, list) = part
                .split_once(':')
                .ok_or_else(|| bad(part, "expected BANK:PCRS, e.g. sha256:7"))?;
            let alg = HashAlg::from_name(bank)
                .filter(|a| a.digest_len().is_some())
                .ok_or_else(|| bad(part, "unknown bank (sha1, sha256, sha384, sha512, sm3_256)"))?;
            let mut pcrs = Vec::new();
            for item in list.split(',') {
                let num = |s: &str| {
                    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| s.parse::<u32>().ok())
                        .flatten()
                        .filter(|p| *p <= MAX_PCR)
                };
                let (lo, hi) = match item.split_once('-') {
                    Some((a, b)) => (num(a), num(b)),
                    None => (num(item), num(item)),
                };
                match (lo, hi) {
                    (Some(lo), Some(hi)) if lo <= hi => pcrs.extend(lo..=hi),
                    _ => return Err(bad(part, PCRS_REASON)),
                }
            }
            banks.push((alg, pcrs));
        }
        PcrSelection::from_bank_pcrs(banks)
    }
}

impl std::fmt::Display for PcrSelection {
    /// The text form [`PcrSelection::from_str`] reads: `sha256:0,1,2+sha1:7`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.banks.iter().enumerate() {
            let pcrs: Vec<String> = b.pcrs().map(|p| p.to_string()).collect();
            let sep = if i == 0 { "" } else { "+" };
            write!(f, "{sep}{}:{}", b.hash.name(), pcrs.join(","))?;
        }
        Ok(())
    }
}

/// The protocol form of a selection (`#[serde(with = "vouch_attest::tpm::selection::wire")]`):
/// a list of `{"bank": "sha256", "pcrs": [0, 1, 7]}` in selection order, checked on decoding as
/// [`PcrSelection::from_bank_pcrs`] checks.
pub mod wire {
    use super::PcrSelection;
    use crate::alg::HashAlg;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Bank {
        bank: String,
        pcrs: Vec<u32>,
    }

    /// Most banks and PCRs per bank a message may list before it is refused unread.
    const MAX_ITEMS: usize = 32;

    /// Serializes a selection.
    pub fn serialize<S: Serializer>(sel: &PcrSelection, s: S) -> Result<S::Ok, S::Error> {
        sel.bank_pcrs()
            .into_iter()
            .map(|(alg, pcrs)| Bank {
                bank: alg.name(),
                pcrs,
            })
            .collect::<Vec<_>>()
            .serialize(s)
    }

    /// Deserializes and checks a selection.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PcrSelection, D::Error> {
        use serde::de::Error;
        let banks = Vec::<Bank>::deserialize(d)?;
        if banks.len() > MAX_ITEMS || banks.iter().any(|b| b.pcrs.len() > MAX_ITEMS) {
            return Err(D::Error::custom("PCR selection: too many banks or PCRs"));
        }
        let mut out = Vec::with_capacity(banks.len());
        for b in banks {
            let alg = HashAlg::from_name(&b.bank).ok_or_else(|| {
                D::Error::custom(format!("PCR selection: unknown bank {:?}", b.bank))
            })?;
            out.push((alg, b.pcrs));
        }
        PcrSelection::from_bank_pcrs(out).map_err(D::Error::custom)
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
