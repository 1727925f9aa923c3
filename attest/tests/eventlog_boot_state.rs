//! Boot state, decoding and digest checks on real logs. Expected values were checked by hand:
//! variable data hashes and Authenticode digests with an independent script over the raw bytes,
//! device paths node by node against the hex that upstream tpm2-tools prints.

mod eventlog_support;

use eventlog_support::read_log;
use vouch_attest::eventlog::{
    DigestCheck, DigestRule, EventData, EventLog, EventType, IplKind, VariableValue,
};
use vouch_attest::HashAlg;

#[test]
fn secure_boot_log_goattest_sb_cert() {
    let bytes = read_log("goattest_sb_cert.bin");
    let log = EventLog::parse(&bytes).unwrap();
    let st = log.boot_state();
    assert_eq!(st.secure_boot, Some(true));
    let dbs: Vec<(&str, usize, &str)> = st
        .key_databases
        .iter()
        .map(|k| (k.name.as_str(), k.data_len, k.data_sha256.as_str()))
        .collect();
    assert_eq!(
        dbs,
        [
            (
                "PK",
                806,
                "03f8844e4692b98c3a7ad4d0d183ec029111a2324c0705739229944458f9561c"
            ),
            (
                "KEK",
                1560,
                "fabefc168650d843e84ced1d0b750e3fa7c5d5e60a709fce5e845762658f1147"
            ),
            (
                "db",
                6291,
                "85bbeed75abcb74305e39ed2672da3070a909e18c674bbf1001326bf864802ed"
            ),
            (
                "dbx",
                3724,
                "9d1ae9179583bea1df91a12c4ab83937f21569024eea92e3476cd1707790703a"
            ),
        ]
    );
    // The first boot application (shim from the ESP) was verified by a db entry owned by
    // d281fad2-...; the third (grub, loaded by shim) by shim's built-in vendor certificate.
    assert_eq!(st.boot_applications.len(), 3);
    let shim = &st.boot_applications[0];
    assert_eq!(shim.event_index, 10);
    assert_eq!(
        shim.device_path,
        "PciRoot(0x0)/Pci(0x3,0x0)/Scsi(0x1,0x0)/\
         HD(15,GPT,27872a8b-87fc-49c2-bf27-3afc4cf84586,0x2800,0x35000)/\\EFI\\BOOT\\BOOTX64.EFI"
    );
    assert_eq!(
        shim.digests["sha256"],
        "007f4c95125713b112093e21663e2d23e3c1ae9ce4b5de0d58a297332336a2d8"
    );
    let auth = &st.authorities[shim.authorities[0]];
    assert_eq!(auth.variable, "db");
    assert_eq!(
        auth.owner.map(|g| g.to_string()).as_deref(),
        Some("d281fad2-8d88-47a4-9792-5baa47bb1b89")
    );
    assert_eq!(
        auth.data_sha256,
        "6f5b3b38ca767ad43467a01439d3b5962ab59ee780789cfa5e821f617d81f5a6"
    );
    assert!(st.boot_applications[1].authorities.is_empty());
    let grub = &st.boot_applications[2];
    assert_eq!(st.authorities[grub.authorities[0]].variable, "Shim");
    assert!(st.kernel_cmdlines.is_empty());
    assert!(st.decode_errors.is_empty());
}

#[test]
fn secure_boot_log_keylime_2023_certs() {
    let bytes = read_log("keylime_mb_binary_bios_measurements-secureboot.bin");
    let st = EventLog::parse(&bytes).unwrap().boot_state();
    assert_eq!(st.secure_boot, Some(true));
    let apps: Vec<&str> = st
        .boot_applications
        .iter()
        .map(|a| a.device_path.as_str())
        .collect();
    assert!(apps[0].ends_with("/\\EFI\\redhat\\shimx64.efi"), "{apps:?}");
    assert_eq!(apps[1], "\\EFI\\redhat\\grubx64.efi");
    let grub_auth: Vec<&str> = st.boot_applications[1]
        .authorities
        .iter()
        .map(|&i| st.authorities[i].variable.as_str())
        .collect();
    assert_eq!(grub_auth, ["SbatLevel", "vendor_db"]);
    assert_eq!(
        st.authorities[st.boot_applications[0].authorities[0]]
            .owner
            .map(|g| g.to_string())
            .as_deref(),
        Some("77fa9abd-0359-4d32-bd60-28f4e78f784b") // Microsoft's owner GUID
    );
    assert_eq!(
        st.kernel_cmdlines,
        ["(hd0,gpt2)/vmlinuz-5.14.0-503.11.1.el9_5.x86_64 root=/dev/mapper/rhel_rhel--9-root ro \
          crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel_rhel--9-swap \
          rd.lvm.lv=rhel_rhel-9/root rd.lvm.lv=rhel_rhel-9/swap rhgb quiet console=tty0 \
          console=ttyS0"]
    );
}

#[test]
fn systemd_boot_arch_linux_cmdline_and_known_digest_mismatch() {
    let bytes = read_log("t2t_event-arch-linux.bin");
    let log = EventLog::parse(&bytes).unwrap();
    let st = log.boot_state();
    assert_eq!(st.secure_boot, Some(false));
    assert_eq!(
        st.kernel_cmdlines,
        ["initrd=\\intel-ucode.img initrd=\\initramfs-linux-lts.img \
          cryptdevice=UUID=5465369a-996d-42ca-9ad4-91d0082e0b34:cryptroot \
          root=/dev/mapper/cryptroot rw intel_iommu=on iommu=pt l1tf=off"]
    );
    assert_eq!(
        st.boot_applications[0].device_path,
        "PciRoot(0x0)/Pci(0x17,0x0)/Sata(0x1,0xffff,0x0)/\
         HD(1,GPT,1a504613-19b5-4b44-a83d-d926d40daa1c,0x800,0x80000)/\
         \\EFI\\SYSTEMD\\SYSTEMD-BOOTX64.EFI"
    );
    // Upstream tpm2-tools also warns: event 24's digest does not match its payload.
    let checks: Vec<(usize, DigestCheck)> = log
        .events
        .iter()
        .map(|e| (e.index, e.check_digest()))
        .filter(|(_, c)| c.is_mismatch())
        .collect();
    assert_eq!(
        checks,
        [(
            24,
            DigestCheck::Mismatch {
                banks: vec![HashAlg::Sha1, HashAlg::Sha256]
            }
        )]
    );
    // BootOrder / Boot#### decode.
    match log.events[18].decode().unwrap() {
        EventData::Variable(v) => assert_eq!(
            v.value,
            Some(VariableValue::BootOrder(vec![
                "Boot0000".into(),
                "Boot0003".into(),
                "Boot0002".into()
            ]))
        ),
        other => panic!("{other:?}"),
    }
    match log.events[19].decode().unwrap() {
        EventData::Variable(v) => match v.value {
            Some(VariableValue::LoadOption { description, .. }) => {
                assert_eq!(description, "Linux Boot Manager")
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn grub_commands_and_cmdline_verify_against_their_digests() {
    let bytes = read_log("gtt_ubuntu-2404-amd-sevsnp.bin");
    let log = EventLog::parse(&bytes).unwrap();
    let mut grub = 0;
    for ev in log
        .events
        .iter()
        .filter(|e| e.event_type == EventType::EV_IPL)
    {
        if let Ok(EventData::Ipl { ipl, .. }) = ev.decode() {
            if ipl != IplKind::Text {
                grub += 1;
                assert_eq!(
                    ev.check_digest(),
                    DigestCheck::Verified {
                        rule: DigestRule::GrubText
                    },
                    "event {}",
                    ev.index
                );
            }
        }
    }
    assert!(grub > 5, "{grub} grub events");
    let st = log.boot_state();
    assert_eq!(
        st.kernel_cmdlines,
        [
            "/vmlinuz-6.8.0-1010-gcp root=PARTUUID=8270f3c9-b4e4-4345-80ee-5a62db7ebf3f ro \
          console=ttyS0,115200 panic=-1"
        ]
    );
}

#[test]
fn separators_actions_and_config_verify_on_every_real_log() {
    let dir = eventlog_support::eventlogs_dir();
    let mut verified = 0;
    for p in eventlog_support::bins(&dir) {
        let bytes = std::fs::read(&p).unwrap();
        let log = EventLog::parse(&bytes).unwrap();
        for ev in &log.events {
            let check = ev.check_digest();
            match ev.event_type {
                EventType::EV_SEPARATOR | EventType::EV_EFI_ACTION => {
                    assert!(
                        matches!(check, DigestCheck::Verified { .. }),
                        "{} event {}: {check:?}",
                        p.display(),
                        ev.index
                    );
                    verified += 1;
                }
                EventType::EV_NO_ACTION => assert_eq!(check, DigestCheck::NotExtended),
                EventType::EV_EFI_BOOT_SERVICES_APPLICATION => {
                    assert_eq!(check, DigestCheck::NotCheckable)
                }
                _ => {}
            }
        }
    }
    assert!(verified > 250, "{verified}");
}

#[test]
fn crtm_version_post_code_and_platform_blobs_decode() {
    let bytes = read_log("t2t_event-arch-linux.bin");
    let log = EventLog::parse(&bytes).unwrap();
    match log.events[1].decode().unwrap() {
        EventData::Guid { guid } => {
            assert_eq!(guid.to_string(), "546bfb1e-1d0c-4055-a4ad-4ef4bf17b83a")
        }
        other => panic!("{other:?}"),
    }
    match log.events[2].decode().unwrap() {
        EventData::FirmwareBlob { base, length, .. } => {
            assert_eq!((base, length), (0xffa9_0000, 0x35_0000))
        }
        other => panic!("{other:?}"),
    }
}
