//! End-to-end against the real mosquitto, `vouch-fleet serve` as a process and a swtpm booted
//! from a real firmware event log: enrollment, a trusted verdict, a replayed answer
//! (`nonce_used`), an oversized answer, a late answer (`nonce_expired`, handled at a time past
//! the nonce's lifetime instead of waiting for it), then a PCR extended
//! after boot: untrusted with the PCR named, alert published, certificate revoked, device cut
//! off and unable to reconnect.

mod serve_support;

use serve_support::agent::TestAgent;
use serve_support::{mqtt, testdata, Fleet, Settings, BOOT_LOG};
use std::time::Duration;
use swtpm_tests::Swtpm;
use vouch_attest::protocol::{self, Alert, BootAnnouncement, EnrollResponse, MAX_MESSAGE_BYTES};
use vouch_attest::tpm::TpmPublic;
use vouch_fleet::config::FleetConfig;
use vouch_fleet::registry::{now_ms, DeviceStatus};
use vouch_fleet::serve::verifier::Verifier;
use vouch_fleet::serve::Server;

const SECS: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_attest_refusals_then_untrusted_and_revoked_on_sqlite() {
    enroll_attest_refusals_then_untrusted_and_revoked(false).await;
}

/// The same with the registry in PostgreSQL (a private cluster of this test process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_attest_refusals_then_untrusted_and_revoked_on_postgres() {
    enroll_attest_refusals_then_untrusted_and_revoked(true).await;
}

async fn enroll_attest_refusals_then_untrusted_and_revoked(postgres: bool) {
    let swtpm = Swtpm::start().unwrap();
    let log = std::fs::read(testdata(BOOT_LOG)).unwrap();
    swtpm.boot_from_log(&log).unwrap();
    let fleet = Fleet::start(
        Settings {
            revoke_on_untrusted: true,
            postgres,
            ..Settings::default()
        },
        &TestAgent::swtpm_trust(&swtpm),
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
    let (ek, _) = TpmPublic::parse(&agent.ek_public).unwrap();
    let spki = ek.key().unwrap().to_spki_der().unwrap();
    let expected_id = hex::encode(ring::digest::digest(&ring::digest::SHA256, &spki));
    assert_eq!(device_id, expected_id);
    let stored = fleet.registry().device(&device_id).unwrap().unwrap();
    assert_eq!(stored.status, DeviceStatus::Enrolled);
    assert_eq!(stored.ek_public.as_deref(), Some(&agent.ek_public[..]));

    // Operators listen for alerts with the fleet identity, through the enrollment listener (on
    // the device listener its client id would be the server's own, `vouch-fleet`).
    let ops_tls = vouch_fleet::serve::mqtt::client_tls(
        &fleet.ca(),
        &fleet.dir.join("fleet.crt"),
        &fleet.dir.join("fleet.key"),
    )
    .unwrap();
    let mut ops = mqtt::connect(
        fleet.enroll_port,
        ops_tls,
        "vouch-conn-ops",
        &["fleet/alerts".into()],
    )
    .await
    .unwrap();

    let mut dev = agent
        .connect_device(&fleet, &device_id, &certificate_pem)
        .await
        .unwrap();
    let cmd = format!("devices/{device_id}/cmd/attest");
    let att = format!("devices/{device_id}/attestation");
    let boot = BootAnnouncement {
        boot_id: "b0071d00-0000-4000-8000-000000000001".parse().unwrap(),
    };
    dev.publish(
        &format!("devices/{device_id}/boot"),
        protocol::encode(&boot),
    )
    .await;
    let ch = dev.next_on(&cmd, SECS).await;
    let report = agent.answer(&ch, &log);
    dev.publish(&att, protocol::encode(&report)).await;
    let v = fleet.wait_verdict(&device_id, 0, SECS);
    assert!(v.trusted, "{:?}", v.reasons);
    assert!(v.stored_ms >= v.challenged_ms);
    let shown = fleet.cli(&["device", "show", &device_id]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("status:      trusted"), "{text}");
    assert!(
        text.contains("boot id:     b0071d00-0000-4000-8000-000000000001"),
        "{text}"
    );
    // Times for people are RFC 3339 UTC, not milliseconds since the epoch.
    let enrolled = text
        .lines()
        .find_map(|l| l.strip_prefix("enrolled:    "))
        .unwrap_or_default();
    assert!(is_rfc3339_utc(enrolled), "{text}");
    // Keys for people: algorithm and SPKI fingerprint, not a wall of hex; the device EK's
    // fingerprint is the device id.
    assert!(
        text.contains(&format!("EK:          ECC P-256, SPKI SHA-256 {device_id}")),
        "{text}"
    );
    assert!(
        text.contains("AK:          ECC P-256, SPKI SHA-256 "),
        "{text}"
    );

    // The same answer again: refused, nothing appraised.
    dev.publish(&att, protocol::encode(&report)).await;
    fleet.wait_audit("attestation_refused", "nonce_used", SECS);
    // Larger than the protocol allows: refused before parsing.
    dev.publish(&att, vec![b' '; MAX_MESSAGE_BYTES + 1]).await;
    fleet.wait_audit("attestation_refused", "message_too_large", SECS);

    // On demand through the registry; answered after the nonce lifetime: the fleet's handler is
    // given a time past it (a second server on the same fleet state, so nothing waits).
    let out = fleet.cli(&["attest", &device_id, "--wait", "0"]);
    assert!(out.status.success(), "{out:?}");
    let ch = dev.next_on(&cmd, SECS).await;
    let cfg = FleetConfig::load(&fleet.config).unwrap();
    let lifetime = i64::try_from(cfg.nonce_lifetime.as_millis()).unwrap();
    let late = Server::new(cfg, Verifier::new()).unwrap();
    let answered = late.handle_at(
        &att,
        &protocol::encode(&agent.answer(&ch, &log)),
        now_ms() + lifetime + 1,
    );
    assert!(answered.is_empty(), "{answered:?}");
    fleet.wait_audit("attestation_refused", "nonce_expired", SECS);
    assert_eq!(fleet.registry().verdicts(&device_id, 10).unwrap().len(), 1);

    // Something is measured into PCR7 that the event log does not show.
    agent.measure_unlogged(7);
    let cli = fleet.attest_in_background(&device_id);
    let ch = dev.next_on(&cmd, SECS).await;
    dev.publish(&att, protocol::encode(&agent.answer(&ch, &log)))
        .await;
    let out = cli.await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("untrusted"), "{text}");
    assert!(text.contains("eventlog.pcr7"), "{text}");
    let v = fleet.wait_verdict(&device_id, v.id, SECS);
    assert!(!v.trusted);
    assert!(
        v.reasons.iter().all(|r| r.starts_with("eventlog.pcr7:")),
        "only PCR7 differs: {:?}",
        v.reasons
    );

    let alert: Alert = protocol::decode("alert", &ops.next_on("fleet/alerts", SECS).await).unwrap();
    assert_eq!(alert.device_id, device_id);
    assert_eq!(alert.kind, "untrusted");
    assert!(
        alert.reasons.iter().any(|r| r.contains("PCR7")),
        "{alert:?}"
    );

    // revoke_on_untrusted: revoked, cut off, and refused when it comes back.
    fleet.wait_audit("revoked", "untrusted verdict", SECS);
    assert_eq!(
        fleet.registry().device(&device_id).unwrap().unwrap().status,
        DeviceStatus::Revoked
    );
    assert!(
        dev.wait_error(Duration::from_secs(5)).await.is_some(),
        "the revoked device's connection was not cut off"
    );
    let again = agent
        .connect_device(&fleet, &device_id, &certificate_pem)
        .await;
    assert!(again.is_err(), "a revoked device could connect again");

    let audit = fleet.cli(&["audit"]);
    assert!(audit.status.success(), "{audit:?}");
    let text = String::from_utf8_lossy(&audit.stdout);
    for line in text.lines() {
        let at = line.split_whitespace().nth(1).unwrap_or_default();
        assert!(is_rfc3339_utc(at), "{line}");
    }
    for kind in ["enrolled", "verdict", "attestation_refused", "revoked"] {
        assert!(text.contains(kind), "{kind} missing from:\n{text}");
    }
    // Everything above went through the configured backend: no SQLite file beside PostgreSQL.
    let sqlite_file = fleet.dir.join("state").join(vouch_fleet::registry::DB_FILE);
    assert_eq!(sqlite_file.exists(), !postgres, "{}", sqlite_file.display());
    assert!(fleet.registry().verify_audit().unwrap().problem.is_none());
    if postgres {
        // A backup refuses a PostgreSQL registry and names the tool that backs it up.
        let out = fleet.cli(&["backup", "--out", "/nonexistent/b.vbk"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(err.contains("pg_dump"), "{err}");
        // The URL's password is in no log line and no output.
        let log = fleet.server_log();
        assert!(
            log.contains("registry: postgresql://vouch:REDACTED@"),
            "{log}"
        );
        for shown in [log, text.into_owned(), err.into_owned()] {
            assert!(!shown.contains(serve_support::PG_PASSWORD), "{shown}");
        }
    } else {
        assert!(fleet.server_log().contains("registry.db (Sqlite)"));
    }
}

/// `2026-12-07T10:11:12.345Z`.
fn is_rfc3339_utc(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 24
        && t.ends_with('Z')
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}
