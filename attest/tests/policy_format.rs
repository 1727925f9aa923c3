//! Loading refuses malformed policies with messages naming the key; rules that depend on quote
//! facts (firmware version, quoted PCRs) are checked against those facts.

mod eventlog_support;

use eventlog_support::read_log;
use vouch_attest::eventlog::EventLog;
use vouch_attest::policy::{evaluate, preferred_bank, Evidence, Policy, PolicyError, Rule};
use vouch_attest::{HashAlg, PcrBanks};

fn refused(text: &str) -> String {
    match Policy::from_toml(text) {
        Ok(p) => panic!("accepted: {p:?}"),
        // The message names what failed, its causes say why: check the whole chain.
        Err(e) => vouch_attest::errors::chain(&e),
    }
}

#[test]
fn malformed_policies_are_refused_with_the_reason() {
    let e = refused("version = 1\nrevoke_on_untrustd = true\n");
    assert!(
        e.contains("unknown field") && e.contains("revoke_on_untrustd"),
        "{e}"
    );
    let e = refused("version = 1\n[secure_boot]\nrequired = true\ndbx_contain = []\n");
    assert!(e.contains("dbx_contain"), "{e}");
    let e = refused("version = 2\n");
    assert!(e.contains("version 2 is not supported"), "{e}");
    let e = refused("revoke_on_untrusted = true\n");
    assert!(e.contains("version"), "{e}");
    let e = refused("version = 1\n[secure_boot]\ndb = [\"00ff\"]\n");
    assert!(
        e.contains("secure_boot.db[0]: 2-byte digest, expected 32"),
        "{e}"
    );
    let e = refused("version = 1\n[secure_boot]\npk = [\"xyz\"]\n");
    assert!(e.contains("not a hex string"), "{e}");
    let e = refused("version = 1\n[pcrs.sha256]\n24 = \"00\"\n");
    assert!(e.contains("not a PCR index"), "{e}");
    let e = refused("version = 1\n[pcrs.sha256]\n07 = \"00\"\n");
    assert!(e.contains("\"07\""), "{e}");
    let e = refused(&format!(
        "version = 1\n[pcrs.sha1]\n7 = \"{}\"\n",
        "00".repeat(32)
    ));
    assert!(
        e.contains("32-byte value, a sha1 PCR holds 20 bytes"),
        "{e}"
    );
    let e = refused("version = 1\n[pcrs.md5]\n7 = \"00\"\n");
    assert!(e.contains("md5"), "{e}");
    let e = refused("version = 1\n[boot_applications]\nbank = \"sha256\"\nallowed = [\"00\"]\n");
    assert!(e.contains("boot_applications.allowed[0]"), "{e}");
    let e = refused("version = 1\n[firmware]\nmin_tpm_version = -3\n");
    assert!(e.contains("negative"), "{e}");
    let big = "#".repeat(vouch_attest::policy::MAX_POLICY_BYTES + 1);
    assert!(matches!(
        Policy::from_toml(&big),
        Err(PolicyError::TooLarge { .. })
    ));
}

#[test]
fn firmware_version_needs_a_quote_and_a_high_enough_value() {
    let policy =
        Policy::from_toml("version = 1\n[firmware]\nmin_tpm_version = \"0x0002_0001_0000_0000\"\n")
            .unwrap();
    let bytes = read_log("goattest_sb_cert.bin");
    let log = EventLog::parse(&bytes).unwrap();
    let replay = log.replay();
    let with = |fw: Option<u64>| {
        evaluate(
            &policy,
            &Evidence {
                log: &log,
                bank: preferred_bank(&log).unwrap(),
                pcrs: &replay,
                firmware_version: fw,
            },
        )
    };
    let none = with(None);
    assert_eq!(none.failures.len(), 1);
    assert_eq!(none.failures[0].rule, Rule::TpmFirmwareVersion);
    assert!(none.failures[0].detail.contains("no verified quote"));
    let low = with(Some(0x0002_0000_ffff_ffff));
    assert!(low.failures[0]
        .detail
        .contains("below the minimum 0x0002000100000000"));
    assert!(with(Some(0x0002_0001_0000_0000)).trusted);
}

#[test]
fn pinned_pcrs_are_compared_with_the_supplied_values() {
    let bytes = read_log("goattest_sb_cert.bin");
    let log = EventLog::parse(&bytes).unwrap();
    let replay = log.replay();
    let pcr7 = hex::encode(replay.get(HashAlg::Sha256, 7).unwrap());
    let policy = Policy::from_toml(&format!(
        "version = 1\n[pcrs.sha256]\n7 = \"{pcr7}\"\n12 = \"{}\"\n",
        "00".repeat(32)
    ))
    .unwrap();
    // Quoted values that cover PCR7 only: PCR12 has no value and fails.
    let mut quoted = PcrBanks::new();
    quoted.insert(
        HashAlg::Sha256,
        7,
        replay.get(HashAlg::Sha256, 7).unwrap().to_vec(),
    );
    let v = evaluate(
        &policy,
        &Evidence {
            log: &log,
            bank: preferred_bank(&log).unwrap(),
            pcrs: &quoted,
            firmware_version: None,
        },
    );
    assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
    assert_eq!(
        (v.failures[0].rule, v.failures[0].pcr),
        (Rule::PcrValue, Some(12))
    );
    assert!(v.failures[0].detail.contains("no sha256 PCR12 value"));
    // A different quoted PCR7 fails naming both values.
    quoted.insert(HashAlg::Sha256, 7, vec![0xAB; 32]);
    quoted.insert(HashAlg::Sha256, 12, vec![0; 32]);
    let v = evaluate(
        &policy,
        &Evidence {
            log: &log,
            bank: preferred_bank(&log).unwrap(),
            pcrs: &quoted,
            firmware_version: None,
        },
    );
    assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
    let d = &v.failures[0].detail;
    assert!(d.contains(&"ab".repeat(32)) && d.contains(&pcr7), "{d}");
}

#[test]
fn empty_lists_allow_nothing() {
    let bytes = read_log("goattest_sb_cert.bin");
    let log = EventLog::parse(&bytes).unwrap();
    let replay = log.replay();
    let state = log.boot_state();
    let policy = Policy::from_toml(
        "version = 1\n[secure_boot]\nkek = []\n[boot_applications]\nbank = \"sha1\"\nallowed = []\n",
    )
    .unwrap();
    let v = evaluate(
        &policy,
        &Evidence {
            log: &log,
            bank: preferred_bank(&log).unwrap(),
            pcrs: &replay,
            firmware_version: None,
        },
    );
    let kek = state
        .key_databases
        .iter()
        .find(|k| k.name == "KEK")
        .unwrap();
    assert_eq!(v.failures[0].rule, Rule::Kek);
    assert_eq!(v.failures[0].event_index, Some(kek.event_index));
    let apps = v
        .failures
        .iter()
        .filter(|f| f.rule == Rule::BootApplication)
        .count();
    assert_eq!(
        apps, 1,
        "sha1 app digests are not the authenticated sha256 bank"
    );
    let wrong_bank = v
        .failures
        .iter()
        .find(|f| f.rule == Rule::BootApplication)
        .unwrap();
    assert!(
        wrong_bank.detail.contains("authenticates the sha256 bank"),
        "{wrong_bank:?}"
    );
    let policy =
        Policy::from_toml("version = 1\n[boot_applications]\nbank = \"sha256\"\nallowed = []\n")
            .unwrap();
    let v = evaluate(
        &policy,
        &Evidence {
            log: &log,
            bank: preferred_bank(&log).unwrap(),
            pcrs: &replay,
            firmware_version: None,
        },
    );
    assert_eq!(v.failures.len(), state.boot_applications.len());
    for (f, app) in v.failures.iter().zip(&state.boot_applications) {
        assert_eq!((f.event_index, f.pcr), (Some(app.event_index), Some(4)));
    }
    assert!(Policy::from_toml("version = 1\n")
        .map(|p| evaluate(
            &p,
            &Evidence {
                log: &log,
                bank: preferred_bank(&log).unwrap(),
                pcrs: &replay,
                firmware_version: None,
            }
        )
        .trusted)
        .unwrap());
}

#[test]
fn edited_event_data_is_not_trusted() {
    // Secure Boot was off on this boot. Editing the SecureBoot variable's data in the log to 1
    // leaves the digests (and so the replay and any quote) unchanged: the policy must not
    // believe the edited data.
    let bytes = read_log("keylime_mb_binary_bios_measurements.bin");
    let log = EventLog::parse(&bytes).unwrap();
    let ev = &log.events[12];
    let value_at = ev.data_offset + ev.data.len() - 1;
    assert_eq!(bytes[value_at], 0, "SecureBoot is off in the original");
    let mut edited = bytes.clone();
    edited[value_at] = 1;
    let elog = EventLog::parse(&edited).unwrap();
    assert_eq!(
        elog.boot_state().secure_boot,
        Some(true),
        "the log now claims Secure Boot on"
    );
    assert_eq!(elog.replay(), log.replay());
    let policy = Policy::from_toml("version = 1\n[secure_boot]\nrequired = true\n").unwrap();
    let replay = elog.replay();
    let v = evaluate(
        &policy,
        &Evidence {
            log: &elog,
            bank: HashAlg::Sha256,
            pcrs: &replay,
            firmware_version: None,
        },
    );
    let got: Vec<(Rule, Option<usize>, Option<u32>)> = v
        .failures
        .iter()
        .map(|f| (f.rule, f.event_index, f.pcr))
        .collect();
    assert_eq!(
        got,
        vec![
            (Rule::EventDigest, Some(12), Some(7)),
            (Rule::SecureBoot, None, Some(7))
        ]
    );
    assert!(v.failures[0]
        .detail
        .contains("does not hash to its sha256 digest"));
}

/// Found by the policy fuzz target: an empty `[pcrs.sha256]` table loaded as a pinned bank with
/// no PCRs, was left out when written back, and the round trip changed the policy.
#[test]
fn an_empty_pcr_bank_table_round_trips() {
    let crash = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/policy/empty_pcr_bank.toml"),
    )
    .unwrap();
    let p = Policy::from_toml(&crash).unwrap();
    assert!(p.pcrs.is_empty());
    assert_eq!(Policy::from_toml(&p.to_toml().unwrap()).unwrap(), p);
    let p = Policy::from_toml("version = 1\n[pcrs.sha256]\n[pcrs.sha1]\n").unwrap();
    assert_eq!(p, Policy::empty());
}
