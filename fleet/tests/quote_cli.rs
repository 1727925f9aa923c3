//! `vouch-fleet quote verify` end to end on a real TPM quote (go-attestation's Windows GCP
//! Shielded VM sample): success, named failures, JSON output and input errors.

use base64::Engine;
use std::path::PathBuf;
use std::process::{Command, Output};
use vouch_attest::pcrfile::{write_json, write_tpm_tools};
use vouch_attest::tpm::{Attest, TpmPublic};
use vouch_attest::{HashAlg, PcrBanks};

fn source_json() -> PathBuf {
    testdata::eventlogs_dir().join("goattest_windows_gcp_shielded_vm.bin.source.json")
}

#[path = "../../testsupport/testdata.rs"]
mod testdata;

struct Files {
    dir: tempfile::TempDir,
    pcrs: PcrBanks,
    quote: Vec<u8>,
}

impl Files {
    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
}

/// Writes the sample's AK (TPMT_PUBLIC), quote, signature, creation attestation and PCRs (JSON)
/// to a temporary directory.
fn files() -> Files {
    let text = std::fs::read_to_string(source_json()).expect("GCP sample JSON");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let b64 = |x: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(x.as_str().unwrap())
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ak.pub"), b64(&v["AK"]["Public"])).unwrap();
    let quote = b64(&v["Quote"]["Quote"]);
    std::fs::write(d.join("quote.msg"), &quote).unwrap();
    std::fs::write(d.join("quote.sig"), b64(&v["Quote"]["Signature"])).unwrap();
    std::fs::write(d.join("create.msg"), b64(&v["AK"]["CreateAttestation"])).unwrap();
    let mut pcrs = PcrBanks::new();
    for p in v["Log"]["PCRs"].as_array().unwrap() {
        assert_eq!(
            p["DigestAlg"], 3,
            "sample PCRs are SHA-1 (Go crypto.SHA1 = 3)"
        );
        pcrs.insert(
            HashAlg::Sha1,
            p["Index"].as_u64().unwrap() as u32,
            b64(&p["Digest"]),
        );
    }
    std::fs::write(d.join("pcrs.json"), write_json(&pcrs)).unwrap();
    Files { dir, pcrs, quote }
}

fn fleet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
        .args(args)
        .output()
        .unwrap()
}

fn verify(f: &Files, extra: &[&str], pcrs: &str, nonce: &str) -> Output {
    let (ak, q, s, p) = (f.p("ak.pub"), f.p("quote.msg"), f.p("quote.sig"), f.p(pcrs));
    let mut args = vec![
        "quote", "verify", "--ak", &ak, "--quote", &q, "--sig", &s, "--nonce", nonce, "--pcrs", &p,
    ];
    args.extend_from_slice(extra);
    fleet(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn real_quote_verifies() {
    let f = files();
    let o = verify(&f, &[], "pcrs.json", "");
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("pass  signature"), "{out}");
    assert!(out.contains("pass  pcr_digest"), "{out}");
    assert!(out.contains("OK: quote verified"), "{out}");
}

#[test]
fn other_input_forms_are_detected() {
    let f = files();
    let d = f.dir.path();
    // AK as PEM, quote as TPM2B_ATTEST, PCRs in the tpm2-tools format.
    let (ak, _) = TpmPublic::parse(&std::fs::read(d.join("ak.pub")).unwrap()).unwrap();
    std::fs::write(d.join("ak.pem"), ak.key().unwrap().to_pem().unwrap()).unwrap();
    let attest = Attest::parse(&f.quote).unwrap();
    std::fs::write(d.join("quote.tpm2b"), attest.marshal_tpm2b()).unwrap();
    let sel = &attest.quote().unwrap().pcr_select;
    std::fs::write(d.join("quote.pcrs"), write_tpm_tools(sel, &f.pcrs).unwrap()).unwrap();
    let (ak, q, s, p) = (
        f.p("ak.pem"),
        f.p("quote.tpm2b"),
        f.p("quote.sig"),
        f.p("quote.pcrs"),
    );
    let o = fleet(&[
        "quote", "verify", "--ak", &ak, "--quote", &q, "--sig", &s, "--nonce", "", "--pcrs", &p,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("skip  ak_attributes"));
}

#[test]
fn failures_are_each_named_in_text_and_json() {
    let f = files();
    let mut pcrs = f.pcrs.clone();
    pcrs.insert(HashAlg::Sha1, 4, vec![0x55; 20]);
    std::fs::write(f.dir.path().join("bad.json"), write_json(&pcrs)).unwrap();

    let o = verify(&f, &[], "bad.json", "c0ffee");
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fails.len(), 2, "{out}");
    assert!(
        fails[0]
            .starts_with("FAIL  nonce: extraData (empty) does not equal the expected nonce c0ffee"),
        "{out}"
    );
    assert!(
        fails[1].starts_with("FAIL  pcr_digest: pcrDigest "),
        "{out}"
    );
    assert!(
        out.contains("REJECTED: 2 of 9 checks failed: nonce, pcr_digest"),
        "{out}"
    );

    let o = verify(&f, &["--json"], "bad.json", "c0ffee");
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["verified"], false);
    assert_eq!(j["failed"], serde_json::json!(["nonce", "pcr_digest"]));
    assert_eq!(j["checks"].as_array().unwrap().len(), 9);
    assert!(j["quoted"].is_null());
}

#[test]
fn previous_attestation_enables_the_counter_check() {
    let f = files();
    let prev = f.p("create.msg");
    let o = verify(&f, &["--previous", &prev, "--json"], "pcrs.json", "");
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["verified"], true);
    assert_eq!(j["counters"]["relation"]["relation"], "same_boot");
    assert_eq!(j["counters"]["relation"]["clock_advance_ms"], 44);
}

#[test]
fn malformed_inputs_exit_input_with_one_line_naming_the_file() {
    let f = files();
    let d = f.dir.path();
    std::fs::write(d.join("short.msg"), &f.quote[..30]).unwrap();
    let (ak, short, s, p) = (
        f.p("ak.pub"),
        f.p("short.msg"),
        f.p("quote.sig"),
        f.p("pcrs.json"),
    );
    let o = fleet(&[
        "quote", "verify", "--ak", &ak, "--quote", &short, "--sig", &s, "--nonce", "", "--pcrs", &p,
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--quote") && err.contains("short.msg"),
        "{err}"
    );
    assert!(err.contains("TPMS_"), "{err}");

    let o = verify(&f, &[], "pcrs.json", "xyz");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--nonce"));

    let o = verify(&f, &[], "does-not-exist.json", "");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--pcrs") && stderr(&o).contains("does-not-exist.json"));

    // The signature file given as the AK.
    let (sig, q) = (f.p("quote.sig"), f.p("quote.msg"));
    let o = fleet(&[
        "quote", "verify", "--ak", &sig, "--quote", &q, "--sig", &sig, "--nonce", "", "--pcrs", &p,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--ak"), "{}", stderr(&o));

    std::fs::write(d.join("log.bin"), b"").unwrap();
    let log = f.p("log.bin");
    let o = verify(&f, &["--eventlog", &log], "pcrs.json", "");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--eventlog") && stderr(&o).contains("malformed event log"),
        "{}",
        stderr(&o)
    );
}
