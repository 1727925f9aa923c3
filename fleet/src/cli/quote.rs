//! `vouch-fleet quote verify`: checks a TPM quote against an AK, a nonce and claimed PCR values
//! and prints every check (or a JSON report), exiting OK only when all of them pass.

use crate::exit;
use clap::{Args, Subcommand};
use serde::Serialize;
use std::path::{Path, PathBuf};
use thiserror::Error;
use vouch_attest::pcrfile::{read_pcr_file, PcrFileError};
use vouch_attest::quote::{
    AkError, AkPublic, AkVerifier, Outcome, QuoteEvidence, QuoteVerification,
};
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
    /// An earlier attestation from the same AK, to check clock and boot counters.
    #[arg(long, value_name = "FILE")]
    previous: Option<PathBuf>,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
}

/// Malformed or unreadable input: exit::INPUT with one line naming the file and problem.
#[derive(Debug, Error)]
enum InputError {
    #[error("--{flag} {path}: cannot read: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--ak {path}: {source}")]
    Ak {
        path: PathBuf,
        #[source]
        source: AkError,
    },
    #[error("--{flag} {path}: {source}")]
    Attest {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: AttestError,
    },
    #[error("--sig {path}: {source}")]
    Signature {
        path: PathBuf,
        #[source]
        source: SignatureError,
    },
    #[error("--pcrs {path}: {source}")]
    Pcrs {
        path: PathBuf,
        #[source]
        source: PcrFileError,
    },
    #[error("--nonce: not hex: {0}")]
    Nonce(#[source] hex::FromHexError),
    #[error("--eventlog: not yet supported in this build")]
    EventlogUnsupported,
}

/// Runs a `quote` subcommand and returns the process exit code.
pub fn run(args: QuoteArgs) -> u8 {
    match args.command {
        QuoteCommand::Verify(v) => match verify(&v) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e}");
                exit::INPUT
            }
        },
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, InputError> {
    std::fs::read(path).map_err(|source| InputError::Read {
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
}

fn verify(args: &VerifyArgs) -> Result<u8, InputError> {
    if args.eventlog.is_some() {
        return Err(InputError::EventlogUnsupported);
    }
    let ak_bytes = read("ak", &args.ak)?;
    let ak = AkPublic::parse(&ak_bytes).map_err(|source| InputError::Ak {
        path: args.ak.clone(),
        source,
    })?;
    let verifier = AkVerifier::new(&ak).map_err(|source| InputError::Ak {
        path: args.ak.clone(),
        source,
    })?;
    let attest = read("quote", &args.quote)?;
    Attest::parse(&attest).map_err(|source| InputError::Attest {
        flag: "quote",
        path: args.quote.clone(),
        source,
    })?;
    let sig_bytes = read("sig", &args.sig)?;
    let signature = Signature::parse(&sig_bytes).map_err(|source| InputError::Signature {
        path: args.sig.clone(),
        source,
    })?;
    let nonce_text = args.nonce.trim();
    let nonce_text = nonce_text.strip_prefix("0x").unwrap_or(nonce_text);
    let nonce = hex::decode(nonce_text).map_err(InputError::Nonce)?;
    let pcr_bytes = read("pcrs", &args.pcrs)?;
    let (pcrs, _) = read_pcr_file(&pcr_bytes).map_err(|source| InputError::Pcrs {
        path: args.pcrs.clone(),
        source,
    })?;
    let previous = match &args.previous {
        None => None,
        Some(path) => {
            let bytes = read("previous", path)?;
            Attest::parse(&bytes).map_err(|source| InputError::Attest {
                flag: "previous",
                path: path.clone(),
                source,
            })?;
            Some(bytes)
        }
    };
    let result = verifier.verify_quote(&QuoteEvidence {
        attest: &attest,
        signature: &signature,
        nonce: &nonce,
        pcrs: &pcrs,
        previous: previous.as_deref(),
    });
    let verified = result.passed();
    if args.json {
        let report = Report {
            verified,
            failed: result.failures().map(|c| c.name.as_str()).collect(),
            verification: &result,
        };
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: cannot encode the report: {e}");
                return Ok(exit::INTERNAL);
            }
        }
    } else {
        print_text(&result);
    }
    Ok(if verified { exit::OK } else { exit::REJECTED })
}

fn print_text(result: &QuoteVerification) {
    for c in &result.checks {
        match &c.outcome {
            Outcome::Pass => println!("pass  {}", c.name),
            Outcome::Skipped(r) => println!("skip  {}: {r}", c.name),
            Outcome::Fail(f) => println!("FAIL  {}: {f}", c.name),
        }
    }
    let failed: Vec<&str> = result.failures().map(|c| c.name.as_str()).collect();
    if failed.is_empty() {
        println!("OK: quote verified ({} checks)", result.checks.len());
    } else {
        println!(
            "REJECTED: {} of {} checks failed: {}",
            failed.len(),
            result.checks.len(),
            failed.join(", ")
        );
    }
}
