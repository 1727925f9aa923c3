//! This boot's id, read once where the agent starts: from `VOUCH_BOOT_ID` when set (the shipped
//! unit passes systemd's `%b` there, because its `ProcSubset=pid` hides
//! `/proc/sys/kernel/random/boot_id`), else from that file. Either a [`BootId`] or an error
//! naming both places: never a default, which would make every boot look the same and disarm
//! the escrow release's one-boot binding.

use std::path::{Path, PathBuf};
use vouch_attest::boot::{BootId, BootIdError};

/// The environment variable the unit sets (`Environment=VOUCH_BOOT_ID=%b`).
pub const ENV: &str = "VOUCH_BOOT_ID";
/// The kernel's file.
pub const PROC_FILE: &str = "/proc/sys/kernel/random/boot_id";

/// The boot id could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// `VOUCH_BOOT_ID` is set but is not a boot id.
    #[error("{ENV} is set but is not a boot id")]
    Env(#[source] BootIdError),
    /// The kernel's file could not be read (and `VOUCH_BOOT_ID` is not set).
    #[error("cannot read the boot id from {path} and {ENV} is not set (under systemd, set Environment={ENV}=%b)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The kernel's file does not hold a boot id.
    #[error("{path} does not hold a boot id")]
    Parse {
        path: PathBuf,
        #[source]
        source: BootIdError,
    },
}

/// This boot's id, from the environment or the kernel.
pub fn current() -> Result<BootId, BootError> {
    from(std::env::var(ENV).ok().as_deref(), Path::new(PROC_FILE))
}

/// The boot id from `env` (the value of [`ENV`], if set) or else the file `proc`.
pub fn from(env: Option<&str>, proc: &Path) -> Result<BootId, BootError> {
    if let Some(v) = env {
        return v.parse().map_err(BootError::Env);
    }
    let text = std::fs::read_to_string(proc).map_err(|source| BootError::Read {
        path: proc.to_path_buf(),
        source,
    })?;
    text.parse().map_err(|source| BootError::Parse {
        path: proc.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_first_then_the_kernel_then_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("boot_id");
        std::fs::write(&file, "0f1e8a3c-5b7d-4e2a-9c61-3d4b5a6f7e80\n").unwrap();
        let from_file = from(None, &file).unwrap();
        assert_eq!(
            from_file.to_string(),
            "0f1e8a3c-5b7d-4e2a-9c61-3d4b5a6f7e80"
        );
        // systemd's %b form names the same boot.
        let from_env = from(Some("0f1e8a3c5b7d4e2a9c613d4b5a6f7e80"), &file).unwrap();
        assert_eq!(from_env, from_file);
        // A bad variable is an error, not a fall back to the file.
        assert!(matches!(
            from(Some("unknown"), &file),
            Err(BootError::Env(_))
        ));
        // Hidden file (ProcSubset=pid) and no variable: an error, never "unknown".
        let hidden = dir.path().join("missing");
        let e = from(None, &hidden).unwrap_err();
        assert!(matches!(e, BootError::Read { .. }));
        assert!(e.to_string().contains("VOUCH_BOOT_ID"), "{e}");
        std::fs::write(&file, "unknown\n").unwrap();
        assert!(matches!(from(None, &file), Err(BootError::Parse { .. })));
    }
}
