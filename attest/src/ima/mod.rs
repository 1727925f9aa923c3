//! Linux IMA (Integrity Measurement Architecture) runtime measurements: what ran on a device
//! since it booted, and whether a Keylime runtime policy allows it.
//!
//! - [`entry`]: one measurement (template, file digest, path, signature, buffer) and its
//!   template data as the kernel hashed it.
//! - [`binary`]: the kernel's `binary_runtime_measurements` (SHA-1 template hashes) and the
//!   per-bank `binary_runtime_measurements_sha256` lists, parsed one entry at a time from a
//!   buffer that may end mid-entry (a reader keeps memory bounded by one entry).
//! - [`ascii`]: the `ascii_runtime_measurements` text form.
//! - [`replay`]: PCR 10 recomputed entry by entry from a saved state, so a verifier can continue
//!   where the last accepted report ended.
//! - [`runtime_policy`]: Keylime's runtime policy JSON read as it is, and built from a file
//!   tree's digests or a known-good log.
//! - [`signature`]: `ima-sig` signatures (format v2) checked against the policy's keys.
//! - [`increment`]: one report's entries appraised from the stored state against the quoted
//!   PCR 10 (what the fleet decides per report).
//! - [`appraise`]: every entry evaluated against a runtime policy; every failing entry recorded
//!   with its path, digest and rule (never stopping at the first).
//!
//! Templates: `ima`, `ima-ng`, `ima-sig`, `ima-buf`, `ima-modsig`; other templates are replayed
//! (their template data is hashed as logged) but cannot be appraised.

pub mod appraise;
pub mod ascii;
pub mod binary;
pub mod entry;
pub mod increment;
pub mod replay;
pub mod runtime_policy;
pub mod signature;

pub use appraise::{Appraiser, EntryFailure, ImaRule, ImaVerdict};
pub use entry::{Entry, FileDigest, Template};
pub use replay::{ReplayError, ReplayState};
pub use runtime_policy::{PolicyError, RuntimePolicy};

/// The PCR IMA extends unless its policy says otherwise.
pub const IMA_PCR: u32 = 10;
