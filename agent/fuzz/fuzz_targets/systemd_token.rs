//! Fuzz target: the `systemd-tpm2` LUKS2 token reader (`vouch_agent::volume::systemd_token`).
//! The input is the token's JSON text as another tool wrote it into a LUKS2 header; any input
//! must give a typed token or a typed error naming the field, never a panic. An accepted
//! token is written back as systemd writes it and must read back to the same token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_agent::volume::systemd_token::{self, parse, parse_json};

fuzz_target!(|data: &[u8]| {
    let _ = systemd_token::split_blob(data);
    if let Ok(t) = parse_json(data) {
        let _ = t.seal.selection();
        if !t.pin && t.pubkey.is_none() {
            let again = parse(&systemd_token::token(&t.seal, t.keyslot)).expect("re-read");
            assert_eq!(again.seal, t.seal);
            assert_eq!(again.keyslot, t.keyslot);
        }
    }
});
