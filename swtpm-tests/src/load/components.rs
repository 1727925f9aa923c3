//! In-process timings of the steps of one attestation round, to tell where end-to-end latency
//! goes: the TPM quote through `EsapiTpm` on a swtpm, the agent's event log read + gzip, the
//! agent's durable outbox write (write + fsync + rename), and the fleet's appraisal of the
//! resulting report (`Verifier::appraise`: signature, nonce, PCR digest, gunzip, log replay).

use super::stats::{Samples, Summary};
use crate::Swtpm;
use std::path::Path;
use std::time::Instant;
use vouch_agent::daemon::answer::{read_eventlog, AnswerError};
use vouch_agent::daemon::outbox::{Limits, Outbox, OutboxError};
use vouch_agent::tpm::esapi::EsapiTpm;
use vouch_agent::tpm::tcti::TctiParseError;
use vouch_agent::tpm::{PcrSelection, Tcti, Tpm, TpmError};
use vouch_attest::protocol::AttestationReport;
use vouch_attest::tpm::SelectionError;
use vouch_attest::tpm::{PublicError, TpmPublic};
/// The PCRs the fleet's challenges ask for by default (`challenge.pcrs`).
const CHALLENGE_PCRS: &str = "sha256:0-9";
use vouch_fleet::serve::verifier::{AppraisalInput, Verifier};

/// A step could not be timed.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// The swtpm's TCTI string did not parse.
    #[error("swtpm TCTI {tcti:?}")]
    Tcti {
        tcti: String,
        #[source]
        source: TctiParseError,
    },
    /// The challenge's PCR selection did not parse (agent side).
    #[error("PCR selection {CHALLENGE_PCRS}")]
    Selection(#[source] SelectionError),
    /// Opening the swtpm, reading the AK or quoting failed.
    #[error("swtpm")]
    Tpm(#[source] TpmError),
    /// The AK public area did not parse.
    #[error("AK public area")]
    AkPublic(#[source] PublicError),
    /// The event log could not be read.
    #[error("reading the event log")]
    EventLog(#[source] AnswerError),
    /// The event log file does not exist.
    #[error("event log {0} does not exist")]
    NoEventLog(std::path::PathBuf),
    /// The outbox could not be written.
    #[error("writing the outbox")]
    Outbox(#[source] OutboxError),
    /// The report made here was not trusted, so the appraisal timing would not be the normal path.
    #[error("the fleet's verifier did not trust the report: {0}")]
    Untrusted(String),
}

/// Timings of each step over `rounds` rounds.
#[derive(Debug, Clone, Copy)]
pub struct Components {
    /// `Tpm::quote` of `sha256:0-7` through `EsapiTpm` (TPM2_Quote + TPM2_PCR_Read).
    pub quote: Summary,
    /// Reading and gzipping the event log (the agent does it for every answer).
    pub eventlog_gzip: Summary,
    /// One outbox entry written durably (the agent's `Outbox::push`, with fsync).
    pub outbox_push: Summary,
    /// The fleet's appraisal of one report.
    pub appraisal: Summary,
}

fn summary(s: &Samples) -> Summary {
    // `rounds` is at least 1 (checked by the caller), so every set has samples.
    s.summary().unwrap_or(Summary {
        count: 0,
        p50_ms: f64::NAN,
        p90_ms: f64::NAN,
        p99_ms: f64::NAN,
        max_ms: f64::NAN,
    })
}

/// Times every step `rounds` times (after 3 untimed warm-up rounds) on `tpm`, which must have
/// been booted from `eventlog` so that the appraisal takes its normal, trusted path.
pub fn measure(tpm: &Swtpm, eventlog: &Path, rounds: u32) -> Result<Components, ComponentError> {
    let tcti_text = tpm.tcti();
    let tcti: Tcti = tcti_text.parse().map_err(|source| ComponentError::Tcti {
        tcti: tcti_text.clone(),
        source,
    })?;
    let mut esapi =
        EsapiTpm::open(&tcti, &tpm.dir().join("bench-state")).map_err(ComponentError::Tpm)?;
    let ak_bytes = esapi.attestation_key().map_err(ComponentError::Tpm)?.public;
    let (ak, _) = TpmPublic::parse(&ak_bytes).map_err(ComponentError::AkPublic)?;
    let selection: PcrSelection = CHALLENGE_PCRS.parse().map_err(ComponentError::Selection)?;
    let (mut outbox, _) = Outbox::open(&tpm.dir().join("bench-outbox"), Limits::DEFAULT)
        .map_err(ComponentError::Outbox)?;
    let verifier = Verifier::new();
    let (mut quote, mut gzip, mut push, mut appraisal) = (
        Samples::new(),
        Samples::new(),
        Samples::new(),
        Samples::new(),
    );
    let mut previous: Option<Vec<u8>> = None;
    for round in 0..rounds.max(1).saturating_add(3) {
        let warm = round >= 3;
        let nonce: [u8; 32] = rand::random();
        let t = Instant::now();
        let q = esapi
            .quote(&nonce, &selection)
            .map_err(ComponentError::Tpm)?;
        let quoted = t.elapsed();
        let t = Instant::now();
        let gz = read_eventlog(eventlog, None)
            .map_err(ComponentError::EventLog)?
            .gz
            .ok_or_else(|| ComponentError::NoEventLog(eventlog.to_path_buf()))?;
        let gzipped = t.elapsed();
        let report = AttestationReport {
            nonce: nonce.to_vec(),
            quote: q.attest,
            signature: q.signature,
            pcrs: q.pcrs.to_json(),
            eventlog_gz: Some(gz),
            eventlog_from: None,
            ima: None,
        };
        let payload = vouch_attest::protocol::encode(&report);
        let t = Instant::now();
        let (seq, _) = outbox
            .push("devices/bench/attestation", &payload)
            .map_err(ComponentError::Outbox)?;
        let pushed = t.elapsed();
        outbox.remove(seq).map_err(ComponentError::Outbox)?;
        let t = Instant::now();
        let a = verifier.appraise(&AppraisalInput {
            ak: &ak,
            nonce: &nonce,
            selection: &selection,
            report: &report,
            previous: previous.as_deref(),
            policy: vouch_fleet::serve::policies::Resolved::None,
            policy_id: None,
            held: None,
        });
        let appraised = t.elapsed();
        if !a.trusted() {
            let reasons: Vec<String> = a.reasons.iter().map(ToString::to_string).collect();
            return Err(ComponentError::Untrusted(reasons.join("; ")));
        }
        previous = a.verified_attest;
        if warm {
            quote.push(quoted);
            gzip.push(gzipped);
            push.push(pushed);
            appraisal.push(appraised);
        }
    }
    Ok(Components {
        quote: summary(&quote),
        eventlog_gzip: summary(&gzip),
        outbox_push: summary(&push),
        appraisal: summary(&appraisal),
    })
}
