//! The sealed secret never crosses the TPM bus in clear: a private swtpm logs every command and
//! response byte (`--log level=20`), the agent seals and unseals a random secret, and the log
//! is searched for it. A PCR extend digest — a parameter sent without encryption — is found in
//! the same log, which shows the search would see a secret that travelled in clear.

use rand_core::{OsRng, RngCore};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::str::FromStr;
use std::time::{Duration, Instant};
use vouch_agent::seal::SealPolicy;
use vouch_agent::tpm::esapi::EsapiTpm;
use vouch_agent::tpm::{Tcti, Tpm};
use vouch_attest::HashAlg;

/// Kills swtpm when the test ends, also on panic.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port P with P+1 free too (swtpm's control channel must be P+1).
fn port_pair() -> u16 {
    loop {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// Every byte swtpm logged as command or response data, in order (hex dump lines only).
fn bus_bytes(log: &str) -> Vec<u8> {
    log.lines()
        .filter_map(|line| {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            let hex_line = !tokens.is_empty()
                && tokens
                    .iter()
                    .all(|t| t.len() == 2 && t.chars().all(|c| c.is_ascii_hexdigit()));
            hex_line.then(|| {
                tokens
                    .iter()
                    .filter_map(|t| u8::from_str_radix(t, 16).ok())
                    .collect::<Vec<u8>>()
            })
        })
        .flatten()
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_secret_is_encrypted_on_the_bus_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bus.log");
    let port = port_pair();
    let child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--server"])
        .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
        .arg("--ctrl")
        .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
        .arg("--tpmstate")
        .arg(format!("dir={}", dir.path().display()))
        .arg("--log")
        .arg(format!("file={},level=20", log.display()))
        .args(["--flags", "not-need-init,startup-clear"])
        .spawn()
        .expect("swtpm is installed");
    let _swtpm = Process(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "swtpm did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }

    let mut secret = vec![0u8; 48];
    OsRng.fill_bytes(&mut secret);
    let mut control = vec![0u8; 32];
    OsRng.fill_bytes(&mut control);
    {
        let tcti = Tcti::from_str(&format!("swtpm:host=127.0.0.1,port={port}")).unwrap();
        let mut agent = EsapiTpm::open(&tcti, &dir.path().join("agent")).unwrap();
        agent
            .pcr_extend(16, &[(HashAlg::Sha256, control.clone())])
            .unwrap();
        let policy = SealPolicy::Pcr {
            selection: "sha256:7".parse().unwrap(),
            values: None,
        };
        let sealed = agent.seal(&secret, &policy).unwrap();
        assert_eq!(*agent.unseal(&sealed, None).unwrap(), secret);
    }
    let bytes = bus_bytes(&std::fs::read_to_string(&log).unwrap());
    assert!(bytes.len() > 1000, "swtpm logged the bus traffic");
    assert!(
        contains(&bytes, &control),
        "an unencrypted parameter is visible in the log"
    );
    // Neither the whole secret nor either half appears (TPM2_Create command, Unseal response).
    for part in [&secret[..], &secret[..24], &secret[24..]] {
        assert!(
            !contains(&bytes, part),
            "secret bytes crossed the bus in clear"
        );
    }
}
