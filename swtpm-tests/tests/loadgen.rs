//! The load generator's simulated devices are what the fleet expects: booted from a real
//! firmware log, their quotes and that log are appraised `trusted` by the fleet's verifier, their
//! certificates carry the device id the fleet derives from the EK, and their registry rows hold
//! their keys. Logs a software TPM cannot reproduce are refused.

use std::process::Command;
use swtpm_tests::load::provision::{self, BootImage, ProvisionError};
use swtpm_tests::testdata;
use vouch_agent::tpm::{PcrSelection, Tpm};
use vouch_attest::protocol::AttestationReport;
use vouch_attest::tpm::TpmPublic;
use vouch_fleet::pki::setup::{init_fleet, InitOptions};
use vouch_fleet::registry::{DeviceStatus, Registry};
use vouch_fleet::serve::policies::Resolved;
use vouch_fleet::serve::verifier::{AppraisalInput, Verifier};

/// The PCRs the fleet challenges for by default (`challenge.pcrs`).
const CHALLENGE_PCRS: &str = "sha256:0-9";

fn testdata_file(rel: &str) -> std::path::PathBuf {
    std::env::var_os("VOUCH_TESTDATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(testdata)
        .join(rel)
}

#[test]
fn simulated_devices_are_trusted_certified_and_registered() {
    let log = std::fs::read(testdata_file("eventlogs/t2t_event-arch-linux.bin")).unwrap();
    let image = BootImage::from_log(&log).unwrap();
    assert_eq!(image.extend_count(), 24);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fleet");
    init_fleet(&InitOptions {
        dir: dir.clone(),
        broker_port: 18883,
        enroll_port: 18884,
        dynsec_plugin: None,
        server_names: vec![],
        force: false,
    })
    .unwrap();
    let mut seen = 0;
    let devices = provision::make_devices(&dir, &image, 3, |n| seen = n).unwrap();
    assert_eq!(seen, 3);
    assert_ne!(devices[0].id, devices[1].id);

    let verifier = Verifier::new();
    let selection: vouch_attest::tpm::PcrSelection = CHALLENGE_PCRS.parse().unwrap();
    for d in &devices {
        let mut tpm = d.tpm.lock().unwrap();
        let (ak, _) = TpmPublic::parse(&tpm.attestation_key().unwrap().public).unwrap();
        let mut previous = None;
        for round in 0..2u8 {
            let nonce = vec![round; 32];
            let sel: PcrSelection = CHALLENGE_PCRS.parse().unwrap();
            let q = tpm.quote(&nonce, &sel).unwrap();
            let report = AttestationReport {
                nonce: nonce.clone(),
                quote: q.attest,
                signature: q.signature,
                pcrs: q.pcrs.to_json(),
                eventlog_gz: Some(image.eventlog_gz.to_vec()),
                eventlog_from: None,
                ima: None,
            };
            let a = verifier.appraise(&AppraisalInput {
                ak: &ak,
                nonce: &nonce,
                selection: &selection,
                report: &report,
                previous: previous.as_deref(),
                policy: Resolved::None,
                policy_id: None,
                held: None,
            });
            assert!(a.trusted(), "{}: {:?}", d.id, a.reasons);
            previous = a.verified_attest;
        }
        // A PCR the log does not explain makes it untrusted, naming the PCR.
        if d.id == devices[0].id {
            tpm.pcr_extend(7, &[(vouch_attest::HashAlg::Sha256, vec![0x5a; 32])])
                .unwrap();
            let nonce = vec![9u8; 32];
            let q = tpm.quote(&nonce, &CHALLENGE_PCRS.parse().unwrap()).unwrap();
            let report = AttestationReport {
                nonce: nonce.clone(),
                quote: q.attest,
                signature: q.signature,
                pcrs: q.pcrs.to_json(),
                eventlog_gz: Some(image.eventlog_gz.to_vec()),
                eventlog_from: None,
                ima: None,
            };
            let a = verifier.appraise(&AppraisalInput {
                ak: &ak,
                nonce: &nonce,
                selection: &selection,
                report: &report,
                previous: previous.as_deref(),
                policy: Resolved::None,
                policy_id: None,
                held: None,
            });
            let reasons: Vec<String> = a.reasons.iter().map(ToString::to_string).collect();
            assert!(reasons.iter().any(|r| r.contains("pcr7")), "{reasons:?}");
        }
        // The certificate names the device id (CN) and chains to the fleet CA.
        let pem = tmp.path().join(format!("{}.pem", d.id));
        std::fs::write(&pem, &d.cert_pem).unwrap();
        let subject = Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in"])
            .arg(&pem)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&subject.stdout).contains(&d.id));
        let verify = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(dir.join("ca.crt"))
            .arg(&pem)
            .output()
            .unwrap();
        assert!(verify.status.success(), "{verify:?}");
    }

    provision::register(&dir.join("state"), devices.iter()).unwrap();
    let reg = Registry::open(&dir.join("state")).unwrap();
    for d in &devices {
        let row = reg.device(&d.id).unwrap().unwrap();
        assert_eq!(row.status, DeviceStatus::Enrolled);
        let mut tpm = d.tpm.lock().unwrap();
        assert_eq!(
            row.ak_public.as_deref(),
            Some(tpm.attestation_key().unwrap().public.as_slice())
        );
        assert_eq!(
            row.tls_public.as_deref(),
            Some(tpm.tls_key().unwrap().public.as_slice())
        );
    }
}

#[test]
fn logs_a_software_tpm_cannot_reproduce_are_refused() {
    // Only a StartupLocality event: PCR0 would start at locality 3.
    let short =
        std::fs::read(testdata_file("eventlogs/edge/goattest_short_no_action.bin")).unwrap();
    assert!(matches!(
        BootImage::from_log(&short),
        Err(ProvisionError::Locality(3))
    ));
    let garbage = std::fs::read(testdata_file(
        "eventlogs/edge/keylime_mb_binary_bios_measurements-bogus.bin",
    ))
    .unwrap();
    assert!(matches!(
        BootImage::from_log(&garbage),
        Err(ProvisionError::EventLog(_))
    ));
}
