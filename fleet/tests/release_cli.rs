//! `vouch-fleet release approve|list|show|remove` and policies referencing releases, end to
//! end in a fleet made by `vouch-fleet init`: Authenticode digests of Debian's signed shim and
//! GRUB (and a Debian kernel) checked against `pesign -h` as an independent oracle, and a
//! policy referencing two releases checked against real logs with `policy check`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../../testsupport/testdata.rs"]
mod testdata;

fn log(name: &str) -> String {
    testdata::eventlogs_dir()
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn fleet(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
        .args(args)
        .env("VOUCH_FLEET_CONFIG", config)
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A new fleet directory; returns (tempdir, fleet.toml).
fn new_fleet() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let fdir = dir.path().join("fleet");
    let o = Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
        .args(["init", "--dir"])
        .arg(&fdir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(fdir.join("releases").is_dir());
    (dir, fdir.join("fleet.toml"))
}

/// `pesign -i FILE -h -d sha256`: the Authenticode digest as pesign computes it.
fn pesign(file: &Path) -> String {
    let o = Command::new("pesign")
        .args(["-i"])
        .arg(file)
        .args(["-h", "-d", "sha256"])
        .output()
        .expect("pesign (scripts/install-deps.sh installs it)");
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    text.split_whitespace()
        .find(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no digest in {text:?}"))
        .to_ascii_lowercase()
}

/// A Debian kernel image: /boot's, or the one scripts/vm-*.sh cache.
fn debian_kernel() -> Option<PathBuf> {
    let mut found = Vec::new();
    for dir in ["/boot", "/var/tmp/vouch-vm"] {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let boot = p.join("boot");
            let candidates: Vec<PathBuf> = if p.is_dir() && boot.is_dir() {
                std::fs::read_dir(boot)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path())
                    .collect()
            } else {
                vec![p]
            };
            found.extend(candidates.into_iter().filter(|c| {
                c.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            }));
        }
    }
    found.sort();
    found.pop()
}

#[test]
fn approve_computes_authenticode_digests_pesign_agrees_with() {
    let (_dir, cfg) = new_fleet();
    let mut images = vec![
        PathBuf::from("/usr/lib/shim/shimx64.efi.signed"),
        PathBuf::from("/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"),
    ];
    let mut args: Vec<String> = ["release", "approve", "deb12", "--json"]
        .map(String::from)
        .to_vec();
    for i in &images {
        args.extend(["--efi".into(), i.to_string_lossy().into_owned()]);
    }
    if let Some(k) = debian_kernel() {
        args.extend(["--kernel".into(), k.to_string_lossy().into_owned()]);
        images.push(k);
    }
    args.extend([
        "--cmdline".into(),
        "BOOT_IMAGE=/vmlinuz-6.1.0-28-amd64 root=/dev/vda1 ro".into(),
    ]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = fleet(&cfg, &argv);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let apps: Vec<&str> = report["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "boot_application")
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert_eq!(apps.len(), images.len(), "{report}");
    for (image, digest) in images.iter().zip(&apps) {
        assert_eq!(*digest, pesign(image), "{}", image.display());
    }
    let kinds: Vec<&str> = report["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"kernel_cmdline") && kinds.contains(&"load_options"));

    // Human output names the digest; the file is in the releases directory; audited.
    let o = fleet(&cfg, &["release", "show", "deb12"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains(apps[0]), "{}", out(&o));
    let o = fleet(&cfg, &["release", "list"]);
    assert!(out(&o).contains("deb12"), "{}", out(&o));
    let o = fleet(
        &cfg,
        &[
            "release",
            "approve",
            "deb12",
            "--efi",
            &images[0].to_string_lossy(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("--replace"), "{}", out(&o));
    // Not a PE image: a clear input error naming the file.
    let o = fleet(
        &cfg,
        &["release", "approve", "bad", "--efi", "/etc/hostname"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("/etc/hostname"), "{}", out(&o));
    let o = fleet(&cfg, &["release", "remove", "deb12"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let o = fleet(&cfg, &["audit"]);
    let audit = out(&o);
    assert!(
        audit.contains("release deb12 approved") && audit.contains("release deb12 removed"),
        "{audit}"
    );
}

const FEDORA: &str = "keylime_mb_binary_bios_measurements.bin";
const UBUNTU: &str = "gtt_ubuntu-2404-amd-sevsnp.bin";
const TDX_HOST: &str = "gtt_gdc-host.bin";

#[test]
fn a_policy_referencing_two_releases_trusts_boots_of_either() {
    let (_dir, cfg) = new_fleet();
    for (name, l) in [("fedora-41", FEDORA), ("ubuntu-24.04", UBUNTU)] {
        let o = fleet(&cfg, &["release", "approve", name, "--eventlog", &log(l)]);
        assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    }
    let policies = cfg.parent().unwrap().join("policies");
    let policy = policies.join("two.toml");
    std::fs::write(
        &policy,
        "version = 1\nreleases = [\"fedora-41\", \"ubuntu-24.04\"]\n",
    )
    .unwrap();
    let p = policy.to_string_lossy().into_owned();
    for l in [FEDORA, UBUNTU] {
        let o = fleet(
            &cfg,
            &["policy", "check", "--policy", &p, "--eventlog", &log(l)],
        );
        assert_eq!(o.status.code(), Some(0), "{l}: {}", out(&o));
    }
    // A boot of neither release: untrusted, each unapproved component named with its event.
    let o = fleet(
        &cfg,
        &[
            "policy",
            "check",
            "--policy",
            &p,
            "--eventlog",
            &log(TDX_HOST),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.contains("FAIL  boot_application (event")
            && text.contains("FAIL  grub_file (event 151, PCR9)")
            && text.contains("/vmlinuz-6.9.0-rc7+"),
        "{text}"
    );
    // The release in use cannot be removed.
    let o = fleet(&cfg, &["release", "remove", "fedora-41"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("two"), "{}", out(&o));
    // A reference to a release that does not exist: the policy does not load.
    std::fs::write(
        &policy,
        "version = 1\nreleases = [\"fedora-41\", \"fedora-42\"]\n",
    )
    .unwrap();
    let o = fleet(
        &cfg,
        &[
            "policy",
            "check",
            "--policy",
            &p,
            "--eventlog",
            &log(FEDORA),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(
        out(&o).contains("\"fedora-42\" is not an approved release"),
        "{}",
        out(&o)
    );
}

#[test]
fn policy_record_merges_golden_boots_without_pcrs() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("merged.toml");
    let ps = p.to_string_lossy().into_owned();
    let o = Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
        .args([
            "policy",
            "record",
            "--eventlog",
            &log(FEDORA),
            "--merge",
            &log(UBUNTU),
        ])
        .args(["--out", &ps])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(
        !text.contains("[pcrs") && text.contains("[grub_files]"),
        "{text}"
    );
    for (l, code) in [(FEDORA, 0), (UBUNTU, 0), (TDX_HOST, 1)] {
        let o = Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
            .args(["policy", "check", "--policy", &ps, "--eventlog", &log(l)])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(code), "{l}: {}", out(&o));
    }
}

/// `--deb`: a package built by dpkg-deb (xz and gzip) holding Debian's signed shim as an EFI
/// image and GRUB's signed image as a "kernel": both Authenticode digests equal pesign's, and
/// the kernel's file digest is approved for GRUB's PCR 9.
#[test]
fn approve_reads_boot_files_from_a_debian_package() {
    let (dir, cfg) = new_fleet();
    let pkg = dir.path().join("pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("usr/lib/shim")).unwrap();
    std::fs::create_dir_all(pkg.join("boot")).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: vouch-test\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@example.org>\nDescription: t\n",
    )
    .unwrap();
    let shim = Path::new("/usr/lib/shim/shimx64.efi.signed");
    let grub = Path::new("/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed");
    std::fs::copy(shim, pkg.join("usr/lib/shim/shimx64.efi.signed")).unwrap();
    std::fs::copy(grub, pkg.join("boot/vmlinuz-6.1.0-99-amd64")).unwrap();
    use sha2::Digest;
    let grub_sha = hex::encode(sha2::Sha256::digest(std::fs::read(grub).unwrap()));
    for (n, z) in ["xz", "gzip"].iter().enumerate() {
        let deb = dir.path().join(format!("t-{z}.deb"));
        let o = Command::new("dpkg-deb")
            .args(["--root-owner-group", &format!("-Z{z}"), "--build"])
            .arg(&pkg)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", out(&o));
        let name = format!("deb{n}");
        let o = fleet(
            &cfg,
            &[
                "release",
                "approve",
                &name,
                "--json",
                "--deb",
                &deb.to_string_lossy(),
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", out(&o));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let values = |kind: &str| -> Vec<String> {
            report["components"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["kind"] == kind)
                .map(|c| c["value"].as_str().unwrap().to_owned())
                .collect()
        };
        let mut apps = values("boot_application");
        apps.sort();
        let mut want = vec![pesign(shim), pesign(grub)];
        want.sort();
        assert_eq!(apps, want, "{report}");
        assert_eq!(values("grub_file"), vec![grub_sha.clone()], "{report}");
    }
    // Not a package: an input error naming the file.
    let o = fleet(&cfg, &["release", "approve", "x", "--deb", "/etc/hostname"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("--deb /etc/hostname"), "{}", out(&o));
}
