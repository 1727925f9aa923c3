//! TPM2_PolicyPCR: the digest of PCR values a policy binds, and the policy digest update.
//! (The text form of a selection, `sha256:7+sha1:0,1`, is [`PcrSelection`]'s `FromStr`.)

use super::{hash, PolicyDigestError, TPM_CC_POLICY_PCR};
use crate::alg::HashAlg;
use crate::pcrs::PcrBanks;
use crate::tpm::selection::PcrSelection;
use crate::tpm::wire::Writer;

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
        let sel = "sha256:7".parse::<PcrSelection>().unwrap();
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
        let sel = "sha256:0,7+sha1:1".parse::<PcrSelection>().unwrap();
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
        let sel: PcrSelection = "sha256:7,0-2+sha1:4".parse().unwrap();
        assert_eq!(sel.to_string(), "sha256:0,1,2,7+sha1:4");
        for bad in [
            "7",
            "md5:1",
            "sha256:24",
            "sha256:",
            "sha256:3-1",
            "sha1:1+sha1:2",
            // Issue 11, defect 2: one space made every agent refuse what the fleet accepted.
            "sha256:0, 7",
            " sha256:0",
            "sha256:+7",
        ] {
            assert!(
                matches!(
                    bad.parse::<PcrSelection>(),
                    Err(crate::tpm::selection::SelectionError::Text { .. })
                ),
                "{bad}"
            );
        }
    }
}
