//! Loopback TCP relay to a swtpm that listens on unix sockets.
//!
//! tss-esapi 7.7 configures the swtpm TCTI with a host and port only, while swtpm is often run with
//! `--server type=unixio` (data socket `X`, control socket `X.ctrl`). This relay listens on
//! `127.0.0.1:P` and `127.0.0.1:P+1` (the swtpm TCTI's fixed data/control pairing) and forwards
//! each connection to the two unix sockets. It runs on plain threads for the life of the process.

use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;

/// Why the relay could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// No pair of adjacent loopback ports could be bound.
    #[error("no free pair of loopback ports for the swtpm relay")]
    Bind(#[source] io::Error),
    /// The swtpm unix socket is not there.
    #[error("swtpm socket {path} is not reachable")]
    Unreachable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Starts a relay to the swtpm at `path` (control at `path.ctrl`); returns the data port.
pub fn start(path: &Path) -> Result<u16, RelayError> {
    UnixStream::connect(path).map_err(|source| RelayError::Unreachable {
        path: path.to_path_buf(),
        source,
    })?;
    let ctrl_path = PathBuf::from(format!("{}.ctrl", path.display()));
    let (data, ctrl) = bind_pair()?;
    let port = data.local_addr().map_err(RelayError::Bind)?.port();
    spawn_forwarder(data, path.to_path_buf());
    spawn_forwarder(ctrl, ctrl_path);
    Ok(port)
}

fn bind_pair() -> Result<(TcpListener, TcpListener), RelayError> {
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no attempt made");
    for _ in 0..64 {
        let data = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(RelayError::Bind)?;
        let port = data.local_addr().map_err(RelayError::Bind)?.port();
        let Some(next) = port.checked_add(1) else {
            continue;
        };
        match TcpListener::bind((Ipv4Addr::LOCALHOST, next)) {
            Ok(ctrl) => return Ok((data, ctrl)),
            Err(e) => last = e,
        }
    }
    Err(RelayError::Bind(last))
}

fn spawn_forwarder(listener: TcpListener, target: PathBuf) {
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(tcp) = conn else { continue };
            let Ok(unix) = UnixStream::connect(&target) else {
                continue;
            };
            if let Err(e) = pipe(tcp, unix) {
                tracing::warn!(error = %crate::exit::Chain(&e), "swtpm relay connection failed");
            }
        }
    });
}

fn pipe(tcp: TcpStream, unix: UnixStream) -> io::Result<()> {
    let (mut tcp_r, mut unix_w) = (tcp.try_clone()?, unix.try_clone()?);
    let (mut unix_r, mut tcp_w) = (unix, tcp);
    thread::spawn(move || {
        let _ = io::copy(&mut tcp_r, &mut unix_w);
        let _ = unix_w.shutdown(std::net::Shutdown::Write);
    });
    thread::spawn(move || {
        let _ = io::copy(&mut unix_r, &mut tcp_w);
        let _ = tcp_w.shutdown(std::net::Shutdown::Write);
    });
    Ok(())
}
