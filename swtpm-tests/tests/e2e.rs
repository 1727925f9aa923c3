//! End to end with real processes: mosquitto from `vouch-fleet init`, `vouch-fleet serve`, and
//! `vouch-agent run` on a swtpm booted from a real firmware event log. The agent enrolls (EK
//! certificate chain, credential activation, certified TPM-resident TLS key), announces its boot,
//! answers the challenge, and the fleet's verdict is `trusted`; after a PCR changes it is
//! `untrusted` naming the PCR; a broker restart loses no report.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use swtpm_tests::stack::{wait_until, FleetStack};
use swtpm_tests::{run, testdata, Swtpm};

const LOG: &str = "eventlogs/t2t_event-arch-linux.bin";

fn device_id(tpm: &Swtpm, state: &std::path::Path) -> String {
    let out = tpm.agent(state, &["tpm", "info", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["device_id"].as_str().unwrap().to_string()
}

fn status(v: &serde_json::Value) -> &str {
    v["device"]["status"].as_str().unwrap_or_default()
}

fn trust(tpm: &Swtpm) -> Vec<PathBuf> {
    vec![tpm.ca_root_cert(), tpm.ca_dir().join("issuercert.pem")]
}

fn quick(text: String) -> String {
    text.replace("jitter_secs = 30", "jitter_secs = 0")
}

#[test]
fn agent_enrolls_attests_and_is_untrusted_after_a_pcr_change() {
    let tpm = Swtpm::start().unwrap();
    let log = testdata().join(LOG);
    tpm.boot_from_log(&std::fs::read(&log).unwrap()).unwrap();
    let fleet = FleetStack::start(&trust(&tpm), quick).unwrap();
    let state = tpm.dir().join("agent");
    let id = device_id(&tpm, &state);
    let config = fleet.agent_config(&tpm, &state, &log).unwrap();

    let agent = fleet.start_agent(&config).unwrap();
    let v = fleet
        .wait_device(&id, Duration::from_secs(40), |v| status(v) == "trusted")
        .unwrap_or_else(|e| {
            panic!(
                "{e}\nagent log:\n{}",
                std::fs::read_to_string(config.with_extension("log")).unwrap_or_default()
            )
        });
    assert_eq!(v["verdicts"][0]["trusted"], true);
    assert!(state.join("device.crt").exists());
    // The agent sends appended parts of its log: the fleet holds the whole log it appraised and
    // what that trusted appraisal kept, and offers it in the next challenge.
    let held = || {
        let fleet_state = vouch_fleet::config::FleetConfig::load(&fleet.config())
            .unwrap()
            .state_dir;
        vouch_fleet::registry::Registry::open(&fleet_state)
            .unwrap()
            .held_head(&id)
            .unwrap()
            .expect("the fleet holds the agent's log")
    };
    assert_eq!(held().len, std::fs::metadata(&log).unwrap().len());
    assert!(held().settled.is_some());
    // The device certificate chains to the fleet CA and names the device id.
    let subject = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(state.join("device.crt"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&subject.stdout).contains(&id));

    // "Boot" differently: a PCR 7 change (the agent holds the swtpm connection, so stop it first).
    agent.stop();
    let ext = Command::new("tpm2_pcrextend")
        .arg(format!("7:sha256={}", "5a".repeat(32)))
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .output()
        .unwrap();
    assert!(ext.status.success());
    let _agent = fleet.start_agent(&config).unwrap();
    let v = fleet
        .wait_device(&id, Duration::from_secs(40), |v| status(v) == "untrusted")
        .unwrap();
    let reasons = v["verdicts"][0]["reasons"].to_string();
    assert!(reasons.contains("pcr7"), "{reasons}");
    // The restarted agent's log had not changed: it sent none of it, and the steady-state check
    // caught the PCR; nothing trusted is kept of that log any more.
    assert!(held().settled.is_none());
}

#[test]
fn a_broker_restart_loses_no_report() {
    let tpm = Swtpm::start().unwrap();
    let log = testdata().join(LOG);
    tpm.boot_from_log(&std::fs::read(&log).unwrap()).unwrap();
    let mut fleet = FleetStack::start(&trust(&tpm), quick).unwrap();
    let state = tpm.dir().join("agent");
    let id = device_id(&tpm, &state);
    let config = fleet.agent_config(&tpm, &state, &log).unwrap();
    let _agent = fleet.start_agent(&config).unwrap();
    let first = fleet
        .wait_device(&id, Duration::from_secs(40), |v| status(v) == "trusted")
        .unwrap();
    let first_id = first["verdicts"][0]["id"].as_i64().unwrap();

    // Broker down; an on-demand challenge is requested meanwhile; broker back up.
    fleet.stop_broker();
    let attest = std::thread::spawn({
        let config = fleet.config();
        let id = id.clone();
        move || {
            run(
                "vouch-fleet",
                &[
                    "attest",
                    &id,
                    "--wait",
                    "60",
                    "--config",
                    config.to_str().unwrap(),
                ],
                &[],
            )
        }
    });
    // Proof that the request was queued while the broker was down: the server took it from the
    // registry (it then publishes the challenge with QoS 1 into its persistent session, which the
    // broker delivers once it is back). Only then does the broker come back.
    let state = vouch_fleet::config::FleetConfig::load(&fleet.config())
        .unwrap()
        .state_dir;
    let registry = vouch_fleet::registry::Registry::open(&state).unwrap();
    let taken = wait_until(
        "the server to take the request",
        Duration::from_secs(30),
        || {
            let requests = registry.attest_requests_of(&id).unwrap();
            requests.iter().any(|(_, taken)| taken.is_some())
        },
    );
    assert!(
        taken.is_ok(),
        "the server did not take the attestation request while the broker was down\n{}",
        fleet.server_log()
    );
    fleet.start_broker().unwrap();
    let out = attest.join().unwrap();
    assert_eq!(
        out.code,
        0,
        "{}{}\n{}",
        out.stdout,
        out.stderr,
        fleet.server_log()
    );
    let after = fleet
        .wait_device(&id, Duration::from_secs(30), |v| {
            v["verdicts"][0]["id"].as_i64().unwrap_or(0) > first_id
        })
        .unwrap();
    assert_eq!(after["verdicts"][0]["trusted"], true);
}

#[test]
fn the_assigned_policy_decides_and_names_the_rule_and_event() {
    let tpm = Swtpm::start().unwrap();
    let log = testdata().join(LOG);
    tpm.boot_from_log(&std::fs::read(&log).unwrap()).unwrap();
    // The fleet's default policy is recorded from this device's own (known-good) log.
    let fleet = FleetStack::start(&trust(&tpm), |t| {
        quick(t).replace(
            "revoke_on_untrusted = false",
            "revoke_on_untrusted = false\ndefault_policy = \"known-good\"",
        )
    })
    .unwrap();
    fleet.record_policy("known-good", &log).unwrap();
    fleet
        .record_policy(
            "other-machine",
            &testdata().join("eventlogs/gtt_glinux-alex.bin"),
        )
        .unwrap();
    fleet.reload_server().unwrap();
    let state = tpm.dir().join("agent");
    let id = device_id(&tpm, &state);
    let config = fleet.agent_config(&tpm, &state, &log).unwrap();
    let _agent = fleet.start_agent(&config).unwrap();
    let v = fleet
        .wait_device(&id, Duration::from_secs(40), |v| status(v) == "trusted")
        .unwrap();
    assert_eq!(v["verdicts"][0]["reasons"], serde_json::json!([]));

    // Another machine's policy: untrusted, every failed rule named with its event or PCR.
    let set = fleet.cli(&["device", "set-policy", &id, "other-machine"]);
    assert_eq!(set.code, 0, "{}", set.stderr);
    let missing = fleet.cli(&["device", "set-policy", &id, "no-such-policy"]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    let out = fleet.cli(&["attest", &id, "--wait", "30"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let v = fleet.device(&id).unwrap();
    assert_eq!(v["policy"], "other-machine");
    let reasons: Vec<String> = v["verdicts"][0]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        reasons.iter().all(|r| r.starts_with("policy.")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("(event ")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("(PCR ")), "{reasons:?}");
}
