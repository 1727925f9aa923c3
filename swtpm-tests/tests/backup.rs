//! Fleet backup and restore with real processes (issue 19): a device (real agent on swtpm)
//! enrolls, attests trusted and deposits the escrow record of a LUKS2 volume; a second
//! (simulated) device is revoked. A backup is taken while `serve` runs and the agent attests,
//! encrypted to a backup key split 2-of-3. The fleet directory is destroyed, the backup
//! restored into another directory on other ports, broker and server started there, and the
//! agent pointed at it: the device keeps attesting trusted with its existing certificate, the
//! revoked device stays revoked, the volume's passphrase escrowed before the backup is released
//! and opens the volume, and the audit chain verifies across the restore. Damaged, cut and
//! wrongly keyed backups, too few shares and a non-empty target are refused by name.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use swtpm_tests::load::provision::{self, BootImage};
use swtpm_tests::stack::FleetStack;
use swtpm_tests::{testdata, HarnessError, Output, Swtpm};

const LOG_A: &str = "eventlogs/t2t_event-arch-linux.bin";

fn status(v: &serde_json::Value) -> &str {
    v["device"]["status"].as_str().unwrap_or_default()
}

fn ok(o: &Output) {
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
}

fn fleet_cmd(args: &[&str]) -> Output {
    swtpm_tests::run("vouch-fleet", args, &[])
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn agent_log(config: &Path) -> String {
    std::fs::read_to_string(config.with_extension("log")).unwrap_or_default()
}

/// The serial numbers a CRL lists (`openssl crl -text`).
fn crl_serials(crl: &Path) -> Vec<String> {
    let o = std::process::Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(crl)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn last_verdict_id(v: &serde_json::Value) -> i64 {
    v["verdicts"][0]["id"].as_i64().unwrap_or(0)
}

#[test]
fn a_restored_fleet_keeps_devices_revocations_escrow_and_audit_chain() {
    let tpm = Swtpm::start().unwrap();
    let log_a = testdata().join(LOG_A);
    tpm.boot_from_log(&std::fs::read(&log_a).unwrap()).unwrap();
    let trust = vec![tpm.ca_root_cert(), tpm.ca_dir().join("issuercert.pem")];
    let edit = |t: String| {
        t.replace("jitter_secs = 30", "jitter_secs = 0")
            .replace("interval_secs = 300", "interval_secs = 2")
    };
    let fleet = FleetStack::start(&trust, edit).unwrap();
    // Backup key material lives with the operators, not in the fleet directory.
    let safe = tempfile::tempdir().unwrap();
    let safe = safe.path();
    let escrow_pub = fleet.dir().join("escrow.pub.pem");
    let escrow_key = fleet.dir().join("state").join("escrow.key.pem");
    ok(&fleet_cmd(&[
        "escrow",
        "keygen",
        "--key",
        &s(&escrow_key),
        "--public",
        &s(&escrow_pub),
    ]));
    ok(&fleet_cmd(&[
        "backup",
        "keygen",
        "--public",
        &s(&fleet.dir().join("backup.pub.pem")),
        "--shares",
        "3",
        "--threshold",
        "2",
        "--share-prefix",
        &s(&safe.join("operator")),
    ]));
    let share = |i: u8| s(&safe.join(format!("operator-{i}.share")));

    // The device's volume, its escrow record deposited through the running agent.
    let state = tpm.dir().join("agent");
    let image = s(&tpm.dir().join("vol.img"));
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
            &s(&escrow_pub),
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
    let record = state.join("escrow").join(format!("{uuid}.json"));
    let o = tpm.agent(&state, &["tpm", "info", "--json"]);
    ok(&o);
    let id = serde_json::from_str::<serde_json::Value>(&o.stdout).unwrap()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = fleet
        .start_agent_with_deposit(&tpm, &state, &log_a, "boot-a", &id, &uuid)
        .unwrap_or_else(|e| panic!("{e}"));
    let cert_before = std::fs::read(state.join("device.crt")).unwrap();

    // A second, simulated device: registered with a certificate of this CA, then revoked.
    let image_a = BootImage::from_log(&std::fs::read(&log_a).unwrap()).unwrap();
    let sims = provision::make_devices(&fleet.dir(), &image_a, 1, |_| {}).unwrap();
    provision::register(&fleet.dir().join("state"), &sims).unwrap();
    let revoked = sims[0].id.clone();
    ok(&fleet.cli(&["revoke", &revoked]));
    assert_eq!(status(&fleet.device(&revoked).unwrap()), "revoked");

    // The backup, while serve runs and the agent keeps attesting (a verdict every 2 s).
    let before = last_verdict_id(&fleet.device(&id).unwrap());
    let backup = safe.join("fleet.vbk");
    let t = Instant::now();
    let o = fleet.cli(&["backup", "--out", &s(&backup)]);
    ok(&o);
    let took = t.elapsed();
    let size = std::fs::metadata(&backup).unwrap().len();
    eprintln!(
        "backup: {size} bytes in {} ms; {}",
        took.as_millis(),
        o.stderr.trim()
    );
    fleet
        .wait_device(&id, Duration::from_secs(20), |v| {
            last_verdict_id(v) > before && v["verdicts"][0]["trusted"] == true
        })
        .unwrap();
    // No key in clear in the backup file.
    let bytes = std::fs::read(&backup).unwrap();
    for secret in [
        std::fs::read(&escrow_key).unwrap(),
        std::fs::read(fleet.dir().join("ca.key")).unwrap(),
    ] {
        assert!(!bytes.windows(40).any(|w| w == &secret[30..70]));
    }

    // verify: with 2 shares it passes; 1 share, a cut file, a damaged byte, a foreign key fail.
    let o = fleet_cmd(&[
        "backup",
        "verify",
        "--in",
        &s(&backup),
        "--share",
        &share(1),
        "--share",
        &share(3),
    ]);
    ok(&o);
    assert!(
        o.stderr.contains("audit chain:") && o.stderr.contains("intact"),
        "{}",
        o.stderr
    );
    assert!(
        o.stdout.contains("state/escrow.key.pem") && o.stdout.contains("registry.db"),
        "{}",
        o.stdout
    );
    let o = fleet_cmd(&[
        "backup",
        "verify",
        "--in",
        &s(&backup),
        "--share",
        &share(2),
    ]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("1 distinct shares given, 2 needed"),
        "{}",
        o.stderr
    );
    let cut = safe.join("cut.vbk");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let o = fleet_cmd(&[
        "backup",
        "verify",
        "--in",
        &s(&cut),
        "--share",
        &share(1),
        "--share",
        &share(2),
    ]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("backup is truncated"), "{}", o.stderr);
    let mut damaged = bytes.clone();
    damaged[bytes.len() / 2] ^= 0x40;
    let bad = safe.join("damaged.vbk");
    std::fs::write(&bad, &damaged).unwrap();
    let o = fleet_cmd(&[
        "backup",
        "verify",
        "--in",
        &s(&bad),
        "--share",
        &share(1),
        "--share",
        &share(2),
    ]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("corrupted: checksum mismatch"),
        "{}",
        o.stderr
    );
    let other = safe.join("other.key");
    ok(&fleet_cmd(&[
        "backup",
        "keygen",
        "--key",
        &s(&other),
        "--public",
        &s(&safe.join("other.pub")),
    ]));
    let o = fleet_cmd(&["backup", "verify", "--in", &s(&backup), "--key", &s(&other)]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("backup was made for backup key"),
        "{}",
        o.stderr
    );

    // The fleet machine is lost: processes gone, directory gone.
    agent.stop();
    let revoked_serials = crl_serials(&fleet.dir().join("crl.pem"));
    assert_eq!(revoked_serials.len(), 1, "{revoked_serials:?}");
    let old_dir = fleet.dir();
    drop(fleet);
    assert!(!old_dir.exists());

    // restore never overwrites a directory that holds files unless asked.
    let busy = safe.join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep"), b"x").unwrap();
    let o = fleet_cmd(&[
        "restore",
        "--in",
        &s(&backup),
        "--dir",
        &s(&busy),
        "--share",
        &share(2),
        "--share",
        &share(3),
    ]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("not empty; pass --force"), "{}", o.stderr);
    assert!(busy.join("keep").exists());

    // Restore on another directory and other ports; broker and server start there.
    let restored = FleetStack::start_prepared(|dir: &Path, port, enroll| {
        let o = fleet_cmd(&[
            "restore",
            "--in",
            &s(&backup),
            "--dir",
            &s(dir),
            "--share",
            &share(3),
            "--share",
            &share(2),
            "--broker-port",
            &port.to_string(),
            "--enroll-port",
            &enroll.to_string(),
        ]);
        if o.code != 0 {
            return Err(HarnessError::Setup(format!("restore: {}", o.stderr)));
        }
        Ok(())
    })
    .unwrap();
    let conf = std::fs::read_to_string(restored.dir().join("mosquitto.conf")).unwrap();
    assert!(!conf.contains(&s(&old_dir)), "{conf}");
    assert!(
        conf.contains(&format!("listener {} 127.0.0.1", restored.port())),
        "{conf}"
    );
    assert_eq!(status(&restored.device(&revoked).unwrap()), "revoked");
    // The broker of the restored fleet refuses the revoked certificate: its CRL still lists it.
    assert_eq!(
        crl_serials(&restored.dir().join("crl.pem")),
        revoked_serials
    );

    // The agent, same state (same certificate), pointed at the restored fleet.
    let before = last_verdict_id(&restored.device(&id).unwrap());
    let config: PathBuf = restored.agent_config(&tpm, &state, &log_a).unwrap();
    let agent = restored.start_agent(&config).unwrap();
    restored
        .wait_device(&id, Duration::from_secs(30), |v| {
            last_verdict_id(v) > before && status(v) == "trusted"
        })
        .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent_log(&config)));
    assert_eq!(
        std::fs::read(state.join("device.crt")).unwrap(),
        cert_before,
        "the device kept its certificate (no re-enrollment)"
    );

    // The escrow record deposited before the backup: released to the device, and by hand.
    let o = restored.cli(&["escrow", "release", &id, &uuid, "--wait", "30"]);
    assert_eq!(
        o.code,
        0,
        "{}\nserver log:\n{}",
        o.stderr,
        restored.server_log()
    );
    assert!(o.stderr.contains("device reports ok"), "{}", o.stderr);
    let pass = restored.cli(&[
        "escrow",
        "release",
        &id,
        "--blob",
        &s(&record),
        "--override",
        "--reason",
        "restore drill",
    ]);
    ok(&pass);
    let pf = tpm.dir().join("pass");
    std::fs::write(&pf, pass.stdout.trim()).unwrap();
    let c = std::process::Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-slot", "1", "--key-file"])
        .arg(&pf)
        .arg(&image)
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    std::fs::remove_file(&pf).unwrap();

    // One audit chain from the first enrollment across the backup and the restore.
    let a = restored.cli(&["audit"]);
    ok(&a);
    assert!(a.stderr.contains("intact"), "{}", a.stderr);
    let kinds: Vec<&str> = a
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let pos = |k: &str| {
        kinds
            .iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("no {k} in\n{}", a.stdout))
    };
    assert!(
        pos("enrolled") < pos("backup") && pos("backup") < pos("restored"),
        "{}",
        a.stdout
    );
    assert!(pos("revoked") < pos("backup"));
    agent.stop();
}
