//! The real-server side of the VM tests: a Debian 12 disk image with systemd as PID 1 (built and
//! cached by `scripts/vm-debian-image.sh`, see there for what it holds) and the project's own
//! `vouch-agent` packages, built from this test run's binaries by `scripts/deb-build.sh`, which
//! the tests install in the running guest with apt as an operator would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use vouch_attest::errors::chain;

/// What went wrong preparing the image or the packages.
#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    /// A script could not be started.
    #[error("cannot run {script}")]
    Spawn {
        script: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A script failed.
    #[error("{script} failed ({status}): {stderr}")]
    Failed {
        script: PathBuf,
        status: std::process::ExitStatus,
        stderr: String,
    },
    /// The image script printed no `image=` line.
    #[error("{0} printed no image= line")]
    NoImage(PathBuf),
    /// The package script wrote no `vouch-agent` package.
    #[error("{0}: no vouch-agent_*.deb written")]
    NoPackage(PathBuf),
    /// Preparing the host for the VM tests failed.
    #[error("preparing the VM host")]
    Prep(#[from] super::prep::PrepError),
    /// An earlier attempt in this process failed.
    #[error("the Debian image failed earlier in this process: {0}")]
    Earlier(String),
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn script(name: &str, args: &[&str], env: &[(&str, &Path)]) -> Result<String, DebianError> {
    let path = repo().join("scripts").join(name);
    let mut cmd = Command::new("bash");
    cmd.arg(&path).args(args).stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().map_err(|source| DebianError::Spawn {
        script: path.clone(),
        source,
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The tail is what matters (mmdebstrap and apt are verbose).
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        return Err(DebianError::Failed {
            script: path,
            status: out.status,
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn build_image() -> Result<PathBuf, DebianError> {
    super::prep::prepare()?;
    let out = script("vm-debian-image.sh", &[], &[])?;
    out.lines()
        .rev()
        .find_map(|l| l.strip_prefix("image="))
        .map(PathBuf::from)
        .ok_or_else(|| DebianError::NoImage(repo().join("scripts/vm-debian-image.sh")))
}

/// The cached Debian server image (built on first use; minutes on a fresh machine), once per
/// process. Boot it with [`super::Machine::new_server`], which never writes to it.
pub fn image() -> Result<PathBuf, DebianError> {
    static ONCE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ONCE.get_or_init(|| build_image().map_err(|e| chain(&e)))
        .clone()
        .map_err(DebianError::Earlier)
}

/// Packages the `vouch-agent` binary this test run was built with as a .deb with Debian
/// revision `revision` into `out` and returns its path.
pub fn agent_package(out: &Path, revision: u32) -> Result<PathBuf, DebianError> {
    let bin = crate::bin_path("vouch-agent");
    let profile_dir = bin.parent().unwrap_or(Path::new("."));
    let target_dir = profile_dir.parent().unwrap_or(Path::new("."));
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => "dev",
    };
    let revision = revision.to_string();
    let out_str = out.to_string_lossy();
    let printed = script(
        "deb-build.sh",
        &[
            "--no-build",
            "--profile",
            profile,
            "--package",
            "vouch-agent",
            "--deb-revision",
            &revision,
            "--out",
            &out_str,
        ],
        &[("CARGO_TARGET_DIR", target_dir)],
    )?;
    printed
        .lines()
        .rev()
        .map(PathBuf::from)
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vouch-agent_") && n.ends_with(".deb"))
                && p.exists()
        })
        .ok_or_else(|| DebianError::NoPackage(out.to_path_buf()))
}
