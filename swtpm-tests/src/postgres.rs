//! A private PostgreSQL 15 cluster for the registry's tests: `initdb` in a temporary directory,
//! `pg_ctl start` on a free port with its unix socket in that directory and no TCP listener,
//! run as `nobody` (the tests run as root, which PostgreSQL refuses). One cluster serves a whole
//! test process ([`PgCluster::shared`]); each test takes a fresh database of its own
//! ([`PgCluster::database`]), owned by the unprivileged role `vouch` the way fleet/README.md
//! sets one up.
//!
//! The cluster is stopped and its directory removed when the test process exits: a shell owned
//! by `nobody` started it and waits on a pipe from this process; the pipe closes at exit (also
//! after a panic or a kill), and the shell then runs `pg_ctl stop` and removes the directory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Debian's PostgreSQL 15 programs (package `postgresql-15`).
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The unprivileged user the cluster runs as.
const PG_UID: u32 = 65534;
const PG_GID: u32 = 65534;

/// The role the fleet connects as (owner of each test database, not a superuser).
pub const FLEET_ROLE: &str = "vouch";

/// A running cluster.
pub struct PgCluster {
    dir: PathBuf,
    port: u16,
    // Closed when the process exits: the watcher shell then stops the cluster.
    _keepalive: Mutex<(Child, ChildStdin)>,
    next: AtomicU32,
}

/// The cluster could not be started or a database created.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// A step failed; `log` has what the programs printed.
    #[error("PostgreSQL test cluster: {step} failed:\n{log}")]
    Step { step: &'static str, log: String },
}

fn step(step: &'static str, log: impl Into<String>) -> PgError {
    PgError::Step {
        step,
        log: log.into(),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

/// The watcher: initdb, start, mark ready, wait for the pipe to close, stop, remove.
const SCRIPT: &str = r#"
set -e
dir="$1"; port="$2"; bin="$3"  # $4: the fleet's role
"$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1
"$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
  -o "-p $port -k $dir -c listen_addresses= -c fsync=off -c synchronous_commit=off -c max_connections=200" \
  start >"$dir/pg_ctl.log" 2>&1
"$bin/createuser" -h "$dir" -p "$port" -U postgres "$4" >"$dir/createuser.log" 2>&1
touch "$dir/ready"
read -r _ || true
"$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
rm -rf "$dir"
"#;

impl PgCluster {
    /// The cluster of this test process, started on first use.
    pub fn shared() -> &'static PgCluster {
        static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
        CLUSTER.get_or_init(|| PgCluster::start().unwrap_or_else(|e| panic!("{e}")))
    }

    /// Starts a cluster (see the module documentation).
    pub fn start() -> Result<PgCluster, PgError> {
        let tmp = tempfile::Builder::new()
            .prefix("vouch-pg-")
            .tempdir()
            .map_err(|e| step("temporary directory", e.to_string()))?;
        let dir = tmp.keep();
        std::os::unix::fs::chown(&dir, Some(PG_UID), Some(PG_GID))
            .map_err(|e| step("chown to nobody", e.to_string()))?;
        let port = free_port();
        let mut child = Command::new("setpriv")
            .args([
                format!("--reuid={PG_UID}"),
                format!("--regid={PG_GID}"),
                "--clear-groups".into(),
                "--".into(),
                "sh".into(),
                "-c".into(),
                SCRIPT.into(),
                "sh".into(),
            ])
            .arg(&dir)
            .arg(port.to_string())
            .arg(PG_BIN)
            .arg(FLEET_ROLE)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| step("setpriv (util-linux)", e.to_string()))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| step("pipe to the watcher", ""))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !dir.join("ready").exists() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(step(
                    "initdb / pg_ctl start",
                    format!("{status}\n{err}\n{}", logs(&dir)),
                ));
            }
            if Instant::now() > deadline {
                return Err(step("start (60 s)", logs(&dir)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(PgCluster {
            dir,
            port,
            _keepalive: Mutex::new((child, stdin)),
            next: AtomicU32::new(0),
        })
    }

    /// The socket directory.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The port (of the unix socket's name).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A fresh, empty database owned by [`FLEET_ROLE`]; returns its connection URL.
    pub fn database(&self) -> Result<String, PgError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("vouch_{}_{n}", std::process::id());
        let out = Command::new(Path::new(PG_BIN).join("createdb"))
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-O",
                FLEET_ROLE,
            ])
            .arg(&name)
            .output()
            .map_err(|e| step("createdb", e.to_string()))?;
        if !out.status.success() {
            return Err(step(
                "createdb",
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        Ok(self.url(&name))
    }

    /// The URL of database `name` as [`FLEET_ROLE`] over the unix socket.
    pub fn url(&self, name: &str) -> String {
        let host: String = self
            .dir
            .to_string_lossy()
            .chars()
            .map(|c| match c {
                '/' => "%2F".to_string(),
                c => c.to_string(),
            })
            .collect();
        format!("postgresql://{FLEET_ROLE}@{host}:{}/{name}", self.port)
    }
}

fn logs(dir: &Path) -> String {
    ["initdb.log", "pg_ctl.log", "postgres.log", "createuser.log"]
        .iter()
        .map(|f| {
            format!(
                "--- {f}\n{}",
                std::fs::read_to_string(dir.join(f)).unwrap_or_default()
            )
        })
        .collect()
}
