//! TPM2B_PUBLIC / TPMT_PUBLIC for RSA and ECC keys: parsing (with form detection), bit-exact
//! marshalling, object Names, and conversion to a plain [`PublicKey`].

use super::attrs::ObjectAttributes;
use super::keys::{KeyError, PublicKey};
use super::params::{AsymScheme, EccCurve, KdfScheme, ParamsError, SymDef};
use super::wire::{size_prefixed, strip_size_prefix, Reader, WireError, Writer};
use crate::alg::HashAlg;
use serde::Serialize;
use thiserror::Error;

/// TPM_ALG_RSA.
pub const ALG_RSA: u16 = 0x0001;
/// TPM_ALG_ECC.
pub const ALG_ECC: u16 = 0x0023;
/// Largest RSA modulus accepted (4096 bits).
pub const MAX_RSA_BYTES: usize = 512;
/// Largest ECC coordinate accepted (P-521).
pub const MAX_ECC_BYTES: usize = 66;

/// Errors reading a TPM public area or converting it to a key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PublicError {
    /// The bytes ended early, a size was out of range or bytes were left over.
    #[error("malformed TPMT_PUBLIC")]
    Wire(#[from] WireError),
    /// The algorithm parameters are malformed.
    #[error("malformed TPMT_PUBLIC parameters")]
    Params(#[from] ParamsError),
    /// The object type is not RSA or ECC.
    #[error("TPMT_PUBLIC.type 0x{0:04x} is not RSA (0x0001) or ECC (0x0023)")]
    UnsupportedType(u16),
    /// The unique field does not form a usable key.
    #[error("TPMT_PUBLIC unique field is not a usable key")]
    Key(#[from] KeyError),
    /// The nameAlg is unknown, so no Name can be computed.
    #[error("TPMT_PUBLIC.nameAlg {0} cannot be computed")]
    UnknownNameAlg(HashAlg),
}

/// How a public area was framed on input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PublicForm {
    /// A bare TPMT_PUBLIC.
    Bare,
    /// A TPM2B_PUBLIC (u16 size, then the TPMT_PUBLIC), the tpm2-tools "tss" format.
    SizePrefixed,
}

/// TPMS_RSA_PARMS plus the modulus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RsaPublic {
    /// Symmetric definition (NULL for signing keys).
    pub symmetric: SymDef,
    /// Fixed scheme, or NULL.
    pub scheme: AsymScheme,
    /// Key size in bits.
    pub key_bits: u16,
    /// Public exponent; 0 means 65537.
    pub exponent: u32,
    /// Modulus (TPM2B_PUBLIC_KEY_RSA).
    #[serde(serialize_with = "crate::tpm::ser_hex")]
    pub modulus: Vec<u8>,
}

/// TPMS_ECC_PARMS plus the public point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EccPublic {
    /// Symmetric definition (NULL for signing keys).
    pub symmetric: SymDef,
    /// Fixed scheme, or NULL.
    pub scheme: AsymScheme,
    /// The curve.
    pub curve: EccCurve,
    /// KDF scheme (NULL for signing keys).
    pub kdf: KdfScheme,
    /// X coordinate.
    #[serde(serialize_with = "crate::tpm::ser_hex")]
    pub x: Vec<u8>,
    /// Y coordinate.
    #[serde(serialize_with = "crate::tpm::ser_hex")]
    pub y: Vec<u8>,
}

/// Type-specific parameters and unique field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PublicParams {
    /// TPM_ALG_RSA.
    Rsa(RsaPublic),
    /// TPM_ALG_ECC.
    Ecc(EccPublic),
}

/// A TPMT_PUBLIC of an RSA or ECC key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TpmPublic {
    /// Hash algorithm of the object's Name.
    pub name_alg: HashAlg,
    /// Object attributes.
    pub attributes: ObjectAttributes,
    /// Policy digest (empty when none).
    #[serde(serialize_with = "crate::tpm::ser_hex")]
    pub auth_policy: Vec<u8>,
    /// Parameters and public key.
    pub params: PublicParams,
}

impl TpmPublic {
    /// Parses a TPM2B_PUBLIC or TPMT_PUBLIC, detecting which: a u16 prefix equal to the rest
    /// of the input marks a TPM2B_PUBLIC.
    pub fn parse(data: &[u8]) -> Result<(TpmPublic, PublicForm), PublicError> {
        if let Some(inner) = strip_size_prefix(data) {
            if let Ok(p) = TpmPublic::parse_bare(inner) {
                return Ok((p, PublicForm::SizePrefixed));
            }
        }
        Ok((TpmPublic::parse_bare(data)?, PublicForm::Bare))
    }

    /// Parses exactly one bare TPMT_PUBLIC.
    pub fn parse_bare(data: &[u8]) -> Result<TpmPublic, PublicError> {
        let mut r = Reader::new(data);
        let ty = r.u16("TPMT_PUBLIC.type")?;
        if ty != ALG_RSA && ty != ALG_ECC {
            return Err(PublicError::UnsupportedType(ty));
        }
        let name_alg = HashAlg::from_id(r.u16("TPMT_PUBLIC.nameAlg")?);
        let attributes = ObjectAttributes(r.u32("TPMT_PUBLIC.objectAttributes")?);
        let auth_policy = r.tpm2b(64, "TPMT_PUBLIC.authPolicy")?.to_vec();
        let symmetric = SymDef::read(&mut r)?;
        let params = if ty == ALG_RSA {
            let scheme = AsymScheme::read(&mut r, "TPMT_RSA_SCHEME.scheme")?;
            let key_bits = r.u16("TPMS_RSA_PARMS.keyBits")?;
            let exponent = r.u32("TPMS_RSA_PARMS.exponent")?;
            let modulus = r.tpm2b(MAX_RSA_BYTES, "TPM2B_PUBLIC_KEY_RSA")?.to_vec();
            PublicParams::Rsa(RsaPublic {
                symmetric,
                scheme,
                key_bits,
                exponent,
                modulus,
            })
        } else {
            let scheme = AsymScheme::read(&mut r, "TPMT_ECC_SCHEME.scheme")?;
            let curve = EccCurve::from_id(r.u16("TPMS_ECC_PARMS.curveID")?);
            let kdf = KdfScheme::read(&mut r)?;
            let x = r.tpm2b(MAX_ECC_BYTES, "TPMS_ECC_POINT.x")?.to_vec();
            let y = r.tpm2b(MAX_ECC_BYTES, "TPMS_ECC_POINT.y")?.to_vec();
            PublicParams::Ecc(EccPublic {
                symmetric,
                scheme,
                curve,
                kdf,
                x,
                y,
            })
        };
        r.finish("TPMT_PUBLIC")?;
        Ok(TpmPublic {
            name_alg,
            attributes,
            auth_policy,
            params,
        })
    }

    /// Marshals the bare TPMT_PUBLIC.
    pub fn marshal(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u16(match self.params {
            PublicParams::Rsa(_) => ALG_RSA,
            PublicParams::Ecc(_) => ALG_ECC,
        });
        w.u16(self.name_alg.id());
        w.u32(self.attributes.0);
        w.tpm2b(&self.auth_policy);
        match &self.params {
            PublicParams::Rsa(p) => {
                p.symmetric.write(&mut w);
                p.scheme.write(&mut w);
                w.u16(p.key_bits);
                w.u32(p.exponent);
                w.tpm2b(&p.modulus);
            }
            PublicParams::Ecc(p) => {
                p.symmetric.write(&mut w);
                p.scheme.write(&mut w);
                w.u16(p.curve.id());
                p.kdf.write(&mut w);
                w.tpm2b(&p.x);
                w.tpm2b(&p.y);
            }
        }
        w.into_bytes()
    }

    /// Marshals a TPM2B_PUBLIC.
    pub fn marshal_tpm2b(&self) -> Vec<u8> {
        size_prefixed(&self.marshal())
    }

    /// The object's Name: nameAlg (big-endian u16) || H_nameAlg(TPMT_PUBLIC).
    pub fn name(&self) -> Result<Vec<u8>, PublicError> {
        let digest = self
            .name_alg
            .hash(&self.marshal())
            .ok_or(PublicError::UnknownNameAlg(self.name_alg))?;
        let mut name = self.name_alg.id().to_be_bytes().to_vec();
        name.extend_from_slice(&digest);
        Ok(name)
    }

    /// The plain public key.
    pub fn key(&self) -> Result<PublicKey, PublicError> {
        Ok(match &self.params {
            PublicParams::Rsa(p) => {
                let e = if p.exponent == 0 { 65537 } else { p.exponent };
                PublicKey::rsa(&p.modulus, e)?
            }
            PublicParams::Ecc(p) => PublicKey::ec(p.curve, &p.x, &p.y)?,
        })
    }

    /// The key's fixed scheme (NULL when the caller chooses per signature).
    pub fn scheme(&self) -> AsymScheme {
        match &self.params {
            PublicParams::Rsa(p) => p.scheme,
            PublicParams::Ecc(p) => p.scheme,
        }
    }

    /// An ECC P-256 signing key (sha256 Name, ECDSA-SHA256 scheme, no policy) with the given
    /// attributes and point, as a TPM would report a key created from such a template.
    pub fn ecc_p256_signing(attributes: ObjectAttributes, x: &[u8], y: &[u8]) -> TpmPublic {
        TpmPublic {
            name_alg: HashAlg::Sha256,
            attributes,
            auth_policy: Vec::new(),
            params: PublicParams::Ecc(EccPublic {
                symmetric: SymDef::Null,
                scheme: AsymScheme::Ecdsa(HashAlg::Sha256),
                curve: EccCurve::NistP256,
                kdf: KdfScheme::Null,
                x: x.to_vec(),
                y: y.to_vec(),
            }),
        }
    }

    /// An RSA signing key (sha256 Name, RSASSA-SHA256 scheme, exponent 65537 written as 0).
    pub fn rsa_signing(attributes: ObjectAttributes, modulus: &[u8]) -> TpmPublic {
        TpmPublic {
            name_alg: HashAlg::Sha256,
            attributes,
            auth_policy: Vec::new(),
            params: PublicParams::Rsa(RsaPublic {
                symmetric: SymDef::Null,
                scheme: AsymScheme::Rsassa(HashAlg::Sha256),
                key_bits: (modulus.len() * 8).min(usize::from(u16::MAX)) as u16,
                exponent: 0,
                modulus: modulus.to_vec(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_both_forms() {
        let k = TpmPublic::ecc_p256_signing(ObjectAttributes::AK_TEMPLATE, &[1; 32], &[2; 32]);
        let bare = k.marshal();
        assert_eq!(
            TpmPublic::parse(&bare).unwrap(),
            (k.clone(), PublicForm::Bare)
        );
        assert_eq!(
            TpmPublic::parse(&k.marshal_tpm2b()).unwrap(),
            (k.clone(), PublicForm::SizePrefixed)
        );
        for n in 0..bare.len() {
            assert!(TpmPublic::parse_bare(&bare[..n]).is_err());
        }
        let name = k.name().unwrap();
        assert_eq!(name.len(), 34);
        assert_eq!(&name[..2], &[0x00, 0x0b]);
    }

    #[test]
    fn rsa_template_and_storage_parameters_round_trip() {
        let mut k = TpmPublic::rsa_signing(ObjectAttributes(0x0003_0072), &[0xAB; 256]);
        if let PublicParams::Rsa(p) = &mut k.params {
            p.symmetric = SymDef::Cipher {
                alg: 0x0006,
                key_bits: 128,
                mode: 0x0043,
            };
            p.scheme = AsymScheme::Null;
        }
        let (back, _) = TpmPublic::parse(&k.marshal()).unwrap();
        assert_eq!(back, k);
        assert_eq!(
            back.key().unwrap(),
            PublicKey::rsa(&[0xAB; 256], 65537).unwrap()
        );
    }

    #[test]
    fn rejects_other_types() {
        assert_eq!(
            TpmPublic::parse_bare(&[0x00, 0x08]),
            Err(PublicError::UnsupportedType(0x0008))
        );
    }
}
