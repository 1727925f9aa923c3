//! A minimal writer for the "newc" cpio format (SVR4 without CRC), the format the Linux kernel
//! unpacks as an initramfs. Entries are written in the order given, with mtime 0 and sequential
//! inode numbers, so the same input always gives the same bytes (and the same PCR 9 measurement
//! when the EFI stub measures the initrd).

use std::io::Write;

/// What went wrong writing an archive.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// The entry name is empty, absolute or contains a NUL byte.
    #[error("cpio entry name {0:?} is not a relative path without NUL bytes")]
    BadName(String),
    /// A field does not fit the format's 32-bit hexadecimal fields.
    #[error("cpio entry {name}: {field} {value} does not fit in 32 bits")]
    TooLarge {
        name: String,
        field: &'static str,
        value: u64,
    },
    /// Writing to the output failed.
    #[error("writing cpio entry {name}")]
    Write {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// File type bits of cpio's mode field.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Symbolic link (the data is the target).
pub const S_IFLNK: u32 = 0o120000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;

/// Streams newc entries into `W`; call [`Writer::finish`] to write the trailer.
pub struct Writer<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

impl<W: Write> Writer<W> {
    /// Starts an archive on `out`.
    pub fn new(out: W) -> Writer<W> {
        Writer {
            out,
            ino: 1,
            written: 0,
        }
    }

    fn put(&mut self, name: &str, bytes: &[u8]) -> Result<(), CpioError> {
        self.out
            .write_all(bytes)
            .map_err(|source| CpioError::Write {
                name: name.to_string(),
                source,
            })?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, name: &str) -> Result<(), CpioError> {
        let rem = (4 - (self.written % 4) as usize) % 4;
        self.put(name, &[0u8; 3][..rem])
    }

    fn header(
        &mut self,
        name: &str,
        mode: u32,
        size: u64,
        rdev: (u32, u32),
    ) -> Result<(), CpioError> {
        let size32 = u32::try_from(size).map_err(|_| CpioError::TooLarge {
            name: name.to_string(),
            field: "size",
            value: size,
        })?;
        let namesize = name.len() as u64 + 1;
        let namesize32 = u32::try_from(namesize).map_err(|_| CpioError::TooLarge {
            name: name.to_string(),
            field: "name length",
            value: namesize,
        })?;
        let nlink = if mode & 0o170000 == S_IFDIR { 2 } else { 1 };
        let fields = [
            self.ino, mode, 0, 0, nlink, 0, size32, 0, 0, rdev.0, rdev.1, namesize32, 0,
        ];
        self.ino = self.ino.wrapping_add(1);
        let mut h = String::with_capacity(110);
        h.push_str("070701");
        for f in fields {
            h.push_str(&format!("{f:08x}"));
        }
        self.put(name, h.as_bytes())?;
        self.put(name, name.as_bytes())?;
        self.put(name, &[0])?;
        self.pad(name)
    }

    fn check(name: &str) -> Result<(), CpioError> {
        if name.is_empty() || name.starts_with('/') || name.contains('\0') {
            return Err(CpioError::BadName(name.to_string()));
        }
        Ok(())
    }

    /// A directory with permission bits `perm`.
    pub fn dir(&mut self, name: &str, perm: u32) -> Result<(), CpioError> {
        Self::check(name)?;
        self.header(name, S_IFDIR | (perm & 0o7777), 0, (0, 0))
    }

    /// A regular file with permission bits `perm` and contents `data`.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), CpioError> {
        Self::check(name)?;
        self.header(name, S_IFREG | (perm & 0o7777), data.len() as u64, (0, 0))?;
        self.put(name, data)?;
        self.pad(name)
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> Result<(), CpioError> {
        Self::check(name)?;
        self.header(name, S_IFLNK | 0o777, target.len() as u64, (0, 0))?;
        self.put(name, target.as_bytes())?;
        self.pad(name)
    }

    /// A character device node (major, minor), e.g. /dev/console (5, 1).
    pub fn char_dev(&mut self, name: &str, perm: u32, dev: (u32, u32)) -> Result<(), CpioError> {
        Self::check(name)?;
        self.header(name, S_IFCHR | (perm & 0o7777), 0, dev)
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> Result<W, CpioError> {
        self.header("TRAILER!!!", 0, 0, (0, 0))?;
        self.out.flush().map_err(|source| CpioError::Write {
            name: "TRAILER!!!".into(),
            source,
        })?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_cpio_reads_them_back() {
        let mut w = Writer::new(Vec::new());
        w.dir("etc", 0o755).unwrap();
        w.file("etc/hosts", 0o644, b"10.0.2.100 vouch-broker\n")
            .unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"070701"));
        assert!(Writer::new(Vec::new()).file("/abs", 0o644, b"").is_err());
        // The system's cpio, or busybox's, is the oracle for the format: extract and compare.
        let tool = ["cpio", "busybox"]
            .into_iter()
            .find(|t| std::process::Command::new(t).arg("--help").output().is_ok());
        let Some(tool) = tool else {
            eprintln!("neither cpio nor busybox installed: checked alignment and magic only");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new(tool);
        if tool == "busybox" {
            cmd.arg("cpio");
        }
        let mut child = cmd
            .args(["-i", "-d"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hosts = std::fs::read(dir.path().join("etc/hosts")).unwrap();
        assert_eq!(hosts, b"10.0.2.100 vouch-broker\n");
        let link = std::fs::read_link(dir.path().join("bin/sh")).unwrap();
        assert_eq!(link, std::path::Path::new("busybox"));
    }
}
