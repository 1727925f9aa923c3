//! Issue 11, defect 1: the boot id under the shipped unit's sandbox. `ProcSubset=pid` hides
//! `/proc/sys/kernel/random/boot_id`; the agent used to fall back to "unknown" there, so every
//! boot looked alike and the escrow release's one-boot binding never fired. These tests run the
//! real `vouch-agent` in a private mount and PID namespace whose `/proc` is mounted
//! `subset=pid`, as systemd does for that setting, against a real swtpm.

use std::process::Command;
use swtpm_tests::{bin_path, Swtpm};

/// The host's boot id in systemd's `%b` form (32 hex digits, no dashes).
fn percent_b() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .replace('-', "")
}

/// Runs `vouch-agent ARGS` with `/proc` mounted `subset=pid`; `boot_env` is `VOUCH_BOOT_ID`.
fn sandboxed(tpm: &Swtpm, args: &[&str], boot_env: Option<&str>) -> std::process::Output {
    let agent = bin_path("vouch-agent");
    let state = tpm.dir().join("agent");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--pid",
        "--fork",
        "--propagation",
        "private",
        "sh",
        "-c",
    ])
    .arg(
        "mount -t proc -o subset=pid proc /proc || exit 99; \
             test ! -e /proc/sys/kernel/random/boot_id || exit 98; exec \"$@\"",
    )
    .arg("sh")
    .arg(&agent)
    .arg("--tcti")
    .arg(tpm.tcti())
    .arg("--state-dir")
    .arg(&state)
    .args(args)
    .env("TSS2_LOG", "all+none")
    .env_remove("VOUCH_BOOT_ID");
    if let Some(b) = boot_env {
        cmd.env("VOUCH_BOOT_ID", b);
    }
    let out = cmd.output().expect("unshare (util-linux) is installed");
    assert_ne!(
        out.status.code(),
        Some(99),
        "cannot mount a subset=pid procfs: {out:?}"
    );
    assert_ne!(
        out.status.code(),
        Some(98),
        "the sandbox still shows the boot id: {out:?}"
    );
    out
}

#[test]
fn tpm_info_shows_the_boot_id_systemd_hands_over_and_says_when_it_has_none() {
    let tpm = Swtpm::start().unwrap();
    let host: vouch_attest::boot::BootId = percent_b().parse().unwrap();

    // As the unit runs it: Environment=VOUCH_BOOT_ID=%b.
    let out = sandboxed(&tpm, &["tpm", "info", "--json"], Some(&percent_b()));
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["boot_id"], host.to_string(), "{v}");
    let text = sandboxed(&tpm, &["tpm", "info"], Some(&percent_b()));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("boot id:           {host}")),
        "{text}"
    );

    // Without it: no id, and the reason, never a placeholder.
    let out = sandboxed(&tpm, &["tpm", "info", "--json"], None);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["boot_id"].is_null(), "{v}");
    let why = v["boot_id_error"].as_str().unwrap_or_default();
    assert!(why.contains("VOUCH_BOOT_ID"), "{why}");
}

#[test]
fn the_daemon_refuses_to_run_without_knowing_its_boot() {
    let tpm = Swtpm::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "[broker]\nhost = \"localhost\"\nca_file = \"ca.crt\"\nclaim_cert = \"c.crt\"\n\
         claim_key = \"c.key\"\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let out = sandboxed(&tpm, &["run", "--allow-root", "--config", &config], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(err.contains("cannot tell which boot this is"), "{err}");
    assert!(err.contains("VOUCH_BOOT_ID"), "{err}");
}
