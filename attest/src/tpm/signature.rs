//! TPMT_SIGNATURE: the signature a TPM returns with a quote or certification (RSASSA, RSAPSS,
//! ECDSA), parsed and marshalled bit-exactly.

use super::wire::{Reader, WireError, Writer};
use crate::alg::HashAlg;
use serde::Serialize;
use thiserror::Error;

/// TPM_ALG_RSASSA.
pub const ALG_RSASSA: u16 = 0x0014;
/// TPM_ALG_RSAPSS.
pub const ALG_RSAPSS: u16 = 0x0016;
/// TPM_ALG_ECDSA.
pub const ALG_ECDSA: u16 = 0x0018;
/// Largest RSA signature accepted (4096-bit keys).
pub const MAX_RSA_BYTES: usize = 512;
/// Largest ECC scalar accepted (P-521).
pub const MAX_ECC_BYTES: usize = 66;

/// Errors reading a TPMT_SIGNATURE.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// The bytes ended early, a size was out of range or bytes were left over.
    #[error("malformed TPMT_SIGNATURE")]
    Wire(#[from] WireError),
    /// sigAlg is not RSASSA, RSAPSS or ECDSA.
    #[error("TPMT_SIGNATURE: unsupported signature algorithm 0x{0:04x} (supported: RSASSA 0x0014, RSAPSS 0x0016, ECDSA 0x0018)")]
    UnsupportedAlgorithm(u16),
}

/// A TPMT_SIGNATURE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum Signature {
    /// RSASSA-PKCS1-v1_5 over the message hashed with `hash`.
    Rsassa {
        /// Hash algorithm.
        hash: HashAlg,
        /// The signature (modulus-sized).
        #[serde(serialize_with = "crate::tpm::ser_hex")]
        sig: Vec<u8>,
    },
    /// RSASSA-PSS over the message hashed with `hash` (TPMs use a salt as long as the digest).
    Rsapss {
        /// Hash algorithm.
        hash: HashAlg,
        /// The signature (modulus-sized).
        #[serde(serialize_with = "crate::tpm::ser_hex")]
        sig: Vec<u8>,
    },
    /// ECDSA over the message hashed with `hash`.
    Ecdsa {
        /// Hash algorithm.
        hash: HashAlg,
        /// r, big-endian.
        #[serde(serialize_with = "crate::tpm::ser_hex")]
        r: Vec<u8>,
        /// s, big-endian.
        #[serde(serialize_with = "crate::tpm::ser_hex")]
        s: Vec<u8>,
    },
}

impl Signature {
    /// Parses exactly one TPMT_SIGNATURE.
    pub fn parse(data: &[u8]) -> Result<Signature, SignatureError> {
        let mut r = Reader::new(data);
        let sig = Signature::read(&mut r)?;
        r.finish("TPMT_SIGNATURE")?;
        Ok(sig)
    }

    /// Reads a TPMT_SIGNATURE from a larger structure.
    pub fn read(r: &mut Reader<'_>) -> Result<Signature, SignatureError> {
        let alg = r.u16("TPMT_SIGNATURE.sigAlg")?;
        match alg {
            ALG_RSASSA | ALG_RSAPSS => {
                let hash = HashAlg::from_id(r.u16("TPMS_SIGNATURE_RSA.hash")?);
                let sig = r.tpm2b(MAX_RSA_BYTES, "TPMS_SIGNATURE_RSA.sig")?.to_vec();
                Ok(if alg == ALG_RSASSA {
                    Signature::Rsassa { hash, sig }
                } else {
                    Signature::Rsapss { hash, sig }
                })
            }
            ALG_ECDSA => {
                let hash = HashAlg::from_id(r.u16("TPMS_SIGNATURE_ECC.hash")?);
                let sr = r.tpm2b(MAX_ECC_BYTES, "TPMS_SIGNATURE_ECC.signatureR")?;
                let ss = r.tpm2b(MAX_ECC_BYTES, "TPMS_SIGNATURE_ECC.signatureS")?;
                Ok(Signature::Ecdsa {
                    hash,
                    r: sr.to_vec(),
                    s: ss.to_vec(),
                })
            }
            other => Err(SignatureError::UnsupportedAlgorithm(other)),
        }
    }

    /// Marshals the TPMT_SIGNATURE.
    pub fn marshal(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_bytes()
    }

    /// Writes the TPMT_SIGNATURE into a larger structure.
    pub fn write(&self, w: &mut Writer) {
        w.u16(self.alg_id());
        w.u16(self.hash().id());
        match self {
            Signature::Rsassa { sig, .. } | Signature::Rsapss { sig, .. } => w.tpm2b(sig),
            Signature::Ecdsa { r, s, .. } => {
                w.tpm2b(r);
                w.tpm2b(s);
            }
        }
    }

    /// The TPM_ALG_ID of the signature scheme.
    pub fn alg_id(&self) -> u16 {
        match self {
            Signature::Rsassa { .. } => ALG_RSASSA,
            Signature::Rsapss { .. } => ALG_RSAPSS,
            Signature::Ecdsa { .. } => ALG_ECDSA,
        }
    }

    /// The hash algorithm of the scheme (also the one a quote's pcrDigest uses).
    pub fn hash(&self) -> HashAlg {
        match self {
            Signature::Rsassa { hash, .. }
            | Signature::Rsapss { hash, .. }
            | Signature::Ecdsa { hash, .. } => *hash,
        }
    }

    /// Short scheme name for messages: `rsassa`, `rsapss`, `ecdsa`.
    pub fn scheme_name(&self) -> &'static str {
        match self {
            Signature::Rsassa { .. } => "rsassa",
            Signature::Rsapss { .. } => "rsapss",
            Signature::Ecdsa { .. } => "ecdsa",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let sigs = [
            Signature::Rsassa {
                hash: HashAlg::Sha256,
                sig: vec![1; 256],
            },
            Signature::Rsapss {
                hash: HashAlg::Sha384,
                sig: vec![2; 256],
            },
            Signature::Ecdsa {
                hash: HashAlg::Sha256,
                r: vec![3; 32],
                s: vec![4; 32],
            },
        ];
        for s in sigs {
            let bytes = s.marshal();
            assert_eq!(Signature::parse(&bytes).unwrap(), s);
            for n in 0..bytes.len() {
                assert!(Signature::parse(&bytes[..n]).is_err());
            }
        }
        assert_eq!(
            Signature::parse(&[0x00, 0x1c, 0, 0x0b]),
            Err(SignatureError::UnsupportedAlgorithm(0x001c))
        );
    }
}
