//! One report's IMA evidence appraised against the state the verifier kept from the last
//! accepted report: the decision the fleet makes per report (the CLI's `ima check` is the
//! same appraisal over a whole list).
//!
//! The agent sends the entries from the byte offset of the stored [`ReplayState`] on. They are
//! replayed from that state; the quoted PCR 10 must equal the replay after some prefix of them
//! (the kernel appends and extends while the agent quotes and reads, so the quote may lag the
//! list by a few entries; as Keylime does, the last matching prefix is taken). Only that prefix
//! is appraised and accepted: the new state is the replay after it, and the entries after it
//! are sent again with the next report. A report that carries only part of a long list
//! (`more`) is accepted provisionally when none of it matches yet
//! ([`IncrementFailure::Incomplete`]). Every problem is a typed [`IncrementFailure`].

use super::appraise::{Appraiser, ImaVerdict};
use super::binary::{Decoder, ParseError};
use super::replay::{ReplayError, ReplayState};
use serde::Serialize;

/// A problem with a report's IMA evidence as a whole (entries failing the policy are in the
/// verdict).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncrementFailure {
    /// The entries do not start where the last accepted report ended.
    #[error("IMA entries sent from byte offset {got}, the verifier expects {expected}")]
    Offset {
        /// The stored state's offset.
        expected: u64,
        /// The report's.
        got: u64,
    },
    /// The entries do not parse.
    #[error("IMA list: {0}")]
    Parse(
        #[serde(serialize_with = "ser_display")]
        #[source]
        ParseError,
    ),
    /// An entry's template hash is not the hash of its data.
    #[error("{0}")]
    Replay(
        #[serde(serialize_with = "ser_display")]
        #[source]
        ReplayError,
    ),
    /// The device has more entries than the report carries and none of these replays to the
    /// quoted PCR yet: they are accepted provisionally (appraised, the state advanced) and
    /// verified when a later report of the rest reaches the quoted value, which covers them
    /// through the hash chain.
    #[error("the IMA list continues beyond the {entries} entries of this report: PCR {pcr} is verified with the rest")]
    Incomplete {
        /// The PCR.
        pcr: u32,
        /// How many entries were accepted provisionally.
        entries: u64,
    },
    /// No prefix of the entries replays to the quoted PCR.
    #[error("PCR {pcr} ({bank}) quoted as {quoted} is not the replay of the IMA list after any of the {entries} entries sent (replay of all: {replayed})")]
    Pcr {
        /// The PCR.
        pcr: u32,
        /// The bank.
        bank: String,
        /// The quoted value (hex).
        quoted: String,
        /// The replay after every entry sent (hex).
        replayed: String,
        /// How many entries were sent.
        entries: u64,
    },
}

fn ser_display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// What one report's IMA evidence comes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncrementOutcome {
    /// The state to store: after the accepted prefix, or the previous one when nothing matched.
    pub state: ReplayState,
    /// How many entries of the report the quote covers (accepted and appraised).
    pub accepted: u64,
    /// The appraisal of the accepted entries.
    pub verdict: ImaVerdict,
    /// What is wrong with the evidence as a whole.
    pub failures: Vec<IncrementFailure>,
    /// Key buffers accepted onto checked keyrings so far (see [`Appraiser::learned`]), to give
    /// the next report's appraiser.
    #[serde(skip)]
    pub learned: Vec<Vec<u8>>,
}

impl IncrementOutcome {
    /// True when the quote covers the entries and every accepted entry passed.
    pub fn trusted(&self) -> bool {
        self.failures.is_empty() && self.verdict.trusted
    }
}

/// Appraises `bytes` (binary list entries with `hash_len`-byte template hashes, starting at
/// byte `offset` of the device's list) from `previous`, against the `quoted` value of the
/// replayed PCR, with `appraiser` (which carries keys learned from earlier reports' entries
/// only as far as the caller keeps it). `more`: the device says its list holds more entries
/// than the report (see [`IncrementFailure::Incomplete`]).
pub fn appraise_increment(
    previous: &ReplayState,
    offset: u64,
    bytes: &[u8],
    hash_len: usize,
    quoted: &[u8],
    more: bool,
    mut appraiser: Appraiser,
) -> IncrementOutcome {
    let mut failures = Vec::new();
    let outcome = |failures: Vec<IncrementFailure>, appraiser: Appraiser| IncrementOutcome {
        state: previous.clone(),
        accepted: 0,
        learned: appraiser.learned().to_vec(),
        verdict: appraiser.finish(),
        failures,
    };
    if offset != previous.offset {
        failures.push(IncrementFailure::Offset {
            expected: previous.offset,
            got: offset,
        });
        return outcome(failures, appraiser);
    }
    // Pass 1: replay, remembering the last prefix whose value is the quoted one.
    let mut entries = Vec::new();
    let mut state = previous.clone();
    let mut matched = previous.matches(quoted).then_some(0usize);
    let mut decoder = Decoder::resume(hash_len, previous.entries, previous.offset);
    decoder.feed(bytes);
    loop {
        let d = match decoder.next_entry() {
            Ok(Some(d)) => d,
            Ok(None) => {
                if let Err(e) = decoder.finish() {
                    failures.push(IncrementFailure::Parse(e));
                }
                break;
            }
            Err(e) => {
                failures.push(IncrementFailure::Parse(e));
                break;
            }
        };
        if let Err(err) = state.extend(&d.entry, d.len) {
            failures.push(IncrementFailure::Replay(err));
            break;
        }
        entries.push((d.entry, d.len));
        if state.matches(quoted) {
            matched = Some(entries.len());
        }
    }
    let provisional = matched.is_none() && more && !entries.is_empty() && failures.is_empty();
    if provisional {
        failures.push(IncrementFailure::Incomplete {
            pcr: previous.pcr,
            entries: entries.len() as u64,
        });
    }
    let Some(k) = matched.or(provisional.then_some(entries.len())) else {
        failures.push(IncrementFailure::Pcr {
            pcr: previous.pcr,
            bank: previous.bank.to_string(),
            quoted: hex::encode(quoted),
            replayed: hex::encode(&state.value),
            entries: entries.len() as u64,
        });
        return outcome(failures, appraiser);
    };
    // Pass 2: appraise and accept the prefix the quote covers.
    let mut accepted = previous.clone();
    for (e, len) in &entries[..k] {
        appraiser.push(e, *len, &mut accepted);
    }
    IncrementOutcome {
        state: accepted,
        accepted: k as u64,
        learned: appraiser.learned().to_vec(),
        verdict: appraiser.finish(),
        failures,
    }
}
