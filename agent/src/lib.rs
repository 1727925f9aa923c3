//! `vouch-agent` as a library: the TPM layer, sealed volumes and the commands, so tests and
//! fuzzers can use them.
// Unsafe code is denied everywhere except `volume::dm` (the device-mapper ioctls) and
// `volume::xts::x86` (the AES-XTS SIMD passes, behind run-time CPU feature checks).
#![deny(unsafe_code)]

pub mod boot;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod exit;
pub mod identity;
pub mod ima;
pub mod seal;
pub mod tpm;
pub mod volume;
