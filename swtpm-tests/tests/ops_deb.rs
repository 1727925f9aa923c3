//! The Debian packages: contents, conffiles, Depends (against what the packaged binary really
//! links, resolved with `dpkg -S`), maintainer scripts (run against logging stand-ins for
//! adduser and deb-systemd-helper), and the packaged units (`systemd-analyze verify` and the
//! offline security exposure) after `dpkg-deb -x` into a scratch root, and the CycloneDX SBOM each
//! package ships (its crates against `cargo tree`, its Debian components against Depends).
//!
//! Packages come from `$VOUCH_DEB_DIR` when set (e.g. release builds of `scripts/deb-build.sh`);
//! otherwise `scripts/deb-build.sh --no-build` packages the binaries this test run was built
//! with (seconds once cargo-deb is installed; the script installs it if missing).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use swtpm_tests::bin_path;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// Directory holding `vouch-agent_*.deb` and `vouch-fleet_*.deb`, built once per test binary.
fn debs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("VOUCH_DEB_DIR") {
            return PathBuf::from(dir);
        }
        // target/<profile-dir>/vouch-agent: package exactly what this test run built.
        let bin = bin_path("vouch-agent");
        let profile_dir = bin.parent().unwrap();
        let target_dir = profile_dir.parent().unwrap();
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(other) => other,
            None => panic!("odd target dir {}", profile_dir.display()),
        };
        let out = target_dir.join("debian-test");
        run(Command::new(repo().join("scripts/deb-build.sh"))
            .args(["--no-build", "--profile", profile, "--out"])
            .arg(&out)
            .env("CARGO_TARGET_DIR", target_dir));
        out
    })
}

fn deb(package: &str) -> PathBuf {
    let found: Vec<PathBuf> = fs::read_dir(debs())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .collect();
    assert_eq!(found.len(), 1, "one {package} package in {:?}", debs());
    found[0].clone()
}

fn field(deb: &Path, name: &str) -> String {
    stdout(Command::new("dpkg-deb").args(["-f"]).arg(deb).arg(name))
        .trim()
        .to_string()
}

/// Package names in a Depends field (alternatives flattened, versions dropped).
fn depends(deb: &Path) -> BTreeSet<String> {
    field(deb, "Depends")
        .split([',', '|'])
        .filter_map(|d| d.split_whitespace().next())
        .map(|n| n.split(':').next().unwrap_or(n).to_string())
        .collect()
}

fn contents(deb: &Path) -> Vec<String> {
    stdout(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

fn control(deb: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(deb)
        .arg(dir.path().join("c")));
    dir
}

fn extract(deb: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir.path()));
    dir
}

/// Debian packages that provide the shared libraries a binary links directly: its NEEDED
/// entries (readelf), located by ldd, owners found with dpkg -S. Libraries those pull in
/// (libssl3 under libtss2-esys) are their packages' business.
fn linked_packages(binary: &Path) -> BTreeSet<String> {
    let dynamic = stdout(Command::new("readelf").arg("-d").arg(binary));
    let needed: BTreeSet<&str> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(
        !needed.is_empty(),
        "no NEEDED entries in {}",
        binary.display()
    );
    let ldd = stdout(Command::new("ldd").arg(binary));
    let mut pkgs = BTreeSet::new();
    for line in ldd.lines() {
        // "\tlibtss2-esys.so.0 => /lib/x86_64-linux-gnu/libtss2-esys.so.0 (0x...)"
        let Some((soname, rest)) = line.trim().split_once(" => ") else {
            continue;
        };
        if !needed.contains(soname) {
            continue;
        }
        let Some(path) = rest.split(' ').next() else {
            continue;
        };
        let mut candidates = vec![PathBuf::from(path)];
        if let Some(rest) = path.strip_prefix("/usr") {
            candidates.push(PathBuf::from(rest));
        } else {
            candidates.push(Path::new("/usr").join(path.trim_start_matches('/')));
        }
        let owner = candidates.iter().find_map(|c| {
            let out = Command::new("dpkg").arg("-S").arg(c).output().ok()?;
            out.status.success().then(|| {
                let s = String::from_utf8_lossy(&out.stdout).into_owned();
                s.split(':').next().unwrap_or_default().trim().to_string()
            })
        });
        pkgs.insert(owner.unwrap_or_else(|| panic!("no package owns {path}")));
    }
    pkgs
}

#[test]
fn agent_package_contents_and_conffiles() {
    let deb = deb("vouch-agent");
    assert_eq!(field(&deb, "Package"), "vouch-agent");
    let files = contents(&deb);
    for f in [
        "./usr/bin/vouch-agent",
        "./etc/vouch/agent.toml",
        "./usr/lib/systemd/system/vouch-agent.service",
        "./usr/lib/systemd/system/vouch-volumes.service",
        "./usr/share/doc/vouch-agent/README-ops.md",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} missing from {files:?}");
    }
    let ctl = control(&deb);
    let conffiles = fs::read_to_string(ctl.path().join("c/conffiles")).unwrap();
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        ["/etc/vouch/agent.toml"]
    );
    let root = extract(&deb);
    assert_eq!(
        fs::read(root.path().join("etc/vouch/agent.toml")).unwrap(),
        fs::read(repo().join("agent/agent.example.toml")).unwrap()
    );
    let mode = fs::metadata(root.path().join("usr/bin/vouch-agent"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}

/// The software TPM is for tests only (feature `memory-tpm`, which swtpm-tests turns on). The
/// packages are built with `cargo deb -p vouch-agent`, whose feature resolution covers the agent
/// alone: it must not include the feature. (This test's own debug binary is built with the whole
/// workspace, where swtpm-tests' features are unified in, so the check is on the resolution.)
#[test]
fn the_packaged_agent_is_built_without_the_software_tpm() {
    let features = |package: &str| {
        stdout(
            Command::new(env!("CARGO"))
                .args(["tree", "-p", package, "-e", "features", "--prefix", "none"])
                .current_dir(repo()),
        )
    };
    assert!(
        features("swtpm-tests").contains("vouch-agent feature \"memory-tpm\""),
        "the check cannot see the feature where it is on"
    );
    let agent = features("vouch-agent");
    assert!(
        !agent.contains("memory-tpm"),
        "cargo deb -p vouch-agent would build the software TPM in:\n{agent}"
    );
}

#[test]
fn fleet_package_contents_and_conffiles() {
    let deb = deb("vouch-fleet");
    let files = contents(&deb);
    for f in [
        "./usr/bin/vouch-fleet",
        "./etc/vouch/fleet.toml",
        "./usr/lib/systemd/system/vouch-fleet.service",
        "./usr/lib/systemd/system/vouch-fleet-crl.path",
        "./usr/lib/systemd/system/vouch-fleet-crl.service",
        "./usr/lib/systemd/system/vouch-fleet-backup.service",
        "./usr/lib/systemd/system/vouch-fleet-backup.timer",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} missing from {files:?}");
    }
    let ctl = control(&deb);
    let conffiles = fs::read_to_string(ctl.path().join("c/conffiles")).unwrap();
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        ["/etc/vouch/fleet.toml"]
    );
    let root = extract(&deb);
    assert_eq!(
        fs::read(root.path().join("etc/vouch/fleet.toml")).unwrap(),
        fs::read(repo().join("fleet/fleet.example.toml")).unwrap()
    );
}

#[test]
fn depends_cover_what_the_binaries_link() {
    for (package, binary) in [
        ("vouch-agent", "usr/bin/vouch-agent"),
        ("vouch-fleet", "usr/bin/vouch-fleet"),
    ] {
        let deb = deb(package);
        let deps = depends(&deb);
        let root = extract(&deb);
        let linked = linked_packages(&root.path().join(binary));
        assert!(linked.contains("libc6"), "{package} links {linked:?}");
        for pkg in &linked {
            assert!(
                deps.contains(pkg),
                "{package} links {pkg} but Depends is {deps:?}"
            );
        }
        assert!(
            deps.contains("adduser"),
            "{package}: postinst needs adduser"
        );
    }
    let agent = depends(&deb("vouch-agent"));
    // Linked directly (dpkg-shlibdeps) and loaded with dlopen (named explicitly).
    for pkg in [
        "libtss2-esys-3.0.2-0",
        "libtss2-tctildr0",
        "libtss2-tcti-device0",
        "tpm-udev",
    ] {
        assert!(
            agent.contains(pkg),
            "vouch-agent Depends lacks {pkg}: {agent:?}"
        );
    }
}

/// Crates `cargo tree` reports for `package` built alone for `triple` (its default features,
/// normal dependencies, proc-macros included, build-only dependencies not): what
/// `cargo deb -p package` compiles into the binary. As (name, version), the package itself too.
fn crates_of(package: &str, triple: &str) -> BTreeSet<(String, String)> {
    let tree = stdout(
        Command::new(env!("CARGO"))
            .args([
                "tree", "-q", "-e", "normal", "--prefix", "none", "-f", "{p}",
            ])
            .args(["-p", package, "--target", triple])
            .current_dir(repo()),
    );
    tree.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            let version = words.next()?.strip_prefix('v')?;
            Some((name.to_string(), version.to_string()))
        })
        .collect()
}

/// Each package ships a CycloneDX SBOM under /usr/share/doc/<package>/ (scripts/supply-sbom.sh)
/// whose crates are exactly those `cargo tree` reports for the packaged binary and whose Debian
/// components are exactly the package's Depends.
#[test]
fn packages_ship_an_sbom_of_their_crates_and_debian_depends() {
    for package in ["vouch-agent", "vouch-fleet"] {
        let deb = deb(package);
        let triple = match field(&deb, "Architecture").as_str() {
            "amd64" => "x86_64-unknown-linux-gnu",
            "arm64" => "aarch64-unknown-linux-gnu",
            "armhf" => "armv7-unknown-linux-gnueabihf",
            other => panic!("{package}: architecture {other}"),
        };
        let root = extract(&deb);
        let path = root
            .path()
            .join(format!("usr/share/doc/{package}/sbom.cdx.json"));
        let text = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let sbom: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(sbom["bomFormat"], "CycloneDX", "{package}");
        let top = &sbom["metadata"]["component"];
        assert_eq!(top["name"], package);
        let text_of = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let mut crates = BTreeSet::from([(text_of(&top["name"]), text_of(&top["version"]))]);
        let mut debian = BTreeSet::new();
        for c in sbom["components"].as_array().expect("components") {
            let purl = text_of(&c["purl"]);
            if purl.starts_with("pkg:cargo/") {
                crates.insert((text_of(&c["name"]), text_of(&c["version"])));
            } else if purl.starts_with("pkg:deb/debian/") {
                debian.insert(text_of(&c["name"]));
            } else {
                panic!("{package}: SBOM component with purl {purl:?}: {c}");
            }
        }
        let expected = crates_of(package, triple);
        let missing: Vec<_> = expected.difference(&crates).collect();
        let extra: Vec<_> = crates.difference(&expected).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{package} SBOM vs cargo tree ({} crates): missing {missing:?}, extra {extra:?}",
            expected.len()
        );
        assert_eq!(
            debian,
            depends(&deb),
            "{package}: SBOM Debian components vs Depends"
        );
        // No build machine paths in what ships.
        let text = String::from_utf8_lossy(&text);
        let here = repo().canonicalize().unwrap();
        assert!(
            !text.contains(here.to_str().unwrap()),
            "{package}: the SBOM names the build directory {}",
            here.display()
        );
    }
}

/// Runs a postinst with `configure` against stand-ins that log their arguments; `vouch_exists`
/// says whether the stand-in `getent` knows the package's user already.
fn run_postinst(deb: &Path, user_exists: bool) -> String {
    let ctl = control(deb);
    let shims = tempfile::tempdir().unwrap();
    let log = shims.path().join("calls.log");
    let getent = if user_exists {
        "exit 0"
    } else {
        "case \"$1 $2\" in 'group tss') exit 0 ;; *) exit 2 ;; esac"
    };
    let shim = |name: &str, body: &str| {
        let p = shims.path().join(name);
        fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >>'{}'\n{body}\n",
                log.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    };
    shim("getent", getent);
    for name in ["adduser", "addgroup", "deb-systemd-invoke", "systemctl"] {
        shim(name, "exit 0");
    }
    // A fresh install: no unit was installed or enabled by an earlier version.
    shim(
        "deb-systemd-helper",
        "case \"$1\" in debian-installed) exit 1 ;; *) exit 0 ;; esac",
    );
    let path = format!("{}:/usr/bin:/bin", shims.path().display());
    run(Command::new("sh")
        .arg(ctl.path().join("c/postinst"))
        .arg("configure")
        .arg("")
        .env("PATH", path));
    fs::read_to_string(&log).unwrap_or_default()
}

#[test]
fn agent_postinst_creates_vouch_in_tss_and_enables_without_starting() {
    let deb = deb("vouch-agent");
    let calls = run_postinst(&deb, false);
    let lines: Vec<&str> = calls.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("adduser --system")
            && l.ends_with(" vouch")
            && l.contains("--home /var/lib/vouch")),
        "{calls}"
    );
    assert!(lines.contains(&"adduser --quiet vouch tss"), "{calls}");
    for unit in ["vouch-agent.service", "vouch-volumes.service"] {
        assert!(
            lines.contains(&format!("deb-systemd-helper enable {unit}").as_str()),
            "{calls}"
        );
    }
    assert!(
        !calls.contains(" start"),
        "units must not be started: {calls}"
    );

    // A second configure (upgrade) keeps the user and only re-asserts the group.
    let again = run_postinst(&deb, true);
    assert!(!again.contains("adduser --system"), "{again}");
    assert!(
        again.lines().any(|l| l == "adduser --quiet vouch tss"),
        "{again}"
    );
}

#[test]
fn fleet_postinst_creates_its_user_and_leaves_the_crl_watch_disabled() {
    let deb = deb("vouch-fleet");
    let calls = run_postinst(&deb, false);
    assert!(
        calls
            .lines()
            .any(|l| l.starts_with("adduser --system") && l.ends_with(" vouch-fleet")),
        "{calls}"
    );
    assert!(
        calls.contains("deb-systemd-helper enable vouch-fleet.service"),
        "{calls}"
    );
    assert!(!calls.contains("enable vouch-fleet-crl"), "{calls}");
    assert!(!calls.contains("enable vouch-fleet-backup"), "{calls}");
    assert!(!calls.contains(" start"), "{calls}");
}

/// `systemd-analyze verify` and `security` on the units as packaged, with ExecStart pointing at
/// the packaged binary in the scratch root.
fn check_packaged_units(package: &str, units: &[&str], bound: &[(&str, f64)]) {
    let root = extract(&deb(package));
    let unit_dir = root.path().join("usr/lib/systemd/system");
    let staged = tempfile::tempdir().unwrap();
    for u in units {
        let text = fs::read_to_string(unit_dir.join(u)).unwrap();
        let bin = root.path().join("usr/bin");
        let text = text.replace("/usr/bin/vouch-", &format!("{}/vouch-", bin.display()));
        fs::write(staged.path().join(u), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(units.iter().map(|u| staged.path().join(u)))
        .output()
        .expect("systemd-analyze is installed (systemd)");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && printed.is_empty(),
        "verify: {printed}"
    );
    for (unit, max) in bound {
        let text = stdout(
            Command::new("systemd-analyze")
                .args(["security", "--offline=true", "--no-pager"])
                .arg(staged.path().join(unit)),
        );
        let figure: f64 = text
            .lines()
            .find_map(|l| l.split_once("Overall exposure level for "))
            .and_then(|(_, rest)| rest.rsplit(':').next())
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure figure in {text}"));
        eprintln!("{package}: {unit} exposure {figure}");
        assert!(figure <= *max, "{unit}: exposure {figure} > {max}");
    }
}

#[test]
fn packaged_agent_units_verify_and_score() {
    check_packaged_units(
        "vouch-agent",
        &["vouch-agent.service", "vouch-volumes.service"],
        &[("vouch-agent.service", 1.5), ("vouch-volumes.service", 3.0)],
    );
}

#[test]
fn packaged_fleet_units_verify_and_score() {
    check_packaged_units(
        "vouch-fleet",
        &[
            "vouch-fleet.service",
            "vouch-fleet-crl.path",
            "vouch-fleet-crl.service",
            "vouch-fleet-backup.service",
            "vouch-fleet-backup.timer",
        ],
        &[("vouch-fleet.service", 1.5)],
    );
}
