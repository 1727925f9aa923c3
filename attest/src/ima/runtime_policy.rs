//! Keylime's runtime policy (format version 1) read as it is, so a Keylime user's policies work
//! unchanged:
//!
//! ```json
//! {"meta": {"version": 1, "generator": 3, "timestamp": "..."}, "release": 0,
//!  "digests": {"/usr/bin/bash": ["<hex>", ...]}, "excludes": ["/tmp/.*"],
//!  "keyrings": {".ima": ["<hex>"]}, "ima-buf": {"kernel_cmdline": ["<hex>"]},
//!  "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": null},
//!  "verification-keys": ""}
//! ```
//!
//! - `digests`: the allowed digests of every path (any algorithm; a file's digest must be one of
//!   its path's).
//! - `excludes`: regular expressions matched at the start of a path; a matching entry passes
//!   unchecked (Keylime's semantics; the patterns use the Rust `regex` syntax, which is Python's
//!   without look-around and back-references).
//! - `keyrings`: the allowed digests of keys IMA measures onto each keyring (`ima-buf` entries
//!   holding a key); `ima.ignored_keyrings` names keyrings not checked (`*`: all).
//! - `ima-buf`: the allowed digests of other `ima-buf` entries, by name.
//! - `verification-keys`: Keylime's keyring JSON (a JSON string of keyring name → JSON string
//!   of `{"pubkeys": [base64 DER SubjectPublicKeyInfo], "keyids": [...]}`), the keys `ima-sig`
//!   signatures are checked against.
//! - `ima.dm_policy` (device-mapper validation) is not supported: a policy with one is refused
//!   rather than half-applied.

use super::signature::{KeyError, Keyring};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// The runtime policy format version read and written.
pub const FORMAT_VERSION: u64 = 1;

/// Why a runtime policy cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The JSON does not have the runtime policy's shape.
    #[error("not a Keylime runtime policy")]
    Json(#[source] serde_json::Error),
    /// `meta.version` is not 1.
    #[error("meta.version {0} is not supported (1 is)")]
    Version(u64),
    /// A digest is not hex.
    #[error("{section}[{key:?}]: digest {digest:?} is not hex")]
    Digest {
        /// `digests`, `keyrings` or `ima-buf`.
        section: &'static str,
        /// The path or name.
        key: String,
        /// The value.
        digest: String,
    },
    /// An `excludes` pattern is not a valid regular expression.
    #[error("excludes: not a valid regular expression")]
    Exclude {
        /// The pattern.
        pattern: String,
        /// Why.
        source: regex::Error,
    },
    /// `ima.log_hash_alg` is not an algorithm IMA logs with.
    #[error("ima.log_hash_alg {0:?} is not sha1, sha256, sha384 or sha512")]
    LogHashAlg(String),
    /// `ima.dm_policy` is set: device-mapper validation is not supported.
    #[error("ima.dm_policy is set: device-mapper validation is not supported by Vouch")]
    DmPolicy,
    /// `verification-keys` does not hold usable keys.
    #[error("verification-keys")]
    Keys(#[source] KeyError),
    /// Encoding the policy failed.
    #[error("cannot encode the policy")]
    Encode(#[source] serde_json::Error),
}

/// `meta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The format version (1).
    pub version: u64,
    /// What made the policy (Keylime's generator numbers; kept as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<serde_json::Value>,
    /// When it was made (kept as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<serde_json::Value>,
}

/// `ima`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImaSection {
    /// Keyrings whose key measurements are not checked (`*`: all).
    #[serde(default)]
    pub ignored_keyrings: Vec<String>,
    /// The hash algorithm of the `ima` template's digests.
    #[serde(default = "sha1")]
    pub log_hash_alg: String,
    /// Device-mapper policy (not supported; must be null).
    #[serde(default)]
    pub dm_policy: Option<serde_json::Value>,
}

fn sha1() -> String {
    "sha1".into()
}

impl Default for ImaSection {
    fn default() -> ImaSection {
        ImaSection {
            ignored_keyrings: Vec::new(),
            log_hash_alg: sha1(),
            dm_policy: None,
        }
    }
}

/// A Keylime runtime policy as written (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimePolicy {
    /// `meta`.
    pub meta: Meta,
    /// `release`.
    #[serde(default)]
    pub release: serde_json::Value,
    /// `digests`: path → allowed hex digests.
    #[serde(default)]
    pub digests: BTreeMap<String, Vec<String>>,
    /// `excludes`: path patterns not checked.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// `keyrings`: keyring → allowed key digests.
    #[serde(default)]
    pub keyrings: BTreeMap<String, Vec<String>>,
    /// `ima`.
    #[serde(default)]
    pub ima: ImaSection,
    /// `ima-buf`: buffer name → allowed digests.
    #[serde(default, rename = "ima-buf")]
    pub ima_buf: BTreeMap<String, Vec<String>>,
    /// `verification-keys`: Keylime's keyring JSON, or empty.
    #[serde(default, rename = "verification-keys")]
    pub verification_keys: String,
}

/// A policy ready to evaluate: digests decoded into sets, excludes compiled, keys loaded.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub(crate) digests: BTreeMap<String, HashSet<Vec<u8>>>,
    pub(crate) keyrings: BTreeMap<String, HashSet<Vec<u8>>>,
    pub(crate) ima_buf: BTreeMap<String, HashSet<Vec<u8>>>,
    pub(crate) excludes: Option<Regex>,
    pub(crate) ignored_keyrings: Vec<String>,
    pub(crate) keys: Keyring,
}

impl CompiledPolicy {
    /// True when `path` matches an `excludes` pattern.
    pub fn excluded(&self, path: &str) -> bool {
        self.excludes.as_ref().is_some_and(|r| r.is_match(path))
    }

    /// How many paths the policy lists digests for.
    pub fn paths(&self) -> usize {
        self.digests.len()
    }
}

fn decode_section(
    section: &'static str,
    map: &BTreeMap<String, Vec<String>>,
) -> Result<BTreeMap<String, HashSet<Vec<u8>>>, PolicyError> {
    map.iter()
        .map(|(k, v)| {
            let set = v
                .iter()
                .map(|d| {
                    hex::decode(d.trim()).map_err(|_| PolicyError::Digest {
                        section,
                        key: k.clone(),
                        digest: d.chars().take(80).collect(),
                    })
                })
                .collect::<Result<HashSet<_>, _>>()?;
            Ok((k.clone(), set))
        })
        .collect()
}

impl RuntimePolicy {
    /// An empty policy (every measured file fails until digests are added).
    pub fn empty() -> RuntimePolicy {
        RuntimePolicy {
            meta: Meta {
                version: FORMAT_VERSION,
                generator: None,
                timestamp: None,
            },
            release: serde_json::Value::from(0),
            digests: BTreeMap::new(),
            excludes: Vec::new(),
            keyrings: BTreeMap::new(),
            ima: ImaSection::default(),
            ima_buf: BTreeMap::new(),
            verification_keys: String::new(),
        }
    }

    /// Reads a policy from its JSON text and checks it compiles.
    pub fn from_json(text: &[u8]) -> Result<RuntimePolicy, PolicyError> {
        let p: RuntimePolicy = serde_json::from_slice(text).map_err(PolicyError::Json)?;
        p.compile()?;
        Ok(p)
    }

    /// The policy as JSON (pretty-printed).
    pub fn to_json(&self) -> Result<String, PolicyError> {
        serde_json::to_string_pretty(self).map_err(PolicyError::Encode)
    }

    /// Checks the policy and prepares it for evaluation.
    pub fn compile(&self) -> Result<CompiledPolicy, PolicyError> {
        if self.meta.version != FORMAT_VERSION {
            return Err(PolicyError::Version(self.meta.version));
        }
        if !matches!(
            self.ima.log_hash_alg.as_str(),
            "sha1" | "sha256" | "sha384" | "sha512"
        ) {
            return Err(PolicyError::LogHashAlg(self.ima.log_hash_alg.clone()));
        }
        if self.ima.dm_policy.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(PolicyError::DmPolicy);
        }
        for pattern in &self.excludes {
            Regex::new(pattern).map_err(|e| PolicyError::Exclude {
                pattern: pattern.clone(),
                source: e,
            })?;
        }
        let excludes = if self.excludes.is_empty() {
            None
        } else {
            let joined = self
                .excludes
                .iter()
                .map(|p| format!("(?:{p})"))
                .collect::<Vec<_>>()
                .join("|");
            Some(
                Regex::new(&format!("^(?:{joined})")).map_err(|e| PolicyError::Exclude {
                    pattern: joined.clone(),
                    source: e,
                })?,
            )
        };
        Ok(CompiledPolicy {
            digests: decode_section("digests", &self.digests)?,
            keyrings: decode_section("keyrings", &self.keyrings)?,
            ima_buf: decode_section("ima-buf", &self.ima_buf)?,
            excludes,
            ignored_keyrings: self.ima.ignored_keyrings.clone(),
            keys: Keyring::from_keylime_json(&self.verification_keys).map_err(PolicyError::Keys)?,
        })
    }

    /// Adds an allowed digest for `path` (kept sorted and without duplicates).
    pub fn allow(&mut self, path: &str, digest: &[u8]) {
        let list = self.digests.entry(path.to_string()).or_default();
        let h = hex::encode(digest);
        if let Err(at) = list.binary_search(&h) {
            list.insert(at, h);
        }
    }

    /// A policy allowing what a known-good list measured: every appraisable entry's digest
    /// under its path (`ima-buf` entries under `ima-buf`), violations and other templates
    /// skipped. Returns the policy and how many entries it took digests from.
    pub fn from_entries<'a>(
        entries: impl IntoIterator<Item = &'a super::Entry>,
    ) -> (RuntimePolicy, u64) {
        let mut p = RuntimePolicy::empty();
        let n = entries.into_iter().filter(|e| p.add_entry(e)).count() as u64;
        (p, n)
    }

    /// Allows what one known-good entry measured (see [`RuntimePolicy::from_entries`]); false
    /// for a violation or an entry without a digest, which add nothing.
    pub fn add_entry(&mut self, e: &super::Entry) -> bool {
        let Some(d) = &e.digest else { return false };
        if e.is_violation() {
            return false;
        }
        if e.template == super::Template::ImaBuf {
            let list = self.ima_buf.entry(e.name.clone()).or_default();
            let h = hex::encode(&d.value);
            if !list.contains(&h) {
                list.push(h);
            }
        } else {
            self.allow(&e.name, &d.value);
        }
        true
    }
}
