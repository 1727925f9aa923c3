//! Fuzz target: any bytes as a Debian package for `release approve --deb`: the boot files it
//! holds or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(files) = vouch_fleet::deb::boot_files(data) {
        for f in files {
            assert!(!f.path.starts_with("./"), "{}", f.path);
        }
    }
});
