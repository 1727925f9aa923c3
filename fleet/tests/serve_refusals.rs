//! Enrollment refusals against the real broker and server, and the EK chain check on the
//! swtpm's own RSA EK certificate (issued by swtpm_setup's local CA through its intermediate).

mod serve_support;

use serve_support::agent::{unknown_ca, TestAgent};
use serve_support::{mqtt, Fleet, Settings};
use std::time::Duration;
use swtpm_tests::Swtpm;
use vouch_agent::tpm::esapi::EsapiTpm;
use vouch_agent::tpm::Tpm;
use vouch_attest::protocol::{self, EnrollResponse, MAX_MESSAGE_BYTES};
use vouch_fleet::registry::now_ms;
use vouch_fleet::serve::trust::{ChainError, TrustStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ca_missing_certificate_and_oversized_requests_are_refused() {
    let swtpm = Swtpm::start().unwrap();
    let fleet = Fleet::start(Settings::default(), &TestAgent::swtpm_trust(&swtpm));
    let (rogue_cert, rogue_key) = unknown_ca(swtpm.dir());
    let mut agent = TestAgent::new(&swtpm, &rogue_cert, &rogue_key);

    // Only the rogue CA vouches for the P-256 EK.
    agent.ek_certificates.truncate(1);
    let EnrollResponse::Refused { reason } = agent.enroll(&fleet).await else {
        panic!("an EK certified by an unknown CA was accepted");
    };
    assert!(reason.starts_with("ek_chain: "), "{reason}");
    assert!(reason.contains("rogue EK CA"), "{reason}");
    assert!(reason.contains("unknown EK CA"), "{reason}");

    // The swtpm's NV certificates are for its other EKs, not for ek_public.
    let mut t = EsapiTpm::open(&swtpm.tcti().parse().unwrap(), &swtpm.dir().join("s2")).unwrap();
    agent.ek_certificates = t
        .ek_certificates()
        .unwrap()
        .into_iter()
        .map(|c| c.der)
        .collect();
    drop(t);
    assert!(!agent.ek_certificates.is_empty());
    let EnrollResponse::Refused { reason } = agent.enroll(&fleet).await else {
        panic!("an EK without its certificate was accepted");
    };
    assert!(reason.starts_with("ek_certificate_missing: "), "{reason}");

    // Too large to parse.
    let claim = vouch_agent::daemon::tls::claim_config(
        &fleet.ca(),
        &fleet.dir.join("claim.crt"),
        &fleet.dir.join("claim.key"),
    )
    .unwrap();
    let mut c = mqtt::connect(
        fleet.enroll_port,
        claim,
        "vouch-conn-big",
        &["enroll/vouch-conn-big/response".into()],
    )
    .await
    .unwrap();
    c.publish(
        "enroll/vouch-conn-big/request",
        vec![b'{'; MAX_MESSAGE_BYTES + 1],
    )
    .await;
    let answer = c
        .next_on("enroll/vouch-conn-big/response", Duration::from_secs(5))
        .await;
    let EnrollResponse::Refused { reason } = protocol::decode("response", &answer).unwrap() else {
        panic!("oversized request not refused");
    };
    assert!(reason.starts_with("malformed: "), "{reason}");
    assert!(reason.contains("exceeds"), "{reason}");

    // Every refusal is audited; no device was stored.
    let rows = fleet.registry().audit_entries(None).unwrap();
    assert_eq!(
        rows.iter().filter(|r| r.kind == "enroll_refused").count(),
        3,
        "{rows:?}"
    );
    assert!(fleet.registry().devices().unwrap().is_empty());
}

/// Issue 10, attack 3: a claim holder who learnt a request id (the broker's ACL no longer shows
/// it; here the fleet's own identity, which may write anywhere, stands in) can neither cancel
/// the enrollment with a wrong proof nor replace it with a request for other keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_claimant_cannot_cancel_or_replace_a_pending_enrollment() {
    let swtpm = Swtpm::start().unwrap();
    let other_tpm = Swtpm::start().unwrap();
    let fleet = Fleet::start(Settings::default(), &TestAgent::swtpm_trust(&swtpm));
    let ek_ca = swtpm.ca_dir();
    let agent = TestAgent::new(
        &swtpm,
        &ek_ca.join("issuercert.pem"),
        &ek_ca.join("signkey.pem"),
    );
    let other = TestAgent::new(
        &other_tpm,
        &ek_ca.join("issuercert.pem"),
        &ek_ca.join("signkey.pem"),
    );
    let tls = vouch_fleet::serve::mqtt::client_tls(
        &fleet.ca(),
        &fleet.dir.join("fleet.crt"),
        &fleet.dir.join("fleet.key"),
    )
    .unwrap();
    let attacker = mqtt::connect(fleet.enroll_port, tls, "vouch-conn-attacker", &[])
        .await
        .unwrap();
    let (caused, last) = agent
        .enroll_with(&fleet, |rid| {
            let attacker = &attacker;
            let other = &other;
            async move {
                let topic = format!("enroll/{rid}/request");
                let wrong = protocol::EnrollMessage::Proof(protocol::EnrollProof {
                    request_id: rid.clone(),
                    activated_secret: vec![0x55; 32],
                    certify_attest: vec![1],
                    certify_signature: vec![2],
                    csr: vec![3],
                });
                attacker.publish(&topic, protocol::encode(&wrong)).await;
                attacker
                    .publish(&topic, protocol::encode(&other.request(&rid)))
                    .await;
                2
            }
        })
        .await;
    let reasons: Vec<String> = caused
        .into_iter()
        .map(|r| match r {
            EnrollResponse::Refused { reason } => reason,
            other => panic!("an interfering message was not refused: {other:?}"),
        })
        .collect();
    assert!(reasons[0].starts_with("secret_mismatch: "), "{reasons:?}");
    assert!(reasons[1].starts_with("request_id_in_use: "), "{reasons:?}");
    let EnrollResponse::Accepted { device_id, .. } = last else {
        panic!("the genuine enrollment did not survive the interference: {last:?}");
    };
    assert!(fleet.registry().device(&device_id).unwrap().is_some());
}

#[test]
fn swtpm_rsa_ek_certificate_chains_through_the_local_ca_intermediate() {
    let swtpm = Swtpm::start().unwrap();
    let mut t = EsapiTpm::open(&swtpm.tcti().parse().unwrap(), &swtpm.dir().join("s")).unwrap();
    let certs = t.ek_certificates().unwrap();
    let rsa = certs
        .iter()
        .find(|c| c.nv_index == 0x01c0_0002)
        .expect("swtpm_setup writes an RSA EK certificate at 0x01c00002");
    let dir = tempfile::tempdir().unwrap();
    let store = |files: &[std::path::PathBuf]| {
        for f in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        for (i, f) in files.iter().enumerate() {
            std::fs::copy(f, dir.path().join(format!("{i}.pem"))).unwrap();
        }
        TrustStore::load(dir.path()).unwrap()
    };
    let now = now_ms() / 1000;
    let full = store(&TestAgent::swtpm_trust(&swtpm));
    assert_eq!(full.len(), 2);
    let path = full.verify(&rsa.der, now).unwrap();
    assert_eq!(path.len(), 3, "{path:?}");
    assert!(path[2].contains("swtpm-localca-rootca"), "{path:?}");

    // Without the intermediate there is no path to the root.
    let root_only = store(&[swtpm.ca_root_cert()]);
    assert!(matches!(
        root_only.verify(&rsa.der, now),
        Err(ChainError::UnknownIssuer { .. })
    ));
    // The intermediate alone is not a root.
    let inter_only = store(&[swtpm.ca_dir().join("issuercert.pem")]);
    assert!(matches!(
        inter_only.verify(&rsa.der, now),
        Err(ChainError::UnknownIssuer { .. })
    ));
    // Outside the validity period.
    assert!(matches!(
        full.verify(&rsa.der, 0),
        Err(ChainError::Expired { .. })
    ));
    // A tampered certificate does not verify.
    let mut bad = rsa.der.clone();
    let n = bad.len();
    bad[n - 10] ^= 1;
    assert!(matches!(
        full.verify(&bad, now),
        Err(ChainError::BadSignature { .. }) | Err(ChainError::Unparsable)
    ));
}
