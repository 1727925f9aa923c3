//! The policy document: its TOML shape (every table `deny_unknown_fields`), loading with
//! validation, and writing. The format is documented for operators in `tpm-policies/README.md`.
//!
//! A rule is checked only when its key is present. A present list that is empty allows nothing.

use super::pcrs::PcrPolicy;
use super::values::{FirmwareVersion, HexBytes};
use crate::alg::HashAlg;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The only format version this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Largest policy document accepted, in bytes.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// Why a policy document was refused.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// Larger than [`MAX_POLICY_BYTES`].
    #[error("policy is {len} bytes, more than the {max} accepted")]
    TooLarge {
        /// Size of the document.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid TOML, an unknown key, a wrong type, or a malformed value (the message gives
    /// the line and column).
    #[error("policy does not load")]
    Toml(#[source] toml::de::Error),
    /// `version` is not [`FORMAT_VERSION`].
    #[error(
        "policy version {found} is not supported (this verifier reads version {FORMAT_VERSION})"
    )]
    Version {
        /// The version written.
        found: u32,
    },
    /// An entry of `releases` is not a release name.
    #[error("releases[{index}]: {name:?} is not a release name (1 to 64 of A-Z a-z 0-9 . _ -, not starting with .)")]
    ReleaseName {
        /// Position in the list.
        index: usize,
        /// The entry.
        name: String,
    },
    /// A digest in a list has the wrong length.
    #[error("{field}[{index}]: {found}-byte digest, expected {expected} bytes")]
    DigestLength {
        /// The key, e.g. `secure_boot.db`.
        field: &'static str,
        /// Position in the list.
        index: usize,
        /// Bytes given.
        found: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// `boot_applications.bank` is not a bank this crate knows the digest size of.
    #[error("boot_applications.bank {bank}: unknown digest size")]
    BootAppBank {
        /// The bank named.
        bank: HashAlg,
    },
    /// Writing the document failed.
    #[error("cannot write the policy as TOML")]
    Encode(#[source] toml::ser::Error),
}

/// A verification policy: the reference values a device's evidence is checked against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Format version; must be [`FORMAT_VERSION`].
    pub version: u32,
    /// Free text for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Approved releases whose components this policy also allows (see
    /// [`crate::release::effective`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<String>,
    /// Whether the fleet revokes a device's certificate when its evidence is untrusted.
    #[serde(default)]
    pub revoke_on_untrusted: bool,
    /// Secure Boot state and key databases (PCR7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_boot: Option<SecureBootPolicy>,
    /// Allowed boot application digests (PCR4 EV_EFI_BOOT_SERVICES_APPLICATION).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_applications: Option<BootAppPolicy>,
    /// Allowed kernel command lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_cmdline: Option<CmdlinePolicy>,
    /// Allowed initrds (measured by the Linux EFI stub).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<InitrdPolicy>,
    /// Allowed digests of the files GRUB reads and measures into PCR 9 (kernel, initrd,
    /// grub.cfg, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grub_files: Option<GrubFilePolicy>,
    /// TPM and platform firmware versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<FirmwarePolicy>,
    /// Expected PCR values per bank.
    #[serde(default, skip_serializing_if = "PcrPolicy::is_empty")]
    pub pcrs: PcrPolicy,
}

/// `[secure_boot]`: digests are SHA-256 over the UEFI_VARIABLE_DATA measured into PCR7 (the
/// event's sha256 digest).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureBootPolicy {
    /// The SecureBoot variable must be measured as enabled (1).
    #[serde(default)]
    pub required: bool,
    /// Allowed PK digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pk: Option<Vec<HexBytes>>,
    /// Allowed KEK digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek: Option<Vec<HexBytes>>,
    /// Allowed db digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<Vec<HexBytes>>,
    /// Allowed dbx digests (the whole forbidden-signature database, exactly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbx: Option<Vec<HexBytes>>,
    /// Entries (EFI_SIGNATURE_DATA.SignatureData, e.g. the SHA-256 of a revoked image) the
    /// measured dbx must contain: a dbx without one of them has a gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbx_contains: Option<Vec<HexBytes>>,
}

/// `[boot_applications]`: every boot application's digest in `bank` must be allowed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootAppPolicy {
    /// The bank whose digests are listed (`sha256`, `sha1`, ...).
    pub bank: HashAlg,
    /// Allowed Authenticode digests.
    pub allowed: Vec<HexBytes>,
}

/// `[kernel_cmdline]`: every measured command line must equal an `exact` entry or start with a
/// `prefix` entry (plain string comparison, no patterns).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmdlinePolicy {
    /// At least one kernel command line must be measured.
    #[serde(default)]
    pub required: bool,
    /// Allowed command lines, compared whole.
    #[serde(default)]
    pub exact: Vec<String>,
    /// Allowed command-line prefixes.
    #[serde(default)]
    pub prefix: Vec<String>,
    /// Allowed SHA-256 digests of the command lines the Linux EFI stub measures into PCR 9
    /// (EV_EVENT_TAG LoadOptions): the log carries no text for these, only the digest of the
    /// UTF-16 command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_options_sha256: Option<Vec<HexBytes>>,
}

/// `[initrd]`: every initrd the Linux EFI stub measured into PCR 9 (EV_EVENT_TAG initrd) must
/// have one of these SHA-256 digests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitrdPolicy {
    /// Allowed SHA-256 digests of the initrd.
    pub sha256: Vec<HexBytes>,
}

/// `[grub_files]`: every file GRUB measured into PCR 9 (EV_IPL, the event data naming the file)
/// must have one of these SHA-256 digests. The file name in the log is not covered by the quote
/// (the digest is of the file's contents), so every such event is checked, whatever it names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrubFilePolicy {
    /// Allowed SHA-256 digests of file contents.
    pub sha256: Vec<HexBytes>,
}

/// `[firmware]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwarePolicy {
    /// Lowest TPMS_ATTEST firmwareVersion accepted; needs a verified quote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tpm_version: Option<FirmwareVersion>,
    /// Allowed EV_S_CRTM_VERSION strings (platform firmware version; compared whole, as version
    /// strings have no common ordering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s_crtm_versions: Option<Vec<String>>,
}

/// True for a policy or release name: 1 to 64 ASCII letters, digits, `.`, `_`, `-`, not
/// starting with `.` (so it is a plain file name).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn check_lengths(
    field: &'static str,
    list: Option<&Vec<HexBytes>>,
    expected: usize,
) -> Result<(), PolicyError> {
    for (index, d) in list.into_iter().flatten().enumerate() {
        if d.0.len() != expected {
            return Err(PolicyError::DigestLength {
                field,
                index,
                found: d.0.len(),
                expected,
            });
        }
    }
    Ok(())
}

impl Policy {
    /// A policy that checks nothing (every section absent).
    pub fn empty() -> Policy {
        Policy {
            version: FORMAT_VERSION,
            description: None,
            releases: Vec::new(),
            revoke_on_untrusted: false,
            secure_boot: None,
            boot_applications: None,
            kernel_cmdline: None,
            initrd: None,
            grub_files: None,
            firmware: None,
            pcrs: PcrPolicy::default(),
        }
    }

    /// Loads and validates a policy document.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge {
                len: text.len(),
                max: MAX_POLICY_BYTES,
            });
        }
        let p: Policy = toml::from_str(text).map_err(PolicyError::Toml)?;
        p.validate()?;
        Ok(p)
    }

    /// Checks what the TOML types alone do not: the version and digest lengths.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.version != FORMAT_VERSION {
            return Err(PolicyError::Version {
                found: self.version,
            });
        }
        for (index, name) in self.releases.iter().enumerate() {
            if !valid_name(name) {
                return Err(PolicyError::ReleaseName {
                    index,
                    name: name.clone(),
                });
            }
        }
        if let Some(g) = &self.grub_files {
            check_lengths("grub_files.sha256", Some(&g.sha256), 32)?;
        }
        if let Some(sb) = &self.secure_boot {
            check_lengths("secure_boot.pk", sb.pk.as_ref(), 32)?;
            check_lengths("secure_boot.kek", sb.kek.as_ref(), 32)?;
            check_lengths("secure_boot.db", sb.db.as_ref(), 32)?;
            check_lengths("secure_boot.dbx", sb.dbx.as_ref(), 32)?;
        }
        if let Some(c) = &self.kernel_cmdline {
            check_lengths(
                "kernel_cmdline.load_options_sha256",
                c.load_options_sha256.as_ref(),
                32,
            )?;
        }
        if let Some(i) = &self.initrd {
            check_lengths("initrd.sha256", Some(&i.sha256), 32)?;
        }
        if let Some(apps) = &self.boot_applications {
            let len = apps
                .bank
                .digest_len()
                .ok_or(PolicyError::BootAppBank { bank: apps.bank })?;
            check_lengths("boot_applications.allowed", Some(&apps.allowed), len)?;
        }
        Ok(())
    }

    /// Writes the policy as TOML (loads back to an equal policy).
    pub fn to_toml(&self) -> Result<String, PolicyError> {
        toml::to_string_pretty(self).map_err(PolicyError::Encode)
    }
}
