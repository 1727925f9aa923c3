//! `vouch-fleet quote verify --eventlog [--policy]` on the real GCP Shielded VM quote and its
//! event log: the log matches the quoted PCRs, a tampered log fails naming the PCR, and a policy
//! is evaluated on the quoted values.

use base64::Engine;
use std::path::PathBuf;
use std::process::{Command, Output};
use vouch_attest::eventlog::EventLog;

fn shared(name: &str) -> PathBuf {
    testdata::eventlogs_dir().join(name)
}

#[path = "../../testsupport/testdata.rs"]
mod testdata;

const LOG: &str = "goattest_windows_gcp_shielded_vm.bin";

struct Sample {
    dir: tempfile::TempDir,
    nonce: String,
}

impl Sample {
    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    fn verify(&self, log: &str, extra: &[&str]) -> Output {
        let (ak, q, s, p) = (
            self.p("ak.pub"),
            self.p("quote.msg"),
            self.p("quote.sig"),
            self.p("pcrs.json"),
        );
        let mut args = vec![
            "quote",
            "verify",
            "--ak",
            &ak,
            "--quote",
            &q,
            "--sig",
            &s,
            "--nonce",
            &self.nonce,
            "--pcrs",
            &p,
            "--eventlog",
            log,
        ];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
            .args(&args)
            .output()
            .unwrap()
    }
}

/// Writes the sample's AK, quote, signature and quoted PCRs (JSON) to a temporary directory.
fn sample() -> Sample {
    let path = shared(&format!("{LOG}.source.json"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let b64 = |x: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(x.as_str().unwrap())
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ak.pub"), b64(&v["AK"]["Public"])).unwrap();
    std::fs::write(d.join("quote.msg"), b64(&v["Quote"]["Quote"])).unwrap();
    std::fs::write(d.join("quote.sig"), b64(&v["Quote"]["Signature"])).unwrap();
    let mut sha1 = serde_json::Map::new();
    for p in v["Log"]["PCRs"].as_array().unwrap() {
        assert_eq!(p["DigestAlg"], 3, "SHA-1 PCRs");
        sha1.insert(
            p["Index"].to_string(),
            serde_json::Value::String(hex::encode(b64(&p["Digest"]))),
        );
    }
    let pcrs = serde_json::json!({ "sha1": sha1 });
    std::fs::write(d.join("pcrs.json"), pcrs.to_string()).unwrap();
    Sample {
        nonce: hex::encode(b64(&v["Quote"]["Nonce"])),
        dir,
    }
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn real_quote_matches_its_log() {
    let s = sample();
    let log = shared(LOG).to_string_lossy().into_owned();
    let o = s.verify(&log, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.contains("pass  eventlog sha1: 24 quoted PCRs match the log's replay\n"),
        "{text}"
    );
    assert!(text.contains("OK: quote verified (10 checks)"), "{text}");

    let o = s.verify(&log, &["--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["eventlog"]["passed"], true);
    assert_eq!(v["eventlog"]["banks"][0]["bank"], "sha1");
    assert_eq!(v["eventlog"]["banks"][0]["matched"], true);
    assert_eq!(
        v["eventlog"]["banks"][0]["workaround"],
        serde_json::Value::Null
    );
}

#[test]
fn tampered_log_fails_naming_the_pcr() {
    let s = sample();
    let bytes = std::fs::read(shared(LOG)).unwrap();
    let log = EventLog::parse(&bytes).unwrap();
    // The first event extended into PCR 7: TCG 1.2 layout, the SHA-1 digest follows the PCR
    // index and event type.
    let ev = log
        .events
        .iter()
        .find(|e| e.pcr == 7 && e.is_extended())
        .unwrap();
    let mut tampered = bytes.clone();
    tampered[ev.offset + 8] ^= 0x80;
    let path = s.dir.path().join("tampered.bin");
    std::fs::write(&path, &tampered).unwrap();
    let o = s.verify(&path.to_string_lossy(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let text = out(&o);
    assert!(text.contains("pass  signature"), "{text}");
    assert!(
        text.contains("FAIL  eventlog sha1 PCR7: replayed "),
        "{text}"
    );
    assert_eq!(text.matches("FAIL  eventlog").count(), 1, "{text}");
    assert!(
        text.contains("REJECTED: 1 of 10 checks failed: eventlog"),
        "{text}"
    );

    let o = s.verify(&path.to_string_lossy(), &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = &v["eventlog"]["banks"][0]["mismatches"][0];
    assert_eq!(m["pcr"], 7, "{v}");
    assert_ne!(m["replayed"], m["quoted"]);
}

#[test]
fn policy_is_evaluated_on_the_quoted_values() {
    let s = sample();
    let log = shared(LOG).to_string_lossy().into_owned();
    let policy = s.p("gcp.toml");
    let rec = Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
        .args(["policy", "record", "--eventlog", &log, "--out", &policy])
        .output()
        .unwrap();
    assert_eq!(rec.status.code(), Some(0), "{}", out(&rec));
    let o = s.verify(&log, &["--policy", &policy]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("pass  policy: trusted"), "{}", out(&o));

    // A policy needing a firmware version above this TPM's, and a sha256 PCR the quote lacks.
    let strict = s.p("strict.toml");
    std::fs::write(
        &strict,
        format!(
            "version = 1\n[firmware]\nmin_tpm_version = \"0xffffffffffffffff\"\n\
             [pcrs.sha256]\n7 = \"{}\"\n",
            "00".repeat(32)
        ),
    )
    .unwrap();
    let o = s.verify(&log, &["--policy", &strict, "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["failed"], serde_json::json!(["policy"]));
    let f = v["policy"]["failures"].as_array().unwrap();
    assert_eq!(f[0]["rule"], "tpm_firmware_version");
    assert!(
        f[0]["detail"]
            .as_str()
            .unwrap()
            .contains("below the minimum"),
        "{v}"
    );
    assert_eq!(f[1]["rule"], "pcr_value");
    assert_eq!(f[1]["pcr"], 7);

    // --policy without --eventlog is a usage error.
    let o = Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
        .args([
            "quote",
            "verify",
            "--ak",
            &s.p("ak.pub"),
            "--quote",
            &s.p("quote.msg"),
            "--sig",
            &s.p("quote.sig"),
            "--nonce",
            &s.nonce,
            "--pcrs",
            &s.p("pcrs.json"),
            "--policy",
            &policy,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
}
