//! Fuzz target: load any bytes as a TOML release; whatever loads must write back to TOML that
//! loads to an equal release, and its policy sections must union into a policy that validates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_attest::policy::Policy;
use vouch_attest::release::{effective, Lookup, Release};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(release) = Release::from_toml(text) else {
        return;
    };
    let written = release.to_toml().expect("a loaded release writes");
    let again = Release::from_toml(&written).expect("a written release loads");
    assert_eq!(release, again, "round trip changed the release:\n{written}");
    let mut policy = Policy::empty();
    policy.releases = vec!["r".into()];
    let eff = effective(&policy, |_| Lookup::Found(&release)).expect("a release unions");
    eff.validate().expect("the effective policy validates");
});
