//! `ima-sig` file signatures (the `security.ima` extended attribute, format v2) and the keys
//! they are checked against.
//!
//! A v2 signature: type (3 = `EVM_IMA_XATTR_DIGSIG`, 5 = portable), version 2, the kernel's
//! hash algorithm id, the key id (big-endian u32: the last four bytes of the SHA-1 of the
//! public key, PKCS#1 `RSAPublicKey` DER for RSA or the uncompressed point for EC), the
//! signature length (big-endian u16) and the signature over the file digest: PKCS#1 v1.5 for
//! RSA, DER ECDSA for EC keys (P-256 here).

use super::entry::FileDigest;
use crate::alg::HashAlg;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rsa::pkcs1::DecodeRsaPublicKey;
use serde_json::Value;
use spki::der::Decode;
use std::collections::BTreeMap;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

/// Why a key cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The keyring JSON does not have Keylime's shape.
    #[error("not Keylime's keyring JSON: {0}")]
    Shape(String),
    /// A key is not base64.
    #[error("keyring {keyring:?}: key {index} is not base64")]
    Base64 {
        /// The keyring.
        keyring: String,
        /// The key's position.
        index: usize,
    },
    /// A key is not a DER SubjectPublicKeyInfo of a supported algorithm.
    #[error("keyring {keyring:?}: key {index}: {why}")]
    Key {
        /// The keyring.
        keyring: String,
        /// The key's position.
        index: usize,
        /// Why.
        why: String,
    },
}

/// A public key that can check IMA signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA (PKCS#1 v1.5 signatures).
    Rsa(rsa::RsaPublicKey),
    /// ECDSA P-256.
    P256(p256::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// Loads a DER SubjectPublicKeyInfo; returns the key and its v2 key id.
    pub fn from_spki_der(der: &[u8]) -> Result<(PublicKey, u32), String> {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| format!("not DER SubjectPublicKeyInfo ({e})"))?;
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or("public key bit string has unused bits")?;
        let oid = spki.algorithm.oid.to_string();
        let key = match oid.as_str() {
            OID_RSA => PublicKey::Rsa(
                rsa::RsaPublicKey::from_pkcs1_der(bits).map_err(|e| format!("RSA key ({e})"))?,
            ),
            OID_EC => {
                let curve = spki
                    .algorithm
                    .parameters
                    .and_then(|p| p.decode_as::<spki::ObjectIdentifier>().ok())
                    .map(|o| o.to_string());
                if curve.as_deref() != Some(OID_P256) {
                    return Err(format!("EC curve {curve:?} is not supported (P-256 is)"));
                }
                PublicKey::P256(
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                        .map_err(|_| "P-256 point is not on the curve".to_string())?,
                )
            }
            other => {
                return Err(format!(
                    "key algorithm {other} is not supported (RSA, P-256 are)"
                ))
            }
        };
        Ok((key, key_id(bits)))
    }

    /// Loads the public key of a DER X.509 certificate (what IMA measures when a key is added to
    /// a keyring) or a DER SubjectPublicKeyInfo.
    pub fn from_cert_or_spki_der(der: &[u8]) -> Result<(PublicKey, u32), String> {
        match certificate_spki(der) {
            Some(spki) => PublicKey::from_spki_der(spki),
            None => PublicKey::from_spki_der(der),
        }
    }
}

/// The v2 key id of a public key's bytes (PKCS#1 DER or an EC point).
pub fn key_id(public_key_bits: &[u8]) -> u32 {
    let d = HashAlg::Sha1.hash(public_key_bits).unwrap_or_default();
    u32::from_be_bytes([d[16], d[17], d[18], d[19]])
}

/// One DER TLV at the start of `b`: (tag, whole TLV length, content range).
fn tlv(b: &[u8]) -> Option<(u8, usize, std::ops::Range<usize>)> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    (end <= b.len()).then_some((tag, end, hdr..end))
}

/// The SubjectPublicKeyInfo inside a DER certificate, if `der` is one.
fn certificate_spki(der: &[u8]) -> Option<&[u8]> {
    let (t, _, cert) = tlv(der)?;
    if t != 0x30 {
        return None;
    }
    let cert = &der[cert];
    let (t, _, tbs) = tlv(cert)?;
    if t != 0x30 {
        return None;
    }
    let mut rest = &cert[tbs];
    // [0] version (optional), serial, signature algorithm, issuer, validity, subject, then the
    // SubjectPublicKeyInfo.
    if rest.first() == Some(&0xa0) {
        rest = &rest[tlv(rest)?.1..];
    }
    for _ in 0..5 {
        rest = &rest[tlv(rest)?.1..];
    }
    let (t, len, _) = tlv(rest)?;
    (t == 0x30).then_some(&rest[..len])
}

/// Keys by key id, from the policy's `verification-keys` and from keys the log shows loaded.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<u32, PublicKey>,
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// Shorter than its header.
    #[error("signature shorter than its 9-byte header")]
    Short,
    /// Not a digital signature xattr (type 3 or 5).
    #[error("xattr type {0} is not a digital signature")]
    Type(u8),
    /// Not format version 2.
    #[error("signature format version {0} is not 2")]
    Version(u8),
    /// The length in the header is not the signature's.
    #[error("signature length {header} in the header, {actual} present")]
    Length {
        /// In the header.
        header: u16,
        /// Present.
        actual: usize,
    },
    /// The hash algorithm id is not one the signature can use.
    #[error("hash algorithm id {0} is not sha1, sha256, sha384 or sha512")]
    HashAlgo(u8),
    /// The signature's hash algorithm is not the file digest's.
    #[error("signed with {sig} but the file digest is {file}")]
    AlgMismatch {
        /// The signature's.
        sig: &'static str,
        /// The file digest's.
        file: String,
    },
    /// No key with the signature's key id.
    #[error("no key with id {0:08x}")]
    NoKey(u32),
    /// The signature does not verify under the key.
    #[error("signature by key {0:08x} does not verify")]
    Invalid(u32),
}

/// DigestInfo prefixes of PKCS#1 v1.5 signatures.
fn digest_info(alg: &str) -> Option<&'static [u8]> {
    Some(match alg {
        "sha1" => &[
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
            0x14,
        ],
        "sha256" => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
        "sha384" => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
        "sha512" => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
        _ => return None,
    })
}

impl Keyring {
    /// True when no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys are loaded.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Adds a key under its id.
    pub fn add(&mut self, key: PublicKey, id: u32) {
        self.keys.insert(id, key);
    }

    /// Reads Keylime's `verification-keys` (empty: no keys).
    pub fn from_keylime_json(text: &str) -> Result<Keyring, KeyError> {
        let mut ring = Keyring::default();
        if text.trim().is_empty() {
            return Ok(ring);
        }
        let shape = |e: &dyn std::fmt::Display| KeyError::Shape(e.to_string());
        let mut v: Value = serde_json::from_str(text).map_err(|e| shape(&e))?;
        if let Value::String(s) = &v {
            v = serde_json::from_str(s).map_err(|e| shape(&e))?;
        }
        let Value::Object(rings) = v else {
            return Err(KeyError::Shape("not an object of keyrings".into()));
        };
        for (name, ring_v) in rings {
            let ring_v = match ring_v {
                Value::String(s) => serde_json::from_str(&s).map_err(|e| shape(&e))?,
                other => other,
            };
            let pubkeys = ring_v
                .get("pubkeys")
                .and_then(Value::as_array)
                .ok_or_else(|| KeyError::Shape(format!("keyring {name:?} has no pubkeys list")))?;
            let keyids = ring_v.get("keyids").and_then(Value::as_array);
            for (index, k) in pubkeys.iter().enumerate() {
                use base64::Engine;
                let der = k
                    .as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .ok_or_else(|| KeyError::Base64 {
                        keyring: name.clone(),
                        index,
                    })?;
                let (key, id) = PublicKey::from_spki_der(&der).map_err(|why| KeyError::Key {
                    keyring: name.clone(),
                    index,
                    why,
                })?;
                let id = keyids
                    .and_then(|ids| ids.get(index))
                    .and_then(Value::as_u64)
                    .and_then(|i| u32::try_from(i).ok())
                    .unwrap_or(id);
                ring.add(key, id);
            }
        }
        Ok(ring)
    }

    /// Checks a v2 signature over `digest`.
    pub fn verify(&self, sig: &[u8], digest: &FileDigest) -> Result<(), SigError> {
        if sig.len() < 9 {
            return Err(SigError::Short);
        }
        if sig[0] != 3 && sig[0] != 5 {
            return Err(SigError::Type(sig[0]));
        }
        if sig[1] != 2 {
            return Err(SigError::Version(sig[1]));
        }
        let alg = match sig[2] {
            2 => "sha1",
            4 => "sha256",
            5 => "sha384",
            6 => "sha512",
            other => return Err(SigError::HashAlgo(other)),
        };
        let id = u32::from_be_bytes([sig[3], sig[4], sig[5], sig[6]]);
        let len = u16::from_be_bytes([sig[7], sig[8]]);
        let body = &sig[9..];
        if body.len() != len as usize {
            return Err(SigError::Length {
                header: len,
                actual: body.len(),
            });
        }
        if digest.alg != alg {
            return Err(SigError::AlgMismatch {
                sig: alg,
                file: digest.alg.clone(),
            });
        }
        let key = self.keys.get(&id).ok_or(SigError::NoKey(id))?;
        let ok = match key {
            PublicKey::Rsa(k) => {
                let prefix = digest_info(alg).ok_or(SigError::HashAlgo(sig[2]))?;
                let scheme = rsa::Pkcs1v15Sign {
                    hash_len: Some(digest.value.len()),
                    prefix: prefix.into(),
                };
                k.verify(scheme, &digest.value, body).is_ok()
            }
            PublicKey::P256(k) => p256::ecdsa::Signature::from_der(body)
                .is_ok_and(|s| k.verify_prehash(&digest.value, &s).is_ok()),
        };
        if ok {
            Ok(())
        } else {
            Err(SigError::Invalid(id))
        }
    }
}
