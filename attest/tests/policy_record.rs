//! Policies recorded from every real log: each trusts its own log after a trip through TOML,
//! and distrusts every other log, naming what differs.

mod eventlog_support;

use eventlog_support::{bins, eventlogs_dir};
use vouch_attest::eventlog::EventLog;
use vouch_attest::policy::{evaluate, preferred_bank, Evidence, Policy, Rule, Verdict};

fn verdict(policy: &Policy, log: &EventLog<'_>) -> Verdict {
    let replay = log.replay();
    evaluate(
        policy,
        &Evidence {
            log,
            bank: preferred_bank(log).unwrap(),
            pcrs: &replay,
            firmware_version: None,
        },
    )
}

#[test]
fn recorded_policies_trust_their_own_log_only() {
    let mut files = bins(&eventlogs_dir());
    files.extend(bins(&eventlogs_dir().join("unlabeled")));
    let logs: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read(p).unwrap()))
        .collect();
    assert!(logs.len() >= 40, "{} logs", logs.len());
    let parsed: Vec<(&str, &[u8], EventLog<'_>)> = logs
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice(), EventLog::parse(b).unwrap()))
        .collect();
    for (name, bytes, log) in &parsed {
        let recorded = Policy::record(log, &log.replay());
        assert!(!recorded.pcrs.is_empty(), "{name}: no PCR recorded");
        let text = recorded.to_toml().unwrap();
        let policy = Policy::from_toml(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        assert_eq!(policy, recorded, "{name}: TOML round trip");
        let own = verdict(&policy, log);
        assert!(own.trusted, "{name}: {:#?}", own.failures);
        for (other, other_bytes, other_log) in &parsed {
            if other_bytes == bytes {
                continue;
            }
            let v = verdict(&policy, other_log);
            assert!(!v.trusted, "{name}'s policy trusts {other}");
            assert!(
                v.failures.iter().all(|f| !f.detail.is_empty()),
                "{name} vs {other}: {:?}",
                v.failures
            );
        }
    }
}

#[test]
fn recorded_secure_boot_log_names_the_changed_event() {
    let dir = eventlogs_dir();
    let bytes = std::fs::read(dir.join("goattest_sb_cert.bin")).unwrap();
    let log = EventLog::parse(&bytes).unwrap();
    let state = log.boot_state();
    let policy = Policy::record(&log, &log.replay());
    let sb = policy.secure_boot.as_ref().expect("secure boot section");
    assert!(sb.required);
    assert_eq!(sb.db.as_ref().map(Vec::len), Some(1));

    // Flip one byte inside the first boot application's Authenticode digest (sha256 bank):
    // the boot_application rule names that event and PCR4, and PCR4 no longer matches.
    let app = state.boot_applications.first().expect("a boot application");
    let ev = &log.events[app.event_index];
    let digest = ev.digests.get(vouch_attest::HashAlg::Sha256).unwrap();
    let at = digest.as_ptr() as usize - bytes.as_ptr() as usize;
    let mut tampered = bytes.clone();
    tampered[at] ^= 0x01;
    let tlog = EventLog::parse(&tampered).unwrap();
    let v = verdict(&policy, &tlog);
    let got: Vec<(Rule, Option<usize>, Option<u32>)> = v
        .failures
        .iter()
        .map(|f| (f.rule, f.event_index, f.pcr))
        .collect();
    assert!(
        got.contains(&(Rule::BootApplication, Some(app.event_index), Some(4))),
        "{got:?}"
    );
    assert!(got.contains(&(Rule::PcrValue, None, Some(4))), "{got:?}");
    assert!(
        got.iter().all(|(_, _, pcr)| *pcr == Some(4)),
        "only PCR4 is affected: {got:?}"
    );
}
