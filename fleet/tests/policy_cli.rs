//! `vouch-fleet policy check|record` end to end on real event logs: verdicts, exit codes, named
//! failures, JSON, and input errors.

use std::path::PathBuf;
use std::process::{Command, Output};

fn shared(rel: &str) -> PathBuf {
    testdata::eventlogs_dir().join(rel)
}

#[path = "../../testsupport/testdata.rs"]
mod testdata;

fn example(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tpm-policies")
        .join(name);
    p.to_string_lossy().into_owned()
}

fn log(name: &str) -> String {
    shared(name).to_string_lossy().into_owned()
}

fn fleet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
        .args(args)
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const SB_LOG: &str = "keylime_mb_binary_bios_measurements-secureboot.bin";
const NO_SB_LOG: &str = "keylime_mb_binary_bios_measurements.bin";

#[test]
fn recorded_policy_trusts_its_log_and_rejects_another() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml").to_string_lossy().into_owned();
    let o = fleet(&["policy", "record", "--eventlog", &log(SB_LOG), "--out", &p]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("[secure_boot]\nrequired = true"), "{text}");
    assert!(text.contains("[pcrs.sha256]"), "{text}");

    let o = fleet(&[
        "policy",
        "check",
        "--policy",
        &p,
        "--eventlog",
        &log(SB_LOG),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "trusted\n");

    let o = fleet(&[
        "policy",
        "check",
        "--policy",
        &p,
        "--eventlog",
        &log(NO_SB_LOG),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let s = out(&o);
    assert!(
        s.contains("FAIL  secure_boot (event 12, PCR7): SecureBoot is measured as disabled"),
        "{s}"
    );
    assert!(s.contains("FAIL  pcr_value (PCR7): sha256 PCR7 is "), "{s}");
    assert!(s.contains("untrusted: "), "{s}");
}

#[test]
fn record_to_stdout_sets_description_and_revocation() {
    let o = fleet(&[
        "policy",
        "record",
        "--eventlog",
        &log("goattest_sb_cert.bin"),
        "--description",
        "lab box",
        "--revoke-on-untrusted",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.starts_with("version = 1\ndescription = \"lab box\"\nrevoke_on_untrusted = true\n"),
        "{s}"
    );
}

#[test]
fn json_verdict_names_rules_events_and_pcrs() {
    let o = fleet(&[
        "policy",
        "check",
        "--policy",
        &example("baseline-dbx-cmdline.toml"),
        "--eventlog",
        &log("t2t_event-moklisttrusted.bin"),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["trusted"], false);
    assert_eq!(v["revoke"], true);
    let f = v["failures"].as_array().unwrap();
    assert_eq!(f.len(), 3, "{v}");
    assert_eq!(f[0]["rule"], "dbx_contains");
    assert_eq!(f[0]["event_index"], 8);
    assert_eq!(f[0]["pcr"], 7);
    assert_eq!(f[2]["rule"], "s_crtm_version");

    let o = fleet(&[
        "policy",
        "check",
        "--policy",
        &example("minimal-secureboot-pcr7.toml"),
        "--eventlog",
        &log("secboot_eventlog4_dell_embedded_box_pc_3000.bin"),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["trusted"], true);
    assert_eq!(v["failures"].as_array().map(Vec::len), Some(0));
}

#[test]
fn bad_input_exits_with_input_code() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "version = 1\nsecure_boot = { requird = true }\n").unwrap();
    let bad = bad.to_string_lossy().into_owned();
    let o = fleet(&[
        "policy",
        "check",
        "--policy",
        &bad,
        "--eventlog",
        &log(SB_LOG),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    let s = out(&o);
    assert!(s.contains("--policy") && s.contains("requird"), "{s}");

    let good = example("minimal-secureboot-pcr7.toml");
    let garbage = log("edge/keylime_mb_binary_bios_measurements-bogus.bin");
    let o = fleet(&["policy", "check", "--policy", &good, "--eventlog", &garbage]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("malformed event log"), "{}", out(&o));

    let missing = dir.path().join("nope.bin").to_string_lossy().into_owned();
    let o = fleet(&["policy", "check", "--policy", &good, "--eventlog", &missing]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("cannot read"), "{}", out(&o));
    let o = fleet(&["policy", "record", "--eventlog", &missing]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
}
