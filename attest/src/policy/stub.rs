//! The rules on what the Linux EFI stub measures into PCR 9 as EV_EVENT_TAG events: the
//! kernel command line (LoadOptions) and the initrd. The log carries only their digests, so
//! the policy lists allowed SHA-256 digests (`kernel_cmdline.load_options_sha256`,
//! `initrd.sha256`), and a failure names the event that carries the unknown digest.
//!
//! Digests are read from the sha256 bank only when that bank is the authenticated (quoted) one;
//! otherwise a log editor could have put any sha256 digest there, and the rule fails closed.

use super::facts::Facts;
use super::format::{CmdlinePolicy, InitrdPolicy};
use super::values::HexBytes;
use super::verdict::{Rule, RuleFailure};
use crate::alg::HashAlg;
use crate::eventlog::{Event, EventTag};

/// Checks every stub measurement of `tag` against `allowed`, pushing failures.
fn check(
    facts: &Facts<'_, '_>,
    tag: EventTag,
    allowed: &[HexBytes],
    rule: Rule,
    out: &mut Vec<RuleFailure>,
) {
    for ev in stub_events(facts, tag) {
        let failure = |detail: String| RuleFailure {
            rule,
            detail,
            event_index: Some(ev.index),
            pcr: Some(ev.pcr),
        };
        if facts.bank != HashAlg::Sha256 {
            out.push(failure(format!(
                "the {} is checked by its sha256 digest, but the authenticated bank is {}",
                tag.describe(),
                facts.bank
            )));
            continue;
        }
        match ev.digests.get(HashAlg::Sha256) {
            None => out.push(failure(format!(
                "EV_EVENT_TAG event of the {} has no sha256 digest",
                tag.describe()
            ))),
            Some(d) if !allowed.iter().any(|a| a.0 == d) => out.push(failure(format!(
                "the {} measured in this EV_EVENT_TAG event has sha256 {}, not among the {} \
                 allowed",
                tag.describe(),
                hex::encode(d),
                allowed.len()
            ))),
            Some(_) => {}
        }
    }
}

fn stub_events<'f, 'a, 'l>(
    facts: &'f Facts<'a, 'l>,
    tag: EventTag,
) -> impl Iterator<Item = &'l Event<'a>> + 'f {
    facts
        .stub
        .iter()
        .filter(move |(t, _)| *t == tag)
        .map(|(_, ev)| *ev)
}

/// True when the EFI stub measured a command line.
pub fn has_load_options(facts: &Facts<'_, '_>) -> bool {
    stub_events(facts, EventTag::LoadOptions).next().is_some()
}

/// `kernel_cmdline.load_options_sha256`.
pub fn load_options(p: &CmdlinePolicy, facts: &Facts<'_, '_>, out: &mut Vec<RuleFailure>) {
    if let Some(allowed) = &p.load_options_sha256 {
        check(
            facts,
            EventTag::LoadOptions,
            allowed,
            Rule::KernelCmdline,
            out,
        );
    }
}

/// `[initrd]`.
pub fn initrd(p: &InitrdPolicy, facts: &Facts<'_, '_>, out: &mut Vec<RuleFailure>) {
    check(facts, EventTag::Initrd, &p.sha256, Rule::Initrd, out);
}

/// The sha256 digests of the stub's `tag` measurements, for recording (`None` when there are
/// none, or when the log's trusted bank is not sha256).
pub fn record(facts: &Facts<'_, '_>, tag: EventTag) -> Option<Vec<HexBytes>> {
    if facts.bank != HashAlg::Sha256 {
        return None;
    }
    let mut out: Vec<HexBytes> = Vec::new();
    for ev in stub_events(facts, tag) {
        if let Some(d) = ev.digests.get(HashAlg::Sha256) {
            let d = HexBytes(d.to_vec());
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}
