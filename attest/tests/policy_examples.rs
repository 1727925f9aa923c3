//! The example policies in `tpm-policies/` load and give the documented verdicts on real logs.

mod eventlog_support;

use eventlog_support::read_log;
use std::path::PathBuf;
use vouch_attest::eventlog::EventLog;
use vouch_attest::policy::{evaluate, preferred_bank, Evidence, Policy, Rule, Verdict};

const RHEL9_SB: &str = "keylime_mb_binary_bios_measurements-secureboot.bin";
const RHEL9_NO_SB: &str = "keylime_mb_binary_bios_measurements.bin";
const DELL: &str = "secboot_eventlog4_dell_embedded_box_pc_3000.bin";
const MOKLIST: &str = "t2t_event-moklisttrusted.bin";

fn example(name: &str) -> Policy {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tpm-policies")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    Policy::from_toml(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn check(policy: &Policy, log_name: &str) -> Verdict {
    let bytes = read_log(log_name);
    let log = EventLog::parse(&bytes).unwrap();
    let replay = log.replay();
    evaluate(
        policy,
        &Evidence {
            log: &log,
            bank: preferred_bank(&log).unwrap(),
            pcrs: &replay,
            firmware_version: None,
        },
    )
}

fn rules(v: &Verdict) -> Vec<(Rule, Option<usize>, Option<u32>)> {
    v.failures
        .iter()
        .map(|f| (f.rule, f.event_index, f.pcr))
        .collect()
}

#[test]
fn every_example_loads_and_round_trips() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tpm-policies");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let p = example(&name);
            let again = Policy::from_toml(&p.to_toml().unwrap()).unwrap();
            assert_eq!(p, again, "{name} does not survive writing and loading");
            n += 1;
        }
    }
    assert_eq!(n, 3, "example policies in {}", dir.display());
}

#[test]
fn recorded_example_trusts_only_its_own_log() {
    let p = example("recorded-rhel9-ovmf-secureboot.toml");
    let own = check(&p, RHEL9_SB);
    assert!(own.trusted, "{:#?}", own.failures);
    let other = check(&p, RHEL9_NO_SB);
    assert!(!other.trusted && !other.revoke);
    let r = rules(&other);
    // The same VM without Secure Boot: event 12 is the SecureBoot variable.
    assert!(r.contains(&(Rule::SecureBoot, Some(12), Some(7))), "{r:?}");
    assert!(r.contains(&(Rule::PcrValue, None, Some(7))), "{r:?}");
}

#[test]
fn minimal_example_pins_pcr7() {
    let p = example("minimal-secureboot-pcr7.toml");
    let dell = check(&p, DELL);
    assert!(dell.trusted, "{:#?}", dell.failures);
    // Secure Boot on, but other keys: only PCR7 differs.
    let mok = check(&p, MOKLIST);
    assert_eq!(rules(&mok), vec![(Rule::PcrValue, None, Some(7))]);
    assert!(
        mok.failures[0].detail.contains("cba16f85"),
        "{:?}",
        mok.failures
    );
    // Secure Boot off: both rules fail.
    let off = check(&p, RHEL9_NO_SB);
    assert_eq!(
        rules(&off),
        vec![
            (Rule::SecureBoot, Some(12), Some(7)),
            (Rule::PcrValue, None, Some(7))
        ]
    );
}

#[test]
fn baseline_example_finds_dbx_gaps_and_revokes() {
    let p = example("baseline-dbx-cmdline.toml");
    assert!(p.revoke_on_untrusted);
    let good = check(&p, RHEL9_SB);
    assert!(good.trusted && !good.revoke, "{:#?}", good.failures);
    let mok = check(&p, MOKLIST);
    assert!(!mok.trusted && mok.revoke);
    assert_eq!(
        rules(&mok),
        vec![
            (Rule::DbxContains, Some(8), Some(7)),
            (Rule::DbxContains, Some(8), Some(7)),
            (Rule::ScrtmVersion, Some(1), Some(0)),
        ]
    );
    assert!(mok.failures[0].detail.contains("80b4d969"));
    assert!(mok.failures[1].detail.contains("f52f83a3"));
    // The Dell's command line is not a RHEL 9 kernel; its dbx is empty.
    let dell = check(&p, DELL);
    assert!(
        dell.failures
            .iter()
            .any(|f| f.rule == Rule::KernelCmdline && f.event_index.is_some()),
        "{:#?}",
        dell.failures
    );
}
