//! PCR 10 recomputed from IMA entries, resumable: a [`ReplayState`] is the PCR value after a
//! number of entries and the byte offset where the next entry starts in the device's binary
//! list. A verifier stores it per device and continues from it with the next report's entries.
//!
//! Each entry extends with its template data hashed in the bank's algorithm (all-ones for a
//! violation). The logged template hash is checked against the template data first: an entry
//! whose hash does not match cannot be trusted to say what was measured.

use super::entry::Entry;
use crate::alg::HashAlg;
use serde::{Deserialize, Serialize};

/// Why an entry cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The bank's algorithm is not one this crate can compute.
    #[error("bank {0} cannot be replayed")]
    Bank(HashAlg),
    /// The logged template hash is not the hash of the template data.
    #[error("entry {index} ({name}): template hash {logged} is not the hash of its template data")]
    TemplateHash {
        /// The entry's index in the whole list.
        index: u64,
        /// Its file name.
        name: String,
        /// The logged hash (hex).
        logged: String,
    },
    /// The template hash is of no known size.
    #[error("entry {index} ({name}): template hash of {len} bytes")]
    HashLen {
        /// The entry's index in the whole list.
        index: u64,
        /// Its file name.
        name: String,
        /// The hash's size.
        len: usize,
    },
}

/// The replay of one PCR after some entries of a device's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayState {
    /// The bank replayed.
    pub bank: HashAlg,
    /// The PCR replayed (10 unless the IMA policy says otherwise).
    pub pcr: u32,
    /// Its value after [`Self::entries`] entries.
    #[serde(with = "crate::hex_serde")]
    pub value: Vec<u8>,
    /// How many entries of the list are replayed.
    pub entries: u64,
    /// The byte offset in the binary list where the next entry starts.
    pub offset: u64,
}

impl ReplayState {
    /// The state before the first entry: PCR `pcr` of `bank` at zero.
    pub fn new(bank: HashAlg, pcr: u32) -> Result<ReplayState, ReplayError> {
        let len = bank.digest_len().ok_or(ReplayError::Bank(bank))?;
        if bank.hash(b"").is_none() {
            return Err(ReplayError::Bank(bank));
        }
        Ok(ReplayState {
            bank,
            pcr,
            value: vec![0; len],
            entries: 0,
            offset: 0,
        })
    }

    /// Extends with one entry that takes `encoded_len` bytes of the binary list (0 for an entry
    /// from a text list). An entry of another PCR is counted but not extended. On error the
    /// state is unchanged.
    pub fn extend(&mut self, entry: &Entry, encoded_len: u64) -> Result<(), ReplayError> {
        match entry.template_hash_ok() {
            Some(true) => {}
            Some(false) => {
                return Err(ReplayError::TemplateHash {
                    index: self.entries,
                    name: entry.name.clone(),
                    logged: hex::encode(&entry.template_hash),
                })
            }
            None => {
                return Err(ReplayError::HashLen {
                    index: self.entries,
                    name: entry.name.clone(),
                    len: entry.template_hash.len(),
                })
            }
        }
        if entry.pcr == self.pcr {
            let digest = entry
                .bank_digest(self.bank)
                .ok_or(ReplayError::Bank(self.bank))?;
            self.value = self
                .bank
                .extend(&self.value, &digest)
                .ok_or(ReplayError::Bank(self.bank))?;
        }
        self.entries += 1;
        self.offset += encoded_len;
        Ok(())
    }

    /// True when the replayed value is `quoted`.
    pub fn matches(&self, quoted: &[u8]) -> bool {
        self.value == quoted
    }
}

/// The IMA `boot_aggregate` a device's PCRs give in `bank`: the hash of PCR 0..=7 (SHA-1) or
/// PCR 0..=9 (other banks) concatenated. `None` when a PCR is missing or the bank cannot be
/// hashed.
pub fn boot_aggregate(bank: HashAlg, pcrs: &crate::PcrBanks) -> Option<Vec<u8>> {
    let last = if bank == HashAlg::Sha1 { 7 } else { 9 };
    let values: Option<Vec<&[u8]>> = (0..=last).map(|i| pcrs.get(bank, i)).collect();
    bank.hash_parts(&values?)
}
