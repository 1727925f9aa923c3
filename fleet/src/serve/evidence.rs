//! Decoding the parts of an attestation report that are not TPM structures: the PCR values as
//! JSON and the gzip-compressed event log (inflated with a hard bound, so a small "zip bomb"
//! cannot exhaust memory). PCR selections are vouch-attest's `PcrSelection`.

use std::io::Read;
use vouch_attest::{HashAlg, PcrBanks};

/// Largest inflated event log accepted (real logs are well below 1 MiB).
pub const MAX_EVENTLOG_BYTES: u64 = 4 * 1024 * 1024;
/// Highest PCR index.
const MAX_PCR: u32 = 23;

/// A report part could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// The PCR values are not `{"bank": {"index": "hex"}}`.
    #[error("PCR values: {0}")]
    PcrJson(&'static str),
    /// A PCR value is not hex of the bank's digest size.
    #[error("PCR value {bank}:{pcr} is not {size} bytes of hex")]
    PcrValue { bank: String, pcr: u32, size: usize },
    /// The event log is not gzip data.
    #[error("event log is not valid gzip data: {0}")]
    Gzip(String),
    /// The event log inflates beyond the bound.
    #[error("event log inflates beyond {MAX_EVENTLOG_BYTES} bytes")]
    TooLarge,
}

/// Parses `{"sha256": {"0": "<hex>", ...}, ...}` into banks.
pub fn parse_pcr_values(v: &serde_json::Value) -> Result<PcrBanks, EvidenceError> {
    let banks = v
        .as_object()
        .ok_or(EvidenceError::PcrJson("not a JSON object of banks"))?;
    let mut out = PcrBanks::new();
    for (name, values) in banks {
        let alg = HashAlg::from_name(name).ok_or(EvidenceError::PcrJson("unknown bank name"))?;
        let size = alg
            .digest_len()
            .ok_or(EvidenceError::PcrJson("bank of unknown digest size"))?;
        let values = values.as_object().ok_or(EvidenceError::PcrJson(
            "a bank is not an object of PCR values",
        ))?;
        for (index, hexval) in values {
            let pcr: u32 = index
                .parse()
                .ok()
                .filter(|p| *p <= MAX_PCR)
                .ok_or(EvidenceError::PcrJson("PCR index is not a number 0-23"))?;
            let bad = || EvidenceError::PcrValue {
                bank: name.clone(),
                pcr,
                size,
            };
            let text = hexval.as_str().ok_or_else(bad)?;
            if text.len() != size * 2 {
                return Err(bad());
            }
            let bytes = hex::decode(text).map_err(|_| bad())?;
            out.insert(alg, pcr, bytes);
        }
    }
    Ok(out)
}

/// Inflates a gzip event log, refusing anything that grows beyond [`MAX_EVENTLOG_BYTES`].
pub fn gunzip_eventlog(gz: &[u8]) -> Result<Vec<u8>, EvidenceError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .take(MAX_EVENTLOG_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| EvidenceError::Gzip(e.to_string()))?;
    if out.len() as u64 > MAX_EVENTLOG_BYTES {
        return Err(EvidenceError::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn pcr_values_round_trip_and_refuse_bad_sizes() {
        let mut b = PcrBanks::new();
        b.insert(HashAlg::Sha256, 7, vec![7; 32]);
        b.insert(HashAlg::Sha1, 0, vec![1; 20]);
        assert_eq!(parse_pcr_values(&b.to_json()).unwrap(), b);
        let short = serde_json::json!({"sha256": {"7": "00"}});
        assert!(matches!(
            parse_pcr_values(&short),
            Err(EvidenceError::PcrValue { pcr: 7, .. })
        ));
        let idx = serde_json::json!({"sha256": {"24": "00"}});
        assert!(parse_pcr_values(&idx).is_err());
    }

    #[test]
    fn gzip_bomb_is_refused() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; (MAX_EVENTLOG_BYTES + 1) as usize])
            .unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        assert_eq!(gunzip_eventlog(&bomb), Err(EvidenceError::TooLarge));
        assert!(matches!(
            gunzip_eventlog(b"not gzip"),
            Err(EvidenceError::Gzip(_))
        ));
    }
}
