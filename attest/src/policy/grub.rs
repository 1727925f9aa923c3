//! The `[grub_files]` rule: every file GRUB read and measured into PCR 9 (EV_IPL; the kernel,
//! the initrd, grub.cfg, grubenv, modules, fonts, ...) must have an allowed SHA-256 digest.
//!
//! GRUB's event digest is the hash of the file's contents and its event data is the file's
//! name, so the name is not covered by the quote: a log editor could rename an unapproved
//! kernel's event "grub.cfg". The rule therefore checks every PCR 9 EV_IPL event, whatever it
//! names, and a failure reports the name only as the log claims it. Like the EFI stub rules,
//! digests are read from the sha256 bank only when that bank is the authenticated one.

use super::facts::{Facts, PCR_GRUB_FILES};
use super::format::GrubFilePolicy;
use super::values::HexBytes;
use super::verdict::{Rule, RuleFailure};
use crate::alg::HashAlg;
use crate::eventlog::{Event, EventData};

/// The file name an event's data claims (quoted), or a note that it has none.
fn claimed_name(ev: &Event<'_>) -> String {
    match ev.decode() {
        Ok(EventData::Ipl { text, .. }) if !text.is_empty() => {
            format!("{:?}", text.trim_end_matches('\0'))
        }
        _ => "(no file name in the event data)".to_owned(),
    }
}

/// Checks every GRUB PCR 9 file measurement, pushing one failure per unapproved file.
pub fn check(p: &GrubFilePolicy, facts: &Facts<'_, '_>, out: &mut Vec<RuleFailure>) {
    for ev in &facts.grub_files {
        let name = claimed_name(ev);
        let failure = |detail: String| RuleFailure {
            rule: Rule::GrubFile,
            detail,
            event_index: Some(ev.index),
            pcr: Some(PCR_GRUB_FILES),
        };
        if facts.bank != HashAlg::Sha256 {
            out.push(failure(format!(
                "GRUB file {name} is checked by its sha256 digest, but the authenticated bank \
                 is {}",
                facts.bank
            )));
            continue;
        }
        match ev.digests.get(HashAlg::Sha256) {
            None => out.push(failure(format!("GRUB file {name} has no sha256 digest"))),
            Some(d) if !p.sha256.iter().any(|a| a.0 == d) => out.push(failure(format!(
                "GRUB read file {name} (name as logged, not covered by the quote) with sha256 \
                 {}, not among the {} allowed",
                hex::encode(d),
                p.sha256.len()
            ))),
            Some(_) => {}
        }
    }
}

/// The sha256 digests of the files GRUB read, for recording (`None` when there are none, or
/// when the log's trusted bank is not sha256).
pub fn record(facts: &Facts<'_, '_>) -> Option<GrubFilePolicy> {
    if facts.bank != HashAlg::Sha256 {
        return None;
    }
    let mut sha256: Vec<HexBytes> = Vec::new();
    for ev in &facts.grub_files {
        if let Some(d) = ev.digests.get(HashAlg::Sha256) {
            let d = HexBytes(d.to_vec());
            if !sha256.contains(&d) {
                sha256.push(d);
            }
        }
    }
    (!sha256.is_empty()).then_some(GrubFilePolicy { sha256 })
}
