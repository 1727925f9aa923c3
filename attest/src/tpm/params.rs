//! Algorithm parameter unions inside TPMT_PUBLIC: symmetric definitions, asymmetric schemes,
//! KDF schemes and ECC curves.

use super::wire::{Reader, WireError, Writer};
use crate::alg::HashAlg;
use serde::Serialize;
use thiserror::Error;

/// TPM_ALG_NULL.
pub const ALG_NULL: u16 = 0x0010;

/// Errors reading algorithm parameters.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParamsError {
    /// The bytes ended early.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// TPMT_SYM_DEF_OBJECT names an algorithm this crate cannot size.
    #[error("TPMT_SYM_DEF_OBJECT.algorithm 0x{alg:04x} at offset {offset} is not NULL, AES, SM4 or CAMELLIA")]
    UnknownSymmetric {
        /// The algorithm id.
        alg: u16,
        /// Its offset.
        offset: usize,
    },
    /// An asymmetric scheme id is unknown.
    #[error("{field} 0x{alg:04x} at offset {offset} is not a known scheme")]
    UnknownScheme {
        /// Which scheme field.
        field: &'static str,
        /// The algorithm id.
        alg: u16,
        /// Its offset.
        offset: usize,
    },
}

/// TPMT_SYM_DEF_OBJECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SymDef {
    /// TPM_ALG_NULL (signing keys).
    Null,
    /// A block cipher (AES 0x0006, SM4 0x0013, CAMELLIA 0x0026) with key size and mode.
    Cipher {
        /// Algorithm id.
        alg: u16,
        /// Key size in bits.
        key_bits: u16,
        /// Mode id (CFB = 0x0043 for storage keys).
        mode: u16,
    },
}

impl SymDef {
    /// Reads a TPMT_SYM_DEF_OBJECT.
    pub fn read(r: &mut Reader<'_>) -> Result<SymDef, ParamsError> {
        let offset = r.offset();
        match r.u16("TPMT_SYM_DEF_OBJECT.algorithm")? {
            ALG_NULL => Ok(SymDef::Null),
            alg @ (0x0006 | 0x0013 | 0x0026) => Ok(SymDef::Cipher {
                alg,
                key_bits: r.u16("TPMT_SYM_DEF_OBJECT.keyBits")?,
                mode: r.u16("TPMT_SYM_DEF_OBJECT.mode")?,
            }),
            alg => Err(ParamsError::UnknownSymmetric { alg, offset }),
        }
    }

    /// Writes a TPMT_SYM_DEF_OBJECT.
    pub fn write(&self, w: &mut Writer) {
        match *self {
            SymDef::Null => w.u16(ALG_NULL),
            SymDef::Cipher {
                alg,
                key_bits,
                mode,
            } => {
                w.u16(alg);
                w.u16(key_bits);
                w.u16(mode);
            }
        }
    }
}

/// TPMT_RSA_SCHEME / TPMT_ECC_SCHEME: the key's fixed signing or encryption scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "scheme", content = "hash", rename_all = "snake_case")]
pub enum AsymScheme {
    /// No fixed scheme: the caller picks one per operation.
    Null,
    /// RSASSA-PKCS1-v1_5 (0x0014).
    Rsassa(HashAlg),
    /// RSAES-PKCS1-v1_5 (0x0015), no hash.
    Rsaes,
    /// RSASSA-PSS (0x0016).
    Rsapss(HashAlg),
    /// RSAES-OAEP (0x0017).
    Oaep(HashAlg),
    /// ECDSA (0x0018).
    Ecdsa(HashAlg),
    /// ECDH (0x0019).
    Ecdh(HashAlg),
    /// ECDAA (0x001A) with its commit count.
    Ecdaa(HashAlg, u16),
    /// SM2 (0x001B).
    Sm2(HashAlg),
    /// EC-Schnorr (0x001C).
    EcSchnorr(HashAlg),
    /// ECMQV (0x001D).
    Ecmqv(HashAlg),
}

impl AsymScheme {
    /// Reads a scheme selector and its details.
    pub fn read(r: &mut Reader<'_>, field: &'static str) -> Result<AsymScheme, ParamsError> {
        let offset = r.offset();
        let alg = r.u16(field)?;
        if alg == ALG_NULL {
            return Ok(AsymScheme::Null);
        }
        if alg == 0x0015 {
            return Ok(AsymScheme::Rsaes);
        }
        let known = matches!(alg, 0x0014 | 0x0016..=0x001D);
        if !known {
            return Err(ParamsError::UnknownScheme { field, alg, offset });
        }
        let h = HashAlg::from_id(r.u16("scheme details hashAlg")?);
        Ok(match alg {
            0x0014 => AsymScheme::Rsassa(h),
            0x0016 => AsymScheme::Rsapss(h),
            0x0017 => AsymScheme::Oaep(h),
            0x0018 => AsymScheme::Ecdsa(h),
            0x0019 => AsymScheme::Ecdh(h),
            0x001A => AsymScheme::Ecdaa(h, r.u16("TPMS_SCHEME_ECDAA.count")?),
            0x001B => AsymScheme::Sm2(h),
            0x001C => AsymScheme::EcSchnorr(h),
            _ => AsymScheme::Ecmqv(h),
        })
    }

    /// Writes the scheme selector and its details.
    pub fn write(&self, w: &mut Writer) {
        let (alg, hash, count) = match *self {
            AsymScheme::Null => (ALG_NULL, None, None),
            AsymScheme::Rsaes => (0x0015, None, None),
            AsymScheme::Rsassa(h) => (0x0014, Some(h), None),
            AsymScheme::Rsapss(h) => (0x0016, Some(h), None),
            AsymScheme::Oaep(h) => (0x0017, Some(h), None),
            AsymScheme::Ecdsa(h) => (0x0018, Some(h), None),
            AsymScheme::Ecdh(h) => (0x0019, Some(h), None),
            AsymScheme::Ecdaa(h, c) => (0x001A, Some(h), Some(c)),
            AsymScheme::Sm2(h) => (0x001B, Some(h), None),
            AsymScheme::EcSchnorr(h) => (0x001C, Some(h), None),
            AsymScheme::Ecmqv(h) => (0x001D, Some(h), None),
        };
        w.u16(alg);
        if let Some(h) = hash {
            w.u16(h.id());
        }
        if let Some(c) = count {
            w.u16(c);
        }
    }

    /// The scheme's hash algorithm, if it has one.
    pub fn hash(&self) -> Option<HashAlg> {
        match *self {
            AsymScheme::Null | AsymScheme::Rsaes => None,
            AsymScheme::Rsassa(h)
            | AsymScheme::Rsapss(h)
            | AsymScheme::Oaep(h)
            | AsymScheme::Ecdsa(h)
            | AsymScheme::Ecdh(h)
            | AsymScheme::Ecdaa(h, _)
            | AsymScheme::Sm2(h)
            | AsymScheme::EcSchnorr(h)
            | AsymScheme::Ecmqv(h) => Some(h),
        }
    }
}

/// TPMT_KDF_SCHEME.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KdfScheme {
    /// TPM_ALG_NULL.
    Null,
    /// MGF1 (0x0007), KDF1_SP800_56A (0x0020), KDF2 (0x0021) or KDF1_SP800_108 (0x0022).
    Kdf {
        /// The KDF algorithm id.
        alg: u16,
        /// Its hash.
        hash: HashAlg,
    },
}

impl KdfScheme {
    /// Reads a TPMT_KDF_SCHEME.
    pub fn read(r: &mut Reader<'_>) -> Result<KdfScheme, ParamsError> {
        let offset = r.offset();
        match r.u16("TPMT_KDF_SCHEME.scheme")? {
            ALG_NULL => Ok(KdfScheme::Null),
            alg @ (0x0007 | 0x0020..=0x0022) => Ok(KdfScheme::Kdf {
                alg,
                hash: HashAlg::from_id(r.u16("TPMT_KDF_SCHEME.hashAlg")?),
            }),
            alg => Err(ParamsError::UnknownScheme {
                field: "TPMT_KDF_SCHEME.scheme",
                alg,
                offset,
            }),
        }
    }

    /// Writes a TPMT_KDF_SCHEME.
    pub fn write(&self, w: &mut Writer) {
        match *self {
            KdfScheme::Null => w.u16(ALG_NULL),
            KdfScheme::Kdf { alg, hash } => {
                w.u16(alg);
                w.u16(hash.id());
            }
        }
    }
}

/// TPMI_ECC_CURVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EccCurve {
    /// TPM_ECC_NIST_P256 (0x0003).
    NistP256,
    /// TPM_ECC_NIST_P384 (0x0004).
    NistP384,
    /// TPM_ECC_NIST_P521 (0x0005).
    NistP521,
    /// Any other curve id (BN, SM2, ...).
    Other(u16),
}

impl EccCurve {
    /// Maps a TPM_ECC_CURVE id.
    pub fn from_id(id: u16) -> EccCurve {
        match id {
            0x0003 => EccCurve::NistP256,
            0x0004 => EccCurve::NistP384,
            0x0005 => EccCurve::NistP521,
            other => EccCurve::Other(other),
        }
    }

    /// The TPM_ECC_CURVE id.
    pub fn id(self) -> u16 {
        match self {
            EccCurve::NistP256 => 0x0003,
            EccCurve::NistP384 => 0x0004,
            EccCurve::NistP521 => 0x0005,
            EccCurve::Other(id) => id,
        }
    }

    /// Coordinate size in bytes for the NIST curves.
    pub fn coordinate_len(self) -> Option<usize> {
        match self {
            EccCurve::NistP256 => Some(32),
            EccCurve::NistP384 => Some(48),
            EccCurve::NistP521 => Some(66),
            EccCurve::Other(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_round_trip() {
        let schemes = [
            AsymScheme::Null,
            AsymScheme::Rsaes,
            AsymScheme::Rsassa(HashAlg::Sha1),
            AsymScheme::Rsapss(HashAlg::Sha256),
            AsymScheme::Oaep(HashAlg::Sha256),
            AsymScheme::Ecdsa(HashAlg::Sha384),
            AsymScheme::Ecdh(HashAlg::Sha256),
            AsymScheme::Ecdaa(HashAlg::Sha256, 3),
            AsymScheme::Sm2(HashAlg::Sm3_256),
            AsymScheme::EcSchnorr(HashAlg::Sha256),
            AsymScheme::Ecmqv(HashAlg::Sha256),
        ];
        for s in schemes {
            let mut w = Writer::new();
            s.write(&mut w);
            let b = w.into_bytes();
            let mut r = Reader::new(&b);
            assert_eq!(AsymScheme::read(&mut r, "scheme").unwrap(), s);
            r.finish("scheme").unwrap();
        }
        let mut r = Reader::new(&[0x00, 0x99]);
        assert!(matches!(
            AsymScheme::read(&mut r, "scheme"),
            Err(ParamsError::UnknownScheme { alg: 0x99, .. })
        ));
    }
}
