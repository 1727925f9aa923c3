//! IMA appraisal throughput: entries of a real measurement list (the kraemr VM's 4,289-entry
//! sha256 list, `shared/testdata/ima`) parsed, replayed into PCR 10 (template hash checked and
//! extended) and evaluated against a Keylime runtime policy built from the list, per CPU-second
//! of one thread. Also prints each step alone and a reference measured in the same run: SHA-256
//! over each entry's template data, the hashing no replay can avoid.
//!
//! Run with `cargo bench -p vouch-attest --bench ima`; a further argument runs only the steps
//! whose label contains it (`-- FULL`). CPU time (not wall time) is measured because the
//! machines are shared.

use std::time::Instant;
use vouch_attest::ima::binary::{Decoder, Entries};
use vouch_attest::ima::{Appraiser, Entry, ReplayState, RuntimePolicy, IMA_PCR};
use vouch_attest::HashAlg;

#[path = "../../testsupport/testdata.rs"]
mod testdata;

const LIST: &str = "kraemr_vm_binary_runtime_measurements_sha256";

/// CPU seconds this thread has used (utime + stime, 100 ticks per second).
fn thread_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    let after = stat.rsplit_once(')').expect("stat format").1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn filter() -> Option<String> {
    std::env::args().skip(1).find(|a| !a.starts_with('-'))
}

/// Runs `f` (which handles `per_run` entries) for at least `secs` CPU-seconds; prints and
/// returns entries per CPU-second (0 when filtered out).
fn rate(label: &str, per_run: u64, secs: f64, mut f: impl FnMut() -> bool) -> f64 {
    if filter().is_some_and(|w| !label.contains(w.as_str())) {
        return 0.0;
    }
    assert!(f(), "{label}: failed");
    let wall = Instant::now();
    let start = thread_cpu_secs();
    let mut n = 0u64;
    let cpu = loop {
        assert!(f(), "{label}: failed");
        n += 1;
        let cpu = thread_cpu_secs() - start;
        if cpu >= secs {
            break cpu;
        }
    };
    let per_sec = (n * per_run) as f64 / cpu;
    println!(
        "{label:<52} {per_sec:>11.0} entries/s per core  {:>6.2} us CPU/entry  ({:.0}/s wall)",
        1e6 / per_sec,
        (n * per_run) as f64 / wall.elapsed().as_secs_f64()
    );
    per_sec
}

fn main() {
    let path = testdata::ima_dir().join(LIST);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let entries: Vec<(u64, Entry)> = Entries::new(&bytes, 32).map(|r| r.unwrap()).collect();
    let n = entries.len() as u64;
    let (mut policy, _) = RuntimePolicy::from_entries(entries.iter().map(|(_, e)| e));
    policy
        .excludes
        .push("/root/\\.local/share/nautilus/".into());
    let compiled = policy.compile().unwrap();
    let pcr10 = {
        let mut s = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
        for (_, e) in &entries {
            s.extend(e, 0).unwrap();
        }
        s.value
    };
    println!(
        "IMA list {LIST}: {n} entries, {} bytes; policy of {} paths",
        bytes.len(),
        compiled.paths()
    );
    let secs = 3.0;

    rate(
        "reference: sha256 of each entry's template data",
        n,
        secs,
        || {
            entries
                .iter()
                .all(|(_, e)| HashAlg::Sha256.hash(&e.template_data).is_some())
        },
    );
    rate("parse (Decoder, whole list fed at once)", n, secs, || {
        let mut d = Decoder::new(Some(32));
        d.feed(&bytes);
        let mut k = 0;
        while let Ok(Some(_)) = d.next_entry() {
            k += 1;
        }
        k == n
    });
    rate(
        "replay PCR 10 sha256 (template hash checked)",
        n,
        secs,
        || {
            let mut s = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
            entries.iter().all(|(_, e)| s.extend(e, 0).is_ok()) && s.value == pcr10
        },
    );
    rate("policy evaluation only", n, secs, || {
        let mut a = Appraiser::compiled(compiled.clone());
        for (i, (_, e)) in entries.iter().enumerate() {
            a.evaluate(i as u64, e);
        }
        a.finish().trusted
    });
    rate(
        "FULL: parse + replay + evaluate (ima check)",
        n,
        secs,
        || {
            let mut a = Appraiser::compiled(compiled.clone());
            let mut s = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
            let mut d = Decoder::new(Some(32));
            d.feed(&bytes);
            while let Ok(Some(x)) = d.next_entry() {
                a.push(&x.entry, x.len, &mut s);
            }
            a.finish().trusted && s.value == pcr10
        },
    );
}
