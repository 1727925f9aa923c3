//! Single-core AES-256-XTS throughput of Vouch's engine on 4096-byte sectors, on one
//! 4096-byte buffer and on 1 MiB buffers, printed next to `openssl speed -evp aes-256-xts`
//! on buffers of the same sizes measured in the same run. Every backend this CPU runs is
//! measured; the one chosen at run time is named with the CPU flags that chose it.
//!
//! Run with `cargo bench -p vouch-agent --bench xts`. Both figures are bytes per second
//! of CPU time of the thread doing the work (openssl speed's default). The machine is
//! shared, so the engines are measured in alternating rounds (`VOUCH_BENCH_ROUNDS`, default 5, of
//! `VOUCH_BENCH_SECONDS`, default 1, each) and the best round of each is compared.
//! Exits non-zero if openssl cannot be run or its output cannot be parsed.

use std::process::Command;
use std::time::{Duration, Instant};

use vouch_agent::volume::xts::{Backend, Xts};

const SECTOR: usize = 4096;
/// Buffer sizes measured: one sector (what `openssl speed` does: the same 4096 bytes
/// again and again, hot in L1) and 1 MiB of consecutive sectors (L2).
const BUFS: [usize; 2] = [SECTOR, 1 << 20];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// CPU time this thread has run, in seconds, from `/proc/thread-self/schedstat`
/// (nanoseconds on CPU). `openssl speed` also counts CPU time (unless given
/// `-elapsed`), so both figures stay comparable on a busy shared machine.
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map(|ns| ns as f64 / 1e9)
        .unwrap_or_else(|| fail("cannot read /proc/thread-self/schedstat"))
}

/// Bytes per CPU-second of `op` over a `size`-byte buffer, run for `secs` seconds.
fn measure(secs: u64, size: usize, mut op: impl FnMut(&mut [u8], u64)) -> f64 {
    let mut buf = vec![0x5au8; size];
    let sectors_per_pass = (size / SECTOR) as u64;
    // Read the clock only every 1 MiB so that it does not show in the figure.
    let passes_per_check = ((1 << 20) / size).max(1);
    op(&mut buf, 0);
    let limit = Duration::from_secs(secs);
    let start = Instant::now();
    let cpu_start = thread_cpu_seconds();
    let mut bytes: u64 = 0;
    let mut sector: u64 = 0;
    while start.elapsed() < limit {
        for _ in 0..passes_per_check {
            op(&mut buf, sector * 8);
            sector += sectors_per_pass;
            bytes += size as u64;
        }
    }
    bytes as f64 / (thread_cpu_seconds() - cpu_start)
}

/// Runs openssl's own benchmark on `size`-byte buffers and returns its figure in bytes per
/// second.
fn openssl_speed(secs: u64, size: usize) -> Result<f64, String> {
    let out = Command::new("openssl")
        .args(["speed", "-evp", "aes-256-xts", "-bytes"])
        .arg(size.to_string())
        .arg("-seconds")
        .arg(secs.to_string())
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!("openssl speed failed: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.to_ascii_lowercase().starts_with("aes-256-xts"))
        .ok_or_else(|| format!("no AES-256-XTS line in openssl output:\n{text}"))?;
    let figure = line
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.strip_suffix('k'))
        .and_then(|f| f.parse::<f64>().ok())
        .ok_or_else(|| format!("cannot parse openssl figure from {line:?}"))?;
    Ok(figure * 1000.0)
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("xts bench: {msg}");
    std::process::exit(1);
}

fn main() {
    // `cargo bench` passes `--bench`; arguments are ignored.
    let secs = env_u64("VOUCH_BENCH_SECONDS", 1);
    let rounds = env_u64("VOUCH_BENCH_ROUNDS", 5).max(1);
    let key: Vec<u8> = (0..64u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let chosen = Backend::detect();
    // The chosen backend first, then the others this CPU runs, for comparison.
    let mut backends = vec![chosen];
    backends.extend(Backend::available().into_iter().filter(|b| *b != chosen));
    let ciphers: Vec<Xts> = backends
        .iter()
        .map(|b| Xts::with_backend(&key, *b).unwrap_or_else(|e| fail(e)))
        .collect();

    // best[backend][size index] = (encrypt, decrypt); best openssl figure per size.
    let mut best = vec![[(0f64, 0f64); BUFS.len()]; ciphers.len()];
    let mut best_ossl = [0f64; BUFS.len()];
    for _ in 0..rounds {
        for (xts, slots) in ciphers.iter().zip(best.iter_mut()) {
            for (slot, size) in slots.iter_mut().zip(BUFS) {
                let enc = measure(secs, size, |buf, iv| {
                    xts.encrypt_sectors(buf, SECTOR, iv, 8)
                        .unwrap_or_else(|e| fail(e))
                });
                let dec = measure(secs, size, |buf, iv| {
                    xts.decrypt_sectors(buf, SECTOR, iv, 8)
                        .unwrap_or_else(|e| fail(e))
                });
                slot.0 = slot.0.max(enc);
                slot.1 = slot.1.max(dec);
            }
        }
        for (slot, size) in best_ossl.iter_mut().zip(BUFS) {
            *slot = slot.max(openssl_speed(secs, size).unwrap_or_else(|e| fail(e)));
        }
    }

    let gb = |v: f64| v / 1e9;
    let flags: Vec<String> = vouch_agent::volume::xts::cpu_flags()
        .iter()
        .map(|(f, on)| format!("{}{f}", if *on { "+" } else { "-" }))
        .collect();
    println!("aes-256-xts, 4096-byte sectors, per CPU-second, best of {rounds} rounds of {secs} s");
    println!(
        "  backend chosen at run time: {chosen} (needs {}); CPU flags: {}",
        if chosen.cpu_features().is_empty() {
            "nothing".to_string()
        } else {
            chosen.cpu_features().join(",")
        },
        if flags.is_empty() {
            "none checked on this architecture".to_string()
        } else {
            flags.join(" ")
        }
    );
    for (ossl, size) in best_ossl.iter().zip(BUFS) {
        println!(
            "  openssl speed -evp aes-256-xts -bytes {size:>7}: {:6.2} GB/s",
            gb(*ossl)
        );
    }
    for (backend, slots) in backends.iter().zip(best.iter()) {
        let mark = if *backend == chosen { " (chosen)" } else { "" };
        for ((enc, dec), (size, ossl)) in slots.iter().zip(BUFS.iter().zip(best_ossl)) {
            println!(
                "  vouch {:<15} {:>7}-byte buffer: encrypt {:6.2} GB/s ({:.2}x openssl), \
                 decrypt {:6.2} GB/s ({:.2}x){mark}",
                backend.name(),
                size,
                gb(*enc),
                enc / ossl,
                gb(*dec),
                dec / ossl
            );
        }
    }
}
