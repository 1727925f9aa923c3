//! Fuzz target: parse any bytes as an IMA binary measurement list (every template hash size)
//! and as a text list; whatever parses is replayed, appraised against an empty policy,
//! serialized, and re-encoded: the binary encoding must parse back to the same entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_attest::ima::binary::{detect_hash_len, encode_entry, parse_entry, Entries};
use vouch_attest::ima::{ascii, Appraiser, ReplayState, RuntimePolicy, IMA_PCR};
use vouch_attest::HashAlg;

fuzz_target!(|data: &[u8]| {
    let policy = RuntimePolicy::empty();
    let mut appraiser = Appraiser::new(&policy).expect("the empty policy compiles");
    let mut replay = ReplayState::new(HashAlg::Sha256, IMA_PCR).expect("sha256 replays");
    let _ = detect_hash_len(data);
    for len in [20, 32] {
        for r in Entries::new(data, len).take(64) {
            let Ok((_, e)) = r else { break };
            appraiser.push(&e, 0, &mut replay);
            let _ = serde_json::to_string(&e);
            let enc = encode_entry(&e);
            let (again, used) = parse_entry(&enc, len)
                .expect("own encoding parses")
                .expect("own encoding is complete");
            assert_eq!(used, enc.len());
            assert_eq!(again, e);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for r in ascii::parse(text).take(64) {
            let Ok((_, e)) = r else { break };
            appraiser.push(&e, 0, &mut replay);
        }
    }
    let _ = serde_json::to_string(&appraiser.finish());
});
