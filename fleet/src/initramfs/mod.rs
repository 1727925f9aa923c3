//! What a device's initramfs holds, read from the image file as the distribution makes it, so a
//! runtime policy can allow the files IMA measures before the root file system is mounted
//! (`/init`, the initramfs's shell and tools, its scripts): `vouch-fleet runtime-policy create
//! --initrd`, the counterpart of Keylime's `--ramdisk-dir`.
//!
//! An image is a sequence of segments, read as the kernel unpacks them: zero padding is
//! skipped; a segment starting with a newc cpio magic is an uncompressed archive (Debian's
//! early cpio with CPU microcode) that ends at its trailer; any other segment is a compressed
//! archive (zstd, Debian 12's default, gzip or xz) that ends where its compressed stream does,
//! and may hold several archives one after the other. Pure: bytes in, files out. Memory stays
//! bounded whatever the headers claim: file data is hashed as it is unpacked, never held, and
//! the total unpacked size is capped ([`DEFAULT_MAX_UNPACKED`]).

pub mod cpio;

pub use cpio::{CpioError, CpioFile, CpioParser};
use std::io::{self, Write};

/// The default cap on the bytes all compressed segments of one image may unpack to (a Debian
/// initramfs unpacks to tens of MB).
pub const DEFAULT_MAX_UNPACKED: u64 = 4 << 30;

/// How a segment is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// An uncompressed cpio archive.
    Cpio,
    /// zstd (initramfs-tools' default since Debian 12).
    Zstd,
    /// gzip.
    Gzip,
    /// xz.
    Xz,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Cpio => "uncompressed cpio",
            Format::Zstd => "zstd",
            Format::Gzip => "gzip",
            Format::Xz => "xz",
        })
    }
}

/// Why an image cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// The image holds no archive (empty, or only zeros).
    #[error("no cpio archive in the image ({len} bytes)")]
    NoArchive {
        /// The image's length.
        len: usize,
    },
    /// A segment is compressed with a method not read here.
    #[error("offset {offset}: {method} compression is not supported (zstd, gzip and xz are)")]
    Unsupported {
        /// Where the segment starts.
        offset: u64,
        /// The method recognized by its magic.
        method: &'static str,
    },
    /// A segment is neither a cpio archive nor a known compressed stream.
    #[error("offset {offset}: neither a cpio archive nor a compressed one (starts with {start})")]
    Unknown {
        /// Where the segment starts.
        offset: u64,
        /// Its first bytes, in hex.
        start: String,
    },
    /// The compressed stream is corrupt or truncated.
    #[error("offset {offset}: {format} segment cannot be decompressed")]
    Decompress {
        /// Where the segment starts.
        offset: u64,
        /// Its compression.
        format: Format,
        /// The decompressor's error.
        source: io::Error,
    },
    /// The compressed segments unpack to more than the cap.
    #[error("offset {offset}: {format} segment unpacks past the cap of {limit} bytes")]
    TooLarge {
        /// Where the segment starts.
        offset: u64,
        /// Its compression.
        format: Format,
        /// The cap.
        limit: u64,
    },
    /// The (unpacked) archive is not a valid newc cpio archive; the source's offset counts
    /// from the start of the unpacked data (from the image's start for an uncompressed one).
    #[error("offset {offset}: {format} segment: malformed cpio archive")]
    Cpio {
        /// Where the segment starts in the image.
        offset: u64,
        /// Its compression.
        format: Format,
        /// What is wrong, and where.
        source: CpioError,
    },
}

/// One segment of an image, as read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Segment {
    /// Where it starts in the image.
    pub offset: u64,
    /// How it is stored.
    pub format: Format,
    /// Its length in the image.
    pub stored: u64,
    /// The length of its cpio data.
    pub unpacked: u64,
    /// The regular files it holds.
    pub files: u64,
}

const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const GZIP: &[u8] = &[0x1f, 0x8b];
const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];

/// Compression methods the kernel knows that are not read here, by magic.
const UNSUPPORTED: &[(&[u8], &str)] = &[
    (&[0x1f, 0x9e], "old gzip"),
    (b"BZh", "bzip2"),
    (&[0x5d, 0, 0], "lzma"),
    (&[0x89, b'L', b'Z', b'O'], "lzo"),
    (&[0x02, 0x21, 0x4c, 0x18], "lz4"),
];

/// Reads every regular file of `image` (see the module documentation), giving each to `each`
/// with its run-time path and SHA-256, and returns the segments read. Files of later segments
/// come after earlier ones; a path may come more than once (a later segment overwrites it when
/// the kernel unpacks).
pub fn read_files(
    image: &[u8],
    max_unpacked: u64,
    each: &mut dyn FnMut(CpioFile),
) -> Result<Vec<Segment>, InitramfsError> {
    let mut segments = Vec::new();
    let mut pos = 0usize;
    let mut budget = max_unpacked;
    loop {
        pos += image[pos..].iter().take_while(|&&b| b == 0).count();
        let rest = &image[pos..];
        if rest.is_empty() {
            break;
        }
        let offset = pos as u64;
        let mut files = 0u64;
        let mut count = |f: CpioFile| {
            files += 1;
            each(f)
        };
        let (format, stored, unpacked) = if rest.starts_with(b"0707") {
            let mut p = CpioParser::new(offset);
            let cpio = |source| InitramfsError::Cpio {
                offset,
                format: Format::Cpio,
                source,
            };
            let used = p.feed(rest, &mut count).map_err(cpio)?;
            p.finish(&mut count).map_err(cpio)?;
            (Format::Cpio, used as u64, used as u64)
        } else {
            let format = if rest.starts_with(ZSTD) {
                Format::Zstd
            } else if rest.starts_with(GZIP) {
                Format::Gzip
            } else if rest.starts_with(XZ) {
                Format::Xz
            } else if let Some((_, method)) = UNSUPPORTED.iter().find(|(m, _)| rest.starts_with(m))
            {
                return Err(InitramfsError::Unsupported { offset, method });
            } else {
                return Err(InitramfsError::Unknown {
                    offset,
                    start: hex::encode(&rest[..rest.len().min(8)]),
                });
            };
            let (stored, unpacked) = unpack(rest, offset, format, budget, &mut count)?;
            budget -= unpacked;
            (format, stored, unpacked)
        };
        segments.push(Segment {
            offset,
            format,
            stored,
            unpacked,
            files,
        });
        pos += stored as usize;
    }
    if segments.is_empty() {
        return Err(InitramfsError::NoArchive { len: image.len() });
    }
    Ok(segments)
}

/// Where a decompressor's output goes: the cpio parser, with zero padding between archives
/// skipped and the cap counted. Its typed error is kept beside the `io::Error` the
/// decompressor sees.
struct Sink<'a> {
    parser: CpioParser,
    written: u64,
    limit: u64,
    each: &'a mut dyn FnMut(CpioFile),
    failed: Option<Stop>,
}

enum Stop {
    Cpio(CpioError),
    TooLarge,
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Err(io::Error::other("stopped"));
        }
        self.written += buf.len() as u64;
        if self.written > self.limit {
            self.failed = Some(Stop::TooLarge);
            return Err(io::Error::other("cap"));
        }
        let mut rest = buf;
        while !rest.is_empty() {
            if self.parser.done() {
                let zeros = rest.iter().take_while(|&&b| b == 0).count();
                self.parser.skip(zeros);
                rest = &rest[zeros..];
                if rest.is_empty() {
                    break;
                }
                self.parser.next_archive();
            }
            match self.parser.feed(rest, self.each) {
                Ok(n) => rest = &rest[n..],
                Err(e) => {
                    self.failed = Some(Stop::Cpio(e));
                    return Err(io::Error::other("cpio"));
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decompresses the segment at the start of `data` (one compressed stream, or several of the
/// same method back to back) into a cpio parser; returns the bytes it took from `data` and
/// the bytes it unpacked to.
fn unpack(
    data: &[u8],
    offset: u64,
    format: Format,
    limit: u64,
    each: &mut dyn FnMut(CpioFile),
) -> Result<(u64, u64), InitramfsError> {
    let mut sink = Sink {
        parser: CpioParser::new(0),
        written: 0,
        limit,
        each,
        failed: None,
    };
    let mut input = data;
    let result = (|| -> io::Result<()> {
        loop {
            match format {
                Format::Zstd => {
                    let mut d = ruzstd::decoding::StreamingDecoder::new(&mut input)
                        .map_err(io::Error::other)?;
                    io::copy(&mut d, &mut sink)?;
                }
                Format::Gzip => {
                    let mut d = flate2::bufread::GzDecoder::new(&mut input);
                    io::copy(&mut d, &mut sink)?;
                }
                Format::Xz => {
                    lzma_rs::xz_decompress(&mut input, &mut sink).map_err(|e| match e {
                        lzma_rs::error::Error::IoError(e) => e,
                        other => io::Error::other(other),
                    })?;
                }
                // Uncompressed segments are parsed in place by `read_files`, never unpacked.
                Format::Cpio => return Ok(()),
            }
            // Another stream of the same method continues the same data (concatenated
            // zstd frames, gzip members, xz streams after their zero padding).
            let zeros = match format {
                Format::Xz => input.iter().take_while(|&&b| b == 0).count() / 4 * 4,
                _ => 0,
            };
            let next = &input[zeros..];
            let magic = match format {
                Format::Zstd => ZSTD,
                Format::Gzip => GZIP,
                _ => XZ,
            };
            if !next.starts_with(magic) {
                return Ok(());
            }
            input = next;
        }
    })();
    let stored = (data.len() - input.len()) as u64;
    match (result, sink.failed.take()) {
        (_, Some(Stop::Cpio(source))) => Err(InitramfsError::Cpio {
            offset,
            format,
            source,
        }),
        (_, Some(Stop::TooLarge)) => Err(InitramfsError::TooLarge {
            offset,
            format,
            limit,
        }),
        (Err(source), None) => Err(InitramfsError::Decompress {
            offset,
            format,
            source,
        }),
        (Ok(()), None) => {
            sink.parser
                .finish(sink.each)
                .map_err(|source| InitramfsError::Cpio {
                    offset,
                    format,
                    source,
                })?;
            Ok((stored, sink.written))
        }
    }
}
