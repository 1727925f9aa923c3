//! What the subcommands share: the `--config` argument, loading it and opening the registry,
//! the root check, and times for people.

use clap::Args;
use std::path::PathBuf;
use vouch_fleet::config::{ConfigError, FleetConfig};
use vouch_fleet::registry::{Registry, RegistryError};

/// The `--config` every registry command takes.
#[derive(Args, Debug, Clone)]
pub struct ConfigArg {
    /// The fleet configuration (fleet.toml written by `vouch-fleet init`).
    #[arg(long, value_name = "FILE", env = "VOUCH_FLEET_CONFIG")]
    pub config: PathBuf,
}

pub use vouch_host::running_as_root;

/// Loading the configuration or the registry failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The configuration is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The registry could not be opened.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Loads the configuration and opens its registry.
pub fn open(arg: &ConfigArg) -> Result<(FleetConfig, Registry), SetupError> {
    let cfg = FleetConfig::load(&arg.config)?;
    let reg = Registry::for_config(&cfg)?;
    Ok((cfg, reg))
}

pub use vouch_fleet::registry::rfc3339_ms;

#[cfg(test)]
mod tests {
    use vouch_fleet::registry::rfc3339_ms;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        // `date -u -d @1700000000 +%FT%TZ` prints 2023-11-14T22:13:20Z.
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(i64::MAX), format!("{} ms", i64::MAX));
    }
}
