//! `vouch-fleet quote verify` (the CLI) and the server's appraisal (`Verifier::appraise`) give
//! the same verdict and name the same failed checks for every real log in the shared test data.
//!
//! For each log, a software AK quotes the PCR values the log replays to, in the log's preferred
//! bank; each quote is appraised by both paths under a policy recorded from the log (trusted
//! unless the log itself breaks a rule) and under a policy pinning a PCR to zeros (untrusted).
//! A second quote also covers a bank the log has no digests for, listed first: the log cannot
//! explain it (untrusted on both paths), and the policy's bank is that first bank on both.

use flate2::write::GzEncoder;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::SigningKey;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use vouch_attest::appraisal::policy_identity;
use vouch_attest::eventlog::EventLog;
use vouch_attest::policy::{preferred_bank, PcrPolicy, Policy};
use vouch_attest::protocol::AttestationReport;
use vouch_attest::tpm::attest::{ClockInfo, QuoteInfo, TPM_GENERATED_VALUE};
use vouch_attest::tpm::{
    Attest, AttestBody, ObjectAttributes, PcrSelect, PcrSelection, Signature, TpmPublic,
};
use vouch_attest::{HashAlg, PcrBanks};
use vouch_fleet::registry::HeldLog;
use vouch_fleet::serve::policies::Resolved;
use vouch_fleet::serve::verifier::{AppraisalInput, Held, Verifier};

#[path = "../../testsupport/testdata.rs"]
mod testdata;

const NONCE: [u8; 20] = [0x5a; 20];

/// A signed quote over `selection` holding `values`.
struct Quote {
    ak: TpmPublic,
    attest: Vec<u8>,
    signature: Vec<u8>,
    pcrs: PcrBanks,
    selection: Vec<(HashAlg, Vec<u32>)>,
}

fn quote(selection: &[(HashAlg, Vec<u32>)], values: &PcrBanks) -> Quote {
    let sk = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let point = sk.verifying_key().to_encoded_point(false);
    let ak = TpmPublic::ecc_p256_signing(
        ObjectAttributes::AK_TEMPLATE,
        point.x().unwrap(),
        point.y().unwrap(),
    );
    let sel = PcrSelection {
        banks: selection
            .iter()
            .map(|(b, p)| PcrSelect::new(*b, p).unwrap())
            .collect(),
    };
    let parts: Vec<&[u8]> = sel.iter().map(|(b, p)| values.get(b, p).unwrap()).collect();
    let attest = Attest {
        magic: TPM_GENERATED_VALUE,
        qualified_signer: ak.name().unwrap(),
        extra_data: NONCE.to_vec(),
        clock_info: ClockInfo {
            clock: 1_000,
            reset_count: 1,
            restart_count: 0,
            safe: true,
        },
        firmware_version: 0x0002_0001_0000_0000,
        body: AttestBody::Quote(QuoteInfo {
            pcr_select: sel,
            pcr_digest: HashAlg::Sha256.hash_parts(&parts).unwrap(),
        }),
    }
    .marshal();
    let sig: p256::ecdsa::Signature = sk.sign(&attest);
    let (r, s) = sig.split_bytes();
    let signature = Signature::Ecdsa {
        hash: HashAlg::Sha256,
        r: r.to_vec(),
        s: s.to_vec(),
    }
    .marshal();
    Quote {
        ak,
        attest,
        signature,
        pcrs: values.clone(),
        selection: selection.to_vec(),
    }
}

/// What a path decided: trusted, the failed checks in the CLI's names (quote checks by name,
/// then `selection`, `eventlog`, `policy`), the failed policy rules, the mismatching PCRs.
#[derive(Debug, PartialEq, Eq)]
struct Decision {
    trusted: bool,
    failed: Vec<String>,
    rules: Vec<String>,
    pcrs: Vec<u64>,
}

fn cli(dir: &Path, q: &Quote, log: &Path, policy: &Path) -> Decision {
    std::fs::write(dir.join("ak.pub"), q.ak.marshal_tpm2b()).unwrap();
    std::fs::write(dir.join("quote.msg"), &q.attest).unwrap();
    std::fs::write(dir.join("quote.sig"), &q.signature).unwrap();
    std::fs::write(dir.join("pcrs.json"), q.pcrs.to_json().to_string()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
        .args(["quote", "verify", "--json", "--nonce", &hex::encode(NONCE)])
        .arg("--ak")
        .arg(dir.join("ak.pub"))
        .arg("--quote")
        .arg(dir.join("quote.msg"))
        .arg("--sig")
        .arg(dir.join("quote.sig"))
        .arg("--pcrs")
        .arg(dir.join("pcrs.json"))
        .arg("--eventlog")
        .arg(log)
        .arg("--policy")
        .arg(policy)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\n{}{}",
            log.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let trusted = v["verified"].as_bool().unwrap();
    assert_eq!(o.status.code(), Some(if trusted { 0 } else { 1 }), "{v}");
    let strings = |x: &serde_json::Value| -> Vec<String> {
        x.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let mut rules: Vec<String> = v["policy"]["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect();
    rules.sort();
    let mut pcrs: Vec<u64> = v["eventlog"]["banks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| b["mismatches"].as_array().cloned().unwrap_or_default())
        .map(|m| m["pcr"].as_u64().unwrap())
        .collect();
    pcrs.sort();
    let mut failed = strings(&v["failed"]);
    failed.sort();
    Decision {
        trusted,
        failed,
        rules,
        pcrs,
    }
}

fn server(q: &Quote, gz: &[u8], name: &str, policy: &Policy) -> Decision {
    let policy_id = policy_identity(name, policy);
    let appraise = |report: &AttestationReport, held: Option<&HeldLog>| {
        Verifier::new().appraise(&AppraisalInput {
            ak: &q.ak,
            nonce: &NONCE,
            selection: &PcrSelection::from_bank_pcrs(q.selection.clone()).unwrap(),
            report,
            previous: None,
            policy: Resolved::Policy(name, policy),
            policy_id: Some(&policy_id),
            held,
        })
    };
    let mut report = AttestationReport {
        nonce: NONCE.to_vec(),
        quote: q.attest.clone(),
        signature: q.signature.clone(),
        pcrs: q.pcrs.to_json(),
        eventlog_gz: Some(gz.to_vec()),
        eventlog_from: Some(0),
        ima: None,
    };
    let a = appraise(&report, None);
    let whole = decision(&a);
    // Steady state: the same quote again with none of the log (the fleet holds it), appraised
    // against what the first appraisal kept when it was trusted, else in full: the same
    // decision either way.
    let Held::Replace(log, settled) = &a.held else {
        panic!(
            "a whole log from an agent that sends parts is held: {:?}",
            a.held
        );
    };
    assert_eq!(settled.is_some(), a.trusted());
    let held = HeldLog {
        log: log.clone(),
        settled: settled.clone(),
    };
    let mut empty = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    empty.write_all(b"").unwrap();
    report.eventlog_gz = Some(empty.finish().unwrap());
    report.eventlog_from = Some(log.len() as u64);
    let steady = appraise(&report, Some(&held));
    let expected_held = if a.trusted() {
        Held::Unchanged { trusted: true }
    } else {
        Held::Replace(log.clone(), None)
    };
    assert_eq!(steady.held, expected_held);
    assert_eq!(
        decision(&steady),
        whole,
        "steady state and full appraisal differ"
    );
    whole
}

fn decision(a: &vouch_fleet::serve::verifier::Appraisal) -> Decision {
    let mut failed = Vec::new();
    let (mut rules, mut pcrs) = (Vec::new(), Vec::new());
    for r in &a.reasons {
        let (area, rest) = r.check.split_once('.').unwrap();
        let name = match (area, rest) {
            ("quote", "selection") => "selection".to_string(),
            ("quote", check) => check.to_string(),
            ("policy", rule) => {
                if rule != "evidence" && rule != "unusable" {
                    rules.push(rule.to_string());
                }
                "policy".into()
            }
            ("eventlog", what) => {
                if let Some(p) = what.strip_prefix("pcr") {
                    pcrs.push(p.parse().unwrap());
                }
                "eventlog".into()
            }
            other => panic!("unexpected reason {other:?}"),
        };
        if !failed.contains(&name) {
            failed.push(name);
        }
    }
    failed.sort();
    rules.sort();
    pcrs.sort();
    Decision {
        trusted: a.trusted(),
        failed,
        rules,
        pcrs,
    }
}

#[test]
fn cli_and_server_agree_on_every_real_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut logs: Vec<_> = std::fs::read_dir(testdata::eventlogs_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    logs.sort();
    assert_eq!(logs.len(), 30, "the shared test data has 30 real logs");
    let (mut compared, mut trusted, mut untrusted) = (0, 0, 0);
    for path in &logs {
        let bytes = std::fs::read(path).unwrap();
        let log = EventLog::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let Some(bank) = preferred_bank(&log) else {
            continue;
        };
        let replay = log.replay();
        let pcrs: Vec<u32> = replay
            .bank(bank)
            .map(|b| b.keys().copied().filter(|p| *p <= 23).collect())
            .unwrap_or_default();
        if pcrs.is_empty() {
            continue;
        }
        let mut values = PcrBanks::new();
        for p in &pcrs {
            values.insert(bank, *p, replay.get(bank, *p).unwrap().to_vec());
        }
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        let gz = gz.finish().unwrap();

        let mut recorded = Policy::record(&log, &replay);
        recorded.pcrs = PcrPolicy::from_banks(&values);
        let failing = Policy::from_toml(&format!(
            "version = 1\n[pcrs.{bank}]\n{} = \"{}\"\n",
            pcrs[0],
            "00".repeat(bank.digest_len().unwrap())
        ))
        .unwrap();
        let policies = [("recorded", recorded), ("failing", failing)];

        // The bank the log lacks, listed first.
        let absent = [HashAlg::Sha384, HashAlg::Sha512, HashAlg::Sha1]
            .into_iter()
            .find(|b| !log.has_bank(*b))
            .unwrap();
        let mut with_absent = values.clone();
        for p in &pcrs {
            with_absent.insert(absent, *p, vec![0xa5; absent.digest_len().unwrap()]);
        }
        let quotes = [
            quote(&[(bank, pcrs.clone())], &values),
            quote(
                &[(absent, pcrs.clone()), (bank, pcrs.clone())],
                &with_absent,
            ),
        ];
        for (qi, q) in quotes.iter().enumerate() {
            for (name, policy) in &policies {
                let file = dir.path().join(format!("{name}.toml"));
                std::fs::write(&file, policy.to_toml().unwrap()).unwrap();
                let by_cli = cli(dir.path(), q, path, &file);
                let by_server = server(q, &gz, name, policy);
                assert_eq!(
                    by_cli,
                    by_server,
                    "{} quote {qi} policy {name}",
                    path.display()
                );
                if qi == 1 || *name == "failing" {
                    assert!(!by_cli.trusted, "{} quote {qi} {name}", path.display());
                }
                if by_cli.trusted {
                    trusted += 1;
                } else {
                    untrusted += 1;
                }
                compared += 1;
            }
        }
    }
    eprintln!("{compared} appraisals: {trusted} trusted, {untrusted} untrusted on both paths");
    assert!(compared >= 4 * 25, "only {compared} appraisals");
    assert!(trusted >= 20, "only {trusted} trusted");
}
