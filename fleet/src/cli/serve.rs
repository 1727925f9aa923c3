//! `vouch-fleet serve`: runs the fleet server until SIGINT/SIGTERM.

use super::common::{fail, running_as_root, ConfigArg};
use crate::exit;
use clap::Args;
use std::process::ExitCode;
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

/// Runs the server until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> ExitCode {
    vouch_host::init_logging(args.log_format, "info", "vouch-fleet");
    if running_as_root() && !args.allow_root {
        eprintln!(
            "vouch-fleet serve: refusing to run as root (the unit runs as user vouch-fleet); \
             pass --allow-root to override"
        );
        return ExitCode::from(exit::INPUT);
    }
    let cfg = match FleetConfig::load(&args.config.config) {
        Ok(c) => c,
        Err(e) => return fail("serve", &e, exit::INPUT),
    };
    match serve::run(cfg) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            let code = match e {
                ServeError::Tls(_) | ServeError::Ca(_) | ServeError::CaDir(_) => exit::INPUT,
                _ => exit::INTERNAL,
            };
            fail("serve", &e, code)
        }
    }
}
