//! The release document: its TOML shape (every table `deny_unknown_fields`), loading with
//! validation, writing, and the policy sections it stands for ([`Release::to_policy`]).

use crate::alg::HashAlg;
use crate::eventlog::EventLog;
use crate::pcrs::PcrBanks;
use crate::policy::{BootAppPolicy, CmdlinePolicy, GrubFilePolicy, HexBytes, InitrdPolicy, Policy};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The only release format version this crate reads and writes.
pub const RELEASE_FORMAT_VERSION: u32 = 1;
/// Largest release document accepted, in bytes.
pub const MAX_RELEASE_BYTES: usize = 1 << 20;

/// Why a release document was refused.
#[derive(Debug, Error)]
pub enum ReleaseError {
    /// Larger than [`MAX_RELEASE_BYTES`].
    #[error("release is {len} bytes, more than the {max} accepted")]
    TooLarge {
        /// Size of the document.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid TOML, an unknown key, a wrong type, or a malformed value (the message gives
    /// the line and column).
    #[error("release does not load")]
    Toml(#[source] toml::de::Error),
    /// `version` is not [`RELEASE_FORMAT_VERSION`].
    #[error("release version {found} is not supported (this verifier reads version {RELEASE_FORMAT_VERSION})")]
    Version {
        /// The version written.
        found: u32,
    },
    /// A digest has the wrong length.
    #[error("{field}[{index}].sha256: {found}-byte digest, expected 32 bytes")]
    DigestLength {
        /// The list, e.g. `initrds`.
        field: &'static str,
        /// Position in the list.
        index: usize,
        /// Bytes given.
        found: usize,
    },
    /// A command line entry is empty.
    #[error("kernel_cmdlines[{index}].text is empty")]
    EmptyCmdline {
        /// Position in the list.
        index: usize,
    },
    /// Writing the document failed.
    #[error("cannot write the release as TOML")]
    Encode(#[source] toml::ser::Error),
}

/// One component known by its SHA-256 digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// The digest (for boot applications: the Authenticode SHA-256 of the EFI image).
    pub sha256: HexBytes,
    /// Where it came from (file name, package, event), for people; not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A kernel command line in GRUB's text form (what GRUB measures into PCR 8 after
/// `kernel_cmdline: `).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmdlineComponent {
    /// The text.
    pub text: String,
    /// `true`: a measured command line starting with `text` is allowed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prefix: bool,
    /// Where it came from, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// An approved release: the components a device running it measures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Format version; must be [`RELEASE_FORMAT_VERSION`].
    pub version: u32,
    /// Free text for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// EFI images (shim, GRUB, systemd-boot, UKI, EFI-stub kernel) by Authenticode SHA-256, as
    /// firmware and shim measure them into PCR 4.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boot_applications: Vec<Component>,
    /// Kernel command lines in GRUB's text form (PCR 8).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_cmdlines: Vec<CmdlineComponent>,
    /// SHA-256 of the LoadOptions the Linux EFI stub measures into PCR 9.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_options: Vec<Component>,
    /// SHA-256 of initrds the Linux EFI stub measures into PCR 9.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initrds: Vec<Component>,
    /// SHA-256 of files GRUB reads and measures into PCR 9 (kernel, initrd, grub.cfg, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grub_files: Vec<Component>,
}

fn check_lengths(field: &'static str, list: &[Component]) -> Result<(), ReleaseError> {
    for (index, c) in list.iter().enumerate() {
        if c.sha256.0.len() != 32 {
            return Err(ReleaseError::DigestLength {
                field,
                index,
                found: c.sha256.0.len(),
            });
        }
    }
    Ok(())
}

fn push_unique(list: &mut Vec<Component>, sha256: &[u8], source: Option<String>) {
    if !list.iter().any(|c| c.sha256.0 == sha256) {
        list.push(Component {
            sha256: HexBytes(sha256.to_vec()),
            source,
        });
    }
}

fn digests(list: &[Component]) -> Vec<HexBytes> {
    list.iter().map(|c| c.sha256.clone()).collect()
}

impl Release {
    /// A release with no components.
    pub fn empty() -> Release {
        Release {
            version: RELEASE_FORMAT_VERSION,
            description: None,
            boot_applications: Vec::new(),
            kernel_cmdlines: Vec::new(),
            load_options: Vec::new(),
            initrds: Vec::new(),
            grub_files: Vec::new(),
        }
    }

    /// Loads and validates a release document.
    pub fn from_toml(text: &str) -> Result<Release, ReleaseError> {
        if text.len() > MAX_RELEASE_BYTES {
            return Err(ReleaseError::TooLarge {
                len: text.len(),
                max: MAX_RELEASE_BYTES,
            });
        }
        let r: Release = toml::from_str(text).map_err(ReleaseError::Toml)?;
        r.validate()?;
        Ok(r)
    }

    /// Checks what the TOML types alone do not: the version, digest lengths, empty texts.
    pub fn validate(&self) -> Result<(), ReleaseError> {
        if self.version != RELEASE_FORMAT_VERSION {
            return Err(ReleaseError::Version {
                found: self.version,
            });
        }
        check_lengths("boot_applications", &self.boot_applications)?;
        check_lengths("load_options", &self.load_options)?;
        check_lengths("initrds", &self.initrds)?;
        check_lengths("grub_files", &self.grub_files)?;
        if let Some(index) = self.kernel_cmdlines.iter().position(|c| c.text.is_empty()) {
            return Err(ReleaseError::EmptyCmdline { index });
        }
        Ok(())
    }

    /// Writes the release as TOML (loads back to an equal release).
    pub fn to_toml(&self) -> Result<String, ReleaseError> {
        toml::to_string_pretty(self).map_err(ReleaseError::Encode)
    }

    /// Number of components.
    pub fn len(&self) -> usize {
        self.boot_applications.len()
            + self.kernel_cmdlines.len()
            + self.load_options.len()
            + self.initrds.len()
            + self.grub_files.len()
    }

    /// True when the release allows nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a boot application (Authenticode SHA-256), once.
    pub fn add_boot_application(&mut self, sha256: &[u8], source: Option<String>) {
        push_unique(&mut self.boot_applications, sha256, source);
    }

    /// Adds an EFI stub LoadOptions digest, once.
    pub fn add_load_options(&mut self, sha256: &[u8], source: Option<String>) {
        push_unique(&mut self.load_options, sha256, source);
    }

    /// Adds an initrd digest (EFI stub), once.
    pub fn add_initrd(&mut self, sha256: &[u8], source: Option<String>) {
        push_unique(&mut self.initrds, sha256, source);
    }

    /// Adds a GRUB-read file digest, once.
    pub fn add_grub_file(&mut self, sha256: &[u8], source: Option<String>) {
        push_unique(&mut self.grub_files, sha256, source);
    }

    /// Adds a GRUB-form command line (exact), once.
    pub fn add_cmdline(&mut self, text: &str, source: Option<String>) {
        if !self
            .kernel_cmdlines
            .iter()
            .any(|c| c.text == text && !c.prefix)
        {
            self.kernel_cmdlines.push(CmdlineComponent {
                text: text.to_owned(),
                prefix: false,
                source,
            });
        }
    }

    /// Adds the components of a known-good log (read as [`Policy::record`] reads them: only
    /// event data that hashes to its digest in the log's preferred bank). Boot application
    /// digests are taken only from a sha256 bank (Authenticode SHA-256). `source` names the
    /// log in each component.
    pub fn add_log(&mut self, log: &EventLog<'_>, source: &str) {
        let recorded = Policy::record(log, &PcrBanks::new());
        let src = |what: &str| Some(format!("{what} in {source}"));
        if let Some(apps) = recorded
            .boot_applications
            .filter(|a| a.bank == HashAlg::Sha256)
        {
            for d in &apps.allowed {
                self.add_boot_application(&d.0, src("PCR 4 boot application"));
            }
        }
        if let Some(c) = recorded.kernel_cmdline {
            for t in &c.exact {
                self.add_cmdline(t, src("PCR 8 kernel_cmdline"));
            }
            for d in c.load_options_sha256.iter().flatten() {
                self.add_load_options(&d.0, src("PCR 9 LoadOptions"));
            }
        }
        for d in recorded.initrd.iter().flat_map(|i| &i.sha256) {
            self.add_initrd(&d.0, src("PCR 9 EFI stub initrd"));
        }
        for d in recorded.grub_files.iter().flat_map(|g| &g.sha256) {
            self.add_grub_file(&d.0, src("PCR 9 GRUB file"));
        }
    }

    /// The policy sections this release stands for: each kind of component it lists becomes a
    /// present rule allowing exactly its digests (a release listing command lines requires one
    /// to be measured). Kinds it does not list stay absent.
    pub fn to_policy(&self) -> Policy {
        let mut p = Policy::empty();
        if !self.boot_applications.is_empty() {
            p.boot_applications = Some(BootAppPolicy {
                bank: HashAlg::Sha256,
                allowed: digests(&self.boot_applications),
            });
        }
        if !self.kernel_cmdlines.is_empty() || !self.load_options.is_empty() {
            let texts = |prefix: bool| {
                self.kernel_cmdlines
                    .iter()
                    .filter(|c| c.prefix == prefix)
                    .map(|c| c.text.clone())
                    .collect()
            };
            p.kernel_cmdline = Some(CmdlinePolicy {
                required: true,
                exact: texts(false),
                prefix: texts(true),
                load_options_sha256: (!self.load_options.is_empty())
                    .then(|| digests(&self.load_options)),
            });
        }
        if !self.initrds.is_empty() {
            p.initrd = Some(InitrdPolicy {
                sha256: digests(&self.initrds),
            });
        }
        if !self.grub_files.is_empty() {
            p.grub_files = Some(GrubFilePolicy {
                sha256: digests(&self.grub_files),
            });
        }
        p
    }
}
