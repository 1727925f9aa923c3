//! One IMA measurement: its template, the fields the appraisal reads, and the template data
//! exactly as the kernel hashed it into the template hash.
//!
//! Template data layouts (every field of a non-`ima` template is a little-endian u32 length and
//! its bytes, and the template hash covers those lengths too):
//!
//! | template     | fields                                   |
//! |--------------|------------------------------------------|
//! | `ima`        | `d` (20-byte digest) `n` (name, hashed zero-padded to 256 bytes, no lengths) |
//! | `ima-ng`     | `d-ng` (`<alg>:\0` + digest) `n-ng` (name + NUL) |
//! | `ima-sig`    | `d-ng` `n-ng` `sig` (may be empty)       |
//! | `ima-buf`    | `d-ng` `n-ng` `buf`                      |
//! | `ima-modsig` | `d-ng` `n-ng` `sig` `d-modsig` `modsig`  |
//!
//! A violation (a file measured while open for writing, or a ToMToU race) is logged with an
//! all-zero template hash, and the kernel extends the PCR with all-ones instead.

use crate::alg::HashAlg;
use serde::Serialize;
use std::fmt;

/// The longest file name the `ima` template holds; its name field is hashed padded to
/// `IMA_NAME_MAX + 1` bytes.
pub const IMA_NAME_MAX: usize = 255;

/// The template an entry was measured with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum Template {
    /// `ima`: SHA-1 (or MD5) file digest and a name of at most 255 bytes.
    Ima,
    /// `ima-ng`: digest with its algorithm, and the name.
    ImaNg,
    /// `ima-ng` plus the file's `security.ima` signature.
    ImaSig,
    /// `ima-ng` plus a buffer (keys loaded onto keyrings, kernel command line, device-mapper
    /// state).
    ImaBuf,
    /// `ima-sig` plus an appended (module-style) signature and the digest it covers.
    ImaModsig,
    /// Any other template: replayed from its template data, not appraised.
    Other(String),
}

impl Template {
    /// The template for a logged template name.
    pub fn from_name(name: &str) -> Template {
        match name {
            "ima" => Template::Ima,
            "ima-ng" => Template::ImaNg,
            "ima-sig" => Template::ImaSig,
            "ima-buf" => Template::ImaBuf,
            "ima-modsig" => Template::ImaModsig,
            other => Template::Other(other.to_string()),
        }
    }

    /// The template's name as logged.
    pub fn name(&self) -> &str {
        match self {
            Template::Ima => "ima",
            Template::ImaNg => "ima-ng",
            Template::ImaSig => "ima-sig",
            Template::ImaBuf => "ima-buf",
            Template::ImaModsig => "ima-modsig",
            Template::Other(n) => n,
        }
    }

    /// How many length-prefixed fields the template has (`None` for `ima` and unknown ones).
    fn field_count(&self) -> Option<usize> {
        match self {
            Template::ImaNg => Some(2),
            Template::ImaSig | Template::ImaBuf => Some(3),
            Template::ImaModsig => Some(5),
            Template::Ima | Template::Other(_) => None,
        }
    }
}

impl From<Template> for String {
    fn from(t: Template) -> String {
        t.name().to_string()
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A file (or buffer) digest as IMA logs it: its algorithm name (`sha256`, `sha1`, `md5`, ...)
/// and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDigest {
    /// The kernel's name of the algorithm.
    pub alg: String,
    /// The digest.
    #[serde(serialize_with = "crate::tpm::ser_hex")]
    pub value: Vec<u8>,
}

impl fmt::Display for FileDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg, hex::encode(&self.value))
    }
}

/// Why template data does not decode as its template says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// A field's length runs past the template data.
    #[error("field {field} of the {template} template runs past the template data ({len} bytes at offset {offset} of {total})")]
    Overrun {
        /// The template.
        template: String,
        /// The field's position (0-based).
        field: usize,
        /// Its length.
        len: u32,
        /// Where it starts in the template data.
        offset: usize,
        /// The template data's length.
        total: usize,
    },
    /// Bytes are left after the template's last field.
    #[error("{extra} bytes after the last field of the {template} template")]
    Trailing {
        /// The template.
        template: String,
        /// How many.
        extra: usize,
    },
    /// The `ima` template's digest is not 20 bytes or its name is too long.
    #[error("ima template: {0}")]
    ImaTemplate(&'static str),
    /// A `d-ng` digest field has an algorithm prefix without its NUL, or a digest of the wrong
    /// size for its algorithm.
    #[error("digest field {0:?} is not <alg>:\\0<digest>")]
    Digest(String),
}

/// One IMA measurement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The PCR the kernel extended.
    pub pcr: u32,
    /// The template hash as logged (all zeros for a violation).
    #[serde(serialize_with = "crate::tpm::ser_hex")]
    pub template_hash: Vec<u8>,
    /// The template.
    pub template: Template,
    /// The file (or buffer) digest; `None` for templates not appraised.
    pub digest: Option<FileDigest>,
    /// The file path (or buffer name, e.g. a keyring name); lossy UTF-8.
    pub name: String,
    /// The `security.ima` signature (`ima-sig`, `ima-modsig`); empty when none.
    #[serde(serialize_with = "crate::tpm::ser_hex")]
    pub signature: Vec<u8>,
    /// The buffer of an `ima-buf` entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "ser_opt_hex")]
    pub buf: Option<Vec<u8>>,
    /// The template data exactly as the kernel hashed it.
    #[serde(skip)]
    pub template_data: Vec<u8>,
}

fn ser_opt_hex<S: serde::Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match b {
        Some(b) => s.serialize_str(&hex::encode(b)),
        None => s.serialize_none(),
    }
}

/// The hash algorithm of a template hash of `len` bytes (SHA-1 for 20, SHA-256 for 32, ...).
pub fn template_hash_alg(len: usize) -> Option<HashAlg> {
    match len {
        20 => Some(HashAlg::Sha1),
        32 => Some(HashAlg::Sha256),
        48 => Some(HashAlg::Sha384),
        64 => Some(HashAlg::Sha512),
        _ => None,
    }
}

/// The size of a file digest named by the kernel's algorithm name, when known.
fn file_digest_len(alg: &str) -> Option<usize> {
    Some(match alg {
        "md5" => 16,
        "sha1" | "rmd160" => 20,
        "sha224" => 28,
        "sha256" | "sm3" | "sm3-256" | "streebog256" => 32,
        "sha384" => 48,
        "sha512" | "streebog512" => 64,
        _ => return None,
    })
}

impl Entry {
    /// True when this is a violation (all-zero template hash).
    pub fn is_violation(&self) -> bool {
        self.template_hash.iter().all(|b| *b == 0)
    }

    /// True when the logged template hash is the hash of the template data (violations have
    /// none to check and pass). `None` when the hash length names no known algorithm.
    pub fn template_hash_ok(&self) -> Option<bool> {
        if self.is_violation() {
            return Some(true);
        }
        let alg = template_hash_alg(self.template_hash.len())?;
        Some(alg.hash(&self.template_data)? == self.template_hash)
    }

    /// What this entry extends into a PCR of bank `bank`: all-ones for a violation, else the
    /// template data hashed with the bank's algorithm. `None` for a bank this crate cannot hash.
    pub fn bank_digest(&self, bank: HashAlg) -> Option<Vec<u8>> {
        let len = bank.digest_len()?;
        if self.is_violation() {
            return Some(vec![0xff; len]);
        }
        if template_hash_alg(self.template_hash.len()) == Some(bank) {
            return Some(self.template_hash.clone());
        }
        bank.hash(&self.template_data)
    }

    /// A measurement as the kernel would log it: an `ima-ng`, `ima-sig` (`extra` is the
    /// signature) or `ima-buf` (`extra` is the buffer) entry for PCR 10 with its template hash
    /// in `hash` (SHA-1 as in the classic list). For tests, benches and synthetic lists.
    pub fn measured(
        template: Template,
        digest: FileDigest,
        name: &str,
        extra: &[u8],
        hash: HashAlg,
    ) -> Result<Entry, FieldError> {
        let dng = encode_dng(&digest);
        let n = encode_name(name);
        let data = match template {
            Template::ImaNg => encode_fields(&[&dng, &n]),
            Template::ImaSig | Template::ImaBuf => encode_fields(&[&dng, &n, extra]),
            Template::ImaModsig => encode_fields(&[&dng, &n, extra, b"", b""]),
            Template::Ima | Template::Other(_) => {
                return Err(FieldError::ImaTemplate("not built by Entry::measured"))
            }
        };
        let th = hash
            .hash(&data)
            .ok_or(FieldError::ImaTemplate("hash not computable"))?;
        Entry::from_template_data(super::IMA_PCR, th, template, &data)
    }

    /// Builds an entry from binary template data (the bytes after the template data length; for
    /// `ima`, the raw digest and the length-prefixed name).
    pub fn from_template_data(
        pcr: u32,
        template_hash: Vec<u8>,
        template: Template,
        data: &[u8],
    ) -> Result<Entry, FieldError> {
        if template == Template::Ima {
            return Self::from_ima(pcr, template_hash, data);
        }
        let fields = split_fields(&template, data)?;
        let mut entry = Entry {
            pcr,
            template_hash,
            template: template.clone(),
            digest: None,
            name: String::new(),
            signature: Vec::new(),
            buf: None,
            template_data: data.to_vec(),
        };
        if template.field_count().is_none() {
            return Ok(entry);
        }
        entry.digest = Some(decode_dng(fields[0])?);
        entry.name = decode_name(fields[1]);
        match template {
            Template::ImaSig | Template::ImaModsig => entry.signature = fields[2].to_vec(),
            Template::ImaBuf => entry.buf = Some(fields[2].to_vec()),
            _ => {}
        }
        Ok(entry)
    }

    /// The `ima` template's binary form: 20-byte digest, u32 name length, name (no NUL).
    fn from_ima(pcr: u32, template_hash: Vec<u8>, data: &[u8]) -> Result<Entry, FieldError> {
        if data.len() < 24 {
            return Err(FieldError::ImaTemplate(
                "shorter than its 20-byte digest and name length",
            ));
        }
        let digest = data[..20].to_vec();
        let len = u32::from_le_bytes([data[20], data[21], data[22], data[23]]) as usize;
        let name = &data[24..];
        if name.len() != len {
            return Err(FieldError::ImaTemplate(
                "name length does not match the data",
            ));
        }
        Self::ima_entry(pcr, template_hash, digest, name)
    }

    /// An `ima` template entry from its digest and name.
    pub(crate) fn ima_entry(
        pcr: u32,
        template_hash: Vec<u8>,
        digest: Vec<u8>,
        name: &[u8],
    ) -> Result<Entry, FieldError> {
        if digest.len() != 20 {
            return Err(FieldError::ImaTemplate("digest is not 20 bytes"));
        }
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        if name.contains(&0) {
            return Err(FieldError::ImaTemplate("name holds a NUL byte"));
        }
        if name.len() > IMA_NAME_MAX {
            return Err(FieldError::ImaTemplate("name longer than 255 bytes"));
        }
        let mut hashed = Vec::with_capacity(20 + IMA_NAME_MAX + 1);
        hashed.extend_from_slice(&digest);
        hashed.extend_from_slice(name);
        hashed.resize(20 + IMA_NAME_MAX + 1, 0);
        Ok(Entry {
            pcr,
            template_hash,
            template: Template::Ima,
            digest: Some(FileDigest {
                alg: "sha1".into(),
                value: digest,
            }),
            name: String::from_utf8_lossy(name).into_owned(),
            signature: Vec::new(),
            buf: None,
            template_data: hashed,
        })
    }
}

/// Splits length-prefixed template data into its fields; for a known template, exactly its
/// field count.
fn split_fields<'a>(template: &Template, data: &'a [u8]) -> Result<Vec<&'a [u8]>, FieldError> {
    let mut out = Vec::with_capacity(5);
    let mut off = 0;
    let want = template.field_count();
    while off < data.len() && want.is_none_or(|n| out.len() < n) {
        let overrun = |len| FieldError::Overrun {
            template: template.name().into(),
            field: out.len(),
            len,
            offset: off,
            total: data.len(),
        };
        let Some(l) = data.get(off..off + 4) else {
            return Err(overrun(0));
        };
        let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]);
        let start = off + 4;
        let end = start
            .checked_add(len as usize)
            .filter(|e| *e <= data.len())
            .ok_or_else(|| overrun(len))?;
        out.push(&data[start..end]);
        off = end;
    }
    if let Some(n) = want {
        if out.len() < n {
            return Err(FieldError::Overrun {
                template: template.name().into(),
                field: out.len(),
                len: 0,
                offset: off,
                total: data.len(),
            });
        }
        if off != data.len() {
            return Err(FieldError::Trailing {
                template: template.name().into(),
                extra: data.len() - off,
            });
        }
    }
    Ok(out)
}

/// `d-ng`: `<alg>:\0<digest>`; a bare 20-byte field is a SHA-1 digest (the kernel omits the
/// prefix for SHA-1 and MD5 digests in some versions).
fn decode_dng(field: &[u8]) -> Result<FileDigest, FieldError> {
    let bad = || FieldError::Digest(String::from_utf8_lossy(field).into_owned());
    let Some(colon) = field.iter().position(|b| *b == b':') else {
        return match field.len() {
            20 => Ok(FileDigest {
                alg: "sha1".into(),
                value: field.to_vec(),
            }),
            16 => Ok(FileDigest {
                alg: "md5".into(),
                value: field.to_vec(),
            }),
            _ => Err(bad()),
        };
    };
    let alg = &field[..colon];
    if field.get(colon + 1) != Some(&0)
        || alg.is_empty()
        || !alg
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    {
        return Err(bad());
    }
    let alg = String::from_utf8_lossy(alg).into_owned();
    let value = field[colon + 2..].to_vec();
    if file_digest_len(&alg).is_some_and(|l| l != value.len()) {
        return Err(bad());
    }
    Ok(FileDigest { alg, value })
}

/// `n-ng`: the name with its terminating NUL.
fn decode_name(field: &[u8]) -> String {
    let name = field.strip_suffix(&[0]).unwrap_or(field);
    String::from_utf8_lossy(name).into_owned()
}

/// Encodes fields as length-prefixed template data (the ASCII parser and tests rebuild it).
pub(crate) fn encode_fields(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 4).sum());
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// The `d-ng` field for a digest.
pub(crate) fn encode_dng(d: &FileDigest) -> Vec<u8> {
    let mut out = Vec::with_capacity(d.alg.len() + 2 + d.value.len());
    out.extend_from_slice(d.alg.as_bytes());
    out.extend_from_slice(b":\0");
    out.extend_from_slice(&d.value);
    out
}

/// The `n-ng` field for a name.
pub(crate) fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 1);
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out
}
