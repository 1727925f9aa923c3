//! Approved releases: named sets of allowed boot components (boot applications by Authenticode
//! digest, kernel command lines, initrds, files GRUB reads), and the policy they make together
//! with the policies that reference them.
//!
//! ```text
//! let release = Release::from_toml(&text)?;               // validated, deny_unknown_fields
//! let policy = effective(&policy, |name| store.lookup(name))?;  // policy ∪ its releases
//! let digest = authenticode_sha256(&efi_image_bytes)?;    // what firmware/shim put in PCR 4
//! ```
//!
//! The format is documented for operators in `tpm-policies/README.md`.

mod artifact;
mod effective;
mod format;

pub use artifact::{
    authenticode_sha256, grub_cmdline_text, load_options_sha256, AuthenticodeError, LoadOptionsForm,
};
pub use effective::{effective, EffectiveError, Lookup};
pub use format::{
    CmdlineComponent, Component, Release, ReleaseError, MAX_RELEASE_BYTES, RELEASE_FORMAT_VERSION,
};
