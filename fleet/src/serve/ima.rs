//! IMA runtime integrity in the server (`[ima] runtime_policy`): challenges also quote sha256
//! PCR 10 and name the offset of the device's measurement list to send from; each report's
//! entries are appraised by `vouch_attest::ima::increment` (the one decision, also behind
//! `vouch-fleet ima check`) from the replay state stored per device in the registry, so any
//! server process can continue the next report.
//!
//! A failing entry makes the verdict untrusted naming its path, digest and rule, and stays a
//! reason in every later verdict of the same boot: the entries after it are appraised as they
//! come, but what ran is not forgotten until the device reboots (a new boot starts the list and
//! the state over). A long list comes in several reports: one that says more follows and
//! matches no quoted value yet is accepted provisionally and the device challenged again at once;
//! the verdict waits for the report that reaches the quoted PCR 10 (whose hash chain covers the
//! earlier ones). Keys the list loaded onto keyrings the policy allows are kept with the state
//! too, so later reports' `ima-sig` signatures can be checked against them.

use super::verifier::Reason;
use crate::registry::ImaRecord;
use std::path::{Path, PathBuf};
use vouch_attest::errors::chain;
use vouch_attest::ima::increment::appraise_increment;
use vouch_attest::ima::runtime_policy::CompiledPolicy;
use vouch_attest::ima::{Appraiser, ReplayState, RuntimePolicy, IMA_PCR};
use vouch_attest::protocol::AttestationReport;
use vouch_attest::tpm::{Attest, AttestBody, PcrSelection};
use vouch_attest::{HashAlg, PcrBanks};

/// The bank PCR 10 is quoted and replayed in.
pub const BANK: HashAlg = HashAlg::Sha256;

/// How many failing entries a device's record keeps for later verdicts of the same boot.
const KEPT_FAILURES: usize = 100;

/// The check name of a report that carried part of a long list.
pub const INCOMPLETE: &str = "ima.incomplete";

/// Largest inflated IMA chunk accepted (the agent sends at most 512 KiB).
const MAX_CHUNK_BYTES: u64 = 4 << 20;

/// The runtime policy, loaded when the server starts.
#[derive(Debug)]
pub struct ImaSetup {
    /// The policy file.
    pub path: PathBuf,
    /// The policy ready to evaluate, or why it is not usable (verdicts then fail closed).
    pub policy: Result<CompiledPolicy, String>,
}

impl ImaSetup {
    /// Loads and compiles the runtime policy at `path`.
    pub fn load(path: &Path) -> ImaSetup {
        let policy = std::fs::read(path)
            .map_err(|e| format!("{}: {}", path.display(), chain(&e)))
            .and_then(|bytes| {
                RuntimePolicy::from_json(&bytes)
                    .and_then(|p| p.compile())
                    .map_err(|e| format!("{}: {}", path.display(), chain(&e)))
            });
        ImaSetup {
            path: path.to_path_buf(),
            policy,
        }
    }
}

/// `sel` with sha256 PCR 10 added (what an IMA challenge quotes).
pub fn with_pcr10(sel: &PcrSelection) -> PcrSelection {
    let mut banks = sel.bank_pcrs();
    match banks.iter_mut().find(|(b, _)| *b == BANK) {
        Some((_, pcrs)) if !pcrs.contains(&IMA_PCR) => {
            pcrs.push(IMA_PCR);
            pcrs.sort_unstable();
        }
        Some(_) => {}
        None => banks.push((BANK, vec![IMA_PCR])),
    }
    PcrSelection::from_bank_pcrs(banks).unwrap_or_else(|_| sel.clone())
}

/// `sel` without sha256 PCR 10: the PCRs the UEFI event log explains (PCR 10 is IMA's).
pub fn without_pcr10(sel: &PcrSelection) -> PcrSelection {
    let banks: Vec<(HashAlg, Vec<u32>)> = sel
        .bank_pcrs()
        .into_iter()
        .map(|(b, p)| {
            let p = if b == BANK {
                p.into_iter().filter(|i| *i != IMA_PCR).collect()
            } else {
                p
            };
            (b, p)
        })
        .filter(|(_, p)| !p.is_empty())
        .collect();
    PcrSelection::from_bank_pcrs(banks).unwrap_or_else(|_| sel.clone())
}

/// The stored record when it belongs to boot `boot_id`.
fn current<'a>(stored: Option<&'a ImaRecord>, boot_id: &str) -> Option<&'a ImaRecord> {
    stored.filter(|r| r.boot_id == boot_id)
}

/// The offset a challenge asks the device to send its entries from.
pub fn challenge_offset(stored: Option<&ImaRecord>, boot_id: &str) -> u64 {
    current(stored, boot_id).map_or(0, |r| r.state.offset)
}

/// What the IMA part of one report comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaOutcome {
    /// Every reason the IMA evidence is not trusted (also those kept from earlier reports of
    /// this boot).
    pub reasons: Vec<Reason>,
    /// The record to store, when it changed.
    pub store: Option<ImaRecord>,
    /// The report carried part of a long list, accepted provisionally: challenge the device
    /// again at once for the rest (no verdict until then, unless something else failed).
    pub incomplete: bool,
}

/// What the quote vouches for: the quoted sha256 PCR 10, when the quote verified (`verified`:
/// its signature checked and no `quote.*` reason) and covers it.
pub fn quoted_pcr10(
    report: &AttestationReport,
    pcrs: Option<&PcrBanks>,
    verified: bool,
) -> Option<Vec<u8>> {
    if !verified {
        return None;
    }
    let attest = Attest::parse(&report.quote).ok()?;
    let AttestBody::Quote(q) = attest.body else {
        return None;
    };
    let covered = q.pcr_select.iter().any(|(b, i)| b == BANK && i == IMA_PCR);
    if !covered {
        return None;
    }
    pcrs?.get(BANK, IMA_PCR).map(<[u8]>::to_vec)
}

/// The `boot_aggregate` digests the verified quote vouches for: IMA's hash of PCR 0-9 (sha256)
/// or 0-7 (sha1), for each of those banks the quote covers whole. The list's `boot_aggregate`
/// entry passes with one of them (as with Keylime), so a runtime policy need not list it.
pub fn quoted_boot_aggregates(
    report: &AttestationReport,
    pcrs: Option<&PcrBanks>,
    verified: bool,
) -> Vec<Vec<u8>> {
    let (true, Some(pcrs)) = (verified, pcrs) else {
        return Vec::new();
    };
    let Ok(attest) = Attest::parse(&report.quote) else {
        return Vec::new();
    };
    let AttestBody::Quote(q) = attest.body else {
        return Vec::new();
    };
    [(HashAlg::Sha256, 9), (HashAlg::Sha1, 7)]
        .into_iter()
        .filter(|(bank, last)| {
            (0..=*last).all(|i| q.pcr_select.iter().any(|(b, p)| b == *bank && p == i))
        })
        .filter_map(|(bank, _)| vouch_attest::ima::replay::boot_aggregate(bank, pcrs))
        .collect()
}

fn inflate(gz: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .take(MAX_CHUNK_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("IMA entries are not valid gzip data: {e}"))?;
    if out.len() as u64 > MAX_CHUNK_BYTES {
        return Err(format!(
            "IMA entries inflate beyond {MAX_CHUNK_BYTES} bytes"
        ));
    }
    Ok(out)
}

/// Appraises the IMA part of `report` for a device in boot `boot_id` whose stored record is
/// `stored`; `quoted` is the sha256 PCR 10 the verified quote vouches for, `boot_aggregates`
/// what [`quoted_boot_aggregates`] found.
pub fn appraise(
    setup: &ImaSetup,
    stored: Option<&ImaRecord>,
    boot_id: &str,
    report: &AttestationReport,
    quoted: Option<&[u8]>,
    boot_aggregates: &[Vec<u8>],
) -> ImaOutcome {
    let stored = current(stored, boot_id);
    let mut record = match stored {
        Some(r) => r.clone(),
        None => ImaRecord {
            boot_id: boot_id.to_string(),
            state: ReplayState::new(BANK, IMA_PCR).expect("sha256 replays"),
            failed: Vec::new(),
            keys: Vec::new(),
        },
    };
    let mut reasons: Vec<Reason> = record
        .failed
        .iter()
        .map(|f| Reason::new("ima.earlier", f))
        .collect();
    let done = |reasons, store| ImaOutcome {
        reasons,
        store,
        incomplete: false,
    };
    let policy = match &setup.policy {
        Ok(p) => p,
        Err(why) => {
            reasons.push(Reason::new("ima.policy", why));
            return done(reasons, None);
        }
    };
    let Some(evidence) = &report.ima else {
        reasons.push(Reason::new(
            "ima.missing",
            "the report has no IMA entries (IMA off in the device's kernel?)",
        ));
        return done(reasons, None);
    };
    let Some(quoted) = quoted else {
        reasons.push(Reason::new(
            "ima.not_evaluated",
            "no verified quote of sha256 PCR 10 to replay the IMA entries against",
        ));
        return done(reasons, None);
    };
    let bytes = match inflate(&evidence.entries_gz) {
        Ok(b) => b,
        Err(why) => {
            reasons.push(Reason::new("ima.size", why));
            return done(reasons, None);
        }
    };
    let hash_len = match evidence.hash_len {
        0 if bytes.is_empty() => 20,
        n => usize::from(n),
    };
    let out = appraise_increment(
        &record.state,
        evidence.offset,
        &bytes,
        hash_len,
        quoted,
        evidence.more,
        Appraiser::compiled(policy.clone())
            .with_learned_keys(&record.keys)
            .with_boot_aggregates(boot_aggregates.to_vec()),
    );
    for f in &out.failures {
        let check = match f {
            vouch_attest::ima::increment::IncrementFailure::Offset { .. } => "ima.offset",
            vouch_attest::ima::increment::IncrementFailure::Parse(_) => "ima.parse",
            vouch_attest::ima::increment::IncrementFailure::Replay(_) => "ima.template_hash",
            vouch_attest::ima::increment::IncrementFailure::Pcr { .. } => "ima.pcr10",
            vouch_attest::ima::increment::IncrementFailure::Incomplete { .. } => INCOMPLETE,
        };
        reasons.push(Reason::new(check, f));
    }
    for f in &out.verdict.failures {
        let text = f.to_string();
        reasons.push(Reason::new(format!("ima.{}", f.rule), &text));
        if record.failed.len() < KEPT_FAILURES {
            record.failed.push(text);
        }
    }
    let changed = out.state != record.state
        || stored.is_none()
        || !out.verdict.trusted
        || out.learned != record.keys;
    let incomplete = out.failures.iter().any(|f| {
        matches!(
            f,
            vouch_attest::ima::increment::IncrementFailure::Incomplete { .. }
        )
    });
    record.state = out.state;
    record.keys = out.learned;
    ImaOutcome {
        reasons,
        store: changed.then_some(record),
        incomplete,
    }
}
