//! Full verification throughput (`appraisal::appraise`, what the fleet runs per report): quote
//! signature (ECDSA P-256) + nonce + pcrDigest, parse and replay of a real ~50 KB event log,
//! `match_quoted` against the quoted PCRs, boot state and policy evaluation; the figure is
//! verifications per CPU-second of one thread. Also prints the cost of each step. Run with `cargo bench -p vouch-attest --bench verify`; a further argument
//! runs only the steps whose label contains it (`-- FULL`, `-- policy`), e.g. under `perf record`.
//!
//! Steady state (`LogEvidence::Settled`: the log unchanged since a trusted appraisal, none of it
//! sent) is measured next to OpenSSL's P-256 verify rate (`openssl speed ecdsap256`, one process,
//! run by this bench in the same run), with the size of such a report on the wire.
//!
//! CPU time (not wall time) is measured because the machines are shared.

use p256::ecdsa::signature::Signer;
use p256::ecdsa::SigningKey;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use std::path::PathBuf;
use std::time::Instant;
use vouch_attest::appraisal::{
    appraise, policy_identity, AppraisalInput, LogEvidence, PolicyInput, SettledLog,
};
use vouch_attest::eventlog::{match_quoted, EventLog};
use vouch_attest::policy::{evaluate, Evidence, PcrPolicy, Policy};
use vouch_attest::quote::{AkVerifier, QuoteEvidence};
use vouch_attest::tpm::attest::{ClockInfo, QuoteInfo, TPM_GENERATED_VALUE};
use vouch_attest::tpm::{
    Attest, AttestBody, ObjectAttributes, PcrSelect, PcrSelection, Signature, TpmPublic,
};
use vouch_attest::{HashAlg, PcrBanks};

/// A real 49 KB crypto-agile log (sha1 + sha256, Secure Boot off, GRUB, 100+ events).
const LOG: &str = "keylime_mb_binary_bios_measurements.bin";
/// PCRs quoted (sha256 bank).
const QUOTED: [u32; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

fn log_path() -> PathBuf {
    testdata::eventlogs_dir().join(LOG)
}

#[path = "../../testsupport/testdata.rs"]
mod testdata;

/// CPU seconds this thread has used (utime + stime, 100 ticks per second).
fn thread_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    let after = stat.rsplit_once(')').expect("stat format").1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// The first argument that is not a flag: only steps whose label contains it run (for
/// `perf record`).
fn filter() -> Option<String> {
    std::env::args().skip(1).find(|a| !a.starts_with('-'))
}

/// Runs `f` for at least `secs` CPU-seconds; returns runs per CPU-second (0 when filtered out).
fn rate(label: &str, secs: f64, mut f: impl FnMut() -> bool) -> f64 {
    if filter().is_some_and(|w| !label.contains(w.as_str())) {
        return 0.0;
    }
    assert!(f(), "{label}: failed");
    let wall = Instant::now();
    let start = thread_cpu_secs();
    let mut n = 0u64;
    let cpu = loop {
        for _ in 0..200 {
            assert!(f(), "{label}: failed");
        }
        n += 200;
        let cpu = thread_cpu_secs() - start;
        if cpu >= secs {
            break cpu;
        }
    };
    let per_sec = n as f64 / cpu;
    println!(
        "{label:<44} {per_sec:>9.0}/s per core  {:>7.1} us CPU  ({:.0}/s wall)",
        1e6 / per_sec,
        n as f64 / wall.elapsed().as_secs_f64()
    );
    per_sec
}

struct Setup {
    bytes: Vec<u8>,
    verifier: AkVerifier,
    attest: Vec<u8>,
    signature: Signature,
    nonce: Vec<u8>,
    pcrs: PcrBanks,
    policy: Policy,
    /// The AK as an uncompressed SEC1 point and the signature as r || s, for timing `ring`
    /// alone.
    ring_key: Vec<u8>,
    ring_sig: Vec<u8>,
}

fn setup() -> Setup {
    let bytes = std::fs::read(log_path()).expect("bench event log");
    let log = EventLog::parse(&bytes).expect("log parses");
    let replay = log.replay();
    let mut pcrs = PcrBanks::new();
    for pcr in QUOTED {
        let v = replay.get(HashAlg::Sha256, pcr).expect("replayed PCR");
        pcrs.insert(HashAlg::Sha256, pcr, v.to_vec());
    }
    let sk = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let point = sk.verifying_key().to_encoded_point(false);
    let public = TpmPublic::ecc_p256_signing(
        ObjectAttributes::AK_TEMPLATE,
        point.x().unwrap(),
        point.y().unwrap(),
    );
    let selection = PcrSelection {
        banks: vec![PcrSelect::new(HashAlg::Sha256, &QUOTED).unwrap()],
    };
    let parts: Vec<&[u8]> = QUOTED
        .iter()
        .map(|p| pcrs.get(HashAlg::Sha256, *p).unwrap())
        .collect();
    let nonce = vec![0x5A; 20];
    let attest = Attest {
        magic: TPM_GENERATED_VALUE,
        qualified_signer: public.name().unwrap(),
        extra_data: nonce.clone(),
        clock_info: ClockInfo {
            clock: 1_000_000,
            reset_count: 1,
            restart_count: 0,
            safe: true,
        },
        firmware_version: 0x0002_0001_0000_0000,
        body: AttestBody::Quote(QuoteInfo {
            pcr_select: selection,
            pcr_digest: HashAlg::Sha256.hash_parts(&parts).unwrap(),
        }),
    }
    .marshal();
    let sig: p256::ecdsa::Signature = sk.sign(&attest);
    let ring_sig = sig.to_bytes().to_vec();
    let (r, s) = sig.split_bytes();
    let signature = Signature::Ecdsa {
        hash: HashAlg::Sha256,
        r: r.to_vec(),
        s: s.to_vec(),
    };
    // The policy recorded from the log, with the quoted PCRs pinned.
    let mut policy = Policy::record(&log, &replay);
    policy.pcrs = PcrPolicy::from_banks(&pcrs);
    policy
        .firmware
        .get_or_insert_with(Default::default)
        .min_tpm_version = Some(vouch_attest::policy::FirmwareVersion(0x0002_0000_0000_0000));
    Setup {
        bytes,
        verifier: AkVerifier::from_tpm_public(&public).unwrap(),
        attest,
        signature,
        nonce,
        pcrs,
        policy,
        ring_key: point.as_bytes().to_vec(),
        ring_sig,
    }
}

/// One full verification, the decision the fleet makes (`appraisal::appraise`); true when the
/// quote verifies, the log matches and the policy trusts.
fn full(s: &Setup) -> bool {
    let Ok(log) = EventLog::parse(&s.bytes) else {
        return false;
    };
    appraise(&input(s, LogEvidence::Log(&log))).trusted()
}

/// The appraisal input of the bench's quote with `eventlog`, under the recorded policy.
fn input<'a>(s: &'a Setup, eventlog: LogEvidence<'a>) -> AppraisalInput<'a> {
    AppraisalInput {
        ak: &s.verifier,
        attest: &s.attest,
        signature: &s.signature,
        nonce: &s.nonce,
        pcrs: &s.pcrs,
        challenged: None,
        eventlog,
        policy: PolicyInput::Policy("recorded", &s.policy),
        previous: None,
    }
}

/// One steady-state verification: the quote checked in full, its values against those `kept`.
fn steady(s: &Setup, kept: &SettledLog, policy_id: &str) -> bool {
    appraise(&input(s, LogEvidence::Settled(kept, Some(policy_id)))).trusted()
}

/// OpenSSL's P-256 verifications per second (`openssl speed ecdsap256`, one process), or why not.
fn openssl_p256_verify(secs: u32) -> Result<f64, String> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", &secs.to_string(), "ecdsap256"])
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("ecdsa (nistp256)"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no nistp256 line in openssl speed's output: {text}"))
}

/// The size of a steady-state report on the wire: the quote, its signature, the PCR values, and
/// an empty appended part of the log.
fn steady_report_bytes(s: &Setup) -> usize {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"").unwrap();
    let report = vouch_attest::protocol::AttestationReport {
        nonce: vec![0x5A; 32],
        quote: s.attest.clone(),
        signature: s.signature.marshal(),
        pcrs: s.pcrs.to_json(),
        eventlog_gz: Some(gz.finish().unwrap()),
        eventlog_from: Some(s.bytes.len() as u64),
        ima: None,
    };
    vouch_attest::protocol::encode(&report).len()
}

fn main() {
    // `cargo test --benches` runs this binary with no arguments too; keep that short.
    let secs = if std::env::args().any(|a| a == "--bench") {
        3.0
    } else {
        0.2
    };
    let s = setup();
    println!(
        "log {LOG}: {} bytes; quote: ECDSA P-256/SHA-256 over sha256 PCRs 0-9",
        s.bytes.len()
    );
    let log = EventLog::parse(&s.bytes).unwrap();
    rate(
        "quote checks (signature, nonce, pcrDigest)",
        secs / 3.0,
        || {
            s.verifier
                .verify_quote(&QuoteEvidence {
                    attest: &s.attest,
                    signature: &s.signature,
                    nonce: &s.nonce,
                    pcrs: &s.pcrs,
                    previous: None,
                })
                .passed()
        },
    );
    rate("  of which ring ECDSA verify alone", secs / 3.0, || {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &s.ring_key)
            .verify(&s.attest, &s.ring_sig)
            .is_ok()
    });
    rate("event log parse", secs / 3.0, || {
        EventLog::parse(&s.bytes).is_ok()
    });
    rate("match_quoted (replay of sha256)", secs / 3.0, || {
        match_quoted(&log, &s.pcrs, HashAlg::Sha256, &QUOTED).is_ok_and(|m| m.matched)
    });
    rate("boot_state (not needed by the policy)", secs / 3.0, || {
        log.boot_state().secure_boot.is_some()
    });
    rate("policy evaluate", secs / 3.0, || {
        evaluate(
            &s.policy,
            &Evidence {
                log: &log,
                bank: HashAlg::Sha256,
                pcrs: &s.pcrs,
                firmware_version: Some(0x0002_0001_0000_0000),
            },
        )
        .trusted
    });
    let total = rate("FULL verification", secs, || full(&s));
    if total > 0.0 {
        println!("full verifications per second per core: {total:.0} (target 20000)");
    }
    // Steady state: what the full appraisal of this log keeps, then reports on the unchanged log.
    let policy_id = policy_identity("recorded", &s.policy);
    let first = appraise(&input(&s, LogEvidence::Log(&log)));
    let kept = SettledLog::new(&s.bytes, &first, Some(&policy_id)).expect("trusted, kept");
    let steady_rate = rate("STEADY-STATE verification", secs, || {
        steady(&s, &kept, &policy_id)
    });
    if steady_rate > 0.0 {
        println!("steady-state verifications per second per core: {steady_rate:.0}");
        println!(
            "steady-state report on the wire: {} bytes (goal < 2048)",
            steady_report_bytes(&s)
        );
        let openssl_secs = if secs >= 1.0 { 3 } else { 1 };
        match openssl_p256_verify(openssl_secs) {
            Ok(v) => println!(
                "openssl speed ecdsap256 verify, same run: {v:.0}/s; steady state / OpenSSL = {:.2}x (goal >= 1.0x)",
                steady_rate / v
            ),
            Err(e) => println!("OpenSSL reference not measured: {e}"),
        }
    }
}
