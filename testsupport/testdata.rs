//! Where the shared test data is (`../shared/testdata`: real event logs and their ground truth).
//! One file, included with `#[path]` by every test suite and bench that reads the data.
//!
//! Looked up in this order: `$VOUCH_TESTDATA` (the Makefile sets it for a clone made away from
//! `shared/`, see `scripts/testdata-dir.sh`); `shared/testdata` beside the repository or beside
//! one of its ancestors (a git worktree sits deeper). When none exists the documented location
//! is returned, so the first read names it in its error.

use std::path::{Path, PathBuf};

/// The `testdata` directory.
pub fn testdata_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VOUCH_TESTDATA").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared/testdata"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| manifest.join("../../shared/testdata"))
}

/// `testdata/eventlogs`.
#[allow(dead_code)]
pub fn eventlogs_dir() -> PathBuf {
    testdata_dir().join("eventlogs")
}

/// `testdata/ima`.
#[allow(dead_code)]
pub fn ima_dir() -> PathBuf {
    testdata_dir().join("ima")
}
