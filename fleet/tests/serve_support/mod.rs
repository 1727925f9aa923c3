//! Shared set-up of the `serve_*` tests: a fleet directory from `init`, the real mosquitto on it,
//! `vouch-fleet serve` as a process, a private swtpm booted from a real event log, and a test
//! agent that plays the device through the `vouch-agent` library (the `Tpm` trait on the swtpm,
//! rumqttc with the agent's rustls configurations).
#![allow(dead_code)]

pub mod agent;
pub mod mqtt;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vouch_fleet::pki::setup::{init_fleet, InitOptions};
use vouch_fleet::registry::{AuditEntry, Registry, StoredVerdict};

/// The real event log the swtpm is booted from (sha1 + sha256, PCR0 from locality 0).
pub const BOOT_LOG: &str = "eventlogs/t2t_event-arch-linux.bin";

/// `<manifest>/../../shared/testdata/<rel>` (the repository is a sibling of `shared/`);
/// `VOUCH_TESTDATA` overrides the directory for checkouts elsewhere (worktrees).
pub fn testdata(rel: &str) -> PathBuf {
    testdata::testdata_dir().join(rel)
}

#[path = "../../../testsupport/testdata.rs"]
mod testdata;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free port that is none of the broker's listeners in the fleet directory `dir` (a port from
/// [`free_port`] is free only until someone binds it).
pub fn free_port_besides(dir: &std::path::Path) -> u16 {
    let conf = std::fs::read_to_string(dir.join("mosquitto.conf")).unwrap_or_default();
    loop {
        let p = free_port();
        if !conf
            .lines()
            .any(|l| l.starts_with(&format!("listener {p}")))
        {
            return p;
        }
    }
}

/// The password in the PostgreSQL URL of a fleet started with `Settings::postgres`.
pub const PG_PASSWORD: &str = "pw-never-shown-7f3a";

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fleet directory with its broker and server running.
pub struct Fleet {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub port: u16,
    pub enroll_port: u16,
    pub config: PathBuf,
    broker: Option<Proc>,
    server: Option<Proc>,
}

/// Changes to the generated fleet.toml.
#[derive(Default, Clone, Copy)]
pub struct Settings {
    pub nonce_lifetime_secs: Option<u64>,
    pub revoke_on_untrusted: bool,
    /// Drop the broker's `max_packet_size`, to show the fleet does not depend on it.
    pub no_broker_size_limit: bool,
    /// Keep the registry in a fresh database of the test process's private PostgreSQL cluster
    /// instead of the SQLite file.
    pub postgres: bool,
}

impl Fleet {
    /// `init` + settings + mosquitto; trust roots = `trust` files (copied); server started.
    pub fn start(settings: Settings, trust: &[PathBuf]) -> Fleet {
        Fleet::start_with(settings, trust, |text, _| text)
    }

    /// [`Fleet::start`] with `edit(fleet.toml text, fleet dir)` applied after the settings.
    pub fn start_with(
        settings: Settings,
        trust: &[PathBuf],
        edit: impl FnOnce(String, &std::path::Path) -> String,
    ) -> Fleet {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("fleet");
        let port = free_port();
        let enroll_port = loop {
            let p = free_port();
            if p != port {
                break p;
            }
        };
        init_fleet(&InitOptions {
            dir: dir.clone(),
            broker_port: port,
            enroll_port,
            dynsec_plugin: None,
            server_names: vec![],
            force: false,
        })
        .unwrap();
        let config = dir.join("fleet.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        if let Some(n) = settings.nonce_lifetime_secs {
            assert!(text.contains("nonce_lifetime_secs = 120"));
            text = text.replace(
                "nonce_lifetime_secs = 120",
                &format!("nonce_lifetime_secs = {n}"),
            );
        }
        if settings.postgres {
            let url = swtpm_tests::postgres::PgCluster::shared()
                .database()
                .unwrap_or_else(|e| panic!("{e}"));
            // With a password (the test cluster trusts local connections and never asks for
            // it), which must appear in no log or output.
            let url = url.replacen(
                "postgresql://vouch@",
                &format!("postgresql://vouch:{PG_PASSWORD}@"),
                1,
            );
            assert!(url.contains(PG_PASSWORD), "{url}");
            assert!(text.contains("backend = \"sqlite\""));
            text = text.replace(
                "backend = \"sqlite\"",
                &format!("backend = \"postgres\"\nurl = \"{url}\"\npool_size = 2"),
            );
        }
        if settings.revoke_on_untrusted {
            assert!(text.contains("revoke_on_untrusted = false"));
            text = text.replace("revoke_on_untrusted = false", "revoke_on_untrusted = true");
        }
        std::fs::write(&config, edit(text, &dir)).unwrap();
        if settings.no_broker_size_limit {
            let conf = dir.join("mosquitto.conf");
            let text = std::fs::read_to_string(&conf).unwrap();
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with("max_packet_size "))
                .collect();
            assert!(kept.len() < text.lines().count(), "no max_packet_size line");
            std::fs::write(&conf, kept.join("\n")).unwrap();
        }
        let roots = dir.join("trust-roots");
        std::fs::create_dir_all(&roots).unwrap();
        for (i, t) in trust.iter().enumerate() {
            std::fs::copy(t, roots.join(format!("{i}.pem"))).unwrap();
        }
        let broker = Command::new("mosquitto")
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (apt-get install mosquitto)");
        let broker = Proc(broker);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The pid file appears once mosquitto is up; serve needs it to reload.
        while !dir.join("mosquitto.pid").exists() {
            assert!(Instant::now() < deadline, "mosquitto wrote no pid file");
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::File::create(tmp.path().join("serve.log")).unwrap();
        let server = Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
            .args(["serve", "--allow-root", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let fleet = Fleet {
            tmp,
            dir,
            port,
            enroll_port,
            config,
            broker: Some(broker),
            server: Some(Proc(server)),
        };
        fleet.wait_log("connected to the broker", Duration::from_secs(10));
        fleet
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("serve.log")).unwrap_or_default()
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.server_log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "server log lacks {needle:?}:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The fleet's registry (SQLite or PostgreSQL, as fleet.toml says).
    pub fn registry(&self) -> Registry {
        let cfg = vouch_fleet::config::FleetConfig::load(&self.config).unwrap();
        Registry::for_config(&cfg).unwrap()
    }

    /// Waits for the verdict with an id above `after`.
    pub fn wait_verdict(&self, device: &str, after: i64, timeout: Duration) -> StoredVerdict {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.registry().verdicts(device, 1).unwrap();
            if let Some(v) = v.into_iter().find(|v| v.id > after) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no verdict for {device}:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `vouch-fleet attest ID --wait 10` in the background (the test answers the challenge
    /// meanwhile).
    pub fn attest_in_background(&self, id: &str) -> tokio::task::JoinHandle<std::process::Output> {
        let (bin, config, id) = (
            env!("CARGO_BIN_EXE_vouch-fleet"),
            self.config.clone(),
            id.to_string(),
        );
        tokio::task::spawn_blocking(move || {
            Command::new(bin)
                .args(["attest", &id, "--wait", "10", "--config"])
                .arg(config)
                .output()
                .unwrap()
        })
    }

    /// Waits for an audit row of `kind` whose detail contains `needle`.
    pub fn wait_audit(&self, kind: &str, needle: &str, timeout: Duration) -> AuditEntry {
        let deadline = Instant::now() + timeout;
        loop {
            let rows = self.registry().audit_entries(None).unwrap();
            if let Some(r) = rows
                .into_iter()
                .find(|r| r.kind == kind && r.detail.contains(needle))
            {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no audit row {kind} {needle:?}:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `vouch-fleet ARGS --config <fleet.toml>`.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_vouch-fleet"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
}
