//! What the command-line tests (`seal_cli`, `volume_cli`, `volume_systemd`) share: a test
//! directory beside a swtpm, `vouch-agent` run with its state there, PCR 7 changed with
//! tpm2-tools, files written mode 0600, and cryptsetup. Each test wraps [`CliEnv`] in its own
//! `Env` (dereferencing to it) for what only it needs.

use crate::{Output, Swtpm};
use std::path::Path;
use std::process::Command;

/// A swtpm and the test's directory.
pub struct CliEnv<'a> {
    /// The TPM the agent uses.
    pub tpm: &'a Swtpm,
    /// The test's directory (the agent's state is `state` in it).
    pub dir: &'a Path,
}

impl CliEnv<'_> {
    /// The path of `name` in the test directory, as a string for command lines.
    pub fn p(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// Runs `vouch-agent ARGS` with its state in the test directory.
    pub fn agent(&self, args: &[&str]) -> Output {
        self.tpm.agent(&self.dir.join("state"), args)
    }

    /// Extends sha256 PCR 7 with `byte` repeated (a changed boot).
    pub fn extend7(&self, byte: &str) {
        self.tpm
            .tpm2(&["tpm2_pcrextend", &format!("7:sha256={}", byte.repeat(32))]);
    }
}

/// Runs cryptsetup (its exit status is the caller's to check).
pub fn cryptsetup(args: &[&str]) -> std::process::Output {
    Command::new("cryptsetup")
        .args(args)
        .output()
        .expect("cryptsetup is installed")
}

/// Writes `data` to `path` with mode 0600 (passphrase files the agent accepts).
pub fn write_0600(path: &str, data: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
}
