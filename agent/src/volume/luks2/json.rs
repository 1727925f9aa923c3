//! LUKS2 JSON metadata: typed keyslots, tokens, segments, digests and config, with the
//! cross-reference checks of the on-disk format specification. Objects are keyed by
//! decimal ids written as strings, and 64-bit sizes and offsets are decimal strings.
//! Fields this implementation does not interpret are kept (`extra`) so that rewriting a
//! header made by cryptsetup loses nothing.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// Errors of metadata parsing and validation.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The JSON text does not parse into LUKS2 metadata.
    #[error("LUKS2 JSON metadata does not parse")]
    Parse(#[source] serde_json::Error),
    /// `config.json_size` disagrees with the binary header.
    #[error("config.json_size {json_size} does not match header size {hdr_size} - 4096")]
    JsonSize {
        /// Value in the JSON.
        json_size: u64,
        /// `hdr_size` of the binary header.
        hdr_size: u64,
    },
    /// A keyslot area lies outside the keyslots area.
    #[error(
        "keyslot {keyslot}: area {offset}+{size} lies outside the keyslots area {start}..{end}"
    )]
    KeyslotArea {
        /// Keyslot id.
        keyslot: u32,
        /// Area offset.
        offset: u64,
        /// Area size.
        size: u64,
        /// Start of the keyslots area.
        start: u64,
        /// End of the keyslots area.
        end: u64,
    },
    /// Two keyslot areas overlap.
    #[error("keyslots {a} and {b} have overlapping areas")]
    KeyslotOverlap {
        /// First keyslot.
        a: u32,
        /// Second keyslot.
        b: u32,
    },
    /// A digest names a keyslot that does not exist.
    #[error("digest {digest} names missing keyslot {keyslot}")]
    DigestKeyslot {
        /// Digest id.
        digest: u32,
        /// Missing keyslot id.
        keyslot: u32,
    },
    /// A digest names a segment that does not exist.
    #[error("digest {digest} names missing segment {segment}")]
    DigestSegment {
        /// Digest id.
        digest: u32,
        /// Missing segment id.
        segment: u32,
    },
    /// A token names a keyslot that does not exist.
    #[error("token {token} names missing keyslot {keyslot}")]
    TokenKeyslot {
        /// Token id.
        token: u32,
        /// Missing keyslot id.
        keyslot: u32,
    },
    /// Serialising the metadata failed.
    #[error("cannot serialise LUKS2 metadata")]
    Serialize(#[source] serde_json::Error),
}

/// A decimal object id (`"0"`, `"1"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub u32);

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal id string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::custom(format!("invalid id {v:?}")));
                }
                v.parse()
                    .map(Id)
                    .map_err(|_| E::custom(format!("id {v:?} out of range")))
            }
        }
        d.deserialize_str(V)
    }
}

/// A u64 written as a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dec(pub u64);

impl Serialize for Dec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Dec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal number string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dec, E> {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::custom(format!("invalid decimal string {v:?}")));
                }
                v.parse()
                    .map(Dec)
                    .map_err(|_| E::custom(format!("number {v:?} out of range")))
            }
        }
        d.deserialize_str(V)
    }
}

/// Size of a segment: `"dynamic"` (up to the end of the device) or a byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentSize {
    /// Up to the end of the device.
    Dynamic,
    /// Fixed size in bytes.
    Bytes(u64),
}

impl Serialize for SegmentSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SegmentSize::Dynamic => s.serialize_str("dynamic"),
            SegmentSize::Bytes(n) => s.serialize_str(&n.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for SegmentSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "dynamic" {
            return Ok(SegmentSize::Dynamic);
        }
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(de::Error::custom(format!("invalid segment size {s:?}")));
        }
        s.parse()
            .map(SegmentSize::Bytes)
            .map_err(|_| de::Error::custom(format!("segment size {s:?} out of range")))
    }
}

/// Whole LUKS2 metadata document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Keyslots by id.
    pub keyslots: BTreeMap<Id, Keyslot>,
    /// Tokens by id.
    pub tokens: BTreeMap<Id, TokenJson>,
    /// Segments by id.
    pub segments: BTreeMap<Id, Segment>,
    /// Digests by id.
    pub digests: BTreeMap<Id, DigestJson>,
    /// Global configuration.
    pub config: Config,
}

/// A keyslot object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keyslot {
    /// Keyslot type (`luks2`; `reencrypt` during reencryption).
    #[serde(rename = "type")]
    pub kind: String,
    /// Size of the key it stores, in bytes.
    pub key_size: u32,
    /// Anti-forensic splitter parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub af: Option<Af>,
    /// Where and how the key material is stored.
    pub area: Area,
    /// Key derivation parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf: Option<KdfJson>,
    /// Priority (0 ignore, 1 normal, 2 high).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Fields not interpreted here.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Anti-forensic splitter parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Af {
    /// Splitter type (`luks1`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Number of stripes.
    pub stripes: u32,
    /// Diffusion hash.
    pub hash: String,
}

/// A keyslot area.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Area {
    /// Area type (`raw`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Byte offset on the (header) device.
    pub offset: Dec,
    /// Size in bytes.
    pub size: Dec,
    /// Cipher of the area.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    /// Key size of the area cipher in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_size: Option<u32>,
    /// Fields not interpreted here.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Key derivation parameters as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KdfJson {
    /// `pbkdf2`, `argon2i` or `argon2id`.
    #[serde(rename = "type")]
    pub kind: String,
    /// PBKDF2 hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// PBKDF2 iterations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u32>,
    /// Argon2 time cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<u32>,
    /// Argon2 memory cost in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
    /// Argon2 parallelism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Base64 salt.
    pub salt: String,
}

/// A data segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// `crypt` or `linear`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Byte offset on the data device.
    pub offset: Dec,
    /// Size.
    pub size: SegmentSize,
    /// IV offset in 512-byte units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iv_tweak: Option<Dec>,
    /// Cipher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    /// Sector size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sector_size: Option<u32>,
    /// Fields not interpreted here (flags, integrity).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A digest object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestJson {
    /// `pbkdf2`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Keyslots whose key this digest verifies.
    pub keyslots: Vec<Id>,
    /// Segments that key encrypts.
    pub segments: Vec<Id>,
    /// PBKDF2 hash.
    pub hash: String,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Base64 salt.
    pub salt: String,
    /// Base64 digest.
    pub digest: String,
}

/// A token object: type, keyslots, and free-form fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenJson {
    /// Token type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Keyslots the token belongs to.
    pub keyslots: Vec<Id>,
    /// Other fields, in the order they were read or added.
    #[serde(flatten)]
    pub fields: Fields,
}

/// The free-form fields of a token, in their order. cryptsetup (json-c) keeps the order in
/// which a field was added, and tools such as systemd write their tokens in a fixed order:
/// rewriting a header keeps every token byte for byte as it was (a sorted map would not).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(Vec<(String, Value)>);

impl Fields {
    /// No fields.
    pub fn new() -> Self {
        Fields(Vec::new())
    }

    /// The value of field `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// True when field `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets field `key`: in place when present, else appended.
    pub fn insert(&mut self, key: String, value: Value) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key, value)),
        }
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Index<&str> for Fields {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(key).unwrap_or(&NULL)
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("token fields")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut out = Fields::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    if out.contains_key(&k) {
                        return Err(de::Error::custom(format!("duplicate token field {k:?}")));
                    }
                    out.0.push((k, v));
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// The `config` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// JSON area size.
    pub json_size: Dec,
    /// Keyslots area size.
    pub keyslots_size: Dec,
    /// Fields not interpreted here (flags, requirements).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Metadata {
    /// Parses and validates metadata read from a header of `hdr_size` bytes.
    pub fn parse(json: &str, hdr_size: u64) -> Result<Self, MetadataError> {
        let md: Metadata = serde_json::from_str(json).map_err(MetadataError::Parse)?;
        md.validate(hdr_size)?;
        Ok(md)
    }

    /// Serialises to compact JSON.
    pub fn to_json(&self) -> Result<String, MetadataError> {
        serde_json::to_string(self).map_err(MetadataError::Serialize)
    }

    /// Checks sizes, keyslot areas and the references between objects.
    pub fn validate(&self, hdr_size: u64) -> Result<(), MetadataError> {
        let json_size = self.config.json_size.0;
        if Some(json_size) != hdr_size.checked_sub(4096) {
            return Err(MetadataError::JsonSize {
                json_size,
                hdr_size,
            });
        }
        let start = hdr_size.saturating_mul(2);
        let end = start.saturating_add(self.config.keyslots_size.0);
        let mut areas: Vec<(u32, u64, u64)> = Vec::new();
        for (id, ks) in &self.keyslots {
            if ks.area.kind != "raw" {
                continue;
            }
            let (offset, size) = (ks.area.offset.0, ks.area.size.0);
            let inside = offset >= start && offset.checked_add(size).is_some_and(|e| e <= end);
            if !inside {
                return Err(MetadataError::KeyslotArea {
                    keyslot: id.0,
                    offset,
                    size,
                    start,
                    end,
                });
            }
            for &(other, o_off, o_size) in &areas {
                if offset < o_off.saturating_add(o_size) && o_off < offset.saturating_add(size) {
                    return Err(MetadataError::KeyslotOverlap { a: other, b: id.0 });
                }
            }
            areas.push((id.0, offset, size));
        }
        for (id, d) in &self.digests {
            if let Some(k) = d.keyslots.iter().find(|k| !self.keyslots.contains_key(k)) {
                return Err(MetadataError::DigestKeyslot {
                    digest: id.0,
                    keyslot: k.0,
                });
            }
            if let Some(s) = d.segments.iter().find(|s| !self.segments.contains_key(s)) {
                return Err(MetadataError::DigestSegment {
                    digest: id.0,
                    segment: s.0,
                });
            }
        }
        for (id, t) in &self.tokens {
            if let Some(k) = t.keyslots.iter().find(|k| !self.keyslots.contains_key(k)) {
                return Err(MetadataError::TokenKeyslot {
                    token: id.0,
                    keyslot: k.0,
                });
            }
        }
        Ok(())
    }

    /// The digest that verifies keyslot `id`, if any.
    pub fn digest_for_keyslot(&self, id: Id) -> Option<(Id, &DigestJson)> {
        self.digests
            .iter()
            .find(|(_, d)| d.keyslots.contains(&id))
            .map(|(i, d)| (*i, d))
    }
}

#[cfg(test)]
mod tests;
