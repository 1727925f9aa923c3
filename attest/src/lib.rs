//! `vouch-attest`: the pure evidence core shared by the Vouch agent and fleet.
//!
//! Everything here takes bytes and returns typed results: no files, no network, no TPM library,
//! no async runtime. The agent and the fleet do the I/O at their edges and call into this crate
//! for every decision about evidence (event logs, quotes, PCR values, policies): the appraisal
//! of a device's evidence ([`appraisal`]), the release of an escrowed recovery passphrase
//! ([`escrow_release`]) and the device id ([`identity`]).
#![forbid(unsafe_code)]

pub mod alg;
pub mod appraisal;
pub mod backup;
pub mod boot;
pub mod credential;
pub mod ecies;
pub mod errors;
pub mod escrow;
pub mod escrow_delivery;
pub mod escrow_release;
pub mod eventlog;
mod hex_serde;
pub mod identity;
pub mod ima;
pub mod pcrfile;
pub mod pcrs;
pub mod policy;
pub mod policy_digest;
pub mod protocol;
pub mod quote;
pub mod release;
pub mod tpm;

pub use alg::HashAlg;
pub use pcrs::PcrBanks;
