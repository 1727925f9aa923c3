//! Volume recovery through the fleet, with real processes: a TPM-sealed volume is created on a
//! swtpm booted from one real firmware log; the running agent deposits its escrow record with
//! the fleet; the machine "boots" another real log (PCR 7 differs), so the volume no longer
//! unseals and the device is untrusted under its assigned policy. `vouch-fleet escrow release
//! ID VOLUME` is refused while the last verdict is untrusted; once the operator approves the new
//! boot (records and assigns its policy) and the device attests trusted, the release goes through
//! without an override: the server sends the passphrase encrypted to the device's TPM, the
//! agent seals it to the new boot, and `vouch-agent volume unlock` re-seals keyslot 0 with it
//! (as it was sealed before: PCR 7) and opens the volume.

use std::path::Path;
use std::time::Duration;
use swtpm_tests::stack::FleetStack;
use swtpm_tests::{testdata, Output, Swtpm};

const LOG_A: &str = "eventlogs/t2t_event-arch-linux.bin";
const LOG_B: &str = "eventlogs/keylime_mb_binary_bios_measurements-secureboot.bin";

fn status(v: &serde_json::Value) -> &str {
    v["device"]["status"].as_str().unwrap_or_default()
}

fn ok(o: &Output) {
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
}

/// `volume unlock --dry-run`: unseal and open keyslot 0, no mapping.
fn dry_unlock(tpm: &Swtpm, state: &Path, image: &str) -> Output {
    tpm.agent(
        state,
        &[
            "volume",
            "unlock",
            "--device",
            image,
            "--name",
            "v",
            "--dry-run",
        ],
    )
}

fn agent_log(config: &Path) -> String {
    std::fs::read_to_string(config.with_extension("log")).unwrap_or_default()
}

#[test]
fn a_released_passphrase_reaches_the_device_only_after_a_trusted_verdict() {
    let mut tpm = Swtpm::start().unwrap();
    let (log_a, log_b) = (testdata().join(LOG_A), testdata().join(LOG_B));
    tpm.boot_from_log(&std::fs::read(&log_a).unwrap()).unwrap();
    let trust = vec![tpm.ca_root_cert(), tpm.ca_dir().join("issuercert.pem")];
    let fleet =
        FleetStack::start(&trust, |t| t.replace("jitter_secs = 30", "jitter_secs = 0")).unwrap();
    let escrow_pub = fleet.dir().join("escrow.pub.pem");
    let key = fleet.dir().join("state").join("escrow.key.pem");
    ok(&swtpm_tests::run(
        "vouch-fleet",
        &[
            "escrow",
            "keygen",
            "--key",
            &key.to_string_lossy(),
            "--public",
            &escrow_pub.to_string_lossy(),
        ],
        &[],
    ));

    // The volume, sealed to PCR 7 of boot A; `volume create` leaves the escrow record (only
    // ciphertext) in the agent's state directory for the daemon to deposit.
    let state = tpm.dir().join("agent");
    let image = tpm.dir().join("vol.img").to_string_lossy().into_owned();
    ok(&tpm.agent(
        &state,
        &[
            "volume",
            "create",
            "--device",
            &image,
            "--size",
            "32M",
            "--pcrs",
            "sha256:7",
            "--escrow-key",
            &escrow_pub.to_string_lossy(),
            "--recovery-kdf-memory",
            "8192",
            "--recovery-kdf-time",
            "1",
        ],
    ));
    let o = tpm.agent(&state, &["volume", "status", "--device", &image, "--json"]);
    ok(&o);
    let uuid = serde_json::from_str::<serde_json::Value>(&o.stdout).unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let copy = state.join("escrow").join(format!("{uuid}.json"));
    assert!(copy.exists(), "no escrow record copy at {}", copy.display());
    let o = tpm.agent(&state, &["tpm", "info", "--json"]);
    ok(&o);
    let id = serde_json::from_str::<serde_json::Value>(&o.stdout).unwrap()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Boot A: enrolls, attests trusted under a policy recorded from boot A, deposits the record.
    let agent = fleet
        .start_agent_with_deposit(&tpm, &state, &log_a, "boot-a", &id, &uuid)
        .unwrap_or_else(|e| panic!("{e}"));
    // A volume the device never deposited is named as such.
    let o = fleet.cli(&[
        "escrow",
        "release",
        &id,
        "00000000-0000-4000-8000-000000000000",
    ]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("deposited no escrow record") && o.stderr.contains(&uuid),
        "{}",
        o.stderr
    );

    // Boot B: PCR 7 differs, so the volume does not unseal (exit 7) and policy boot-a fails.
    agent.stop();
    tpm.restart().unwrap();
    tpm.boot_from_log(&std::fs::read(&log_b).unwrap()).unwrap();
    let o = dry_unlock(&tpm, &state, &image);
    assert_eq!(o.code, 7, "{}", o.stderr);
    let o = tpm.agent(&state, &["volume", "reseal", "--device", &image]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("has released no passphrase"),
        "{}",
        o.stderr
    );
    let config = fleet.agent_config(&tpm, &state, &log_b).unwrap();
    let agent = fleet.start_agent(&config).unwrap();
    fleet
        .wait_device(&id, Duration::from_secs(40), |v| {
            status(v) == "untrusted" && v["verdicts"][0]["trusted"] == false
        })
        .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent_log(&config)));
    let o = fleet.cli(&["escrow", "release", &id, &uuid]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("is untrusted"), "{}", o.stderr);

    // The operator approves boot B; the device attests trusted; the release needs no override.
    fleet.record_policy("boot-b", &log_b).unwrap();
    fleet.reload_server().unwrap();
    ok(&fleet.cli(&["device", "set-policy", &id, "boot-b"]));
    ok(&fleet.cli(&["attest", &id]));
    let o = fleet.cli(&["escrow", "release", &id, &uuid, "--wait", "30"]);
    assert_eq!(
        o.code,
        0,
        "{}\nserver log:\n{}\nagent log:\n{}",
        o.stderr,
        fleet.server_log(),
        agent_log(&config)
    );
    assert!(o.stderr.contains("device reports ok"), "{}", o.stderr);
    let audit = fleet.cli(&["audit"]).stdout;
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    for want in [
        &format!("released to the device for boot {}", boot_id.trim()) as &str,
        "last verdict #",
        "sent, encrypted to the device's TPM",
        "device reports ok",
    ] {
        assert!(
            audit.contains(want),
            "{want:?} not in the audit log:\n{audit}"
        );
    }
    let sealed = state.join("recovery").join(format!("{uuid}.sealed"));
    assert!(sealed.exists());

    // The operator path hands the same passphrase out (audited): it is in no file in clear.
    let pass = fleet.cli(&[
        "escrow",
        "release",
        &id,
        "--blob",
        &copy.to_string_lossy(),
        "--override",
        "--reason",
        "test reads the passphrase",
    ]);
    ok(&pass);
    let pass = pass.stdout.trim().as_bytes().to_vec();
    assert!(pass.len() >= 20);
    for f in [&sealed, &copy, &config.with_extension("log")] {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes.windows(pass.len()).any(|w| w == pass.as_slice()),
            "{} holds the passphrase",
            f.display()
        );
    }

    // Unlock (root, with the agent stopped: one TPM connection) finds the released passphrase,
    // re-seals keyslot 0 to this boot as it was sealed before (PCR 7), and opens the volume.
    agent.stop();
    let o = dry_unlock(&tpm, &state, &image);
    ok(&o);
    assert!(
        o.stderr
            .contains("re-sealing with the passphrase the fleet released"),
        "{}",
        o.stderr
    );
    assert!(!sealed.exists(), "the released passphrase file is removed");
    let o = tpm.agent(&state, &["volume", "status", "--device", &image, "--json"]);
    ok(&o);
    let st: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(st["sealed_to"], "PCRs sha256:7", "{st}");
    // Nothing is left to recover with: a second unlock simply unseals.
    let o = dry_unlock(&tpm, &state, &image);
    ok(&o);
    assert!(!o.stderr.contains("re-sealing"), "{}", o.stderr);
    // And cryptsetup agrees that the passphrase opens the recovery keyslot.
    let pf = tpm.dir().join("pass");
    std::fs::write(&pf, &pass).unwrap();
    let c = std::process::Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-slot", "1", "--key-file"])
        .arg(&pf)
        .arg(&image)
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
}
