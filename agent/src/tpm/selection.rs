//! PCR selections as written on the command line: `sha256:0,1,2,3+sha1:0-7`.

use std::fmt;
use std::str::FromStr;
use vouch_attest::HashAlg;

/// Highest PCR index a PC Client TPM has.
pub const MAX_PCR: u32 = 23;

/// Which PCRs of which banks to read or quote, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcrSelection {
    banks: Vec<(HashAlg, Vec<u32>)>,
}

/// Why a PCR selection string is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectionError {
    /// A bank part lacks the `alg:` prefix.
    #[error("PCR selection {0:?}: expected BANK:PCRS, e.g. sha256:0,1,7")]
    MissingBank(String),
    /// The bank name is not a hash algorithm the agent can read.
    #[error("PCR selection: unknown bank {0:?} (sha1, sha256, sha384, sha512, sm3_256)")]
    UnknownBank(String),
    /// A PCR index or range is not a number in 0..=23.
    #[error("PCR selection: bad PCR {0:?} (0-23, ranges as 0-7)")]
    BadPcr(String),
    /// The same bank appears twice or no PCR is selected.
    #[error("PCR selection: bank {0} repeated or empty")]
    RepeatedOrEmpty(String),
}

impl PcrSelection {
    /// A selection of one bank.
    pub fn single(alg: HashAlg, pcrs: impl IntoIterator<Item = u32>) -> PcrSelection {
        let mut v: Vec<u32> = pcrs.into_iter().filter(|p| *p <= MAX_PCR).collect();
        v.sort_unstable();
        v.dedup();
        PcrSelection {
            banks: vec![(alg, v)],
        }
    }

    /// Banks and their PCRs (ascending), in selection order.
    pub fn banks(&self) -> &[(HashAlg, Vec<u32>)] {
        &self.banks
    }
}

impl FromStr for PcrSelection {
    type Err = SelectionError;

    fn from_str(s: &str) -> Result<PcrSelection, SelectionError> {
        let mut banks: Vec<(HashAlg, Vec<u32>)> = Vec::new();
        for part in s.split('+') {
            let (bank, list) = part
                .split_once(':')
                .ok_or_else(|| SelectionError::MissingBank(part.to_string()))?;
            let alg = HashAlg::from_name(bank)
                .filter(|a| a.digest_len().is_some())
                .ok_or_else(|| SelectionError::UnknownBank(bank.to_string()))?;
            let mut pcrs = Vec::new();
            for item in list.split(',').filter(|i| !i.is_empty()) {
                let bad = || SelectionError::BadPcr(item.to_string());
                let (lo, hi) = match item.split_once('-') {
                    Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
                    None => {
                        let p: u32 = item.parse().map_err(|_| bad())?;
                        (p, p)
                    }
                };
                if lo > hi || hi > MAX_PCR {
                    return Err(bad());
                }
                pcrs.extend(lo..=hi);
            }
            pcrs.sort_unstable();
            pcrs.dedup();
            if pcrs.is_empty() || banks.iter().any(|(a, _)| *a == alg) {
                return Err(SelectionError::RepeatedOrEmpty(alg.name()));
            }
            banks.push((alg, pcrs));
        }
        Ok(PcrSelection { banks })
    }
}

impl fmt::Display for PcrSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (alg, pcrs)) in self.banks.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            let list: Vec<String> = pcrs.iter().map(u32::to_string).collect();
            write!(f, "{alg}:{}", list.join(","))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_ranges_and_banks() {
        let s: PcrSelection = "sha256:0,1,2-4,7+sha1:0-1".parse().unwrap();
        assert_eq!(
            s.banks(),
            &[
                (HashAlg::Sha256, vec![0, 1, 2, 3, 4, 7]),
                (HashAlg::Sha1, vec![0, 1])
            ]
        );
        assert_eq!(s.to_string(), "sha256:0,1,2,3,4,7+sha1:0,1");
    }

    #[test]
    fn names_what_is_wrong() {
        assert_eq!(
            "0,1".parse::<PcrSelection>(),
            Err(SelectionError::MissingBank("0,1".into()))
        );
        assert_eq!(
            "md5:0".parse::<PcrSelection>(),
            Err(SelectionError::UnknownBank("md5".into()))
        );
        assert_eq!(
            "sha256:24".parse::<PcrSelection>(),
            Err(SelectionError::BadPcr("24".into()))
        );
        assert_eq!(
            "sha256:5-2".parse::<PcrSelection>(),
            Err(SelectionError::BadPcr("5-2".into()))
        );
        assert_eq!(
            "sha256:".parse::<PcrSelection>(),
            Err(SelectionError::RepeatedOrEmpty("sha256".into()))
        );
    }
}
