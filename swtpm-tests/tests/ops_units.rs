//! The systemd units in `systemd/`: `systemd-analyze verify` prints nothing, the offline security
//! exposure stays within its bound, and the agent unit keeps the settings the deployment relies
//! on (notify + watchdog, user `vouch` in `tss`, only `/dev/tpmrm0`, the claim key as a
//! credential). Works without systemd as PID 1.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use swtpm_tests::bin_path;

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd")
}

/// Copies the named units into a temp dir with `/usr/bin/vouch-*` pointing at the workspace's
/// built binaries, because `verify` insists that ExecStart= exists.
fn staged(units: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let agent = bin_path("vouch-agent");
    let fleet = bin_path("vouch-fleet");
    for u in units {
        let text = fs::read_to_string(units_dir().join(u)).unwrap();
        let text = text
            .replace("/usr/bin/vouch-agent", agent.to_str().unwrap())
            .replace("/usr/bin/vouch-fleet", fleet.to_str().unwrap());
        fs::write(dir.path().join(u), text).unwrap();
    }
    dir
}

/// `systemd-analyze security --offline=true` of one unit file: the overall exposure, e.g. 1.5.
fn exposure(unit: &Path) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .expect("systemd-analyze is installed (systemd)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| panic!("no overall exposure line in:\n{text}"));
    let figure = line
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("cannot read exposure from {line:?}"));
    figure.parse().unwrap()
}

/// Exit status of `systemd-analyze security --threshold=N` (N in tenths: 15 = exposure 1.5).
fn within_threshold(unit: &Path, tenths: u32) -> bool {
    Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("--threshold={tenths}"))
        .arg(unit)
        .output()
        .unwrap()
        .status
        .success()
}

/// `key=value` lines of one section of a unit file, in order (repeated keys kept).
fn section(unit: &str, name: &str) -> Vec<(String, String)> {
    let text = fs::read_to_string(units_dir().join(unit)).unwrap();
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == format!("[{name}]");
        } else if inside && !line.is_empty() && !line.starts_with('#') {
            let (k, v) = line.split_once('=').unwrap();
            out.push((k.to_string(), v.to_string()));
        }
    }
    out
}

fn values<'a>(kv: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    kv.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

const UNITS: [&str; 7] = [
    "vouch-agent.service",
    "vouch-volumes.service",
    "vouch-fleet.service",
    "vouch-fleet-crl.path",
    "vouch-fleet-crl.service",
    "vouch-fleet-backup.service",
    "vouch-fleet-backup.timer",
];

#[test]
fn verify_prints_nothing_for_every_unit() {
    let dir = staged(&UNITS);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(UNITS.iter().map(|u| dir.path().join(u)))
        .output()
        .expect("systemd-analyze is installed (systemd)");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "verify failed:\n{all}");
    assert_eq!(all, "", "verify printed something");
}

#[test]
fn verify_notices_a_missing_binary() {
    // The staging above is what makes verify pass: the unshipped path is an error.
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units_dir().join("vouch-fleet.service"))
        .output()
        .unwrap();
    if Path::new("/usr/bin/vouch-fleet").exists() {
        return; // the package is installed on this machine: nothing to notice
    }
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/usr/bin/vouch-fleet"));
}

#[test]
fn exposure_is_within_bounds() {
    let dir = staged(&UNITS);
    let agent = exposure(&dir.path().join("vouch-agent.service"));
    let fleet = exposure(&dir.path().join("vouch-fleet.service"));
    let volumes = exposure(&dir.path().join("vouch-volumes.service"));
    eprintln!("exposure: agent {agent}, fleet {fleet}, volumes {volumes}");
    assert!(agent <= 1.5, "vouch-agent.service exposure {agent} > 1.5");
    assert!(fleet <= 1.5, "vouch-fleet.service exposure {fleet} > 1.5");
    // The backup job needs no network at all.
    let backup = exposure(&dir.path().join("vouch-fleet-backup.service"));
    assert!(
        backup <= 1.0,
        "vouch-fleet-backup.service exposure {backup} > 1.0"
    );
    // Root with CAP_SYS_ADMIN for device-mapper: bounded, not minimal.
    assert!(
        volumes <= 3.0,
        "vouch-volumes.service exposure {volumes} > 3.0"
    );
    // The analyzer's own threshold agrees with the printed figure.
    assert!(within_threshold(
        &dir.path().join("vouch-agent.service"),
        15
    ));
}

#[test]
fn exposure_check_catches_a_weakened_agent_unit() {
    // Dropping the capability bound and the syscall filter must push the agent over 1.5:
    // otherwise the bound above would not be guarding anything.
    let dir = staged(&["vouch-agent.service"]);
    let path = dir.path().join("vouch-agent.service");
    let text = fs::read_to_string(&path).unwrap();
    let weakened: String = text
        .lines()
        .filter(|l| !l.starts_with("CapabilityBoundingSet=") && !l.starts_with("SystemCallFilter="))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&path, weakened).unwrap();
    assert!(exposure(&path) > 1.5);
    assert!(!within_threshold(&path, 15));
}

#[test]
fn agent_unit_keeps_the_deployment_contract() {
    let s = section("vouch-agent.service", "Service");
    let one = |k: &str| -> String {
        let v = values(&s, k);
        assert_eq!(v.len(), 1, "{k} should be set exactly once, is {v:?}");
        v[0].to_string()
    };
    assert_eq!(one("Type"), "notify");
    assert!(!one("WatchdogSec").is_empty());
    assert_eq!(one("User"), "vouch");
    assert_eq!(one("SupplementaryGroups"), "tss");
    assert_eq!(one("DevicePolicy"), "closed");
    assert_eq!(values(&s, "DeviceAllow"), ["/dev/tpmrm0 rw"]);
    assert_eq!(one("StateDirectory"), "vouch");
    assert_eq!(one("ConfigurationDirectory"), "vouch");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("CapabilityBoundingSet"), "");
    assert_eq!(one("RestrictAddressFamilies"), "AF_INET AF_INET6 AF_UNIX");
    assert_eq!(one("LoadCredential"), "claim.key:/etc/vouch/claim.key");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    // ProcSubset=pid hides /proc/sys/kernel/random/boot_id: the unit hands the boot id over
    // (tests/boot_id.rs runs the agent in such a sandbox).
    if one("ProcSubset") == "pid" {
        assert!(
            values(&s, "Environment").contains(&"VOUCH_BOOT_ID=%b"),
            "ProcSubset=pid without Environment=VOUCH_BOOT_ID=%b: the agent cannot read its boot id"
        );
    }
    let start = one("ExecStart");
    assert!(start.starts_with("/usr/bin/vouch-agent run --config /etc/vouch/agent.toml"));
    assert!(
        !start.contains("--allow-root"),
        "the unit must not run the agent as root"
    );
    assert!(values(&s, "SystemCallFilter").contains(&"@system-service"));
    // The event log fix-up runs privileged ("+") and tolerates a missing log ("-").
    let pre = values(&s, "ExecStartPre");
    assert!(pre
        .iter()
        .any(|p| p.starts_with("+-/bin/chgrp tss /sys/kernel/security/tpm0/")));
    // The agent's example config reads the claim key from the credential directory.
    let example = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/agent.example.toml"),
    )
    .unwrap();
    assert!(example.contains("/run/credentials/vouch-agent.service/claim.key"));
}

#[test]
fn volumes_unit_runs_before_local_mounts() {
    let u = section("vouch-volumes.service", "Unit");
    assert_eq!(values(&u, "DefaultDependencies"), ["no"]);
    let before = values(&u, "Before").join(" ");
    for t in ["cryptsetup.target", "local-fs.target", "umount.target"] {
        assert!(
            before.split_whitespace().any(|w| w == t),
            "Before= lacks {t}"
        );
    }
    assert_eq!(
        values(&u, "ConditionPathExists"),
        ["/etc/vouch/volumes.toml"]
    );
    let s = section("vouch-volumes.service", "Service");
    assert_eq!(values(&s, "Type"), ["oneshot"]);
    assert_eq!(values(&s, "RemainAfterExit"), ["yes"]);
    assert_eq!(
        values(&s, "ExecStart"),
        ["/usr/bin/vouch-agent volume unlock --all"]
    );
}
