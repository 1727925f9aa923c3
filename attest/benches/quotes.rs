//! Throughput of quote verification alone (parse + signature + pcrDigest + counters), on a
//! software P-256 quote and on the real RSA-2048 GCP quote: figures printed, no pass/fail.
//! `cargo bench -p vouch-attest --bench quotes`.

#[path = "../tests/quote_support/mod.rs"]
mod quote_support;

use quote_support::{gcp, soft_quote};
use std::time::Instant;
use vouch_attest::quote::{AkPublic, AkVerifier, QuoteEvidence};
use vouch_attest::tpm::Signature;

/// CPU seconds this thread has used (utime + stime from /proc, 100 ticks per second): the
/// machine is shared, so wall time overstates the cost per core.
fn thread_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    let after = &stat[stat.rfind(')').expect("stat format") + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Returns verifications per CPU-second.
fn rate(label: &str, n: u32, mut f: impl FnMut() -> bool) -> f64 {
    assert!(f(), "{label}: verification failed");
    let wall = Instant::now();
    let cpu = thread_cpu_secs();
    for _ in 0..n {
        assert!(f());
    }
    let cpu = thread_cpu_secs() - cpu;
    let per_cpu_sec = f64::from(n) / cpu.max(0.01);
    let per_wall_sec = f64::from(n) / wall.elapsed().as_secs_f64();
    println!(
        "{label}: {per_cpu_sec:.0}/s per CPU-second ({:.1} us CPU each), {per_wall_sec:.0}/s wall",
        1e6 / per_cpu_sec
    );
    per_cpu_sec
}

fn main() {
    let q = soft_quote();
    let v = AkVerifier::from_tpm_public(&q.public).unwrap();
    let attest = q.attest.marshal();
    let previous = attest.clone();
    rate("ecdsa-p256/sha256, 14 PCRs, with counters", 50_000, || {
        v.verify_quote(&QuoteEvidence {
            attest: &attest,
            signature: &q.signature,
            nonce: &q.nonce,
            pcrs: &q.pcrs,
            previous: Some(&previous),
        })
        .passed()
    });

    rate("ecdsa-p256/sha256 signature alone", 50_000, || {
        v.verify(&attest, &q.signature).is_ok()
    });

    let s = gcp();
    let rv = AkVerifier::new(&AkPublic::parse(&s.ak_public).unwrap()).unwrap();
    let sig = Signature::parse(&s.signature).unwrap();
    rate("rsassa-2048/sha1 (real GCP quote), 24 PCRs", 50_000, || {
        rv.verify_quote(&QuoteEvidence {
            attest: &s.quote,
            signature: &sig,
            nonce: &s.nonce,
            pcrs: &s.pcrs,
            previous: None,
        })
        .passed()
    });
}
