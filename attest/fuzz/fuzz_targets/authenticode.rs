//! Fuzz target: any bytes as an EFI (PE32/PE32+) image for its Authenticode SHA-256: a digest
//! or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_attest::release::authenticode_sha256;

fuzz_target!(|data: &[u8]| {
    let _ = authenticode_sha256(data);
});
