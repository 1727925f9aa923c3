//! Answering a challenge: quote the requested PCRs over the fleet's nonce and attach the firmware
//! event log (gzip-compressed; only what was appended when the fleet holds the rest) and, when the
//! fleet asks, the IMA measurement list's entries from the offset it names ([`crate::ima`]).

use super::mqtt::tpm_call;
use crate::tpm::worker::TpmClient;
use crate::tpm::{PcrSelection, TpmError};
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use vouch_attest::protocol::{AttestChallenge, AttestationReport, ImaEvidence, KnownLog};

/// Shortest nonce quoted: the fleet issues 32 random bytes; anything much shorter is not a
/// fresh challenge (a 0-byte nonce would make the quote replayable).
pub const MIN_NONCE: usize = 16;

/// Longest nonce a TPM accepts as qualifying data.
pub const MAX_NONCE: usize = 64;

/// Largest event log the agent reads (real logs are tens of KiB; CCEL logs up to a few hundred).
pub const MAX_EVENTLOG: u64 = 4 << 20;

/// Errors answering a challenge.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The nonce is shorter than the fleet ever issues or longer than a TPM accepts.
    #[error("challenge nonce of {0} bytes refused: nonces are {MIN_NONCE} to {MAX_NONCE} bytes")]
    Nonce(usize),
    /// The TPM failed to quote.
    #[error(transparent)]
    Tpm(#[from] TpmError),
    /// The IMA measurement list could not be read.
    #[error(transparent)]
    Ima(#[from] crate::ima::ImaReadError),
    /// The event log could not be read.
    #[error("reading event log {path} failed")]
    EventLog {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The event log part of a report: the gzip-compressed log, or only what was appended since the
/// part the fleet holds, and the offset it starts at.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LogPart {
    /// The bytes, gzip-compressed; `None` when the machine has no event log.
    pub gz: Option<Vec<u8>>,
    /// Where they start in the log (0: the whole log); `None` without a log.
    pub from: Option<u64>,
}

/// Reads the event log and gzips it, or only what follows `known` when the log still starts with
/// the part the fleet holds (steady state: usually nothing was appended); no log when the file
/// does not exist (e.g. no firmware TPM log).
pub fn read_eventlog(path: &Path, known: Option<&KnownLog>) -> Result<LogPart, AnswerError> {
    let err = |source| AnswerError::EventLog {
        path: path.to_path_buf(),
        source,
    };
    let data = match std::fs::File::open(path) {
        Ok(f) => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_EVENTLOG), &mut buf)
                .map_err(err)?;
            buf
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LogPart::default()),
        Err(e) => return Err(err(e)),
    };
    log_part(&data, known).map_err(err)
}

/// The report's part of the event log `data`: all of it, or what follows `known` when `data`
/// starts with it.
pub fn log_part(data: &[u8], known: Option<&KnownLog>) -> std::io::Result<LogPart> {
    let from = known
        .and_then(|k| {
            let len = usize::try_from(k.len).ok()?;
            let prefix = data.get(..len)?;
            (Sha256::digest(prefix)[..] == k.sha256[..]).then_some(len)
        })
        .unwrap_or(0);
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&data[from..])?;
    Ok(LogPart {
        gz: Some(gz.finish()?),
        from: u64::try_from(from).ok(),
    })
}

/// Reads the IMA entries from `offset` and gzips them (`None` when the list does not exist:
/// IMA is off in this kernel, which the fleet then reports).
pub fn read_ima(path: &Path, offset: u64) -> Result<Option<ImaEvidence>, AnswerError> {
    if !path.exists() {
        return Ok(None);
    }
    let chunk = crate::ima::read_chunk(path, offset, crate::ima::MAX_CHUNK)?;
    let err = |source| AnswerError::EventLog {
        path: path.to_path_buf(),
        source,
    };
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&chunk.bytes).map_err(err)?;
    Ok(Some(ImaEvidence {
        offset: chunk.offset,
        hash_len: chunk
            .hash_len
            .and_then(|l| u8::try_from(l).ok())
            .unwrap_or(0),
        entries_gz: gz.finish().map_err(err)?,
        more: chunk.more,
    }))
}

/// Checks a challenge before anything is asked of the TPM; returns its PCR selection.
pub fn check(challenge: &AttestChallenge) -> Result<PcrSelection, AnswerError> {
    if !(MIN_NONCE..=MAX_NONCE).contains(&challenge.nonce.len()) {
        return Err(AnswerError::Nonce(challenge.nonce.len()));
    }
    // The selection was checked when the message was decoded (it travels typed).
    Ok(challenge.pcrs.clone())
}

/// Makes the attestation report for `challenge`.
pub async fn answer(
    tpm: &TpmClient,
    eventlog: &Path,
    ima_log: &Path,
    challenge: &AttestChallenge,
) -> Result<AttestationReport, AnswerError> {
    let selection = check(challenge)?;
    let nonce = challenge.nonce.clone();
    let quote = tpm_call(tpm, move |t| t.quote(&nonce, &selection)).await?;
    let path = eventlog.to_path_buf();
    let known = challenge.eventlog_known.clone();
    let log = tokio::task::spawn_blocking(move || read_eventlog(&path, known.as_ref()))
        .await
        .map_err(|_| TpmError::WorkerGone)??;
    let ima = match challenge.ima_offset {
        None => None,
        Some(offset) => {
            let path = ima_log.to_path_buf();
            tokio::task::spawn_blocking(move || read_ima(&path, offset))
                .await
                .map_err(|_| TpmError::WorkerGone)??
        }
    };
    Ok(AttestationReport {
        nonce: challenge.nonce.clone(),
        quote: quote.attest,
        signature: quote.signature,
        pcrs: quote.pcrs.to_json(),
        eventlog_gz: log.gz,
        eventlog_from: log.from,
        ima,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(nonce: usize, pcrs: &str) -> AttestChallenge {
        AttestChallenge {
            nonce: vec![7; nonce],
            pcrs: pcrs.parse().unwrap(),
            ima_offset: None,
            eventlog_known: None,
        }
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut out).unwrap();
        out
    }

    #[test]
    fn only_what_follows_the_part_the_fleet_holds_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &log).unwrap();
        let known = |len: usize, of: &[u8]| KnownLog {
            len: len as u64,
            sha256: Sha256::digest(&of[..len]).to_vec(),
        };
        // Nothing known: the whole log, from 0.
        let whole = read_eventlog(&path, None).unwrap();
        assert_eq!(
            (whole.from, gunzip(whole.gz.as_ref().unwrap())),
            (Some(0), log.clone())
        );
        // The fleet holds all of it: nothing follows.
        let same = read_eventlog(&path, Some(&known(log.len(), &log))).unwrap();
        assert_eq!(same.from, Some(log.len() as u64));
        assert!(gunzip(same.gz.as_ref().unwrap()).is_empty());
        assert!(same.gz.unwrap().len() < 64);
        // It holds a prefix: the rest follows.
        let part = read_eventlog(&path, Some(&known(40_000, &log))).unwrap();
        assert_eq!(part.from, Some(40_000));
        assert_eq!(gunzip(part.gz.as_ref().unwrap()), &log[40_000..]);
        // What it holds is not this log's start (another boot), or longer than the log: all of it.
        let mut other = log.clone();
        other[10] ^= 1;
        for k in [
            known(40_000, &other),
            KnownLog {
                len: 60_000,
                sha256: vec![0; 32],
            },
        ] {
            let all = read_eventlog(&path, Some(&k)).unwrap();
            assert_eq!(
                (all.from, gunzip(all.gz.as_ref().unwrap())),
                (Some(0), log.clone())
            );
        }
        // No log at all.
        assert_eq!(
            read_eventlog(&dir.path().join("none"), None).unwrap(),
            LogPart::default()
        );
    }

    #[test]
    fn short_long_and_empty_nonces_are_refused_before_the_tpm() {
        for n in [0, 1, MIN_NONCE - 1, MAX_NONCE + 1] {
            let e = check(&challenge(n, "sha256:0")).unwrap_err();
            assert!(matches!(e, AnswerError::Nonce(m) if m == n), "{e}");
            assert!(e.to_string().contains("16 to 64 bytes"), "{e}");
        }
        for n in [MIN_NONCE, 32, MAX_NONCE] {
            check(&challenge(n, "sha256:0,7")).unwrap();
        }
    }
}
