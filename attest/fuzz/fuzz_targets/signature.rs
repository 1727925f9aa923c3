//! Fuzzes TPMT_SIGNATURE parsing: never panics; parsed signatures re-marshal to the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_attest::tpm::Signature;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Signature::parse(data) {
        assert_eq!(s.marshal(), data);
    }
});
