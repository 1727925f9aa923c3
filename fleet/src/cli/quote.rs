//! `vouch-fleet quote verify`: checks a TPM quote against an AK, a nonce and claimed PCR values
//! and prints every check (or a JSON report), exiting OK only when all of them pass. With
//! `--eventlog` the log's replay is matched against the quoted PCRs (the `eventlog` check); with
//! `--policy` as well, the log and quote are evaluated against the policy (the `policy` check).
//!
//! The decision is `vouch_attest::appraisal::appraise`, the one the fleet server makes for its
//! verdicts; the quote's own selection stands for the challenge (there is none here).

use super::policy::{load_policy, PolicyCliError};
use super::{CliError, Outcome as Verified};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::path::{Path, PathBuf};
use thiserror::Error;
use vouch_attest::appraisal::{
    appraise, Appraisal, AppraisalInput, Area, BankMatch, LogCheck, LogEvidence, PolicyInput,
};
use vouch_attest::eventlog::{EventLog, ParseError};
use vouch_attest::pcrfile::{read_pcr_file, PcrFileError};
use vouch_attest::policy::Verdict;
use vouch_attest::quote::{AkError, AkPublic, AkVerifier, Outcome, QuoteVerification};
use vouch_attest::tpm::{Attest, AttestError, Signature, SignatureError};

/// `quote` subcommands.
#[derive(Debug, Args)]
pub struct QuoteArgs {
    #[command(subcommand)]
    command: QuoteCommand,
}

#[derive(Debug, Subcommand)]
enum QuoteCommand {
    /// Verify a TPM2_Quote: signature, nonce, PCR digest, and optionally counters.
    Verify(VerifyArgs),
}

/// Arguments of `quote verify`.
#[derive(Debug, Args)]
struct VerifyArgs {
    /// AK public key: PEM or DER SubjectPublicKeyInfo, TPM2B_PUBLIC or TPMT_PUBLIC (detected).
    #[arg(long, value_name = "FILE")]
    ak: PathBuf,
    /// The quote: TPMS_ATTEST (`tpm2_quote -m`) or TPM2B_ATTEST (detected).
    #[arg(long, value_name = "FILE")]
    quote: PathBuf,
    /// The signature: TPMT_SIGNATURE (`tpm2_quote -s`).
    #[arg(long, value_name = "FILE")]
    sig: PathBuf,
    /// The expected nonce (qualifying data) in hex; may be empty.
    #[arg(long, value_name = "HEX")]
    nonce: String,
    /// PCR values: tpm2-tools serialized (`tpm2_quote -o`) or JSON (detected).
    #[arg(long, value_name = "FILE")]
    pcrs: PathBuf,
    /// TCG event log to match against the quoted PCRs.
    #[arg(long, value_name = "FILE")]
    eventlog: Option<PathBuf>,
    /// Policy (TOML) to evaluate the log and quote against; needs --eventlog.
    #[arg(long, value_name = "FILE", requires = "eventlog")]
    policy: Option<PathBuf>,
    #[command(flatten)]
    releases: super::policy::ReleasesDirArg,
    /// An earlier attestation from the same AK, to check clock and boot counters.
    #[arg(long, value_name = "FILE")]
    previous: Option<PathBuf>,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
}

/// Why `quote verify` could not check the quote: malformed or unreadable input (one line
/// naming the option, file and problem), or a report that could not be encoded.
#[derive(Debug, Error)]
pub enum QuoteError {
    #[error("--{flag} {path}: cannot read")]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--ak {path}: unusable AK")]
    Ak {
        path: PathBuf,
        #[source]
        source: AkError,
    },
    #[error("--{flag} {path}: not a TPMS_ATTEST")]
    Attest {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: AttestError,
    },
    #[error("--sig {path}: not a TPMT_SIGNATURE")]
    Signature {
        path: PathBuf,
        #[source]
        source: SignatureError,
    },
    #[error("--pcrs {path}: unusable PCR values")]
    Pcrs {
        path: PathBuf,
        #[source]
        source: PcrFileError,
    },
    #[error("--nonce: not hex")]
    Nonce(#[source] hex::FromHexError),
    #[error("--eventlog {path}: malformed event log")]
    Eventlog {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
    #[error(transparent)]
    Policy(PolicyCliError),
    #[error("cannot encode the report")]
    Json(#[source] serde_json::Error),
}

impl QuoteArgs {
    /// The command's name for messages: `quote verify`.
    pub fn name(&self) -> &'static str {
        match self.command {
            QuoteCommand::Verify(_) => "quote verify",
        }
    }
}

/// Runs a `quote` subcommand: [`Verified::Done`] when every check passed, else
/// [`Verified::Rejected`].
pub fn run(args: QuoteArgs) -> Result<Verified, CliError> {
    match args.command {
        QuoteCommand::Verify(v) => Ok(verify(&v)?),
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, QuoteError> {
    std::fs::read(path).map_err(|source| QuoteError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

#[derive(Serialize)]
struct Report<'a> {
    verified: bool,
    failed: Vec<&'static str>,
    #[serde(flatten)]
    verification: &'a QuoteVerification,
    #[serde(skip_serializing_if = "Option::is_none")]
    eventlog: Option<&'a LogCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'a Verdict>,
}

/// The names of the failed checks: quote checks by name, then `selection`, `eventlog` and
/// `policy` once each.
fn failed_names(a: &Appraisal) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = a.quote.failures().map(|c| c.name.as_str()).collect();
    for (area, name) in [
        (Area::Selection, "selection"),
        (Area::Eventlog, "eventlog"),
        (Area::Policy, "policy"),
    ] {
        if a.failures.iter().any(|f| f.area() == area) {
            names.push(name);
        }
    }
    names
}

fn print_log_check(c: &LogCheck) {
    if c.banks.is_empty() {
        println!("skip  eventlog: not compared, the quote did not verify");
    }
    for b in &c.banks {
        match b {
            BankMatch::NotCompared { bank, not_compared } => {
                println!("FAIL  eventlog {bank}: {not_compared}")
            }
            BankMatch::Compared(m) if m.matched => println!(
                "pass  eventlog {}: {} quoted PCRs match the log's replay{}",
                m.bank,
                m.pcrs.len(),
                m.workaround
                    .and_then(|w| serde_json::to_value(w).ok())
                    .and_then(|v| v.as_str().map(|w| format!(" (workaround: {w})")))
                    .unwrap_or_default()
            ),
            BankMatch::Compared(m) => {
                for x in &m.mismatches {
                    println!(
                        "FAIL  eventlog {} PCR{}: replayed {} != quoted {}",
                        m.bank,
                        x.pcr,
                        hex::encode(&x.replayed),
                        hex::encode(&x.quoted)
                    );
                }
            }
        }
    }
}

fn verify(args: &VerifyArgs) -> Result<Verified, QuoteError> {
    let log_bytes = match &args.eventlog {
        Some(path) => Some(read("eventlog", path)?),
        None => None,
    };
    let log = match (&args.eventlog, &log_bytes) {
        (Some(path), Some(bytes)) => {
            Some(
                EventLog::parse(bytes).map_err(|source| QuoteError::Eventlog {
                    path: path.clone(),
                    source,
                })?,
            )
        }
        _ => None,
    };
    let policy = match &args.policy {
        Some(path) => Some(load_policy(path, &args.releases).map_err(QuoteError::Policy)?),
        None => None,
    };
    let ak_bytes = read("ak", &args.ak)?;
    let ak = AkPublic::parse(&ak_bytes).map_err(|source| QuoteError::Ak {
        path: args.ak.clone(),
        source,
    })?;
    let verifier = AkVerifier::new(&ak).map_err(|source| QuoteError::Ak {
        path: args.ak.clone(),
        source,
    })?;
    let attest = read("quote", &args.quote)?;
    Attest::parse(&attest).map_err(|source| QuoteError::Attest {
        flag: "quote",
        path: args.quote.clone(),
        source,
    })?;
    let sig_bytes = read("sig", &args.sig)?;
    let signature = Signature::parse(&sig_bytes).map_err(|source| QuoteError::Signature {
        path: args.sig.clone(),
        source,
    })?;
    let nonce_text = args.nonce.trim();
    let nonce_text = nonce_text.strip_prefix("0x").unwrap_or(nonce_text);
    let nonce = hex::decode(nonce_text).map_err(QuoteError::Nonce)?;
    let pcr_bytes = read("pcrs", &args.pcrs)?;
    let (pcrs, _) = read_pcr_file(&pcr_bytes).map_err(|source| QuoteError::Pcrs {
        path: args.pcrs.clone(),
        source,
    })?;
    let previous = match &args.previous {
        None => None,
        Some(path) => {
            let bytes = read("previous", path)?;
            Attest::parse(&bytes).map_err(|source| QuoteError::Attest {
                flag: "previous",
                path: path.clone(),
                source,
            })?;
            Some(bytes)
        }
    };
    let policy_name = args
        .policy
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let result = appraise(&AppraisalInput {
        ak: &verifier,
        attest: &attest,
        signature: &signature,
        nonce: &nonce,
        pcrs: &pcrs,
        challenged: None,
        eventlog: log
            .as_ref()
            .map_or(LogEvidence::NotChecked, LogEvidence::Log),
        policy: policy
            .as_ref()
            .map_or(PolicyInput::None, |p| PolicyInput::Policy(&policy_name, p)),
        previous: previous.as_deref(),
    });
    let failed = failed_names(&result);
    let verified = result.trusted();
    if args.json {
        let report = Report {
            verified,
            failed,
            verification: &result.quote,
            eventlog: result.eventlog.as_ref(),
            policy: result.policy.as_ref(),
        };
        let text = serde_json::to_string_pretty(&report).map_err(QuoteError::Json)?;
        println!("{text}");
    } else {
        print_text(&result, args.policy.is_some(), &failed);
    }
    Ok(Verified::of(verified))
}

fn print_text(a: &Appraisal, with_policy: bool, failed: &[&str]) {
    let result = &a.quote;
    for c in &result.checks {
        match &c.outcome {
            Outcome::Pass => println!("pass  {}", c.name),
            Outcome::Skipped(r) => println!("skip  {}: {r}", c.name),
            Outcome::Fail(f) => println!("FAIL  {}: {f}", c.name),
        }
    }
    if let Some(c) = &a.eventlog {
        print_log_check(c);
    }
    for f in a.failures.iter().filter(|f| f.area() == Area::Policy) {
        match f {
            vouch_attest::appraisal::Failure::Policy(rule) => println!("FAIL  policy {rule}"),
            other => println!("FAIL  policy: {other}"),
        }
    }
    if a.policy.as_ref().is_some_and(|v| v.trusted) {
        println!("pass  policy: trusted");
    }
    let total = result.checks.len() + usize::from(a.eventlog.is_some()) + usize::from(with_policy);
    if failed.is_empty() {
        println!("OK: quote verified ({total} checks)");
    } else {
        println!(
            "REJECTED: {} of {total} checks failed: {}",
            failed.len(),
            failed.join(", ")
        );
    }
}
