//! The "newc" cpio format (magic `070701`, or `070702` with a checksum field) as the Linux
//! kernel unpacks it into the initial root file system, read as a push parser: bytes arrive in
//! pieces of any size (from a decompressor), file data is hashed as it streams past and never
//! held, and a header's sizes are only ever used to count bytes, never to allocate.
//!
//! Layout of one entry: a 110-byte ASCII header (the magic, then 13 fields of 8 hex digits), the
//! name (NUL-terminated, `namesize` bytes with the NUL) padded to a multiple of 4 counted from
//! the header, then `filesize` bytes of data padded to a multiple of 4. The entry named
//! `TRAILER!!!` ends an archive. Hard links: entries of one inode (`nlink` >= 2, same device
//! and inode number) share the content; GNU cpio writes it with the last of them only and the
//! others with size 0, so a link group's names are reported with the group's content when the
//! archive ends (the kernel forgets link groups at each trailer too).

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The longest name (with its NUL byte) accepted, the kernel's `PATH_MAX`.
pub const MAX_NAME: usize = 4096;

const HEADER_LEN: usize = 110;
const TRAILER: &[u8] = b"TRAILER!!!";
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

/// The header's fields in order, after the 6-byte magic.
const FIELDS: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];

/// What is wrong with a cpio stream; `offset` counts bytes from the start of the stream read
/// (the image for an uncompressed archive, the unpacked data for a compressed one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpioError {
    /// A header does not start with a newc magic.
    #[error("offset {offset}: magic {found:?} is not a newc cpio header (070701 or 070702)")]
    Magic {
        /// Where the header starts.
        offset: u64,
        /// The six bytes found (lossy text).
        found: String,
    },
    /// A header field is not 8 hexadecimal digits.
    #[error("offset {offset}: header field {field} {value:?} is not 8 hex digits")]
    Field {
        /// Where the field starts.
        offset: u64,
        /// The field's name (`ino`, `mode`, ..., `namesize`, `check`).
        field: &'static str,
        /// The bytes found (lossy text).
        value: String,
    },
    /// `namesize` is 0 or longer than [`MAX_NAME`].
    #[error("offset {offset}: header field namesize {size} is not within 1..={MAX_NAME}")]
    NameSize {
        /// Where the header starts.
        offset: u64,
        /// The size given.
        size: u32,
    },
    /// The name does not end with its NUL byte.
    #[error("offset {offset}: the entry name does not end with a NUL byte")]
    NameNul {
        /// Where the name starts.
        offset: u64,
    },
    /// The stream ends inside an entry.
    #[error("offset {offset}: the data ends inside {what}")]
    Truncated {
        /// Where the stream ended.
        offset: u64,
        /// `a header`, `a name` or `the data of <name>`.
        what: String,
    },
}

/// A regular file of the archive with the SHA-256 of its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioFile {
    /// The path as the unpacked file system has it: the archive's name with any leading `./`
    /// or `/` replaced by one `/` (`./init` and `init` are `/init`).
    pub path: String,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// The content's length.
    pub size: u64,
}

/// The fields of one header that matter here.
#[derive(Debug, Clone, Copy)]
struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    filesize: u32,
    devmajor: u32,
    devminor: u32,
    namesize: u32,
}

/// An entry whose data is being hashed.
struct Body {
    path: Option<String>,
    link: Option<(u32, u32, u32)>,
    size: u64,
    left: u64,
    hasher: Option<Sha256>,
}

enum State {
    /// Collecting a header's 110 bytes.
    Header,
    /// Collecting the name and its padding.
    Name(Header, u64),
    /// Streaming data.
    Data(Body),
    /// Skipping padding after the data.
    Pad(usize),
    /// The trailer was read.
    Done,
}

/// One link group: its names and the content written by its entries with data.
#[derive(Default)]
struct LinkGroup {
    names: Vec<String>,
    content: Option<([u8; 32], u64)>,
}

/// A newc cpio push parser (see the module documentation).
pub struct CpioParser {
    state: State,
    /// Bytes of the current header or name collected so far (at most 110 + 4096 + 3).
    buf: Vec<u8>,
    /// The stream offset of the next byte fed.
    offset: u64,
    /// Where the current entry's header started.
    entry_start: u64,
    links: BTreeMap<(u32, u32, u32), LinkGroup>,
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

fn empty_sha256() -> [u8; 32] {
    Sha256::digest([]).into()
}

/// The run-time path of an archive name: `.`, `./x`, `x`, `/x` → `/`, `/x`.
pub fn runtime_path(name: &str) -> String {
    let mut rest = name;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix('/') {
            rest = r;
        } else {
            break;
        }
    }
    if rest == "." {
        rest = "";
    }
    format!("/{rest}")
}

impl Default for CpioParser {
    fn default() -> CpioParser {
        CpioParser::new(0)
    }
}

impl CpioParser {
    /// A parser for an archive starting at stream offset `offset` (alignment counts from the
    /// stream's start, as the kernel does).
    pub fn new(offset: u64) -> CpioParser {
        CpioParser {
            state: State::Header,
            buf: Vec::with_capacity(HEADER_LEN),
            offset,
            entry_start: offset,
            links: BTreeMap::new(),
        }
    }

    /// True once the archive's trailer was read.
    pub fn done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The stream offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Starts the next archive of the same stream at the current offset (after a trailer and
    /// any zero padding the caller skipped with [`CpioParser::skip`]).
    pub fn next_archive(&mut self) {
        self.state = State::Header;
        self.buf.clear();
        self.entry_start = self.offset;
    }

    /// Counts `n` bytes the caller consumed itself (padding between archives).
    pub fn skip(&mut self, n: usize) {
        self.offset += n as u64;
    }

    /// Feeds the next bytes; `each` receives every regular file once its content is known.
    /// Returns how many bytes were consumed: all of them, or fewer when the trailer ended the
    /// archive (the rest belongs to whatever follows it).
    pub fn feed(
        &mut self,
        data: &[u8],
        each: &mut dyn FnMut(CpioFile),
    ) -> Result<usize, CpioError> {
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            let used = match &mut self.state {
                State::Done => return Ok(at),
                State::Header => {
                    let want = HEADER_LEN - self.buf.len();
                    let take = want.min(rest.len());
                    self.buf.extend_from_slice(&rest[..take]);
                    if self.buf.len() == HEADER_LEN {
                        let hdr = self.header()?;
                        let name_len = u64::from(hdr.namesize);
                        let padded =
                            name_len + pad4(self.entry_start + HEADER_LEN as u64 + name_len);
                        self.buf.clear();
                        self.state = State::Name(hdr, padded);
                    }
                    take
                }
                State::Name(hdr, padded) => {
                    let (hdr, padded) = (*hdr, *padded);
                    let want = padded as usize - self.buf.len();
                    let take = want.min(rest.len());
                    self.buf.extend_from_slice(&rest[..take]);
                    if self.buf.len() == padded as usize {
                        self.offset += take as u64;
                        self.named(hdr, each)?;
                        at += take;
                        continue;
                    }
                    take
                }
                State::Data(body) => {
                    let take = body.left.min(rest.len() as u64) as usize;
                    if let Some(h) = &mut body.hasher {
                        h.update(&rest[..take]);
                    }
                    body.left -= take as u64;
                    if body.left == 0 {
                        self.offset += take as u64;
                        self.body_done(each);
                        at += take;
                        continue;
                    }
                    take
                }
                State::Pad(left) => {
                    let take = (*left).min(rest.len());
                    *left -= take;
                    if *left == 0 {
                        self.state = State::Header;
                        self.entry_start = self.offset + take as u64;
                    }
                    take
                }
            };
            self.offset += used as u64;
            at += used;
        }
        Ok(at)
    }

    /// Checks that the stream may end here: between entries (the kernel accepts an archive
    /// without a trailer) and not inside one. Reports link groups still open.
    pub fn finish(&mut self, each: &mut dyn FnMut(CpioFile)) -> Result<(), CpioError> {
        let what = match &self.state {
            State::Done => None,
            State::Header if self.buf.is_empty() => None,
            State::Header => Some("a header".to_string()),
            State::Name(..) => Some("a name".to_string()),
            State::Data(b) => Some(format!(
                "the data of {}",
                b.path.as_deref().unwrap_or("a non-regular entry")
            )),
            // Missing padding after the last entry's data harms nothing.
            State::Pad(_) => None,
        };
        if let Some(what) = what {
            return Err(CpioError::Truncated {
                offset: self.offset,
                what,
            });
        }
        self.flush_links(each);
        Ok(())
    }

    fn header(&self) -> Result<Header, CpioError> {
        let b = &self.buf;
        let magic = &b[..6];
        if magic != b"070701" && magic != b"070702" {
            return Err(CpioError::Magic {
                offset: self.entry_start,
                found: String::from_utf8_lossy(magic).into_owned(),
            });
        }
        let mut v = [0u32; 13];
        for (i, field) in FIELDS.iter().enumerate() {
            let raw = &b[6 + 8 * i..14 + 8 * i];
            v[i] = parse_hex8(raw).ok_or_else(|| CpioError::Field {
                offset: self.entry_start + 6 + 8 * i as u64,
                field,
                value: String::from_utf8_lossy(raw).into_owned(),
            })?;
        }
        let hdr = Header {
            ino: v[0],
            mode: v[1],
            nlink: v[4],
            filesize: v[6],
            devmajor: v[7],
            devminor: v[8],
            namesize: v[11],
        };
        if hdr.namesize == 0 || hdr.namesize as usize > MAX_NAME {
            return Err(CpioError::NameSize {
                offset: self.entry_start,
                size: hdr.namesize,
            });
        }
        Ok(hdr)
    }

    /// The name (and its padding) is in `buf`: the entry's data follows.
    fn named(&mut self, hdr: Header, each: &mut dyn FnMut(CpioFile)) -> Result<(), CpioError> {
        let name_start = self.entry_start + HEADER_LEN as u64;
        let raw = &self.buf[..hdr.namesize as usize];
        let Some((&0, name)) = raw.split_last() else {
            return Err(CpioError::NameNul { offset: name_start });
        };
        if name == TRAILER {
            self.buf.clear();
            self.flush_links(each);
            self.state = State::Done;
            return Ok(());
        }
        let regular = hdr.mode & S_IFMT == S_IFREG;
        let path = regular.then(|| runtime_path(&String::from_utf8_lossy(name)));
        self.buf.clear();
        let size = u64::from(hdr.filesize);
        let body = Body {
            link: (regular && hdr.nlink >= 2).then_some((hdr.devmajor, hdr.devminor, hdr.ino)),
            path,
            size,
            left: size,
            hasher: regular.then(Sha256::new),
        };
        if size == 0 {
            self.state = State::Data(body);
            self.body_done(each);
        } else {
            self.state = State::Data(body);
        }
        Ok(())
    }

    /// The current entry's data was read: report it (or add it to its link group) and skip
    /// the padding.
    fn body_done(&mut self, each: &mut dyn FnMut(CpioFile)) {
        let State::Data(body) = std::mem::replace(&mut self.state, State::Header) else {
            return;
        };
        if let (Some(path), Some(h)) = (body.path, body.hasher) {
            let sha256: [u8; 32] = h.finalize().into();
            match body.link {
                Some(key) => {
                    let g = self.links.entry(key).or_default();
                    g.names.push(path);
                    if body.size > 0 {
                        g.content = Some((sha256, body.size));
                    }
                }
                None => each(CpioFile {
                    path,
                    sha256,
                    size: body.size,
                }),
            }
        }
        let pad = pad4(self.offset) as usize;
        if pad == 0 {
            self.entry_start = self.offset;
        } else {
            self.state = State::Pad(pad);
        }
    }

    fn flush_links(&mut self, each: &mut dyn FnMut(CpioFile)) {
        for (_, g) in std::mem::take(&mut self.links) {
            let (sha256, size) = g.content.unwrap_or_else(|| (empty_sha256(), 0));
            for path in g.names {
                each(CpioFile { path, sha256, size });
            }
        }
    }
}

fn parse_hex8(raw: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in raw {
        let d = (c as char).to_digit(16)?;
        v = (v << 4) | d;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A newc entry as GNU cpio writes it.
    fn entry(out: &mut Vec<u8>, name: &str, mode: u32, ino: u32, nlink: u32, data: &[u8]) {
        let namesize = name.len() + 1;
        out.extend_from_slice(
            format!(
                "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
                0, 0, 0, data.len(), 0, 1, 0, 0, 0
            )
            .as_bytes(),
        );
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }

    fn parse_all(data: &[u8], piece: usize) -> Result<(Vec<CpioFile>, usize), CpioError> {
        let mut p = CpioParser::new(0);
        let mut files = Vec::new();
        let mut used = 0;
        for chunk in data.chunks(piece.max(1)) {
            let n = p.feed(chunk, &mut |f| files.push(f))?;
            used += n;
            if n < chunk.len() {
                break;
            }
        }
        p.finish(&mut |f| files.push(f))?;
        Ok((files, used))
    }

    fn sample() -> Vec<u8> {
        let mut a = Vec::new();
        entry(&mut a, ".", 0o040755, 1, 2, b"");
        entry(&mut a, "./init", 0o100755, 2, 1, b"#!/bin/sh\necho hi\n");
        entry(&mut a, "usr/bin/sh", 0o100755, 3, 1, b"ELF....x");
        entry(&mut a, "bin", 0o120777, 4, 1, b"usr/bin");
        entry(&mut a, "empty", 0o100644, 5, 1, b"");
        // A hard link pair: data with the last name only.
        entry(&mut a, "a/one", 0o100644, 6, 2, b"");
        entry(&mut a, "a/two", 0o100644, 6, 2, b"shared");
        entry(&mut a, "TRAILER!!!", 0, 0, 1, b"");
        a
    }

    #[test]
    fn regular_files_with_their_runtime_paths_and_digests_in_any_piece_size() {
        let a = sample();
        let expect: Vec<(String, [u8; 32])> = vec![
            (
                "/init".into(),
                Sha256::digest(b"#!/bin/sh\necho hi\n").into(),
            ),
            ("/usr/bin/sh".into(), Sha256::digest(b"ELF....x").into()),
            ("/empty".into(), empty_sha256()),
            ("/a/one".into(), Sha256::digest(b"shared").into()),
            ("/a/two".into(), Sha256::digest(b"shared").into()),
        ];
        for piece in [1, 3, 7, 110, 4096] {
            let (files, used) = parse_all(&a, piece).unwrap();
            assert_eq!(used, a.len(), "piece {piece}");
            let got: Vec<_> = files.iter().map(|f| (f.path.clone(), f.sha256)).collect();
            assert_eq!(got, expect, "piece {piece}");
        }
    }

    #[test]
    fn the_trailer_stops_consumption_so_the_caller_sees_what_follows() {
        let mut a = sample();
        let end = a.len();
        a.extend_from_slice(&[0, 0, 0, 0, 0x28, 0xb5]);
        let (_, used) = parse_all(&a, 4096).unwrap();
        assert_eq!(used, end);
    }

    #[test]
    fn errors_name_the_offset_and_field() {
        let a = sample();
        let mut bad = a.clone();
        bad[0..6].copy_from_slice(b"070707");
        assert_eq!(
            parse_all(&bad, 64).unwrap_err(),
            CpioError::Magic {
                offset: 0,
                found: "070707".into()
            }
        );
        let mut bad = a.clone();
        bad[6 + 8 * 6] = b'g'; // filesize of the first entry
        let e = parse_all(&bad, 64).unwrap_err();
        assert!(
            matches!(
                e,
                CpioError::Field {
                    offset: 54,
                    field: "filesize",
                    ..
                }
            ),
            "{e}"
        );
        let mut bad = a.clone();
        bad[94..102].copy_from_slice(b"00001001"); // namesize 4097
        let e = parse_all(&bad, 64).unwrap_err();
        assert_eq!(
            e,
            CpioError::NameSize {
                offset: 0,
                size: 4097
            }
        );
        let mut bad = a.clone();
        bad[110 + 1] = b'x'; // the name "." loses its NUL
        assert_eq!(
            parse_all(&bad, 64).unwrap_err(),
            CpioError::NameNul { offset: 110 }
        );
        let e = parse_all(&a[..240], 64).unwrap_err();
        assert!(
            matches!(&e, CpioError::Truncated { offset: 240, what } if what == "the data of /init"),
            "{e}"
        );
        let e = parse_all(&a[..50], 64).unwrap_err();
        assert!(matches!(&e, CpioError::Truncated { offset: 50, what } if what == "a header"));
    }

    #[test]
    fn a_huge_declared_size_is_counted_not_allocated() {
        let mut a = Vec::new();
        entry(&mut a, "big", 0o100644, 1, 1, b"");
        // filesize ffffffff with 4 bytes of data: truncated, nothing allocated.
        a[54..62].copy_from_slice(b"ffffffff");
        a.extend_from_slice(b"abcd");
        let e = parse_all(&a, 4096).unwrap_err();
        assert!(matches!(e, CpioError::Truncated { .. }), "{e}");
    }

    #[test]
    fn runtime_paths() {
        for (name, path) in [
            (".", "/"),
            ("./init", "/init"),
            ("init", "/init"),
            ("usr/bin/sh", "/usr/bin/sh"),
            ("/etc/x", "/etc/x"),
            ("././a", "/a"),
        ] {
            assert_eq!(runtime_path(name), path);
        }
    }
}
