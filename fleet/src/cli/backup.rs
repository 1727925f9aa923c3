//! `vouch-fleet backup` and `vouch-fleet restore`: encrypted fleet backups.
//!
//! - `backup --config F --out FILE [--public P]`: registry snapshot (online, while `serve`
//!   runs), keys, policies and configuration in one file encrypted to the backup public key
//!   (default `backup.pub.pem` beside the configuration). The fleet machine needs only the
//!   public key: it can make backups it cannot read. Audited (kind `backup`).
//! - `backup keygen --public P (--key K | --shares N --threshold K --share-prefix PREFIX)`: the
//!   backup key pair; with `--shares` the private key exists only as N share files
//!   (`PREFIX-1.share` ...), any K of which open a backup.
//! - `backup verify --in FILE (--key K | --share S...)`: decrypts, checks the manifest (names,
//!   sizes, SHA-256), opens the registry snapshot and verifies its audit chain; restores
//!   nothing.
//! - `restore --in FILE --dir D (--key K | --share S...) [--broker-port P --enroll-port P]
//!   [--force]`: rebuilds a fleet directory (see [`vouch_fleet::backup::restore`]), verifies the
//!   restored audit chain and appends a `restored` row to it.
//!
//! The decrypted content never reaches the disk except as the restored fleet directory (and,
//! for `verify`, the registry snapshot in a private temporary directory, removed afterwards).

use super::{CliError, Outcome};
use clap::{Args, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vouch_attest::backup::{self, BackupError, Share};
use vouch_fleet::backup::{
    collect, require_sqlite, restore, BackupRunError, RestoreOptions, REGISTRY_ENTRY,
};
use vouch_fleet::config::FleetConfig;
use vouch_fleet::pki::files;
use vouch_fleet::registry::{now_ms, AuditKind, Registry, RegistryError};
use zeroize::Zeroizing;

/// The default backup public key file, beside the configuration.
pub const DEFAULT_PUBLIC: &str = "backup.pub.pem";

/// Arguments of `vouch-fleet backup`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    command: Option<BackupCommand>,
    #[command(flatten)]
    make: MakeArgs,
}

#[derive(Args, Debug)]
struct MakeArgs {
    /// The fleet configuration (fleet.toml).
    #[arg(long, value_name = "FILE", env = "VOUCH_FLEET_CONFIG", required = true)]
    config: Option<PathBuf>,
    /// The backup file to write (mode 0600; replaced atomically).
    #[arg(long, value_name = "FILE", required = true)]
    out: Option<PathBuf>,
    /// The backup public key (default: backup.pub.pem beside the configuration).
    #[arg(long, value_name = "PEM")]
    public: Option<PathBuf>,
    /// Read the CA key from here instead of the configured path (e.g. the backup service's
    /// systemd credential `${CREDENTIALS_DIRECTORY}/ca.key`).
    #[arg(long, value_name = "PEM")]
    ca_key: Option<PathBuf>,
}

/// The backup private key: a PEM file or k share files.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct KeyArgs {
    /// The backup private key (PKCS#8 PEM).
    #[arg(long, value_name = "PEM")]
    key: Option<PathBuf>,
    /// A share of the backup private key (repeat: as many as its threshold).
    #[arg(long, value_name = "FILE")]
    share: Vec<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum BackupCommand {
    /// Create the backup key pair (or its shares).
    Keygen {
        /// Public key output (give it to the fleet machine).
        #[arg(long, value_name = "PEM")]
        public: PathBuf,
        /// Private key output (PKCS#8 PEM, mode 0600; refused if it exists).
        #[arg(long, value_name = "PEM", required_unless_present = "shares")]
        key: Option<PathBuf>,
        /// Split the private key into this many shares instead (2..254).
        #[arg(long, requires_all = ["threshold", "share_prefix"], conflicts_with = "key")]
        shares: Option<u8>,
        /// Shares needed to rebuild the key.
        #[arg(long, requires = "shares")]
        threshold: Option<u8>,
        /// Share files are PREFIX-1.share ... PREFIX-N.share (mode 0600; refused if they exist).
        #[arg(long, value_name = "PREFIX", requires = "shares")]
        share_prefix: Option<PathBuf>,
    },
    /// Check a backup: decrypt, check the manifest, open the registry, verify the audit chain.
    Verify {
        /// The backup file.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
    },
}

/// Arguments of `vouch-fleet restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// The fleet directory to rebuild (refused if it holds files, unless --force).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
    /// The broker's device listener port in the restored directory (default: the old one).
    #[arg(long, value_name = "PORT")]
    broker_port: Option<u16>,
    /// The broker's enrollment listener port (default: the old one).
    #[arg(long, value_name = "PORT")]
    enroll_port: Option<u16>,
    /// Restore over a non-empty directory (its files are removed).
    #[arg(long)]
    force: bool,
}

/// Why a backup command failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupCmdError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A key or share file is unusable, or the shares do not rebuild a key.
    #[error("{path}: unusable backup key or share")]
    Key {
        path: PathBuf,
        #[source]
        source: BackupError,
    },
    /// The backup file is refused (damaged, cut, another key, altered).
    #[error("{path}: backup refused")]
    Backup {
        path: PathBuf,
        #[source]
        source: BackupError,
    },
    /// An output file exists already.
    #[error("{0} exists; refusing to overwrite a key or share")]
    Exists(PathBuf),
    /// Writing a file failed.
    #[error(transparent)]
    File(#[from] files::FileError),
    /// Making or restoring the backup failed.
    #[error(transparent)]
    Run(#[from] BackupRunError),
    /// The registry failed.
    #[error("registry failed")]
    Registry(#[from] RegistryError),
}

impl BackupArgs {
    /// The command's name for messages.
    pub fn name(&self) -> &'static str {
        match self.command {
            None => "backup",
            Some(BackupCommand::Keygen { .. }) => "backup keygen",
            Some(BackupCommand::Verify { .. }) => "backup verify",
        }
    }
}

fn read(path: &Path, limit: u64) -> Result<Zeroizing<Vec<u8>>, BackupCmdError> {
    let err = |source| BackupCmdError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut data = Zeroizing::new(Vec::new());
    std::fs::File::open(path)
        .map_err(err)?
        .take(limit)
        .read_to_end(&mut data)
        .map_err(err)?;
    Ok(data)
}

fn write_new_private(path: &Path, data: &[u8]) -> Result<(), BackupCmdError> {
    if path.exists() {
        return Err(BackupCmdError::Exists(path.to_path_buf()));
    }
    Ok(files::write_atomic(path, data, 0o600)?)
}

/// Runs `vouch-fleet backup`.
pub fn run(args: BackupArgs) -> Result<Outcome, CliError> {
    Ok(match args.command {
        None => make(args.make)?,
        Some(BackupCommand::Keygen {
            public,
            key,
            shares,
            threshold,
            share_prefix,
        }) => keygen(&public, key, shares.zip(threshold).zip(share_prefix))?,
        Some(BackupCommand::Verify { input, key }) => verify(&input, &key)?,
    })
}

/// Runs `vouch-fleet restore`.
pub fn run_restore(args: RestoreArgs) -> Result<Outcome, CliError> {
    Ok(restore_cmd(args)?)
}

fn keygen(
    public: &Path,
    key: Option<PathBuf>,
    split: Option<((u8, u8), PathBuf)>,
) -> Result<Outcome, BackupCmdError> {
    let key_err = |source| BackupCmdError::Key {
        path: public.to_path_buf(),
        source,
    };
    let (private, public_pem, secret) = backup::keygen(&mut rand::rngs::OsRng).map_err(key_err)?;
    let fp = backup::fingerprint(&secret.public_key());
    // Check every output first, so a refusal leaves nothing half written.
    let share_paths: Vec<PathBuf> = match &split {
        Some(((n, _), prefix)) => (1..=*n)
            .map(|i| PathBuf::from(format!("{}-{i}.share", prefix.display())))
            .collect(),
        None => Vec::new(),
    };
    for p in share_paths.iter().chain(key.iter()) {
        if p.exists() {
            return Err(BackupCmdError::Exists(p.clone()));
        }
    }
    if let Some(((n, k), _)) = &split {
        let shares = backup::split_key(&secret, *k, *n).map_err(key_err)?;
        for (s, p) in shares.iter().zip(&share_paths) {
            write_new_private(p, s.to_text().as_bytes())?;
        }
        eprintln!(
            "backup key {fp}: {n} shares ({k} needed) {}-1..{n}.share; the private key was not written",
            split.as_ref().map(|s| s.1.display().to_string()).unwrap_or_default()
        );
    }
    if let Some(k) = &key {
        write_new_private(k, private.as_bytes())?;
        eprintln!("backup key {fp}: private key {}", k.display());
    }
    files::write_atomic(public, public_pem.as_bytes(), 0o644)?;
    eprintln!("public key {}", public.display());
    Ok(Outcome::Done)
}

fn load_key(k: &KeyArgs) -> Result<p256::SecretKey, BackupCmdError> {
    if let Some(path) = &k.key {
        let pem = read(path, 64 * 1024)?;
        let text = Zeroizing::new(String::from_utf8_lossy(&pem).into_owned());
        return backup::secret_from_pem(&text).map_err(|source| BackupCmdError::Key {
            path: path.clone(),
            source,
        });
    }
    let mut shares = Vec::with_capacity(k.share.len());
    for path in &k.share {
        let text = read(path, 64 * 1024)?;
        let text = Zeroizing::new(String::from_utf8_lossy(&text).into_owned());
        shares.push(Share::parse(&text).map_err(|source| BackupCmdError::Key {
            path: path.clone(),
            source,
        })?);
    }
    backup::combine(&shares).map_err(|source| BackupCmdError::Key {
        path: k.share.first().cloned().unwrap_or_default(),
        source,
    })
}

fn open_backup(input: &Path, k: &KeyArgs) -> Result<(backup::Contents, usize), BackupCmdError> {
    let key = load_key(k)?;
    let file = read(input, backup::MAX_BACKUP + 1024)?;
    let bad = |source| BackupCmdError::Backup {
        path: input.to_path_buf(),
        source,
    };
    let contents = backup::open(&file, &key).map_err(bad)?;
    Ok((contents, file.len()))
}

fn make(a: MakeArgs) -> Result<Outcome, BackupCmdError> {
    let start = Instant::now();
    // clap requires both without a subcommand.
    let (Some(config), Some(out)) = (a.config, a.out) else {
        return Ok(Outcome::Rejected);
    };
    let cfg = FleetConfig::load(&config).map_err(BackupRunError::from)?;
    require_sqlite(&cfg)?;
    let public_path = a.public.unwrap_or_else(|| {
        cfg.source
            .parent()
            .unwrap_or(Path::new("."))
            .join(DEFAULT_PUBLIC)
    });
    let pem = read(&public_path, 64 * 1024)?;
    let public = backup::public_from_pem(&String::from_utf8_lossy(&pem)).map_err(|source| {
        BackupCmdError::Key {
            path: public_path.clone(),
            source,
        }
    })?;
    let fp = backup::fingerprint(&public);
    // The row goes into the snapshot: the backup records itself.
    let mut reg = Registry::open(&cfg.state_dir)?;
    reg.audit(
        AuditKind::Backup,
        None,
        &format!("backup to {} for backup key {fp}", out.display()),
        now_ms(),
    )?;
    drop(reg);
    let mut c = collect(&config, a.ca_key.as_deref())?;
    for f in &c.manifest.skipped {
        eprintln!("warning: {f} is not readable here and is not in the backup");
    }
    let payload = backup::build_payload(&mut c.manifest, &c.data).map_err(BackupRunError::from)?;
    drop(c.data);
    let sealed =
        backup::seal(&public, &payload, &mut rand::rngs::OsRng).map_err(BackupRunError::from)?;
    files::write_atomic(&out, &sealed, 0o600)?;
    eprintln!(
        "backup {}: {} files, {} bytes ({} bytes of content) for backup key {fp} in {} ms",
        out.display(),
        c.manifest.entries.len(),
        sealed.len(),
        payload.len(),
        start.elapsed().as_millis()
    );
    Ok(Outcome::Done)
}

fn print_manifest(c: &backup::Contents, size: usize) {
    let m = &c.manifest;
    println!(
        "{} of {} made {} by {}: {} files, {size} bytes",
        m.format,
        m.source_dir,
        super::common::rfc3339_ms(m.created_ms),
        m.made_by,
        m.entries.len()
    );
    for f in &m.skipped {
        println!("  left out (not readable when the backup was made): {f}");
    }
    for (k, v) in &m.external {
        println!("  {k} was outside the fleet directory: {v}");
    }
    for e in &m.entries {
        println!("  {:o} {:>10} {} {}", e.mode, e.size, e.sha256, e.name);
    }
}

fn chain_outcome(reg: &Registry) -> Result<Outcome, BackupCmdError> {
    let check = reg.verify_audit()?;
    Ok(match &check.problem {
        None => {
            eprintln!("audit chain: {} rows, intact", check.rows);
            Outcome::Done
        }
        Some(p) => {
            eprintln!("audit chain BROKEN: {p}");
            Outcome::Rejected
        }
    })
}

fn verify(input: &Path, k: &KeyArgs) -> Result<Outcome, BackupCmdError> {
    let (c, size) = open_backup(input, k)?;
    print_manifest(&c, size);
    let db = c
        .by_name(REGISTRY_ENTRY)
        .ok_or(BackupRunError::Missing("registry snapshot"))?;
    let config = format!("fleet/{}", c.manifest.config);
    let text = c
        .by_name(&config)
        .ok_or(BackupRunError::Missing("configuration file"))?;
    let config_path = PathBuf::from(&c.manifest.source_dir).join(&c.manifest.config);
    FleetConfig::from_toml(&String::from_utf8_lossy(text), &config_path)
        .map_err(BackupRunError::from)?;
    // The snapshot opens as a registry in a private directory (0700), removed on return.
    let tmp = tempfile::Builder::new()
        .prefix("vouch-backup-verify-")
        .tempdir()
        .map_err(|source| BackupCmdError::Read {
            path: std::env::temp_dir(),
            source,
        })?;
    files::write_atomic(&tmp.path().join(vouch_fleet::registry::DB_FILE), db, 0o600)?;
    let reg = Registry::open(tmp.path())?;
    let outcome = chain_outcome(&reg)?;
    eprintln!(
        "backup {}: manifest and checksums verified",
        input.display()
    );
    Ok(outcome)
}

fn restore_cmd(a: RestoreArgs) -> Result<Outcome, BackupCmdError> {
    let (c, size) = open_backup(&a.input, &a.key)?;
    let restored = restore(
        &c,
        &RestoreOptions {
            dir: a.dir.clone(),
            broker_port: a.broker_port,
            enroll_port: a.enroll_port,
            force: a.force,
        },
    )?;
    let cfg = FleetConfig::load(&restored.config).map_err(BackupRunError::from)?;
    let mut reg = Registry::open(&cfg.state_dir)?;
    let outcome = chain_outcome(&reg)?;
    reg.audit(
        AuditKind::Restored,
        None,
        &format!(
            "restored into {} from a backup of {} made {}",
            a.dir.display(),
            c.manifest.source_dir,
            super::common::rfc3339_ms(c.manifest.created_ms)
        ),
        now_ms(),
    )?;
    eprintln!(
        "restored {} files ({size} bytes of backup) into {}; configuration {}",
        restored.files,
        a.dir.display(),
        restored.config.display()
    );
    if let Some((p, e)) = restored.ports {
        eprintln!("broker listeners: {p} (devices), {e} (enrollment); start: mosquitto -c {}/mosquitto.conf", a.dir.display());
    }
    Ok(outcome)
}
