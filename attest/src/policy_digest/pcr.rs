//! TPM2_PolicyPCR: the digest of PCR values a policy binds, and the policy digest update.
//!
//! Also the textual selection form `sha256:7+sha1:0,1` used on command lines and in files, so
//! the fleet and the agent name selections the same way.

use super::{hash, PolicyDigestError, TPM_CC_POLICY_PCR};
use crate::alg::HashAlg;
use crate::pcrs::PcrBanks;
use crate::tpm::selection::{PcrSelect, PcrSelection};
use crate::tpm::wire::Writer;

/// Highest PCR index accepted in a selection string (PC Client TPMs have 24 PCRs).
const MAX_PCR: u32 = 23;

/// `H(value_1 || ... || value_n)` of the selected PCRs in selection order: the `pcrDigest` of
/// TPM2_PolicyPCR, hashed with the policy session's algorithm `alg`.
pub fn pcr_values_digest(
    alg: HashAlg,
    selection: &PcrSelection,
    values: &PcrBanks,
) -> Result<Vec<u8>, PolicyDigestError> {
    if selection.is_empty() {
        return Err(PolicyDigestError::EmptySelection);
    }
    let mut parts: Vec<&[u8]> = Vec::with_capacity(selection.len());
    for (bank, pcr) in selection.iter() {
        let value = values
            .get(bank, pcr)
            .ok_or(PolicyDigestError::MissingPcr { bank, pcr })?;
        let want = bank
            .digest_len()
            .ok_or(PolicyDigestError::UnsupportedAlg(bank))?;
        if value.len() != want {
            return Err(PolicyDigestError::PcrLength {
                bank,
                pcr,
                len: value.len(),
                want,
            });
        }
        parts.push(value);
    }
    hash(alg, &parts)
}

/// Extends `previous` with TPM2_PolicyPCR over `selection` holding `values`:
/// `H(previous || TPM_CC_PolicyPCR || TPML_PCR_SELECTION || pcrDigest)`.
pub fn policy_pcr(
    alg: HashAlg,
    previous: &[u8],
    selection: &PcrSelection,
    values: &PcrBanks,
) -> Result<Vec<u8>, PolicyDigestError> {
    let want = alg
        .digest_len()
        .ok_or(PolicyDigestError::UnsupportedAlg(alg))?;
    if previous.len() != want {
        return Err(PolicyDigestError::PreviousLength {
            alg,
            len: previous.len(),
            want,
        });
    }
    let pcr_digest = pcr_values_digest(alg, selection, values)?;
    let mut w = Writer::new();
    selection.write(&mut w);
    let marshalled = w.into_bytes();
    hash(
        alg,
        &[
            previous,
            &TPM_CC_POLICY_PCR.to_be_bytes(),
            &marshalled,
            &pcr_digest,
        ],
    )
}

/// Parses `sha256:7` or `sha256:0,2-4+sha1:7` into a selection (banks in the order given, PCRs
/// ascending, each bank once, 0..=23).
pub fn parse_selection(text: &str) -> Result<PcrSelection, PolicyDigestError> {
    let bad = |part: &str, reason| PolicyDigestError::Selection {
        text: part.to_string(),
        reason,
    };
    let mut banks: Vec<PcrSelect> = Vec::new();
    for part in text.split('+') {
        let (bank, list) = part
            .split_once(':')
            .ok_or_else(|| bad(part, "expected BANK:PCRS, e.g. sha256:7"))?;
        let alg = HashAlg::from_name(bank)
            .filter(|a| a.digest_len().is_some())
            .ok_or_else(|| bad(part, "unknown bank (sha1, sha256, sha384, sha512, sm3_256)"))?;
        if banks.iter().any(|b| b.hash == alg) {
            return Err(bad(part, "bank listed twice"));
        }
        let mut pcrs = Vec::new();
        for item in list.split(',') {
            let num = |s: &str| s.parse::<u32>().ok().filter(|p| *p <= MAX_PCR);
            let (lo, hi) = match item.split_once('-') {
                Some((a, b)) => (num(a), num(b)),
                None => (num(item), num(item)),
            };
            match (lo, hi) {
                (Some(lo), Some(hi)) if lo <= hi => pcrs.extend(lo..=hi),
                _ => return Err(bad(part, "PCRs are 0-23, lists as 0,7 and ranges as 0-7")),
            }
        }
        let select = PcrSelect::new(alg, &pcrs)
            .map_err(|_| bad(part, "PCRs are 0-23, lists as 0,7 and ranges as 0-7"))?;
        banks.push(select);
    }
    Ok(PcrSelection { banks })
}

/// The textual form of a selection, as [`parse_selection`] reads it.
pub fn selection_string(selection: &PcrSelection) -> String {
    selection
        .banks
        .iter()
        .map(|b| {
            let pcrs: Vec<String> = b.pcrs().map(|p| p.to_string()).collect();
            format!("{}:{}", b.hash.name(), pcrs.join(","))
        })
        .collect::<Vec<_>>()
        .join("+")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256(data: &[u8]) -> Vec<u8> {
        HashAlg::Sha256.hash(data).unwrap_or_default()
    }

    #[test]
    fn policy_pcr_over_pcr7_matches_a_hand_computation() {
        // Independent of the code above: the marshalled TPML_PCR_SELECTION for sha256:7 written
        // out byte by byte, PCR 7 all zero (a fresh TPM).
        let sel = parse_selection("sha256:7").unwrap();
        let mut values = PcrBanks::new();
        values.insert(HashAlg::Sha256, 7, vec![0; 32]);
        let got = policy_pcr(HashAlg::Sha256, &[0; 32], &sel, &values).unwrap();
        let mut input = vec![0u8; 32];
        input.extend_from_slice(&[0, 0, 1, 0x7f]);
        input.extend_from_slice(&[0, 0, 0, 1, 0, 0x0b, 3, 0x80, 0, 0]);
        input.extend_from_slice(&sha256(&[0; 32]));
        assert_eq!(got, sha256(&input));
        // The value tpm2_createpolicy --policy-pcr -l sha256:7 prints on a fresh swtpm.
        assert_eq!(
            hex::encode(&got),
            "8b5682d81b29435d08d79278150611dc7e5923b2fefcce684a09577b40130a8b"
        );
    }

    #[test]
    fn values_are_taken_in_selection_order_and_checked() {
        let sel = parse_selection("sha256:0,7+sha1:1").unwrap();
        let mut values = PcrBanks::new();
        values.insert(HashAlg::Sha256, 0, vec![1; 32]);
        values.insert(HashAlg::Sha256, 7, vec![2; 32]);
        assert_eq!(
            pcr_values_digest(HashAlg::Sha256, &sel, &values),
            Err(PolicyDigestError::MissingPcr {
                bank: HashAlg::Sha1,
                pcr: 1
            })
        );
        values.insert(HashAlg::Sha1, 1, vec![3; 32]);
        assert!(matches!(
            pcr_values_digest(HashAlg::Sha256, &sel, &values),
            Err(PolicyDigestError::PcrLength {
                len: 32,
                want: 20,
                ..
            })
        ));
        values.insert(HashAlg::Sha1, 1, vec![3; 20]);
        let mut concat = vec![1u8; 32];
        concat.extend_from_slice(&[2; 32]);
        concat.extend_from_slice(&[3; 20]);
        assert_eq!(
            pcr_values_digest(HashAlg::Sha256, &sel, &values).unwrap(),
            sha256(&concat)
        );
        assert!(matches!(
            policy_pcr(HashAlg::Sha256, &[0; 20], &sel, &values),
            Err(PolicyDigestError::PreviousLength { len: 20, .. })
        ));
    }

    #[test]
    fn selection_strings_round_trip_and_errors_name_the_part() {
        let sel = parse_selection("sha256:7,0-2+sha1:4").unwrap();
        assert_eq!(selection_string(&sel), "sha256:0,1,2,7+sha1:4");
        for bad in [
            "7",
            "md5:1",
            "sha256:24",
            "sha256:",
            "sha256:3-1",
            "sha1:1+sha1:2",
        ] {
            assert!(
                matches!(
                    parse_selection(bad),
                    Err(PolicyDigestError::Selection { .. })
                ),
                "{bad}"
            );
        }
    }
}
