//! File helpers for the fleet directory: private directories (0700), atomic replacement of files
//! with an explicit mode (keys 0600), appending records, and size-bounded reads.
//!
//! Every replacement goes through the one durable writer (`vouch_durable`): a temporary file in the
//! same directory is written, synced and renamed over the target, and the directory is synced, so
//! a reader (mosquitto reloading `crl.pem`) never sees a half-written file and a crash never loses
//! a file that was reported written.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of private keys and of the state files only the fleet reads.
pub const MODE_PRIVATE: u32 = 0o600;
/// Mode of public material (certificates, CRL, broker configuration).
pub const MODE_PUBLIC: u32 = 0o644;
/// Mode of the fleet directory and its sub-directories.
pub const MODE_DIR: u32 = 0o700;

/// A file operation on the fleet directory failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A directory could not be created.
    #[error("cannot create directory {path}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Permissions could not be set.
    #[error("cannot set mode {mode:o} on {path}")]
    SetMode {
        path: PathBuf,
        mode: u32,
        source: std::io::Error,
    },
    /// Appending to a file failed.
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Replacing a file failed (the error names the file and the step).
    #[error(transparent)]
    Replace(#[from] vouch_durable::Error),
    /// A file could not be opened or read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file is larger than this kind of file may be.
    #[error("{path} is larger than the limit of {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
}

/// Creates `path` (and missing parents) and sets its mode to 0700.
pub fn create_private_dir(path: &Path) -> Result<(), FileError> {
    fs::create_dir_all(path).map_err(|source| FileError::CreateDir {
        path: path.to_path_buf(),
        source,
    })?;
    set_mode(path, MODE_DIR)
}

/// Sets the permission bits of `path`.
pub fn set_mode(path: &Path, mode: u32) -> Result<(), FileError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| {
        FileError::SetMode {
            path: path.to_path_buf(),
            mode,
            source,
        }
    })
}

/// Replaces `path` with `contents` durably; the file has `mode` from the moment it exists.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    Ok(vouch_durable::write(path, contents, mode)?)
}

/// Appends `line` (which must end in a newline) to `path`, creating it with `mode` if needed.
pub fn append_line(path: &Path, line: &str, mode: u32) -> Result<(), FileError> {
    let write_err = |source| FileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(mode)
        .open(path)
        .map_err(write_err)?;
    file.write_all(line.as_bytes()).map_err(write_err)?;
    file.sync_all().map_err(write_err)
}

/// Reads `path` whole, refusing files larger than `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let read_err = |source| FileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let mut buf = Vec::new();
    // Read one byte past the limit to tell "exactly the limit" from "too large".
    file.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if u64::try_from(buf.len()).map_or(true, |n| n > limit) {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(buf)
}

/// Reads a UTF-8 text file whole, refusing files larger than `limit` bytes.
pub fn read_text_bounded(path: &Path, limit: u64) -> Result<String, FileError> {
    let bytes = read_bounded(path, limit)?;
    String::from_utf8(bytes).map_err(|e| FileError::Read {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_atomic(&p, b"one", MODE_PUBLIC).unwrap();
        write_atomic(&p, b"two", MODE_PRIVATE).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn bounded_read_refuses_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, [7u8; 10]).unwrap();
        assert_eq!(read_bounded(&p, 10).unwrap().len(), 10);
        assert!(matches!(
            read_bounded(&p, 9),
            Err(FileError::TooLarge { limit: 9, .. })
        ));
    }
}
