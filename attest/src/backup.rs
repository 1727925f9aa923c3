//! Fleet backups: one file holding a fleet's registry snapshot, keys, policies and configuration,
//! encrypted to a backup public key, and the k-of-n split of that key's private half.
//!
//! # Container (what `vouch-fleet backup --out` writes)
//! The ECIES scheme of [`crate::escrow`] (P-256 ECDH with an ephemeral key, HKDF-SHA256, AES-256-GCM)
//! over the whole payload, with its own HKDF info and magic:
//! ```text
//! magic        8 bytes   "VCHBAK1\0"
//! recipient   32 bytes   SHA-256 of the backup public key (uncompressed SEC1 point)
//! ephemeral   65 bytes   uncompressed SEC1 P-256 point
//! nonce       12 bytes
//! length       8 bytes   big-endian length of the ciphertext (tag included)
//! ciphertext             AES-256-GCM of the payload; AAD = every byte above
//! checksum    32 bytes   SHA-256 of every byte above
//! ```
//! The checksum tells a damaged or cut file (named as such) from a wrong key; the fingerprint
//! tells a wrong key from tampering. Only the tag proves authenticity.
//!
//! # Payload (plaintext, only ever in memory)
//! ```text
//! magic        8 bytes   "VCHBAKP1"
//! length       4 bytes   big-endian length of the manifest
//! manifest               JSON [`Manifest`]: every entry's name, size, SHA-256 and mode
//! data                   the entries' bytes, in manifest order, back to back
//! ```
//!
//! # Shares
//! [`split_key`] splits the backup private key (its 32-byte scalar) k-of-n with Shamir's scheme
//! over GF(256) (the `blahaj` crate); a share file is text ([`Share::to_text`]) that names the
//! public key it belongs to and the threshold, so shares of another key or too few shares are
//! refused by name.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use zeroize::Zeroizing;

/// First bytes of a backup file.
pub const MAGIC: [u8; 8] = *b"VCHBAK1\0";
/// First bytes of the decrypted payload.
pub const PAYLOAD_MAGIC: [u8; 8] = *b"VCHBAKP1";
/// HKDF info string.
pub const INFO: &[u8] = b"vouch fleet backup v1 aes-256-gcm";
/// The manifest's `format` value.
pub const FORMAT: &str = "vouch-fleet-backup-v1";
/// First line of a share file.
pub const SHARE_FORMAT: &str = "vouch-backup-share-v1";
/// Largest backup accepted (and made): 1 GiB.
pub const MAX_BACKUP: u64 = 1 << 30;
/// Largest manifest accepted.
pub const MAX_MANIFEST: usize = 4 << 20;
/// Most entries in one backup.
pub const MAX_ENTRIES: usize = 100_000;

const FP_LEN: usize = 32;
const POINT_LEN: usize = 65;
const NONCE_LEN: usize = 12;
const LEN_LEN: usize = 8;
const TAG_LEN: usize = 16;
const SUM_LEN: usize = 32;
const HEADER_LEN: usize = MAGIC.len() + FP_LEN + POINT_LEN + NONCE_LEN + LEN_LEN;

/// Why a backup, a share or a key is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackupError {
    /// The file is shorter than its header says.
    #[error("backup is truncated: {len} bytes, {expected} expected")]
    Truncated { len: u64, expected: u64 },
    /// The file does not start with the magic.
    #[error("not a Vouch fleet backup (bad magic at offset 0)")]
    Magic,
    /// The file goes on after its checksum.
    #[error("backup has {extra} bytes after its end")]
    Trailing { extra: u64 },
    /// The declared ciphertext length is impossible.
    #[error("backup declares a {0}-byte ciphertext (at most {MAX_BACKUP} accepted)")]
    Length(u64),
    /// The checksum does not match: the file was damaged.
    #[error("backup is corrupted: checksum mismatch (SHA-256 of the file's content is {actual}, the file says {stored})")]
    Checksum { stored: String, actual: String },
    /// The backup was made for another key.
    #[error("backup was made for backup key {backup}, not for the given key {given}")]
    OtherKey { backup: String, given: String },
    /// The ephemeral point is not a P-256 point.
    #[error("backup: ephemeral key is not a P-256 point")]
    Ephemeral,
    /// The tag does not verify although the checksum does: the file was altered on purpose.
    #[error("backup does not decrypt: its content was altered (authentication tag mismatch)")]
    Open,
    /// Encryption failed.
    #[error("backup encryption failed")]
    Encrypt,
    /// The random source failed.
    #[error("random source failed")]
    Random,
    /// The payload does not start with its magic.
    #[error("backup payload: bad magic")]
    PayloadMagic,
    /// The payload is shorter than what it declares.
    #[error("backup payload: {what} is cut short")]
    PayloadTruncated { what: &'static str },
    /// The manifest is not valid JSON of the right shape.
    #[error("backup manifest: {0}")]
    Manifest(String),
    /// The manifest has another format.
    #[error("backup manifest format {0:?} is not {FORMAT:?}")]
    Format(String),
    /// An entry name is not a plain relative path.
    #[error("backup manifest: entry name {0:?} is not a plain relative path")]
    Name(String),
    /// An entry name appears twice.
    #[error("backup manifest: entry {0:?} appears twice")]
    Duplicate(String),
    /// Too many entries.
    #[error("backup manifest: {0} entries (at most {MAX_ENTRIES})")]
    Entries(usize),
    /// The entries' sizes do not add up to the data.
    #[error(
        "backup payload: the manifest lists {listed} bytes of data, the payload holds {actual}"
    )]
    DataSize { listed: u64, actual: u64 },
    /// An entry's content does not match its SHA-256.
    #[error("backup entry {0:?}: content does not match its SHA-256 in the manifest")]
    EntryHash(String),
    /// A key file is not a P-256 key of the expected kind.
    #[error(transparent)]
    Key(#[from] crate::ecies::KeyError),
    /// Bad threshold or share count.
    #[error("shares: threshold {threshold} of {shares} is not possible (2 <= threshold <= shares <= 255)")]
    Split { threshold: u8, shares: u8 },
    /// A share file does not parse.
    #[error("share file, line {line}: {problem}")]
    ShareFormat { line: usize, problem: &'static str },
    /// Shares of different keys or thresholds were mixed.
    #[error("shares belong to different backup keys or thresholds")]
    MixedShares,
    /// Too few distinct shares.
    #[error("{given} distinct shares given, {threshold} needed")]
    TooFewShares { given: usize, threshold: u8 },
    /// The shares combine to something that is not the key they name.
    #[error("the shares do not combine to backup key {0}: a share is wrong or damaged")]
    Combine(String),
}

/// One file in a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Relative path (`/`-separated, no `.`, `..` or empty components).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// Unix permission bits.
    pub mode: u32,
}

/// What a backup holds and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// When the backup was made (milliseconds since the epoch).
    pub created_ms: i64,
    /// The fleet directory it was made from (absolute).
    pub source_dir: String,
    /// The version of the program that made it.
    pub made_by: String,
    /// The configuration file's name in the fleet directory (`fleet.toml`).
    pub config: String,
    /// Configured paths that lay outside the fleet directory, by configuration key, and the
    /// absolute path they had (their files are under `ext/<key>/`).
    #[serde(default)]
    pub external: std::collections::BTreeMap<String, String>,
    /// Files of the fleet directory left out because the backup could not read them
    /// (permission denied), e.g. a root-only key handed to the service as a credential.
    #[serde(default)]
    pub skipped: Vec<String>,
    /// The files, in payload order.
    pub entries: Vec<Entry>,
}

/// A decrypted, checked payload: the manifest and every entry's bytes.
#[derive(Debug)]
pub struct Contents {
    /// The manifest.
    pub manifest: Manifest,
    /// The payload; [`Contents::data`] slices it.
    payload: Zeroizing<Vec<u8>>,
    /// (offset, length) of each entry in `payload`.
    spans: Vec<(usize, usize)>,
}

impl Contents {
    /// The bytes of entry `i` of the manifest.
    pub fn data(&self, i: usize) -> &[u8] {
        self.spans
            .get(i)
            .and_then(|&(o, l)| self.payload.get(o..o + l))
            .unwrap_or(&[])
    }

    /// The bytes of the entry called `name`.
    pub fn by_name(&self, name: &str) -> Option<&[u8]> {
        let i = self.manifest.entries.iter().position(|e| e.name == name)?;
        Some(self.data(i))
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The fingerprint of a backup public key: hex SHA-256 of its uncompressed SEC1 point.
pub fn fingerprint(key: &PublicKey) -> String {
    hex::encode(fingerprint_bytes(key))
}

fn fingerprint_bytes(key: &PublicKey) -> [u8; FP_LEN] {
    Sha256::digest(key.to_encoded_point(false).as_bytes()).into()
}

/// True when `name` is a plain relative path: `/`-separated normal components.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 4096
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains(['\0', '\\']))
}

/// Builds the payload from `manifest` (whose entries' sizes and hashes are filled in here) and
/// the entries' bytes, in the same order.
pub fn build_payload(
    manifest: &mut Manifest,
    data: &[Zeroizing<Vec<u8>>],
) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    if manifest.entries.len() != data.len() {
        return Err(BackupError::Entries(data.len()));
    }
    for (e, d) in manifest.entries.iter_mut().zip(data) {
        if !valid_name(&e.name) {
            return Err(BackupError::Name(e.name.clone()));
        }
        e.size = d.len() as u64;
        e.sha256 = sha256_hex(d);
    }
    let json = serde_json::to_vec(manifest).map_err(|e| BackupError::Manifest(e.to_string()))?;
    let json_len = u32::try_from(json.len()).map_err(|_| BackupError::Entries(data.len()))?;
    let total = data.iter().map(|d| d.len()).sum::<usize>() + json.len() + 12;
    let mut out = Zeroizing::new(Vec::with_capacity(total));
    out.extend_from_slice(&PAYLOAD_MAGIC);
    out.extend_from_slice(&json_len.to_be_bytes());
    out.extend_from_slice(&json);
    for d in data {
        out.extend_from_slice(d);
    }
    Ok(out)
}

/// Parses and checks a decrypted payload: the manifest, every name, every size and hash.
pub fn parse_payload(payload: Zeroizing<Vec<u8>>) -> Result<Contents, BackupError> {
    let rest = payload
        .strip_prefix(&PAYLOAD_MAGIC)
        .ok_or(BackupError::PayloadMagic)?;
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or(BackupError::PayloadTruncated {
            what: "manifest length",
        })?;
    let len = u32::from_be_bytes(*len) as usize;
    if len > MAX_MANIFEST {
        return Err(BackupError::Manifest(format!(
            "{len} bytes (at most {MAX_MANIFEST})"
        )));
    }
    let json = rest
        .get(..len)
        .ok_or(BackupError::PayloadTruncated { what: "manifest" })?;
    let manifest: Manifest =
        serde_json::from_slice(json).map_err(|e| BackupError::Manifest(e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(BackupError::Format(manifest.format));
    }
    if manifest.entries.len() > MAX_ENTRIES {
        return Err(BackupError::Entries(manifest.entries.len()));
    }
    let data_start = PAYLOAD_MAGIC.len() + 4 + len;
    let actual = (payload.len() - data_start) as u64;
    let listed = manifest
        .entries
        .iter()
        .try_fold(0u64, |acc, e| acc.checked_add(e.size))
        .unwrap_or(u64::MAX);
    if listed != actual {
        return Err(BackupError::DataSize { listed, actual });
    }
    let mut names = BTreeSet::new();
    let mut spans = Vec::with_capacity(manifest.entries.len());
    let mut at = data_start;
    for e in &manifest.entries {
        if !valid_name(&e.name) {
            return Err(BackupError::Name(e.name.clone()));
        }
        if !names.insert(e.name.as_str()) {
            return Err(BackupError::Duplicate(e.name.clone()));
        }
        // The sizes add up to the data held, so each fits in usize.
        let size = usize::try_from(e.size).map_err(|_| BackupError::DataSize { listed, actual })?;
        let d = payload
            .get(at..at + size)
            .ok_or(BackupError::DataSize { listed, actual })?;
        if sha256_hex(d) != e.sha256 {
            return Err(BackupError::EntryHash(e.name.clone()));
        }
        spans.push((at, size));
        at += size;
    }
    Ok(Contents {
        manifest,
        payload,
        spans,
    })
}

/// Encrypts `payload` to the backup public key; returns the backup file's bytes.
pub fn seal<R: RngCore + CryptoRng>(
    recipient: &PublicKey,
    payload: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, BackupError> {
    let ct_len = (payload.len() + TAG_LEN) as u64;
    if ct_len > MAX_BACKUP {
        return Err(BackupError::Length(ct_len));
    }
    let (eph_point, key) = crate::ecies::sender_key(recipient, INFO, rng);
    let mut nonce = [0u8; NONCE_LEN];
    rng.try_fill_bytes(&mut nonce)
        .map_err(|_| BackupError::Random)?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TAG_LEN + SUM_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&fingerprint_bytes(recipient));
    out.extend_from_slice(&eph_point);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct_len.to_be_bytes());
    let cipher = Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| BackupError::Encrypt)?;
    let ct = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: payload,
                aad: &out,
            },
        )
        .map_err(|_| BackupError::Encrypt)?;
    out.extend_from_slice(&ct);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// The checked outer structure of a backup file (nothing decrypted yet).
#[derive(Debug, Clone, Copy)]
pub struct Sealed<'a> {
    header: &'a [u8],
    /// Hex fingerprint of the backup key it was made for.
    recipient: [u8; FP_LEN],
    ephemeral: &'a [u8],
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
}

impl<'a> Sealed<'a> {
    /// Checks the magic, the lengths and the checksum.
    pub fn parse(file: &'a [u8]) -> Result<Sealed<'a>, BackupError> {
        let len = file.len() as u64;
        let min = (HEADER_LEN + TAG_LEN + SUM_LEN) as u64;
        if file.len() >= MAGIC.len() && file[..MAGIC.len()] != MAGIC {
            return Err(BackupError::Magic);
        }
        let Some((header, rest)) = file.split_at_checked(HEADER_LEN) else {
            return Err(BackupError::Truncated { len, expected: min });
        };
        let (m, rest_h) = header.split_at(MAGIC.len());
        if m != MAGIC {
            return Err(BackupError::Magic);
        }
        let (fp, rest_h) = rest_h.split_at(FP_LEN);
        let (point, rest_h) = rest_h.split_at(POINT_LEN);
        let (nonce, ct_len) = rest_h.split_at(NONCE_LEN);
        let ct_len = u64::from_be_bytes(ct_len.try_into().map_err(|_| BackupError::Magic)?);
        if !(TAG_LEN as u64..=MAX_BACKUP).contains(&ct_len) {
            return Err(BackupError::Length(ct_len));
        }
        let expected = HEADER_LEN as u64 + ct_len + SUM_LEN as u64;
        if len < expected {
            return Err(BackupError::Truncated { len, expected });
        }
        if len > expected {
            return Err(BackupError::Trailing {
                extra: len - expected,
            });
        }
        // len == expected, which fits in usize since the file is in memory.
        let (ciphertext, stored) = rest.split_at(rest.len() - SUM_LEN);
        let actual = Sha256::digest(&file[..file.len() - SUM_LEN]);
        if actual[..] != *stored {
            return Err(BackupError::Checksum {
                stored: hex::encode(stored),
                actual: hex::encode(actual),
            });
        }
        Ok(Sealed {
            header,
            recipient: fp.try_into().map_err(|_| BackupError::Magic)?,
            ephemeral: point,
            nonce: nonce.try_into().map_err(|_| BackupError::Magic)?,
            ciphertext,
        })
    }

    /// Hex fingerprint of the backup key the file was made for.
    pub fn recipient(&self) -> String {
        hex::encode(self.recipient)
    }

    /// Size of the encrypted payload (tag included).
    pub fn ciphertext_len(&self) -> usize {
        self.ciphertext.len()
    }

    /// Decrypts with the backup private key; returns the payload (not yet parsed).
    pub fn open(&self, key: &SecretKey) -> Result<Zeroizing<Vec<u8>>, BackupError> {
        let public = key.public_key();
        if fingerprint_bytes(&public) != self.recipient {
            return Err(BackupError::OtherKey {
                backup: self.recipient(),
                given: fingerprint(&public),
            });
        }
        let k = crate::ecies::recipient_key(key, self.ephemeral, INFO)
            .map_err(|_| BackupError::Ephemeral)?;
        let cipher = Aes256Gcm::new_from_slice(k.as_ref()).map_err(|_| BackupError::Open)?;
        let pt = cipher
            .decrypt(
                &Nonce::from(self.nonce),
                Payload {
                    msg: self.ciphertext,
                    aad: self.header,
                },
            )
            .map_err(|_| BackupError::Open)?;
        Ok(Zeroizing::new(pt))
    }
}

/// Parses, decrypts and checks a backup file.
pub fn open(file: &[u8], key: &SecretKey) -> Result<Contents, BackupError> {
    parse_payload(Sealed::parse(file)?.open(key)?)
}

/// A new backup key pair: (PKCS#8 private key PEM, SubjectPublicKeyInfo public key PEM).
pub fn keygen<R: RngCore + CryptoRng>(
    rng: &mut R,
) -> Result<(Zeroizing<String>, String, SecretKey), BackupError> {
    let key = SecretKey::random(rng);
    let (private, public) = key_pems(&key)?;
    Ok((private, public, key))
}

/// The PEMs of a key: (PKCS#8 private, SubjectPublicKeyInfo public).
pub fn key_pems(key: &SecretKey) -> Result<(Zeroizing<String>, String), BackupError> {
    Ok(crate::ecies::key_pems(key)?)
}

/// Parses a backup public key (SubjectPublicKeyInfo PEM).
pub fn public_from_pem(pem: &str) -> Result<PublicKey, BackupError> {
    Ok(crate::ecies::public_from_pem(pem)?)
}

/// Parses a backup private key (PKCS#8 PEM).
pub fn secret_from_pem(pem: &str) -> Result<SecretKey, BackupError> {
    Ok(crate::ecies::secret_from_pem(pem)?)
}

/// One share of a split backup private key.
#[derive(Clone, PartialEq, Eq)]
pub struct Share {
    /// Fingerprint of the backup public key.
    pub key: String,
    /// Shares needed.
    pub threshold: u8,
    /// The share: x coordinate then the 32 y bytes.
    bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share")
            .field("key", &self.key)
            .field("threshold", &self.threshold)
            .field("index", &self.index())
            .finish_non_exhaustive()
    }
}

impl Share {
    /// The share's number (1..=255).
    pub fn index(&self) -> u8 {
        self.bytes.first().copied().unwrap_or(0)
    }

    /// The share file's text.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{SHARE_FORMAT}\nkey {}\nthreshold {}\nshare {}\n",
            self.key,
            self.threshold,
            hex::encode(&*self.bytes)
        ))
    }

    /// Parses a share file.
    pub fn parse(text: &str) -> Result<Share, BackupError> {
        let bad = |line, problem| BackupError::ShareFormat { line, problem };
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some(SHARE_FORMAT) {
            return Err(bad(1, "not a vouch-backup-share-v1 file"));
        }
        let mut field = |n: usize, name: &str| -> Result<String, BackupError> {
            let line = lines.next().ok_or(bad(n, "missing"))?.trim();
            let (k, v) = line
                .split_once(' ')
                .ok_or(bad(n, "expected `name value`"))?;
            if k != name {
                return Err(bad(n, "unexpected field"));
            }
            Ok(v.trim().to_string())
        };
        let key = field(2, "key")?;
        if key.len() != 2 * FP_LEN || hex::decode(&key).is_err() {
            return Err(bad(2, "key fingerprint is not 64 hex digits"));
        }
        let threshold: u8 = field(3, "threshold")?
            .parse()
            .map_err(|_| bad(3, "threshold is not a number 2..255"))?;
        if threshold < 2 {
            return Err(bad(3, "threshold is not a number 2..255"));
        }
        let hexed = Zeroizing::new(field(4, "share")?);
        let bytes = Zeroizing::new(hex::decode(&*hexed).map_err(|_| bad(4, "share is not hex"))?);
        if bytes.len() != 33 || bytes[0] == 0 {
            return Err(bad(4, "share is not 33 bytes with a non-zero index"));
        }
        Ok(Share {
            key,
            threshold,
            bytes,
        })
    }
}

/// Splits `key` into `shares` shares, any `threshold` of which rebuild it.
pub fn split_key(key: &SecretKey, threshold: u8, shares: u8) -> Result<Vec<Share>, BackupError> {
    if threshold < 2 || shares < threshold || shares == 255 {
        return Err(BackupError::Split { threshold, shares });
    }
    let fp = fingerprint(&key.public_key());
    let secret = Zeroizing::new(key.to_bytes());
    let dealer = blahaj::Sharks(threshold).dealer(&secret[..]);
    Ok(dealer
        .take(usize::from(shares))
        .map(|s| Share {
            key: fp.clone(),
            threshold,
            bytes: Zeroizing::new(Vec::from(&s)),
        })
        .collect())
}

/// Rebuilds the backup private key from shares (at least the threshold, all of the same key).
pub fn combine(shares: &[Share]) -> Result<SecretKey, BackupError> {
    let first = shares.first().ok_or(BackupError::TooFewShares {
        given: 0,
        threshold: 2,
    })?;
    if shares
        .iter()
        .any(|s| s.key != first.key || s.threshold != first.threshold)
    {
        return Err(BackupError::MixedShares);
    }
    let distinct: BTreeSet<u8> = shares.iter().map(Share::index).collect();
    if distinct.len() < usize::from(first.threshold) {
        return Err(BackupError::TooFewShares {
            given: distinct.len(),
            threshold: first.threshold,
        });
    }
    let parsed: Vec<blahaj::Share> = shares
        .iter()
        .filter_map(|s| blahaj::Share::try_from(s.bytes.as_slice()).ok())
        .collect();
    let secret = Zeroizing::new(
        blahaj::Sharks(first.threshold)
            .recover(&parsed)
            .map_err(|_| BackupError::Combine(first.key.clone()))?,
    );
    let key =
        SecretKey::from_slice(&secret).map_err(|_| BackupError::Combine(first.key.clone()))?;
    if fingerprint(&key.public_key()) != first.key {
        return Err(BackupError::Combine(first.key.clone()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn sample() -> (SecretKey, Vec<u8>) {
        let (_, _, key) = keygen(&mut OsRng).unwrap();
        let mut m = Manifest {
            format: FORMAT.into(),
            created_ms: 1,
            source_dir: "/srv/fleet".into(),
            made_by: "test".into(),
            config: "fleet.toml".into(),
            external: Default::default(),
            skipped: Vec::new(),
            entries: ["ca.key", "state/registry.db"]
                .iter()
                .map(|n| Entry {
                    name: (*n).into(),
                    size: 0,
                    sha256: String::new(),
                    mode: 0o600,
                })
                .collect(),
        };
        let data = vec![
            Zeroizing::new(b"-----BEGIN PRIVATE KEY-----secret".to_vec()),
            Zeroizing::new(vec![7u8; 5000]),
        ];
        let payload = build_payload(&mut m, &data).unwrap();
        let file = seal(&key.public_key(), &payload, &mut OsRng).unwrap();
        (key, file)
    }

    #[test]
    fn round_trip() {
        let (key, file) = sample();
        assert!(!file.windows(6).any(|w| w == b"secret"));
        let c = open(&file, &key).unwrap();
        assert_eq!(c.manifest.entries.len(), 2);
        assert_eq!(
            c.by_name("ca.key").unwrap(),
            b"-----BEGIN PRIVATE KEY-----secret"
        );
        assert_eq!(c.data(1), &[7u8; 5000][..]);
        assert_eq!(c.manifest.entries[1].size, 5000);
    }

    #[test]
    fn damage_is_named() {
        let (key, file) = sample();
        for n in [0, 10, HEADER_LEN, file.len() - 1] {
            let e = open(&file[..n], &key).unwrap_err();
            assert!(
                matches!(e, BackupError::Truncated { .. }),
                "cut at {n}: {e:?}"
            );
        }
        let mut t = file.clone();
        t.push(0);
        assert_eq!(
            open(&t, &key).unwrap_err(),
            BackupError::Trailing { extra: 1 }
        );
        let mut t = file.clone();
        t[HEADER_LEN + 3] ^= 1;
        assert!(matches!(
            open(&t, &key).unwrap_err(),
            BackupError::Checksum { .. }
        ));
        let mut t = file.clone();
        t[0] = b'X';
        assert_eq!(open(&t, &key).unwrap_err(), BackupError::Magic);
        // Altered with the checksum recomputed: only the tag catches it.
        let mut t = file.clone();
        t[HEADER_LEN + 3] ^= 1;
        let n = t.len() - SUM_LEN;
        let sum = Sha256::digest(&t[..n]);
        t[n..].copy_from_slice(&sum);
        assert_eq!(open(&t, &key).unwrap_err(), BackupError::Open);
        let (other, _) = sample();
        assert!(matches!(
            open(&file, &other).unwrap_err(),
            BackupError::OtherKey { .. }
        ));
    }

    #[test]
    fn payload_checks() {
        let mut m = Manifest {
            format: FORMAT.into(),
            created_ms: 0,
            source_dir: String::new(),
            made_by: String::new(),
            config: String::new(),
            external: Default::default(),
            skipped: Vec::new(),
            entries: vec![Entry {
                name: "a".into(),
                size: 0,
                sha256: String::new(),
                mode: 0o600,
            }],
        };
        let p = build_payload(&mut m, &[Zeroizing::new(b"abc".to_vec())]).unwrap();
        assert!(parse_payload(p.clone()).is_ok());
        let mut t = p.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(
            parse_payload(t).unwrap_err(),
            BackupError::EntryHash("a".into())
        );
        let mut t = p.clone();
        t.pop();
        assert!(matches!(
            parse_payload(t).unwrap_err(),
            BackupError::DataSize { .. }
        ));
        for bad in ["../x", "/x", "a//b", "", "a/./b"] {
            assert!(!valid_name(bad), "{bad}");
        }
        m.entries[0].name = "../etc/passwd".into();
        assert!(matches!(
            build_payload(&mut m, &[Zeroizing::new(vec![])]).unwrap_err(),
            BackupError::Name(_)
        ));
    }

    #[test]
    fn shares_rebuild_the_key() {
        let (_, _, key) = keygen(&mut OsRng).unwrap();
        let shares = split_key(&key, 3, 5).unwrap();
        let texts: Vec<_> = shares.iter().map(|s| s.to_text()).collect();
        let parsed: Vec<Share> = texts.iter().map(|t| Share::parse(t).unwrap()).collect();
        let back = combine(&[parsed[4].clone(), parsed[0].clone(), parsed[2].clone()]).unwrap();
        assert_eq!(back.to_bytes(), key.to_bytes());
        assert_eq!(
            combine(&parsed[..2]).unwrap_err(),
            BackupError::TooFewShares {
                given: 2,
                threshold: 3
            }
        );
        // The same share twice does not count twice.
        assert!(matches!(
            combine(&[parsed[0].clone(), parsed[0].clone(), parsed[1].clone()]),
            Err(BackupError::TooFewShares { given: 2, .. })
        ));
        let mut damaged = parsed[1].clone();
        damaged.bytes[5] ^= 1;
        assert!(matches!(
            combine(&[parsed[0].clone(), damaged, parsed[2].clone()]),
            Err(BackupError::Combine(_))
        ));
        let (_, _, other) = keygen(&mut OsRng).unwrap();
        let foreign = split_key(&other, 3, 3).unwrap();
        assert_eq!(
            combine(&[parsed[0].clone(), parsed[1].clone(), foreign[0].clone()]).unwrap_err(),
            BackupError::MixedShares
        );
        assert!(split_key(&key, 1, 3).is_err());
        assert!(split_key(&key, 4, 3).is_err());
        assert!(Share::parse("vouch-backup-share-v1\nkey zz\n").is_err());
    }
}
