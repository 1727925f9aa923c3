//! Steady state end to end (real mosquitto, `vouch-fleet serve` as a process, a swtpm booted from
//! a real firmware log, the agent's own `log_part`): after one whole log, challenges name the part
//! the fleet holds and reports carry none of it (under 2 KB) while staying trusted; an appended
//! event is sent alone and appraised with the held log; a PCR changed behind the log's back is
//! still caught (the steady-state check compares values); an older agent that sends whole logs
//! keeps working and the fleet then holds nothing for it.

mod serve_support;

use serve_support::agent::TestAgent;
use serve_support::{testdata, Fleet, Settings, BOOT_LOG};
use std::time::Duration;
use swtpm_tests::Swtpm;
use vouch_agent::tpm::Tpm;
use vouch_attest::eventlog::EventLog;
use vouch_attest::policy::{PcrPolicy, Policy};
use vouch_attest::protocol::{self, AttestChallenge, BootAnnouncement, EnrollResponse};
use vouch_attest::HashAlg;

const SECS: Duration = Duration::from_secs(5);

/// An EV_ACTION event (crypto-agile form) in `pcr` with its digests in the log's banks (sha1
/// and sha256), and those digests.
fn action_event(pcr: u32, text: &str) -> (Vec<u8>, Vec<(HashAlg, Vec<u8>)>) {
    let digests = vec![
        (HashAlg::Sha1, HashAlg::Sha1.hash(text.as_bytes()).unwrap()),
        (
            HashAlg::Sha256,
            HashAlg::Sha256.hash(text.as_bytes()).unwrap(),
        ),
    ];
    let mut ev = Vec::new();
    ev.extend(pcr.to_le_bytes());
    ev.extend(5u32.to_le_bytes()); // EV_ACTION
    ev.extend(2u32.to_le_bytes());
    ev.extend(0x0004u16.to_le_bytes());
    ev.extend(&digests[0].1);
    ev.extend(0x000Bu16.to_le_bytes());
    ev.extend(&digests[1].1);
    ev.extend(u32::try_from(text.len()).unwrap().to_le_bytes());
    ev.extend(text.as_bytes());
    (ev, digests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_reports_carry_no_log_and_changes_are_still_caught() {
    let swtpm = Swtpm::start().unwrap();
    let log = std::fs::read(testdata(BOOT_LOG)).unwrap();
    swtpm.boot_from_log(&log).unwrap();
    // A policy of the log's components (no pinned PCR values), default for every device.
    let parsed = EventLog::parse(&log).unwrap();
    let mut golden = Policy::record(&parsed, &parsed.replay());
    golden.pcrs = PcrPolicy::default();
    let fleet = Fleet::start_with(
        Settings::default(),
        &TestAgent::swtpm_trust(&swtpm),
        |t, dir| {
            std::fs::create_dir_all(dir.join("policies")).unwrap();
            std::fs::write(dir.join("policies/golden.toml"), golden.to_toml().unwrap()).unwrap();
            assert!(t.contains("revoke_on_untrusted = false\n"));
            t.replace(
                "revoke_on_untrusted = false\n",
                "revoke_on_untrusted = false\ndefault_policy = \"golden\"\n",
            )
        },
    );
    let ca = swtpm.ca_dir();
    let agent = TestAgent::new(&swtpm, &ca.join("issuercert.pem"), &ca.join("signkey.pem"));
    let EnrollResponse::Accepted {
        device_id,
        certificate_pem,
    } = agent.enroll(&fleet).await
    else {
        panic!("enrollment refused:\n{}", fleet.server_log());
    };
    let mut dev = agent
        .connect_device(&fleet, &device_id, &certificate_pem)
        .await
        .unwrap();
    let cmd = format!("devices/{device_id}/cmd/attest");
    let att = format!("devices/{device_id}/attestation");
    let decode = |b: &[u8]| protocol::decode::<AttestChallenge>("challenge", b).unwrap();

    // The first report: nothing held, the whole log.
    dev.publish(
        &format!("devices/{device_id}/boot"),
        protocol::encode(&BootAnnouncement {
            boot_id: "b0071d00-0000-4000-8000-0000000000c1".parse().unwrap(),
        }),
    )
    .await;
    let ch = dev.next_on(&cmd, SECS).await;
    assert_eq!(decode(&ch).eventlog_known, None);
    let whole = protocol::encode(&agent.answer(&ch, &log));
    assert!(whole.len() > log.len() / 4, "{} bytes", whole.len());
    dev.publish(&att, whole).await;
    let v = fleet.wait_verdict(&device_id, 0, SECS);
    assert!(v.trusted, "{:?}", v.reasons);
    let head = fleet.registry().held_head(&device_id).unwrap().unwrap();
    assert_eq!(head.len, log.len() as u64);
    assert!(head.settled.is_some());

    // Steady state: the challenge names the held log, the report carries none of it.
    let cli = fleet.attest_in_background(&device_id);
    let ch = dev.next_on(&cmd, SECS).await;
    let known = decode(&ch).eventlog_known.expect("the held log is offered");
    assert_eq!(known.len, log.len() as u64);
    assert_eq!(known.sha256, HashAlg::Sha256.hash(&log).unwrap());
    let report = agent.answer(&ch, &log);
    assert_eq!(report.eventlog_from, Some(log.len() as u64));
    let steady = protocol::encode(&report);
    eprintln!(
        "whole-log report then steady-state report: {} bytes",
        steady.len()
    );
    assert!(steady.len() < 2048, "{} bytes", steady.len());
    dev.publish(&att, steady).await;
    assert_eq!(
        cli.await.unwrap().status.code(),
        Some(0),
        "{}",
        fleet.server_log()
    );
    let v = fleet.wait_verdict(&device_id, v.id, SECS);
    assert!(v.trusted, "{:?}", v.reasons);

    // An event appended to the log (and extended): only it is sent, appraised with the held log.
    let (event, digests) = action_event(8, "vouch test: appended after boot");
    agent.tpm.lock().unwrap().pcr_extend(8, &digests).unwrap();
    let mut grown = log.clone();
    grown.extend(&event);
    let cli = fleet.attest_in_background(&device_id);
    let ch = dev.next_on(&cmd, SECS).await;
    let report = agent.answer(&ch, &grown);
    assert_eq!(report.eventlog_from, Some(log.len() as u64));
    dev.publish(&att, protocol::encode(&report)).await;
    assert_eq!(
        cli.await.unwrap().status.code(),
        Some(0),
        "{}",
        fleet.server_log()
    );
    let v = fleet.wait_verdict(&device_id, v.id, SECS);
    assert!(v.trusted, "{:?}", v.reasons);
    let head = fleet.registry().held_head(&device_id).unwrap().unwrap();
    assert_eq!(head.len, grown.len() as u64);

    // PCR 7 changed with no event in the log: the steady-state report names it.
    agent.measure_unlogged(7);
    let cli = fleet.attest_in_background(&device_id);
    let ch = dev.next_on(&cmd, SECS).await;
    let report = agent.answer(&ch, &grown);
    assert_eq!(report.eventlog_from, Some(grown.len() as u64));
    dev.publish(&att, protocol::encode(&report)).await;
    assert_eq!(
        cli.await.unwrap().status.code(),
        Some(1),
        "{}",
        fleet.server_log()
    );
    let v = fleet.wait_verdict(&device_id, v.id, SECS);
    assert!(!v.trusted);
    assert!(
        v.reasons.iter().any(|r| r.starts_with("eventlog.pcr7:")),
        "{:?}",
        v.reasons
    );
    // Nothing trusted is kept of that log any more: the next report is appraised in full.
    let head = fleet.registry().held_head(&device_id).unwrap().unwrap();
    assert!(head.settled.is_none());

    // An older agent (whole logs, no `eventlog_from`) is appraised as before; the fleet then
    // holds nothing for it and offers nothing.
    let cli = fleet.attest_in_background(&device_id);
    let ch = dev.next_on(&cmd, SECS).await;
    dev.publish(
        &att,
        protocol::encode(&agent.answer_as_older_agent(&ch, &grown)),
    )
    .await;
    assert_eq!(
        cli.await.unwrap().status.code(),
        Some(1),
        "{}",
        fleet.server_log()
    );
    let v = fleet.wait_verdict(&device_id, v.id, SECS);
    assert!(
        v.reasons.iter().any(|r| r.starts_with("eventlog.pcr7:")),
        "{:?}",
        v.reasons
    );
    assert!(fleet.registry().held_head(&device_id).unwrap().is_none());
    let cli = fleet.attest_in_background(&device_id);
    let ch = dev.next_on(&cmd, SECS).await;
    assert_eq!(decode(&ch).eventlog_known, None);
    dev.publish(&att, protocol::encode(&agent.answer(&ch, &grown)))
        .await;
    assert_eq!(cli.await.unwrap().status.code(), Some(1));
}
