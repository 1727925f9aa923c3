//! `vouch-fleet init`: creates a fleet directory (CA, broker/fleet/claim certificates, CRL,
//! mosquitto configuration and ACL, fleet.toml). The work is done by
//! [`vouch_fleet::pki::setup`]; this module parses arguments and reports.

use super::common::SetupError;
use super::{CliError, Outcome};
use clap::Args;
use std::path::PathBuf;
use vouch_fleet::config::{ConfigFile, PostgresUrl, StorageBackend};
use vouch_fleet::pki::files::{self, FileError};
use vouch_fleet::pki::setup::{init_fleet, InitError, InitOptions, FLEET_TOML_HEADER};
use vouch_fleet::registry::Registry;

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
    /// Keep the registry in this PostgreSQL database (`postgresql://user@host/db`) instead of
    /// the SQLite file in `state/`: writes `[storage] backend = "postgres"` and `url`, and
    /// creates the schema now. Prefer the environment variable when the URL holds a password.
    #[arg(
        long,
        value_name = "URL",
        env = "VOUCH_FLEET_POSTGRES_URL",
        hide_env_values = true,
        value_parser = parse_postgres_url
    )]
    pub postgres_url: Option<PostgresUrl>,
}

fn parse_postgres_url(s: &str) -> Result<PostgresUrl, &'static str> {
    PostgresUrl::parse(s)
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
    // The database is reached and its schema made before anything is written: a wrong URL
    // fails init, not the first `serve`, and leaves no directory behind.
    let registry = match &args.postgres_url {
        Some(url) => Some(Registry::open_postgres(url, 1).map_err(SetupError::Registry)?),
        None => None,
    };
    let out = init_fleet(&opts)?;
    if let Some(url) = &args.postgres_url {
        use_postgres(&out.paths.fleet_toml(), url)?;
    }
    if let Some(port) = args.http_port {
        enable_http(&out.paths.fleet_toml(), port)?;
    }
    let dir = out.paths.dir().display();
    println!("fleet directory: {dir}");
    println!("broker certificate serial: {}", out.server.serial);
    println!("fleet certificate serial: {}", out.fleet.serial);
    println!("claim certificate serial: {}", out.claim.serial);
    println!("CRL valid until: {}", out.crl.next_update);
    if let Some(reg) = &registry {
        println!("registry: PostgreSQL at {}", reg.location());
    }
    if let Some(port) = args.http_port {
        println!("HTTP API (with `vouch-fleet serve`): http://127.0.0.1:{port}/");
    }
    println!("start the broker: mosquitto -c {dir}/mosquitto.conf");
    Ok(Outcome::Done)
}

/// Rewrites the new fleet.toml with `[storage] backend = "postgres"` and `url`.
fn use_postgres(path: &std::path::Path, url: &PostgresUrl) -> Result<(), InitError> {
    let file_err = |source| {
        InitError::File(FileError::Write {
            path: path.to_path_buf(),
            source,
        })
    };
    let text = std::fs::read_to_string(path).map_err(file_err)?;
    let mut file: ConfigFile = toml::from_str(&text)
        .map_err(|e| file_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    file.storage.backend = StorageBackend::Postgres;
    file.storage.url = Some(url.clone());
    let toml = file.to_toml().map_err(InitError::Config)?;
    let text = zeroize::Zeroizing::new(format!("{FLEET_TOML_HEADER}{toml}"));
    files::write_atomic(path, text.as_bytes(), files::MODE_PRIVATE).map_err(InitError::File)
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
