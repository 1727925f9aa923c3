//! The agent's incremental IMA reader on a synthetic 100,000-entry list (ima-ng, SHA-1 template
//! hashes as in the kernel's classic list): read in chunks from the offset the fleet's last
//! accepted report ended at, each chunk appraised by the fleet's per-report decision
//! (`vouch_attest::ima::increment`), ending at the PCR 10 an independent replay (plain SHA-256
//! over the template data built here) computes. Also: a list growing between reads, and an entry
//! cut off at the end of the file (still being written) left for the next read.

use sha2::{Digest, Sha256};
use std::io::Write;
use vouch_agent::ima::{read_chunk, MAX_CHUNK};
use vouch_attest::ima::binary::encode_entry;
use vouch_attest::ima::increment::appraise_increment;
use vouch_attest::ima::{
    Appraiser, Entry, FileDigest, ReplayState, RuntimePolicy, Template, IMA_PCR,
};
use vouch_attest::HashAlg;

const ENTRIES: usize = 100_000;

fn entry(i: usize) -> Entry {
    let name = format!("/usr/lib/x86_64-linux-gnu/synthetic/lib{i:06}.so.1");
    let digest = Sha256::digest(name.as_bytes()).to_vec();
    Entry::measured(
        Template::ImaNg,
        FileDigest {
            alg: "sha256".into(),
            value: digest,
        },
        &name,
        b"",
        HashAlg::Sha1,
    )
    .unwrap()
}

/// PCR 10 (sha256 bank) after the first `n` entries, computed without vouch-attest: the
/// template data of ima-ng is `len|"sha256:\0"digest|len|name\0`.
fn independent_pcr10(n: usize) -> Vec<u8> {
    let mut pcr = [0u8; 32].to_vec();
    for i in 0..n {
        let name = format!("/usr/lib/x86_64-linux-gnu/synthetic/lib{i:06}.so.1");
        let mut d = b"sha256:\0".to_vec();
        d.extend_from_slice(&Sha256::digest(name.as_bytes()));
        let mut n0 = name.into_bytes();
        n0.push(0);
        let mut data = Vec::new();
        data.extend_from_slice(&(d.len() as u32).to_le_bytes());
        data.extend_from_slice(&d);
        data.extend_from_slice(&(n0.len() as u32).to_le_bytes());
        data.extend_from_slice(&n0);
        let t = Sha256::digest(&data);
        let mut h = Sha256::new();
        h.update(&pcr);
        h.update(t);
        pcr = h.finalize().to_vec();
    }
    pcr
}

#[test]
fn a_100000_entry_list_is_read_and_verified_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("binary_runtime_measurements");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut policy = RuntimePolicy::empty();
    for i in 0..ENTRIES {
        let e = entry(i);
        f.write_all(&encode_entry(&e)).unwrap();
        policy.allow(&e.name, &e.digest.as_ref().unwrap().value);
    }
    f.flush().unwrap();
    drop(f);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 10 * MAX_CHUNK as u64, "{size}");
    let compiled = policy.compile().unwrap();

    let mut state = ReplayState::new(HashAlg::Sha256, IMA_PCR).unwrap();
    let mut reports = 0;
    loop {
        let chunk = read_chunk(&path, state.offset, MAX_CHUNK).unwrap();
        assert!(chunk.bytes.len() <= MAX_CHUNK);
        assert_eq!(chunk.offset, state.offset);
        if chunk.entries == 0 {
            assert!(!chunk.more);
            break;
        }
        assert_eq!(chunk.hash_len, Some(20));
        let upto = state.entries as usize + chunk.entries as usize;
        // The quote taken with this report: PCR 10 after the entries read.
        let quoted = independent_pcr10(upto);
        let out = appraise_increment(
            &state,
            chunk.offset,
            &chunk.bytes,
            20,
            &quoted,
            false,
            Appraiser::compiled(compiled.clone()),
        );
        assert!(out.trusted(), "report {reports}: {:?}", out.failures);
        assert_eq!(out.accepted, chunk.entries);
        state = out.state;
        reports += 1;
    }
    assert_eq!(state.entries, ENTRIES as u64);
    assert_eq!(state.offset, size);
    assert!(reports >= 10, "{reports} reports");
}

#[test]
fn a_growing_list_and_an_entry_still_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("list");
    let bytes: Vec<Vec<u8>> = (0..10).map(|i| encode_entry(&entry(i))).collect();
    let mut f = std::fs::File::create(&path).unwrap();
    for b in &bytes[..5] {
        f.write_all(b).unwrap();
    }
    // Half of entry 5: the kernel has not finished it.
    f.write_all(&bytes[5][..bytes[5].len() / 2]).unwrap();
    f.flush().unwrap();
    let c = read_chunk(&path, 0, MAX_CHUNK).unwrap();
    assert_eq!(c.entries, 5);
    let first: usize = bytes[..5].iter().map(Vec::len).sum();
    assert_eq!(c.bytes.len(), first);
    // The rest arrives; the next read starts where the accepted entries ended.
    f.write_all(&bytes[5][bytes[5].len() / 2..]).unwrap();
    for b in &bytes[6..] {
        f.write_all(b).unwrap();
    }
    f.flush().unwrap();
    let c = read_chunk(&path, first as u64, MAX_CHUNK).unwrap();
    assert_eq!(c.entries, 5);
    assert_eq!(c.bytes, bytes[5..].concat());
    // A small budget: one entry at least, whole entries only.
    let c = read_chunk(&path, 0, 10).unwrap();
    assert_eq!((c.entries, c.more), (1, true));
    assert_eq!(c.bytes, bytes[0]);
    // An offset inside an entry is refused with the reason.
    let e = read_chunk(&path, 3, MAX_CHUNK).unwrap_err();
    assert!(
        vouch_attest::errors::chain(&e).contains("does not parse from byte offset 3"),
        "{e}"
    );
}
