//! Library side of `vouch-fleet`: the pieces the fleet binary and its tests share.
//!
//! - [`pki`]: the fleet's certificate authority, device certificate issuance, revocation (CRL) and
//!   the generated mosquitto broker set-up (`vouch-fleet init`).
//! - [`backup`]: encrypted backups of a fleet directory and its registry, and restores.
//! - [`config`]: the fleet's typed configuration file (`fleet.toml`).
//! - [`initramfs`]: the files of an initramfs image (cpio, compressed or not) with their
//!   digests, for runtime policies.
//! - [`registry`]: the SQLite registry (devices, verdicts, nonces, audit log).
//! - [`http`]: the HTTP API, metrics, health, EAR results, webhooks and page of `serve`.
//! - [`serve`]: `vouch-fleet serve` (enrollment, challenges, verdicts, revocation over MQTT).
#![forbid(unsafe_code)]

pub mod backup;
pub mod config;
pub mod deb;
pub mod http;
pub mod initramfs;
pub mod pki;
pub mod registry;
pub mod serve;
