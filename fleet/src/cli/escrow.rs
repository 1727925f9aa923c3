//! `vouch-fleet escrow`: the fleet's escrow key and the release of volume recovery passphrases.
//!
//! - `keygen --key K.pem --public P.pem`: a P-256 escrow key (PKCS#8 PEM, mode 0600, refused if
//!   it exists) and its public key PEM, which devices get as `volume create --escrow-key`.
//! - `release --config F ID VOLUME [--override --reason TEXT] [--wait SECS]`: gives the recovery
//!   passphrase of volume VOLUME (its UUID) back to the device, only when the device's last
//!   verdict in the registry is trusted, or with `--override` and a reason. The record is the
//!   one the device deposited; the release is queued in the registry, and the running server
//!   sends the passphrase encrypted to the device's TPM (`serve::escrow`). `--wait` waits for
//!   the device's answer.
//! - `release --config F ID --blob ESCROW_FILE [--out FILE] [...]`: for a device that cannot be
//!   reached, the passphrase goes to the operator instead: standard output or `--out` (0600).
//!
//! Every release is written to the audit log (kind `escrow_release`, with the verdict id or the
//! override reason); refusals name why.

use super::common::{open, ConfigArg};
use super::{CliError, Outcome};
use clap::{Args, Subcommand};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use vouch_attest::escrow::{self, EscrowError, EscrowRecord};
use vouch_fleet::registry::{now_ms, AuditKind, RegistryError};
use vouch_fleet::serve::release::{self, ReleaseError};

/// Arguments of `vouch-fleet escrow`.
#[derive(Args, Debug)]
pub struct EscrowArgs {
    #[command(subcommand)]
    command: EscrowCommand,
}

#[derive(Subcommand, Debug)]
enum EscrowCommand {
    /// Create the fleet's P-256 escrow key pair.
    Keygen {
        /// Private key output (PKCS#8 PEM, mode 0600); refused if it exists.
        #[arg(long, value_name = "PEM")]
        key: PathBuf,
        /// Public key output for `vouch-agent volume create --escrow-key`.
        #[arg(long, value_name = "PEM")]
        public: PathBuf,
    },
    /// Release a volume's recovery passphrase (trusted last verdict, or --override).
    Release(ReleaseArgs),
}

#[derive(Args, Debug)]
struct ReleaseArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Device id.
    id: String,
    /// The volume's UUID: its passphrase goes back to the device (from the record it deposited).
    #[arg(required_unless_present = "blob")]
    volume: Option<String>,
    /// Hand the passphrase to the operator instead, from this escrow record (`volume create
    /// --escrow-out`, or the volume's vouch-escrow token).
    #[arg(long, value_name = "FILE")]
    blob: Option<PathBuf>,
    /// Wait up to this many seconds for the device's answer (device delivery only).
    #[arg(long, value_name = "SECS", conflicts_with = "blob")]
    wait: Option<u64>,
    /// The escrow private key (default: escrow.key.pem in the fleet state directory).
    #[arg(long, value_name = "PEM")]
    key: Option<PathBuf>,
    /// Release even without a trusted last verdict (audited with --reason).
    #[arg(long = "override", requires = "reason")]
    force: bool,
    /// Why the override is needed (recorded in the audit log).
    #[arg(long)]
    reason: Option<String>,
    /// Write the passphrase to this file (mode 0600) instead of standard output (--blob only).
    #[arg(long, value_name = "FILE", requires = "blob")]
    out: Option<PathBuf>,
}

/// Why an escrow command failed.
#[derive(Debug, thiserror::Error)]
pub enum EscrowCmdError {
    /// Reading a file failed.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing a file failed.
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A key or record is unusable, or the blob does not open.
    #[error("{path}: unusable escrow key or record")]
    Escrow {
        path: PathBuf,
        #[source]
        source: EscrowError,
    },
    /// `--wait` ran out.
    #[error("release #{id} queued, but no answer from the device within {secs} s (is `vouch-fleet serve` running and the device connected?)")]
    NoAnswer { id: i64, secs: u64 },
    /// The device could not use the passphrase.
    #[error("release #{id}: {result}")]
    DeviceFailed { id: i64, result: String },
    /// Approving the release failed or the rule refused it (the library's
    /// [`ReleaseError`], which the HTTP API shares).
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// The registry failed.
    #[error("registry failed")]
    Registry(#[from] RegistryError),
}

impl EscrowArgs {
    /// The command's name for messages: `escrow keygen` or `escrow release`.
    pub fn name(&self) -> &'static str {
        match self.command {
            EscrowCommand::Keygen { .. } => "escrow keygen",
            EscrowCommand::Release(_) => "escrow release",
        }
    }
}

fn read(path: &Path, limit: u64) -> Result<Vec<u8>, EscrowCmdError> {
    let err = |source| EscrowCmdError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut data = Vec::new();
    std::fs::File::open(path)
        .map_err(err)?
        .take(limit)
        .read_to_end(&mut data)
        .map_err(err)?;
    Ok(data)
}

fn write_new(path: &Path, data: &[u8], private: bool) -> Result<(), EscrowCmdError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| EscrowCmdError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut o = std::fs::OpenOptions::new();
    o.write(true);
    if private {
        o.create_new(true).mode(0o600);
    } else {
        o.create(true).truncate(true);
    }
    o.open(path).map_err(err)?.write_all(data).map_err(err)
}

/// Runs `vouch-fleet escrow`.
pub fn run(args: EscrowArgs) -> Result<Outcome, CliError> {
    match args.command {
        EscrowCommand::Keygen { key, public } => {
            keygen(&key, &public)?;
            eprintln!(
                "escrow key {}, public key {}",
                key.display(),
                public.display()
            );
        }
        EscrowCommand::Release(a) => release(a)?,
    }
    Ok(Outcome::Done)
}

fn keygen(key: &Path, public: &Path) -> Result<(), EscrowCmdError> {
    let (private, public_pem) =
        escrow::keygen(&mut rand::rngs::OsRng).map_err(|source| EscrowCmdError::Escrow {
            path: key.to_path_buf(),
            source,
        })?;
    write_new(key, private.as_bytes(), true)?;
    write_new(public, public_pem.as_bytes(), false)
}

fn release(a: ReleaseArgs) -> Result<(), CliError> {
    let (cfg, mut reg) = open(&a.config)?;
    let key_path = a
        .key
        .clone()
        .unwrap_or_else(|| cfg.state_dir.join("escrow.key.pem"));
    Ok(release_with(&a, &key_path, &mut reg)?)
}

fn release_with(
    a: &ReleaseArgs,
    key_path: &Path,
    reg: &mut vouch_fleet::registry::Registry,
) -> Result<(), EscrowCmdError> {
    let Some(blob) = &a.blob else {
        // clap requires VOLUME without --blob.
        let volume = a.volume.as_deref().unwrap_or_default();
        let reason = a.force.then_some(a.reason.as_deref().unwrap_or_default());
        let q = release::release_to_device(reg, key_path, &a.id, volume, reason, None)?;
        eprintln!(
            "release #{} queued: the running server sends it to the device, encrypted to its TPM",
            q.id
        );
        return match a.wait {
            Some(secs) => wait_answer(reg, q.id, secs),
            None => Ok(()),
        };
    };
    let record =
        EscrowRecord::parse(&read(blob, 64 * 1024)?).map_err(|source| EscrowCmdError::Escrow {
            path: blob.clone(),
            source,
        })?;
    release::check_record(&record, &a.id, a.volume.as_deref())?;
    let reason = a.force.then_some(a.reason.as_deref().unwrap_or_default());
    let (basis, _) = release::basis(reg, &a.id, false, reason)?;
    let pass = release::open_record(key_path, &record, blob)?;
    reg.audit(
        AuditKind::EscrowRelease,
        Some(&a.id),
        &format!(
            "volume {} recovery passphrase released to the operator: {basis}",
            record.volume_uuid
        ),
        now_ms(),
    )?;
    match &a.out {
        Some(path) => write_new(path, &pass, true),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&pass)
                .and_then(|_| out.write_all(b"\n"))
                .map_err(|source| EscrowCmdError::Write {
                    path: PathBuf::from("-"),
                    source,
                })
        }
    }
}

/// Polls the registry for the device's answer to release `id`.
fn wait_answer(
    reg: &vouch_fleet::registry::Registry,
    id: i64,
    secs: u64,
) -> Result<(), EscrowCmdError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(result) = reg.escrow_release(id)?.and_then(|r| r.result) {
            if result.starts_with("ok") {
                eprintln!("release #{id}: device reports {result}");
                return Ok(());
            }
            return Err(EscrowCmdError::DeviceFailed { id, result });
        }
        if std::time::Instant::now() >= deadline {
            return Err(EscrowCmdError::NoAnswer { id, secs });
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
