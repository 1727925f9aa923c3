//! Every IMA entry evaluated against a Keylime runtime policy, with Keylime's rules:
//!
//! - a path matching `excludes` passes unchecked;
//! - `ima`, `ima-ng`: the file digest must be one of the path's `digests`;
//! - `ima-sig`, `ima-modsig`: a signature that verifies under the policy's `verification-keys`
//!   (or a key the log shows loaded onto a checked keyring) passes; otherwise the digest must be
//!   in `digests`, and when it is not, a present signature that failed is the rule named;
//! - `ima-buf` holding a key: its digest must be in `keyrings` for its keyring unless the
//!   keyring is ignored; the key is then used for later signatures; other `ima-buf` entries:
//!   the digest must be in `ima-buf` under the entry's name;
//! - `boot_aggregate` also passes with a digest the verifier computed from the quoted PCRs;
//! - a violation (all-zero template hash, zero file digest) fails unless the policy lists the
//!   zero digest for the path (Keylime checks it like any digest) or excludes the path.
//!
//! Entries are fed one at a time ([`Appraiser::push`]) together with the PCR replay, so a list
//! of any length is appraised in bounded memory; every failure is counted and the first
//! [`MAX_FAILURES_KEPT`] are kept with their path, digest and rule.

use super::entry::{Entry, Template};
use super::replay::{ReplayError, ReplayState};
use super::runtime_policy::{CompiledPolicy, PolicyError, RuntimePolicy};
use super::signature::PublicKey;
use serde::Serialize;
use std::fmt;

/// How many failing entries a verdict keeps (all are counted).
pub const MAX_FAILURES_KEPT: usize = 1000;

/// How many keys learned from the list are carried on.
pub const MAX_LEARNED_KEYS: usize = 64;

/// The rule an entry failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImaRule {
    /// The path has no entry in the policy's `digests`.
    NotInPolicy,
    /// The path is in the policy but not with this digest.
    DigestNotAllowed,
    /// The signature did not verify and the digest is not allowed.
    BadSignature,
    /// A key measured onto a keyring whose digest the policy's `keyrings` does not allow.
    KeyNotAllowed,
    /// A buffer the policy's `ima-buf` does not allow.
    BufferNotAllowed,
    /// A violation: the kernel could not measure the file reliably.
    Violation,
    /// The template hash is not the hash of the template data.
    TemplateHash,
    /// A template this verifier cannot appraise.
    UnknownTemplate,
}

impl ImaRule {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ImaRule::NotInPolicy => "not_in_policy",
            ImaRule::DigestNotAllowed => "digest_not_allowed",
            ImaRule::BadSignature => "bad_signature",
            ImaRule::KeyNotAllowed => "key_not_allowed",
            ImaRule::BufferNotAllowed => "buffer_not_allowed",
            ImaRule::Violation => "violation",
            ImaRule::TemplateHash => "template_hash",
            ImaRule::UnknownTemplate => "unknown_template",
        }
    }
}

impl fmt::Display for ImaRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failing entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryFailure {
    /// The entry's index in the device's whole list (0-based).
    pub index: u64,
    /// The file path (or buffer / keyring name).
    pub path: String,
    /// Its digest, `<alg>:<hex>`, when the template has one.
    pub digest: Option<String>,
    /// The template.
    pub template: String,
    /// The rule.
    pub rule: ImaRule,
    /// Why, in words.
    pub detail: String,
}

impl fmt::Display for EntryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.rule, self.path)?;
        if let Some(d) = &self.digest {
            write!(f, " {d}")?;
        }
        write!(f, " (entry {}): {}", self.index, self.detail)
    }
}

/// The appraisal of a run of entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImaVerdict {
    /// True when no entry failed.
    pub trusted: bool,
    /// Entries looked at.
    pub entries: u64,
    /// Entries that passed because their path is excluded.
    pub excluded: u64,
    /// Entries that passed by a verified signature.
    pub signed: u64,
    /// Entries that failed (all of them, also those not kept).
    pub failed: u64,
    /// The first [`MAX_FAILURES_KEPT`] failing entries.
    pub failures: Vec<EntryFailure>,
}

/// Evaluates entries against one policy, carrying what earlier entries taught (keys loaded onto
/// keyrings).
#[derive(Debug, Clone)]
pub struct Appraiser {
    policy: CompiledPolicy,
    boot_aggregates: Vec<Vec<u8>>,
    verdict: ImaVerdict,
    /// The buffers (certificates or keys) of key entries accepted onto checked keyrings.
    learned: Vec<Vec<u8>>,
}

enum Pass {
    Ok,
    Excluded,
    Signed,
}

impl Appraiser {
    /// An appraiser for `policy`.
    pub fn new(policy: &RuntimePolicy) -> Result<Appraiser, PolicyError> {
        Ok(Appraiser::compiled(policy.compile()?))
    }

    /// An appraiser for a policy already compiled.
    pub fn compiled(policy: CompiledPolicy) -> Appraiser {
        Appraiser {
            policy,
            boot_aggregates: Vec::new(),
            verdict: ImaVerdict {
                trusted: true,
                entries: 0,
                excluded: 0,
                signed: 0,
                failed: 0,
                failures: Vec::new(),
            },
            learned: Vec::new(),
        }
    }

    /// Also uses the keys of these buffers (from [`Appraiser::learned`] of the appraisal of an
    /// earlier part of the same list) for signatures; buffers that hold no usable key are
    /// skipped.
    pub fn with_learned_keys(mut self, bufs: &[Vec<u8>]) -> Appraiser {
        for b in bufs {
            if let Ok((key, id)) = PublicKey::from_cert_or_spki_der(b) {
                self.policy.keys.add(key, id);
                self.learned.push(b.clone());
            }
        }
        self
    }

    /// The key buffers accepted so far (those given to [`Appraiser::with_learned_keys`] and
    /// those the entries loaded onto checked keyrings), to carry to the next part of the list.
    pub fn learned(&self) -> &[Vec<u8>] {
        &self.learned
    }

    /// Also accepts these `boot_aggregate` digests (computed from quoted PCRs, see
    /// [`super::replay::boot_aggregate`]).
    pub fn with_boot_aggregates(mut self, digests: Vec<Vec<u8>>) -> Appraiser {
        self.boot_aggregates = digests;
        self
    }

    fn fail(&mut self, index: u64, entry: &Entry, rule: ImaRule, detail: String) {
        self.verdict.trusted = false;
        self.verdict.failed += 1;
        if self.verdict.failures.len() < MAX_FAILURES_KEPT {
            self.verdict.failures.push(EntryFailure {
                index,
                path: entry.name.clone(),
                digest: entry.digest.as_ref().map(|d| d.to_string()),
                template: entry.template.name().to_string(),
                rule,
                detail,
            });
        }
    }

    /// Replays `entry` (index `replay.entries`, `encoded_len` bytes of the binary list) into
    /// `replay` and evaluates it. A template hash that does not match fails the entry and leaves
    /// the replay where it was.
    pub fn push(&mut self, entry: &Entry, encoded_len: u64, replay: &mut ReplayState) {
        let index = replay.entries;
        self.verdict.entries += 1;
        if let Err(e) = replay.extend(entry, encoded_len) {
            let detail = match &e {
                ReplayError::TemplateHash { .. } | ReplayError::HashLen { .. } => {
                    "the logged template hash is not the hash of the entry".to_string()
                }
                ReplayError::Bank(b) => format!("bank {b} cannot be replayed"),
            };
            self.fail(index, entry, ImaRule::TemplateHash, detail);
            return;
        }
        self.evaluate(index, entry);
    }

    /// Evaluates one entry without replaying it.
    pub fn evaluate(&mut self, index: u64, entry: &Entry) {
        match self.check(entry) {
            Ok(Pass::Ok) => {}
            Ok(Pass::Excluded) => self.verdict.excluded += 1,
            Ok(Pass::Signed) => self.verdict.signed += 1,
            Err((rule, detail)) => self.fail(index, entry, rule, detail),
        }
    }

    fn check(&mut self, entry: &Entry) -> Result<Pass, (ImaRule, String)> {
        if self.policy.excluded(&entry.name) {
            return Ok(Pass::Excluded);
        }
        let Some(digest) = &entry.digest else {
            return Err((
                ImaRule::UnknownTemplate,
                format!("template {} cannot be appraised", entry.template),
            ));
        };
        if entry.is_violation() {
            // As Keylime: the logged (zero) digest is checked like any other, so a policy can
            // list it for a path known to be written while in use.
            return self.check_digest(entry, &digest.value).map_err(|_| {
                (
                    ImaRule::Violation,
                    "measurement violation (file open for writing or changed while measured)"
                        .into(),
                )
            });
        }
        match entry.template {
            Template::ImaBuf => self.check_buf(entry, &digest.value),
            Template::ImaSig | Template::ImaModsig if !entry.signature.is_empty() => {
                let sig = self.policy.keys.verify(&entry.signature, digest);
                match sig {
                    Ok(()) => Ok(Pass::Signed),
                    Err(e) => match self.check_digest(entry, &digest.value) {
                        Ok(p) => Ok(p),
                        // Without keys a signature is not evidence: the digest rule is the one
                        // that failed.
                        Err(d) if self.policy.keys.is_empty() => Err(d),
                        Err(_) => Err((ImaRule::BadSignature, e.to_string())),
                    },
                }
            }
            _ => self.check_digest(entry, &digest.value),
        }
    }

    fn check_digest(&self, entry: &Entry, digest: &[u8]) -> Result<Pass, (ImaRule, String)> {
        if entry.name == "boot_aggregate" && self.boot_aggregates.iter().any(|b| b == digest) {
            return Ok(Pass::Ok);
        }
        match self.policy.digests.get(&entry.name) {
            None => Err((
                ImaRule::NotInPolicy,
                "path not in the policy's digests".into(),
            )),
            Some(allowed) if allowed.contains(digest) => Ok(Pass::Ok),
            Some(allowed) => Err((
                ImaRule::DigestNotAllowed,
                format!(
                    "digest not among the {} the policy allows for this path",
                    allowed.len()
                ),
            )),
        }
    }

    fn check_buf(&mut self, entry: &Entry, digest: &[u8]) -> Result<Pass, (ImaRule, String)> {
        let buf = entry.buf.as_deref().unwrap_or_default();
        if let Ok((key, id)) = PublicKey::from_cert_or_spki_der(buf) {
            let ignored = self
                .policy
                .ignored_keyrings
                .iter()
                .any(|k| k == "*" || *k == entry.name);
            if ignored {
                return Ok(Pass::Ok);
            }
            return match self.policy.keyrings.get(&entry.name) {
                Some(allowed) if allowed.contains(digest) => {
                    self.policy.keys.add(key, id);
                    if self.learned.len() < MAX_LEARNED_KEYS
                        && !self.learned.iter().any(|b| b == buf)
                    {
                        self.learned.push(buf.to_vec());
                    }
                    Ok(Pass::Ok)
                }
                _ => Err((
                    ImaRule::KeyNotAllowed,
                    format!(
                        "key {id:08x} loaded onto keyring {} is not in the policy's keyrings",
                        entry.name
                    ),
                )),
            };
        }
        match self.policy.ima_buf.get(&entry.name) {
            Some(allowed) if allowed.contains(digest) => Ok(Pass::Ok),
            _ => Err((
                ImaRule::BufferNotAllowed,
                "buffer digest not in the policy's ima-buf".into(),
            )),
        }
    }

    /// The verdict so far.
    pub fn verdict(&self) -> &ImaVerdict {
        &self.verdict
    }

    /// The verdict.
    pub fn finish(self) -> ImaVerdict {
        self.verdict
    }
}
