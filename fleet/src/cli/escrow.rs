//! `vouch-fleet escrow`: the fleet's escrow key and the release of volume recovery passphrases.
//!
//! - `keygen --key K.pem --public P.pem`: a P-256 escrow key (PKCS#8 PEM, mode 0600, refused if
//!   it exists) and its public key PEM, which devices get as `volume create --escrow-key`.
//! - `release --config F ID --blob ESCROW_FILE [--out FILE] [--override --reason TEXT]`: opens
//!   the escrow record (`vouch_attest::escrow`) only when the device's last verdict in the
//!   registry is trusted, or with `--override` and a reason. Every release is written to the
//!   audit log (kind `escrow_release`, with the verdict id or the override reason); refusals
//!   name why. The passphrase goes to standard output or to `--out` (mode 0600).

use super::serve::{fail, open, ConfigArg};
use crate::exit;
use clap::{Args, Subcommand};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vouch_attest::escrow::{self, EscrowError, EscrowRecord};

use vouch_fleet::registry::{now_ms, AuditKind, RegistryError};

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
    /// The escrow record (`volume create --escrow-out`, or the volume's vouch-escrow token).
    #[arg(long, value_name = "FILE")]
    blob: PathBuf,
    /// The escrow private key (default: escrow.key.pem in the fleet state directory).
    #[arg(long, value_name = "PEM")]
    key: Option<PathBuf>,
    /// Release even without a trusted last verdict (audited with --reason).
    #[arg(long = "override", requires = "reason")]
    force: bool,
    /// Why the override is needed (recorded in the audit log).
    #[arg(long)]
    reason: Option<String>,
    /// Write the passphrase to this file (mode 0600) instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Why an escrow command failed.
#[derive(Debug, thiserror::Error)]
pub enum EscrowCmdError {
    /// Reading a file failed.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A key or record is unusable, or the blob does not open.
    #[error("{path}: {source}")]
    Escrow {
        path: PathBuf,
        #[source]
        source: EscrowError,
    },
    /// The record belongs to another device.
    #[error("the escrow record is for device {record}, not {given}: refused")]
    OtherDevice { record: String, given: String },
    /// The device has no verdict.
    #[error("device {0} has no verdict in the registry: release refused (use --override --reason after checking it otherwise)")]
    NoVerdict(String),
    /// The device's last verdict is untrusted.
    #[error("device {id}'s last verdict (#{verdict}) is untrusted ({reasons}): release refused (use --override --reason after checking it otherwise)")]
    Untrusted {
        id: String,
        verdict: i64,
        reasons: String,
    },
    /// The registry failed.
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
}

impl EscrowCmdError {
    fn code(&self) -> u8 {
        match self {
            EscrowCmdError::NoVerdict(_) | EscrowCmdError::Untrusted { .. } => exit::REJECTED,
            EscrowCmdError::Registry(_) | EscrowCmdError::Write { .. } => exit::INTERNAL,
            _ => exit::INPUT,
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
pub fn run(args: EscrowArgs) -> ExitCode {
    match args.command {
        EscrowCommand::Keygen { key, public } => match keygen(&key, &public) {
            Ok(()) => {
                eprintln!(
                    "escrow key {}, public key {}",
                    key.display(),
                    public.display()
                );
                ExitCode::from(exit::OK)
            }
            Err(e) => fail("escrow keygen", &e, e.code()),
        },
        EscrowCommand::Release(a) => release(a),
    }
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

fn release(a: ReleaseArgs) -> ExitCode {
    let (cfg, mut reg) = match open(&a.config) {
        Ok(v) => v,
        Err(e) => return fail("escrow release", &e, e.code()),
    };
    let key_path = a
        .key
        .clone()
        .unwrap_or_else(|| cfg.state_dir.join("escrow.key.pem"));
    match release_with(&a, &key_path, &mut reg) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => fail("escrow release", &e, e.code()),
    }
}

fn release_with(
    a: &ReleaseArgs,
    key_path: &Path,
    reg: &mut vouch_fleet::registry::Registry,
) -> Result<(), EscrowCmdError> {
    let record = EscrowRecord::parse(&read(&a.blob, 64 * 1024)?).map_err(|source| {
        EscrowCmdError::Escrow {
            path: a.blob.clone(),
            source,
        }
    })?;
    if record.device_id != a.id {
        return Err(EscrowCmdError::OtherDevice {
            record: record.device_id,
            given: a.id.clone(),
        });
    }
    let last = reg.verdicts(&a.id, 1)?.into_iter().next();
    let basis = match (&last, a.force) {
        (Some(v), _) if v.trusted => format!("last verdict #{} trusted", v.id),
        (_, true) => format!(
            "OVERRIDE ({}): {}",
            match &last {
                Some(v) => format!("last verdict #{} untrusted", v.id),
                None => "no verdict".into(),
            },
            a.reason.as_deref().unwrap_or_default()
        ),
        (None, false) => return Err(EscrowCmdError::NoVerdict(a.id.clone())),
        (Some(v), false) => {
            return Err(EscrowCmdError::Untrusted {
                id: a.id.clone(),
                verdict: v.id,
                reasons: v.reasons.join("; "),
            })
        }
    };
    let pem = read(key_path, 16 * 1024)?;
    let key = escrow::secret_from_pem(&String::from_utf8_lossy(&pem)).map_err(|source| {
        EscrowCmdError::Escrow {
            path: key_path.to_path_buf(),
            source,
        }
    })?;
    let pass = record.open(&key).map_err(|source| EscrowCmdError::Escrow {
        path: a.blob.clone(),
        source,
    })?;
    reg.audit(
        AuditKind::EscrowRelease,
        Some(&a.id),
        &format!(
            "volume {} recovery passphrase released: {basis}",
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
