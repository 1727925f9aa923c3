//! The `[pcrs.<bank>]` tables of a policy: expected PCR values per bank, validated on load
//! (known bank name, PCR index 0..=23 written as a decimal key, digest of the bank's size).

use super::values::HexBytes;
use crate::alg::HashAlg;
use crate::pcrs::PcrBanks;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use thiserror::Error;

/// Highest PCR index of a PC Client TPM.
pub const MAX_PCR: u32 = 23;

/// TOML shape: bank name -> PCR index (as a string key) -> hex digest.
type RawPcrs = BTreeMap<String, BTreeMap<String, HexBytes>>;

/// Why a `[pcrs]` table was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PcrPolicyError {
    /// The bank name is not a hash algorithm this crate can compute.
    #[error("[pcrs.{name}]: not a PCR bank this verifier computes (sha1, sha256, sha384, sha512, sm3_256)")]
    Bank {
        /// The name as written.
        name: String,
    },
    /// The key is not a PCR index.
    #[error("[pcrs.{bank}] key {key:?}: not a PCR index 0..=23")]
    Index {
        /// The bank.
        bank: HashAlg,
        /// The key as written.
        key: String,
    },
    /// The digest has the wrong length for the bank.
    #[error("[pcrs.{bank}] PCR {pcr}: {found}-byte value, a {bank} PCR holds {expected} bytes")]
    Length {
        /// The bank.
        bank: HashAlg,
        /// The PCR.
        pcr: u32,
        /// Bytes given.
        found: usize,
        /// Bytes expected.
        expected: usize,
    },
}

/// Expected PCR values: bank -> PCR -> digest. Empty when the policy pins no PCR.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawPcrs")]
pub struct PcrPolicy {
    values: BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>>,
}

impl PcrPolicy {
    /// Builds the policy from PCR values (values of unknown-size banks are left out).
    pub fn from_banks(banks: &PcrBanks) -> PcrPolicy {
        let mut values: BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>> = BTreeMap::new();
        for (bank, pcrs) in banks.banks() {
            if bank.digest_len().is_none() {
                continue;
            }
            for (pcr, v) in pcrs {
                values.entry(bank).or_default().insert(*pcr, v.clone());
            }
        }
        PcrPolicy { values }
    }

    /// True when no PCR is pinned.
    pub fn is_empty(&self) -> bool {
        self.values.values().all(BTreeMap::is_empty)
    }

    /// Every pinned PCR: (bank, pcr, expected value), banks in algorithm-id order, PCRs
    /// ascending.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, u32, &[u8])> {
        self.values
            .iter()
            .flat_map(|(b, m)| m.iter().map(move |(p, v)| (*b, *p, v.as_slice())))
    }

    /// Pins one PCR, replacing an earlier value.
    pub fn insert(&mut self, bank: HashAlg, pcr: u32, value: Vec<u8>) {
        self.values.entry(bank).or_default().insert(pcr, value);
    }
}

impl TryFrom<RawPcrs> for PcrPolicy {
    type Error = PcrPolicyError;

    fn try_from(raw: RawPcrs) -> Result<PcrPolicy, PcrPolicyError> {
        let mut values: BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>> = BTreeMap::new();
        for (name, pcrs) in raw {
            let bank = HashAlg::from_name(&name)
                .filter(|b| b.digest_len().is_some())
                .ok_or_else(|| PcrPolicyError::Bank { name: name.clone() })?;
            let expected = bank.digest_len().unwrap_or(0);
            // An empty `[pcrs.<bank>]` pins nothing: not kept, so that a policy written back
            // (which leaves it out) loads equal.
            if pcrs.is_empty() {
                continue;
            }
            let out = values.entry(bank).or_default();
            for (key, value) in pcrs {
                let pcr = key
                    .parse::<u32>()
                    .ok()
                    .filter(|p| *p <= MAX_PCR && key == p.to_string())
                    .ok_or_else(|| PcrPolicyError::Index {
                        bank,
                        key: key.clone(),
                    })?;
                if value.0.len() != expected {
                    return Err(PcrPolicyError::Length {
                        bank,
                        pcr,
                        found: value.0.len(),
                        expected,
                    });
                }
                out.insert(pcr, value.0);
            }
        }
        Ok(PcrPolicy { values })
    }
}

/// Serializes as the TOML shape, PCRs in numeric order (a string-keyed map would sort "10"
/// before "2").
impl Serialize for PcrPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Bank<'a>(&'a BTreeMap<u32, Vec<u8>>);
        impl Serialize for Bank<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (pcr, v) in self.0 {
                    m.serialize_entry(&pcr.to_string(), &hex::encode(v))?;
                }
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(self.values.len()))?;
        for (bank, pcrs) in &self.values {
            m.serialize_entry(&bank.name(), &Bank(pcrs))?;
        }
        m.end()
    }
}
