//! One swtpm process per test on a private loopback port pair and state directory.

use crate::template;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What went wrong setting up or talking to a test swtpm.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A program could not be started (not installed?).
    #[error("cannot run {0} (is it installed? `make test` installs it)")]
    Spawn(String, #[source] std::io::Error),
    /// A file operation failed.
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// swtpm_setup or swtpm itself failed.
    #[error("{0}")]
    Setup(String),
}

impl HarnessError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> HarnessError {
        HarnessError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A running swtpm owned by one test.
pub struct Swtpm {
    child: Option<Child>,
    port: u16,
    unix: bool,
    dir: tempfile::TempDir,
}

impl Swtpm {
    /// Starts a fresh swtpm with EK certificates (RSA-2048 at 0x01c00002, ECC P-384 at
    /// 0x01c00016), sha1 and sha256 banks, and its local CA under [`Swtpm::ca_dir`].
    pub fn start() -> Result<Swtpm, HarnessError> {
        Swtpm::start_with(false)
    }

    /// Like [`Swtpm::start`] but listening on unix sockets (`<dir>/swtpm.sock` and
    /// `<dir>/swtpm.sock.ctrl`), as `swtpm --server type=unixio` is often deployed.
    pub fn start_unix() -> Result<Swtpm, HarnessError> {
        Swtpm::start_with(true)
    }

    fn start_with(unix: bool) -> Result<Swtpm, HarnessError> {
        let template = template::ensure()?;
        let dir = tempfile::Builder::new()
            .prefix("vouch-swtpm-")
            .tempdir()
            .map_err(|e| HarnessError::io(&std::env::temp_dir(), e))?;
        template::copy_tree(&template.join("state"), &dir.path().join("state"))?;
        template::copy_tree(&template.join("ca"), &dir.path().join("ca"))?;
        let mut tpm = Swtpm {
            child: None,
            port: 0,
            unix,
            dir,
        };
        tpm.launch()?;
        Ok(tpm)
    }

    fn launch(&mut self) -> Result<(), HarnessError> {
        let state = self.dir.path().join("state");
        let log = self.dir.path().join("swtpm.log");
        let mut last = String::new();
        for _ in 0..20 {
            let port = free_port_pair()?;
            let (server, ctrl) = if self.unix {
                let sock = self.socket_path();
                let _ = std::fs::remove_file(&sock);
                (
                    format!("type=unixio,path={}", sock.display()),
                    format!("type=unixio,path={}.ctrl", sock.display()),
                )
            } else {
                (
                    format!("type=tcp,port={port},bindaddr=127.0.0.1"),
                    format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
                )
            };
            let mut child = Command::new("swtpm")
                .args(["socket", "--tpm2"])
                .arg("--server")
                .arg(server)
                .arg("--ctrl")
                .arg(ctrl)
                .arg("--tpmstate")
                .arg(format!("dir={}", state.display()))
                .arg("--log")
                .arg(format!("file={},level=1", log.display()))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| HarnessError::Spawn("swtpm".into(), e))?;
            let started = Instant::now();
            let deadline = started + Duration::from_secs(5);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut s) = child.stderr.take() {
                        let _ = s.read_to_string(&mut err);
                    }
                    last = format!("swtpm exited with {status}: {}", err.trim());
                    break;
                }
                // Another test may have taken the ports between free_port_pair() and swtpm's
                // bind; then this swtpm exits right after starting while the probe reaches the
                // other test's listener: probe only once it has run for a while, and take the
                // ports only if it is still alive.
                if started.elapsed() >= Duration::from_millis(100) && self.listening(port) {
                    if let Ok(None) = child.try_wait() {
                        self.child = Some(child);
                        self.port = port;
                        return Ok(());
                    }
                    continue;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = "swtpm did not open its ports within 5 s".into();
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Err(HarnessError::Setup(last))
    }

    fn listening(&self, port: u16) -> bool {
        if self.unix {
            let sock = self.socket_path();
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
                && std::os::unix::net::UnixStream::connect(format!("{}.ctrl", sock.display()))
                    .is_ok()
        } else {
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
                && TcpStream::connect((Ipv4Addr::LOCALHOST, port + 1)).is_ok()
        }
    }

    /// Sends `msg` on the data or control channel and reads `answer` bytes (best effort).
    fn exchange(&self, ctrl: bool, msg: &[u8], answer: usize) {
        fn talk<S: Read + Write>(mut s: S, msg: &[u8], answer: usize) {
            let _ = s.write_all(msg);
            let mut buf = vec![0u8; answer];
            let _ = s.read_exact(&mut buf);
        }
        let timeout = Some(Duration::from_secs(5));
        if self.unix {
            let mut path = self.socket_path().into_os_string();
            if ctrl {
                path.push(".ctrl");
            }
            if let Ok(s) = std::os::unix::net::UnixStream::connect(&path) {
                let _ = s.set_read_timeout(timeout);
                talk(s, msg, answer);
            }
        } else if let Ok(s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port + u16::from(ctrl)))
        {
            let _ = s.set_read_timeout(timeout);
            talk(s, msg, answer);
        }
    }

    fn socket_path(&self) -> PathBuf {
        self.dir.path().join("swtpm.sock")
    }

    /// The TCTI string for tss-esapi, tpm2-tools and `vouch-agent --tcti`.
    pub fn tcti(&self) -> String {
        if self.unix {
            format!("swtpm:path={}", self.socket_path().display())
        } else {
            format!("swtpm:host=127.0.0.1,port={}", self.port)
        }
    }

    /// The TPM command port (the control port is one above).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// This test's private directory (state, CA, anything else the test wants to put there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The local CA that issued this TPM's EK certificates.
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// The root certificate of the local CA (trust anchor for EK certificates).
    pub fn ca_root_cert(&self) -> PathBuf {
        self.ca_dir().join("swtpm-localca-rootca-cert.pem")
    }

    /// Sends TPM2_Shutdown(CLEAR) and stops swtpm cleanly (no dictionary-attack strike), keeping
    /// the state; [`Swtpm::restart`] boots it again ("reboot": PCRs reset, keys kept).
    pub fn shutdown(&mut self) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // TPM2_Shutdown(TPM_SU_CLEAR): tag, size 12, TPM_CC_Shutdown, shutdownType.
        self.exchange(
            false,
            &[0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x45, 0, 0],
            10,
        );
        // CMD_SHUTDOWN (3) on the control channel makes swtpm save state and exit.
        self.exchange(true, &[0, 0, 0, 3], 4);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(HarnessError::Setup(
            "swtpm did not stop after CMD_SHUTDOWN".into(),
        ))
    }

    /// Starts swtpm again on the same state (after [`Swtpm::shutdown`]), possibly on a new port.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.shutdown()?;
        self.launch()
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Finds a port P with P and P+1 both free on loopback (swtpm's TCTI needs control at P+1).
fn free_port_pair() -> Result<u16, HarnessError> {
    for _ in 0..100 {
        let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| HarnessError::io(Path::new("127.0.0.1"), e))?;
        let port = a
            .local_addr()
            .map_err(|e| HarnessError::io(Path::new("127.0.0.1"), e))?
            .port();
        if port < u16::MAX && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err(HarnessError::Setup("no free loopback port pair".into()))
}

#[cfg(test)]
mod tests {
    use super::HarnessError;
    use std::path::Path;
    use vouch_attest::errors::chain;

    #[test]
    fn messages_do_not_repeat_their_source() {
        let gone = || std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        assert_eq!(
            chain(&HarnessError::io(Path::new("/x"), gone())),
            "/x: gone"
        );
        assert_eq!(
            chain(&HarnessError::Spawn("swtpm".into(), gone())),
            "cannot run swtpm (is it installed? `make test` installs it): gone"
        );
    }
}
