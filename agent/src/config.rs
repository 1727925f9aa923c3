//! The agent's configuration file (`/etc/vouch/agent.toml`): typed and strict.
//!
//! Unknown keys are refused (a typo must not silently fall back to a default). Relative paths are
//! resolved against the directory of the configuration file. `agent/agent.example.toml` documents
//! every key. Environment variables `VOUCH_TCTI` and `VOUCH_STATE_DIR` override the file.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config {path} failed")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (names the key and line).
    #[error("config {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// A value is out of range or inconsistent.
    #[error("config {path}: {key}: {problem}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        problem: &'static str,
    },
}

/// The whole agent configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// TPM TCTI (`device:/dev/tpmrm0`, `swtpm:host=..,port=..`, ...).
    #[serde(default = "default_tcti")]
    pub tcti: String,
    /// State directory (AK and TLS key blobs, device certificate, outbox).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Where the firmware event log is read from.
    #[serde(default = "default_eventlog")]
    pub eventlog: PathBuf,
    /// Where the IMA measurement list is read from (binary form), when the fleet asks for it.
    #[serde(default = "default_ima_log")]
    pub ima_log: PathBuf,
    /// Broker connection.
    pub broker: BrokerConfig,
}

/// How to reach the fleet's MQTT broker.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Host name; also the TLS server name (must match the broker certificate).
    pub host: String,
    /// TLS port of the device listener (enrolled devices).
    #[serde(default = "default_port")]
    pub port: u16,
    /// TLS port of the enrollment listener (the claim certificate connects only here).
    #[serde(default = "default_enroll_port")]
    pub enroll_port: u16,
    /// CA certificate (PEM) that issued the broker's and the devices' certificates.
    pub ca_file: PathBuf,
    /// Claim certificate used only to enroll (PEM).
    pub claim_cert: PathBuf,
    /// Claim private key (PEM, PKCS#8). Prefer a systemd credential: `${CREDENTIALS_DIRECTORY}/claim.key`.
    pub claim_key: PathBuf,
    /// Keep-alive in seconds.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    /// Longest wait between reconnect attempts, in seconds (backoff doubles up to this).
    #[serde(default = "default_backoff")]
    pub max_backoff_secs: u64,
}

fn default_tcti() -> String {
    crate::tpm::tcti::DEFAULT_TCTI.into()
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/vouch")
}
fn default_eventlog() -> PathBuf {
    PathBuf::from("/sys/kernel/security/tpm0/binary_bios_measurements")
}
fn default_ima_log() -> PathBuf {
    PathBuf::from(crate::ima::DEFAULT_PATH)
}
fn default_port() -> u16 {
    8883
}
fn default_enroll_port() -> u16 {
    8884
}
fn default_keep_alive() -> u64 {
    30
}
fn default_backoff() -> u64 {
    60
}

impl AgentConfig {
    /// Loads and validates a config file; relative paths resolve against its directory.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg: AgentConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut cfg.state_dir);
        abs(&mut cfg.eventlog);
        abs(&mut cfg.ima_log);
        abs(&mut cfg.broker.ca_file);
        abs(&mut cfg.broker.claim_cert);
        abs(&mut cfg.broker.claim_key);
        if let Ok(t) = std::env::var("VOUCH_TCTI") {
            cfg.tcti = t;
        }
        if let Ok(s) = std::env::var("VOUCH_STATE_DIR") {
            cfg.state_dir = PathBuf::from(s);
        }
        let invalid = |key, problem| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            problem,
        };
        if cfg.broker.keep_alive_secs < 5 {
            return Err(invalid("broker.keep_alive_secs", "must be at least 5"));
        }
        if cfg.broker.max_backoff_secs == 0 {
            return Err(invalid("broker.max_backoff_secs", "must be at least 1"));
        }
        if cfg.tcti.parse::<crate::tpm::Tcti>().is_err() {
            return Err(invalid("tcti", "not a valid TCTI"));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
        let cfg = AgentConfig::load(&p).unwrap();
        assert_eq!(cfg.broker.port, 8883);
        assert!(cfg.broker.ca_file.is_absolute());
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(
            &p,
            "tcti = \"device\"\n[broker]\nhost = \"h\"\nca_file = \"c\"\nclaim_cert = \"c\"\n\
             claim_key = \"k\"\nkeepalive = 3\n",
        )
        .unwrap();
        let e = crate::exit::chain(&AgentConfig::load(&p).unwrap_err());
        assert!(e.contains("keepalive"), "{e}");
    }
}
