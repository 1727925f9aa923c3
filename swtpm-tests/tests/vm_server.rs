//! A real server: Debian 12 with systemd as PID 1 boots under OVMF + swtpm (q35, TCG) from a
//! virtio root disk through Debian's signed shim and GRUB (`scripts/vm-debian-image.sh`, cached),
//! with a virtio data disk; Vouch is installed from its .deb with apt inside the running guest,
//! exactly as README's "Install on a server" says, and runs under the units as shipped. The
//! commands go in through qemu-guest-agent.
//!
//! One machine, three boots:
//! 1. install; `vouch-agent.service` reaches `active` (Type=notify, watchdog, User=vouch, the
//!    shipped hardening), enrolls and attests trusted, also under a policy recorded from this
//!    boot's own event log; `systemd-analyze security` in the guest gives ≤ 1.5; the journal has
//!    the agent's structured fields and no secrets; a Vouch volume is created on the data disk,
//!    listed in `/etc/vouch/volumes.toml` and mounted by the fstab line of systemd/README.md;
//!    an answer queued in the outbox while the guest's network drops what it sends survives
//!    `systemctl kill -s KILL` (systemd restarts the agent) and reaches the fleet once the
//!    network is back; an escrow release is made for this boot while the agent is stopped;
//! 2. nobody acts: `vouch-volumes.service` unlocks before `local-fs.target` and the volume is
//!    mounted; the agent attests trusted; the release made for boot 1 is refused; `systemctl
//!    reload` re-reads the configuration; `dpkg -i` of a newer build upgrades in place (agent
//!    restarted, volume untouched, conffile edits kept);
//! 3. a changed boot (one more kernel command-line word in grub.cfg): only the volume fails, the
//!    machine comes up, the verdict is untrusted; `apt-get purge` keeps `/var/lib/vouch`.
//!
//! The second test boots the same image with Secure Boot on (Microsoft's keys enrolled): shim
//! and GRUB are verified, the agent attests trusted.
//!
//! On failure the serial consoles, the guest's journal and the fleet's and broker's logs are
//! kept under `target/tmp/vm_server/` and named. `VOUCH_SKIP_VM=1` skips it (and says so).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use swtpm_tests::stack::FleetStack;
use swtpm_tests::vm::{debian, skip, GuestOutput, Machine, Vm};

const BROKER: &str = "vouch-broker";
const MARKER: &str = "vouch-vm-server-volume-ok";

/// README "Install on a server": the commands an operator types, with the fleet's files on the
/// share (`/mnt/share`) in place of however they reach a real server.
const INSTALL: &[&str] = &[
    "apt-get install -y /mnt/share/pkg-1/vouch-agent_0.1.0-1_amd64.deb",
    "install -m 0644 /mnt/share/ca.crt /mnt/share/claim.crt /etc/vouch/",
    "install -m 0600 /mnt/share/claim.key /etc/vouch/claim.key",
    "sed -i 's/^host = .*/host = \"vouch-broker\"/' /etc/vouch/agent.toml",
    "systemctl start vouch-agent",
];

/// The fstab line of systemd/README.md ("vouch-volumes.service: encrypted volumes at boot").
const FSTAB: &str =
    "/dev/mapper/data  /srv/data  ext4  defaults,x-systemd.requires=vouch-volumes.service,nofail  0 2";

/// One VM test at a time: two TCG guests on two cores would starve each other.
static ONE_VM: Mutex<()> = Mutex::new(());

fn quick(text: String) -> String {
    text.replace("jitter_secs = 30", "jitter_secs = 0")
}

/// On a failing test, copies the serial consoles, the guest's journal (which the failing boot's
/// [`Vm`] saved on the share) and the fleet's logs to `target/tmp/vm_server/<test>/` and names
/// them.
struct Evidence {
    test: &'static str,
    machine: PathBuf,
    logs: Vec<PathBuf>,
}

impl Drop for Evidence {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let keep = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("vm_server")
            .join(self.test);
        let _ = std::fs::remove_dir_all(&keep);
        if std::fs::create_dir_all(&keep).is_err() {
            return;
        }
        let mut kept = Vec::new();
        let mut copy = |from: &Path, name: String| {
            if std::fs::copy(from, keep.join(&name)).is_ok() {
                kept.push(keep.join(name));
            }
        };
        if let Ok(dir) = std::fs::read_dir(&self.machine) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".serial") || name.ends_with(".qemu.log") {
                    copy(&e.path(), name);
                }
            }
        }
        copy(
            &self.machine.join("share/journal.txt"),
            "guest-journal.txt".into(),
        );
        for log in &self.logs {
            let name = log.file_name().unwrap_or_default().to_string_lossy();
            copy(log, format!("fleet-{name}"));
        }
        eprintln!("vm_server evidence kept:");
        for k in kept {
            eprintln!("  {}", k.display());
        }
    }
}

/// Runs `script` in the guest (as root).
fn sh(vm: &Vm, script: &str) -> GuestOutput {
    vm.guest()
        .sh(script, Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{script}: {}", vouch_attest::errors::chain(&e)))
}

/// Runs `script` in the guest and returns its stdout; it must succeed.
fn ok(vm: &Vm, script: &str) -> String {
    let out = sh(vm, script);
    assert_eq!(out.code, 0, "{script}\n{}", out.text());
    out.stdout
}

/// `systemctl show UNIT -p P` as one value.
fn prop(vm: &Vm, unit: &str, p: &str) -> String {
    ok(vm, &format!("systemctl show {unit} -p {p} --value"))
        .trim()
        .to_string()
}

/// Waits until `check` holds for the guest, polling every second.
fn wait_guest(vm: &Vm, what: &str, timeout: Duration, check: impl Fn(&Vm) -> bool) {
    let deadline = Instant::now() + timeout;
    while !check(vm) {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn boot(machine: &mut Machine, fleet: &FleetStack) -> Vm {
    let vm = machine.boot_disk(fleet.broker_ports()).unwrap();
    if let Err(e) = vm.guest().wait_ready(Duration::from_secs(300)) {
        panic!("{e}\nserial:\n{}", vm.serial());
    }
    eprintln!("guest agent answers after {:?}", vm.uptime());
    vm
}

fn shutdown(vm: Vm) {
    assert!(
        vm.shutdown(Duration::from_secs(120)),
        "the guest did not power off"
    );
}

/// The device the fleet enrolled.
fn enrolled(fleet: &FleetStack, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let out = fleet.cli(&["devices", "--json"]);
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        if let Some(id) = v[0]["id"].as_str() {
            return id.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no device enrolled in {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The host's wall clock in ms since the epoch: the fleet's clock (it runs on the host).
fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn last_verdict(fleet: &FleetStack, id: &str) -> i64 {
    fleet
        .device(id)
        .and_then(|v| v["verdicts"][0]["id"].as_i64())
        .unwrap_or(0)
}

/// Waits for a verdict newer than `after`; returns the device.
fn next_verdict(fleet: &FleetStack, id: &str, after: i64) -> Value {
    fleet
        .wait_device(id, Duration::from_secs(240), |v| {
            v["verdicts"][0]["id"].as_i64().unwrap_or(0) > after
        })
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The agent's journal entries (`journalctl -u vouch-agent -o json`) of this boot.
fn journal(vm: &Vm) -> Vec<Value> {
    ok(vm, "journalctl -b -u vouch-agent -o json --no-pager")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn messages(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| e["MESSAGE"].as_str().map(str::to_string))
        .collect()
}

fn copy_eventlog(vm: &Vm, machine: &Machine, name: &str) -> PathBuf {
    ok(
        vm,
        &format!("cp /sys/kernel/security/tpm0/binary_bios_measurements /mnt/share/{name}"),
    );
    machine.share().join(name)
}

fn setup(machine: &Machine, fleet: &FleetStack, revisions: &[u32]) {
    let share = machine.share();
    for f in ["ca.crt", "claim.crt", "claim.key"] {
        std::fs::copy(fleet.dir().join(f), share.join(f)).unwrap();
    }
    for &r in revisions {
        let deb = debian::agent_package(&share.join(format!("pkg-{r}")), r)
            .unwrap_or_else(|e| panic!("{}", vouch_attest::errors::chain(&e)));
        eprintln!("package {}", deb.display());
    }
}

fn install(vm: &Vm) {
    for step in INSTALL {
        ok(vm, step);
    }
    wait_guest(vm, "vouch-agent active", Duration::from_secs(120), |vm| {
        prop(vm, "vouch-agent", "ActiveState") == "active"
    });
}

#[test]
fn a_debian_server_runs_vouch_from_its_package() {
    if skip("vm_server") {
        return;
    }
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let image = debian::image()
        .unwrap_or_else(|e| panic!("Debian image: {}", vouch_attest::errors::chain(&e)));
    let mut machine = Machine::new_server(&image, false).unwrap();
    let data = machine.dir().join("data.img");
    std::fs::File::create(&data)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    machine.attach_disk(&data);
    let fleet = FleetStack::start_with_names(&machine.ek_trust(), &[BROKER], quick).unwrap();
    let keygen = swtpm_tests::run(
        "vouch-fleet",
        &[
            "escrow",
            "keygen",
            "--key",
            &fleet.dir().join("state/escrow.key.pem").to_string_lossy(),
            "--public",
            &machine.share().join("escrow.pub.pem").to_string_lossy(),
        ],
        &[],
    );
    assert_eq!(keygen.code, 0, "{}", keygen.stderr);
    setup(&machine, &fleet, &[1, 2]);
    let _evidence = Evidence {
        test: "server",
        machine: machine.dir().to_path_buf(),
        logs: fleet.log_files(),
    };

    // Boot 1: install, enroll, attest.
    let vm = boot(&mut machine, &fleet);
    install(&vm);
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/vouch-agent.service"),
    )
    .unwrap();
    assert_eq!(
        ok(&vm, "cat /usr/lib/systemd/system/vouch-agent.service"),
        shipped,
        "the installed unit is the shipped one"
    );
    assert_eq!(prop(&vm, "vouch-agent", "DropInPaths"), "");
    assert_eq!(prop(&vm, "vouch-agent", "Type"), "notify");
    assert_eq!(prop(&vm, "vouch-agent", "User"), "vouch");
    assert_eq!(prop(&vm, "vouch-agent", "WatchdogUSec"), "30s");
    assert_eq!(prop(&vm, "vouch-agent", "SubState"), "running");
    let id = enrolled(&fleet, Duration::from_secs(180));
    let v = fleet
        .wait_device(&id, Duration::from_secs(240), |v| {
            v["device"]["status"] == "trusted"
        })
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("boot 1: {id} trusted after {:?}", vm.uptime());
    assert_eq!(v["verdicts"][0]["trusted"], true, "{v}");
    // A policy recorded from this boot's own log: still trusted.
    let log1 = copy_eventlog(&vm, &machine, "boot1.eventlog");
    fleet.record_policy("server-boot1", &log1).unwrap();
    fleet.reload_server().unwrap();
    assert_eq!(
        fleet
            .cli(&["device", "set-policy", &id, "server-boot1"])
            .code,
        0
    );
    let attest = fleet.cli(&["attest", &id, "--wait", "120"]);
    assert_eq!(attest.code, 0, "{}{}", attest.stdout, attest.stderr);

    // The unit's exposure inside the running system.
    let security = ok(
        &vm,
        "systemd-analyze security --no-pager vouch-agent.service",
    );
    let exposure: f64 = security
        .lines()
        .find_map(|l| l.split("vouch-agent.service: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{security}"));
    eprintln!("systemd-analyze security in the guest: {exposure}");
    assert!(exposure <= 1.5, "{security}");

    // The journal: structured fields, no secrets.
    let entries = journal(&vm);
    let with = |msg: &str| {
        entries
            .iter()
            .rfind(|e| e["MESSAGE"] == msg)
            .unwrap_or_else(|| panic!("no {msg:?} in the journal: {:?}", messages(&entries)))
    };
    assert_eq!(with("connected to the broker")["DEVICE"], id.as_str());
    let answered = with("challenge answered");
    assert_eq!(answered["DEVICE"], id.as_str(), "{answered}");
    assert!(
        answered["CHALLENGE"]
            .as_str()
            .is_some_and(|c| c.len() == 16),
        "{answered}"
    );
    assert_eq!(answered["SYSLOG_IDENTIFIER"], "vouch-agent", "{answered}");
    let guest_boot = ok(&vm, "cat /proc/sys/kernel/random/boot_id")
        .trim()
        .replace('-', "");
    let this_boot = with("this boot")["BOOT"]
        .as_str()
        .unwrap_or_default()
        .replace('-', "");
    assert_eq!(this_boot, guest_boot);
    let everything = ok(&vm, "journalctl -b -o json --no-pager");
    let claim_key = std::fs::read_to_string(fleet.dir().join("claim.key")).unwrap();
    for line in claim_key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !everything.contains(line),
            "the claim key is in the journal"
        );
    }
    assert!(!everything.contains("PRIVATE KEY"));

    // A Vouch volume on the data disk, listed for vouch-volumes.service, mounted by fstab.
    ok(
        &vm,
        "vouch-agent volume create --device /dev/vdb --pcrs sha256:0,1,2,3,4,5,6,7,8,9 \
         --escrow-key /mnt/share/escrow.pub.pem --recovery-kdf-memory 65536 --label data",
    );
    let uuid = ok(&vm, "blkid -s UUID -o value /dev/vdb")
        .trim()
        .to_string();
    assert_eq!(uuid.len(), 36, "{uuid}");
    ok(
        &vm,
        &format!(
            "printf '[[volume]]\\nname = \"data\"\\ndevice = \"/dev/disk/by-uuid/{uuid}\"\\n' \
             > /etc/vouch/volumes.toml && echo '{FSTAB}' >> /etc/fstab && systemctl daemon-reload"
        ),
    );
    ok(&vm, "systemctl start vouch-volumes");
    ok(
        &vm,
        &format!(
            "mkfs.ext4 -q /dev/mapper/data && mkdir -p /srv/data && mount /srv/data && \
             echo {MARKER} > /srv/data/marker && sync"
        ),
    );

    // A report queued when the network fails survives SIGKILL and is delivered afterwards. The
    // guest drops everything it sends (netem, egress only): the challenge still arrives, the
    // answer waits in the outbox for the broker's acknowledgement. Then systemd restarts the
    // killed agent, the network comes back, and the fleet gets the answer to its challenge.
    // The interface the broker's address is reached through (user networking with
    // restrict=on gives no default route).
    let route = ok(&vm, "ip -o route get 10.0.2.100");
    let nic = route
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap_or_else(|| panic!("no route to the broker: {route}"))
        .to_string();
    ok(&vm, &format!("tc qdisc add dev {nic} root netem loss 100%"));
    let answered = |vm: &Vm| {
        messages(&journal(vm))
            .iter()
            .filter(|m| *m == "challenge answered")
            .count()
    };
    let n = answered(&vm);
    let attest = std::process::Command::new(swtpm_tests::bin_path("vouch-fleet"))
        .args(["attest", &id, "--wait", "110", "--config"])
        .arg(fleet.config())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_guest(
        &vm,
        "the challenge answered",
        Duration::from_secs(60),
        |vm| answered(vm) > n,
    );
    let queued = |vm: &Vm| {
        ok(vm, "ls /var/lib/vouch/outbox")
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let before_kill = queued(&vm);
    assert!(!before_kill.is_empty(), "the answer is in the outbox");
    let pid = prop(&vm, "vouch-agent", "MainPID");
    ok(&vm, "systemctl kill -s KILL vouch-agent");
    wait_guest(
        &vm,
        "systemd restarting the agent",
        Duration::from_secs(60),
        |vm| {
            prop(vm, "vouch-agent", "NRestarts") == "1"
                && prop(vm, "vouch-agent", "ActiveState") == "active"
        },
    );
    assert_ne!(prop(&vm, "vouch-agent", "MainPID"), pid);
    let after_restart = queued(&vm);
    for e in &before_kill {
        assert!(after_restart.contains(e), "{e} lost: {after_restart:?}");
    }
    // The restarted agent announces its boot again once it reaches the broker, and the fleet
    // counts a verdict for a release only when its challenge came after that announcement.
    let network_back_ms = now_ms();
    ok(&vm, &format!("tc qdisc del dev {nic} root"));
    let out = attest.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the answer queued before the kill reached the fleet: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_guest(&vm, "the outbox to drain", Duration::from_secs(60), |vm| {
        queued(vm).iter().all(|e| !before_kill.contains(e))
    });
    // The restarted agent found the killed one's entries and sent them; none was dropped.
    let entries = journal(&vm);
    let backlog = entries
        .iter()
        .rfind(|e| e["MESSAGE"] == "outbox backlog to deliver")
        .unwrap_or_else(|| panic!("no backlog found: {:?}", messages(&entries)));
    let found: usize = backlog["ENTRIES"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(found >= before_kill.len(), "{backlog}");
    let m = messages(&entries);
    assert!(
        !m.iter().any(|m| m.starts_with("dropping an outbox entry")),
        "{m:?}"
    );
    // The restarted agent's session deposited the new volume's escrow record.
    swtpm_tests::stack::wait_until("the deposit", Duration::from_secs(120), || {
        fleet
            .cli(&["audit"])
            .stdout
            .contains(&format!("escrow record of volume {uuid} deposited"))
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // An escrow release for this boot, made while the agent is stopped: it reaches the agent
    // only in the next boot, which must refuse it. It needs a trusted verdict on a challenge
    // issued after the restarted agent's announcement (the answer drained from the outbox
    // predates it).
    fleet
        .wait_device(&id, Duration::from_secs(120), |v| {
            v["device"]["status"] == "trusted"
                && v["verdicts"][0]["trusted"] == true
                && v["verdicts"][0]["challenged_ms"]
                    .as_i64()
                    .is_some_and(|ms| ms >= network_back_ms)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    ok(&vm, "systemctl stop vouch-agent");
    let release = fleet.cli(&["escrow", "release", &id, &uuid]);
    assert_eq!(release.code, 0, "{}", release.stderr);
    let before_boot2 = last_verdict(&fleet, &id);
    shutdown(vm);

    // Boot 2: nobody acts.
    let vm = boot(&mut machine, &fleet);
    wait_guest(
        &vm,
        "boot 2 to finish starting",
        Duration::from_secs(180),
        |vm| {
            let s = sh(vm, "systemctl is-system-running").stdout;
            s.trim() == "running" || s.trim() == "degraded"
        },
    );
    assert_eq!(prop(&vm, "vouch-volumes", "ActiveState"), "active");
    let mounted = sh(&vm, "findmnt -n -o SOURCE /srv/data");
    assert_eq!(
        mounted.stdout.trim(),
        "/dev/mapper/data",
        "{}\n{}",
        mounted.text(),
        sh(
            &vm,
            "systemctl status --no-pager srv-data.mount dev-mapper-data.device; \
             udevadm info /dev/mapper/data"
        )
        .text()
    );
    assert_eq!(ok(&vm, "cat /srv/data/marker").trim(), MARKER);
    let t = |unit: &str| -> u64 {
        prop(&vm, unit, "ActiveEnterTimestampMonotonic")
            .parse()
            .unwrap()
    };
    let (unlocked, local_fs) = (t("vouch-volumes.service"), t("local-fs.target"));
    assert!(
        unlocked > 0 && unlocked <= local_fs,
        "unlocked at {unlocked} µs, local-fs.target at {local_fs} µs"
    );
    let v = next_verdict(&fleet, &id, before_boot2);
    assert_eq!(v["verdicts"][0]["trusted"], true, "{v}");
    eprintln!("boot 2: trusted after {:?}", vm.uptime());
    // The release made for boot 1 is refused in boot 2.
    wait_guest(
        &vm,
        "the stale release refused",
        Duration::from_secs(120),
        |vm| {
            journal(vm).iter().any(|e| {
                e["MESSAGE"] == "cannot use a released recovery passphrase"
                    && e["ERROR"]
                        .as_str()
                        .is_some_and(|r| r.contains("is for boot"))
            })
        },
    );
    assert_eq!(
        ok(&vm, "ls /var/lib/vouch/recovery 2>/dev/null | wc -l").trim(),
        "0"
    );

    // Reload re-reads the configuration.
    let pid = prop(&vm, "vouch-agent", "MainPID");
    let reloaded = |vm: &Vm| {
        messages(&journal(vm))
            .iter()
            .filter(|m| *m == "configuration reloaded")
            .count()
    };
    let n = reloaded(&vm);
    ok(
        &vm,
        "sed -i 's/^max_backoff_secs = .*/max_backoff_secs = 10/' /etc/vouch/agent.toml && \
         systemctl reload vouch-agent",
    );
    wait_guest(
        &vm,
        "configuration reloaded",
        Duration::from_secs(30),
        |vm| reloaded(vm) > n,
    );
    assert_eq!(prop(&vm, "vouch-agent", "MainPID"), pid);

    // An upgrade in place.
    let volumes_since = t("vouch-volumes.service");
    ok(
        &vm,
        "dpkg -i /mnt/share/pkg-2/vouch-agent_0.1.0-2_amd64.deb",
    );
    assert_eq!(
        ok(&vm, "dpkg-query -W -f '${Version}' vouch-agent"),
        "0.1.0-2"
    );
    wait_guest(
        &vm,
        "the upgraded agent running",
        Duration::from_secs(60),
        |vm| prop(vm, "vouch-agent", "ActiveState") == "active",
    );
    assert_ne!(prop(&vm, "vouch-agent", "MainPID"), pid, "agent restarted");
    assert_eq!(
        t("vouch-volumes.service"),
        volumes_since,
        "volumes untouched"
    );
    assert_eq!(ok(&vm, "cat /srv/data/marker").trim(), MARKER);
    let config = ok(&vm, "cat /etc/vouch/agent.toml");
    assert!(
        config.contains("host = \"vouch-broker\"") && config.contains("max_backoff_secs = 10"),
        "conffile edits kept:\n{config}"
    );

    // Boot 3: one more word on the kernel command line (GRUB measures it into PCR 8).
    ok(
        &vm,
        "sed -i 's/panic=-1$/panic=-1 vouch.test=changed/' \
         /boot/efi/EFI/debian/grub.cfg /boot/efi/EFI/BOOT/grub.cfg && sync",
    );
    let before_boot3 = last_verdict(&fleet, &id);
    shutdown(vm);
    let vm = boot(&mut machine, &fleet);
    wait_guest(
        &vm,
        "boot 3 to finish starting",
        Duration::from_secs(180),
        |vm| {
            let s = sh(vm, "systemctl is-system-running").stdout;
            s.trim() == "running" || s.trim() == "degraded"
        },
    );
    assert!(ok(&vm, "cat /proc/cmdline").contains("vouch.test=changed"));
    assert_eq!(prop(&vm, "vouch-volumes", "ActiveState"), "failed");
    let failed = ok(&vm, "systemctl list-units --failed --plain --no-legend");
    let failed: Vec<&str> = failed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(failed, ["vouch-volumes.service"], "only the volume fails");
    assert_ne!(sh(&vm, "findmnt /srv/data").code, 0, "not mounted");
    let unlock = ok(&vm, "journalctl -b -u vouch-volumes --no-pager");
    assert!(unlock.contains("data"), "{unlock}");
    assert_eq!(prop(&vm, "vouch-agent", "ActiveState"), "active");
    let v = next_verdict(&fleet, &id, before_boot3);
    assert_eq!(v["verdicts"][0]["trusted"], false, "{v}");
    eprintln!("boot 3 reasons: {}", v["verdicts"][0]["reasons"]);

    // Purge keeps the state the sealed volumes need.
    ok(&vm, "apt-get purge -y vouch-agent");
    assert_ne!(sh(&vm, "test -e /etc/vouch/agent.toml").code, 0);
    let state = ok(&vm, "ls /var/lib/vouch");
    assert!(state.contains("escrow"), "{state}");
    shutdown(vm);
}

#[test]
fn a_secure_boot_debian_server_attests_through_shim_and_grub() {
    if skip("vm_server_secure_boot") {
        return;
    }
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let image = debian::image()
        .unwrap_or_else(|e| panic!("Debian image: {}", vouch_attest::errors::chain(&e)));
    let mut machine = Machine::new_server(&image, true).unwrap();
    let fleet = FleetStack::start_with_names(&machine.ek_trust(), &[BROKER], quick).unwrap();
    setup(&machine, &fleet, &[1]);
    let _evidence = Evidence {
        test: "secure_boot",
        machine: machine.dir().to_path_buf(),
        logs: fleet.log_files(),
    };
    let vm = boot(&mut machine, &fleet);
    // SecureBoot variable: 4 attribute bytes, then 1.
    let sb = ok(
        &vm,
        "od -An -t u1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c",
    );
    assert_eq!(sb.split_whitespace().last(), Some("1"), "{sb}");
    install(&vm);
    let id = enrolled(&fleet, Duration::from_secs(180));
    let v = fleet
        .wait_device(&id, Duration::from_secs(240), |v| {
            v["device"]["status"] == "trusted"
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["verdicts"][0]["trusted"], true, "{v}");
    eprintln!("secure boot: {id} trusted after {:?}", vm.uptime());
    // The firmware measured shim and GRUB as boot applications, then GRUB the kernel.
    let log = copy_eventlog(&vm, &machine, "eventlog.bin");
    let shown = swtpm_tests::run(
        "vouch-fleet",
        &["eventlog", "show", "--json", &log.to_string_lossy()],
        &[],
    );
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let apps = shown
        .stdout
        .matches("EV_EFI_BOOT_SERVICES_APPLICATION")
        .count();
    assert!(apps >= 2, "{apps} boot applications measured");
    shutdown(vm);
}

/// Runtime integrity on the real server: the Debian kernel booted with `ima_policy=tcb
/// ima_hash=sha256` measures what runs; a Keylime runtime policy made by `vouch-fleet
/// runtime-policy create --tree /` inside the guest (the root file system as installed) gives
/// `trusted`; a binary that is not in it, run once, makes the next verdict `untrusted` naming
/// its path and the rule.
#[test]
fn a_debian_server_under_ima_is_untrusted_after_running_an_unknown_binary() {
    if skip("vm_server_ima") {
        return;
    }
    let started = Instant::now();
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let image = debian::image()
        .unwrap_or_else(|e| panic!("Debian image: {}", vouch_attest::errors::chain(&e)));
    let mut machine = Machine::new_server(&image, false).unwrap();
    let mut fleet = FleetStack::start_with_names(&machine.ek_trust(), &[BROKER], quick).unwrap();
    setup(&machine, &fleet, &[1]);
    std::fs::copy(
        swtpm_tests::bin_path("vouch-fleet"),
        machine.share().join("vouch-fleet"),
    )
    .unwrap();
    let _evidence = Evidence {
        test: "ima",
        machine: machine.dir().to_path_buf(),
        logs: fleet.log_files(),
    };

    // Boot 1: install; IMA on from the next boot (GRUB's command line).
    let vm = boot(&mut machine, &fleet);
    install(&vm);
    let id = enrolled(&fleet, Duration::from_secs(180));
    ok(
        &vm,
        "sed -i 's/panic=-1$/panic=-1 ima_policy=tcb ima_hash=sha256/' \
         /boot/efi/EFI/debian/grub.cfg /boot/efi/EFI/BOOT/grub.cfg && sync",
    );
    shutdown(vm);

    // Boot 2: the list is there and the agent (user vouch) may read it.
    let vm = boot(&mut machine, &fleet);
    assert!(ok(&vm, "cat /proc/cmdline").contains("ima_policy=tcb"));
    wait_guest(&vm, "vouch-agent active", Duration::from_secs(120), |vm| {
        prop(vm, "vouch-agent", "ActiveState") == "active"
    });
    let list = "/sys/kernel/security/ima/binary_runtime_measurements";
    assert_eq!(
        ok(&vm, &format!("stat -c %G {list}")).trim(),
        "tss",
        "the unit's ExecStartPre gave the list to the agent's group"
    );
    // The policy, made as an operator makes it on a known-good server: every file of the
    // installed root file system (other mounts are not entered) and of the initramfs the
    // kernel booted with (IMA measures /init, its shell and scripts before the root is
    // mounted); paths that change while the system runs are excluded (README "Runtime
    // integrity").
    let policy = machine.share().join("runtime-policy.json");
    let made = ok(
        &vm,
        "/mnt/share/vouch-fleet runtime-policy create --tree / \
         --initrd /boot/initrd.img-$(uname -r) \
         --exclude '^/var/' --exclude '^/tmp/' --exclude '^/root/' --exclude '^/mnt/' \
         --exclude '^/dev/shm/\\.#cred[0-9a-f]+$' \
         --out /mnt/share/runtime-policy.json 2>&1 && echo made",
    );
    eprintln!("{}", made.trim());
    assert!(made.contains("made"), "{made}");
    let policy_path = policy.to_string_lossy().into_owned();
    fleet
        .restart_server(|t| format!("{t}\n[ima]\nruntime_policy = \"{policy_path}\"\n"))
        .unwrap();
    let attest = fleet.cli(&["attest", &id, "--wait", "180"]);
    let v = fleet.device(&id).unwrap();
    // The guest's list, appraised offline on the host too: every failing entry, not only the
    // verdict's first ones (kept with the evidence).
    ok(&vm, &format!("cp {list} /mnt/share/ima-list.bin"));
    let offline = swtpm_tests::run(
        "vouch-fleet",
        &[
            "ima",
            "check",
            "--policy",
            &policy_path,
            "--log",
            &machine.share().join("ima-list.bin").to_string_lossy(),
        ],
        &[],
    );
    assert_eq!(
        attest.code, 0,
        "trusted under its own tree's policy: {}\n{}\noffline check:\n{}",
        attest.stderr, v["verdicts"][0]["reasons"], offline.stdout
    );
    eprintln!(
        "trusted: {} {}; offline (boot_aggregate not checked there): {}",
        v["verdicts"][0]["trusted"],
        v["verdicts"][0]["reasons"],
        offline.stdout.lines().last().unwrap_or_default()
    );

    // A binary the policy does not know, run once.
    ok(
        &vm,
        "cp /bin/true /usr/local/bin/vouch-intruder && printf intruder >> /usr/local/bin/vouch-intruder \
         && /usr/local/bin/vouch-intruder",
    );
    let attest = fleet.cli(&["attest", &id, "--wait", "180"]);
    assert_eq!(attest.code, 1, "{}{}", attest.stdout, attest.stderr);
    let v = fleet.device(&id).unwrap();
    let reasons = v["verdicts"][0]["reasons"].to_string();
    eprintln!("after the intruder: {reasons}");
    assert!(
        reasons.contains("/usr/local/bin/vouch-intruder") && reasons.contains("not_in_policy"),
        "{reasons}"
    );
    shutdown(vm);
    eprintln!("IMA VM test: {} s", started.elapsed().as_secs());
}
