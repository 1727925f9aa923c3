//! Policies: reference values a device's evidence must meet, written as TOML, and their
//! evaluation into a [`Verdict`] that names every failed rule with the event and PCR that broke
//! it.
//!
//! ```text
//! let policy = Policy::from_toml(&text)?;                  // validated, deny_unknown_fields
//! let verdict = evaluate(&policy, &Evidence { log: &log, bank: quoted_bank,
//!                                             pcrs: &quoted_or_replayed, firmware_version });
//! let recorded = Policy::record(&log, &log.replay());   // from a known-good device
//! ```
//!
//! The format is documented for operators in `tpm-policies/README.md`.

mod evaluate;
mod facts;
mod format;
mod grub;
mod merge;
mod pcrs;
mod record;
mod siglist;
mod stub;
mod values;
mod verdict;

pub use evaluate::evaluate;
pub use facts::preferred_bank;
pub use format::{
    valid_name, BootAppPolicy, CmdlinePolicy, FirmwarePolicy, GrubFilePolicy, InitrdPolicy, Policy,
    PolicyError, SecureBootPolicy, FORMAT_VERSION, MAX_POLICY_BYTES,
};
pub use merge::{union, MergeError};
pub use pcrs::{PcrPolicy, PcrPolicyError, MAX_PCR};
pub use siglist::{entries as signature_entries, SigListError};
pub use values::{FirmwareVersion, HexBytes};
pub use verdict::{Evidence, Rule, RuleFailure, Verdict};
