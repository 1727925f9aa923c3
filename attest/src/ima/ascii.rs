//! The text measurement list (`ascii_runtime_measurements`): one entry a line,
//! `PCR template-hash template-name fields...`, digests written `<alg>:<hex>`, signatures and
//! buffers in hex. The template data is rebuilt from the fields exactly as the kernel hashed it,
//! so a text list replays and checks like a binary one. File names with spaces are kept whole
//! for `ima` and `ima-ng` (the name is the rest of the line).

use super::entry::{
    encode_dng, encode_fields, encode_name, Entry, FieldError, FileDigest, Template,
};

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsciiErrorKind {
    /// Fewer fields than the template has.
    #[error("missing fields (PCR, template hash, template, digest, name)")]
    Missing,
    /// The PCR is not a number of 0..=23.
    #[error("PCR {0:?} is not 0..=23")]
    Pcr(String),
    /// A value that should be hex is not.
    #[error("{what} {value:?} is not hex")]
    Hex {
        /// Which value.
        what: &'static str,
        /// The text.
        value: String,
    },
    /// A digest is not `<alg>:<hex>`.
    #[error("digest {0:?} is not <alg>:<hex>")]
    Digest(String),
    /// The template hash is not 20, 32, 48 or 64 bytes.
    #[error("template hash of {0} bytes")]
    HashLen(usize),
    /// The rebuilt template data does not decode.
    #[error("template data")]
    Field(#[source] FieldError),
    /// A template this parser cannot rebuild from text.
    #[error("template {0:?} cannot be read from the text list (use the binary list)")]
    Template(String),
}

/// A line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("IMA text list line {line}")]
pub struct AsciiError {
    /// The line number (1-based).
    pub line: u64,
    /// What is wrong.
    #[source]
    pub kind: AsciiErrorKind,
}

fn unhex(what: &'static str, s: &str) -> Result<Vec<u8>, AsciiErrorKind> {
    hex::decode(s).map_err(|_| AsciiErrorKind::Hex {
        what,
        value: s.chars().take(80).collect(),
    })
}

fn digest(s: &str) -> Result<FileDigest, AsciiErrorKind> {
    let (alg, value) = s
        .split_once(':')
        .ok_or_else(|| AsciiErrorKind::Digest(s.chars().take(80).collect()))?;
    Ok(FileDigest {
        alg: alg.to_string(),
        value: unhex("digest", value)?,
    })
}

/// Parses one line (without its newline). `Ok(None)` for a blank line.
pub fn parse_line(line: &str) -> Result<Option<Entry>, AsciiErrorKind> {
    let line = line.trim_end_matches(['\n', '\r']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    // PCR, template hash, template, then the template's fields.
    let mut head = line.splitn(4, ' ');
    let (Some(pcr), Some(hash), Some(template), Some(rest)) =
        (head.next(), head.next(), head.next(), head.next())
    else {
        return Err(AsciiErrorKind::Missing);
    };
    let pcr: u32 = pcr
        .parse()
        .ok()
        .filter(|p| *p <= 23)
        .ok_or_else(|| AsciiErrorKind::Pcr(pcr.chars().take(20).collect()))?;
    let hash = unhex("template hash", hash)?;
    if super::entry::template_hash_alg(hash.len()).is_none() {
        return Err(AsciiErrorKind::HashLen(hash.len()));
    }
    let template = Template::from_name(template);
    let (first, after) = rest.split_once(' ').ok_or(AsciiErrorKind::Missing)?;
    let entry = match template {
        Template::Ima => {
            let d = unhex("digest", first)?;
            Entry::ima_entry(pcr, hash, d, after.as_bytes())
        }
        Template::ImaNg => {
            let d = digest(first)?;
            let data = encode_fields(&[&encode_dng(&d), &encode_name(after)]);
            Entry::from_template_data(pcr, hash, template, &data)
        }
        Template::ImaSig | Template::ImaBuf => {
            let d = digest(first)?;
            // The name, then the signature or buffer (empty: the line ends in the name or a
            // space).
            let (name, extra) = match after.rsplit_once(' ') {
                Some((n, x)) => (n, unhex("signature or buffer", x)?),
                None => (after, Vec::new()),
            };
            let data = encode_fields(&[&encode_dng(&d), &encode_name(name), &extra]);
            Entry::from_template_data(pcr, hash, template, &data)
        }
        Template::ImaModsig => {
            let d = digest(first)?;
            let parts: Vec<&str> = after.split(' ').collect();
            if parts.len() < 4 {
                return Err(AsciiErrorKind::Missing);
            }
            let n = parts.len();
            let name = parts[..n - 3].join(" ");
            let sig = unhex("signature", parts[n - 3])?;
            let dmod = if parts[n - 2].is_empty() {
                Vec::new()
            } else {
                encode_dng(&digest(parts[n - 2])?)
            };
            let modsig = unhex("modsig", parts[n - 1])?;
            let data = encode_fields(&[&encode_dng(&d), &encode_name(&name), &sig, &dmod, &modsig]);
            Entry::from_template_data(pcr, hash, template, &data)
        }
        Template::Other(name) => return Err(AsciiErrorKind::Template(name)),
    };
    entry.map(Some).map_err(AsciiErrorKind::Field)
}

/// Every entry of a text list, each with its line number; stops at the first bad line.
pub fn parse(text: &str) -> impl Iterator<Item = Result<(u64, Entry), AsciiError>> + '_ {
    let mut failed = false;
    text.lines().enumerate().filter_map(move |(i, l)| {
        if failed {
            return None;
        }
        let line = i as u64 + 1;
        match parse_line(l) {
            Ok(None) => None,
            Ok(Some(e)) => Some(Ok((line, e))),
            Err(kind) => {
                failed = true;
                Some(Err(AsciiError { line, kind }))
            }
        }
    })
}

/// The text form of an entry as the kernel prints it (one line, no newline). `None` for
/// templates whose text form is not rebuilt here.
pub fn format_entry(e: &Entry) -> Option<String> {
    let d = e.digest.as_ref()?;
    let head = format!("{} {} {}", e.pcr, hex::encode(&e.template_hash), e.template);
    Some(match e.template {
        Template::Ima => format!("{head} {} {}", hex::encode(&d.value), e.name),
        Template::ImaNg => format!("{head} {}:{} {}", d.alg, hex::encode(&d.value), e.name),
        Template::ImaSig => format!(
            "{head} {}:{} {} {}",
            d.alg,
            hex::encode(&d.value),
            e.name,
            hex::encode(&e.signature)
        ),
        Template::ImaBuf => format!(
            "{head} {}:{} {} {}",
            d.alg,
            hex::encode(&d.value),
            e.name,
            hex::encode(e.buf.as_deref().unwrap_or_default())
        ),
        Template::ImaModsig | Template::Other(_) => return None,
    })
}
