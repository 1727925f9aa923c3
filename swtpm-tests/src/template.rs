//! The prepared swtpm state: made once by `swtpm_setup` with EK and platform certificates from a
//! local CA, cached under the system temp directory, and copied into every test's directory.

use crate::swtpm::HarnessError;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bump when the way the template is made changes, so stale caches are not reused.
const VERSION: &str = "v2";

/// Where the prepared state is cached (`VOUCH_SWTPM_CACHE` overrides).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("VOUCH_SWTPM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("vouch-swtpm-template-{VERSION}")))
}

/// Returns the template directory (holding `state/` and `ca/`), creating it if needed. Safe against
/// concurrent test processes: each builds in its own directory and renames it into place.
pub fn ensure() -> Result<PathBuf, HarnessError> {
    let dir = cache_dir();
    if dir.join("ready").exists() {
        return Ok(dir);
    }
    let build = PathBuf::from(format!(
        "{}.build-{}-{:?}",
        dir.display(),
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = fs::remove_dir_all(&build);
    make(&build)?;
    fs::write(build.join("ready"), b"ok").map_err(|e| HarnessError::io(&build, e))?;
    if fs::rename(&build, &dir).is_err() {
        // Somebody else won the race; use theirs.
        let _ = fs::remove_dir_all(&build);
    }
    if dir.join("ready").exists() {
        Ok(dir)
    } else {
        Err(HarnessError::Setup(format!(
            "swtpm template at {} is incomplete; remove it",
            dir.display()
        )))
    }
}

/// Writes swtpm_setup / swtpm_localca configuration pointing at `ca_dir`.
pub fn write_configs(dir: &Path, ca_dir: &Path) -> Result<PathBuf, HarnessError> {
    let localca_conf = dir.join("swtpm-localca.conf");
    let localca_opts = dir.join("swtpm-localca.options");
    let setup_conf = dir.join("swtpm_setup.conf");
    let w = |p: &Path, s: String| fs::write(p, s).map_err(|e| HarnessError::io(p, e));
    w(
        &localca_conf,
        format!(
            "statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\n\
             certserial = {ca}/certserial\n",
            ca = ca_dir.display()
        ),
    )?;
    w(
        &localca_opts,
        "--platform-manufacturer Vouch\n--platform-version 2.1\n--platform-model swtpm\n".into(),
    )?;
    w(
        &setup_conf,
        format!(
            "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {}\n\
             create_certs_tool_options = {}\nactive_pcr_banks = sha1,sha256\n",
            localca_conf.display(),
            localca_opts.display()
        ),
    )?;
    Ok(setup_conf)
}

fn make(dir: &Path) -> Result<(), HarnessError> {
    let state = dir.join("state");
    let ca = dir.join("ca");
    for d in [&state, &ca] {
        fs::create_dir_all(d).map_err(|e| HarnessError::io(d, e))?;
    }
    let conf = write_configs(dir, &ca)?;
    let out = Command::new("swtpm_setup")
        .args(["--tpm2", "--create-ek-cert", "--create-platform-cert"])
        .args(["--pcr-banks", "sha1,sha256"])
        .arg("--tpmstate")
        .arg(&state)
        .arg("--config")
        .arg(&conf)
        .output()
        .map_err(|e| HarnessError::Spawn("swtpm_setup".into(), e))?;
    if !out.status.success() {
        return Err(HarnessError::Setup(format!(
            "swtpm_setup failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// Copies a directory tree (flat files and one level of subdirectories is all swtpm needs).
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), HarnessError> {
    fs::create_dir_all(to).map_err(|e| HarnessError::io(to, e))?;
    for entry in fs::read_dir(from).map_err(|e| HarnessError::io(from, e))? {
        let entry = entry.map_err(|e| HarnessError::io(from, e))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        if src.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            fs::copy(&src, &dst).map_err(|e| HarnessError::io(&src, e))?;
        }
    }
    Ok(())
}
