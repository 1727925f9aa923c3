//! Running the workspace's binaries (`vouch-agent`, `vouch-fleet`) from integration tests.
//!
//! Cargo only builds a package's own binaries for its tests, so the harness finds the sibling
//! binaries next to the test executable's profile directory; `make test` builds them first.

use std::path::PathBuf;
use std::process::Command;

/// Result of running a binary: exit code and captured output.
#[derive(Debug)]
pub struct Output {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

/// Path of a workspace binary in the same profile directory as the running test.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // Tests run as target/<profile>/deps/<test-exe>, the demo as target/<profile>/<demo>.
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the workspace binaries first (`cargo build --workspace --bins`, \
         which `make test` does)",
        path.display()
    );
    path
}

/// Runs a workspace binary with arguments and the given extra environment.
pub fn run(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin_path(name));
    cmd.args(args).env("TSS2_LOG", "all+none");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
