//! Fuzz target: read any bytes as a Keylime runtime policy; one that loads must compile, encode,
//! and load again to the same policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_attest::ima::RuntimePolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = RuntimePolicy::from_json(data) else {
        return;
    };
    p.compile().expect("a loaded policy compiles");
    let json = p.to_json().expect("a loaded policy encodes");
    let again = RuntimePolicy::from_json(json.as_bytes()).expect("its encoding loads");
    assert_eq!(again, p);
});
