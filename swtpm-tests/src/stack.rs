//! The whole Vouch system as processes: a fleet directory from `vouch-fleet init`, the real
//! mosquitto running its generated configuration, `vouch-fleet serve`, and `vouch-agent run`
//! processes against test swtpms. Used by the end-to-end tests and by `make demo`.

use crate::bins::bin_path;
use crate::swtpm::{HarnessError, Swtpm};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed on drop.
pub struct Proc(Child);

impl Proc {
    /// Kills the process now.
    pub fn stop(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fleet, broker and server, each in its own temp directory, killed on drop.
pub struct FleetStack {
    tmp: tempfile::TempDir,
    port: u16,
    enroll_port: u16,
    broker: Option<Proc>,
    server: Option<Proc>,
}

/// Polls `ok` every 20 ms until it holds, or fails after `timeout` naming `what`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut ok: impl FnMut() -> bool,
) -> Result<(), HarnessError> {
    let deadline = Instant::now() + timeout;
    while !ok() {
        if Instant::now() > deadline {
            return Err(HarnessError::Setup(format!("timed out waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn spawn(cmd: &mut Command, log: &Path) -> Result<Proc, HarnessError> {
    let out = std::fs::File::create(log).map_err(|e| HarnessError::io(log, e))?;
    cmd.stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .map(Proc)
        .map_err(|e| HarnessError::Spawn(format!("{cmd:?}"), e))
}

impl FleetStack {
    /// `vouch-fleet init` on a free port, `edit` applied to fleet.toml, `trust` copied into the
    /// trust-roots directory, then mosquitto and `vouch-fleet serve` started.
    pub fn start(
        trust: &[PathBuf],
        edit: impl Fn(String) -> String,
    ) -> Result<FleetStack, HarnessError> {
        FleetStack::start_with_names(trust, &[], edit)
    }

    /// Like [`FleetStack::start`], with extra `--server-name` values for the broker certificate
    /// (e.g. the name a VM guest resolves to its guestfwd address).
    pub fn start_with_names(
        trust: &[PathBuf],
        server_names: &[&str],
        edit: impl Fn(String) -> String,
    ) -> Result<FleetStack, HarnessError> {
        FleetStack::start_prepared(|dir, port, enroll_port| {
            let out = Command::new(bin_path("vouch-fleet"))
                .args(["init", "--dir"])
                .arg(dir)
                .args(["--broker-port", &port.to_string()])
                .args(["--enroll-port", &enroll_port.to_string()])
                .args(server_names.iter().flat_map(|n| ["--server-name", n]))
                .output()
                .map_err(|e| HarnessError::Spawn("vouch-fleet init".into(), e))?;
            if !out.status.success() {
                return Err(HarnessError::Setup(format!(
                    "vouch-fleet init: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            let config = dir.join("fleet.toml");
            let text =
                std::fs::read_to_string(&config).map_err(|e| HarnessError::io(&config, e))?;
            std::fs::write(&config, edit(text)).map_err(|e| HarnessError::io(&config, e))?;
            let roots = dir.join("trust-roots");
            for (i, t) in trust.iter().enumerate() {
                let to = roots.join(format!("{i}.pem"));
                std::fs::copy(t, &to).map_err(|e| HarnessError::io(t, e))?;
            }
            Ok(())
        })
    }

    /// A stack on a fleet directory that `prepare(dir, port, enroll_port)` makes (e.g.
    /// `vouch-fleet restore --dir DIR --broker-port PORT --enroll-port ENROLL_PORT`) instead of
    /// `init`, on two fresh ports; then mosquitto and `vouch-fleet serve` are started.
    pub fn start_prepared(
        prepare: impl FnOnce(&Path, u16, u16) -> Result<(), HarnessError>,
    ) -> Result<FleetStack, HarnessError> {
        let tmp = tempfile::Builder::new()
            .prefix("vouch-fleet-")
            .tempdir()
            .map_err(|e| HarnessError::io(&std::env::temp_dir(), e))?;
        // Two free ports, held together so they differ: devices, then enrollment.
        let free = || {
            TcpListener::bind("127.0.0.1:0")
                .map_err(|e| HarnessError::io(Path::new("127.0.0.1"), e))
        };
        let (a, b) = (free()?, free()?);
        let port_of = |l: &TcpListener| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| HarnessError::io(Path::new("127.0.0.1"), e))
        };
        let (port, enroll_port) = (port_of(&a)?, port_of(&b)?);
        drop((a, b));
        let mut stack = FleetStack {
            tmp,
            port,
            enroll_port,
            broker: None,
            server: None,
        };
        prepare(&stack.dir(), port, enroll_port)?;
        stack.start_broker()?;
        stack.start_server()?;
        Ok(stack)
    }

    /// Stops `vouch-fleet serve`, applies `edit` to fleet.toml and starts it again (what
    /// `serve` reads only at start, such as `[ima] runtime_policy`).
    pub fn restart_server(
        &mut self,
        edit: impl FnOnce(String) -> String,
    ) -> Result<(), HarnessError> {
        if let Some(p) = self.server.take() {
            p.stop();
        }
        let config = self.config();
        let text = std::fs::read_to_string(&config).map_err(|e| HarnessError::io(&config, e))?;
        std::fs::write(&config, edit(text)).map_err(|e| HarnessError::io(&config, e))?;
        self.start_server()
    }

    /// Starts `vouch-fleet serve` and waits until it connected to the broker.
    fn start_server(&mut self) -> Result<(), HarnessError> {
        let config = self.config();
        let stack = self;
        let server = spawn(
            Command::new(bin_path("vouch-fleet"))
                .args(["serve", "--allow-root", "--config"])
                .arg(&config),
            &stack.tmp.path().join("serve.log"),
        )?;
        stack.server = Some(server);
        let log = stack.tmp.path().join("serve.log");
        wait_until(
            "vouch-fleet serve to connect",
            Duration::from_secs(15),
            || {
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("connected to the broker")
            },
        )
    }

    /// (Re)starts mosquitto on the fleet directory's configuration.
    pub fn start_broker(&mut self) -> Result<(), HarnessError> {
        let dir = self.dir();
        let _ = std::fs::remove_file(dir.join("mosquitto.pid"));
        self.broker = Some(spawn(
            Command::new("mosquitto")
                .arg("-c")
                .arg(dir.join("mosquitto.conf")),
            &self.tmp.path().join("mosquitto.log"),
        )?);
        let port = self.port;
        wait_until("mosquitto to listen", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok() && dir.join("mosquitto.pid").exists()
        })
    }

    /// Stops mosquitto (it saves its persistence database on SIGTERM).
    pub fn stop_broker(&mut self) {
        if let Some(p) = self.broker.take() {
            let pid = p.0.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let mut p = p;
            let deadline = Instant::now() + Duration::from_secs(5);
            while p.running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The fleet directory made by `init`.
    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("fleet")
    }

    /// The fleet configuration file.
    pub fn config(&self) -> PathBuf {
        self.dir().join("fleet.toml")
    }

    /// The broker's device listener port on 127.0.0.1 (enrolled devices and the fleet).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Both listener ports, as a VM guest reaches them.
    pub fn broker_ports(&self) -> crate::vm::machine::BrokerPorts {
        crate::vm::machine::BrokerPorts {
            device: self.port,
            enroll: self.enroll_port,
        }
    }

    /// The broker's enrollment listener port on 127.0.0.1 (the claim certificate; client ids
    /// as sent, within the `vouch-conn-` prefix).
    pub fn enroll_port(&self) -> u16 {
        self.enroll_port
    }

    /// Sends SIGHUP to `vouch-fleet serve` (it reloads its policies) and waits until it did.
    pub fn reload_server(&self) -> Result<(), HarnessError> {
        let before = self.server_log().matches("policies loaded").count();
        if let Some(p) = &self.server {
            let _ = Command::new("kill")
                .args(["-HUP", &p.0.id().to_string()])
                .status();
        }
        wait_until("the server to reload", Duration::from_secs(10), || {
            self.server_log().matches("policies loaded").count() > before
        })
    }

    /// Writes `vouch-fleet policy record --eventlog LOG` into the policies directory as NAME.
    pub fn record_policy(&self, name: &str, eventlog: &Path) -> Result<PathBuf, HarnessError> {
        let out = self.dir().join("policies").join(format!("{name}.toml"));
        let r = crate::run(
            "vouch-fleet",
            &[
                "policy",
                "record",
                "--bank",
                "sha256",
                "--pcrs",
                "0-9",
                "--eventlog",
                &eventlog.to_string_lossy(),
                "--out",
                &out.to_string_lossy(),
            ],
            &[],
        );
        if r.code != 0 {
            return Err(HarnessError::Setup(format!("policy record: {}", r.stderr)));
        }
        Ok(out)
    }

    /// The log files of `vouch-fleet serve` and mosquitto (kept by failing VM tests).
    pub fn log_files(&self) -> Vec<PathBuf> {
        vec![
            self.tmp.path().join("serve.log"),
            self.tmp.path().join("mosquitto.log"),
        ]
    }

    /// What mosquitto logged so far.
    pub fn broker_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// What `vouch-fleet serve` logged so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("serve.log")).unwrap_or_default()
    }

    /// Runs `vouch-fleet ARGS --config fleet.toml`.
    pub fn cli(&self, args: &[&str]) -> crate::Output {
        let config = self.config();
        let mut all: Vec<&str> = args.to_vec();
        let c = config.to_string_lossy().into_owned();
        all.extend(["--config", &c]);
        crate::run("vouch-fleet", &all, &[])
    }

    /// `vouch-fleet device show ID --json`, if the device is known.
    pub fn device(&self, id: &str) -> Option<serde_json::Value> {
        let out = self.cli(&["device", "show", id, "--json"]);
        (out.code == 0).then(|| serde_json::from_str(&out.stdout).ok())?
    }

    /// Waits until `ok` holds for the device's `device show` JSON; returns it.
    pub fn wait_device(
        &self,
        id: &str,
        timeout: Duration,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, HarnessError> {
        let mut last = None;
        let r = wait_until(&format!("device {id}"), timeout, || {
            last = self.device(id);
            last.as_ref().is_some_and(&ok)
        });
        r.map_err(|e| {
            HarnessError::Setup(format!(
                "{e}; last: {last:?}; server log:\n{}",
                self.server_log()
            ))
        })?;
        Ok(last.unwrap_or_default())
    }

    /// Writes an agent.toml for a device on `tpm` with state in `state` reading `eventlog`.
    pub fn agent_config(
        &self,
        tpm: &Swtpm,
        state: &Path,
        eventlog: &Path,
    ) -> Result<PathBuf, HarnessError> {
        let dir = self.dir();
        let path = state.with_extension("toml");
        let text = format!(
            "tcti = \"{tcti}\"\nstate_dir = \"{state}\"\neventlog = \"{log}\"\n\n[broker]\n\
             host = \"localhost\"\nport = {port}\nenroll_port = {enroll_port}\nca_file = \"{dir}/ca.crt\"\n\
             claim_cert = \"{dir}/claim.crt\"\nclaim_key = \"{dir}/claim.key\"\n\
             keep_alive_secs = 5\nmax_backoff_secs = 2\n",
            tcti = tpm.tcti(),
            state = state.display(),
            log = eventlog.display(),
            port = self.port,
            enroll_port = self.enroll_port,
            dir = dir.display(),
        );
        std::fs::write(&path, text).map_err(|e| HarnessError::io(&path, e))?;
        Ok(path)
    }

    /// The escrow deposit path both escrow tests start from: records policy `policy` from
    /// `log` (the boot the swtpm runs), starts the agent of device `id` on it, waits until the
    /// device is trusted, assigns it the policy and waits until the fleet audited the deposit of
    /// volume `uuid`'s escrow record. Returns the agent; an error carries the agent's or the
    /// server's log.
    pub fn start_agent_with_deposit(
        &self,
        tpm: &Swtpm,
        state: &Path,
        log: &Path,
        policy: &str,
        id: &str,
        uuid: &str,
    ) -> Result<Proc, String> {
        let text = |e: HarnessError| vouch_attest::errors::chain(&e);
        self.record_policy(policy, log).map_err(text)?;
        self.reload_server().map_err(text)?;
        let config = self.agent_config(tpm, state, log).map_err(text)?;
        let agent = self.start_agent(&config).map_err(text)?;
        let agent_log =
            || std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
        self.wait_device(id, Duration::from_secs(40), |v| {
            v["device"]["status"].as_str() == Some("trusted")
        })
        .map_err(|e| format!("{}\nagent log:\n{}", text(e), agent_log()))?;
        let set = self.cli(&["device", "set-policy", id, policy]);
        if set.code != 0 {
            return Err(format!("device set-policy: {}{}", set.stdout, set.stderr));
        }
        wait_until("the escrow deposit", Duration::from_secs(20), || {
            self.cli(&["audit"])
                .stdout
                .contains(&format!("escrow record of volume {uuid} deposited"))
        })
        .map_err(|e| format!("{}\nserver log:\n{}", text(e), self.server_log()))?;
        Ok(agent)
    }

    /// Starts `vouch-agent run` with `config`; its log goes to `<config>.log`.
    pub fn start_agent(&self, config: &Path) -> Result<Proc, HarnessError> {
        spawn(
            Command::new(bin_path("vouch-agent"))
                .args(["run", "--allow-root", "--log-format", "text", "--config"])
                .arg(config)
                .env("TSS2_LOG", "all+none")
                .env("VOUCH_LOG", "info"),
            &config.with_extension("log"),
        )
    }
}
