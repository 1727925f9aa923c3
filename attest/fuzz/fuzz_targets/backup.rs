//! Fuzz target: any bytes as a fleet backup file (outer container: magic, lengths, checksum),
//! as a decrypted payload (manifest, names, sizes, hashes) and as a key share file. Nothing may
//! panic; whatever parses must be self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_attest::backup::{parse_payload, valid_name, Sealed, Share};
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    if let Ok(sealed) = Sealed::parse(data) {
        assert!(sealed.ciphertext_len() >= 16);
        assert_eq!(sealed.recipient().len(), 64);
    }
    if let Ok(contents) = parse_payload(Zeroizing::new(data.to_vec())) {
        for (i, e) in contents.manifest.entries.iter().enumerate() {
            assert!(valid_name(&e.name));
            assert_eq!(contents.data(i).len() as u64, e.size);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(share) = Share::parse(text) {
            let again = Share::parse(&share.to_text()).expect("a written share parses");
            assert_eq!(share, again);
        }
    }
});
