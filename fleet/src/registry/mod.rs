//! The fleet's registry: an embedded SQLite database (`registry.db` in the state directory) with
//! the enrolled devices and their keys, verdicts, challenge nonces, on-demand attestation
//! requests, each device's IMA replay state, the event log held for steady-state reports and the
//! append-only, hash-chained audit log.
//!
//! `vouch-fleet serve` and the operator commands (`devices`, `revoke`, `attest`, ...) open the
//! same file; WAL mode and a busy timeout let them work side by side. Each [`Registry`] owns one
//! connection and is used from one thread at a time (the server keeps it behind a mutex and
//! only touches it off the MQTT event loop).

mod audit;
mod devices;
mod escrow;
mod ima;
mod liveness;
mod logs;
mod nonces;
mod requests;
mod verdicts;

pub use audit::{AuditEntry, AuditKind, ChainCheck, ChainProblem};
pub use devices::{Device, DeviceStatus, NewDevice};
pub use escrow::{Boot, EscrowRelease, StoredEscrow};
pub use ima::ImaRecord;
pub use liveness::EscrowApproval;
pub use logs::{HeldHead, HeldLog};
pub use nonces::{IssuedNonce, NonceRefusal};
pub use requests::AttestRequest;
pub use verdicts::{StoredVerdict, VerdictRecord};

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "registry.db";

/// How long a writer waits for another process holding the database lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The state directory could not be created.
    #[error("cannot create the state directory {path}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened or its schema created.
    #[error("cannot open the registry database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A query failed.
    #[error("registry query `{what}` failed")]
    Query {
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// A stored value is not what the schema promises.
    #[error("registry row for {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// No device with this id.
    #[error("no device with id {0:?} in the registry")]
    UnknownDevice(String),
}

/// Maps a rusqlite error to [`RegistryError::Query`] for the named operation.
pub(crate) fn q(what: &'static str) -> impl FnOnce(rusqlite::Error) -> RegistryError {
    move |source| RegistryError::Query { what, source }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS devices (
    id           TEXT PRIMARY KEY,
    status       TEXT NOT NULL,
    ek_public    BLOB,
    ak_public    BLOB,
    tls_public   BLOB,
    cert_serial  TEXT,
    enrolled_ms  INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL,
    last_attest  BLOB,
    last_boot_id TEXT
);
CREATE TABLE IF NOT EXISTS verdicts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id    TEXT NOT NULL,
    challenged_ms INTEGER NOT NULL,
    stored_ms    INTEGER NOT NULL,
    trusted      INTEGER NOT NULL,
    reasons      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS verdicts_device ON verdicts(device_id, id);
CREATE TABLE IF NOT EXISTS nonces (
    nonce        BLOB PRIMARY KEY,
    device_id    TEXT NOT NULL,
    pcrs         TEXT NOT NULL,
    issued_ms    INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    used_ms      INTEGER
);
CREATE TABLE IF NOT EXISTS attest_requests (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id    TEXT NOT NULL,
    requested_ms INTEGER NOT NULL,
    taken_ms     INTEGER
);
CREATE TABLE IF NOT EXISTS disconnect_requests (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id    TEXT NOT NULL,
    requested_ms INTEGER NOT NULL,
    taken_ms     INTEGER
);
CREATE TABLE IF NOT EXISTS escrow (
    device_id    TEXT NOT NULL,
    volume_uuid  TEXT NOT NULL,
    record       TEXT NOT NULL,
    deposited_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, volume_uuid)
);
CREATE TABLE IF NOT EXISTS boots (
    device_id    TEXT PRIMARY KEY,
    boot_id      TEXT NOT NULL,
    announced_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS escrow_releases (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id    TEXT NOT NULL,
    volume_uuid  TEXT NOT NULL,
    boot_id      TEXT NOT NULL,
    basis        TEXT NOT NULL,
    requested_ms INTEGER NOT NULL,
    sent_ms      INTEGER,
    result_ms    INTEGER,
    result       TEXT
);
CREATE TABLE IF NOT EXISTS ima_state (
    device_id    TEXT PRIMARY KEY,
    boot_id      TEXT NOT NULL,
    state        TEXT NOT NULL,
    failed       TEXT NOT NULL,
    keys         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS held_logs (
    device_id    TEXT PRIMARY KEY,
    log          BLOB NOT NULL,
    sha256       BLOB NOT NULL,
    settled      TEXT
);
CREATE TABLE IF NOT EXISTS device_policy (
    device_id    TEXT PRIMARY KEY,
    policy       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stale_alerts (
    device_id    TEXT PRIMARY KEY,
    since_ms     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS escrow_approvals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id    TEXT NOT NULL,
    volume_uuid  TEXT NOT NULL,
    reason       TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_ms INTEGER NOT NULL,
    approved_by  TEXT,
    approved_ms  INTEGER,
    release_id   INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    seq          INTEGER PRIMARY KEY,
    at_ms        INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    device_id    TEXT,
    detail       TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

/// One open registry database.
#[derive(Debug)]
pub struct Registry {
    conn: Connection,
    path: PathBuf,
}

impl Registry {
    /// Opens (creating when missing) `<state_dir>/registry.db` and its schema.
    pub fn open(state_dir: &Path) -> Result<Registry, RegistryError> {
        std::fs::create_dir_all(state_dir).map_err(|source| RegistryError::StateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(DB_FILE);
        let open_err = |source| RegistryError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        Ok(Registry { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A time in milliseconds since the epoch as RFC 3339 UTC with milliseconds
/// (`2023-11-14T22:13:20.123Z`), for output read by people (`--json` keeps the milliseconds).
/// A value no calendar date fits is printed as `<ms> ms`.
pub fn rfc3339_ms(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => format!("{ms} ms"),
    }
}
