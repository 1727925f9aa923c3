//! Recording a policy from a known-good device's log: the policy pins what that device
//! measured, so the same boot checks `trusted` and any other boot fails on what differs.
//!
//! Recorded: Secure Boot required when it was on; the PK/KEK/db/dbx digests measured; the boot
//! applications' digests in the log's preferred bank (sha256, else the first computable); the
//! kernel command lines (exact, required when present); the S-CRTM version strings; and every
//! replayed PCR of every computable bank. Not recorded (not in a log): `min_tpm_version`,
//! `dbx_contains`.

use super::facts;
use super::format::{
    BootAppPolicy, CmdlinePolicy, FirmwarePolicy, Policy, SecureBootPolicy, FORMAT_VERSION,
};
use super::pcrs::PcrPolicy;
use super::values::HexBytes;
use crate::alg::HashAlg;
use crate::eventlog::{BootState, EventLog};
use crate::pcrs::PcrBanks;

fn push_unique<T: PartialEq>(v: &mut Vec<T>, item: T) {
    if !v.contains(&item) {
        v.push(item);
    }
}

fn key_db(state: &BootState, name: &str) -> Option<Vec<HexBytes>> {
    let mut out = Vec::new();
    for k in state.key_databases.iter().filter(|k| k.name == name) {
        if let Ok(d) = hex::decode(&k.data_sha256) {
            push_unique(&mut out, HexBytes(d));
        }
    }
    (!out.is_empty()).then_some(out)
}

fn boot_apps(log: &EventLog<'_>, state: &BootState) -> Option<BootAppPolicy> {
    if state.boot_applications.is_empty() {
        return None;
    }
    let banks = log.banks();
    let bank = if banks.contains(&HashAlg::Sha256) {
        HashAlg::Sha256
    } else {
        banks.into_iter().find(|b| b.digest_len().is_some())?
    };
    let name = bank.name();
    let mut allowed = Vec::new();
    for app in &state.boot_applications {
        if let Some(d) = app.digests.get(&name).and_then(|h| hex::decode(h).ok()) {
            push_unique(&mut allowed, HexBytes(d));
        }
    }
    Some(BootAppPolicy { bank, allowed })
}

impl Policy {
    /// Records a policy from a known-good log, its boot state and its replay (see the module
    /// documentation).
    pub fn record(log: &EventLog<'_>, state: &BootState, replay: &PcrBanks) -> Policy {
        let secure_boot = SecureBootPolicy {
            required: state.secure_boot == Some(true),
            pk: key_db(state, "PK"),
            kek: key_db(state, "KEK"),
            db: key_db(state, "db"),
            dbx: key_db(state, "dbx"),
            dbx_contains: None,
        };
        let has_secure_boot = secure_boot != SecureBootPolicy::default();
        let mut exact = Vec::new();
        for m in facts::kernel_cmdlines(log) {
            push_unique(&mut exact, m.value);
        }
        let kernel_cmdline = (!exact.is_empty()).then(|| CmdlinePolicy {
            required: true,
            exact,
            prefix: Vec::new(),
        });
        let mut versions = Vec::new();
        for m in facts::s_crtm_versions(log) {
            push_unique(&mut versions, m.value);
        }
        let firmware = (!versions.is_empty()).then(|| FirmwarePolicy {
            min_tpm_version: None,
            s_crtm_versions: Some(versions),
        });
        Policy {
            version: FORMAT_VERSION,
            description: None,
            revoke_on_untrusted: false,
            secure_boot: has_secure_boot.then_some(secure_boot),
            boot_applications: boot_apps(log, state),
            kernel_cmdline,
            firmware,
            pcrs: PcrPolicy::from_banks(replay),
        }
    }
}
