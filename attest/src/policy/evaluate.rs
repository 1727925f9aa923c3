//! Evaluation of a [`Policy`] against [`Evidence`]: every rule present in the policy is
//! checked, and every failure is collected (evaluation never stops at the first).

use super::facts::{Facts, KeyDb, Needs, Topic, PCR_BOOT_APPS, PCR_SECURE_BOOT};
use super::format::{BootAppPolicy, CmdlinePolicy, FirmwarePolicy, Policy, SecureBootPolicy};
use super::grub;
use super::pcrs::PcrPolicy;
use super::siglist;
use super::stub;
use super::values::HexBytes;
use super::verdict::{Evidence, Rule, RuleFailure, Verdict};
use crate::alg::HashAlg;
use crate::eventlog::EventData;

/// Collected failures.
struct Failures(Vec<RuleFailure>);

impl Failures {
    fn push(&mut self, rule: Rule, event_index: Option<usize>, pcr: Option<u32>, detail: String) {
        self.0.push(RuleFailure {
            rule,
            detail,
            event_index,
            pcr,
        });
    }
}

/// Checks `evidence` against every rule of `policy`.
pub fn evaluate(policy: &Policy, evidence: &Evidence<'_>) -> Verdict {
    let mut f = Failures(Vec::new());
    let facts = Facts::collect_some(evidence.log, evidence.bank, needs(policy));
    unusable(policy, &facts, &mut f);
    if let Some(sb) = &policy.secure_boot {
        secure_boot(sb, &facts, &mut f);
    }
    if let Some(apps) = &policy.boot_applications {
        boot_applications(apps, &facts, &mut f);
    }
    if let Some(c) = &policy.kernel_cmdline {
        kernel_cmdline(c, &facts, &mut f);
        stub::load_options(c, &facts, &mut f.0);
    }
    if let Some(i) = &policy.initrd {
        stub::initrd(i, &facts, &mut f.0);
    }
    if let Some(g) = &policy.grub_files {
        grub::check(g, &facts, &mut f.0);
    }
    if let Some(fw) = &policy.firmware {
        firmware(fw, evidence, &facts, &mut f);
    }
    pcrs(&policy.pcrs, evidence, &mut f);
    let trusted = f.0.is_empty();
    Verdict {
        trusted,
        revoke: !trusted && policy.revoke_on_untrusted,
        failures: f.0,
    }
}

/// The facts the rules present in `policy` read: events only absent rules would read are not
/// decoded, and cannot fail the verdict (see [`unusable`]).
fn needs(policy: &Policy) -> Needs {
    Needs {
        secure_boot: policy.secure_boot.is_some(),
        boot_apps: policy.boot_applications.is_some(),
        cmdlines: policy.kernel_cmdline.is_some(),
        grub_files: policy.grub_files.is_some(),
        stub: policy.kernel_cmdline.is_some() || policy.initrd.is_some(),
        s_crtm: policy
            .firmware
            .as_ref()
            .is_some_and(|fw| fw.s_crtm_versions.is_some()),
    }
}

/// Events a present rule would read but cannot: each is a failure (fail closed).
fn unusable(policy: &Policy, facts: &Facts<'_, '_>, f: &mut Failures) {
    for u in &facts.unusable {
        let relevant = match u.topic {
            Topic::SecureBoot => policy.secure_boot.is_some(),
            Topic::Cmdline => policy.kernel_cmdline.is_some(),
            Topic::Scrtm => policy
                .firmware
                .as_ref()
                .is_some_and(|fw| fw.s_crtm_versions.is_some()),
        };
        if !relevant {
            continue;
        }
        match &u.decode_error {
            Some(e) => f.push(
                Rule::EventDecode,
                Some(u.event_index),
                Some(u.pcr),
                crate::errors::chain(e),
            ),
            None => f.push(
                Rule::EventDigest,
                Some(u.event_index),
                Some(u.pcr),
                digest_text(facts.bank),
            ),
        }
    }
}

fn digest_text(bank: HashAlg) -> String {
    format!("the event data does not hash to its {bank} digest, so its contents are not trusted")
}

/// An EventDigest failure for a key database event (once per event).
fn unauthenticated(facts: &Facts<'_, '_>, m: &KeyDb<'_, '_>, f: &mut Failures) {
    let index = Some(m.event.index);
    if !f
        .0
        .iter()
        .any(|x| x.rule == Rule::EventDigest && x.event_index == index)
    {
        f.push(
            Rule::EventDigest,
            index,
            Some(m.event.pcr),
            digest_text(facts.bank),
        );
    }
}

fn list_text(allowed: &[HexBytes]) -> String {
    match allowed.len() {
        0 => "not allowed (the policy allows none)".to_owned(),
        1 => "not the 1 value the policy allows".to_owned(),
        n => format!("not among the {n} values the policy allows"),
    }
}

fn secure_boot(sb: &SecureBootPolicy, facts: &Facts<'_, '_>, f: &mut Failures) {
    if sb.required {
        match &facts.secure_boot {
            None => f.push(
                Rule::SecureBoot,
                None,
                Some(PCR_SECURE_BOOT),
                "the SecureBoot variable is not measured; the policy requires Secure Boot".into(),
            ),
            Some(m) if !m.value => f.push(
                Rule::SecureBoot,
                Some(m.event_index),
                Some(m.pcr),
                "SecureBoot is measured as disabled; the policy requires it enabled".into(),
            ),
            Some(_) => {}
        }
    }
    let dbs = [
        (Rule::Pk, "PK", &sb.pk),
        (Rule::Kek, "KEK", &sb.kek),
        (Rule::Db, "db", &sb.db),
        (Rule::Dbx, "dbx", &sb.dbx),
    ];
    for (rule, name, allowed) in dbs {
        let Some(allowed) = allowed else { continue };
        let mut seen = false;
        for m in facts.key_dbs.iter().filter(|m| m.name == name) {
            seen = true;
            let Some(digest) = m.sha256(facts.bank) else {
                unauthenticated(facts, m, f);
                continue;
            };
            if !allowed.iter().any(|a| a.as_slice() == digest.as_slice()) {
                f.push(
                    rule,
                    Some(m.event.index),
                    Some(m.event.pcr),
                    format!(
                        "{name} sha256 {} is {}",
                        hex::encode(&digest),
                        list_text(allowed)
                    ),
                );
            }
        }
        if !seen {
            f.push(
                rule,
                None,
                Some(PCR_SECURE_BOOT),
                format!("{name} is not measured; the policy lists allowed values"),
            );
        }
    }
    if let Some(required) = &sb.dbx_contains {
        dbx_contains(required, facts, f);
    }
}

fn dbx_contains(required: &[HexBytes], facts: &Facts<'_, '_>, f: &mut Failures) {
    let mut measured = facts.key_dbs.iter().filter(|m| m.name == "dbx").peekable();
    if measured.peek().is_none() {
        f.push(
            Rule::DbxContains,
            None,
            Some(PCR_SECURE_BOOT),
            format!(
                "dbx is not measured; the policy requires {} entries in it",
                required.len()
            ),
        );
    }
    for m in measured {
        if !m.data_authenticated(facts.bank) {
            unauthenticated(facts, m, f);
            continue;
        }
        let (index, pcr) = (Some(m.event.index), Some(m.event.pcr));
        let entries = match siglist::entries(m.data) {
            Ok(e) => e,
            Err(e) => {
                f.push(
                    Rule::DbxContains,
                    index,
                    pcr,
                    format!("dbx does not parse: {e}"),
                );
                continue;
            }
        };
        for r in required {
            if !entries.contains(&r.as_slice()) {
                f.push(
                    Rule::DbxContains,
                    index,
                    pcr,
                    format!("dbx ({} entries) lacks required entry {r}", entries.len()),
                );
            }
        }
    }
}

fn boot_applications(p: &BootAppPolicy, facts: &Facts<'_, '_>, f: &mut Failures) {
    let bank = p.bank;
    if bank != facts.bank {
        // Only the authenticated bank's digests are covered by the quote (or the replay).
        f.push(
            Rule::BootApplication,
            None,
            Some(PCR_BOOT_APPS),
            format!(
                "the policy lists {bank} boot application digests, but the evidence \
                 authenticates the {} bank",
                facts.bank
            ),
        );
        return;
    }
    for ev in &facts.boot_apps {
        let digest = ev.digests.get(bank);
        if digest.is_some_and(|d| p.allowed.iter().any(|a| a.as_slice() == d)) {
            continue;
        }
        // Decoded only to name the image in the report.
        let path = match ev.decode() {
            Ok(EventData::ImageLoad { device_path, .. }) if !device_path.is_empty() => {
                format!(" ({device_path})")
            }
            _ => String::new(),
        };
        let detail = match digest {
            None => format!("boot application{path} has no {bank} digest in the log"),
            Some(d) => format!(
                "boot application{path} {bank} {} is {}",
                hex::encode(d),
                list_text(&p.allowed)
            ),
        };
        f.push(
            Rule::BootApplication,
            Some(ev.index),
            Some(PCR_BOOT_APPS),
            detail,
        );
    }
}

fn kernel_cmdline(p: &CmdlinePolicy, facts: &Facts<'_, '_>, f: &mut Failures) {
    let lines = &facts.cmdlines;
    if p.required && lines.is_empty() && !stub::has_load_options(facts) {
        f.push(
            Rule::KernelCmdline,
            None,
            None,
            "no kernel command line is measured; the policy requires one".into(),
        );
    }
    for m in lines {
        let ok = p.exact.contains(&m.value)
            || p.prefix.iter().any(|pre| m.value.starts_with(pre.as_str()));
        if !ok {
            f.push(
                Rule::KernelCmdline,
                Some(m.event_index),
                Some(m.pcr),
                format!(
                    "kernel command line {:?} matches none of the {} exact and {} prefix entries",
                    m.value,
                    p.exact.len(),
                    p.prefix.len()
                ),
            );
        }
    }
}

fn firmware(p: &FirmwarePolicy, ev: &Evidence<'_>, facts: &Facts<'_, '_>, f: &mut Failures) {
    if let Some(min) = p.min_tpm_version {
        match ev.firmware_version {
            None => f.push(
                Rule::TpmFirmwareVersion,
                None,
                None,
                format!(
                    "no verified quote, so the TPM firmware version is unknown; the policy \
                     requires at least {min}"
                ),
            ),
            Some(v) if v < min.0 => f.push(
                Rule::TpmFirmwareVersion,
                None,
                None,
                format!("TPM firmwareVersion 0x{v:016x} is below the minimum {min}"),
            ),
            Some(_) => {}
        }
    }
    if let Some(allowed) = &p.s_crtm_versions {
        let versions = &facts.s_crtm;
        if versions.is_empty() {
            f.push(
                Rule::ScrtmVersion,
                None,
                Some(0),
                "no EV_S_CRTM_VERSION event is logged; the policy lists allowed versions".into(),
            );
        }
        for m in versions {
            if !allowed.contains(&m.value) {
                f.push(
                    Rule::ScrtmVersion,
                    Some(m.event_index),
                    Some(m.pcr),
                    format!(
                        "S-CRTM version {:?} is not among the {} allowed",
                        m.value,
                        allowed.len()
                    ),
                );
            }
        }
    }
}

fn pcrs(p: &PcrPolicy, ev: &Evidence<'_>, f: &mut Failures) {
    for (bank, pcr, expected) in p.iter() {
        match ev.pcrs.get(bank, pcr) {
            None => f.push(
                Rule::PcrValue,
                None,
                Some(pcr),
                format!(
                    "no {bank} PCR{pcr} value in the evidence (no event extends it and no quote \
                     covers it); the policy expects {}",
                    hex::encode(expected)
                ),
            ),
            Some(v) if v != expected => f.push(
                Rule::PcrValue,
                None,
                Some(pcr),
                format!(
                    "{bank} PCR{pcr} is {}, the policy expects {}",
                    hex::encode(v),
                    hex::encode(expected)
                ),
            ),
            Some(_) => {}
        }
    }
}
