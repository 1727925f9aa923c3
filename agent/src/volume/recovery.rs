//! Files that carry a volume's recovery between the root-run volume commands and the agent
//! daemon (which runs as its own user and cannot open block devices):
//!
//! - `<state>/escrow/<uuid>.json`: the escrow record `volume create` made (ciphertext for the
//!   fleet's escrow key only, so world-readable), which the daemon deposits with the fleet.
//! - `<state>/recovery/<uuid>.sealed`: a recovery passphrase the fleet released to this device,
//!   sealed by the daemon to this TPM under PolicyPCR over [`RECOVERY_PCRS`] (the boot it was
//!   released for). `volume reseal` without `--recovery-file` unseals it, opens the recovery
//!   keyslot, re-seals keyslot 0 and deletes it.
//!
//! Volume UUIDs name files, and a UUID can come from the fleet: only canonical UUID text is
//! accepted.

use std::path::{Path, PathBuf};

/// The PCRs a released passphrase is sealed to while it waits for `volume reseal`.
pub const RECOVERY_PCRS: &str = "sha256:0,1,2,3,4,5,6,7,8,9";
/// Largest escrow record read.
pub const MAX_RECORD: u64 = 64 * 1024;

/// Why a recovery file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryFileError {
    /// The UUID is not canonical UUID text.
    #[error("{0:?} is not a volume UUID (8-4-4-4-12 hex digits)")]
    Uuid(String),
    /// Reading or writing a file failed.
    #[error("accessing {path} failed")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Checks canonical UUID text (hex digits and dashes in 8-4-4-4-12 groups).
pub fn check_uuid(uuid: &str) -> Result<(), RecoveryFileError> {
    let groups: Vec<&str> = uuid.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let hex = groups
        .iter()
        .all(|g| g.bytes().all(|c| c.is_ascii_hexdigit()));
    if lens == [8, 4, 4, 4, 12] && hex {
        Ok(())
    } else {
        Err(RecoveryFileError::Uuid(uuid.to_owned()))
    }
}

/// `<state>/escrow/<uuid>.json`.
pub fn record_path(state: &Path, uuid: &str) -> Result<PathBuf, RecoveryFileError> {
    check_uuid(uuid)?;
    Ok(state.join("escrow").join(format!("{uuid}.json")))
}

/// `<state>/recovery/<uuid>.sealed`.
pub fn sealed_path(state: &Path, uuid: &str) -> Result<PathBuf, RecoveryFileError> {
    check_uuid(uuid)?;
    Ok(state.join("recovery").join(format!("{uuid}.sealed")))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecoveryFileError + '_ {
    move |source| RecoveryFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `data` to `path` durably (`vouch_durable`), creating the directory; `mode` applies to
/// the file.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), RecoveryFileError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    vouch_durable::write(path, data, mode).map_err(|e| io(path)(e.into()))
}

/// Every escrow record file in `<state>/escrow` (name, contents), sorted by name; unreadable
/// or oversized files are returned as errors in place.
pub fn records(state: &Path) -> Vec<Result<(String, Vec<u8>), RecoveryFileError>> {
    let dir = state.join("escrow");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut names: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            use std::io::Read;
            let mut data = Vec::new();
            std::fs::File::open(&p)
                .and_then(|f| f.take(MAX_RECORD).read_to_end(&mut data))
                .map_err(io(&p))?;
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((name, data))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_checked_before_they_name_files() {
        let state = Path::new("/var/lib/vouch");
        let u = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        assert_eq!(
            sealed_path(state, u).unwrap(),
            state.join("recovery").join(format!("{u}.sealed"))
        );
        for bad in [
            "",
            "../../etc/passwd",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f",
            "0f1e2d3c/4b5a-6978-8796-a5b4c3d2e1f0",
            "zf1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        ] {
            assert!(record_path(state, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn records_are_listed_and_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert!(records(dir.path()).is_empty());
        let u = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        let p = record_path(dir.path(), u).unwrap();
        write_atomic(&p, b"{}", 0o644).unwrap();
        write_atomic(&dir.path().join("escrow/notes.txt"), b"x", 0o644).unwrap();
        let got: Vec<(String, Vec<u8>)> = records(dir.path())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, vec![(u.to_owned(), b"{}".to_vec())]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
}
