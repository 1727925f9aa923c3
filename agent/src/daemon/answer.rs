//! Answering a challenge: quote the requested PCRs over the fleet's nonce and attach the firmware
//! event log (gzip-compressed) and, when the fleet asks, the IMA measurement list's entries from
//! the offset it names ([`crate::ima`]).

use super::mqtt::tpm_call;
use crate::tpm::worker::TpmClient;
use crate::tpm::{PcrSelection, TpmError};
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::Path;
use vouch_attest::protocol::{AttestChallenge, AttestationReport, ImaEvidence};

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

/// Reads and gzips the event log; `None` when the file does not exist (e.g. no firmware TPM log).
pub fn read_eventlog(path: &Path) -> Result<Option<Vec<u8>>, AnswerError> {
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
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&data).map_err(err)?;
    Ok(Some(gz.finish().map_err(err)?))
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
    let eventlog_gz = tokio::task::spawn_blocking(move || read_eventlog(&path))
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
        eventlog_gz,
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
        }
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
