//! `vouch-fleet init`: creates a fleet directory with the CA, the broker, fleet and claim
//! certificates, an empty CRL, the mosquitto configuration and ACL, and `fleet.toml`.
//!
//! An existing non-empty directory is refused unless `force` is set; with `force` every file
//! `init` owns is replaced and the old CA's `issued`, `revoked`, `crlnumber` and broker
//! persistence are removed (they belong to the old CA). Other files are left alone.

use super::broker::{
    find_dynsec_plugin, render_acl, render_mosquitto_conf, BrokerSettings, DYNSEC_EMPTY_CONFIG,
    DYNSEC_PLUGIN_CANDIDATES,
};
use super::ca::{self, CaError, IssuedCertificate, LeafUsage, Validity};
use super::crl::{self, Crl, CrlError};
use super::files::{self, FileError, MODE_PRIVATE, MODE_PUBLIC};
use super::layout::FleetPaths;
use super::{BROKER_NAME, CLAIM_NAME, FLEET_NAME};
use crate::config::ConfigFile;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Validity of the fleet CA, in days (20 years).
pub const CA_VALIDITY_DAYS: u16 = 7305;
/// Validity of the broker, fleet and claim certificates, in days (5 years).
pub const INFRA_VALIDITY_DAYS: u16 = 1826;

/// What `init` should create.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The fleet directory.
    pub dir: PathBuf,
    /// TCP port of the broker's device listener on 127.0.0.1.
    pub broker_port: u16,
    /// TCP port of the broker's enrollment listener on 127.0.0.1.
    pub enroll_port: u16,
    /// mosquitto's dynamic-security plugin; `None` looks in the usual places.
    pub dynsec_plugin: Option<PathBuf>,
    /// Extra DNS names or IP addresses for the broker certificate (beyond `localhost` and
    /// `127.0.0.1`).
    pub server_names: Vec<String>,
    /// Overwrite an existing non-empty directory.
    pub force: bool,
}

/// What `init` created.
#[derive(Debug)]
pub struct InitOutcome {
    /// The (absolute) fleet directory.
    pub paths: FleetPaths,
    /// The broker certificate.
    pub server: IssuedCertificate,
    /// The fleet's client certificate.
    pub fleet: IssuedCertificate,
    /// The claim certificate.
    pub claim: IssuedCertificate,
    /// The initial (empty) CRL.
    pub crl: Crl,
}

/// `init` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The directory exists and holds files, and `force` was not given.
    #[error("{dir} already exists and is not empty; pass --force to overwrite the fleet there")]
    NotEmpty { dir: PathBuf },
    /// The path exists and is not a directory.
    #[error("{dir} exists and is not a directory")]
    NotADirectory { dir: PathBuf },
    /// The directory could not be inspected.
    #[error("cannot inspect {dir}")]
    Inspect {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Removing a stale file of the old fleet failed.
    #[error("cannot remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A broker port is 0.
    #[error("broker port 0 is not a usable listening port")]
    ZeroPort,
    /// The device and enrollment listeners were given one port.
    #[error("the broker port and the enrollment port must differ (both {0})")]
    SamePort(u16),
    /// mosquitto's dynamic-security plugin (used to disconnect revoked devices) is missing.
    #[error(
        "mosquitto's dynamic-security plugin is not installed (looked for {}); install \
         mosquitto or pass --dynsec-plugin PATH",
        DYNSEC_PLUGIN_CANDIDATES.join(", ")
    )]
    NoDynsecPlugin,
    /// The given dynamic-security plugin is not a file.
    #[error("--dynsec-plugin {0} is not a file")]
    DynsecPlugin(PathBuf),
    /// A `--server-name` is not a DNS name or IP address.
    #[error("bad --server-name")]
    ServerName(#[source] CaError),
    /// Writing a file failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// Creating the CA or a certificate failed.
    #[error(transparent)]
    Ca(CaError),
    /// Signing the initial CRL failed.
    #[error(transparent)]
    Crl(#[from] CrlError),
    /// Rendering `fleet.toml` failed.
    #[error("cannot render fleet.toml")]
    Config(#[source] toml::ser::Error),
}

/// Creates the fleet directory described by `opts`.
pub fn init_fleet(opts: &InitOptions) -> Result<InitOutcome, InitError> {
    if opts.broker_port == 0 || opts.enroll_port == 0 {
        return Err(InitError::ZeroPort);
    }
    if opts.broker_port == opts.enroll_port {
        return Err(InitError::SamePort(opts.broker_port));
    }
    let dynsec_plugin = match &opts.dynsec_plugin {
        Some(p) if p.is_file() => p.clone(),
        Some(p) => return Err(InitError::DynsecPlugin(p.clone())),
        None => find_dynsec_plugin().ok_or(InitError::NoDynsecPlugin)?,
    };
    let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for name in &opts.server_names {
        ca::check_server_name(name).map_err(InitError::ServerName)?;
        if !sans.contains(name) {
            sans.push(name.clone());
        }
    }
    prepare_dir(&opts.dir, opts.force)?;
    files::create_private_dir(&opts.dir)?;
    let dir = opts
        .dir
        .canonicalize()
        .map_err(|source| InitError::Inspect {
            dir: opts.dir.clone(),
            source,
        })?;
    let paths = FleetPaths::new(&dir);
    for sub in [
        paths.broker_dir(),
        paths.state_dir(),
        paths.trust_roots_dir(),
        paths.policies_dir(),
        paths.releases_dir(),
    ] {
        files::create_private_dir(&sub)?;
    }
    let run_as_root = std::fs::metadata(&dir)
        .map_err(|source| InitError::Inspect {
            dir: dir.clone(),
            source,
        })?
        .uid()
        == 0;

    let ca =
        ca::create_ca(&dir, Validity::days_from_now(CA_VALIDITY_DAYS)).map_err(InitError::Ca)?;
    let infra = Validity::days_from_now(INFRA_VALIDITY_DAYS);
    let server = ca
        .issue_with_new_key(
            BROKER_NAME,
            &sans,
            LeafUsage::Server,
            infra,
            &paths.server_cert(),
            &paths.server_key(),
        )
        .map_err(InitError::Ca)?;
    let fleet = ca
        .issue_with_new_key(
            FLEET_NAME,
            &[],
            LeafUsage::Client,
            infra,
            &paths.fleet_cert(),
            &paths.fleet_key(),
        )
        .map_err(InitError::Ca)?;
    let claim = ca
        .issue_with_new_key(
            CLAIM_NAME,
            &[],
            LeafUsage::Client,
            infra,
            &paths.claim_cert(),
            &paths.claim_key(),
        )
        .map_err(InitError::Ca)?;
    let crl = crl::reissue_crl(&ca)?;

    files::write_atomic(&paths.acl(), render_acl().as_bytes(), MODE_PUBLIC)?;
    files::write_atomic(
        &paths.dynsec_config(),
        DYNSEC_EMPTY_CONFIG.as_bytes(),
        MODE_PRIVATE,
    )?;
    let conf = render_mosquitto_conf(
        &paths,
        &BrokerSettings {
            port: opts.broker_port,
            enroll_port: opts.enroll_port,
            dynsec_plugin,
            run_as_root,
        },
    );
    files::write_atomic(&paths.mosquitto_conf(), conf.as_bytes(), MODE_PUBLIC)?;
    let toml = ConfigFile::for_new_fleet(opts.broker_port)
        .to_toml()
        .map_err(InitError::Config)?;
    let text = format!("{FLEET_TOML_HEADER}{toml}");
    files::write_atomic(&paths.fleet_toml(), text.as_bytes(), MODE_PRIVATE)?;
    Ok(InitOutcome {
        paths,
        server,
        fleet,
        claim,
        crl,
    })
}

/// The comment at the top of the fleet.toml `init` writes.
pub const FLEET_TOML_HEADER: &str =
    "# Written by vouch-fleet init. Relative paths are relative to this file's directory.\n\
     # fleet.example.toml in the vouch sources explains every key.\n\n";

/// Checks the target directory; with `force`, removes the old CA's state files.
fn prepare_dir(dir: &Path, force: bool) -> Result<(), InitError> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(InitError::Inspect {
                dir: dir.to_path_buf(),
                source,
            })
        }
    };
    if !meta.is_dir() {
        return Err(InitError::NotADirectory {
            dir: dir.to_path_buf(),
        });
    }
    let mut entries = std::fs::read_dir(dir).map_err(|source| InitError::Inspect {
        dir: dir.to_path_buf(),
        source,
    })?;
    if entries.next().is_none() {
        return Ok(());
    }
    if !force {
        return Err(InitError::NotEmpty {
            dir: dir.to_path_buf(),
        });
    }
    let paths = FleetPaths::new(dir);
    for stale in [
        paths.issued(),
        paths.revoked(),
        paths.crl_number(),
        paths.broker_dir().join("mosquitto.db"),
    ] {
        match std::fs::remove_file(&stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(InitError::Remove {
                    path: stale,
                    source,
                })
            }
        }
    }
    Ok(())
}
