//! Fuzz target: any bytes as an initramfs image (`runtime-policy create --initrd`): segments of
//! uncompressed cpio, zstd, gzip or xz, with a small unpack cap so decompression bombs end
//! quickly. Nothing may panic; every file reported has a run-time path starting with `/`. The
//! same bytes fed to the cpio parser in pieces of 1 and of 7 bytes must give the same files
//! and the same outcome as fed whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vouch_fleet::initramfs::{read_files, CpioFile, CpioParser};

fn cpio_in_pieces(data: &[u8], piece: usize) -> (Vec<CpioFile>, Result<usize, String>) {
    let mut p = CpioParser::new(0);
    let mut files = Vec::new();
    let mut used = 0;
    for chunk in data.chunks(piece) {
        match p.feed(chunk, &mut |f| files.push(f)) {
            Ok(n) => {
                used += n;
                if n < chunk.len() {
                    break;
                }
            }
            Err(e) => return (files, Err(e.to_string())),
        }
    }
    let r = p.finish(&mut |f| files.push(f)).map(|()| used);
    (files, r.map_err(|e| e.to_string()))
}

fuzz_target!(|data: &[u8]| {
    let mut files = 0u64;
    if let Ok(segments) = read_files(data, 1 << 24, &mut |f| {
        assert!(f.path.starts_with('/'), "{}", f.path);
        files += 1;
    }) {
        assert_eq!(segments.iter().map(|s| s.files).sum::<u64>(), files);
        assert!(segments.iter().all(|s| s.stored > 0 && s.offset < data.len() as u64));
    }
    let whole = cpio_in_pieces(data, data.len().max(1));
    assert_eq!(cpio_in_pieces(data, 1), whole);
    assert_eq!(cpio_in_pieces(data, 7), whole);
});
