//! Shared helpers of the LUKS2 integration tests: running cryptsetup (the compatibility
//! oracle; tests fail, never skip, when it is missing) and making image files.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vouch_agent::volume::luks2::{Argon2Cost, FormatOptions};
use zeroize::Zeroizing;

/// Runs cryptsetup with `args`; panics with a clear message if it cannot be started.
pub fn cryptsetup(args: &[&str]) -> Output {
    Command::new("cryptsetup")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cryptsetup is required for these tests and could not be run: {e}")
        })
}

/// Runs cryptsetup and panics with its output unless it succeeds.
pub fn cryptsetup_ok(args: &[&str]) -> String {
    let out = cryptsetup(args);
    assert!(
        out.status.success(),
        "cryptsetup {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Parses the volume key from `luksDump --dump-volume-key` output.
pub fn dumped_volume_key(image: &Path, key_file: &Path) -> Vec<u8> {
    let out = cryptsetup_ok(&[
        "luksDump",
        "--dump-volume-key",
        "--batch-mode",
        "--key-file",
        path(key_file),
        path(image),
    ]);
    let start = out
        .find("MK dump:")
        .expect("MK dump line in luksDump output");
    let hex: String = out[start + "MK dump:".len()..]
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    hex::decode(hex).expect("hex volume key")
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Creates a zero-filled image file of `size` bytes.
pub fn image(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    let f = File::create(&p).expect("create image");
    f.set_len(size).expect("size image");
    p
}

/// Opens an image for reading and writing.
pub fn open_rw(p: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .expect("open image")
}

/// Writes bytes to a file (a key file for cryptsetup).
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write file");
    p
}

/// A deterministic 32-byte high-entropy stand-in secret.
pub fn secret() -> Zeroizing<Vec<u8>> {
    Zeroizing::new(
        (0..32u8)
            .map(|i| i.wrapping_mul(151).wrapping_add(29))
            .collect(),
    )
}

/// Recovery passphrase.
pub fn recovery() -> Zeroizing<Vec<u8>> {
    Zeroizing::new(b"recovery words for tests".to_vec())
}

/// Format options with an Argon2id cost cheap enough for tests but within
/// cryptsetup's limits.
pub fn cheap_options() -> FormatOptions {
    FormatOptions {
        label: "vouch-test".into(),
        recovery_cost: Argon2Cost {
            time: 4,
            memory_kib: 8192,
            lanes: 1,
        },
        ..FormatOptions::default()
    }
}

/// Deterministic pseudo-random bytes (xorshift) for plaintext.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
