//! The harness itself: parallel swtpms do not interfere, certificates are there, drop cleans up.

use std::process::Command;
use swtpm_tests::Swtpm;

fn tpm2(tpm: &Swtpm, args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .env("TSS2_LOG", "all+none")
        .output()
        .expect("tpm2-tools installed")
}

#[test]
fn parallel_swtpms_are_independent() {
    let a = Swtpm::start().unwrap();
    let b = Swtpm::start().unwrap();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    let out = tpm2(
        &a,
        &["tpm2_pcrextend", &format!("16:sha256={}", "11".repeat(32))],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read =
        |t: &Swtpm| String::from_utf8(tpm2(t, &["tpm2_pcrread", "sha256:16"]).stdout).unwrap();
    let (ra, rb) = (read(&a), read(&b));
    assert!(rb.contains("0x0000000000000000000000000000000000000000000000000000000000000000"));
    assert!(!ra.contains("0x0000000000000000000000000000000000000000000000000000000000000000"));
}

#[test]
fn ek_certificates_verify_against_the_local_ca() {
    let tpm = Swtpm::start().unwrap();
    let der = tpm.dir().join("ek-rsa.der");
    let out = tpm2(
        &tpm,
        &["tpm2_nvread", "0x01c00002", "-o", der.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ca = tpm.ca_dir();
    // openssl verify wants PEM: convert first.
    let pem = tpm.dir().join("ek-rsa.pem");
    let conv = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(&der)
        .arg("-out")
        .arg(&pem)
        .output()
        .unwrap();
    assert!(
        conv.status.success(),
        "{}",
        String::from_utf8_lossy(&conv.stderr)
    );
    let chain = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(tpm.ca_root_cert())
        .arg("-untrusted")
        .arg(ca.join("issuercert.pem"))
        .arg(&pem)
        .output()
        .unwrap();
    assert!(
        chain.status.success(),
        "{}{}",
        String::from_utf8_lossy(&chain.stdout),
        String::from_utf8_lossy(&chain.stderr)
    );
}

#[test]
fn drop_kills_swtpm_and_removes_state() {
    let tpm = Swtpm::start().unwrap();
    let dir = tpm.dir().to_path_buf();
    let port = tpm.port();
    drop(tpm);
    assert!(!dir.exists());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn restart_keeps_state_and_resets_pcrs() {
    let mut tpm = Swtpm::start().unwrap();
    let out = tpm2(
        &tpm,
        &["tpm2_pcrextend", &format!("16:sha256={}", "22".repeat(32))],
    );
    assert!(out.status.success());
    tpm.restart().unwrap();
    let pcr = String::from_utf8(tpm2(&tpm, &["tpm2_pcrread", "sha256:16"]).stdout).unwrap();
    assert!(pcr.contains("0x0000000000000000000000000000000000000000000000000000000000000000"));
    let out = tpm2(&tpm, &["tpm2_nvread", "0x01c00002", "-s", "4"]);
    assert!(out.status.success(), "NV survives a restart");
}
