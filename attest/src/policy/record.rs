//! Recording a policy from a known-good device's log: the policy pins what that device
//! measured, so the same boot checks `trusted` and any other boot fails on what differs.
//!
//! Recorded: Secure Boot required when it was on; the PK/KEK/db/dbx digests measured; the boot
//! applications' digests in the log's preferred bank (sha256, else the first computable); the
//! kernel command lines (exact, required when present) and the SHA-256 digests of the command
//! lines and initrds the Linux EFI stub measured (PCR 9 EV_EVENT_TAG); the SHA-256 digests of
//! the files GRUB read (PCR 9 EV_IPL); the S-CRTM version strings; and every
//! replayed PCR of every computable bank. Facts are read only from events whose data hashes to
//! their digest in the preferred bank. Not recorded (not in a log): `min_tpm_version`,
//! `dbx_contains`.

use super::facts::{preferred_bank, Facts};
use super::format::InitrdPolicy;
use super::format::{
    BootAppPolicy, CmdlinePolicy, FirmwarePolicy, Policy, SecureBootPolicy, FORMAT_VERSION,
};
use super::grub;
use super::pcrs::PcrPolicy;
use super::stub;
use super::values::HexBytes;
use crate::eventlog::{EventLog, EventTag};
use crate::pcrs::PcrBanks;

fn push_unique<T: PartialEq>(v: &mut Vec<T>, item: T) {
    if !v.contains(&item) {
        v.push(item);
    }
}

fn key_db(facts: &Facts<'_, '_>, name: &str) -> Option<Vec<HexBytes>> {
    let mut out = Vec::new();
    for m in facts.key_dbs.iter().filter(|m| m.name == name) {
        if let Some(d) = m.sha256(facts.bank) {
            push_unique(&mut out, HexBytes(d));
        }
    }
    (!out.is_empty()).then_some(out)
}

fn boot_apps(facts: &Facts<'_, '_>) -> Option<BootAppPolicy> {
    if facts.boot_apps.is_empty() {
        return None;
    }
    let mut allowed = Vec::new();
    for ev in &facts.boot_apps {
        if let Some(d) = ev.digests.get(facts.bank) {
            push_unique(&mut allowed, HexBytes(d.to_vec()));
        }
    }
    Some(BootAppPolicy {
        bank: facts.bank,
        allowed,
    })
}

impl Policy {
    /// Records a policy from a known-good log and its replay (see the module documentation).
    /// Event data is trusted under the log's [`preferred_bank`]; a log without a computable
    /// bank records PCR values only.
    pub fn record(log: &EventLog<'_>, replay: &PcrBanks) -> Policy {
        let mut policy = Policy::empty();
        policy.pcrs = PcrPolicy::from_banks(replay);
        let Some(bank) = preferred_bank(log) else {
            return policy;
        };
        let facts = Facts::collect(log, bank);
        let secure_boot = SecureBootPolicy {
            required: facts.secure_boot.as_ref().is_some_and(|m| m.value),
            pk: key_db(&facts, "PK"),
            kek: key_db(&facts, "KEK"),
            db: key_db(&facts, "db"),
            dbx: key_db(&facts, "dbx"),
            dbx_contains: None,
        };
        let mut exact = Vec::new();
        for m in &facts.cmdlines {
            push_unique(&mut exact, m.value.clone());
        }
        let mut versions = Vec::new();
        for m in &facts.s_crtm {
            push_unique(&mut versions, m.value.clone());
        }
        policy.boot_applications = boot_apps(&facts);
        policy.secure_boot = (secure_boot != SecureBootPolicy::default()).then_some(secure_boot);
        let load_options = stub::record(&facts, EventTag::LoadOptions);
        policy.kernel_cmdline =
            (!exact.is_empty() || load_options.is_some()).then(|| CmdlinePolicy {
                required: true,
                exact,
                prefix: Vec::new(),
                load_options_sha256: load_options,
            });
        policy.initrd =
            stub::record(&facts, EventTag::Initrd).map(|sha256| InitrdPolicy { sha256 });
        policy.grub_files = grub::record(&facts);
        policy.firmware = (!versions.is_empty()).then_some(FirmwarePolicy {
            min_tpm_version: None,
            s_crtm_versions: Some(versions),
        });
        debug_assert_eq!(policy.version, FORMAT_VERSION);
        policy
    }
}
