//! Approved releases on real logs: the release document, the EFI stub's LoadOptions digest
//! computed from the command line text and found in real logs, the `grub_files` rule on GRUB's
//! PCR 9 file measurements, and the effective policy of a policy referencing releases.

mod eventlog_support;

use eventlog_support::read_log;
use vouch_attest::eventlog::{EventData, EventLog, EventTag, EventType};
use vouch_attest::policy::{evaluate, preferred_bank, union, Evidence, Policy, Rule, Verdict};
use vouch_attest::release::{
    effective, grub_cmdline_text, load_options_sha256, EffectiveError, LoadOptionsForm, Lookup,
    Release, ReleaseError,
};
use vouch_attest::HashAlg;

const FEDORA: &str = "keylime_mb_binary_bios_measurements.bin";
const UBUNTU: &str = "gtt_ubuntu-2404-amd-sevsnp.bin";
const TDX_HOST: &str = "gtt_gdc-host.bin";

fn check(policy: &Policy, log: &EventLog<'_>) -> Verdict {
    let replay = log.replay();
    evaluate(
        policy,
        &Evidence {
            log,
            bank: preferred_bank(log).unwrap(),
            pcrs: &replay,
            firmware_version: None,
        },
    )
}

fn release_of(name: &str) -> Release {
    let bytes = read_log(name);
    let log = EventLog::parse(&bytes).unwrap();
    let mut r = Release::empty();
    r.add_log(&log, name);
    r
}

/// (kernel_cmdline text in PCR 8, LoadOptions sha256 in PCR 9) of a GRUB 2.12 log.
fn cmdline_and_load_options(name: &str) -> (String, Vec<u8>) {
    let bytes = read_log(name);
    let log = EventLog::parse(&bytes).unwrap();
    let mut text = None;
    let mut digest = None;
    for e in &log.events {
        match (e.event_type, e.decode()) {
            (EventType::EV_IPL, Ok(EventData::Ipl { text: t, .. }))
                if e.pcr == 8 && e.data.starts_with(b"kernel_cmdline: ") =>
            {
                text = Some(t)
            }
            (
                EventType::EV_EVENT_TAG,
                Ok(EventData::Tagged {
                    tag: Some(EventTag::LoadOptions),
                    ..
                }),
            ) => digest = Some(e.digests.get(HashAlg::Sha256).unwrap().to_vec()),
            _ => {}
        }
    }
    (text.unwrap(), digest.unwrap())
}

#[test]
fn load_options_digest_from_the_text_matches_real_grub_logs() {
    for name in [UBUNTU, TDX_HOST] {
        let (grub_text, measured) = cmdline_and_load_options(name);
        // What /proc/cmdline shows: GRUB hands the kernel BOOT_IMAGE=<path> <args>.
        let proc_cmdline = format!("BOOT_IMAGE={grub_text}");
        assert_eq!(grub_cmdline_text(&proc_cmdline), grub_text);
        assert_eq!(
            load_options_sha256(&proc_cmdline, LoadOptionsForm::Grub).as_slice(),
            measured,
            "{name}"
        );
        // The other forms are not what GRUB measured.
        assert_ne!(
            load_options_sha256(&proc_cmdline, LoadOptionsForm::Terminated).as_slice(),
            measured
        );
        assert_ne!(
            load_options_sha256(&grub_text, LoadOptionsForm::Grub).as_slice(),
            measured
        );
    }
}

#[test]
fn release_document_round_trips_and_refuses_bad_input_naming_the_field() {
    let r = release_of(UBUNTU);
    assert!(!r.boot_applications.is_empty() && !r.grub_files.is_empty());
    assert_eq!(r.load_options.len(), 1);
    let text = r.to_toml().unwrap();
    assert_eq!(Release::from_toml(&text).unwrap(), r);

    let e = Release::from_toml("version = 1\nbogus = 1\n").unwrap_err();
    assert!(matches!(e, ReleaseError::Toml(_)), "{e:?}");
    let e = Release::from_toml("version = 2\n").unwrap_err();
    assert!(matches!(e, ReleaseError::Version { found: 2 }), "{e:?}");
    let e = Release::from_toml(
        "version = 1\n[[initrds]]\nsha256 = \"00\"\n[[initrds]]\nsha256 = \"abcd\"\n",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "initrds[0].sha256: 1-byte digest, expected 32 bytes"
    );
    let e = Release::from_toml("version = 1\n[[kernel_cmdlines]]\ntext = \"\"\n").unwrap_err();
    assert!(
        matches!(e, ReleaseError::EmptyCmdline { index: 0 }),
        "{e:?}"
    );
    let e = Release::from_toml("version = 1\n[[grub_files]]\nsha256 = \"zz\"\n").unwrap_err();
    assert!(matches!(e, ReleaseError::Toml(_)), "{e:?}");
    let big = format!("version = 1\ndescription = \"{}\"\n", "x".repeat(1 << 20));
    assert!(matches!(
        Release::from_toml(&big).unwrap_err(),
        ReleaseError::TooLarge { .. }
    ));
}

/// The GRUB PCR 9 file rule: the release of the Fedora boot allows it; without the kernel
/// file's digest the boot fails closed naming event 117, PCR 9 and the kernel's path, even
/// though the boot applications, command line and every other file are approved.
#[test]
fn an_unapproved_kernel_loaded_by_grub_fails_naming_the_event_and_file() {
    let bytes = read_log(FEDORA);
    let log = EventLog::parse(&bytes).unwrap();
    let full = release_of(FEDORA);
    let mut policy = Policy::empty();
    policy.releases = vec!["fedora".into()];
    let eff = effective(&policy, |_| Lookup::Found(&full)).unwrap();
    assert!(eff.grub_files.is_some());
    let v = check(&eff, &log);
    assert!(v.trusted, "{:?}", v.failures);

    let kernel = log.events.iter().find(|e| e.index == 117).unwrap();
    let kernel_sha = kernel.digests.get(HashAlg::Sha256).unwrap().to_vec();
    let mut without = full.clone();
    without.grub_files.retain(|c| c.sha256.0 != kernel_sha);
    let eff = effective(&policy, |_| Lookup::Found(&without)).unwrap();
    let v = check(&eff, &log);
    assert!(!v.trusted);
    assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
    let f = &v.failures[0];
    assert_eq!(
        (f.rule, f.event_index, f.pcr),
        (Rule::GrubFile, Some(117), Some(9))
    );
    assert!(
        f.detail
            .contains("(hd3,gpt2)/vmlinuz-6.11.5-300.fc41.x86_64")
            && f.detail.contains(&hex::encode(&kernel_sha)),
        "{}",
        f.detail
    );
    // Without the rule (as before it existed), nothing else catches the kernel: the same
    // policy minus grub_files is trusted.
    let mut no_rule = eff.clone();
    no_rule.grub_files = None;
    assert!(check(&no_rule, &log).trusted);
}

/// A fleet on two releases at once: a policy referencing both trusts a boot of either, a boot
/// of neither fails naming the component, and a missing release is an error, not an empty one.
#[test]
fn a_policy_referencing_two_releases_trusts_either_and_nothing_else() {
    let fedora = release_of(FEDORA);
    let ubuntu = release_of(UBUNTU);
    let mut policy = Policy::empty();
    policy.releases = vec!["fedora-41".into(), "ubuntu-24.04".into()];
    let lookup = |name: &str| match name {
        "fedora-41" => Lookup::Found(&fedora),
        "ubuntu-24.04" => Lookup::Found(&ubuntu),
        _ => Lookup::Missing,
    };
    let eff = effective(&policy, lookup).unwrap();
    assert_eq!(eff.releases, policy.releases);
    for name in [FEDORA, UBUNTU] {
        let bytes = read_log(name);
        let log = EventLog::parse(&bytes).unwrap();
        let v = check(&eff, &log);
        assert!(v.trusted, "{name}: {:?}", v.failures);
    }
    let bytes = read_log(TDX_HOST);
    let log = EventLog::parse(&bytes).unwrap();
    let v = check(&eff, &log);
    assert!(!v.trusted);
    let rules: Vec<Rule> = v.failures.iter().map(|f| f.rule).collect();
    for r in [Rule::BootApplication, Rule::KernelCmdline, Rule::GrubFile] {
        assert!(rules.contains(&r), "{r} not in {:?}", v.failures);
    }
    assert!(v
        .failures
        .iter()
        .all(|f| f.event_index.is_some() && f.pcr.is_some()));

    policy.releases.push("gone".into());
    assert_eq!(
        effective(&policy, lookup).unwrap_err(),
        EffectiveError::Missing {
            name: "gone".into()
        }
    );
    let e = effective(&policy, |_| Lookup::Unusable("bad TOML")).unwrap_err();
    assert!(matches!(e, EffectiveError::Unusable { .. }), "{e}");
}

#[test]
fn a_policy_naming_a_bad_release_name_is_refused() {
    let e = Policy::from_toml("version = 1\nreleases = [\"../etc\"]\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "releases[0]: \"../etc\" is not a release name (1 to 64 of A-Z a-z 0-9 . _ -, not starting with .)"
    );
    let p = Policy::from_toml("version = 1\nreleases = [\"deb12-6.1.0-28\"]\n").unwrap();
    assert_eq!(Policy::from_toml(&p.to_toml().unwrap()).unwrap(), p);
}

/// `policy record --merge`: two golden boots recorded without PCRs and unioned trust both.
#[test]
fn merged_recordings_trust_each_golden_boot() {
    let logs: Vec<Vec<u8>> = [FEDORA, UBUNTU].iter().map(|n| read_log(n)).collect();
    let parsed: Vec<EventLog<'_>> = logs.iter().map(|b| EventLog::parse(b).unwrap()).collect();
    let mut merged = Policy::empty();
    for log in &parsed {
        let mut p = Policy::record(log, &log.replay());
        p.pcrs = Default::default();
        union(&mut merged, &p).unwrap();
    }
    for log in &parsed {
        let v = check(&merged, log);
        assert!(v.trusted, "{:?}", v.failures);
    }
    let tdx = read_log(TDX_HOST);
    assert!(!check(&merged, &EventLog::parse(&tdx).unwrap()).trusted);
}

/// The example release in tpm-policies/releases loads, and a policy referencing only it trusts
/// the log it was approved from and no other.
#[test]
fn example_release_trusts_its_log() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tpm-policies/releases/ubuntu-2404-gcp.toml");
    let release = Release::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(release, {
        let mut r = release_of(UBUNTU);
        r.description = release.description.clone();
        for c in r
            .boot_applications
            .iter_mut()
            .chain(&mut r.load_options)
            .chain(&mut r.grub_files)
        {
            c.source = c
                .source
                .as_ref()
                .map(|s| s.replace(UBUNTU, "the known-good log"));
        }
        for c in &mut r.kernel_cmdlines {
            c.source = c
                .source
                .as_ref()
                .map(|s| s.replace(UBUNTU, "the known-good log"));
        }
        r
    });
    let policy = Policy::from_toml("version = 1\nreleases = [\"ubuntu-2404-gcp\"]\n").unwrap();
    let eff = effective(&policy, |_| Lookup::Found(&release)).unwrap();
    for (name, trusted) in [(UBUNTU, true), (FEDORA, false), (TDX_HOST, false)] {
        let bytes = read_log(name);
        let v = check(&eff, &EventLog::parse(&bytes).unwrap());
        assert_eq!(v.trusted, trusted, "{name}: {:?}", v.failures);
    }
}
