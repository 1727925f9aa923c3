//! Reading the boot components a Debian package holds, for `vouch-fleet release approve --deb`:
//! the package is an `ar` archive whose `data.tar` (plain, `.gz` or `.xz`) holds the files; the
//! ones a boot measures are kept: kernels (`boot/vmlinuz-*`) and signed or unsigned EFI images
//! (`*.efi`, `*.efi.signed`). Bytes in, typed results out; sizes are bounded.

use std::io::Read;
use thiserror::Error;

/// Largest decompressed `data.tar` read.
pub const MAX_DATA_TAR_BYTES: u64 = 1 << 30;

/// Why a package was refused.
#[derive(Debug, Error)]
pub enum DebError {
    /// Not an `ar` archive.
    #[error("not a Debian package (no ar archive signature)")]
    NotAr,
    /// An `ar` member header is malformed or runs past the end.
    #[error("ar member at byte {offset}: malformed header or size")]
    ArMember {
        /// Offset of the header.
        offset: usize,
    },
    /// No `data.tar*` member.
    #[error("no data.tar member")]
    NoData,
    /// A compression this reader does not decode.
    #[error("{0}: unsupported compression (data.tar, .gz and .xz are read)")]
    Compression(String),
    /// Decompression failed.
    #[error("{member}: cannot decompress: {why}")]
    Decompress {
        /// The member.
        member: String,
        /// Why.
        why: String,
    },
    /// Larger than [`MAX_DATA_TAR_BYTES`] decompressed.
    #[error("{0}: larger than {MAX_DATA_TAR_BYTES} bytes decompressed")]
    TooLarge(String),
    /// The tar archive does not read.
    #[error("data.tar does not read")]
    Tar(#[source] std::io::Error),
}

/// What a file in the package is to a boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootFileKind {
    /// A kernel image (`boot/vmlinuz-*`).
    Kernel,
    /// An EFI image (shim, GRUB, systemd-boot, a UKI).
    Efi,
}

/// A boot file found in the package.
#[derive(Debug)]
pub struct BootFile {
    /// Its path in the package (without a leading `./`).
    pub path: String,
    /// What it is.
    pub kind: BootFileKind,
    /// Its contents.
    pub data: Vec<u8>,
}

fn ar_members(deb: &[u8]) -> Result<Vec<(String, &[u8])>, DebError> {
    let body = deb.strip_prefix(b"!<arch>\n").ok_or(DebError::NotAr)?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < body.len() {
        let offset = pos + 8;
        let bad = || DebError::ArMember { offset };
        let header = body.get(pos..pos + 60).ok_or_else(bad)?;
        if &header[58..60] != b"`\n" {
            return Err(bad());
        }
        let name = String::from_utf8_lossy(&header[..16])
            .trim_end()
            .trim_end_matches('/')
            .to_owned();
        let size: usize = std::str::from_utf8(&header[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(bad)?;
        let start = pos + 60;
        let data = start
            .checked_add(size)
            .and_then(|end| body.get(start..end))
            .ok_or_else(bad)?;
        out.push((name, data));
        pos = start + size + (size % 2);
    }
    Ok(out)
}

fn classify(path: &str) -> Option<BootFileKind> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if path.starts_with("boot/") && name.starts_with("vmlinuz-") {
        Some(BootFileKind::Kernel)
    } else if name.ends_with(".efi") || name.ends_with(".efi.signed") {
        Some(BootFileKind::Efi)
    } else {
        None
    }
}

fn bounded(member: &str, r: impl Read) -> Result<Vec<u8>, DebError> {
    let mut out = Vec::new();
    r.take(MAX_DATA_TAR_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| DebError::Decompress {
            member: member.to_owned(),
            why: e.to_string(),
        })?;
    if out.len() as u64 > MAX_DATA_TAR_BYTES {
        return Err(DebError::TooLarge(member.to_owned()));
    }
    Ok(out)
}

/// Caps what the xz decoder may write.
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() as u64 + buf.len() as u64 > MAX_DATA_TAR_BYTES {
            return Err(std::io::Error::other("decompressed size limit"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn data_tar(name: &str, data: &[u8]) -> Result<Vec<u8>, DebError> {
    match name {
        "data.tar" => Ok(data.to_vec()),
        "data.tar.gz" => bounded(name, flate2::read::GzDecoder::new(data)),
        "data.tar.xz" => {
            let mut out = Capped(Vec::new());
            lzma_rs::xz_decompress(&mut std::io::BufReader::new(data), &mut out).map_err(|e| {
                if out.0.len() as u64 >= MAX_DATA_TAR_BYTES / 2 {
                    DebError::TooLarge(name.to_owned())
                } else {
                    DebError::Decompress {
                        member: name.to_owned(),
                        why: format!("{e:?}"),
                    }
                }
            })?;
            Ok(out.0)
        }
        other => Err(DebError::Compression(other.to_owned())),
    }
}

/// The kernels and EFI images in a Debian package, in archive order.
pub fn boot_files(deb: &[u8]) -> Result<Vec<BootFile>, DebError> {
    let members = ar_members(deb)?;
    let (name, data) = members
        .iter()
        .find(|(n, _)| n.starts_with("data.tar"))
        .ok_or(DebError::NoData)?;
    let tar_bytes = data_tar(name, data)?;
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut out = Vec::new();
    for entry in archive.entries().map_err(DebError::Tar)? {
        let mut entry = entry.map_err(DebError::Tar)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(DebError::Tar)?;
        let path = path.to_string_lossy();
        let path = path.trim_start_matches("./").to_owned();
        let Some(kind) = classify(&path) else {
            continue;
        };
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(DebError::Tar)?;
        out.push(BootFile { path, kind, data });
    }
    Ok(out)
}
