//! One durable writer for every state file of Vouch (agent and fleet).
//!
//! [`write`] replaces a file so that after it returns the new contents survive a crash or power
//! loss, and at no moment does a reader (or a restarted process) see a partial file:
//!
//! 1. create a temporary file in the same directory, with the requested mode (whatever the umask);
//! 2. write the contents to it;
//! 3. fsync the temporary file;
//! 4. rename it over the target (atomic within one file system);
//! 5. fsync the directory, so that the rename itself is on disk.
//!
//! If any step before the rename fails the target is left as it was and the temporary file is
//! removed. If the final directory sync fails the new contents are in place but not known to be
//! durable; the error says so ([`Step::SyncDir`]).
//!
//! The file-system steps go through the [`FileSystem`] trait so that tests can record their order
//! and inject faults; [`RealFs`] is the default.

#![forbid(unsafe_code)]

use std::fmt;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of secrets, keys and state only the owner reads.
pub const MODE_PRIVATE: u32 = 0o600;
/// Mode of public material (certificates, public keys, configuration others read).
pub const MODE_PUBLIC: u32 = 0o644;

/// One step of a durable write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Creating the temporary file next to the target.
    CreateTemp,
    /// Writing the contents to the temporary file.
    Write,
    /// Syncing the temporary file to disk.
    SyncFile,
    /// Renaming the temporary file over the target.
    Rename,
    /// Syncing the directory so the rename is on disk.
    SyncDir,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::CreateTemp => "creating the temporary file",
            Step::Write => "writing the temporary file",
            Step::SyncFile => "syncing the temporary file",
            Step::Rename => "renaming the temporary file over it",
            Step::SyncDir => "syncing its directory",
        })
    }
}

/// A durable write failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path has no parent directory or no file name.
    #[error("{path} does not name a file in a directory")]
    NotAFile { path: PathBuf },
    /// A step of the write failed.
    #[error("cannot write {path}: {step} failed")]
    Step {
        /// The target.
        path: PathBuf,
        /// The step that failed.
        step: Step,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The target of the failed write.
    pub fn path(&self) -> &Path {
        match self {
            Error::NotAFile { path } | Error::Step { path, .. } => path,
        }
    }

    /// The step that failed (none when the path was unusable).
    pub fn step(&self) -> Option<Step> {
        match self {
            Error::NotAFile { .. } => None,
            Error::Step { step, .. } => Some(*step),
        }
    }

    /// The kind of the underlying I/O error.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::NotAFile { .. } => io::ErrorKind::InvalidInput,
            Error::Step { source, .. } => source.kind(),
        }
    }
}

/// The failed step as an I/O error, for callers whose errors hold the path and an
/// [`io::Error`]: the kind is kept, the message names the step and the cause stays its source.
#[derive(Debug, thiserror::Error)]
#[error("{step} failed")]
struct StepFailed {
    step: Step,
    #[source]
    source: io::Error,
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = e.kind();
        match e {
            e @ Error::NotAFile { .. } => io::Error::new(kind, e),
            Error::Step { step, source, .. } => io::Error::new(kind, StepFailed { step, source }),
        }
    }
}

/// The file-system operations a durable write is made of.
pub trait FileSystem {
    /// An open temporary file.
    type File;
    /// Creates a new file at `path` with exactly `mode`.
    fn create_temp(&self, path: &Path, mode: u32) -> io::Result<Self::File>;
    /// Writes all of `data`.
    fn write_all(&self, file: &mut Self::File, data: &[u8]) -> io::Result<()>;
    /// Syncs the file's contents and metadata to disk.
    fn sync_file(&self, file: &mut Self::File) -> io::Result<()>;
    /// Renames `from` over `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Syncs the directory `dir` to disk.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Removes a temporary file after a failure.
    fn remove_temp(&self, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl FileSystem for RealFs {
    type File = File;

    fn create_temp(&self, path: &Path, mode: u32) -> io::Result<File> {
        // A leftover of a crashed writer with the same name would keep its old mode and contents.
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?;
        // The umask may have cleared bits of `mode`: set it exactly.
        if let Err(e) = file.set_permissions(Permissions::from_mode(mode)) {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(file)
    }

    fn write_all(&self, file: &mut File, data: &[u8]) -> io::Result<()> {
        file.write_all(data)
    }

    fn sync_file(&self, file: &mut File) -> io::Result<()> {
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn remove_temp(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
}

/// Writes files durably through a [`FileSystem`].
#[derive(Debug, Default, Clone)]
pub struct Writer<F = RealFs> {
    fs: F,
}

impl Writer<RealFs> {
    /// A writer on the real file system.
    pub fn new() -> Self {
        Writer { fs: RealFs }
    }
}

/// Distinguishes the temporary files of concurrent writes within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl<F: FileSystem> Writer<F> {
    /// A writer on `fs`.
    pub fn with_fs(fs: F) -> Self {
        Writer { fs }
    }

    /// The file system it writes through.
    pub fn fs(&self) -> &F {
        &self.fs
    }

    /// Replaces `path` with `data` durably; a new file gets `mode`, a replaced one too. The
    /// directory must exist.
    pub fn write(&self, path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
        let (dir, name) = match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => (dir, name),
            _ => {
                return Err(Error::NotAFile {
                    path: path.to_path_buf(),
                })
            }
        };
        // `Path::new("f").parent()` is the empty path: the current directory.
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        // Hidden and ending in `.tmp`, so no directory scan takes it for a state file.
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(
            ".{}-{}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = dir.join(tmp_name);
        let fail = |step, source| Error::Step {
            path: path.to_path_buf(),
            step,
            source,
        };
        let staged = self
            .fs
            .create_temp(&tmp, mode)
            .map_err(|e| (Step::CreateTemp, e))
            .and_then(|mut file| {
                self.fs
                    .write_all(&mut file, data)
                    .map_err(|e| (Step::Write, e))?;
                self.fs
                    .sync_file(&mut file)
                    .map_err(|e| (Step::SyncFile, e))
                // The file is closed here, before the rename.
            })
            .and_then(|()| self.fs.rename(&tmp, path).map_err(|e| (Step::Rename, e)));
        if let Err((step, source)) = staged {
            // Best effort: the target is untouched either way, and a failed create may have
            // left nothing to remove.
            let _ = self.fs.remove_temp(&tmp);
            return Err(fail(step, source));
        }
        self.fs.sync_dir(dir).map_err(|e| fail(Step::SyncDir, e))
    }
}

/// Replaces `path` with `data` durably on the real file system (see the crate documentation).
pub fn write(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    Writer::new().write(path, data, mode)
}

#[cfg(test)]
mod tests;
