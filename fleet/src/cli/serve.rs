//! `vouch-fleet serve`: runs the fleet server until SIGINT/SIGTERM.

use super::common::{running_as_root, ConfigArg, SetupError};
use super::{CliError, Outcome};
use clap::Args;
use vouch_fleet::config::FleetConfig;
use vouch_fleet::serve::{self, ServeError};

/// Arguments of `vouch-fleet serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Allow running as root (the packaged unit runs as user vouch-fleet).
    #[arg(long)]
    allow_root: bool,
    /// Log output: auto (journald under systemd, else text), text, json or journald.
    #[arg(long, env = "VOUCH_LOG_FORMAT", value_enum, default_value = "auto")]
    log_format: vouch_host::LogFormat,
}

/// Why `serve` failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeCmdError {
    /// Run as root without `--allow-root`.
    #[error(
        "refusing to run as root (the unit runs as user vouch-fleet); pass --allow-root to \
         override"
    )]
    Root,
    /// The server failed to start or stopped with an error.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Runs the server until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> Result<Outcome, CliError> {
    vouch_host::init_logging(args.log_format, "info", "vouch-fleet");
    if running_as_root() && !args.allow_root {
        return Err(ServeCmdError::Root.into());
    }
    let cfg = FleetConfig::load(&args.config.config).map_err(SetupError::from)?;
    serve::run(cfg).map_err(ServeCmdError::from)?;
    Ok(Outcome::Done)
}
