//! Names of the files in a fleet directory (the `--dir` of `vouch-fleet init`).
//!
//! | file | what | mode |
//! |---|---|---|
//! | `ca.crt`, `ca.key` | fleet CA certificate and key | 0644, 0600 |
//! | `server.crt`, `server.key` | the broker's TLS server certificate and key | 0644, 0600 |
//! | `fleet.crt`, `fleet.key` | the fleet's own MQTT client certificate (CN `vouch-fleet`) | 0644, 0600 |
//! | `claim.crt`, `claim.key` | the enrollment-only client certificate (CN `vouch-claim`) | 0644, 0600 |
//! | `crl.pem` | the CA's current certificate revocation list | 0644 |
//! | `issued` | one line per issued certificate: serial, CN, notAfter (unix seconds) | 0600 |
//! | `revoked` | one line per revoked serial: serial, revocation time (unix seconds) | 0600 |
//! | `crlnumber` | the last CRL number used | 0600 |
//! | `acl`, `mosquitto.conf` | the broker's ACL and configuration | 0644 |
//! | `dynamic-security.json` | the broker's dynamic-security plugin state (empty; used to disconnect revoked devices) | 0600 |
//! | `mosquitto.pid`, `broker/` | the broker's pid file and persistence directory | |
//! | `fleet.toml` | the fleet's configuration | 0600 |
//! | `state/`, `trust-roots/`, `policies/` | registry, EK vendor CA certificates, policies | 0700 |

use std::path::{Path, PathBuf};

/// The paths of one fleet directory.
#[derive(Debug, Clone)]
pub struct FleetPaths {
    dir: PathBuf,
}

macro_rules! file_paths {
    ($($(#[$doc:meta])* $fn:ident => $name:literal;)*) => {
        impl FleetPaths {
            $($(#[$doc])* pub fn $fn(&self) -> PathBuf { self.dir.join($name) })*
        }
        /// Every file name `vouch-fleet init` writes or owns, relative to the directory.
        pub const ALL_NAMES: &[&str] = &[$($name),*];
    };
}

impl FleetPaths {
    /// The paths inside `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FleetPaths { dir: dir.into() }
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

file_paths! {
    /// CA certificate (PEM).
    ca_cert => "ca.crt";
    /// CA private key (PKCS#8 PEM).
    ca_key => "ca.key";
    /// Broker server certificate.
    server_cert => "server.crt";
    /// Broker server key.
    server_key => "server.key";
    /// Fleet client certificate.
    fleet_cert => "fleet.crt";
    /// Fleet client key.
    fleet_key => "fleet.key";
    /// Claim (enrollment) client certificate.
    claim_cert => "claim.crt";
    /// Claim client key.
    claim_key => "claim.key";
    /// Current CRL (PEM).
    crl => "crl.pem";
    /// Issued-certificate index.
    issued => "issued";
    /// Revocation list the CRL is built from.
    revoked => "revoked";
    /// Last CRL number.
    crl_number => "crlnumber";
    /// Broker ACL file.
    acl => "acl";
    /// Broker configuration.
    mosquitto_conf => "mosquitto.conf";
    /// Broker pid file.
    pid_file => "mosquitto.pid";
    /// The broker's dynamic-security plugin configuration (empty; written by the broker).
    dynsec_config => "dynamic-security.json";
    /// Broker persistence directory.
    broker_dir => "broker";
    /// Fleet configuration.
    fleet_toml => "fleet.toml";
    /// Registry state directory.
    state_dir => "state";
    /// EK vendor CA certificates.
    trust_roots_dir => "trust-roots";
    /// Policies.
    policies_dir => "policies";
    /// Approved releases.
    releases_dir => "releases";
}
