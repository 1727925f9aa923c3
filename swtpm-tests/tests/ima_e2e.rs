//! IMA runtime integrity end to end with real processes: `vouch-fleet serve` with a Keylime
//! runtime policy made by `vouch-fleet runtime-policy create --tree`, mosquitto, and
//! `vouch-agent run` on a swtpm whose PCR 10 is extended (with `tpm2_pcrextend`) exactly as the
//! kernel would for the agent's IMA measurement list (a file here, `ima_log` in agent.toml). The
//! device attests trusted; then a binary that is not in the policy "runs" (its entry appended,
//! PCR 10 extended): the next verdict is untrusted naming its path and rule, and the fleet asked
//! only for the entries after the last accepted report (the registry's state says where).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use swtpm_tests::stack::FleetStack;
use swtpm_tests::{testdata, Swtpm};
use vouch_attest::ima::binary::encode_entry;
use vouch_attest::ima::{Entry, FileDigest, Template};
use vouch_attest::HashAlg;

const LOG: &str = "eventlogs/t2t_event-arch-linux.bin";

fn device_id(tpm: &Swtpm, state: &Path) -> String {
    let out = tpm.agent(state, &["tpm", "info", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["device_id"].as_str().unwrap().to_string()
}

fn status(v: &serde_json::Value) -> &str {
    v["device"]["status"].as_str().unwrap_or_default()
}

/// The kernel's measurement of `file` as `name`: an ima-ng entry with a SHA-1 template hash
/// (the classic `binary_runtime_measurements`).
fn measure(file: &Path, name: &str) -> Entry {
    let digest = HashAlg::Sha256.hash(&std::fs::read(file).unwrap()).unwrap();
    Entry::measured(
        Template::ImaNg,
        FileDigest {
            alg: "sha256".into(),
            value: digest,
        },
        name,
        b"",
        HashAlg::Sha1,
    )
    .unwrap()
}

/// Appends `entries` to the list and extends the swtpm's sha256 PCR 10 as the kernel does.
fn run_files(tpm: &Swtpm, list: &Path, entries: &[Entry]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(list)
        .unwrap();
    for e in entries {
        f.write_all(&encode_entry(e)).unwrap();
        let d = e.bank_digest(HashAlg::Sha256).unwrap();
        let ext = Command::new("tpm2_pcrextend")
            .arg(format!("10:sha256={}", hex::encode(d)))
            .env("TPM2TOOLS_TCTI", tpm.tcti())
            .env("TSS2_LOG", "all+none")
            .output()
            .unwrap();
        assert!(
            ext.status.success(),
            "{}",
            String::from_utf8_lossy(&ext.stderr)
        );
    }
}

#[test]
fn a_device_is_trusted_under_a_tree_policy_then_untrusted_naming_a_binary_not_in_it() {
    let tpm = Swtpm::start().unwrap();
    let log = testdata().join(LOG);
    tpm.boot_from_log(&std::fs::read(&log).unwrap()).unwrap();

    // The device's root file system and the policy built from it.
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    let mut names = Vec::new();
    for i in 0..12 {
        let (dir, name) = if i % 2 == 0 {
            ("usr/bin", format!("tool{i}"))
        } else {
            ("usr/lib", format!("lib{i}.so"))
        };
        std::fs::write(root.join(dir).join(&name), format!("contents {i}")).unwrap();
        names.push(format!("{dir}/{name}"));
    }
    let policy = work.path().join("runtime-policy.json");
    let out = swtpm_tests::run(
        "vouch-fleet",
        &[
            "runtime-policy",
            "create",
            "--tree",
            root.to_str().unwrap(),
            "--out",
            policy.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);

    // The kernel's first entry: boot_aggregate, IMA's hash of PCR 0-9 (here: the replay of the
    // firmware log the swtpm booted from). The policy does not list it: the fleet computes it
    // from the quoted PCRs. Then the files run and are measured.
    let list = work.path().join("binary_runtime_measurements");
    let replay = vouch_attest::eventlog::EventLog::parse(&std::fs::read(&log).unwrap())
        .unwrap()
        .replay();
    // PCRs the firmware log does not extend stay zero (the TPM quotes them so).
    let mut boot = vouch_attest::PcrBanks::new();
    for i in 0..10 {
        let v = replay
            .get(HashAlg::Sha256, i)
            .map_or(vec![0; 32], <[u8]>::to_vec);
        boot.insert(HashAlg::Sha256, i, v);
    }
    let aggregate = vouch_attest::ima::replay::boot_aggregate(HashAlg::Sha256, &boot).unwrap();
    let mut first = vec![Entry::measured(
        Template::ImaNg,
        FileDigest {
            alg: "sha256".into(),
            value: aggregate,
        },
        "boot_aggregate",
        b"",
        HashAlg::Sha1,
    )
    .unwrap()];
    first.extend(
        names
            .iter()
            .map(|n| measure(&root.join(n), &format!("/{n}"))),
    );
    run_files(&tpm, &list, &first);

    let policy_line = format!("\n[ima]\nruntime_policy = \"{}\"\n", policy.display());
    let fleet = FleetStack::start(
        &[tpm.ca_root_cert(), tpm.ca_dir().join("issuercert.pem")],
        |t| t.replace("jitter_secs = 30", "jitter_secs = 0") + &policy_line,
    )
    .unwrap();
    let state = tpm.dir().join("agent");
    let id = device_id(&tpm, &state);
    let config = fleet.agent_config(&tpm, &state, &log).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen(
        "\n[broker]",
        &format!("ima_log = \"{}\"\n\n[broker]", list.display()),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let agent_log = || std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();

    let agent = fleet.start_agent(&config).unwrap();
    let v = fleet
        .wait_device(&id, Duration::from_secs(40), |v| status(v) == "trusted")
        .unwrap_or_else(|e| {
            let show = fleet.cli(&["device", "show", &id, "--json"]);
            panic!(
                "{e}\nagent log:\n{}\ndevice show: {} {}",
                agent_log(),
                show.stdout,
                show.stderr
            )
        });
    assert_eq!(v["verdicts"][0]["trusted"], true, "{v}");
    let registry = || {
        let state_dir = vouch_fleet::config::FleetConfig::load(&fleet.config())
            .unwrap()
            .state_dir;
        vouch_fleet::registry::Registry::open(&state_dir).unwrap()
    };
    let stored = registry()
        .ima_state(&id)
        .unwrap()
        .expect("IMA state stored");
    assert_eq!(stored.state.entries, 13);
    assert_eq!(stored.state.offset, std::fs::metadata(&list).unwrap().len());

    // A binary that is not in the policy runs (the agent holds the swtpm connection: stop it
    // to extend, as the kernel would have).
    agent.stop();
    let evil = work.path().join("evil");
    std::fs::write(&evil, b"not from the tree").unwrap();
    run_files(&tpm, &list, &[measure(&evil, "/tmp/evil")]);
    let _agent = fleet.start_agent(&config).unwrap();
    let v = fleet
        .wait_device(&id, Duration::from_secs(40), |v| status(v) == "untrusted")
        .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent_log()));
    let reasons = v["verdicts"][0]["reasons"].to_string();
    assert!(reasons.contains("ima.not_in_policy"), "{reasons}");
    assert!(reasons.contains("/tmp/evil"), "{reasons}");
    assert!(reasons.contains("(entry 13)"), "{reasons}");
    // Only the new entry was sent and replayed on top of the stored state.
    let stored = registry().ima_state(&id).unwrap().unwrap();
    assert_eq!(stored.state.entries, 14);
    assert_eq!(stored.failed.len(), 1);
}

#[test]
fn a_list_longer_than_one_report_is_sent_in_parts_and_verified() {
    use vouch_agent::tpm::esapi::EsapiTpm;
    use vouch_agent::tpm::Tpm;
    let tpm = Swtpm::start().unwrap();
    let log = testdata().join(LOG);
    tpm.boot_from_log(&std::fs::read(&log).unwrap()).unwrap();
    let work = tempfile::tempdir().unwrap();
    // 8,000 entries (about 1.6 MB: more than three 512 KiB reports), extended in one TPM session.
    let list = work.path().join("binary_runtime_measurements");
    let entries: Vec<Entry> = (0..8000)
        .map(|i| {
            let name = format!("/usr/lib/x86_64-linux-gnu/a-rather-long-directory-name/for-many-files/{i:05}/libexample-with-a-long-name.so.1.2.3");
            Entry::measured(
                Template::ImaNg,
                FileDigest {
                    alg: "sha256".into(),
                    value: HashAlg::Sha256.hash(name.as_bytes()).unwrap(),
                },
                &name,
                b"",
                HashAlg::Sha1,
            )
            .unwrap()
        })
        .collect();
    let mut bytes = Vec::new();
    {
        let tcti = tpm.tcti().parse().unwrap();
        let mut t = EsapiTpm::open(&tcti, &tpm.dir().join("extend-state")).unwrap();
        for e in &entries {
            bytes.extend_from_slice(&encode_entry(e));
            t.pcr_extend(
                10,
                &[(HashAlg::Sha256, e.bank_digest(HashAlg::Sha256).unwrap())],
            )
            .unwrap();
        }
    }
    assert!(
        bytes.len() > 3 * vouch_agent::ima::MAX_CHUNK,
        "{}",
        bytes.len()
    );
    std::fs::write(&list, &bytes).unwrap();
    // The policy: the known-good list itself.
    let policy = work.path().join("runtime-policy.json");
    let out = swtpm_tests::run(
        "vouch-fleet",
        &[
            "runtime-policy",
            "create",
            "--log",
            list.to_str().unwrap(),
            "--out",
            policy.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);

    let policy_line = format!("\n[ima]\nruntime_policy = \"{}\"\n", policy.display());
    let fleet = FleetStack::start(
        &[tpm.ca_root_cert(), tpm.ca_dir().join("issuercert.pem")],
        |t| t.replace("jitter_secs = 30", "jitter_secs = 0") + &policy_line,
    )
    .unwrap();
    let state = tpm.dir().join("agent");
    let id = device_id(&tpm, &state);
    let config = fleet.agent_config(&tpm, &state, &log).unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "\n[broker]",
        &format!("ima_log = \"{}\"\n\n[broker]", list.display()),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let _agent = fleet.start_agent(&config).unwrap();
    let v = fleet
        .wait_device(&id, Duration::from_secs(60), |v| status(v) == "trusted")
        .unwrap_or_else(|e| {
            panic!(
                "{e}\nagent log:\n{}",
                std::fs::read_to_string(config.with_extension("log")).unwrap_or_default()
            )
        });
    // One verdict, after the parts: the earlier reports stored no verdict.
    assert_eq!(v["verdicts"].as_array().map(Vec::len), Some(1), "{v}");
    let state_dir = vouch_fleet::config::FleetConfig::load(&fleet.config())
        .unwrap()
        .state_dir;
    let stored = vouch_fleet::registry::Registry::open(&state_dir)
        .unwrap()
        .ima_state(&id)
        .unwrap()
        .unwrap();
    assert_eq!(stored.state.entries, 8000);
    assert_eq!(stored.state.offset, bytes.len() as u64);
    let agent_log = std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
    assert!(
        agent_log.matches("challenge answered").count() >= 4,
        "{agent_log}"
    );
}
