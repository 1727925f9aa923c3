//! `vouch-fleet eventlog` end to end on real logs: the exact JSON shape of `replay --json`, the
//! readable table, `show`, and the one-line error with exit code INPUT on malformed input.

use std::path::PathBuf;
use std::process::{Command, Output};

/// `<manifest>/../../shared/testdata/eventlogs`, or the first ancestor's `shared/` (worktrees).
fn eventlogs() -> PathBuf {
    testdata::eventlogs_dir()
}

#[path = "../../testsupport/testdata.rs"]
mod testdata;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
        .args(args)
        .output()
        .expect("run vouch-fleet")
}

fn log(name: &str) -> String {
    eventlogs().join(name).to_str().unwrap().to_owned()
}

#[test]
fn replay_json_has_the_documented_shape() {
    let out = run(&["eventlog", "replay", &log("goattest_sb_cert.bin"), "--json"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("{\"format\": \"crypto-agile\", \"events\": 15, \"banks\": {"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 3);
    assert_eq!(v["events"], 15);
    let banks = v["banks"].as_object().unwrap();
    let names: Vec<&str> = banks.keys().map(String::as_str).collect();
    assert_eq!(names, ["sha1", "sha256", "sha384"]);
    // Exactly the PCRs the log extends, with the values a real TPM quoted.
    let pcrs: Vec<&str> = banks["sha256"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(pcrs, ["0", "4", "5", "7"]);
    assert_eq!(
        v["banks"]["sha256"]["7"],
        "51b30488c9e6255d822bdc1b20d9a92c32bde6c3e7bc02bcdd32825eb5ef069a"
    );
    assert_eq!(
        v["banks"]["sha1"]["0"],
        "51c323de0c0c694f4601cdd02beb58ff13629f74"
    );
}

#[test]
fn replay_json_sha1_format_log() {
    let out = run(&[
        "eventlog",
        "replay",
        "--json",
        &log("goattest_option_rom.bin"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format"], "tcg1.2-sha1");
    assert_eq!(v["events"], 61);
    assert_eq!(
        v["banks"]["sha1"]["7"],
        "20de7dfba6bcdfccadad7e3eb099c91d4d97c5ad"
    );
    assert!(v["banks"]["sha1"].get("4294967295").is_none());
}

#[test]
fn replay_table_is_readable() {
    let out = run(&["eventlog", "replay", &log("goattest_ebs_event_missing.bin")]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("format: tcg1.2-sha1\nevents: 38\nsha1:\n"),
        "{text}"
    );
    assert!(
        text.contains("PCR5   e5781a2fd49c23a33b16bf0ba5f10efa1aa5d43c\n"),
        "{text}"
    );
}

#[test]
fn malformed_input_gives_one_line_error_and_exit_2() {
    let bad = eventlogs().join("edge/keylime_mb_binary_bios_measurements-bogus.bin");
    let out = run(&["eventlog", "replay", "--json", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("keylime_mb_binary_bios_measurements-bogus.bin"),
        "{err}"
    );
    assert!(err.contains("byte offset 28"), "{err}");
    assert!(err.contains("event data size 1919248394"), "{err}");

    let empty = eventlogs().join("edge/keylime_mb_binary_bios_measurements-empty.bin");
    let out = run(&["eventlog", "show", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1);
    assert!(err.contains("empty"), "{err}");

    let out = run(&["eventlog", "replay", "/nonexistent/log.bin"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("/nonexistent/log.bin"));
}

#[test]
fn show_json_lists_events_and_boot_state() {
    let out = run(&[
        "eventlog",
        "show",
        "--json",
        &log("t2t_event-arch-linux.bin"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 25);
    assert_eq!(events[24]["event_type"], "EV_IPL");
    assert_eq!(events[24]["pcr"], 8);
    assert_eq!(events[24]["digest_check"]["result"], "mismatch");
    assert_eq!(events[3]["data"]["name"], "SecureBoot");
    assert_eq!(v["boot_state"]["secure_boot"], false);
    assert!(v["boot_state"]["kernel_cmdlines"][0]
        .as_str()
        .unwrap()
        .contains("root=/dev/mapper/cryptroot"));
}

#[test]
fn show_text_marks_digest_mismatches() {
    let out = run(&["eventlog", "show", &log("t2t_event-arch-linux.bin")]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("#24   PCR  8 EV_IPL"), "{text}");
    assert!(text.contains("DIGEST MISMATCH (sha1,sha256)"), "{text}");
    assert!(text.contains("boot state:"));
}
