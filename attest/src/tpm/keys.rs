//! Plain public keys (RSA, EC P-256/P-384) and their SubjectPublicKeyInfo DER / PEM encodings.
//!
//! A TPM public area (see [`super::public`]) converts into a [`PublicKey`]; PEM files written by
//! tpm2-tools or OpenSSL parse into one. The agent exports its AK as `ak.pub.pem` through
//! [`PublicKey::to_pem`].

use super::params::EccCurve;
use serde::Serialize;
use spki::der::asn1::{AnyRef, BitString, ObjectIdentifier, UintRef};
use spki::der::{Any, Decode, Encode};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use thiserror::Error;

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Errors converting public keys to and from SPKI DER / PEM.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The PEM armour could not be decoded.
    #[error("PEM: {0}")]
    Pem(spki::der::pem::Error),
    /// The PEM label is not PUBLIC KEY.
    #[error("PEM label is {0:?}, expected \"PUBLIC KEY\"")]
    PemLabel(String),
    /// The DER SubjectPublicKeyInfo is malformed.
    #[error("SubjectPublicKeyInfo DER: {0}")]
    Der(spki::der::Error),
    /// The key algorithm is neither rsaEncryption nor id-ecPublicKey.
    #[error("unsupported public key algorithm {0}")]
    UnsupportedAlgorithm(ObjectIdentifier),
    /// The EC key has no or unsupported curve parameters.
    #[error("unsupported EC curve {0} (supported: P-256, P-384)")]
    UnsupportedCurve(String),
    /// The EC point is not an uncompressed point of the curve's size.
    #[error("EC point of {len} bytes is not an uncompressed point for {curve:?}")]
    BadPoint {
        /// Curve of the key.
        curve: EccCurve,
        /// Length of the point found.
        len: usize,
    },
    /// The RSA exponent does not fit in 32 bits or is even.
    #[error("RSA public exponent is unsupported (must be odd and fit in 32 bits)")]
    BadExponent,
    /// The RSA modulus is empty.
    #[error("RSA modulus is empty")]
    EmptyModulus,
}

/// A public key usable for signature verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kty", rename_all = "snake_case")]
pub enum PublicKey {
    /// RSA: modulus without leading zero bytes, and the public exponent.
    Rsa {
        /// Modulus, big-endian, no leading zeros.
        #[serde(serialize_with = "crate::tpm::ser_hex")]
        modulus: Vec<u8>,
        /// Public exponent.
        exponent: u32,
    },
    /// EC on a NIST curve: affine coordinates padded to the field size.
    Ec {
        /// The curve (P-256 or P-384).
        curve: EccCurve,
        /// X coordinate.
        #[serde(serialize_with = "crate::tpm::ser_hex")]
        x: Vec<u8>,
        /// Y coordinate.
        #[serde(serialize_with = "crate::tpm::ser_hex")]
        y: Vec<u8>,
    },
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(start..).unwrap_or_default()
}

/// Left-pads `b` with zeros to `len` bytes; `None` when it is longer (ignoring leading zeros).
pub(crate) fn pad_to(b: &[u8], len: usize) -> Option<Vec<u8>> {
    let b = strip_zeros(b);
    let pad = len.checked_sub(b.len())?;
    let mut out = vec![0u8; pad];
    out.extend_from_slice(b);
    Some(out)
}

impl PublicKey {
    /// An RSA key; leading zero bytes of the modulus are dropped.
    pub fn rsa(modulus: &[u8], exponent: u32) -> Result<PublicKey, KeyError> {
        let modulus = strip_zeros(modulus).to_vec();
        if modulus.is_empty() {
            return Err(KeyError::EmptyModulus);
        }
        if exponent % 2 == 0 {
            return Err(KeyError::BadExponent);
        }
        Ok(PublicKey::Rsa { modulus, exponent })
    }

    /// An EC key on P-256 or P-384; coordinates are padded to the field size.
    pub fn ec(curve: EccCurve, x: &[u8], y: &[u8]) -> Result<PublicKey, KeyError> {
        let n = match curve {
            EccCurve::NistP256 | EccCurve::NistP384 => curve.coordinate_len().unwrap_or(0),
            other => return Err(KeyError::UnsupportedCurve(format!("{other:?}"))),
        };
        let bad = || KeyError::BadPoint {
            curve,
            len: x.len() + y.len(),
        };
        Ok(PublicKey::Ec {
            curve,
            x: pad_to(x, n).ok_or_else(bad)?,
            y: pad_to(y, n).ok_or_else(bad)?,
        })
    }

    /// An EC key from an uncompressed SEC1 point (`0x04 || x || y`).
    pub fn from_sec1(curve: EccCurve, point: &[u8]) -> Result<PublicKey, KeyError> {
        let n = curve.coordinate_len().unwrap_or(0);
        match point.split_first() {
            Some((0x04, xy)) if n > 0 && xy.len() == 2 * n => {
                let (x, y) = xy.split_at(n);
                PublicKey::ec(curve, x, y)
            }
            _ => Err(KeyError::BadPoint {
                curve,
                len: point.len(),
            }),
        }
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(KeyError::Der)?;
        let bits = spki.subject_public_key.raw_bytes();
        if spki.algorithm.oid == OID_RSA {
            let [n, e] = <[UintRef<'_>; 2]>::from_der(bits).map_err(KeyError::Der)?;
            let e_bytes = strip_zeros(e.as_bytes());
            if e_bytes.len() > 4 {
                return Err(KeyError::BadExponent);
            }
            let exponent = e_bytes
                .iter()
                .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
            return PublicKey::rsa(n.as_bytes(), exponent);
        }
        if spki.algorithm.oid != OID_EC {
            return Err(KeyError::UnsupportedAlgorithm(spki.algorithm.oid));
        }
        let curve_oid = spki
            .algorithm
            .parameters
            .map(|p: AnyRef<'_>| p.decode_as::<ObjectIdentifier>())
            .transpose()
            .map_err(KeyError::Der)?
            .ok_or_else(|| KeyError::UnsupportedCurve("none given".into()))?;
        let curve = match curve_oid {
            OID_P256 => EccCurve::NistP256,
            OID_P384 => EccCurve::NistP384,
            other => return Err(KeyError::UnsupportedCurve(other.to_string())),
        };
        let n = curve.coordinate_len().unwrap_or(0);
        let bad = KeyError::BadPoint {
            curve,
            len: bits.len(),
        };
        match bits.split_first() {
            Some((4, xy)) if xy.len() == 2 * n => {
                let (x, y) = xy.split_at(n);
                PublicKey::ec(curve, x, y)
            }
            _ => Err(bad),
        }
    }

    /// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        let (label, der) =
            spki::der::pem::decode_vec(pem.trim().as_bytes()).map_err(KeyError::Pem)?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::PemLabel(label.to_string()));
        }
        PublicKey::from_spki_der(&der)
    }

    /// The key in the form `ring` verifies with: a DER RSAPublicKey for RSA, the uncompressed
    /// point for EC.
    pub fn ring_public_key(&self) -> Result<Vec<u8>, KeyError> {
        match self {
            PublicKey::Rsa { modulus, exponent } => {
                let e = exponent.to_be_bytes();
                let ints = [
                    UintRef::new(modulus).map_err(KeyError::Der)?,
                    UintRef::new(&e).map_err(KeyError::Der)?,
                ];
                ints.to_der().map_err(KeyError::Der)
            }
            PublicKey::Ec { x, y, .. } => {
                let mut p = Vec::with_capacity(1 + x.len() + y.len());
                p.push(4);
                p.extend_from_slice(x);
                p.extend_from_slice(y);
                Ok(p)
            }
        }
    }

    /// DER SubjectPublicKeyInfo.
    pub fn to_spki_der(&self) -> Result<Vec<u8>, KeyError> {
        let (oid, parameters) = match self {
            PublicKey::Rsa { .. } => (
                OID_RSA,
                Any::encode_from(&spki::der::asn1::Null).map_err(KeyError::Der)?,
            ),
            PublicKey::Ec { curve, .. } => {
                let c = match curve {
                    EccCurve::NistP384 => OID_P384,
                    EccCurve::NistP256 => OID_P256,
                    other => return Err(KeyError::UnsupportedCurve(format!("{other:?}"))),
                };
                (OID_EC, Any::encode_from(&c).map_err(KeyError::Der)?)
            }
        };
        let key = self.ring_public_key()?;
        let spki = SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid,
                parameters: Some(parameters),
            },
            subject_public_key: BitString::from_bytes(&key).map_err(KeyError::Der)?,
        };
        spki.to_der().map_err(KeyError::Der)
    }

    /// PEM `PUBLIC KEY` with LF line endings (what OpenSSL and tpm2-tools read).
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let der = self.to_spki_der()?;
        spki::der::pem::encode_string("PUBLIC KEY", spki::der::pem::LineEnding::LF, &der)
            .map_err(KeyError::Pem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sec1_points_parse_and_bad_ones_are_refused() {
        let mut point = vec![0x04];
        point.extend_from_slice(&[1; 32]);
        point.extend_from_slice(&[2; 32]);
        let k = PublicKey::from_sec1(EccCurve::NistP256, &point).unwrap();
        assert_eq!(
            k,
            PublicKey::ec(EccCurve::NistP256, &[1; 32], &[2; 32]).unwrap()
        );
        point[0] = 0x02;
        assert!(PublicKey::from_sec1(EccCurve::NistP256, &point).is_err());
        assert!(PublicKey::from_sec1(EccCurve::NistP256, &[0x04; 10]).is_err());
        assert!(PublicKey::from_sec1(EccCurve::NistP256, &[]).is_err());
    }

    #[test]
    fn ec_spki_round_trip() {
        let k = PublicKey::ec(EccCurve::NistP256, &[1; 32], &[2; 32]).unwrap();
        let der = k.to_spki_der().unwrap();
        assert_eq!(PublicKey::from_spki_der(&der).unwrap(), k);
        let pem = k.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(PublicKey::from_pem(&pem).unwrap(), k);
    }

    #[test]
    fn rsa_spki_round_trip_with_high_bit_modulus() {
        let mut n = vec![0xC5; 256];
        n[255] = 0x01;
        let k = PublicKey::rsa(&n, 65537).unwrap();
        let der = k.to_spki_der().unwrap();
        assert_eq!(PublicKey::from_spki_der(&der).unwrap(), k);
    }

    #[test]
    fn rejects_wrong_label_and_garbage() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            PublicKey::from_pem(pem),
            Err(KeyError::PemLabel(_))
        ));
        assert!(PublicKey::from_spki_der(&[0x30, 0x03, 0x02, 0x01]).is_err());
        assert!(PublicKey::ec(EccCurve::NistP256, &[1; 33], &[1; 32]).is_err());
    }
}
