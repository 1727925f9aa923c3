//! The fleet's registry: the enrolled devices and their keys, verdicts, challenge nonces,
//! on-demand attestation requests, each device's IMA replay state, the event log held for
//! steady-state reports and the append-only, hash-chained audit log.
//!
//! It lives in an embedded SQLite database (`registry.db` in the state directory; the default)
//! or in PostgreSQL (`[storage] backend = "postgres"`, for fleets with more than one server).
//! Both have the same schema ([`schema`], numbered migrations) and the same queries ([`db`]
//! holds every dialect difference). `vouch-fleet serve` and the operator commands (`devices`,
//! `revoke`, `attest`, ...) open the same database side by side: SQLite in WAL mode with a busy
//! timeout, PostgreSQL through a bounded connection pool per process. Each [`Registry`] is used
//! from one thread at a time (the server keeps it behind a mutex and only touches it off the
//! MQTT event loop).

mod audit;
pub(crate) mod db;
mod devices;
mod escrow;
mod ima;
mod liveness;
mod logs;
mod nonces;
mod requests;
pub mod schema;
#[cfg(test)]
mod testing;
mod verdicts;

pub use audit::{AuditEntry, AuditKind, ChainCheck, ChainProblem};
pub use db::{DbError, Dialect};
pub use devices::{Device, DeviceStatus, NewDevice};
pub use escrow::{Boot, EscrowRelease, StoredEscrow};
pub use ima::ImaRecord;
pub use liveness::EscrowApproval;
pub use logs::{HeldHead, HeldLog};
pub use nonces::{IssuedNonce, NonceRefusal};
pub use requests::AttestRequest;
pub use verdicts::{StoredVerdict, VerdictRecord};

use crate::config::{FleetConfig, PostgresUrl, Storage};
use db::{Conn, Db};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// File name of the SQLite database inside the state directory.
pub const DB_FILE: &str = "registry.db";

/// How long a writer waits for another process holding the database lock (SQLite), and how
/// long a process waits for a connection (PostgreSQL).
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
    /// The database could not be opened or reached.
    #[error("cannot open the registry database {location}")]
    Open {
        /// The file, or the PostgreSQL URL without its password.
        location: String,
        #[source]
        source: DbError,
    },
    /// The schema could not be brought up to date.
    #[error("cannot bring the registry schema of {location} up to date")]
    Migrate {
        location: String,
        #[source]
        source: schema::MigrateError,
    },
    /// A query failed.
    #[error("registry query `{what}` failed")]
    Query {
        what: &'static str,
        #[source]
        source: DbError,
    },
    /// A stored value is not what the schema promises.
    #[error("registry row for {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// No device with this id.
    #[error("no device with id {0:?} in the registry")]
    UnknownDevice(String),
}

/// Maps a database error to [`RegistryError::Query`] for the named operation.
pub(crate) fn q(what: &'static str) -> impl FnOnce(DbError) -> RegistryError {
    move |source| RegistryError::Query { what, source }
}

/// One open registry database.
#[derive(Debug)]
pub struct Registry {
    db: Db,
    location: String,
}

impl Registry {
    /// Opens (creating when missing) the SQLite registry `<state_dir>/registry.db` and brings
    /// its schema up to date.
    pub fn open(state_dir: &Path) -> Result<Registry, RegistryError> {
        std::fs::create_dir_all(state_dir).map_err(|source| RegistryError::StateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(DB_FILE);
        let location = path.display().to_string();
        let db = Db::open_sqlite(&path, BUSY_TIMEOUT).map_err(|source| RegistryError::Open {
            location: location.clone(),
            source,
        })?;
        Registry::migrated(db, location)
    }

    /// Connects to the PostgreSQL registry at `url` with a pool of at most `pool_size`
    /// connections and brings its schema up to date.
    pub fn open_postgres(url: &PostgresUrl, pool_size: u32) -> Result<Registry, RegistryError> {
        let location = url.redacted();
        let open_err = |source| RegistryError::Open {
            location: location.clone(),
            source,
        };
        let mut config = url.client_config().map_err(|e| open_err(e.into()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(BUSY_TIMEOUT);
        }
        config.application_name("vouch-fleet");
        let db = Db::open_postgres(config, pool_size, BUSY_TIMEOUT).map_err(open_err)?;
        Registry::migrated(db, location)
    }

    /// Opens the registry `cfg` names (`[storage]`).
    pub fn for_config(cfg: &FleetConfig) -> Result<Registry, RegistryError> {
        match &cfg.storage {
            Storage::Sqlite => Registry::open(&cfg.state_dir),
            Storage::Postgres { url, pool_size } => Registry::open_postgres(url, *pool_size),
        }
    }

    fn migrated(mut db: Db, location: String) -> Result<Registry, RegistryError> {
        db.transaction(|c| {
            schema::migrate(c).map_err(|source| RegistryError::Migrate {
                location: location.clone(),
                source,
            })
        })?;
        Ok(Registry { db, location })
    }

    /// Where the registry is: the SQLite file, or the PostgreSQL URL without its password.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The SQL dialect of the registry's database.
    pub fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// Runs `f` on a connection, each statement committed by itself.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Conn<'_, '_>) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        self.db.with(f)
    }

    /// Runs `f` in one write transaction (see [`db::Db::transaction`]).
    pub(crate) fn tx<T>(
        &mut self,
        f: impl FnOnce(&mut Conn<'_, '_>) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        self.db.transaction(f)
    }
}

impl From<DbError> for RegistryError {
    fn from(source: DbError) -> Self {
        RegistryError::Query {
            what: "transaction",
            source,
        }
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
