//! The fleet's PKI and broker set-up.
//!
//! The fleet runs its own certificate authority ([`ca`]). It certifies the MQTT broker, itself
//! (`vouch-fleet`), a shared enrollment identity (`vouch-claim`) and every enrolled device, whose
//! key lives in its TPM ([`device`]). Revocation goes through a CRL the broker enforces ([`crl`]).
//! [`broker`] writes the mosquitto configuration and ACL and documents the topic scheme;
//! [`setup`] is `vouch-fleet init`. [`layout`] names the files of a fleet directory.

pub mod broker;
pub mod ca;
pub mod crl;
pub mod device;
pub mod files;
pub mod layout;
pub mod serial;
pub mod setup;

pub use ca::{load_ca, FleetCa, IssuedCertificate, Validity};
pub use crl::{reissue_crl, revoke, Crl};
pub use device::{issue_device_certificate, DevicePublicKey};
pub use serial::Serial;
pub use setup::{init_fleet, InitOptions};

/// CN (and MQTT username) of the fleet's own client certificate.
pub const FLEET_NAME: &str = "vouch-fleet";
/// CN (and MQTT username) of the enrollment-only claim certificate.
pub const CLAIM_NAME: &str = "vouch-claim";
/// CN of the broker's server certificate.
pub const BROKER_NAME: &str = "vouch-broker";
