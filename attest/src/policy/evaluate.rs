//! Evaluation of a [`Policy`] against [`Evidence`]: every rule present in the policy is
//! checked, and every failure is collected (evaluation never stops at the first).

use super::facts::{self, PCR_SECURE_BOOT};
use super::format::{BootAppPolicy, CmdlinePolicy, FirmwarePolicy, Policy, SecureBootPolicy};
use super::pcrs::PcrPolicy;
use super::siglist;
use super::values::HexBytes;
use super::verdict::{Evidence, Rule, RuleFailure, Verdict};
use crate::eventlog::DecodeError;

/// PCR of boot applications.
const PCR_BOOT_APPS: u32 = 4;

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
    decode_errors(evidence, &mut f);
    if let Some(sb) = &policy.secure_boot {
        secure_boot(sb, evidence, &mut f);
    }
    if let Some(apps) = &policy.boot_applications {
        boot_applications(apps, evidence, &mut f);
    }
    if let Some(c) = &policy.kernel_cmdline {
        kernel_cmdline(c, evidence, &mut f);
    }
    if let Some(fw) = &policy.firmware {
        firmware(fw, evidence, &mut f);
    }
    pcrs(&policy.pcrs, evidence, &mut f);
    let trusted = f.0.is_empty();
    Verdict {
        trusted,
        revoke: !trusted && policy.revoke_on_untrusted,
        failures: f.0,
    }
}

fn decode_errors(ev: &Evidence<'_>, f: &mut Failures) {
    for e in &ev.boot_state.decode_errors {
        let index = match e {
            DecodeError::Variable { index, .. }
            | DecodeError::ImageLoadTruncated { index, .. }
            | DecodeError::ImageLoadPathLength { index, .. }
            | DecodeError::DevicePath { index, .. } => *index,
        };
        let pcr = ev.log.events.get(index).map(|e| e.pcr);
        f.push(Rule::EventDecode, Some(index), pcr, e.to_string());
    }
}

fn list_text(allowed: &[HexBytes]) -> String {
    match allowed.len() {
        0 => "not allowed (the policy allows none)".to_owned(),
        1 => "not the 1 value the policy allows".to_owned(),
        n => format!("not among the {n} values the policy allows"),
    }
}

fn secure_boot(sb: &SecureBootPolicy, ev: &Evidence<'_>, f: &mut Failures) {
    if sb.required {
        match facts::secure_boot(ev.log) {
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
        for k in ev.boot_state.key_databases.iter().filter(|k| k.name == name) {
            seen = true;
            if !allowed.iter().any(|a| hex_eq(&k.data_sha256, a.as_slice())) {
                f.push(
                    rule,
                    Some(k.event_index),
                    Some(PCR_SECURE_BOOT),
                    format!(
                        "{name} sha256 {} is {}",
                        k.data_sha256,
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
        dbx_contains(required, ev, f);
    }
}

fn dbx_contains(required: &[HexBytes], ev: &Evidence<'_>, f: &mut Failures) {
    let measured = facts::dbx(ev.log);
    if measured.is_empty() {
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
        let entries = match siglist::entries(m.value) {
            Ok(e) => e,
            Err(e) => {
                f.push(
                    Rule::DbxContains,
                    Some(m.event_index),
                    Some(m.pcr),
                    format!("dbx does not parse: {e}"),
                );
                continue;
            }
        };
        for r in required {
            if !entries.contains(&r.as_slice()) {
                f.push(
                    Rule::DbxContains,
                    Some(m.event_index),
                    Some(m.pcr),
                    format!(
                        "dbx ({} entries) lacks required entry {r}",
                        entries.len()
                    ),
                );
            }
        }
    }
}

/// Compares a lower-case hex string with bytes without allocating.
fn hex_eq(hex_text: &str, bytes: &[u8]) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let t = hex_text.as_bytes();
    t.len() == bytes.len() * 2
        && bytes.iter().zip(t.chunks_exact(2)).all(|(b, pair)| {
            let hi = DIGITS.get(usize::from(b >> 4));
            let lo = DIGITS.get(usize::from(b & 0xF));
            pair.first().map(u8::to_ascii_lowercase).as_ref() == hi
                && pair.get(1).map(u8::to_ascii_lowercase).as_ref() == lo
        })
}

fn boot_applications(p: &BootAppPolicy, ev: &Evidence<'_>, f: &mut Failures) {
    let bank = p.bank.name();
    for app in &ev.boot_state.boot_applications {
        let path = if app.device_path.is_empty() {
            String::new()
        } else {
            format!(" ({})", app.device_path)
        };
        match app.digests.get(&bank) {
            None => f.push(
                Rule::BootApplication,
                Some(app.event_index),
                Some(PCR_BOOT_APPS),
                format!("boot application{path} has no {bank} digest in the log"),
            ),
            Some(d) if !p.allowed.iter().any(|a| hex_eq(d, a.as_slice())) => f.push(
                Rule::BootApplication,
                Some(app.event_index),
                Some(PCR_BOOT_APPS),
                format!(
                    "boot application{path} {bank} {d} is {}",
                    list_text(&p.allowed)
                ),
            ),
            Some(_) => {}
        }
    }
}

fn kernel_cmdline(p: &CmdlinePolicy, ev: &Evidence<'_>, f: &mut Failures) {
    let lines = facts::kernel_cmdlines(ev.log);
    if p.required && lines.is_empty() {
        f.push(
            Rule::KernelCmdline,
            None,
            None,
            "no kernel command line is measured; the policy requires one".into(),
        );
    }
    for m in lines {
        let ok = p.exact.iter().any(|e| *e == m.value)
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

fn firmware(p: &FirmwarePolicy, ev: &Evidence<'_>, f: &mut Failures) {
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
        let versions = facts::s_crtm_versions(ev.log);
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

#[cfg(test)]
mod tests {
    use super::hex_eq;

    #[test]
    fn hex_comparison() {
        assert!(hex_eq("00ff10", &[0, 0xff, 0x10]));
        assert!(hex_eq("00FF10", &[0, 0xff, 0x10]));
        assert!(!hex_eq("00ff11", &[0, 0xff, 0x10]));
        assert!(!hex_eq("00ff1", &[0, 0xff, 0x10]));
        assert!(hex_eq("", &[]));
    }
}
