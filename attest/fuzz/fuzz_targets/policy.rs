//! Fuzz target: load any bytes as a TOML policy; whatever loads must write back to TOML that
//! loads to an equal policy, and must evaluate against a small synthetic log without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_attest::eventlog::EventLog;
use vouch_attest::policy::{evaluate, Evidence, Policy};
use vouch_attest::HashAlg;

/// A TCG 1.2 (SHA-1) log of one EV_SEPARATOR event in PCR 7.
fn tiny_log() -> Vec<u8> {
    let data = [0u8; 4];
    let mut v = Vec::new();
    v.extend_from_slice(&7u32.to_le_bytes());
    v.extend_from_slice(&4u32.to_le_bytes());
    v.extend_from_slice(&HashAlg::Sha1.hash(&data).unwrap_or_default());
    v.extend_from_slice(&4u32.to_le_bytes());
    v.extend_from_slice(&data);
    v
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::from_toml(text) else {
        return;
    };
    let written = policy.to_toml().expect("a loaded policy writes");
    let again = Policy::from_toml(&written).expect("a written policy loads");
    assert_eq!(policy, again, "round trip changed the policy:\n{written}");
    let bytes = tiny_log();
    let log = EventLog::parse(&bytes).expect("synthetic log parses");
    let replay = log.replay();
    let verdict = evaluate(
        &policy,
        &Evidence {
            log: &log,
            bank: HashAlg::Sha1,
            pcrs: &replay,
            firmware_version: Some(1),
        },
    );
    assert_eq!(verdict.trusted, verdict.failures.is_empty());
});
