//! Volume unlock in a real measured boot: a LUKS2 image (made on the host by cryptsetup, its key
//! a random secret) is the guest's virtio disk. On the first boot the guest seals the key with
//! `vouch-agent seal` to its own sha256 PCRs 0-9 (the host's copy of the key is then deleted),
//! unseals it, opens the volume with cryptsetup (dm-crypt, aes-xts) and writes a marker; a second
//! boot with the same command line unseals, opens and reads the marker back; a third boot with a
//! changed kernel command line (PCR 9) cannot unseal, and the volume stays locked. The second
//! test does the same with `vouch-agent volume` commands and recovers through the fleet.
//!
//! `VOUCH_SKIP_VM=1` skips it (and says so).

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use swtpm_tests::stack::FleetStack;
use swtpm_tests::vm::{initramfs, prepare, skip, BrokerPorts, Machine, Vm};

const CMDLINE: &str = "console=ttyS0 panic=-1";
const MARKER: &str = "vouch-vm-volume-ok";
const BROKER: &str = "vouch-broker";

const JOB: &str = r#"set -u
S=/mnt/share
A="vouch-agent --log-format text --state-dir $S/state"
if [ ! -e $S/sealed ]; then
  $A seal --pcrs sha256:0,1,2,3,4,5,6,7,8,9 --in $S/key --out $S/sealed || exit 2
  rm -f $S/key
fi
if ! $A unseal --in $S/sealed --out /tmp/key; then
  echo "unseal refused"
  exit 3
fi
cryptsetup open --key-file /tmp/key /dev/vda data || exit 4
dmsetup mknodes
if [ ! -e $S/written ]; then
  printf MARKER | dd of=/dev/mapper/data conv=notrunc 2>/dev/null || exit 5
  sync
  touch $S/written
fi
dd if=/dev/mapper/data bs=LEN count=1 2>/dev/null >$S/read
cryptsetup close data
echo "volume read back"
"#;

struct Boot {
    rc: String,
    out: String,
}

fn boot(
    machine: &mut Machine,
    kernel: &swtpm_tests::vm::Kernel,
    initrd: &Path,
    cmdline: &str,
) -> Boot {
    // No fleet: the guest's broker ports lead to the discard port.
    let nowhere = BrokerPorts {
        device: 9,
        enroll: 9,
    };
    let vm = start(machine, kernel, initrd, cmdline, nowhere);
    finish(machine, vm)
}

/// Starts a boot whose job output is collected by [`finish`]; `ports` are the broker's.
fn start(
    machine: &mut Machine,
    kernel: &swtpm_tests::vm::Kernel,
    initrd: &Path,
    cmdline: &str,
    ports: BrokerPorts,
) -> Vm {
    let share = machine.share();
    for f in ["job.rc", "job.out", "read"] {
        let _ = std::fs::remove_file(share.join(f));
    }
    machine.boot(kernel, initrd, cmdline, ports).unwrap()
}

/// Waits for the job to end and the guest to power off; returns its status and output.
fn finish(machine: &Machine, mut vm: Vm) -> Boot {
    let share = machine.share();
    vm.wait_serial("vouch-init: job.sh exited", Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{e}\nserial:\n{}", vm.serial()));
    assert!(
        vm.power_off(Duration::from_secs(60)),
        "guest did not power off"
    );
    Boot {
        rc: std::fs::read_to_string(share.join("job.rc"))
            .unwrap_or_default()
            .trim()
            .to_string(),
        out: std::fs::read_to_string(share.join("job.out")).unwrap_or_default(),
    }
}

#[test]
fn a_volume_sealed_to_the_boot_opens_on_the_same_boot_and_stays_locked_after_a_change() {
    if skip("vm_volume") {
        return;
    }
    let kernel = prepare()
        .unwrap_or_else(|e| panic!("VM prerequisites: {}", vouch_attest::errors::chain(&e)));
    let mut machine = Machine::new().unwrap();
    let initrd = machine.dir().join("initrd.cpio");
    let agent = swtpm_tests::bin_path("vouch-agent");
    initramfs::build(&kernel.modules, &agent, "vouch-broker", &initrd).unwrap();

    // The volume: LUKS2 (fast PBKDF2 keyslot) keyed by a random 32-byte secret.
    let share = machine.share();
    let key = share.join("key");
    let mut secret = [0u8; 32];
    getrandom(&mut secret);
    std::fs::write(&key, secret).unwrap();
    let image = machine.dir().join("volume.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let format = Command::new("cryptsetup")
        .args(["luksFormat", "--batch-mode", "--type", "luks2"])
        .args(["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"])
        .arg("--key-file")
        .arg(&key)
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        format.status.success(),
        "{}",
        String::from_utf8_lossy(&format.stderr)
    );
    machine.attach_disk(&image);
    let job = JOB
        .replace("MARKER", MARKER)
        .replace("LEN", &MARKER.len().to_string());
    std::fs::write(share.join("job.sh"), job).unwrap();

    let first = boot(&mut machine, &kernel, &initrd, CMDLINE);
    assert_eq!(first.rc, "0", "{}", first.out);
    assert!(
        !key.exists(),
        "the guest deletes the plaintext key after sealing"
    );
    assert!(share.join("sealed").exists());
    assert_eq!(std::fs::read_to_string(share.join("read")).unwrap(), MARKER);

    // Same boot chain: unseals, opens, reads the marker the first boot wrote.
    let second = boot(&mut machine, &kernel, &initrd, CMDLINE);
    assert_eq!(second.rc, "0", "{}", second.out);
    assert_eq!(std::fs::read_to_string(share.join("read")).unwrap(), MARKER);

    // PCR 9 changed: the TPM refuses to unseal, the volume is never opened.
    let third = boot(
        &mut machine,
        &kernel,
        &initrd,
        &format!("{CMDLINE} vouch.test=changed"),
    );
    eprintln!("third boot's job output:\n{}", third.out);
    assert_eq!(third.rc, "3", "{}", third.out);
    assert!(third.out.contains("unseal refused"), "{}", third.out);
    assert!(third.out.contains("sha256:9 now differ"), "{}", third.out);
    assert!(!share.join("read").exists());
}

/// Random bytes from the kernel (the secret must not be predictable even in a test).
fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(buf)
        .unwrap();
}

/// The same with Vouch's own volume commands: `vouch-agent volume create` writes the LUKS2 volume
/// natively on the guest's virtio disk with a secret it seals to PCRs 0-9, and `volume unlock`
/// activates dm-crypt through Vouch's device-mapper ioctls in a real kernel. After a command-line
/// change, recovery goes through the fleet: the guest's agent deposits the escrow record, the
/// release is refused while the device is untrusted and sent (encrypted to the guest's TPM) once
/// the new boot's policy is assigned, and the guest re-seals and unlocks.
const VOUCH_JOB: &str = r#"set -u
S=/mnt/share
A="vouch-agent --log-format text --state-dir $S/state"
if [ ! -e $S/created ]; then
  $A volume create --device /dev/vda --pcrs sha256:0,1,2,3,4,5,6,7,8,9 \
     --escrow-key $S/escrow.pub.pem --escrow-out $S/escrow.json \
     --recovery-kdf-memory 65536 --label vm || exit 2
  touch $S/created
fi
if [ -e $S/fleet-recovery ]; then
  # Recovery after a legitimate boot change: the agent connects to the fleet, deposits the
  # escrow record and waits for the released passphrase, which it seals to this boot.
  VOUCH_LOG=debug vouch-agent run --allow-root --log-format text --config $S/agent.toml \
    >$S/agent.log 2>&1 &
  agent=$!
  n=0
  while [ -z "$(ls $S/state/recovery/*.sealed 2>/dev/null)" ] && [ $n -lt 280 ]; do
    sleep 1; n=$((n+1))
  done
  kill $agent; wait $agent
  $A volume reseal --device /dev/vda --pcrs sha256:0,1,2,3,4,5,6,7,8,9 \
     || { echo "reseal failed"; exit 7; }
  rm -f $S/fleet-recovery
  echo "resealed to this boot"
fi
$A volume unlock --device /dev/vda --name data
rc=$?
if [ $rc -ne 0 ]; then echo "unlock exit $rc"; exit 3; fi
dmsetup mknodes
if [ ! -e $S/written ]; then
  printf MARKER | dd of=/dev/mapper/data conv=notrunc 2>/dev/null || exit 5
  sync
  touch $S/written
fi
dd if=/dev/mapper/data bs=LEN count=1 2>/dev/null >$S/read
$A volume lock --name data || exit 6
echo "volume read back"
"#;

#[test]
fn vouch_volume_commands_unlock_with_dm_crypt_in_a_real_kernel() {
    if skip("vm_volume_vouch") {
        return;
    }
    let kernel = prepare()
        .unwrap_or_else(|e| panic!("VM prerequisites: {}", vouch_attest::errors::chain(&e)));
    let mut machine = Machine::new().unwrap();
    let initrd = machine.dir().join("initrd.cpio");
    let agent = swtpm_tests::bin_path("vouch-agent");
    initramfs::build(&kernel.modules, &agent, BROKER, &initrd).unwrap();
    let share = machine.share();
    let fleet = FleetStack::start_with_names(&machine.ek_trust(), &[BROKER], |t| {
        t.replace("jitter_secs = 30", "jitter_secs = 0")
    })
    .unwrap();
    machine.provision_agent(&fleet.dir(), BROKER).unwrap();
    let keygen = Command::new(swtpm_tests::bin_path("vouch-fleet"))
        .args(["escrow", "keygen", "--key"])
        .arg(fleet.dir().join("state").join("escrow.key.pem"))
        .arg("--public")
        .arg(share.join("escrow.pub.pem"))
        .output()
        .unwrap();
    assert!(
        keygen.status.success(),
        "{}",
        String::from_utf8_lossy(&keygen.stderr)
    );
    let image = machine.dir().join("volume.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    machine.attach_disk(&image);
    let job = VOUCH_JOB
        .replace("MARKER", MARKER)
        .replace("LEN", &MARKER.len().to_string());
    std::fs::write(share.join("job.sh"), job).unwrap();

    let first = boot(&mut machine, &kernel, &initrd, CMDLINE);
    assert_eq!(first.rc, "0", "{}", first.out);
    assert_eq!(std::fs::read_to_string(share.join("read")).unwrap(), MARKER);
    let first_log = std::fs::read(share.join("eventlog.bin")).unwrap();
    // What the guest wrote is a LUKS2 volume cryptsetup on the host recognises.
    let dump = Command::new("cryptsetup")
        .arg("luksDump")
        .arg(&image)
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("vouch-tpm2") && dump.contains("vouch-escrow"),
        "{dump}"
    );

    let second = boot(&mut machine, &kernel, &initrd, CMDLINE);
    assert_eq!(second.rc, "0", "{}", second.out);
    assert_eq!(std::fs::read_to_string(share.join("read")).unwrap(), MARKER);

    let third = boot(
        &mut machine,
        &kernel,
        &initrd,
        &format!("{CMDLINE} vouch.test=changed"),
    );
    assert_eq!(third.rc, "3", "{}", third.out);
    assert!(third.out.contains("unlock exit 7"), "{}", third.out);
    assert!(third.out.contains("sha256:9"), "{}", third.out);

    // Recovery through the fleet's escrow. Boot 4 keeps the changed command line; the guest's
    // agent enrolls, deposits the escrow record and attests. Under a policy recorded from boot
    // 1 the device is untrusted and the release is refused; once the operator records and
    // assigns the new boot's policy and the device attests trusted, the release goes to the
    // device encrypted for its TPM, and the guest re-seals to the new boot and unlocks.
    let boot1_log = first_log;
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(share.join("escrow.json")).unwrap()).unwrap();
    let device = record["device_id"].as_str().unwrap().to_string();
    let volume = record["volume_uuid"].as_str().unwrap().to_string();
    std::fs::write(share.join("fleet-recovery"), b"").unwrap();
    let vm = start(
        &mut machine,
        &kernel,
        &initrd,
        &format!("{CMDLINE} vouch.test=changed"),
        fleet.broker_ports(),
    );
    let serial = |vm: &Vm| {
        format!(
            "serial:\n{}\nguest agent:\n{}\naudit:\n{}\nbroker:\n{}",
            vm.serial(),
            std::fs::read_to_string(share.join("agent.log")).unwrap_or_default(),
            fleet.cli(&["audit"]).stdout,
            fleet.broker_log()
        )
    };
    fleet
        .wait_device(&device, Duration::from_secs(240), |v| {
            v["verdicts"][0]["trusted"] == true
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", serial(&vm)));
    swtpm_tests::stack::wait_until("the escrow deposit", Duration::from_secs(60), || {
        fleet
            .cli(&["audit"])
            .stdout
            .contains(&format!("escrow record of volume {volume} deposited"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", serial(&vm)));
    let boot1 = machine.dir().join("boot1.eventlog");
    std::fs::write(&boot1, &boot1_log).unwrap();
    fleet.record_policy("boot-1", &boot1).unwrap();
    let boot4 = machine.dir().join("boot4.eventlog");
    std::fs::copy(share.join("eventlog.bin"), &boot4).unwrap();
    fleet.record_policy("boot-4", &boot4).unwrap();
    fleet.reload_server().unwrap();
    assert_eq!(
        fleet.cli(&["device", "set-policy", &device, "boot-1"]).code,
        0
    );
    let attest = fleet.cli(&["attest", &device, "--wait", "120"]);
    assert_eq!(
        attest.code, 1,
        "untrusted under boot 1's policy: {}",
        attest.stderr
    );
    let refused = fleet.cli(&["escrow", "release", &device, &volume]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("untrusted"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("kernel_cmdline"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        fleet.cli(&["device", "set-policy", &device, "boot-4"]).code,
        0
    );
    let attest = fleet.cli(&["attest", &device, "--wait", "120"]);
    assert_eq!(
        attest.code, 0,
        "trusted under boot 4's policy: {}",
        attest.stderr
    );
    let released = fleet.cli(&["escrow", "release", &device, &volume, "--wait", "120"]);
    assert_eq!(released.code, 0, "{}\n{}", released.stderr, serial(&vm));
    let fourth = finish(&machine, vm);
    assert_eq!(fourth.rc, "0", "{}", fourth.out);
    assert!(
        fourth.out.contains("resealed to this boot"),
        "{}",
        fourth.out
    );
    let recovery = share.join("state").join("recovery");
    assert!(
        std::fs::read_dir(&recovery).map_or(true, |mut d| d.next().is_none()),
        "volume reseal removes the released passphrase"
    );
    assert_eq!(std::fs::read_to_string(share.join("read")).unwrap(), MARKER);
    let audit = fleet.cli(&["audit"]).stdout;
    assert!(audit.contains("device reports ok"), "{audit}");
}
