//! Fuzz target: the LUKS2 binary header and JSON metadata reader. The input is taken as
//! a device image (both header copies with fallback), as one header copy, and as JSON
//! text; any input must give a result or a typed error, never a panic. When a header
//! is accepted, opening its keyslots with a fixed secret is tried too (reads bounded by
//! the image, so keyslot parsing, AF and digest code run on hostile metadata).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_agent::volume::device::MemDevice;
use vouch_agent::volume::luks2::header::{self, HeaderCopy};
use vouch_agent::volume::luks2::json::Metadata;
use vouch_agent::volume::luks2::kdf::Kdf;
use vouch_agent::volume::luks2::Luks2Volume;
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let _ = header::parse(data, HeaderCopy::Primary, 0);
    let _ = header::parse(data, HeaderCopy::Secondary, 16384);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Metadata::parse(text, 16384);
    }
    let mut dev = MemDevice(data.to_vec());
    if let Ok(vol) = Luks2Volume::read(&mut dev) {
        // Skip keyslots whose KDF would make one run take seconds.
        let cheap = vol.metadata.keyslots.values().all(|ks| {
            ks.kdf.as_ref().map_or(true, |k| match Kdf::from_json(k) {
                Ok((Kdf::Pbkdf2 { iterations, .. }, _)) => iterations <= 10_000,
                Ok((Kdf::Argon2 { time, memory_kib, .. }, _)) => {
                    u64::from(time) * u64::from(memory_kib) <= 1 << 16
                }
                Err(_) => true,
            })
        });
        if cheap {
            let _ = vol.open(&mut dev, &Zeroizing::new(b"fuzz".to_vec()), None);
        }
        for (_, t) in vol.tokens() {
            let _ = t.kind.len();
        }
    }
});
