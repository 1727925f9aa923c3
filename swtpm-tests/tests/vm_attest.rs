//! Real measured boot: OVMF boots a Debian kernel and the test initramfs in qemu (TCG) with a
//! swtpm behind tpm-crb; `vouch-agent` inside the guest enrolls with the fleet on the host (EK
//! certificates from the swtpm's local CA) and attests with the guest's own firmware event log.
//! The fleet verifies the quote against that log (`trusted`); a policy recorded from the first
//! boot's log (copied out by the guest's init over 9p) is assigned and still gives `trusted`;
//! the machine boots again with one more kernel command-line word, which the firmware measures
//! into PCR 9, and the verdict is `untrusted`, naming the rule (`kernel_cmdline`), the EFI stub's
//! LoadOptions event and PCR 9.
//!
//! Needs qemu-system-x86, ovmf, swtpm and a Debian kernel (`scripts/vm-prep.sh`, run here).
//! `VOUCH_SKIP_VM=1` skips it (and says so).

use std::path::Path;
use std::time::{Duration, Instant};
use swtpm_tests::stack::FleetStack;
use swtpm_tests::vm::{initramfs, prepare, skip, Machine, Vm};
use vouch_attest::eventlog::{EventLog, EventTag};
use vouch_attest::HashAlg;

const BROKER: &str = "vouch-broker";
const CMDLINE: &str = "console=ttyS0 panic=-1";

fn status(v: &serde_json::Value) -> &str {
    v["device"]["status"].as_str().unwrap_or_default()
}

fn quick(text: String) -> String {
    text.replace("jitter_secs = 30", "jitter_secs = 0")
}

/// The one device the fleet knows, once it enrolled.
fn enrolled_device(fleet: &FleetStack, vm: &Vm, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let out = fleet.cli(&["devices", "--json"]);
        if out.code == 0 {
            let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
            if let Some(id) = v[0]["id"].as_str() {
                return id.to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no device enrolled within {timeout:?}\nserial:\n{}\nserver log:\n{}",
            vm.serial(),
            fleet.server_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn wait_verdict(
    fleet: &FleetStack,
    vm: &Vm,
    id: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    fleet
        .wait_device(id, Duration::from_secs(180), ok)
        .unwrap_or_else(|e| panic!("{e}\nserial:\n{}", vm.serial()))
}

/// The firmware's sha256 PCR values replayed from a log the guest copied out.
fn replay(log: &[u8]) -> vouch_attest::PcrBanks {
    EventLog::parse(log).unwrap().replay()
}

/// Indexes of the EFI stub's LoadOptions and initrd events in a log.
fn stub_events(log: &[u8]) -> (usize, usize) {
    let log = EventLog::parse(log).unwrap();
    let st = log.boot_state();
    let find = |tag| {
        st.efi_stub
            .iter()
            .find(|m| m.tag == tag)
            .map(|m| m.event_index)
            .unwrap_or_else(|| panic!("no {tag:?} event: {:?}", st.efi_stub))
    };
    (find(EventTag::LoadOptions), find(EventTag::Initrd))
}

/// The sha256 digests of the events the log extends into PCR 9, in order.
fn pcr9_digests(log: &[u8]) -> Vec<Vec<u8>> {
    let log = EventLog::parse(log).unwrap();
    log.events
        .iter()
        .filter(|e| e.pcr == 9 && e.is_extended())
        .filter_map(|e| {
            e.digests
                .iter()
                .find(|d| d.alg == HashAlg::Sha256)
                .map(|d| d.bytes.to_vec())
        })
        .collect()
}

#[test]
fn a_real_measured_boot_attests_and_a_changed_command_line_is_untrusted() {
    if skip("vm_attest") {
        return;
    }
    let kernel = prepare()
        .unwrap_or_else(|e| panic!("VM prerequisites: {}", vouch_attest::errors::chain(&e)));
    let mut machine = Machine::new().unwrap();
    let fleet = FleetStack::start_with_names(&machine.ek_trust(), &[BROKER], quick).unwrap();
    let initrd = machine.dir().join("initrd.cpio");
    let agent = swtpm_tests::bin_path("vouch-agent");
    let packed = initramfs::build(&kernel.modules, &agent, BROKER, &initrd).unwrap();
    eprintln!(
        "kernel {}, initramfs {} bytes, modules {:?}, {} libraries",
        kernel.release,
        packed.bytes,
        packed.modules,
        packed.libraries.len()
    );
    // Dependencies from the modules' .modinfo come first: failover < net_failover < virtio_net.
    let at = |m: &str| packed.modules.iter().position(|n| n == m);
    assert!(at("failover") < at("net_failover") && at("net_failover") < at("virtio_net"));
    assert!(at("failover").is_some(), "{:?}", packed.modules);
    assert!(packed
        .libraries
        .iter()
        .any(|l| l.ends_with("libtss2-tcti-device.so.0")));
    machine.provision_agent(&fleet.dir(), BROKER).unwrap();

    // Boot 1: enroll and attest with the real firmware log; no policy yet.
    let mut vm = machine
        .boot(&kernel, &initrd, CMDLINE, fleet.broker_ports())
        .unwrap();
    vm.wait_serial("vouch-init: starting vouch-agent", Duration::from_secs(180))
        .unwrap();
    let to_init = vm.uptime();
    let id = enrolled_device(&fleet, &vm, Duration::from_secs(180));
    let v = wait_verdict(&fleet, &vm, &id, |v| status(v) == "trusted");
    eprintln!(
        "boot 1: init after {to_init:?}, trusted after {:?}",
        vm.uptime()
    );
    assert_eq!(v["verdicts"][0]["trusted"], true, "{v}");
    let log1 = std::fs::read(machine.share().join("eventlog.bin")).unwrap();
    let pcrs1 = replay(&log1);
    // OVMF measured the firmware (PCR 0) and the -kernel boot put events into PCR 9.
    for pcr in [0, 9] {
        assert!(pcrs1.get(HashAlg::Sha256, pcr).is_some(), "PCR {pcr} empty");
    }

    // A policy recorded from this boot's own log, assigned to the device: still trusted.
    let log1_path = machine.dir().join("boot1-eventlog.bin");
    std::fs::write(&log1_path, &log1).unwrap();
    fleet.record_policy("vm-boot1", &log1_path).unwrap();
    fleet.reload_server().unwrap();
    let set = fleet.cli(&["device", "set-policy", &id, "vm-boot1"]);
    assert_eq!(set.code, 0, "{}", set.stderr);
    let out = fleet.cli(&["attest", &id, "--wait", "120"]);
    assert_eq!(
        out.code,
        0,
        "{}{}\nserial:\n{}",
        out.stdout,
        out.stderr,
        vm.serial()
    );
    let v = fleet.device(&id).unwrap();
    assert_eq!(v["verdicts"][0]["trusted"], true, "{v}");
    assert_eq!(v["verdicts"][0]["reasons"], serde_json::json!([]), "{v}");
    let last = v["verdicts"][0]["id"].as_i64().unwrap();
    assert!(
        vm.power_off(Duration::from_secs(60)),
        "guest did not power off"
    );

    // Boot 2: same machine, same firmware, same initrd; one more word on the command line.
    let changed = format!("{CMDLINE} vouch.test=changed");
    let mut vm = machine
        .boot(&kernel, &initrd, &changed, fleet.broker_ports())
        .unwrap();
    vm.wait_serial("vouch-init: starting vouch-agent", Duration::from_secs(180))
        .unwrap();
    let v = wait_verdict(&fleet, &vm, &id, |v| {
        v["verdicts"][0]["id"].as_i64().unwrap_or(0) > last
    });
    eprintln!("boot 2: verdict after {:?}", vm.uptime());
    assert_eq!(status(&v), "untrusted", "{v}");
    assert_eq!(v["verdicts"][0]["trusted"], false, "{v}");
    let reasons = v["verdicts"][0]["reasons"].to_string();
    eprintln!("boot 2 reasons: {reasons}");
    let log2 = std::fs::read(machine.share().join("eventlog.bin")).unwrap();
    // The reason names the rule, the event (the EFI stub's LoadOptions EV_EVENT_TAG of this
    // boot's log) and PCR 9; the initrd's event is not named.
    let (cmdline_event, initrd_event) = stub_events(&log2);
    let named = format!("(event {cmdline_event}) (PCR 9)");
    assert!(
        reasons.contains("policy.kernel_cmdline")
            && reasons.contains("kernel command line (EFI stub LoadOptions)")
            && reasons.contains(&named),
        "{reasons}"
    );
    assert!(
        !reasons.contains(&format!("(event {initrd_event})")),
        "{reasons}"
    );
    // Kept for inspection (`vouch-fleet eventlog show`): the logs and consoles of both boots.
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm_attest");
    if std::fs::create_dir_all(&keep).is_ok() {
        let _ = std::fs::write(keep.join("boot1-eventlog.bin"), &log1);
        let _ = std::fs::write(keep.join("boot2-eventlog.bin"), &log2);
        for n in [1, 2] {
            let serial = machine.dir().join(format!("boot-{n}.serial"));
            let _ = std::fs::copy(serial, keep.join(format!("boot{n}.serial")));
        }
    }
    let pcrs2 = replay(&log2);
    // Only the command line differs: PCRs 0-7 are the same, PCR 9 is not.
    for pcr in 0..8 {
        assert_eq!(
            pcrs1.get(HashAlg::Sha256, pcr),
            pcrs2.get(HashAlg::Sha256, pcr),
            "PCR {pcr} changed between boots"
        );
    }
    assert_ne!(pcrs1.get(HashAlg::Sha256, 9), pcrs2.get(HashAlg::Sha256, 9));
    // PCR 9 holds the EFI stub's two tagged events: the command line differs, the initrd (same
    // bytes both times: the archive is deterministic) does not.
    let (tags1, tags2) = (pcr9_digests(&log1), pcr9_digests(&log2));
    assert_eq!(tags1.len(), 2, "{tags1:?}");
    assert_eq!(tags2.len(), 2, "{tags2:?}");
    let same = tags1.iter().zip(&tags2).filter(|(a, b)| a == b).count();
    assert_eq!(
        same, 1,
        "exactly one PCR 9 event should differ: {tags1:?} {tags2:?}"
    );
    assert!(
        vm.power_off(Duration::from_secs(60)),
        "guest did not power off"
    );
}
