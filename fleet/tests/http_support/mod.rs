//! Helpers of the `http_*` tests: a webhook receiver on a real socket and the independent
//! verifiers (promtool, PyJWT, openssl).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: String,
    pub signature: String,
    pub body: Vec<u8>,
    /// The status it answered.
    pub answered: u16,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// An HTTP receiver that answers 500 to the first `fail_first` requests, then 204.
pub struct Receiver {
    pub port: u16,
    pub got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start(fail_first: usize) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for stream in l.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let (mut len, mut event, mut sig) = (0usize, String::new(), String::new());
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    let value = line.split_once(':').map(|x| x.1.trim().to_string());
                    if lower.starts_with("content-length:") {
                        len = value.unwrap_or_default().parse().unwrap_or(0);
                    } else if lower.starts_with("x-vouch-event:") {
                        event = value.unwrap_or_default();
                    } else if lower.starts_with("x-vouch-signature:") {
                        sig = value.unwrap_or_default();
                    }
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                let mut all = g.lock().unwrap();
                let answered = if all.len() < fail_first { 500 } else { 204 };
                all.push(Received {
                    event,
                    signature: sig,
                    body,
                    answered,
                    at: std::time::Instant::now(),
                });
                drop(all);
                let reason = if answered == 500 {
                    "Internal Server Error"
                } else {
                    "No Content"
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {answered} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Receiver { port, got }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// `promtool check metrics` on `text`: its exit status and output.
pub fn promtool_check(text: &str) -> (bool, String) {
    let mut c = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (apt-get install prometheus; scripts/install-deps.sh)");
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// HMAC-SHA256 of `body` under `key` by openssl, as `sha256=<hex>`.
pub fn openssl_hmac(key: &str, body: &[u8]) -> String {
    let mut c = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", key, "-r"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(body).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    format!(
        "sha256={}",
        text.split_whitespace().next().unwrap_or_default()
    )
}

/// The Python of the PyJWT venv (`scripts/install-deps.sh` makes it:
/// /var/tmp/vouch-tools/pyjwt-venv with PyJWT[crypto] from PyPI).
pub fn pyjwt_python() -> PathBuf {
    let p = PathBuf::from("/var/tmp/vouch-tools/pyjwt-venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run scripts/install-deps.sh (python3 -m venv + pip install PyJWT[crypto])",
        p.display()
    );
    p
}

/// The relying party's check shown in fleet/README.md (the first ```python block after the
/// "Signed results" heading), run with FLEET, DEVICE and NONCE; its standard output, or the
/// failure.
pub fn readme_relying_party_check(
    fleet: &str,
    device: &str,
    nonce: &str,
) -> Result<String, String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## Signed results").expect("README section")..];
    let start = section.find("```python\n").expect("python block") + "```python\n".len();
    let code = &section[start..start + section[start..].find("```").unwrap()];
    let out = Command::new(pyjwt_python())
        .args(["-c", code])
        .env("FLEET", fleet)
        .env("DEVICE", device)
        .env("NONCE", nonce)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
