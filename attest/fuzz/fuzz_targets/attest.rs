//! Fuzzes TPMS_ATTEST / TPM2B_ATTEST parsing: never panics, and whatever parses re-marshals to
//! a structure that parses back to the same value (the size-prefixed form only with the right
//! magic, which is what tells the two forms apart).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_attest::tpm::attest::TPM_GENERATED_VALUE;
use vouch_attest::tpm::Attest;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Attest::parse(data) {
        assert_eq!(Attest::parse(&a.marshal()).ok(), Some(a.clone()));
        if a.magic == TPM_GENERATED_VALUE {
            assert_eq!(Attest::parse(&a.marshal_tpm2b()).ok(), Some(a));
        }
    }
});
