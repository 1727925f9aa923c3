//! `vouch-fleet release`: approve a release from artifacts (`approve`), and `list`, `show`,
//! `remove` the approved releases in the configured releases directory. A release is a named set
//! of allowed boot components that policies reference with `releases = [...]` (format and
//! meaning: `tpm-policies/README.md`). Digests are computed by `vouch_attest::release`; this
//! module reads files, writes the release through the durable writer, audits and prints.

use super::common::{open, ConfigArg, SetupError};
use super::{CliError, Outcome};
use clap::{Args, Subcommand};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use vouch_attest::eventlog::{EventLog, ParseError};
use vouch_attest::release::{
    authenticode_sha256, grub_cmdline_text, load_options_sha256, AuthenticodeError,
    LoadOptionsForm, Release, ReleaseError,
};
use vouch_fleet::config::{valid_policy_name, FleetConfig};
use vouch_fleet::registry::{now_ms, AuditKind, RegistryError};
use vouch_fleet::serve::{policies, releases};

/// Largest artifact read (a kernel, initrd or EFI image).
const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// Arguments of `vouch-fleet release`.
#[derive(Args, Debug)]
pub struct ReleaseArgs {
    #[command(subcommand)]
    command: ReleaseCommand,
}

#[derive(Subcommand, Debug)]
enum ReleaseCommand {
    /// Approve a release: compute its components from artifacts and write it.
    Approve(ApproveArgs),
    /// List the approved releases.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one release's components.
    Show {
        /// The release name.
        name: String,
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a release no policy references.
    Remove {
        /// The release name.
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Args, Debug)]
struct ApproveArgs {
    /// The release name (1 to 64 of A-Z a-z 0-9 . _ -; the file NAME.toml).
    name: String,
    #[command(flatten)]
    config: ConfigArg,
    /// An EFI image (shim, GRUB, systemd-boot, UKI): its Authenticode SHA-256 (PCR 4).
    /// Repeatable.
    #[arg(long, value_name = "FILE")]
    efi: Vec<PathBuf>,
    /// A kernel image (vmlinuz, an EFI-stub PE): its Authenticode SHA-256 (PCR 4, when
    /// firmware or shim load it) and its SHA-256 (PCR 9, when GRUB reads it). Repeatable.
    #[arg(long, value_name = "FILE")]
    kernel: Vec<PathBuf>,
    /// An initrd: its SHA-256, as the EFI stub and GRUB measure it into PCR 9. Repeatable.
    #[arg(long, value_name = "FILE")]
    initrd: Vec<PathBuf>,
    /// A kernel command line as /proc/cmdline shows it (`BOOT_IMAGE=/vmlinuz-... root=...`):
    /// GRUB's text (PCR 8) and the EFI stub's LoadOptions digests (PCR 9). Repeatable.
    #[arg(long, value_name = "TEXT")]
    cmdline: Vec<String>,
    /// Another file GRUB reads (grub.cfg, grubenv, a font): its SHA-256 (PCR 9). Repeatable.
    #[arg(long, value_name = "FILE")]
    grub_file: Vec<PathBuf>,
    /// A Debian package (.deb): every kernel (boot/vmlinuz-*, as --kernel) and EFI image
    /// (*.efi, *.efi.signed, as --efi) it holds. Repeatable.
    #[arg(long, value_name = "FILE")]
    deb: Vec<PathBuf>,
    /// A known-good event log: every component it measured. Repeatable.
    #[arg(long, value_name = "FILE")]
    eventlog: Vec<PathBuf>,
    /// Description stored in the release.
    #[arg(long)]
    description: Option<String>,
    /// Replace an existing release of the same name.
    #[arg(long)]
    replace: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Why a `release` command failed.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseCliError {
    /// Loading the configuration or the registry failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// Not a release name.
    #[error("{0:?} is not a release name (1 to 64 of A-Z a-z 0-9 . _ -, not starting with .)")]
    Name(String),
    /// An input file could not be read.
    #[error("--{flag} {path}: cannot read")]
    Read {
        /// The option.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An input file is larger than accepted.
    #[error("--{flag} {path}: larger than {MAX_ARTIFACT_BYTES} bytes")]
    TooLarge {
        /// The option.
        flag: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// An EFI image has no Authenticode digest.
    #[error("--{flag} {path}: no Authenticode digest")]
    Image {
        /// The option.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: AuthenticodeError,
    },
    /// A Debian package does not read.
    #[error("--deb {path}: unreadable package")]
    Deb {
        /// The file.
        path: PathBuf,
        /// Why.
        source: vouch_fleet::deb::DebError,
    },
    /// A Debian package holds no boot file.
    #[error("--deb {0}: no kernel (boot/vmlinuz-*) or EFI image (*.efi, *.efi.signed) in it")]
    DebEmpty(PathBuf),
    /// An event log does not parse.
    #[error("--eventlog {path}: malformed event log")]
    Eventlog {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ParseError,
    },
    /// Nothing to approve.
    #[error("release {0}: no components given (--efi, --kernel, --initrd, --cmdline, --grub-file, --deb, --eventlog)")]
    Empty(String),
    /// A release of that name exists.
    #[error("release {0} exists; give --replace to replace it")]
    Exists(String),
    /// No release of that name.
    #[error("no release {0} in the releases directory")]
    NoRelease(String),
    /// The release file does not load.
    #[error("release {name}: {why}")]
    Unusable {
        /// The release.
        name: String,
        /// Why (names the file).
        why: String,
    },
    /// Policies still reference the release.
    #[error("release {name} is referenced by policies {}: remove it from their `releases` first", .policies.join(", "))]
    Referenced {
        /// The release.
        name: String,
        /// The policies.
        policies: Vec<String>,
    },
    /// The release could not be encoded.
    #[error("cannot encode the release")]
    Encode(#[source] ReleaseError),
    /// Writing the release file failed.
    #[error("{path}: cannot write")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: vouch_durable::Error,
    },
    /// Creating the releases directory failed.
    #[error("{path}: cannot create the releases directory")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Removing the release file failed.
    #[error("{path}: cannot remove")]
    Remove {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Recording the audit row failed.
    #[error("cannot record the audit row")]
    Audit(#[source] RegistryError),
    /// Serializing JSON failed.
    #[error("cannot encode JSON")]
    Json(#[source] serde_json::Error),
}

impl From<ReleaseCliError> for CliError {
    fn from(e: ReleaseCliError) -> CliError {
        CliError::Release(e)
    }
}

impl ReleaseArgs {
    /// The command's name for messages.
    pub fn name(&self) -> &'static str {
        match self.command {
            ReleaseCommand::Approve(_) => "release approve",
            ReleaseCommand::List { .. } => "release list",
            ReleaseCommand::Show { .. } => "release show",
            ReleaseCommand::Remove { .. } => "release remove",
        }
    }
}

/// Runs `vouch-fleet release ...`.
pub fn run(args: ReleaseArgs) -> Result<Outcome, CliError> {
    match args.command {
        ReleaseCommand::Approve(a) => approve(&a)?,
        ReleaseCommand::List { config, json } => list(&config, json)?,
        ReleaseCommand::Show { name, config, json } => show(&name, &config, json)?,
        ReleaseCommand::Remove { name, config } => remove(&name, &config)?,
    }
    Ok(Outcome::Done)
}

fn check_name(name: &str) -> Result<(), ReleaseCliError> {
    if valid_policy_name(name) {
        Ok(())
    } else {
        Err(ReleaseCliError::Name(name.to_owned()))
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, ReleaseCliError> {
    use std::io::Read;
    let err = |source| ReleaseCliError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_ARTIFACT_BYTES + 1).read_to_end(&mut out))
        .map_err(err)?;
    if out.len() as u64 > MAX_ARTIFACT_BYTES {
        return Err(ReleaseCliError::TooLarge {
            flag,
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn authenticode(
    flag: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<[u8; 32], ReleaseCliError> {
    authenticode_sha256(bytes).map_err(|source| ReleaseCliError::Image {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

/// The release the arguments describe.
fn build(a: &ApproveArgs) -> Result<Release, ReleaseCliError> {
    let mut r = Release::empty();
    r.description = a.description.clone();
    for path in &a.efi {
        let bytes = read("efi", path)?;
        let d = authenticode("efi", path, &bytes)?;
        r.add_boot_application(&d, Some(file_name(path)));
    }
    for path in &a.kernel {
        let bytes = read("kernel", path)?;
        let d = authenticode("kernel", path, &bytes)?;
        r.add_boot_application(&d, Some(file_name(path)));
        r.add_grub_file(&Sha256::digest(&bytes), Some(file_name(path)));
    }
    for path in &a.initrd {
        let bytes = read("initrd", path)?;
        let d = Sha256::digest(&bytes);
        r.add_initrd(&d, Some(file_name(path)));
        r.add_grub_file(&d, Some(file_name(path)));
    }
    for path in &a.grub_file {
        let bytes = read("grub-file", path)?;
        r.add_grub_file(&Sha256::digest(&bytes), Some(file_name(path)));
    }
    for text in &a.cmdline {
        r.add_cmdline(grub_cmdline_text(text), Some("--cmdline".into()));
        for (form, what) in [
            (LoadOptionsForm::Grub, "UTF-16LE as GRUB passes it"),
            (LoadOptionsForm::Terminated, "UTF-16LE with NUL"),
        ] {
            r.add_load_options(
                &load_options_sha256(text, form),
                Some(format!("--cmdline, {what}")),
            );
        }
    }
    for path in &a.deb {
        let bytes = read("deb", path)?;
        let files =
            vouch_fleet::deb::boot_files(&bytes).map_err(|source| ReleaseCliError::Deb {
                path: path.clone(),
                source,
            })?;
        if files.is_empty() {
            return Err(ReleaseCliError::DebEmpty(path.clone()));
        }
        for f in files {
            let source = Some(format!("{} in {}", f.path, file_name(path)));
            let in_pkg = path.join(&f.path);
            let d = authenticode("deb", &in_pkg, &f.data)?;
            r.add_boot_application(&d, source.clone());
            if f.kind == vouch_fleet::deb::BootFileKind::Kernel {
                r.add_grub_file(&Sha256::digest(&f.data), source);
            }
        }
    }
    for path in &a.eventlog {
        let bytes = read("eventlog", path)?;
        let log = EventLog::parse(&bytes).map_err(|source| ReleaseCliError::Eventlog {
            path: path.to_path_buf(),
            source,
        })?;
        r.add_log(&log, &file_name(path));
    }
    Ok(r)
}

/// One component as printed.
#[derive(Serialize)]
struct Line<'a> {
    kind: &'static str,
    value: String,
    source: Option<&'a str>,
}

fn lines(r: &Release) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let digests = [
        ("boot_application", &r.boot_applications),
        ("load_options", &r.load_options),
        ("initrd", &r.initrds),
        ("grub_file", &r.grub_files),
    ];
    for (kind, list) in digests {
        out.extend(list.iter().map(|c| Line {
            kind,
            value: c.sha256.to_string(),
            source: c.source.as_deref(),
        }));
    }
    out.extend(r.kernel_cmdlines.iter().map(|c| Line {
        kind: if c.prefix {
            "kernel_cmdline_prefix"
        } else {
            "kernel_cmdline"
        },
        value: c.text.clone(),
        source: c.source.as_deref(),
    }));
    out
}

#[derive(Serialize)]
struct ReleaseReport<'a> {
    name: &'a str,
    path: &'a Path,
    description: Option<&'a str>,
    components: Vec<Line<'a>>,
}

fn print(name: &str, path: &Path, r: &Release, json: bool) -> Result<(), ReleaseCliError> {
    if json {
        let report = ReleaseReport {
            name,
            path,
            description: r.description.as_deref(),
            components: lines(r),
        };
        let text = serde_json::to_string_pretty(&report).map_err(ReleaseCliError::Json)?;
        println!("{text}");
        return Ok(());
    }
    println!(
        "release {name} ({}): {} components",
        path.display(),
        r.len()
    );
    if let Some(d) = &r.description {
        println!("  {d}");
    }
    for l in lines(r) {
        match l.source {
            Some(s) => println!("  {:<22} {}  ({s})", l.kind, l.value),
            None => println!("  {:<22} {}", l.kind, l.value),
        }
    }
    Ok(())
}

fn audit(cfg_arg: &ConfigArg, detail: &str) -> Result<(), ReleaseCliError> {
    let (_, mut reg) = open(cfg_arg)?;
    reg.audit(AuditKind::Release, None, detail, now_ms())
        .map_err(ReleaseCliError::Audit)?;
    Ok(())
}

fn approve(a: &ApproveArgs) -> Result<(), ReleaseCliError> {
    check_name(&a.name)?;
    let cfg = FleetConfig::load(&a.config.config).map_err(SetupError::from)?;
    let release = build(a)?;
    if release.is_empty() {
        return Err(ReleaseCliError::Empty(a.name.clone()));
    }
    let path = releases::path_of(&cfg.releases_dir, &a.name);
    if path.exists() && !a.replace {
        return Err(ReleaseCliError::Exists(a.name.clone()));
    }
    let text = release.to_toml().map_err(ReleaseCliError::Encode)?;
    std::fs::create_dir_all(&cfg.releases_dir).map_err(|source| ReleaseCliError::CreateDir {
        path: cfg.releases_dir.clone(),
        source,
    })?;
    vouch_durable::write(&path, text.as_bytes(), 0o644).map_err(|source| {
        ReleaseCliError::Write {
            path: path.clone(),
            source,
        }
    })?;
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    audit(
        &a.config,
        &format!(
            "release {} approved: {} components, file sha256 {digest}",
            a.name,
            release.len()
        ),
    )?;
    print(&a.name, &path, &release, a.json)
}

fn load(cfg: &FleetConfig, name: &str) -> Result<(PathBuf, Release), ReleaseCliError> {
    check_name(name)?;
    let path = releases::path_of(&cfg.releases_dir, name);
    if !path.exists() {
        return Err(ReleaseCliError::NoRelease(name.to_owned()));
    }
    let r = releases::load_file(&path).map_err(|why| ReleaseCliError::Unusable {
        name: name.to_owned(),
        why,
    })?;
    Ok((path, r))
}

fn show(name: &str, config: &ConfigArg, json: bool) -> Result<(), ReleaseCliError> {
    let cfg = FleetConfig::load(&config.config).map_err(SetupError::from)?;
    let (path, r) = load(&cfg, name)?;
    print(name, &path, &r, json)
}

#[derive(Serialize)]
struct ListEntry {
    name: String,
    components: Option<usize>,
    description: Option<String>,
    problem: Option<String>,
}

fn list(config: &ConfigArg, json: bool) -> Result<(), ReleaseCliError> {
    let cfg = FleetConfig::load(&config.config).map_err(SetupError::from)?;
    let entries: Vec<ListEntry> = releases::names(&cfg.releases_dir)
        .into_iter()
        .map(
            |name| match releases::load_file(&releases::path_of(&cfg.releases_dir, &name)) {
                Ok(r) => ListEntry {
                    name,
                    components: Some(r.len()),
                    description: r.description,
                    problem: None,
                },
                Err(why) => ListEntry {
                    name,
                    components: None,
                    description: None,
                    problem: Some(why),
                },
            },
        )
        .collect();
    if json {
        let text = serde_json::to_string_pretty(&entries).map_err(ReleaseCliError::Json)?;
        println!("{text}");
        return Ok(());
    }
    if entries.is_empty() {
        println!("no releases in {}", cfg.releases_dir.display());
    }
    for e in entries {
        match (e.components, e.problem) {
            (Some(n), _) => println!(
                "{:<32} {n:>4} components  {}",
                e.name,
                e.description.unwrap_or_default()
            ),
            (None, p) => println!("{:<32} UNUSABLE: {}", e.name, p.unwrap_or_default()),
        }
    }
    Ok(())
}

/// The policies in the policies directory whose `releases` name `name`.
fn referencing(cfg: &FleetConfig, name: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(&cfg.policies_dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_str()?.to_owned();
            let policy = file
                .strip_suffix(".toml")
                .filter(|n| valid_policy_name(n))?;
            let p = policies::read_file(&e.path()).ok()?;
            p.releases
                .iter()
                .any(|r| r == name)
                .then(|| policy.to_owned())
        })
        .collect();
    out.sort_unstable();
    out
}

fn remove(name: &str, config: &ConfigArg) -> Result<(), ReleaseCliError> {
    let cfg = FleetConfig::load(&config.config).map_err(SetupError::from)?;
    check_name(name)?;
    let path = releases::path_of(&cfg.releases_dir, name);
    if !path.exists() {
        return Err(ReleaseCliError::NoRelease(name.to_owned()));
    }
    let policies = referencing(&cfg, name);
    if !policies.is_empty() {
        return Err(ReleaseCliError::Referenced {
            name: name.to_owned(),
            policies,
        });
    }
    std::fs::remove_file(&path).map_err(|source| ReleaseCliError::Remove {
        path: path.clone(),
        source,
    })?;
    audit(config, &format!("release {name} removed"))?;
    println!("release {name} removed ({})", path.display());
    Ok(())
}
