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
    let mut c = mqtt::connect(fleet.port, claim, "big", &["enroll/big/response".into()])
        .await
        .unwrap();
    c.publish("enroll/big/request", vec![b'{'; MAX_MESSAGE_BYTES + 1])
        .await;
    let answer = c
        .next_on("enroll/big/response", Duration::from_secs(5))
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
