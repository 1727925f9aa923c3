//! `vouch-fleet eventlog`: replay a TCG event log into PCR values, or show its events and the
//! boot state they record. All interpretation is done by `vouch_attest::eventlog`; this module
//! reads the file and prints.

use super::{CliError, Outcome};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use vouch_attest::eventlog::{BootState, DigestCheck, EventData, EventLog, ParseError};
use vouch_attest::PcrBanks;

/// Arguments of `vouch-fleet eventlog`.
#[derive(Args, Debug)]
pub struct EventlogArgs {
    #[command(subcommand)]
    command: EventlogCommand,
}

#[derive(Subcommand, Debug)]
enum EventlogCommand {
    /// Replay a binary event log (binary_bios_measurements) into PCR values.
    Replay {
        /// The event log file.
        file: PathBuf,
        /// Print `{"format": ..., "events": N, "banks": {...}}`.
        #[arg(long)]
        json: bool,
    },
    /// Show every event (PCR, type, digests, decoded data, digest check) and the boot state.
    Show {
        /// The event log file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Why an `eventlog` command failed.
#[derive(Debug, thiserror::Error)]
pub enum EventlogCliError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid event log.
    #[error("{path}: malformed event log")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong and where.
        source: ParseError,
    },
    /// Writing the output failed.
    #[error("cannot write the output")]
    Write(#[source] std::io::Error),
    /// Serializing the JSON output failed.
    #[error("cannot serialize the output")]
    Json(#[source] serde_json::Error),
}

impl EventlogArgs {
    /// The command's name for messages: `eventlog replay` or `eventlog show`.
    pub fn name(&self) -> &'static str {
        match self.command {
            EventlogCommand::Replay { .. } => "eventlog replay",
            EventlogCommand::Show { .. } => "eventlog show",
        }
    }
}

/// Runs `vouch-fleet eventlog ...`.
pub fn run(args: EventlogArgs) -> Result<Outcome, CliError> {
    match args.command {
        EventlogCommand::Replay { file, json } => with_log(&file, |log| replay(log, json))?,
        EventlogCommand::Show { file, json } => with_log(&file, |log| show(log, json))?,
    }
    Ok(Outcome::Done)
}

fn with_log(
    path: &Path,
    f: impl FnOnce(&EventLog<'_>) -> Result<String, EventlogCliError>,
) -> Result<(), EventlogCliError> {
    let bytes = std::fs::read(path).map_err(|source| EventlogCliError::Read {
        path: path.to_owned(),
        source,
    })?;
    let log = EventLog::parse(&bytes).map_err(|source| EventlogCliError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let out = f(&log)?;
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .map_err(EventlogCliError::Write)
}

fn json_str(s: &str) -> Result<String, EventlogCliError> {
    serde_json::to_string(s).map_err(EventlogCliError::Json)
}

/// `{"sha256": {"0": "<hex>", ...}, ...}` with PCRs in numeric order.
fn banks_json(pcrs: &PcrBanks) -> Result<String, EventlogCliError> {
    let mut banks = Vec::new();
    for (alg, bank) in pcrs.banks() {
        let mut values = Vec::new();
        for (pcr, v) in bank {
            values.push(format!("\"{pcr}\": \"{}\"", hex::encode(v)));
        }
        banks.push(format!(
            "{}: {{{}}}",
            json_str(&alg.name())?,
            values.join(", ")
        ));
    }
    Ok(format!("{{{}}}", banks.join(", ")))
}

fn replay(log: &EventLog<'_>, json: bool) -> Result<String, EventlogCliError> {
    let pcrs = log.replay();
    if json {
        return Ok(format!(
            "{{\"format\": {}, \"events\": {}, \"banks\": {}}}\n",
            json_str(log.format.name())?,
            log.events.len(),
            banks_json(&pcrs)?
        ));
    }
    let mut out = format!(
        "format: {}\nevents: {}\n",
        log.format.name(),
        log.events.len()
    );
    for (alg, bank) in pcrs.banks() {
        out.push_str(&format!("{alg}:\n"));
        for (pcr, v) in bank {
            out.push_str(&format!("  PCR{pcr:<3} {}\n", hex::encode(v)));
        }
    }
    Ok(out)
}

#[derive(Serialize)]
struct ShownEvent<'a> {
    index: usize,
    offset: usize,
    pcr: u32,
    event_type: String,
    digests: &'a vouch_attest::eventlog::DigestList<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<EventData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decode_error: Option<String>,
    digest_check: DigestCheck,
}

#[derive(Serialize)]
struct Shown<'a> {
    format: &'static str,
    events: Vec<ShownEvent<'a>>,
    boot_state: BootState,
}

fn show(log: &EventLog<'_>, json: bool) -> Result<String, EventlogCliError> {
    let events: Vec<ShownEvent<'_>> = log
        .events
        .iter()
        .map(|e| {
            let (data, decode_error) = match e.decode() {
                Ok(d) => (Some(d), None),
                Err(err) => (None, Some(vouch_attest::errors::chain(&err))),
            };
            ShownEvent {
                index: e.index,
                offset: e.offset,
                pcr: e.pcr,
                event_type: e.event_type.name(),
                digests: &e.digests,
                data,
                decode_error,
                digest_check: e.check_digest(),
            }
        })
        .collect();
    let shown = Shown {
        format: log.format.name(),
        events,
        boot_state: log.boot_state(),
    };
    if json {
        let mut s = serde_json::to_string_pretty(&shown).map_err(EventlogCliError::Json)?;
        s.push('\n');
        return Ok(s);
    }
    text_show(&shown)
}

fn text_show(shown: &Shown<'_>) -> Result<String, EventlogCliError> {
    let mut out = format!("format: {}\n", shown.format);
    for e in &shown.events {
        let check = match &e.digest_check {
            DigestCheck::Verified { .. } => "digest ok".to_owned(),
            DigestCheck::Mismatch { banks } => {
                let b: Vec<String> = banks.iter().map(|a| a.name()).collect();
                format!("DIGEST MISMATCH ({})", b.join(","))
            }
            DigestCheck::NotCheckable => "digest not checkable".to_owned(),
            DigestCheck::NotExtended => "not extended".to_owned(),
        };
        let pcr = if e.pcr == vouch_attest::eventlog::NO_PCR {
            "  -".to_owned()
        } else {
            format!("{:>3}", e.pcr)
        };
        out.push_str(&format!(
            "#{:<4} PCR{pcr} {:<34} [{check}]\n",
            e.index, e.event_type
        ));
        for d in e.digests.iter() {
            out.push_str(&format!(
                "        {:<8} {}\n",
                d.alg.name(),
                hex::encode(d.bytes)
            ));
        }
        if let Some(d) = &e.data {
            let text = serde_json::to_string(d).map_err(EventlogCliError::Json)?;
            out.push_str(&format!("        {text}\n"));
        }
        if let Some(err) = &e.decode_error {
            out.push_str(&format!("        decode error: {err}\n"));
        }
    }
    let st = serde_json::to_string_pretty(&shown.boot_state).map_err(EventlogCliError::Json)?;
    out.push_str("boot state:\n");
    out.push_str(&st);
    out.push('\n');
    Ok(out)
}
