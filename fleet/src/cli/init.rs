//! `vouch-fleet init`: creates a fleet directory (CA, broker/fleet/claim certificates, CRL,
//! mosquitto configuration and ACL, fleet.toml). The work is done by
//! [`vouch_fleet::pki::setup`]; this module parses arguments and reports.

use super::{CliError, Outcome};
use clap::Args;
use std::path::PathBuf;
use vouch_fleet::pki::files::{self, FileError};
use vouch_fleet::pki::setup::{init_fleet, InitError, InitOptions};

/// Arguments of `vouch-fleet init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Fleet directory to create (mode 0700).
    #[arg(long)]
    pub dir: PathBuf,
    /// TLS port of the broker's device listener on 127.0.0.1 (devices and the fleet).
    #[arg(long, default_value_t = 8883)]
    pub broker_port: u16,
    /// TLS port of the broker's enrollment listener on 127.0.0.1 (the claim certificate).
    #[arg(long, default_value_t = 8884)]
    pub enroll_port: u16,
    /// mosquitto's dynamic-security plugin (default: found in the usual library directories).
    #[arg(long)]
    pub dynsec_plugin: Option<PathBuf>,
    /// Extra DNS name or IP address for the broker certificate (repeatable); `localhost` and
    /// `127.0.0.1` are always included.
    #[arg(long = "server-name")]
    pub server_names: Vec<String>,
    /// Overwrite an existing, non-empty fleet directory (creates a new CA).
    #[arg(long)]
    pub force: bool,
    /// Serve the HTTP API, metrics and page on 127.0.0.1:PORT (writes `[http] listen`).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub http_port: Option<u16>,
}

/// Runs `init` and reports what it created.
pub fn run(args: InitArgs) -> Result<Outcome, CliError> {
    let opts = InitOptions {
        dir: args.dir,
        broker_port: args.broker_port,
        enroll_port: args.enroll_port,
        dynsec_plugin: args.dynsec_plugin,
        server_names: args.server_names,
        force: args.force,
    };
    let out = init_fleet(&opts)?;
    if let Some(port) = args.http_port {
        enable_http(&out.paths.fleet_toml(), port)?;
    }
    let dir = out.paths.dir().display();
    println!("fleet directory: {dir}");
    println!("broker certificate serial: {}", out.server.serial);
    println!("fleet certificate serial: {}", out.fleet.serial);
    println!("claim certificate serial: {}", out.claim.serial);
    println!("CRL valid until: {}", out.crl.next_update);
    if let Some(port) = args.http_port {
        println!("HTTP API (with `vouch-fleet serve`): http://127.0.0.1:{port}/");
    }
    println!("start the broker: mosquitto -c {dir}/mosquitto.conf");
    Ok(Outcome::Done)
}

/// Appends `[http] listen = "127.0.0.1:PORT"` to the new fleet.toml.
fn enable_http(path: &std::path::Path, port: u16) -> Result<(), InitError> {
    let write_err = |source| {
        InitError::File(FileError::Write {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut text = std::fs::read_to_string(path).map_err(write_err)?;
    text.push_str(&format!(
        "\n# The HTTP API, metrics and page of `vouch-fleet serve` (fleet.example.toml).\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    files::write_atomic(path, text.as_bytes(), files::MODE_PRIVATE).map_err(InitError::File)
}
