//! The registry's schema as numbered migrations, the same list for SQLite and PostgreSQL (type
//! words and triggers filled in by [`Dialect`]). `schema_migrations` records which ones a
//! database has; [`migrate`] applies the missing ones in order, in one transaction that other
//! processes wait for (PostgreSQL: an advisory lock; SQLite: the write lock). A database made
//! before migrations were recorded has the tables of migration 1 already: its statements are
//! `IF NOT EXISTS`, so it is recorded as applied.

use super::db::{params, Conn, DbError};

/// One schema change.
struct Migration {
    /// Its number, from 1, increasing by one.
    version: i64,
    /// The statements, with `{id}`, `{int}` and `{blob}` for the dialect's types.
    sql: &'static str,
    /// Tables made append-only by triggers ([`Dialect::append_only`]).
    append_only: &'static [&'static str],
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: "
CREATE TABLE IF NOT EXISTS devices (
    id           TEXT PRIMARY KEY,
    status       TEXT NOT NULL,
    ek_public    {blob},
    ak_public    {blob},
    tls_public   {blob},
    cert_serial  TEXT,
    enrolled_ms  {int} NOT NULL,
    updated_ms   {int} NOT NULL,
    last_attest  {blob},
    last_boot_id TEXT
);
CREATE TABLE IF NOT EXISTS verdicts (
    id           {id},
    device_id    TEXT NOT NULL,
    challenged_ms {int} NOT NULL,
    stored_ms    {int} NOT NULL,
    trusted      {int} NOT NULL,
    reasons      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS verdicts_device ON verdicts(device_id, id);
CREATE TABLE IF NOT EXISTS nonces (
    nonce        {blob} PRIMARY KEY,
    device_id    TEXT NOT NULL,
    pcrs         TEXT NOT NULL,
    issued_ms    {int} NOT NULL,
    expires_ms   {int} NOT NULL,
    used_ms      {int}
);
CREATE TABLE IF NOT EXISTS attest_requests (
    id           {id},
    device_id    TEXT NOT NULL,
    requested_ms {int} NOT NULL,
    taken_ms     {int}
);
CREATE TABLE IF NOT EXISTS disconnect_requests (
    id           {id},
    device_id    TEXT NOT NULL,
    requested_ms {int} NOT NULL,
    taken_ms     {int}
);
CREATE TABLE IF NOT EXISTS escrow (
    device_id    TEXT NOT NULL,
    volume_uuid  TEXT NOT NULL,
    record       TEXT NOT NULL,
    deposited_ms {int} NOT NULL,
    PRIMARY KEY (device_id, volume_uuid)
);
CREATE TABLE IF NOT EXISTS boots (
    device_id    TEXT PRIMARY KEY,
    boot_id      TEXT NOT NULL,
    announced_ms {int} NOT NULL
);
CREATE TABLE IF NOT EXISTS escrow_releases (
    id           {id},
    device_id    TEXT NOT NULL,
    volume_uuid  TEXT NOT NULL,
    boot_id      TEXT NOT NULL,
    basis        TEXT NOT NULL,
    requested_ms {int} NOT NULL,
    sent_ms      {int},
    result_ms    {int},
    result       TEXT
);
CREATE TABLE IF NOT EXISTS ima_state (
    device_id    TEXT PRIMARY KEY,
    boot_id      TEXT NOT NULL,
    state        TEXT NOT NULL,
    failed       TEXT NOT NULL,
    keys         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS device_policy (
    device_id    TEXT PRIMARY KEY,
    policy       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stale_alerts (
    device_id    TEXT PRIMARY KEY,
    since_ms     {int} NOT NULL
);
CREATE TABLE IF NOT EXISTS escrow_approvals (
    id           {id},
    device_id    TEXT NOT NULL,
    volume_uuid  TEXT NOT NULL,
    reason       TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_ms {int} NOT NULL,
    approved_by  TEXT,
    approved_ms  {int},
    release_id   {int}
);
CREATE TABLE IF NOT EXISTS audit (
    seq          {int} PRIMARY KEY,
    at_ms        {int} NOT NULL,
    kind         TEXT NOT NULL,
    device_id    TEXT,
    detail       TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
",
        append_only: &["audit"],
    },
    // Steady state: the event log held for each device that sends appended parts.
    Migration {
        version: 2,
        sql: "
CREATE TABLE IF NOT EXISTS held_logs (
    device_id    TEXT PRIMARY KEY,
    log          {blob} NOT NULL,
    sha256       {blob} NOT NULL,
    settled      TEXT
);
",
        append_only: &[],
    },
];

/// The schema version this build writes (the last migration).
pub const SCHEMA_VERSION: i64 = 2;

/// A migration could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database failed.
    #[error("schema migration {version} failed")]
    Apply {
        version: i64,
        #[source]
        source: DbError,
    },
    /// The database was written by a newer vouch-fleet.
    #[error(
        "the registry has schema version {found}; this vouch-fleet knows up to {SCHEMA_VERSION}"
    )]
    TooNew { found: i64 },
}

/// Applies the migrations `conn` (in a transaction) lacks; returns how many.
pub(crate) fn migrate(conn: &mut Conn<'_, '_>) -> Result<usize, MigrateError> {
    let d = conn.dialect();
    let err = |version| move |source| MigrateError::Apply { version, source };
    if let Some(lock) = d.migration_lock() {
        conn.batch(lock).map_err(err(0))?;
    }
    conn.batch(&d.types(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
         version {int} PRIMARY KEY, applied_ms {int} NOT NULL)",
    ))
    .map_err(err(0))?;
    let found: i64 = conn
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .and_then(|r| r.get(0))
        .map_err(err(0))?;
    if found > SCHEMA_VERSION {
        return Err(MigrateError::TooNew { found });
    }
    let mut applied = 0;
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        let mut sql = d.types(m.sql);
        for t in m.append_only {
            sql.push_str(&d.append_only(t));
        }
        conn.batch(&sql).map_err(err(m.version))?;
        conn.exec(
            "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)",
            params![m.version, super::now_ms()],
        )
        .map_err(err(m.version))?;
        applied += 1;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{both_backends, TestDb};
    use crate::registry::{q, Dialect, RegistryError};

    #[test]
    fn migrations_are_numbered_in_order_up_to_the_schema_version() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
        // Every type word is filled in for both dialects.
        for d in [Dialect::Sqlite, Dialect::Postgres] {
            for m in MIGRATIONS {
                assert!(!d.types(m.sql).contains('{'), "{d:?} {}", m.version);
            }
        }
    }

    /// A registry made before migrations were recorded (the tables of migration 1, no
    /// `schema_migrations`) opens with its rows, recorded at version 1; a registry from a newer
    /// vouch-fleet is refused by name.
    fn old_registries_are_adopted_and_newer_ones_refused(db: &TestDb) {
        {
            let reg = db.open();
            let run = |sql: &str| reg.with(|c| c.batch(sql).map_err(q("test"))).unwrap();
            run("DROP TABLE schema_migrations");
            run("INSERT INTO devices (id, status, enrolled_ms, updated_ms) \
                 VALUES ('d1', 'trusted', 1, 2)");
        }
        let reg = db.open();
        assert_eq!(reg.devices().unwrap().len(), 1);
        let version = reg
            .with(|c| {
                c.query_one("SELECT MAX(version) FROM schema_migrations", &[])
                    .and_then(|r| r.get::<i64>(0))
                    .map_err(q("test"))
            })
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        reg.with(|c| {
            c.exec(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, 0)",
                params![SCHEMA_VERSION + 1],
            )
            .map_err(q("test"))
        })
        .unwrap();
        let err = match db {
            TestDb::Sqlite(dir) => crate::registry::Registry::open(dir.path()).unwrap_err(),
            TestDb::Postgres(url) => crate::registry::Registry::open_postgres(url, 1).unwrap_err(),
        };
        assert!(
            matches!(
                &err,
                RegistryError::Migrate {
                    source: MigrateError::TooNew { found },
                    ..
                } if *found == SCHEMA_VERSION + 1
            ),
            "{err:?}"
        );
    }

    both_backends!(old_registries_are_adopted_and_newer_ones_refused);
}
