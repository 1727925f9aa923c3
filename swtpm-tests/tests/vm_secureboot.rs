//! Secure Boot with Microsoft's keys: OVMF's Secure Boot build with Microsoft's KEK/db enrolled
//! boots a FAT EFI system partition holding Debian's Microsoft-signed shim, Debian-signed grub
//! and the Debian-signed kernel with the test initramfs. The guest's agent enrolls and attests;
//! the verdict is `trusted`, and the real event log the guest measured shows Secure Boot on,
//! the enrolled Microsoft databases, and the boot applications shim and grub.
//!
//! `VOUCH_SKIP_VM=1` skips it (and says so).

use std::path::Path;
use std::time::Duration;
use swtpm_tests::stack::FleetStack;
use swtpm_tests::vm::{esp, initramfs, prepare, skip, Machine};

const BROKER: &str = "vouch-broker";

#[test]
fn a_secure_boot_through_signed_shim_and_grub_attests() {
    if skip("vm_secureboot") {
        return;
    }
    let kernel = prepare()
        .unwrap_or_else(|e| panic!("VM prerequisites: {}", vouch_attest::errors::chain(&e)));
    let mut machine = Machine::new_secure_boot().unwrap();
    let fleet = FleetStack::start_with_names(&machine.ek_trust(), &[BROKER], |t| {
        t.replace("jitter_secs = 30", "jitter_secs = 0")
    })
    .unwrap();
    let initrd = machine.dir().join("initrd.cpio");
    let agent = swtpm_tests::bin_path("vouch-agent");
    initramfs::build(&kernel.modules, &agent, BROKER, &initrd).unwrap();
    let disk = machine.dir().join("esp.img");
    esp::build(&kernel, &initrd, "console=ttyS0 panic=-1", &disk).unwrap();
    machine.attach_disk(&disk);
    machine.provision_agent(&fleet.dir(), BROKER).unwrap();

    let mut vm = machine.boot_disk(fleet.broker_ports()).unwrap();
    vm.wait_serial("vouch-init: starting vouch-agent", Duration::from_secs(300))
        .unwrap();
    eprintln!("secure boot: init after {:?}", vm.uptime());
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let id = loop {
        let out = fleet.cli(&["devices", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        if let Some(id) = v[0]["id"].as_str() {
            break id.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no device enrolled\nserial:\n{}\nserver log:\n{}",
            vm.serial(),
            fleet.server_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let v = fleet
        .wait_device(&id, Duration::from_secs(180), |v| {
            v["device"]["status"] == "trusted"
        })
        .unwrap_or_else(|e| panic!("{e}\nserial:\n{}", vm.serial()));
    assert_eq!(v["verdicts"][0]["trusted"], true, "{v}");
    eprintln!("secure boot: trusted after {:?}", vm.uptime());

    let log = machine.share().join("eventlog.bin");
    let show = swtpm_tests::run(
        "vouch-fleet",
        &["eventlog", "show", "--json", &log.to_string_lossy()],
        &[],
    );
    assert_eq!(show.code, 0, "{}", show.stderr);
    let shown: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let state = &shown["boot_state"];
    assert_eq!(state["secure_boot"], true, "{state}");
    let dbs = state["key_databases"].as_array().unwrap();
    for name in ["PK", "KEK", "db"] {
        let db = dbs.iter().find(|d| d["name"] == name).unwrap();
        assert!(
            db["data_len"].as_u64().unwrap() > 0,
            "{name} is empty: {db}"
        );
    }
    let apps = state["boot_applications"].as_array().unwrap();
    assert!(
        apps.len() >= 2,
        "shim and grub should be measured: {apps:?}"
    );
    let path = |i: usize| {
        apps[i]["device_path"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(path(0).ends_with("\\EFI\\BOOT\\BOOTX64.EFI"), "{}", path(0));
    assert!(path(1).ends_with("\\EFI\\BOOT\\grubx64.efi"), "{}", path(1));
    // The authority that let shim run is a db entry owned by Microsoft (its signature owner
    // GUID), the Microsoft UEFI CA certificate; grub ran on shim's Debian certificate.
    let auths = state["authorities"].as_array().unwrap();
    let db = auths.iter().find(|a| a["variable"] == "db").unwrap();
    assert_eq!(db["owner"], "77fa9abd-0359-4d32-bd60-28f4e78f784b", "{db}");
    assert!(
        auths.iter().any(|a| a["variable"] == "MokListRT"),
        "{auths:?}"
    );
    let raw = std::fs::read(&log).unwrap();
    let has = |s: &[u8]| raw.windows(s.len()).any(|w| w == s);
    assert!(has(b"Microsoft Corporation UEFI CA 2011"));
    assert!(has(b"Debian Secure Boot CA"));
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm_secureboot");
    if std::fs::create_dir_all(&keep).is_ok() {
        let _ = std::fs::copy(&log, keep.join("eventlog.bin"));
        let _ = std::fs::copy(
            machine.dir().join("boot-1.serial"),
            keep.join("boot.serial"),
        );
    }
    assert!(
        vm.power_off(Duration::from_secs(60)),
        "guest did not power off"
    );
}
