//! Benchmarks and load generation against the whole system.
//!
//! - [`stats`]: percentiles of latency samples.
//! - [`components`]: in-process timings of the steps of one attestation round.
//! - [`rawquote`]: TPM2_Quote and TPM2_PCR_Read straight through tss-esapi, for comparison.
//! - [`provision`]: simulated devices on software TPMs (`MemoryTpm`) booted from a real event
//!   log, with device certificates issued by the fleet CA and rows in the fleet registry.
//! - [`device`]: one simulated device's MQTT session (mutual TLS with its own certificate,
//!   answering challenges with `MemoryTpm` quotes).
//! - [`observer`]: a passive MQTT subscriber timestamping challenges and reports by nonce.
//! - [`report`]: the verdicts read back from the registry.

pub mod components;
pub mod device;
pub mod observer;
pub mod provision;
pub mod rawquote;
pub mod report;
pub mod stats;
