//! PCR values by bank: the common currency between event-log replay, quotes and policies.

use crate::alg::HashAlg;
use std::collections::BTreeMap;

/// PCR values of one or more banks: bank -> PCR index -> digest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PcrBanks {
    banks: BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>>,
}

impl PcrBanks {
    /// An empty set of banks.
    pub fn new() -> PcrBanks {
        PcrBanks::default()
    }

    /// Sets one PCR value.
    pub fn insert(&mut self, alg: HashAlg, pcr: u32, value: Vec<u8>) {
        self.banks.entry(alg).or_default().insert(pcr, value);
    }

    /// One PCR value, if present.
    pub fn get(&self, alg: HashAlg, pcr: u32) -> Option<&[u8]> {
        self.banks.get(&alg)?.get(&pcr).map(Vec::as_slice)
    }

    /// One bank, if present.
    pub fn bank(&self, alg: HashAlg) -> Option<&BTreeMap<u32, Vec<u8>>> {
        self.banks.get(&alg)
    }

    /// Iterates banks in algorithm-id order.
    pub fn banks(&self) -> impl Iterator<Item = (HashAlg, &BTreeMap<u32, Vec<u8>>)> {
        self.banks.iter().map(|(a, b)| (*a, b))
    }

    /// True when no bank holds a value.
    pub fn is_empty(&self) -> bool {
        self.banks.values().all(BTreeMap::is_empty)
    }

    /// JSON shape used across the CLIs: `{"sha256": {"0": "<hex>", ...}, ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (alg, bank) in &self.banks {
            let mut b = serde_json::Map::new();
            for (pcr, v) in bank {
                b.insert(pcr.to_string(), serde_json::Value::String(hex::encode(v)));
            }
            out.insert(alg.name(), serde_json::Value::Object(b));
        }
        serde_json::Value::Object(out)
    }
}
