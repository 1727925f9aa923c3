//! `vouch-fleet policy`: check an event log against a policy (`check`), or record a policy from
//! known-good devices' logs (`record`, several logs merged). Loading, evaluating, recording and
//! merging are done by `vouch_attest::policy`, the releases a policy references are applied by
//! `vouch_attest::release::effective`; this module reads files and prints.

use super::{CliError, Outcome};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::path::{Path, PathBuf};
use vouch_attest::eventlog::{EventLog, ParseError};
use vouch_attest::policy::{evaluate, preferred_bank, Evidence, Policy, PolicyError, Verdict};
use vouch_attest::HashAlg;

/// Arguments of `vouch-fleet policy`.
#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Check an event log against a policy: exit 0 only when trusted.
    Check {
        /// The policy (TOML, see tpm-policies/README.md).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// The binary event log (binary_bios_measurements).
        #[arg(long, value_name = "FILE")]
        eventlog: PathBuf,
        #[command(flatten)]
        releases: ReleasesDirArg,
        /// Print a JSON verdict instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Record a policy from known-good devices' event logs.
    Record {
        /// The binary event log (binary_bios_measurements) of a known-good boot. Repeatable
        /// (`--merge` is the same): the components of every log are unioned, and no PCR value
        /// is pinned (a PCR has one value per boot).
        #[arg(long, visible_alias = "merge", value_name = "FILE", required = true)]
        eventlog: Vec<PathBuf>,
        /// Record components only, no PCR values (implied by more than one log).
        #[arg(long)]
        no_pcrs: bool,
        /// Where to write the policy (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Description stored in the policy.
        #[arg(long)]
        description: Option<String>,
        /// Set `revoke_on_untrusted = true` in the policy.
        #[arg(long)]
        revoke_on_untrusted: bool,
        /// Pin PCR values of these banks only (repeatable; default: every bank the log has).
        /// Use the banks the fleet's challenges quote (`challenge.pcrs`, default sha256).
        #[arg(long = "bank", value_name = "ALG", value_parser = parse_bank)]
        banks: Vec<vouch_attest::HashAlg>,
        /// Pin only these PCRs, e.g. `0-9` (default: every PCR the log extends). Use the PCRs the
        /// fleet's challenges quote (`challenge.pcrs`, default 0-9): a pinned PCR the quote does
        /// not cover fails the policy.
        #[arg(long, value_name = "LIST", value_parser = parse_pcr_list)]
        pcrs: Option<PcrList>,
    },
    /// Approve PCR values for sealed secrets: a signed policy devices use with PolicyAuthorize
    /// (the same as `seal-policy sign`).
    Sign(super::policy_sign::SignArgs),
}

/// `--releases-dir`: where the releases a policy references are read from.
#[derive(Args, Debug, Clone, Default)]
pub struct ReleasesDirArg {
    /// Directory of the approved releases the policy references (`releases = [...]`).
    /// Default: `releases` beside the policy file's directory (the fleet layout).
    #[arg(long, value_name = "DIR")]
    pub releases_dir: Option<PathBuf>,
}

/// PCR indices from `--pcrs`.
#[derive(Debug, Clone)]
pub struct PcrList(Vec<u32>);

fn parse_pcr_list(s: &str) -> Result<PcrList, String> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("bad PCR list {s:?} (e.g. 0-9 or 0,2,4,7)");
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
            None => {
                let p: u32 = part.parse().map_err(|_| bad())?;
                (p, p)
            }
        };
        if lo > hi || hi > 23 {
            return Err(bad());
        }
        out.extend(lo..=hi);
    }
    Ok(PcrList(out))
}

fn parse_bank(s: &str) -> Result<vouch_attest::HashAlg, String> {
    vouch_attest::HashAlg::from_name(s)
        .filter(|a| a.digest_len().is_some())
        .ok_or_else(|| format!("unknown bank {s:?} (sha1, sha256, sha384, sha512, sm3_256)"))
}

/// Why a `policy` command failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyCliError {
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
    /// The policy is not valid.
    #[error("--policy {path}: unusable policy")]
    Policy {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        source: PolicyError,
    },
    /// The policy references a release that is missing or broken.
    #[error("--policy {path}: unusable policy")]
    Releases {
        /// The file.
        path: PathBuf,
        /// Which release and why.
        source: vouch_attest::release::EffectiveError,
    },
    /// The recorded logs cannot be merged.
    #[error("--eventlog {path}: cannot merge its components with the other logs'")]
    Merge {
        /// The log.
        path: PathBuf,
        /// Why.
        source: vouch_attest::policy::MergeError,
    },
    /// The event log does not parse.
    #[error("--eventlog {path}: malformed event log")]
    Eventlog {
        /// The file.
        path: PathBuf,
        /// What was wrong and where.
        source: ParseError,
    },
    /// The recorded policy could not be encoded.
    #[error("cannot encode the recorded policy")]
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

impl PolicyArgs {
    /// The command's name for messages: `policy check`, `policy record` or `policy sign`.
    pub fn name(&self) -> &'static str {
        match self.command {
            PolicyCommand::Check { .. } => "policy check",
            PolicyCommand::Record { .. } => "policy record",
            PolicyCommand::Sign(_) => "policy sign",
        }
    }
}

/// Runs `vouch-fleet policy ...`: `check` is [`Outcome::Rejected`] when the log is untrusted.
pub fn run(args: PolicyArgs) -> Result<Outcome, CliError> {
    let outcome = match args.command {
        PolicyCommand::Check {
            policy,
            eventlog,
            releases,
            json,
        } => check(&policy, &eventlog, &releases, json)?,
        PolicyCommand::Record {
            eventlog,
            no_pcrs,
            out,
            description,
            revoke_on_untrusted,
            banks,
            pcrs,
        } => record(
            &eventlog,
            no_pcrs,
            out.as_deref(),
            description,
            revoke_on_untrusted,
            &banks,
            pcrs.as_ref().map(|p| p.0.as_slice()),
        )?,
        PolicyCommand::Sign(a) => return super::policy_sign::run_sign(&a),
    };
    Ok(outcome)
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, PolicyCliError> {
    std::fs::read(path).map_err(|source| PolicyCliError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and validates a policy file and applies the releases it references (also used by
/// `quote verify --policy`): the effective policy, as the fleet server evaluates it.
pub fn load_policy(path: &Path, releases: &ReleasesDirArg) -> Result<Policy, PolicyCliError> {
    let bytes = read("policy", path)?;
    let text = String::from_utf8_lossy(&bytes);
    let policy = Policy::from_toml(&text).map_err(|source| PolicyCliError::Policy {
        path: path.to_path_buf(),
        source,
    })?;
    if policy.releases.is_empty() {
        return Ok(policy);
    }
    let dir = releases.releases_dir.clone().unwrap_or_else(|| {
        let parent = path.parent().unwrap_or(Path::new("."));
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        vouch_fleet::config::default_releases_dir(
            &std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf()),
        )
    });
    let store = vouch_fleet::serve::releases::ReleaseStore::load(&dir);
    vouch_attest::release::effective(&policy, |name| store.lookup(name)).map_err(|source| {
        PolicyCliError::Releases {
            path: path.to_path_buf(),
            source,
        }
    })
}

fn parse_log<'a>(path: &Path, bytes: &'a [u8]) -> Result<EventLog<'a>, PolicyCliError> {
    EventLog::parse(bytes).map_err(|source| PolicyCliError::Eventlog {
        path: path.to_path_buf(),
        source,
    })
}

#[derive(Serialize)]
struct CheckReport<'a> {
    policy: &'a Path,
    eventlog: &'a Path,
    #[serde(flatten)]
    verdict: &'a Verdict,
}

fn check(
    policy_path: &Path,
    log_path: &Path,
    releases: &ReleasesDirArg,
    json: bool,
) -> Result<Outcome, PolicyCliError> {
    let policy = load_policy(policy_path, releases)?;
    let bytes = read("eventlog", log_path)?;
    let log = parse_log(log_path, &bytes)?;
    let replay = log.replay();
    let verdict = evaluate(
        &policy,
        &Evidence {
            log: &log,
            // A log without a computable bank: no event data is trusted (data rules fail).
            bank: preferred_bank(&log).unwrap_or(HashAlg::Sha256),
            pcrs: &replay,
            firmware_version: None,
        },
    );
    if json {
        let report = CheckReport {
            policy: policy_path,
            eventlog: log_path,
            verdict: &verdict,
        };
        let text = serde_json::to_string_pretty(&report).map_err(PolicyCliError::Json)?;
        println!("{text}");
    } else {
        print_verdict(&verdict);
    }
    Ok(Outcome::of(verdict.trusted))
}

/// Prints a verdict as text: one `FAIL` line per failed rule, then `trusted` / `untrusted`.
fn print_verdict(verdict: &Verdict) {
    for f in &verdict.failures {
        println!("FAIL  {f}");
    }
    if verdict.trusted {
        println!("trusted");
    } else {
        println!(
            "untrusted: {} rule failure(s){}",
            verdict.failures.len(),
            if verdict.revoke {
                "; the policy says revoke_on_untrusted"
            } else {
                ""
            }
        );
    }
}

fn record(
    log_paths: &[PathBuf],
    no_pcrs: bool,
    out: Option<&Path>,
    description: Option<String>,
    revoke_on_untrusted: bool,
    banks: &[vouch_attest::HashAlg],
    pcrs: Option<&[u32]>,
) -> Result<Outcome, PolicyCliError> {
    let pin_pcrs = !no_pcrs && log_paths.len() == 1;
    let mut policy = Policy::empty();
    for log_path in log_paths {
        let bytes = read("eventlog", log_path)?;
        let log = parse_log(log_path, &bytes)?;
        let replay = if !pin_pcrs {
            vouch_attest::PcrBanks::new()
        } else if banks.is_empty() {
            log.replay()
        } else {
            log.replay_banks(banks)
        };
        let replay = match pcrs {
            None => replay,
            Some(keep) => {
                let mut only = vouch_attest::PcrBanks::new();
                for (alg, bank) in replay.banks() {
                    for (pcr, v) in bank.iter().filter(|(p, _)| keep.contains(p)) {
                        only.insert(alg, *pcr, v.clone());
                    }
                }
                only
            }
        };
        let recorded = Policy::record(&log, &replay);
        if pin_pcrs {
            policy = recorded;
        } else {
            vouch_attest::policy::union(&mut policy, &recorded).map_err(|source| {
                PolicyCliError::Merge {
                    path: log_path.clone(),
                    source,
                }
            })?;
        }
    }
    policy.description = Some(description.unwrap_or_else(|| {
        let names: Vec<String> = log_paths
            .iter()
            .map(|p| {
                p.file_name().map_or_else(
                    || p.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )
            })
            .collect();
        format!("recorded from {}", names.join(", "))
    }));
    policy.revoke_on_untrusted = revoke_on_untrusted;
    let text = policy.to_toml().map_err(PolicyCliError::Encode)?;
    match out {
        None => print!("{text}"),
        Some(path) => std::fs::write(path, text).map_err(|source| PolicyCliError::Write {
            path: path.to_path_buf(),
            source,
        })?,
    }
    Ok(Outcome::Done)
}
