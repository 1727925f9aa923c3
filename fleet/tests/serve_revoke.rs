//! Hostile devices against the real broker and server (issue 10). Revocation: `vouch-fleet
//! revoke` from the command line cuts the device's live session within seconds (the server has
//! the broker's dynamic-security plugin close it), and every handler refuses a device that is
//! not active, whatever it sends while still connected. Poison messages: a message far over the
//! protocol limit, on a broker without a size limit, is refused once and the fleet goes on.

mod serve_support;

use serve_support::agent::TestAgent;
use serve_support::{mqtt, Fleet, Settings};
use std::time::Duration;
use swtpm_tests::Swtpm;
use vouch_attest::protocol::{self, BootAnnouncement, EnrollResponse};
use vouch_fleet::registry::{now_ms, DeviceStatus};

const SECS: Duration = Duration::from_secs(10);

/// Enrolls the swtpm's device and connects it with its new certificate.
async fn enrolled_and_connected(swtpm: &Swtpm, fleet: &Fleet) -> (String, mqtt::Client) {
    let ca = swtpm.ca_dir();
    let agent = TestAgent::new(swtpm, &ca.join("issuercert.pem"), &ca.join("signkey.pem"));
    let EnrollResponse::Accepted {
        device_id,
        certificate_pem,
    } = agent.enroll(fleet).await
    else {
        panic!("enrollment refused:\n{}", fleet.server_log());
    };
    let dev = agent
        .connect_device(fleet, &device_id, &certificate_pem)
        .await
        .unwrap();
    (device_id, dev)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_devices_are_refused_and_the_cli_revocation_cuts_the_session() {
    let swtpm = Swtpm::start().unwrap();
    let fleet = Fleet::start(Settings::default(), &TestAgent::swtpm_trust(&swtpm));
    let (device_id, mut dev) = enrolled_and_connected(&swtpm, &fleet).await;
    let boot_topic = format!("devices/{device_id}/boot");
    let boot = |id: &str| {
        protocol::encode(&BootAnnouncement {
            boot_id: id.parse().unwrap(),
        })
    };
    // Active: a boot announcement is answered with a challenge.
    dev.publish(&boot_topic, boot("b0071d00-0000-4000-8000-000000000001"))
        .await;
    let _ = dev
        .next_on(&format!("devices/{device_id}/cmd/attest"), SECS)
        .await;

    // Marked revoked in the registry while its connection stays up (as between a revocation
    // and the broker closing the connection): its messages reach no handler.
    fleet
        .registry()
        .set_status(&device_id, DeviceStatus::Revoked, now_ms())
        .unwrap();
    dev.publish(&boot_topic, boot("b0071d00-0000-4000-8000-000000000002"))
        .await;
    fleet.wait_log(
        &format!("message on {boot_topic} refused: device {device_id} is revoked"),
        SECS,
    );
    let refused = fleet.wait_audit("message_refused", "is revoked", SECS);
    assert_eq!(refused.device_id.as_deref(), Some(device_id.as_str()));
    fleet
        .registry()
        .set_status(&device_id, DeviceStatus::Trusted, now_ms())
        .unwrap();

    // The command line revokes: the live session is closed within seconds.
    let t = std::time::Instant::now();
    let out = fleet.cli(&["revoke", &device_id]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        dev.wait_error(SECS).await.is_some(),
        "the CLI revocation left the session open:\n{}",
        fleet.server_log()
    );
    let cut = t.elapsed();
    assert!(cut < Duration::from_secs(5), "cut after {cut:?}");
    fleet.wait_audit("disconnected", "close the device's connection", SECS);
    eprintln!(
        "session closed {} ms after `vouch-fleet revoke`",
        cut.as_millis()
    );
}

/// Issue 10, attack 1, without the broker's help: the fleet used to refuse packets over 2 MiB by
/// dropping its connection, and its persistent session got the message again on every
/// reconnect. Now it reads it, refuses it once (audited) and keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_once_and_the_fleet_goes_on() {
    let swtpm = Swtpm::start().unwrap();
    let fleet = Fleet::start(
        Settings {
            no_broker_size_limit: true,
            ..Settings::default()
        },
        &TestAgent::swtpm_trust(&swtpm),
    );
    let (device_id, mut dev) = enrolled_and_connected(&swtpm, &fleet).await;
    // 3 MiB of a well-formed-looking report.
    let mut poison = b"{\"nonce\":\"".to_vec();
    poison.resize(3 << 20, b'A');
    dev.publish(&format!("devices/{device_id}/attestation"), poison)
        .await;
    fleet.wait_audit("attestation_refused", "exceeds", SECS);
    // The fleet still serves the device: a boot announcement gets its challenge.
    dev.publish(
        &format!("devices/{device_id}/boot"),
        protocol::encode(&BootAnnouncement {
            boot_id: "b0071d00-0000-4000-8000-000000000003".parse().unwrap(),
        }),
    )
    .await;
    let _ = dev
        .next_on(&format!("devices/{device_id}/cmd/attest"), SECS)
        .await;
    let log = fleet.server_log();
    assert!(
        !log.contains("broker connection"),
        "the fleet lost its broker connection over the message:\n{log}"
    );
    let refused = fleet
        .registry()
        .audit_entries(None)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "attestation_refused")
        .count();
    assert_eq!(refused, 1, "the message was delivered more than once");
}
