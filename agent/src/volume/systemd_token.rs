//! The `systemd-tpm2` LUKS2 token of `systemd-cryptenroll --tpm2-device=` (systemd 252), read
//! into types and written the way systemd writes it, so that either side unlocks the other's.
//!
//! What systemd 252 stores (facts from its `src/shared/tpm2-util.c` and
//! `src/cryptenroll/cryptenroll-tpm2.c`):
//!
//! * fields in this order: `type`, `keyslots` (one keyslot id as a string), `tpm2-blob` (base64
//!   of a marshalled TPM2B_PRIVATE followed by a marshalled TPM2B_PUBLIC), `tpm2-pcrs` (array of
//!   PCR numbers), `tpm2-pcr-bank` (`sha1`, `sha256`, `sha384`, `sha512`; absent before systemd
//!   250: picked automatically), `tpm2-primary-alg` (`ecc` or `rsa`; absent means `ecc`),
//!   `tpm2-policy-hash` (lowercase hex of the policy digest), `tpm2-pin` (boolean), and for
//!   signed PCR policies `tpm2_pubkey_pcrs` and `tpm2_pubkey` (base64 PEM).
//! * the sealed object is a KEYEDHASH object (fixedTPM, fixedParent) holding 32 random bytes,
//!   created under a transient primary key in the owner hierarchy from a fixed template (ECC
//!   NIST P-256 or RSA-2048, restricted decryption key, AES-128-CFB, see
//!   `crate::tpm::esapi::keys::systemd_primary_template`); its policy is TPM2_PolicyPCR over
//!   the selected PCRs of the bank with their current values (none when no PCR is selected),
//!   then TPM2_PolicyAuthValue when a PIN is used.
//! * the keyslot passphrase is the base64 (with padding) of the unsealed bytes; the keyslot
//!   uses PBKDF2-SHA512 with 1000 iterations ([`SYSTEMD_KDF`]).
//!
//! Parsing is pure ([`parse`], [`parse_json`]): bytes in, typed token or an error naming the
//! field out. A fuzz target covers it.

use base64::Engine;
use serde_json::Value;
use zeroize::Zeroizing;

use super::luks2::hash::LuksHash;
use super::luks2::json::{Fields, TokenJson};
use super::luks2::kdf::Kdf;
use super::luks2::token::Token;
use vouch_attest::tpm::PcrSelection;
use vouch_attest::HashAlg;

/// Token type systemd uses.
pub const SYSTEMD_TOKEN: &str = "systemd-tpm2";
/// Bytes systemd seals (and Vouch seals for a systemd token).
pub const SYSTEMD_SECRET_LEN: usize = 32;
/// The KDF of the keyslot systemd-cryptenroll adds for a TPM-held secret.
pub const SYSTEMD_KDF: Kdf = Kdf::Pbkdf2 {
    hash: LuksHash::Sha512,
    iterations: 1000,
};
/// Largest `tpm2-blob` accepted (base64 characters): a TPM2B_PRIVATE and a TPM2B_PUBLIC.
const MAX_BLOB_B64: usize = 8 * 1024;
/// Largest `tpm2_pubkey` accepted (base64 characters).
const MAX_PUBKEY_B64: usize = 16 * 1024;
/// PCRs systemd accepts (TPM2_PCRS_MAX).
const PCRS_MAX: u32 = 24;

/// Errors of reading a `systemd-tpm2` token, each naming the field that is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SystemdTokenError {
    /// The JSON text is not a LUKS2 token object.
    #[error("the token is not a LUKS2 token object: {0}")]
    Json(String),
    /// The token has another type.
    #[error("token type is {0:?}, not {SYSTEMD_TOKEN:?}")]
    Kind(String),
    /// systemd's tokens name exactly one keyslot.
    #[error("{SYSTEMD_TOKEN} token names {0} keyslots; systemd writes exactly one")]
    Keyslots(usize),
    /// A required field is missing.
    #[error("{SYSTEMD_TOKEN} token lacks field {0:?}")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("{SYSTEMD_TOKEN} token field {field:?} is not {expected}")]
    Type {
        field: &'static str,
        expected: &'static str,
    },
    /// A PCR list holds something other than PCR numbers 0 to 23.
    #[error("{SYSTEMD_TOKEN} token field {0:?} is not an array of PCR numbers 0 to 23")]
    Pcrs(&'static str),
    /// The PCR bank is not one systemd knows.
    #[error("{SYSTEMD_TOKEN} token: PCR bank {0:?} is not sha1, sha256, sha384 or sha512")]
    Bank(String),
    /// The primary key algorithm is not one systemd knows.
    #[error("{SYSTEMD_TOKEN} token: primary key algorithm {0:?} is not ecc or rsa")]
    PrimaryAlg(String),
    /// A base64 field does not decode (or is too long).
    #[error("{SYSTEMD_TOKEN} token field {0:?} is not base64 of a sane length")]
    Base64(&'static str),
    /// The policy hash is not hex of a SHA-256 digest.
    #[error("{SYSTEMD_TOKEN} token field \"tpm2-policy-hash\" is not hex of 32 bytes")]
    PolicyHash,
    /// The blob is not a TPM2B_PRIVATE followed by a TPM2B_PUBLIC.
    #[error("{SYSTEMD_TOKEN} token field \"tpm2-blob\" is not a TPM2B_PRIVATE followed by a TPM2B_PUBLIC: {0}")]
    Blob(&'static str),
    /// `tpm2_pubkey_pcrs` without `tpm2_pubkey`.
    #[error("{SYSTEMD_TOKEN} token has tpm2_pubkey_pcrs but no tpm2_pubkey")]
    PubkeyMissing,
}

/// The primary key template systemd seals under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimaryAlg {
    /// ECC NIST P-256 (systemd's first choice).
    Ecc,
    /// RSA 2048 (systemd's fallback for TPMs without ECC).
    Rsa,
}

impl PrimaryAlg {
    /// The name in the token.
    pub fn name(self) -> &'static str {
        match self {
            PrimaryAlg::Ecc => "ecc",
            PrimaryAlg::Rsa => "rsa",
        }
    }
}

/// A secret sealed the way systemd seals it: what the TPM needs to unseal it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdSeal {
    /// Template of the primary key it was sealed under.
    pub primary_alg: PrimaryAlg,
    /// The PCR bank of the policy.
    pub bank: HashAlg,
    /// The PCRs of the policy, ascending (empty: no PCR policy).
    pub pcrs: Vec<u32>,
    /// Marshalled TPM2B_PRIVATE (with its size prefix).
    pub private: Vec<u8>,
    /// Marshalled TPM2B_PUBLIC (with its size prefix).
    pub public: Vec<u8>,
    /// The policy digest the object was sealed with (SHA-256).
    pub policy_hash: Vec<u8>,
}

impl SystemdSeal {
    /// The PCR selection of the policy (one bank).
    pub fn selection(&self) -> PcrSelection {
        PcrSelection::single(self.bank, self.pcrs.iter().copied())
    }

    /// `tpm2-blob`: the private part followed by the public part.
    pub fn blob(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.private.len() + self.public.len());
        out.extend_from_slice(&self.private);
        out.extend_from_slice(&self.public);
        out
    }
}

/// A parsed `systemd-tpm2` token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdToken {
    /// The keyslot it unlocks.
    pub keyslot: u32,
    /// The sealed secret.
    pub seal: SystemdSeal,
    /// True when `tpm2-pcr-bank` was absent (systemd < 250: the bank is picked at unlock;
    /// read here as sha256).
    pub bank_implied: bool,
    /// `tpm2-pin`: the object also needs a PIN (TPM2_PolicyAuthValue).
    pub pin: bool,
    /// `tpm2_pubkey` (PEM) of a signed PCR policy, if any.
    pub pubkey: Option<Vec<u8>>,
    /// `tpm2_pubkey_pcrs`: PCRs of the signed policy.
    pub pubkey_pcrs: Vec<u32>,
}

fn bank_name(bank: HashAlg) -> Option<&'static str> {
    match bank {
        HashAlg::Sha1 => Some("sha1"),
        HashAlg::Sha256 => Some("sha256"),
        HashAlg::Sha384 => Some("sha384"),
        HashAlg::Sha512 => Some("sha512"),
        _ => None,
    }
}

fn bank_from(name: &str) -> Option<HashAlg> {
    // systemd compares case-insensitively.
    match name.to_ascii_lowercase().as_str() {
        "sha1" => Some(HashAlg::Sha1),
        "sha256" => Some(HashAlg::Sha256),
        "sha384" => Some(HashAlg::Sha384),
        "sha512" => Some(HashAlg::Sha512),
        _ => None,
    }
}

fn pcr_list(v: &Value, field: &'static str) -> Result<Vec<u32>, SystemdTokenError> {
    let arr = v.as_array().ok_or(SystemdTokenError::Pcrs(field))?;
    let mut mask = 0u32;
    for e in arr {
        let n = e
            .as_u64()
            .filter(|n| *n < u64::from(PCRS_MAX))
            .ok_or(SystemdTokenError::Pcrs(field))?;
        mask |= 1 << n;
    }
    Ok((0..PCRS_MAX).filter(|i| mask & (1 << i) != 0).collect())
}

fn string<'a>(f: &'a Fields, field: &'static str) -> Result<Option<&'a str>, SystemdTokenError> {
    match f.get(field) {
        None => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or(SystemdTokenError::Type {
            field,
            expected: "a string",
        }),
    }
}

fn base64(s: &str, field: &'static str, max: usize) -> Result<Vec<u8>, SystemdTokenError> {
    if s.len() > max {
        return Err(SystemdTokenError::Base64(field));
    }
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| SystemdTokenError::Base64(field))
}

/// Splits `tpm2-blob` into its TPM2B_PRIVATE and TPM2B_PUBLIC (each with its size prefix).
pub fn split_blob(blob: &[u8]) -> Result<(Vec<u8>, Vec<u8>), SystemdTokenError> {
    fn take<'a>(
        b: &'a [u8],
        what: &'static str,
    ) -> Result<(&'a [u8], &'a [u8]), SystemdTokenError> {
        let len = b
            .get(..2)
            .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])))
            .ok_or(SystemdTokenError::Blob(what))?;
        if len == 0 || b.len() < 2 + len {
            return Err(SystemdTokenError::Blob(what));
        }
        Ok(b.split_at(2 + len))
    }
    let (private, rest) = take(blob, "the TPM2B_PRIVATE is truncated or empty")?;
    let (public, rest) = take(rest, "the TPM2B_PUBLIC is truncated or empty")?;
    if !rest.is_empty() {
        return Err(SystemdTokenError::Blob("bytes follow the TPM2B_PUBLIC"));
    }
    Ok((private.to_vec(), public.to_vec()))
}

/// Reads a `systemd-tpm2` token.
pub fn parse(token: &Token) -> Result<SystemdToken, SystemdTokenError> {
    if token.kind != SYSTEMD_TOKEN {
        return Err(SystemdTokenError::Kind(token.kind.clone()));
    }
    let keyslot = match token.keyslots.as_slice() {
        [k] => *k,
        other => return Err(SystemdTokenError::Keyslots(other.len())),
    };
    let f = &token.fields;
    let pcrs = pcr_list(
        f.get("tpm2-pcrs")
            .ok_or(SystemdTokenError::Missing("tpm2-pcrs"))?,
        "tpm2-pcrs",
    )?;
    let (bank, bank_implied) = match string(f, "tpm2-pcr-bank")? {
        Some(s) => (
            bank_from(s).ok_or_else(|| SystemdTokenError::Bank(s.to_string()))?,
            false,
        ),
        None => (HashAlg::Sha256, true),
    };
    let primary_alg = match string(f, "tpm2-primary-alg")? {
        None => PrimaryAlg::Ecc,
        Some(s) => match s.to_ascii_lowercase().as_str() {
            "ecc" => PrimaryAlg::Ecc,
            "rsa" => PrimaryAlg::Rsa,
            _ => return Err(SystemdTokenError::PrimaryAlg(s.to_string())),
        },
    };
    let blob_b64 = string(f, "tpm2-blob")?.ok_or(SystemdTokenError::Missing("tpm2-blob"))?;
    let (private, public) = split_blob(&base64(blob_b64, "tpm2-blob", MAX_BLOB_B64)?)?;
    let hash_hex =
        string(f, "tpm2-policy-hash")?.ok_or(SystemdTokenError::Missing("tpm2-policy-hash"))?;
    let policy_hash = hex::decode(hash_hex).map_err(|_| SystemdTokenError::PolicyHash)?;
    if policy_hash.len() != 32 {
        return Err(SystemdTokenError::PolicyHash);
    }
    let pin = match f.get("tpm2-pin") {
        None => false,
        Some(v) => v.as_bool().ok_or(SystemdTokenError::Type {
            field: "tpm2-pin",
            expected: "a boolean",
        })?,
    };
    let pubkey_pcrs = match f.get("tpm2_pubkey_pcrs") {
        None => Vec::new(),
        Some(v) => pcr_list(v, "tpm2_pubkey_pcrs")?,
    };
    let pubkey = match string(f, "tpm2_pubkey")? {
        Some(s) => Some(base64(s, "tpm2_pubkey", MAX_PUBKEY_B64)?),
        None if !pubkey_pcrs.is_empty() => return Err(SystemdTokenError::PubkeyMissing),
        None => None,
    };
    Ok(SystemdToken {
        keyslot,
        seal: SystemdSeal {
            primary_alg,
            bank,
            pcrs,
            private,
            public,
            policy_hash,
        },
        bank_implied,
        pin,
        pubkey,
        pubkey_pcrs,
    })
}

/// Reads a `systemd-tpm2` token from its JSON text (as `cryptsetup token export` prints it).
pub fn parse_json(json: &[u8]) -> Result<SystemdToken, SystemdTokenError> {
    let t: TokenJson =
        serde_json::from_slice(json).map_err(|e| SystemdTokenError::Json(e.to_string()))?;
    parse(&Token::from_json(&t))
}

/// The token systemd-cryptenroll 252 would write for `seal` on `keyslot` (no PIN, no signed
/// policy), field for field in systemd's order.
pub fn token(seal: &SystemdSeal, keyslot: u32) -> Token {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut f = Fields::new();
    f.insert("tpm2-blob".into(), Value::String(b64.encode(seal.blob())));
    f.insert(
        "tpm2-pcrs".into(),
        Value::Array(seal.pcrs.iter().map(|p| Value::from(*p)).collect()),
    );
    if let Some(bank) = bank_name(seal.bank) {
        f.insert("tpm2-pcr-bank".into(), Value::String(bank.into()));
    }
    f.insert(
        "tpm2-primary-alg".into(),
        Value::String(seal.primary_alg.name().into()),
    );
    f.insert(
        "tpm2-policy-hash".into(),
        Value::String(hex::encode(&seal.policy_hash)),
    );
    f.insert("tpm2-pin".into(), Value::Bool(false));
    Token {
        kind: SYSTEMD_TOKEN.into(),
        keyslots: vec![keyslot],
        fields: f,
    }
}

/// The keyslot passphrase for an unsealed systemd secret: its base64, as systemd uses it.
pub fn passphrase(secret: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .encode(secret)
            .into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by systemd-cryptenroll 252.39 against swtpm (`--tpm2-pcrs=7`), as
    /// `cryptsetup token export` printed it.
    const SYSTEMD_252: &str = r#"{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"AJ4AIIgTN6FkyoYqleiCH3vP09YAruD2Wv4VIkfvrfpIrRY2ABAVhycXuw7Vs6gPGD+xRWWn/3XtHfZhuRQBVOMgzIjjJa0qZHTxADFxCwL7YLOCXgOMbZIWKvPH3TV2lNkT3IsJMP9RCP6XqvGfRO6RuKkl1B4dnKOt8bbKLXfaSIwXG9w2vOJjEihPS9ZXlKl83X8FJgfzidJLSyznRwBOAAgACwAAABIAIItWgtgbKUNdCNeSeBUGEdx+WSOy/vzOaEoJV3tAEwqLABAAIL4SuDuOwo0qxzLkXhBdUgrWhBB5S3gGUnrkL4btY1hI","tpm2-pcrs":[7],"tpm2-pcr-bank":"sha256","tpm2-primary-alg":"ecc","tpm2-policy-hash":"8b5682d81b29435d08d79278150611dc7e5923b2fefcce684a09577b40130a8b","tpm2-pin":false}"#;

    #[test]
    fn reads_systemd_token_and_writes_it_back_byte_for_byte() {
        let t = parse_json(SYSTEMD_252.as_bytes()).unwrap();
        assert_eq!(t.keyslot, 1);
        assert_eq!(t.seal.pcrs, vec![7]);
        assert_eq!(t.seal.bank, HashAlg::Sha256);
        assert_eq!(t.seal.primary_alg, PrimaryAlg::Ecc);
        assert_eq!(t.seal.private.len(), 2 + 0x9e);
        assert_eq!(t.seal.public.len(), 2 + 0x4e);
        assert!(!t.pin && t.pubkey.is_none() && !t.bank_implied);
        assert_eq!(t.seal.selection().to_string(), "sha256:7");
        let again = token(&t.seal, t.keyslot);
        let json = serde_json::to_string(&TokenJsonOut(&again)).unwrap();
        assert_eq!(json, SYSTEMD_252);
    }

    struct TokenJsonOut<'a>(&'a Token);
    impl serde::Serialize for TokenJsonOut<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            TokenJson {
                kind: self.0.kind.clone(),
                keyslots: self
                    .0
                    .keyslots
                    .iter()
                    .map(|k| super::super::luks2::json::Id(*k))
                    .collect(),
                fields: self.0.fields.clone(),
            }
            .serialize(s)
        }
    }

    fn with(field: &str, value: Value) -> SystemdTokenError {
        let mut v: serde_json::Map<String, Value> = serde_json::from_str(SYSTEMD_252).unwrap();
        if value.is_null() {
            v.remove(field);
        } else {
            v.insert(field.into(), value);
        }
        parse_json(&serde_json::to_vec(&v).unwrap()).unwrap_err()
    }

    #[test]
    fn names_what_is_wrong() {
        assert_eq!(
            with("tpm2-blob", Value::Null),
            SystemdTokenError::Missing("tpm2-blob")
        );
        assert_eq!(
            with("tpm2-pcrs", serde_json::json!([24])),
            SystemdTokenError::Pcrs("tpm2-pcrs")
        );
        assert_eq!(
            with("tpm2-pcr-bank", serde_json::json!("md5")),
            SystemdTokenError::Bank("md5".into())
        );
        assert_eq!(
            with("tpm2-primary-alg", serde_json::json!("dsa")),
            SystemdTokenError::PrimaryAlg("dsa".into())
        );
        assert_eq!(
            with("tpm2-policy-hash", serde_json::json!("abcd")),
            SystemdTokenError::PolicyHash
        );
        assert_eq!(
            with("tpm2-pin", serde_json::json!("no")),
            SystemdTokenError::Type {
                field: "tpm2-pin",
                expected: "a boolean"
            }
        );
        assert_eq!(
            with("tpm2-blob", serde_json::json!("AAIAAA==")),
            SystemdTokenError::Blob("the TPM2B_PUBLIC is truncated or empty")
        );
        assert_eq!(
            with("tpm2_pubkey_pcrs", serde_json::json!([11])),
            SystemdTokenError::PubkeyMissing
        );
        assert_eq!(
            with("keyslots", serde_json::json!(["1", "2"])),
            SystemdTokenError::Keyslots(2)
        );
        assert_eq!(
            with("type", serde_json::json!("vouch-tpm2")),
            SystemdTokenError::Kind("vouch-tpm2".into())
        );
    }

    #[test]
    fn older_tokens_imply_sha256_and_ecc() {
        let mut v: serde_json::Map<String, Value> = serde_json::from_str(SYSTEMD_252).unwrap();
        v.remove("tpm2-pcr-bank");
        v.remove("tpm2-primary-alg");
        let t = parse_json(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(t.bank_implied);
        assert_eq!(t.seal.bank, HashAlg::Sha256);
        assert_eq!(t.seal.primary_alg, PrimaryAlg::Ecc);
    }

    #[test]
    fn passphrase_is_padded_base64() {
        assert_eq!(
            &*passphrase(&[0xff; 32]),
            b"//////////////////////////////////////////8="
        );
    }
}
