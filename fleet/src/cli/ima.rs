//! `vouch-fleet ima check`: appraise an IMA measurement list offline against a Keylime runtime
//! policy (exit 0 trusted, 1 untrusted, 2 bad input, like `policy check`), and
//! `vouch-fleet runtime-policy create`: build a Keylime runtime policy from a file tree,
//! initramfs images and/or a known-good list. Parsing, replay and evaluation are
//! `vouch_attest::ima`'s, initramfs images `vouch_fleet::initramfs`'s; this module reads files
//! (a list is streamed, never held whole) and prints.

use super::{CliError, Outcome};
use clap::{Args, Subcommand};
use serde::Serialize;
use sha2::Digest;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use vouch_attest::ima::appraise::{Appraiser, ImaVerdict};
use vouch_attest::ima::ascii::{self, AsciiError};
use vouch_attest::ima::binary::{Decoder, ParseError};
use vouch_attest::ima::{Entry, PolicyError, ReplayState, RuntimePolicy, IMA_PCR};
use vouch_attest::HashAlg;
use vouch_fleet::initramfs::{self, InitramfsError};

/// Arguments of `vouch-fleet ima`.
#[derive(Args, Debug)]
pub struct ImaArgs {
    #[command(subcommand)]
    command: ImaCommand,
}

#[derive(Subcommand, Debug)]
enum ImaCommand {
    /// Appraise an IMA measurement list against a Keylime runtime policy: exit 0 only when
    /// every entry passes.
    Check {
        /// The Keylime runtime policy (JSON).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// The measurement list: binary (`binary_runtime_measurements`, or a per-bank
        /// `binary_runtime_measurements_sha256`) or text (`ascii_runtime_measurements`).
        #[arg(long, value_name = "FILE")]
        log: PathBuf,
        /// The PCR bank to replay PCR 10 in (sha1 or sha256).
        #[arg(long, default_value = "sha256", value_parser = parse_bank)]
        bank: HashAlg,
        /// The expected PCR 10 value (hex, e.g. from `tpm2_pcrread`): a different replay is
        /// untrusted.
        #[arg(long, value_name = "HEX", value_parser = parse_hex)]
        pcr10: Option<Hex>,
        /// Also accept this `boot_aggregate` digest (hex; repeatable), e.g. computed from the
        /// device's PCR 0-9.
        #[arg(long = "boot-aggregate", value_name = "HEX", value_parser = parse_hex)]
        boot_aggregates: Vec<Hex>,
        /// Print a JSON verdict instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `vouch-fleet runtime-policy`.
#[derive(Args, Debug)]
pub struct RuntimePolicyArgs {
    #[command(subcommand)]
    command: RuntimePolicyCommand,
}

#[derive(Subcommand, Debug)]
enum RuntimePolicyCommand {
    /// Build a Keylime runtime policy from a file tree's SHA-256 digests, the initramfs
    /// images the device boots and/or a known-good IMA measurement list (any combination).
    #[command(group = clap::ArgGroup::new("source").required(true).multiple(true)
        .args(["tree", "initrds", "log"]))]
    Create {
        /// A root file system (mounted or `/`): every regular file under it, recorded by its
        /// path from that root (symbolic links are not followed, other file systems mounted
        /// below it are not entered).
        #[arg(long, value_name = "DIR")]
        tree: Option<PathBuf>,
        /// An initramfs image as the distribution made it (e.g. `/boot/initrd.img-$(uname
        /// -r)`; repeatable): every regular file in it under its path at run time (`/init`,
        /// `/usr/bin/sh`, ...), which IMA measures before the root file system is mounted.
        /// Uncompressed cpio archives followed by zstd, gzip or xz compressed ones.
        #[arg(long = "initrd", value_name = "FILE")]
        initrds: Vec<PathBuf>,
        /// A known-good measurement list (binary or text): every entry's digest under its path
        /// (violations are left out).
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
        /// An `excludes` pattern for the policy (repeatable); with `--tree`, matching paths are
        /// also not hashed.
        #[arg(long = "exclude", value_name = "REGEX")]
        excludes: Vec<String>,
        /// Where to write the policy (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

fn parse_bank(s: &str) -> Result<HashAlg, String> {
    match s {
        "sha1" => Ok(HashAlg::Sha1),
        "sha256" => Ok(HashAlg::Sha256),
        _ => Err(format!("unknown bank {s:?} (sha1, sha256)")),
    }
}

/// Bytes given in hex on the command line.
#[derive(Debug, Clone)]
pub struct Hex(Vec<u8>);

fn parse_hex(s: &str) -> Result<Hex, String> {
    let t = s.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    hex::decode(t)
        .map(Hex)
        .map_err(|_| format!("{s:?} is not hex"))
}

/// Why an `ima` or `runtime-policy` command failed.
#[derive(Debug, thiserror::Error)]
pub enum ImaCliError {
    /// A file could not be read.
    #[error("--{flag} {path}: cannot read")]
    Read {
        /// The option naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The runtime policy is not usable.
    #[error("--policy {path}: unusable runtime policy")]
    Policy {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        source: PolicyError,
    },
    /// The `--exclude` patterns do not make a usable policy.
    #[error("--exclude")]
    Exclude(#[source] PolicyError),
    /// The binary list does not parse.
    #[error("--log {path}: malformed IMA measurement list")]
    Binary {
        /// The file.
        path: PathBuf,
        /// What was wrong and where.
        source: ParseError,
    },
    /// The text list does not parse.
    #[error("--log {path}: malformed IMA measurement list")]
    Text {
        /// The file.
        path: PathBuf,
        /// What was wrong and where.
        source: AsciiError,
    },
    /// A file of the tree could not be read.
    #[error("--tree: cannot read {path}")]
    Tree {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An initramfs image cannot be read.
    #[error("--initrd {path}")]
    Initrd {
        /// The image.
        path: PathBuf,
        /// What is wrong with it, and where.
        source: InitramfsError,
    },
    /// The policy could not be encoded.
    #[error("cannot encode the runtime policy")]
    Encode(#[source] PolicyError),
    /// Writing the output failed.
    #[error("--out {path}: cannot write")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Serializing the JSON verdict failed.
    #[error("cannot encode the verdict as JSON")]
    Json(#[source] serde_json::Error),
}

impl ImaArgs {
    /// The command's name for messages.
    pub fn name(&self) -> &'static str {
        "ima check"
    }
}

impl RuntimePolicyArgs {
    /// The command's name for messages.
    pub fn name(&self) -> &'static str {
        "runtime-policy create"
    }
}

/// Runs `vouch-fleet ima ...`.
pub fn run(args: ImaArgs) -> Result<Outcome, CliError> {
    let ImaCommand::Check {
        policy,
        log,
        bank,
        pcr10,
        boot_aggregates,
        json,
    } = args.command;
    let boot_aggregates = boot_aggregates.into_iter().map(|h| h.0).collect();
    Ok(check(
        &policy,
        &log,
        bank,
        pcr10.as_ref().map(|h| h.0.as_slice()),
        boot_aggregates,
        json,
    )?)
}

/// Runs `vouch-fleet runtime-policy ...`.
pub fn run_runtime_policy(args: RuntimePolicyArgs) -> Result<Outcome, CliError> {
    let RuntimePolicyCommand::Create {
        tree,
        initrds,
        log,
        excludes,
        out,
    } = args.command;
    Ok(create(
        tree.as_deref(),
        &initrds,
        log.as_deref(),
        excludes,
        out.as_deref(),
    )?)
}

/// Streams the entries of a binary or text list to `each` (with each entry's size in the
/// binary list, 0 for text). A text list starts with a PCR number in ASCII; a binary one with
/// a little-endian PCR index, whose first byte is never an ASCII digit.
pub fn stream_log(path: &Path, mut each: impl FnMut(Entry, u64)) -> Result<(), ImaCliError> {
    let read_err = |source| ImaCliError::Read {
        flag: "log",
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let text = reader
        .fill_buf()
        .map_err(read_err)?
        .first()
        .is_some_and(u8::is_ascii_digit);
    if text {
        let mut line = String::new();
        let mut n = 0u64;
        loop {
            line.clear();
            let got = reader.read_line(&mut line).map_err(read_err)?;
            if got == 0 {
                return Ok(());
            }
            n += 1;
            match ascii::parse_line(&line) {
                Ok(Some(e)) => each(e, 0),
                Ok(None) => {}
                Err(kind) => {
                    return Err(ImaCliError::Text {
                        path: path.to_path_buf(),
                        source: AsciiError { line: n, kind },
                    })
                }
            }
        }
    }
    let bin_err = |source| ImaCliError::Binary {
        path: path.to_path_buf(),
        source,
    };
    let mut decoder = Decoder::new(None);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let got = reader.read(&mut chunk).map_err(read_err)?;
        if got == 0 {
            return decoder.finish().map_err(bin_err);
        }
        decoder.feed(&chunk[..got]);
        while let Some(d) = decoder.next_entry().map_err(bin_err)? {
            each(d.entry, d.len);
        }
    }
}

fn load_policy(path: &Path) -> Result<RuntimePolicy, ImaCliError> {
    let bytes = std::fs::read(path).map_err(|source| ImaCliError::Read {
        flag: "policy",
        path: path.to_path_buf(),
        source,
    })?;
    RuntimePolicy::from_json(&bytes).map_err(|source| ImaCliError::Policy {
        path: path.to_path_buf(),
        source,
    })
}

/// The replay of PCR 10 and how it compares with `--pcr10`.
#[derive(Serialize)]
struct PcrReport {
    bank: HashAlg,
    pcr: u32,
    #[serde(serialize_with = "ser_hex")]
    replayed: Vec<u8>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_hex"
    )]
    expected: Option<Vec<u8>>,
    matched: Option<bool>,
}

fn ser_hex<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

fn ser_opt_hex<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&hex::encode(v)),
        None => s.serialize_none(),
    }
}

#[derive(Serialize)]
struct CheckReport<'a> {
    policy: &'a Path,
    log: &'a Path,
    replay: PcrReport,
    #[serde(flatten)]
    verdict: &'a ImaVerdict,
}

fn check(
    policy_path: &Path,
    log_path: &Path,
    bank: HashAlg,
    pcr10: Option<&[u8]>,
    boot_aggregates: Vec<Vec<u8>>,
    json: bool,
) -> Result<Outcome, ImaCliError> {
    let policy = load_policy(policy_path)?;
    let mut appraiser = Appraiser::new(&policy)
        .map_err(|source| ImaCliError::Policy {
            path: policy_path.to_path_buf(),
            source,
        })?
        .with_boot_aggregates(boot_aggregates);
    let mut replay = ReplayState::new(bank, IMA_PCR).expect("sha1 and sha256 replay");
    stream_log(log_path, |e, len| appraiser.push(&e, len, &mut replay))?;
    let mut verdict = appraiser.finish();
    let matched = pcr10.map(|p| replay.matches(p));
    // A replay that is not the expected PCR 10 makes the list untrusted whatever its entries.
    let trusted = verdict.trusted && matched != Some(false);
    verdict.trusted = trusted;
    if json {
        let report = CheckReport {
            policy: policy_path,
            log: log_path,
            replay: PcrReport {
                bank,
                pcr: IMA_PCR,
                replayed: replay.value.clone(),
                expected: pcr10.map(<[u8]>::to_vec),
                matched,
            },
            verdict: &verdict,
        };
        let text = serde_json::to_string_pretty(&report).map_err(ImaCliError::Json)?;
        println!("{text}");
    } else {
        for f in &verdict.failures {
            println!("FAIL  {f}");
        }
        if verdict.failed > verdict.failures.len() as u64 {
            println!(
                "FAIL  ... {} more failing entries not listed",
                verdict.failed - verdict.failures.len() as u64
            );
        }
        println!(
            "PCR {IMA_PCR} ({bank}) replays to {}{}",
            hex::encode(&replay.value),
            match matched {
                Some(true) => " = --pcr10",
                Some(false) => " != --pcr10",
                None => "",
            }
        );
        let counts = format!(
            "{} entries, {} excluded, {} by signature",
            verdict.entries, verdict.excluded, verdict.signed
        );
        if trusted {
            println!("trusted: {counts}");
        } else {
            println!("untrusted: {} failing entries of {counts}", verdict.failed);
        }
    }
    Ok(Outcome::of(trusted))
}

fn create(
    tree: Option<&Path>,
    initrds: &[PathBuf],
    log: Option<&Path>,
    excludes: Vec<String>,
    out: Option<&Path>,
) -> Result<Outcome, ImaCliError> {
    let mut policy = RuntimePolicy::empty();
    policy.excludes = excludes;
    let compiled = policy.compile().map_err(ImaCliError::Exclude)?;
    let mut summary = Vec::new();
    if let Some(log) = log {
        let mut violations = 0u64;
        let mut entries = 0u64;
        stream_log(log, |e, _| {
            entries += 1;
            if e.is_violation() {
                violations += 1;
            } else {
                // One entry at a time: the list is never held whole.
                policy.add_entry(&e);
            }
        })?;
        summary.push(format!(
            "{} paths from {entries} entries of {} ({violations} violations left out)",
            policy.digests.len(),
            log.display()
        ));
    }
    if let Some(root) = tree {
        let mut files = 0u64;
        let dev = std::fs::metadata(root)
            .map_err(|source| ImaCliError::Tree {
                path: root.to_path_buf(),
                source,
            })?
            .dev();
        walk(
            root,
            Path::new("/"),
            dev,
            &compiled,
            &mut policy,
            &mut files,
        )?;
        summary.push(format!("{files} files hashed under {}", root.display()));
    }
    for path in initrds {
        let image = std::fs::read(path).map_err(|source| ImaCliError::Read {
            flag: "initrd",
            path: path.clone(),
            source,
        })?;
        let mut files = 0u64;
        let mut skipped = 0u64;
        let segments = initramfs::read_files(&image, initramfs::DEFAULT_MAX_UNPACKED, &mut |f| {
            // `--exclude` applies as for the tree: an excluded path is not recorded.
            if compiled.excluded(&f.path) {
                skipped += 1;
            } else {
                policy.allow(&f.path, &f.sha256);
                files += 1;
            }
        })
        .map_err(|source| ImaCliError::Initrd {
            path: path.clone(),
            source,
        })?;
        let parts: Vec<String> = segments
            .iter()
            .map(|s| format!("{} {} files", s.format, s.files))
            .collect();
        summary.push(format!(
            "{files} files of {} ({}){}",
            path.display(),
            parts.join(", "),
            if skipped > 0 {
                format!(", {skipped} excluded")
            } else {
                String::new()
            }
        ));
    }
    let summary = summary.join("; ");
    let text = policy.to_json().map_err(ImaCliError::Encode)?;
    match out {
        None => println!("{text}"),
        Some(path) => {
            std::fs::write(path, format!("{text}\n")).map_err(|source| ImaCliError::Write {
                path: path.to_path_buf(),
                source,
            })?;
            eprintln!(
                "runtime-policy create: {summary}; written to {}",
                path.display()
            );
        }
    }
    Ok(Outcome::Done)
}

/// Hashes every regular file under `dir` (recorded as `rel`, its path from the tree's root),
/// skipping excluded paths, not following symbolic links and staying on the root's file system
/// `dev` (so `/proc` and `/sys` are not read when the tree is `/`).
fn walk(
    dir: &Path,
    rel: &Path,
    dev: u64,
    compiled: &vouch_attest::ima::runtime_policy::CompiledPolicy,
    policy: &mut RuntimePolicy,
    files: &mut u64,
) -> Result<(), ImaCliError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImaCliError::Tree { path, source }
    };
    let mut list: Vec<_> = std::fs::read_dir(dir)
        .map_err(err(dir))?
        .collect::<Result<_, _>>()
        .map_err(err(dir))?;
    list.sort_by_key(|e| e.file_name());
    for ent in list {
        let path = ent.path();
        let rel = rel.join(ent.file_name());
        let rel_str = rel.to_string_lossy();
        if compiled.excluded(&rel_str) {
            continue;
        }
        let ty = ent.file_type().map_err(err(&path))?;
        if ty.is_dir() {
            if ent.metadata().map_err(err(&path))?.dev() == dev {
                walk(&path, &rel, dev, compiled, policy, files)?;
            }
        } else if ty.is_file() {
            let mut f = std::fs::File::open(&path).map_err(err(&path))?;
            let mut h = sha2::Sha256::new();
            std::io::copy(&mut f, &mut h).map_err(err(&path))?;
            policy.allow(&rel_str, &h.finalize());
            *files += 1;
        }
    }
    Ok(())
}
