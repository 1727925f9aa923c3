//! `match_quoted` on real data: the HP log whose firmware extended the ExitBootServices actions
//! into PCR5 without logging them, and logs whose quoted values match directly.

mod eventlog_support;

use eventlog_support::*;
use vouch_attest::eventlog::{match_quoted, reset_value, EventLog, MatchError, Workaround};
use vouch_attest::{HashAlg, PcrBanks};

fn quoted_from(name: &str, bank: HashAlg) -> PcrBanks {
    let exp = expected_json(&eventlogs_dir().join(format!("{name}.expected_pcrs.json")));
    let mut q = PcrBanks::new();
    for (pcr, v) in &exp[&bank] {
        q.insert(bank, *pcr, v.clone());
    }
    q
}

#[test]
fn ebs_workaround_makes_pcr5_match() {
    let bytes = read_log("goattest_ebs_event_missing.bin");
    let log = EventLog::parse(&bytes).unwrap();
    let quoted = quoted_from("goattest_ebs_event_missing.bin", HashAlg::Sha1);
    let m = match_quoted(&log, &quoted, HashAlg::Sha1, &[5]).unwrap();
    assert!(m.matched);
    assert_eq!(m.workaround, Some(Workaround::ExitBootServicesUnlogged));
    assert!(m.mismatches.is_empty());
}

#[test]
fn plain_match_needs_no_workaround_and_reset_values_count() {
    let name = "goattest_windows_gcp_shielded_vm.bin";
    let bytes = read_log(name);
    let log = EventLog::parse(&bytes).unwrap();
    let quoted = quoted_from(name, HashAlg::Sha1);
    let all: Vec<u32> = (0..24).collect();
    let m = match_quoted(&log, &quoted, HashAlg::Sha1, &all).unwrap();
    assert!(m.matched, "{m:?}");
    assert_eq!(m.workaround, None);
}

#[test]
fn a_real_difference_is_listed_with_both_values() {
    let name = "goattest_option_rom.bin";
    let bytes = read_log(name);
    let log = EventLog::parse(&bytes).unwrap();
    let mut quoted = quoted_from(name, HashAlg::Sha1);
    quoted.insert(HashAlg::Sha1, 7, vec![0xAB; 20]);
    let m = match_quoted(&log, &quoted, HashAlg::Sha1, &[0, 5, 7]).unwrap();
    assert!(!m.matched);
    assert_eq!(m.workaround, None);
    assert_eq!(m.mismatches.len(), 1);
    assert_eq!(m.mismatches[0].pcr, 7);
    assert_eq!(m.mismatches[0].quoted, vec![0xAB; 20]);
    assert_eq!(
        hex::encode(&m.mismatches[0].replayed),
        "20de7dfba6bcdfccadad7e3eb099c91d4d97c5ad"
    );
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["mismatches"][0]["quoted"], "ab".repeat(20));
}

#[test]
fn errors_name_the_bank_and_pcr() {
    let bytes = read_log("goattest_ebs_event_missing.bin");
    let log = EventLog::parse(&bytes).unwrap();
    let quoted = quoted_from("goattest_ebs_event_missing.bin", HashAlg::Sha1);
    assert_eq!(
        match_quoted(&log, &quoted, HashAlg::Sha256, &[5]),
        Err(MatchError::BankNotInLog {
            bank: HashAlg::Sha256
        })
    );
    let err = match_quoted(&log, &quoted, HashAlg::Sha1, &[4]).unwrap_err();
    assert_eq!(err.to_string(), "the quoted sha1 values have no PCR4");
}

/// `match_quoted` replays only the compared PCRs; on every real log and every bank it computes,
/// the values it compares must be those of the full replay: any selection of a log's own replay
/// matches, and changing one compared PCR is reported as that PCR alone, with the full replay's
/// value.
#[test]
fn selected_replay_agrees_with_full_replay_on_every_real_log() {
    let dir = eventlogs_dir();
    let mut logs = 0;
    let mut compared = 0;
    for bin in bins(&dir).into_iter().chain(bins(&dir.join("unlabeled"))) {
        let name = bin.display().to_string();
        let bytes = std::fs::read(&bin).unwrap();
        let log = EventLog::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        logs += 1;
        let replay = log.replay();
        let all: Vec<u32> = (0..24).collect();
        for (bank, values) in replay.banks() {
            let mut own = PcrBanks::new();
            for &pcr in &all {
                let v = match replay.get(bank, pcr) {
                    Some(v) => v.to_vec(),
                    None => reset_value(bank, pcr, log.pcr0_start_locality()).unwrap(),
                };
                own.insert(bank, pcr, v);
            }
            let extended: Vec<u32> = values.keys().copied().collect();
            for sel in [&all[..], &extended[..], &[0, 7], &[4], &[9, 8, 1]] {
                let m = match_quoted(&log, &own, bank, sel).unwrap();
                assert!(m.matched, "{name} {bank} {sel:?}: {m:?}");
                assert_eq!(m.workaround, None, "{name} {bank} {sel:?}");
            }
            for (&pcr, value) in values {
                let mut changed = own.clone();
                let mut v = value.clone();
                v[0] ^= 1;
                changed.insert(bank, pcr, v.clone());
                let mut sel = vec![pcr];
                sel.extend([0, 7].iter().filter(|&&p| p != pcr));
                let m = match_quoted(&log, &changed, bank, &sel).unwrap();
                assert!(!m.matched, "{name} {bank} PCR{pcr} changed");
                assert_eq!(m.mismatches.len(), 1, "{name} {bank} PCR{pcr}");
                assert_eq!(m.mismatches[0].pcr, pcr);
                assert_eq!(&m.mismatches[0].replayed, value, "{name} {bank} PCR{pcr}");
                assert_eq!(m.mismatches[0].quoted, v);
                compared += 1;
            }
        }
    }
    assert_eq!(logs, 43, "real logs found");
    assert!(compared > 400, "only {compared} PCRs compared");
}
