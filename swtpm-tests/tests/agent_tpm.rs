//! `vouch-agent` against a real swtpm: identity, PCRs, quotes checked by `tpm2_checkquote`,
//! AK persistence, unix-socket TCTI and the no-TPM error.

use std::path::Path;
use std::process::Command;
use swtpm_tests::{run, Output, Swtpm};

fn ok(out: &Output) {
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
}

fn checkquote(dir: &Path, nonce: &str) -> std::process::Output {
    Command::new("tpm2_checkquote")
        .arg("-u")
        .arg(dir.join("ak.pub.pem"))
        .arg("-m")
        .arg(dir.join("quote.msg"))
        .arg("-s")
        .arg(dir.join("quote.sig"))
        .arg("-f")
        .arg(dir.join("quote.pcrs"))
        .args(["-g", "sha256", "-q", nonce])
        .output()
        .expect("tpm2_checkquote is installed (tpm2-tools)")
}

#[test]
fn tpm_info_reports_identity_and_ek_certificates() {
    let tpm = Swtpm::start().unwrap();
    let state = tpm.dir().join("agent");
    let out = tpm.agent(&state, &["tpm", "info", "--json"]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["manufacturer"], "IBM");
    // swtpm_setup certifies the RSA-2048 EK (and an ECC P-384 one): the RSA EK is the device EK.
    assert_eq!(v["ek_algorithm"], "rsa-2048");
    assert_eq!(v["ek_certified"], true);
    assert_eq!(v["ek_certificate_present"], true);
    let idx: Vec<&str> = v["ek_certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["nv_index"].as_str().unwrap())
        .collect();
    assert_eq!(idx, ["0x01c00002", "0x01c00016"]);

    // Independent check of the device id: tpm2-tools creates the same EK, openssl hashes its SPKI.
    let pem = tpm.dir().join("ek.pem");
    let ctx = tpm.dir().join("ek.ctx");
    let mk = Command::new("tpm2_createek")
        .args(["-G", "rsa", "-f", "pem", "-c"])
        .arg(&ctx)
        .arg("-u")
        .arg(&pem)
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .output()
        .unwrap();
    assert!(
        mk.status.success(),
        "{}",
        String::from_utf8_lossy(&mk.stderr)
    );
    let der = Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(&pem)
        .output()
        .unwrap();
    assert!(der.status.success());
    let digest = Command::new("sha256sum").arg("-").stdin_bytes(&der.stdout);
    assert_eq!(v["device_id"].as_str().unwrap(), digest);

    let text = tpm.agent(&state, &["tpm", "info"]);
    ok(&text);
    assert!(text
        .stdout
        .contains(&format!("device id:         {digest}")));
}

/// Tiny extension to pipe bytes into a command and get the first word of its output.
trait StdinBytes {
    fn stdin_bytes(&mut self, input: &[u8]) -> String;
}

impl StdinBytes for Command {
    fn stdin_bytes(&mut self, input: &[u8]) -> String {
        use std::io::Write;
        let mut child = self
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

#[test]
fn quote_is_accepted_by_tpm2_checkquote_and_wrong_nonce_is_refused() {
    let tpm = Swtpm::start().unwrap();
    let state = tpm.dir().join("agent");
    let q = tpm.dir().join("q");
    let extend = Command::new("tpm2_pcrextend")
        .arg(format!("7:sha256={}", "ab".repeat(32)))
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .output()
        .unwrap();
    assert!(extend.status.success());
    let nonce = "5eed0fc0ffee0123456789abcdef";
    ok(&tpm.agent(
        &state,
        &[
            "quote",
            "--nonce",
            nonce,
            "--pcrs",
            "sha256:0,1,2,3,4,5,6,7",
            "--out",
            q.to_str().unwrap(),
        ],
    ));
    let good = checkquote(&q, nonce);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let bad = checkquote(&q, "5eed0fc0ffee0123456789abcdee");
    assert!(!bad.status.success(), "a different nonce must be refused");
}

#[test]
fn quote_over_two_banks_and_many_pcrs_is_accepted() {
    let tpm = Swtpm::start().unwrap();
    let state = tpm.dir().join("agent");
    let q = tpm.dir().join("q");
    ok(&tpm.agent(
        &state,
        &[
            "quote",
            "--nonce",
            "01",
            "--pcrs",
            "sha256:0-15+sha1:0-9",
            "--out",
            q.to_str().unwrap(),
        ],
    ));
    let good = checkquote(&q, "01");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
}

#[test]
fn attestation_key_persists_across_invocations() {
    let tpm = Swtpm::start().unwrap();
    let state = tpm.dir().join("agent");
    let (a, b) = (tpm.dir().join("a"), tpm.dir().join("b"));
    for d in [&a, &b] {
        ok(&tpm.agent(
            &state,
            &["quote", "--nonce", "aa", "--out", d.to_str().unwrap()],
        ));
    }
    let pa = std::fs::read(a.join("ak.pub.pem")).unwrap();
    let pb = std::fs::read(b.join("ak.pub.pem")).unwrap();
    assert_eq!(pa, pb, "both runs quote with the same AK");
    // A fresh state directory means a new AK.
    let c = tpm.dir().join("c");
    ok(&tpm.agent(
        &tpm.dir().join("other"),
        &["quote", "--nonce", "aa", "--out", c.to_str().unwrap()],
    ));
    assert_ne!(pa, std::fs::read(c.join("ak.pub.pem")).unwrap());
}

#[test]
fn pcr_read_json_matches_tpm2_tools() {
    let tpm = Swtpm::start().unwrap();
    let state = tpm.dir().join("agent");
    let extend = Command::new("tpm2_pcrextend")
        .arg(format!(
            "16:sha256={},sha1={}",
            "01".repeat(32),
            "02".repeat(20)
        ))
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .output()
        .unwrap();
    assert!(extend.status.success());
    let out = tpm.agent(
        &state,
        &["pcr", "read", "--json", "--pcrs", "sha256:16+sha1:16"],
    );
    ok(&out);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let tools = Command::new("tpm2_pcrread")
        .arg("sha256:16")
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .output()
        .unwrap();
    let tools = String::from_utf8_lossy(&tools.stdout).to_lowercase();
    let ours = v["sha256"]["16"].as_str().unwrap();
    assert!(tools.contains(ours), "{tools} vs {ours}");
    assert_eq!(v["sha1"]["16"].as_str().unwrap().len(), 40);
}

#[test]
fn unix_socket_swtpm_works_through_the_relay() {
    let tpm = Swtpm::start_unix().unwrap();
    assert!(tpm.tcti().starts_with("swtpm:path="));
    let state = tpm.dir().join("agent");
    let q = tpm.dir().join("q");
    ok(&tpm.agent(
        &state,
        &["quote", "--nonce", "beef", "--out", q.to_str().unwrap()],
    ));
    let good = checkquote(&q, "beef");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
}

#[test]
fn no_tpm_gives_a_one_line_error_and_exit_code_3() {
    // A port pair nobody listens on: take a free port and release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tcti = format!("swtpm:host=127.0.0.1,port={port}");
    let dir = tempfile::tempdir().unwrap();
    for t in [tcti.as_str(), "device:/dev/vouch-no-such-tpm"] {
        let out = run(
            "vouch-agent",
            &[
                "--tcti",
                t,
                "--state-dir",
                dir.path().to_str().unwrap(),
                "tpm",
                "info",
            ],
            &[],
        );
        assert_eq!(out.code, 3, "{}", out.stderr);
        assert_eq!(
            out.stderr.trim().lines().count(),
            1,
            "one line: {}",
            out.stderr
        );
        assert!(out.stderr.contains(t), "names the TCTI: {}", out.stderr);
        assert!(!out.stderr.contains("panicked") && !out.stderr.contains("backtrace"));
    }
    let out = run("vouch-agent", &["--tcti", "bogus:x", "tpm", "info"], &[]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("unknown TCTI"));
}

fn failed(out: &str, check: &str) -> bool {
    out.lines()
        .any(|l| l.starts_with("FAIL") && l.split_whitespace().nth(1) == Some(&format!("{check}:")))
}

fn fleet_verify(q: &Path, nonce: &str, extra: &[&str]) -> Output {
    let p = |f: &str| q.join(f).to_str().unwrap().to_string();
    let (ak, msg, sig, pcrs) = (
        p("ak.pub.pem"),
        p("quote.msg"),
        p("quote.sig"),
        p("quote.pcrs"),
    );
    let mut args = vec![
        "quote", "verify", "--ak", &ak, "--quote", &msg, "--sig", &sig, "--pcrs", &pcrs, "--nonce",
        nonce,
    ];
    args.extend_from_slice(extra);
    run("vouch-fleet", &args, &[])
}

#[test]
fn fleet_verifies_agent_quotes_from_a_booted_swtpm() {
    let tpm = Swtpm::start().unwrap();
    let log = std::fs::read(
        swtpm_tests::testdata()
            .join("eventlogs/keylime_mb_binary_bios_measurements-secureboot.bin"),
    )
    .unwrap();
    let extended = tpm.boot_from_log(&log).unwrap();
    assert!(extended > 50, "{extended} events extended");
    let state = tpm.dir().join("agent");
    let q = tpm.dir().join("q");
    let nonce = "00112233445566778899aabbccddeeff";
    ok(&tpm.agent(
        &state,
        &[
            "quote",
            "--nonce",
            nonce,
            "--pcrs",
            "sha256:0-9",
            "--out",
            q.to_str().unwrap(),
        ],
    ));
    let good = fleet_verify(&q, nonce, &["--json"]);
    assert_eq!(good.code, 0, "{}{}", good.stdout, good.stderr);
    let v: serde_json::Value = serde_json::from_str(&good.stdout).unwrap();
    assert_eq!(v["verified"], true);

    let bad = fleet_verify(&q, "00112233445566778899aabbccddeefe", &[]);
    assert_eq!(bad.code, 1, "{}{}", bad.stdout, bad.stderr);
    assert!(failed(&bad.stdout, "nonce"), "{}", bad.stdout);

    // PCR values that do not match the quote are named.
    let json = tpm.dir().join("pcrs.json");
    let mut pcrs: serde_json::Value = serde_json::from_str(
        &tpm.agent(&state, &["pcr", "read", "--json", "--pcrs", "sha256:0-9"])
            .stdout,
    )
    .unwrap();
    pcrs["sha256"]["4"] = serde_json::Value::String("11".repeat(32));
    std::fs::write(&json, pcrs.to_string()).unwrap();
    let q2 = tpm.dir().join("q2");
    std::fs::create_dir_all(&q2).unwrap();
    for f in ["ak.pub.pem", "quote.msg", "quote.sig"] {
        std::fs::copy(q.join(f), q2.join(f)).unwrap();
    }
    std::fs::copy(&json, q2.join("quote.pcrs")).unwrap();
    let tampered = fleet_verify(&q2, nonce, &[]);
    assert_eq!(tampered.code, 1);
    assert!(
        failed(&tampered.stdout, "pcr_digest"),
        "{}",
        tampered.stdout
    );
}

#[test]
fn tabrmd_tcti_works_through_tpm2_abrmd() {
    // tpm2-abrmd on a private D-Bus session bus, in front of this test's swtpm.
    let tpm = Swtpm::start().unwrap();
    let state = tpm.dir().join("agent");
    let agent = swtpm_tests::bin_path("vouch-agent");
    let script = format!(
        "tpm2-abrmd --session --allow-root --tcti={tcti} & pid=$!; \
         for i in $(seq 1 50); do \
           {agent} --tcti tabrmd:bus_type=session --state-dir {state} tpm info --json > {out} 2>{err} && break; \
           sleep 0.1; \
         done; rc=$?; kill $pid; wait $pid 2>/dev/null; exit $rc",
        tcti = tpm.tcti(),
        agent = agent.display(),
        state = state.display(),
        out = tpm.dir().join("out.json").display(),
        err = tpm.dir().join("err.txt").display(),
    );
    let out = Command::new("dbus-run-session")
        .args(["--", "sh", "-c", &script])
        .env("TSS2_LOG", "all+none")
        .output()
        .expect("dbus-run-session (package dbus) is installed");
    let err = std::fs::read_to_string(tpm.dir().join("err.txt")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{err}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tpm.dir().join("out.json")).unwrap())
            .unwrap();
    assert_eq!(v["manufacturer"], "IBM");
    assert_eq!(v["ek_certified"], true);
}
