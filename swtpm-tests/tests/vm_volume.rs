//! Volume unlock in a real measured boot: a LUKS2 image (made on the host by cryptsetup, its key
//! a random secret) is the guest's virtio disk. On the first boot the guest seals the key with
//! `vouch-agent seal` to its own sha256 PCRs 0-9 (the host's copy of the key is then deleted),
//! unseals it, opens the volume with cryptsetup (dm-crypt, aes-xts) and writes a marker; a second
//! boot with the same command line unseals, opens and reads the marker back; a third boot with a
//! changed kernel command line (PCR 9) cannot unseal, and the volume stays locked.
//!
//! `VOUCH_SKIP_VM=1` skips it (and says so).

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use swtpm_tests::vm::{initramfs, prepare, skip, Machine};

const CMDLINE: &str = "console=ttyS0 panic=-1";
const MARKER: &str = "vouch-vm-volume-ok";

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
    let share = machine.share();
    for f in ["job.rc", "job.out", "read"] {
        let _ = std::fs::remove_file(share.join(f));
    }
    let mut vm = machine.boot(kernel, initrd, cmdline, 9).unwrap();
    vm.wait_serial("vouch-init: job.sh exited", Duration::from_secs(240))
        .unwrap();
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
    let kernel = prepare().unwrap_or_else(|e| panic!("VM prerequisites: {e}"));
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
/// activates dm-crypt through Vouch's device-mapper ioctls in a real kernel.
const VOUCH_JOB: &str = r#"set -u
S=/mnt/share
A="vouch-agent --log-format text --state-dir $S/state"
if [ ! -e $S/created ]; then
  $A volume create --device /dev/vda --pcrs sha256:0,1,2,3,4,5,6,7,8,9 \
     --escrow-key $S/escrow.pub.pem --escrow-out $S/escrow.json \
     --recovery-kdf-memory 65536 --label vm || exit 2
  touch $S/created
fi
if [ -e $S/recovery ]; then
  # Recovery after a legitimate boot change: the fleet released the escrowed passphrase.
  $A volume reseal --device /dev/vda --recovery-file $S/recovery \
     --pcrs sha256:0,1,2,3,4,5,6,7,8,9 || { echo "reseal failed"; exit 7; }
  rm -f $S/recovery
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
    let kernel = prepare().unwrap_or_else(|e| panic!("VM prerequisites: {e}"));
    let mut machine = Machine::new().unwrap();
    let initrd = machine.dir().join("initrd.cpio");
    let agent = swtpm_tests::bin_path("vouch-agent");
    initramfs::build(&kernel.modules, &agent, "vouch-broker", &initrd).unwrap();
    let share = machine.share();
    let keygen = Command::new(swtpm_tests::bin_path("vouch-fleet"))
        .args(["escrow", "keygen", "--key"])
        .arg(machine.dir().join("escrow.key.pem"))
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

    // Recovery through the fleet's escrow: an audited override releases the passphrase (the
    // device has no trusted verdict in this fleet), the guest re-seals to the new boot and unlocks.
    let fleet_dir = machine.dir().join("fleet");
    let init = swtpm_tests::run(
        "vouch-fleet",
        &["init", "--dir", fleet_dir.to_str().unwrap()],
        &[],
    );
    assert_eq!(init.code, 0, "{}", init.stderr);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(share.join("escrow.json")).unwrap()).unwrap();
    let device = record["device_id"].as_str().unwrap().to_string();
    let release = |extra: &[&str]| {
        let mut args = vec![
            "escrow",
            "release",
            &device,
            "--config",
            fleet_dir.join("fleet.toml").to_str().unwrap(),
        ]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
        args.extend(["--blob", share.join("escrow.json").to_str().unwrap()].map(str::to_string));
        args.extend(
            [
                "--key",
                machine.dir().join("escrow.key.pem").to_str().unwrap(),
            ]
            .map(str::to_string),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        swtpm_tests::run("vouch-fleet", &refs, &[])
    };
    let refused = release(&[]);
    assert_eq!(refused.code, 1, "no trusted verdict: {}", refused.stderr);
    let recovery = share.join("recovery");
    let released = release(&[
        "--override",
        "--reason",
        "kernel command line changed on purpose",
        "--out",
        recovery.to_str().unwrap(),
    ]);
    assert_eq!(released.code, 0, "{}", released.stderr);
    let fourth = boot(
        &mut machine,
        &kernel,
        &initrd,
        &format!("{CMDLINE} vouch.test=changed"),
    );
    assert_eq!(fourth.rc, "0", "{}", fourth.out);
    assert!(
        fourth.out.contains("resealed to this boot"),
        "{}",
        fourth.out
    );
    assert!(
        !recovery.exists(),
        "the guest removes the released passphrase"
    );
    assert_eq!(std::fs::read_to_string(share.join("read")).unwrap(), MARKER);
}
