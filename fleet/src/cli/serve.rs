//! `vouch-fleet serve`, and what the registry commands share: the `--config` argument, loading
//! it, opening the registry, printing errors with their causes.

use crate::exit;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use vouch_fleet::config::{ConfigError, FleetConfig};
use vouch_fleet::registry::{Registry, RegistryError};
use vouch_fleet::serve::{self, ServeError};

/// The `--config` every registry command takes.
#[derive(Args, Debug, Clone)]
pub struct ConfigArg {
    /// The fleet configuration (fleet.toml written by `vouch-fleet init`).
    #[arg(long, value_name = "FILE", env = "VOUCH_FLEET_CONFIG")]
    pub config: PathBuf,
}

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
    log_format: vouch_fleet::logging::LogFormat,
}

/// True when the effective user is root (from /proc, no libc call needed).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Loading the configuration or the registry failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The configuration is unreadable or invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The registry could not be opened.
    #[error("{0}")]
    Registry(#[from] RegistryError),
}

impl SetupError {
    /// Exit code: configuration problems are input errors.
    pub fn code(&self) -> u8 {
        match self {
            SetupError::Config(_) => exit::INPUT,
            SetupError::Registry(_) => exit::INTERNAL,
        }
    }
}

/// Loads the configuration and opens its registry.
pub fn open(arg: &ConfigArg) -> Result<(FleetConfig, Registry), SetupError> {
    let cfg = FleetConfig::load(&arg.config)?;
    let reg = Registry::open(&cfg.state_dir)?;
    Ok((cfg, reg))
}

/// The error and its sources, joined with ": ".
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = inner.source();
    }
    s
}

/// Prints `vouch-fleet <cmd>: <error chain>` and returns `code`.
pub fn fail(cmd: &str, e: &dyn std::error::Error, code: u8) -> ExitCode {
    eprintln!("vouch-fleet {cmd}: {}", chain(e));
    ExitCode::from(code)
}

/// Runs the server until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> ExitCode {
    vouch_fleet::logging::init(args.log_format);
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
