//! Values of the TPM-resident TLS client key: its public area and its TPM2_Certify by the AK.
//!
//! The TLS key is an unrestricted ECC P-256 signing key (fixedTPM, fixedParent,
//! sensitiveDataOrigin, userWithAuth, noDA, sign) under the SRK. The fleet checks a
//! [`Certification`] with `vouch_attest::credential::verify_certification` before it issues a
//! client certificate for the key; the agent then signs TLS handshakes with `Tpm::sign_tls`.

/// The TLS client key's public part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsKey {
    /// Marshalled TPM2B_PUBLIC.
    pub public: Vec<u8>,
}

/// A TPM2_Certify of the TLS key, signed by the AK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certification {
    /// Marshalled TPMS_ATTEST (type TPM_ST_ATTEST_CERTIFY).
    pub attest: Vec<u8>,
    /// Marshalled TPMT_SIGNATURE by the AK.
    pub signature: Vec<u8>,
}

/// Converts an ECDSA TPMT_SIGNATURE to a DER `ECDSA-Sig-Value` (what TLS and X.509 carry).
/// `None` when it is not an ECDSA signature with P-256-sized scalars.
pub fn ecdsa_der(tpmt_signature: &[u8]) -> Option<Vec<u8>> {
    let vouch_attest::tpm::Signature::Ecdsa { r, s, .. } =
        vouch_attest::tpm::Signature::parse(tpmt_signature).ok()?
    else {
        return None;
    };
    let field = |v: &[u8]| -> Option<p256::FieldBytes> {
        let start = v.iter().position(|b| *b != 0).unwrap_or(v.len());
        let v = v.get(start..)?;
        let pad = 32usize.checked_sub(v.len())?;
        let mut out = p256::FieldBytes::default();
        out.get_mut(pad..)?.copy_from_slice(v);
        Some(out)
    };
    let sig = p256::ecdsa::Signature::from_scalars(field(&r)?, field(&s)?).ok()?;
    Some(sig.to_der().as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vouch_attest::tpm::Signature;
    use vouch_attest::HashAlg;

    #[test]
    fn short_scalars_are_padded_and_non_ecdsa_refused() {
        let sig = Signature::Ecdsa {
            hash: HashAlg::Sha256,
            r: vec![1; 31],
            s: vec![2; 32],
        };
        let der = ecdsa_der(&sig.marshal()).unwrap();
        let back = p256::ecdsa::Signature::from_der(&der).unwrap();
        assert_eq!(back.r().to_bytes()[1..], [1u8; 31]);
        let rsa = Signature::Rsassa {
            hash: HashAlg::Sha256,
            sig: vec![1; 256],
        };
        assert_eq!(ecdsa_der(&rsa.marshal()), None);
        let zero = Signature::Ecdsa {
            hash: HashAlg::Sha256,
            r: vec![0; 32],
            s: vec![2; 32],
        };
        assert_eq!(ecdsa_der(&zero.marshal()), None);
    }
}
