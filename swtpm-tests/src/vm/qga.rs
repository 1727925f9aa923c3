//! Typing commands into a running Debian guest through qemu-guest-agent (the `qemu-guest-agent`
//! package in the server image), the way cloud tooling does: a virtio-serial port the host
//! reaches as a unix socket, JSON commands `guest-exec` and `guest-exec-status`. No login, no
//! network, no helper of our own in the guest; the commands run as root under the guest's
//! systemd.
//!
//! Each call opens a fresh connection and first synchronises with `guest-sync-delimited` (a
//! random id, answered after a 0xFF byte), so a reply left over from an earlier, abandoned
//! connection is never taken for this one's.

use base64::Engine;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What went wrong talking to the guest agent.
#[derive(Debug, thiserror::Error)]
pub enum QgaError {
    /// The socket could not be used.
    #[error("guest agent socket {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The agent answered with an error object.
    #[error("guest agent refused {command}: {error}")]
    Refused { command: String, error: String },
    /// The answer was not what the protocol says.
    #[error("guest agent answered {command} with {answer}")]
    Protocol { command: String, answer: String },
    /// The guest agent did not answer in time (guest still booting, or hung).
    #[error("the guest agent did not answer within {0:?}")]
    NoAnswer(Duration),
    /// A command ran longer than allowed.
    #[error("{script:?} still running after {secs} s")]
    Timeout { script: String, secs: u64 },
}

/// The outcome of a command run in the guest.
#[derive(Debug, Clone)]
pub struct GuestOutput {
    /// Exit status (`-1` when the command was killed by a signal).
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl GuestOutput {
    /// stdout and stderr together, for assertion messages.
    pub fn text(&self) -> String {
        format!(
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A guest agent reached through qemu's chardev socket.
#[derive(Debug, Clone)]
pub struct GuestAgent {
    socket: PathBuf,
}

impl GuestAgent {
    /// The agent behind `socket` (qemu `-chardev socket,server=on,wait=off`).
    pub fn new(socket: &Path) -> GuestAgent {
        GuestAgent {
            socket: socket.to_path_buf(),
        }
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> QgaError + '_ {
        move |source| QgaError::Io {
            path: self.socket.clone(),
            source,
        }
    }

    /// Sends one command and returns its `return` value; waits at most `timeout` for the answer.
    pub fn call(
        &self,
        command: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<Value, QgaError> {
        let mut stream = UnixStream::connect(&self.socket).map_err(self.io())?;
        stream.set_read_timeout(Some(timeout)).map_err(self.io())?;
        let id: u32 = rand::random::<u32>() >> 1;
        let sync = json!({"execute": "guest-sync-delimited", "arguments": {"id": id}});
        stream
            .write_all(format!("{sync}\n").as_bytes())
            .map_err(self.io())?;
        let mut reader = BufReader::new(stream.try_clone().map_err(self.io())?);
        // Skip everything up to the delimiter, then read lines until the sync answer.
        let mut skipped = Vec::new();
        reader.read_until(0xff, &mut skipped).map_err(|e| {
            timed_out(e, timeout).unwrap_or_else(|e| QgaError::Io {
                path: self.socket.clone(),
                source: e,
            })
        })?;
        loop {
            let answer = read_json(&mut reader, timeout, &self.socket)?;
            if answer["return"] == json!(id) {
                break;
            }
        }
        let request = if arguments.is_null() {
            json!({"execute": command})
        } else {
            json!({"execute": command, "arguments": arguments})
        };
        stream
            .write_all(format!("{request}\n").as_bytes())
            .map_err(self.io())?;
        let answer = read_json(&mut reader, timeout, &self.socket)?;
        if let Some(error) = answer.get("error") {
            return Err(QgaError::Refused {
                command: command.to_string(),
                error: error.to_string(),
            });
        }
        answer
            .get("return")
            .cloned()
            .ok_or_else(|| QgaError::Protocol {
                command: command.to_string(),
                answer: answer.to_string(),
            })
    }

    /// Waits until the guest agent answers `guest-ping` (the guest reached the point where
    /// udev started qemu-guest-agent.service).
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), QgaError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .call("guest-ping", Value::Null, Duration::from_secs(3))
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(QgaError::NoAnswer(timeout));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Runs `script` with `/bin/sh -c` in the guest as root and waits for it (at most `timeout`).
    pub fn sh(&self, script: &str, timeout: Duration) -> Result<GuestOutput, QgaError> {
        let started = self.call(
            "guest-exec",
            json!({"path": "/bin/sh", "arg": ["-c", script], "capture-output": true}),
            Duration::from_secs(30),
        )?;
        let pid = started["pid"].as_i64().ok_or_else(|| QgaError::Protocol {
            command: "guest-exec".into(),
            answer: started.to_string(),
        })?;
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.call(
                "guest-exec-status",
                json!({"pid": pid}),
                Duration::from_secs(30),
            )?;
            if status["exited"] == json!(true) {
                let text = |key: &str| {
                    status
                        .get(key)
                        .and_then(Value::as_str)
                        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                };
                return Ok(GuestOutput {
                    code: status["exitcode"].as_i64().unwrap_or(-1),
                    stdout: text("out-data"),
                    stderr: text("err-data"),
                });
            }
            if Instant::now() > deadline {
                return Err(QgaError::Timeout {
                    script: script.chars().take(200).collect(),
                    secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Asks the guest to power off cleanly (systemd's shutdown: units stop, file systems are
    /// unmounted, the kernel sends TPM2_Shutdown). The agent does not answer this command.
    pub fn shutdown(&self) -> Result<(), QgaError> {
        let mut stream = UnixStream::connect(&self.socket).map_err(self.io())?;
        let request = json!({"execute": "guest-shutdown", "arguments": {"mode": "powerdown"}});
        stream
            .write_all(format!("{request}\n").as_bytes())
            .map_err(self.io())
    }
}

fn timed_out(e: std::io::Error, timeout: Duration) -> Result<QgaError, std::io::Error> {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            Ok(QgaError::NoAnswer(timeout))
        }
        _ => Err(e),
    }
}

/// Reads one JSON object (one line) from the agent.
fn read_json(
    reader: &mut BufReader<UnixStream>,
    timeout: Duration,
    socket: &Path,
) -> Result<Value, QgaError> {
    loop {
        let mut line = String::new();
        let n = reader
            .by_ref()
            .take(16 << 20)
            .read_line(&mut line)
            .map_err(|e| {
                timed_out(e, timeout).unwrap_or_else(|source| QgaError::Io {
                    path: socket.to_path_buf(),
                    source,
                })
            })?;
        if n == 0 {
            return Err(QgaError::Io {
                path: socket.to_path_buf(),
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        let line = line.trim_matches(|c: char| c.is_whitespace() || c == '\u{ff}');
        if line.is_empty() {
            continue;
        }
        return serde_json::from_str(line).map_err(|_| QgaError::Protocol {
            command: "(reading)".into(),
            answer: line.chars().take(300).collect(),
        });
    }
}
