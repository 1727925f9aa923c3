//! Shared helpers for the event-log integration tests: locating the real test data and reading
//! the ground truth shipped beside it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vouch_attest::HashAlg;

/// `shared/testdata/eventlogs` (see `testsupport/testdata.rs`).
pub fn eventlogs_dir() -> PathBuf {
    testdata::eventlogs_dir()
}

#[path = "../../../testsupport/testdata.rs"]
mod testdata;

/// Every `*.bin` directly in `dir`, sorted.
pub fn bins(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    out.sort();
    out
}

/// Reads a log by file name from the top-level eventlogs directory.
pub fn read_log(name: &str) -> Vec<u8> {
    let p = eventlogs_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// bank -> pcr -> value.
pub type Expected = BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>>;

/// The `expected_pcrs` of a `*.expected_pcrs.json` file.
pub fn expected_json(path: &Path) -> Expected {
    let text = std::fs::read_to_string(path).expect("read expected json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("expected json parses");
    let mut out = Expected::new();
    let banks = v["expected_pcrs"]
        .as_object()
        .expect("expected_pcrs object");
    for (bank, pcrs) in banks {
        let alg = HashAlg::from_name(bank).expect("known bank name");
        for (pcr, value) in pcrs.as_object().expect("bank object") {
            let value = hex::decode(value.as_str().expect("hex string")).expect("hex");
            out.entry(alg)
                .or_default()
                .insert(pcr.parse().expect("pcr index"), value);
        }
    }
    out
}

/// The `pcrs:` section of an upstream tpm2-tools `tpm2_eventlog` YAML output:
/// ```text
/// pcrs:
///   sha1:
///     0  : 0xa0487b0d...
/// ```
pub fn expected_yaml(path: &Path) -> Expected {
    let text = std::fs::read_to_string(path).expect("read yaml");
    let mut out = Expected::new();
    let mut in_pcrs = false;
    let mut bank: Option<HashAlg> = None;
    for line in text.lines() {
        if line == "pcrs:" {
            in_pcrs = true;
            continue;
        }
        if !in_pcrs {
            continue;
        }
        if !line.starts_with(' ') {
            break;
        }
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_suffix(':') {
            bank = Some(HashAlg::from_name(name).expect("bank name"));
            continue;
        }
        let (pcr, value) = trimmed.split_once(':').expect("pcr line has a colon");
        let value = value.trim().trim_start_matches("0x");
        let alg = bank.expect("pcr line after a bank line");
        out.entry(alg).or_default().insert(
            pcr.trim().parse().expect("pcr index"),
            hex::decode(value.to_ascii_lowercase()).expect("hex value"),
        );
    }
    assert!(in_pcrs, "{} has no pcrs section", path.display());
    out
}
