//! The registry's database connection, the same for SQLite and PostgreSQL: statements with
//! typed parameters ([`P`]) go in, rows of typed values ([`Row`]) come out, and
//! [`Db::transaction`] runs a closure in one transaction. Every difference between the two SQL
//! dialects lives in [`Dialect`] (placeholders, column types, row and table locks, the
//! append-only triggers); the registry's queries are written once, with PostgreSQL's `$1`
//! placeholders, and use only what both engines understand besides.
//!
//! The API is blocking, like rusqlite. The PostgreSQL side uses the `postgres` crate, which runs
//! its own small runtime per connection; the server calls the registry from
//! `tokio::task::spawn_blocking` threads, where that is allowed, and [`Db`] steps out of a tokio
//! worker thread with `block_in_place` when it is called from one (a multi-threaded runtime;
//! tests). On a current-thread runtime that is not possible: call the registry from
//! `spawn_blocking` there.

use r2d2_postgres::postgres::types::{ToSql, Type};
use r2d2_postgres::postgres::{self, NoTls};
use r2d2_postgres::PostgresConnectionManager;
use rusqlite::types::ValueRef;
use std::time::Duration;

/// A bounded pool of PostgreSQL connections.
pub(crate) type PgPool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// A database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite refused or failed.
    #[error("SQLite")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused or failed.
    #[error("PostgreSQL")]
    Postgres(#[from] postgres::Error),
    /// No PostgreSQL connection could be had from the pool in time.
    #[error("no PostgreSQL connection available")]
    Pool(#[from] r2d2::Error),
    /// A column does not hold the type the registry expects.
    #[error("column {column} is not {expected}")]
    Type {
        column: usize,
        expected: &'static str,
    },
    /// The pool is being dropped (never seen by callers: only drop takes it).
    #[error("the connection pool is closed")]
    Closed,
    /// A statement that must return a row returned none.
    #[error("the statement returned no row")]
    NoRow,
}

/// One parameter of a statement. `None` is SQL NULL (typed, as PostgreSQL wants).
#[derive(Debug, Clone, Copy)]
pub(crate) enum P<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Blob(Option<&'a [u8]>),
}

impl From<i64> for P<'_> {
    fn from(v: i64) -> Self {
        P::Int(Some(v))
    }
}
impl From<u32> for P<'_> {
    fn from(v: u32) -> Self {
        P::Int(Some(i64::from(v)))
    }
}
impl From<bool> for P<'_> {
    fn from(v: bool) -> Self {
        P::Int(Some(i64::from(v)))
    }
}
impl<'a> From<&'a str> for P<'a> {
    fn from(v: &'a str) -> Self {
        P::Text(Some(v))
    }
}
impl<'a> From<&'a String> for P<'a> {
    fn from(v: &'a String) -> Self {
        P::Text(Some(v))
    }
}
impl<'a> From<Option<&'a str>> for P<'a> {
    fn from(v: Option<&'a str>) -> Self {
        P::Text(v)
    }
}
impl<'a> From<&'a [u8]> for P<'a> {
    fn from(v: &'a [u8]) -> Self {
        P::Blob(Some(v))
    }
}

/// The parameters of a statement: `params![a, b]`.
macro_rules! params {
    ($($v:expr),* $(,)?) => { &[$($crate::registry::db::P::from($v)),*][..] };
}
pub(crate) use params;

impl rusqlite::ToSql for P<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            P::Int(v) => rusqlite::ToSql::to_sql(v),
            P::Text(v) => rusqlite::ToSql::to_sql(v),
            P::Blob(v) => rusqlite::ToSql::to_sql(v),
        }
    }
}

/// A value read from a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// One row of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row(Vec<Value>);

/// A Rust type a column converts to.
pub(crate) trait FromColumn: Sized {
    /// What the column must hold, for the error.
    const EXPECTED: &'static str;
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromColumn for i64 {
    const EXPECTED: &'static str = "an integer";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromColumn for bool {
    const EXPECTED: &'static str = "an integer 0 or 1";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(0) => Some(false),
            Value::Int(1) => Some(true),
            _ => None,
        }
    }
}
impl FromColumn for String {
    const EXPECTED: &'static str = "text";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl FromColumn for Vec<u8> {
    const EXPECTED: &'static str = "bytes";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}
impl<T: FromColumn> FromColumn for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

impl Row {
    /// Column `i` as `T`.
    pub(crate) fn get<T: FromColumn>(&self, i: usize) -> Result<T, DbError> {
        self.0.get(i).and_then(T::from_value).ok_or(DbError::Type {
            column: i,
            expected: T::EXPECTED,
        })
    }

    fn from_sqlite(r: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Row> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(match r.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Real(_) => {
                    return Err(rusqlite::Error::InvalidColumnType(
                        i,
                        String::new(),
                        rusqlite::types::Type::Real,
                    ))
                }
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            });
        }
        Ok(Row(out))
    }

    fn from_postgres(r: &postgres::Row) -> Result<Row, DbError> {
        let mut out = Vec::with_capacity(r.len());
        for (i, c) in r.columns().iter().enumerate() {
            let t = c.type_();
            let v = if *t == Type::INT8 {
                r.try_get::<_, Option<i64>>(i)?.map(Value::Int)
            } else if *t == Type::INT4 {
                r.try_get::<_, Option<i32>>(i)?
                    .map(|v| Value::Int(i64::from(v)))
            } else if *t == Type::BOOL {
                r.try_get::<_, Option<bool>>(i)?
                    .map(|v| Value::Int(i64::from(v)))
            } else if *t == Type::TEXT || *t == Type::VARCHAR || *t == Type::NAME {
                r.try_get::<_, Option<String>>(i)?.map(Value::Text)
            } else if *t == Type::BYTEA {
                r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob)
            } else {
                return Err(DbError::Type {
                    column: i,
                    expected: "an integer, text or bytes",
                });
            };
            out.push(v.unwrap_or(Value::Null));
        }
        Ok(Row(out))
    }
}

/// The SQL dialect of a backend: every place where SQLite and PostgreSQL differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3 (bundled with rusqlite).
    Sqlite,
    /// PostgreSQL 15 or later.
    Postgres,
}

/// How rows read in a transaction are locked against other writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowLock {
    /// Wait for rows another transaction holds (`FOR UPDATE`).
    Wait,
    /// Leave out rows another transaction holds (`FOR UPDATE SKIP LOCKED`): queues taken by
    /// several workers.
    SkipLocked,
}

impl Dialect {
    /// The statement in this dialect: queries are written with `$1`..`$n`; SQLite numbers them
    /// `?1`..`?n`. A `$` inside a quoted literal is left alone.
    pub(crate) fn sql(self, sql: &str) -> std::borrow::Cow<'_, str> {
        if self == Dialect::Postgres || !sql.contains('$') {
            return sql.into();
        }
        let mut out = String::with_capacity(sql.len());
        let mut quoted = false;
        let mut chars = sql.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\'' {
                quoted = !quoted;
            }
            if c == '$' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
                out.push('?');
            } else {
                out.push(c);
            }
        }
        out.into()
    }

    /// The schema text with its type words filled in: `{id}` a generated integer primary key,
    /// `{int}` a 64-bit integer, `{blob}` bytes.
    pub(crate) fn types(self, schema: &str) -> String {
        let (id, int, blob) = match self {
            Dialect::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER", "BLOB"),
            Dialect::Postgres => (
                "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                "BIGINT",
                "BYTEA",
            ),
        };
        schema
            .replace("{id}", id)
            .replace("{int}", int)
            .replace("{blob}", blob)
    }

    /// What ends a `SELECT` whose rows the transaction will change. SQLite locks the whole
    /// database for a write transaction ([`Db::transaction`] begins it `IMMEDIATE`), so nothing.
    pub(crate) fn row_lock(self, lock: RowLock) -> &'static str {
        match (self, lock) {
            (Dialect::Sqlite, _) => "",
            (Dialect::Postgres, RowLock::Wait) => " FOR UPDATE",
            (Dialect::Postgres, RowLock::SkipLocked) => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// A statement that makes the transaction the only writer of `table` until it ends (for a
    /// row computed from the table's last row: the audit chain); none on SQLite (see
    /// [`Dialect::row_lock`]).
    pub(crate) fn lock_table(self, table: &str) -> Option<String> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some(format!("LOCK TABLE {table} IN EXCLUSIVE MODE")),
        }
    }

    /// Triggers that refuse UPDATE and DELETE (and on PostgreSQL TRUNCATE) on `table`, named
    /// `<table>_no_update` and `<table>_no_delete`.
    pub(crate) fn append_only(self, table: &str) -> String {
        let msg = format!("the {table} log is append-only");
        match self {
            Dialect::Sqlite => format!(
                "CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table} \
                 BEGIN SELECT RAISE(ABORT, '{msg}'); END;\n\
                 CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} \
                 BEGIN SELECT RAISE(ABORT, '{msg}'); END;\n"
            ),
            Dialect::Postgres => format!(
                "CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger \
                 LANGUAGE plpgsql AS $fn$ BEGIN RAISE EXCEPTION '{msg}'; END $fn$;\n\
                 CREATE OR REPLACE TRIGGER {table}_no_update BEFORE UPDATE ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION {table}_append_only();\n\
                 CREATE OR REPLACE TRIGGER {table}_no_delete BEFORE DELETE ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION {table}_append_only();\n\
                 CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} \
                 FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only();\n"
            ),
        }
    }

    /// A statement taking the lock that serializes schema migrations between processes for the
    /// rest of the transaction; none on SQLite (its write transaction already excludes others).
    pub(crate) fn migration_lock(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            // Any constant shared by every vouch-fleet process ("vouch" in ASCII).
            Dialect::Postgres => Some("SELECT pg_advisory_xact_lock(1986098024)"),
        }
    }
}

/// A connection to the registry's database.
pub(crate) enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(Pool),
}

/// The PostgreSQL pool, dropped where blocking is allowed: closing a `postgres` connection runs
/// its runtime, which must not happen on a tokio worker thread.
pub(crate) struct Pool(Option<PgPool>);

impl Pool {
    fn get(&self) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>, DbError> {
        match &self.0 {
            Some(p) => Ok(p.get()?),
            None => Err(DbError::Closed),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            blocking(move || drop(p));
        }
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's manager holds the connection configuration (with the password): not shown.
        f.write_str(match self {
            Db::Sqlite(_) => "Db::Sqlite",
            Db::Postgres(_) => "Db::Postgres",
        })
    }
}

/// A connection inside or outside a transaction.
pub(crate) enum Conn<'a, 'c> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a mut postgres::Transaction<'c>),
    PostgresClient(&'a mut postgres::Client),
}

fn pg_params<'a>(params: &'a [P<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| -> &(dyn ToSql + Sync) {
            match p {
                P::Int(v) => v,
                P::Text(v) => v,
                P::Blob(v) => v,
            }
        })
        .collect()
}

/// Runs `f` where a blocking PostgreSQL call is allowed (see the module documentation).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(f),
        Err(_) => f(),
    }
}

impl Conn<'_, '_> {
    /// The dialect of this connection.
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            _ => Dialect::Postgres,
        }
    }

    /// Runs a statement; returns the number of rows changed.
    pub(crate) fn exec(&mut self, sql: &str, params: &[P<'_>]) -> Result<u64, DbError> {
        match self {
            Conn::Sqlite(c) => {
                let n = c
                    .prepare_cached(&Dialect::Sqlite.sql(sql))?
                    .execute(rusqlite::params_from_iter(params))?;
                Ok(n as u64)
            }
            Conn::Postgres(t) => Ok(t.execute(sql, &pg_params(params))?),
            Conn::PostgresClient(c) => Ok(c.execute(sql, &pg_params(params))?),
        }
    }

    /// Runs a query; returns its rows.
    pub(crate) fn query(&mut self, sql: &str, params: &[P<'_>]) -> Result<Vec<Row>, DbError> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(&Dialect::Sqlite.sql(sql))?;
                let n = stmt.column_count();
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(params), |r| {
                        Row::from_sqlite(r, n)
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            }
            Conn::Postgres(t) => t
                .query(sql, &pg_params(params))?
                .iter()
                .map(Row::from_postgres)
                .collect(),
            Conn::PostgresClient(c) => c
                .query(sql, &pg_params(params))?
                .iter()
                .map(Row::from_postgres)
                .collect(),
        }
    }

    /// Runs a query; returns its first row, if any.
    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        params: &[P<'_>],
    ) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs a query that returns one row (`INSERT ... RETURNING id`, `SELECT MAX(...)`).
    pub(crate) fn query_one(&mut self, sql: &str, params: &[P<'_>]) -> Result<Row, DbError> {
        self.query_opt(sql, params)?.ok_or(DbError::NoRow)
    }

    /// Runs statements without parameters (schema), separated by `;`.
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres(t) => Ok(t.batch_execute(sql)?),
            Conn::PostgresClient(c) => Ok(c.batch_execute(sql)?),
        }
    }
}

impl Db {
    /// Opens a SQLite database file (WAL mode, waiting up to `busy` for other writers).
    pub(crate) fn open_sqlite(path: &std::path::Path, busy: Duration) -> Result<Db, DbError> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(busy)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Db::Sqlite(conn))
    }

    /// A pool of at most `size` connections to PostgreSQL; waits up to `timeout` for the first
    /// connection and for a free one later.
    pub(crate) fn open_postgres(
        config: postgres::Config,
        size: u32,
        timeout: Duration,
    ) -> Result<Db, DbError> {
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = blocking(|| {
            r2d2::Pool::builder()
                .max_size(size)
                .min_idle(Some(0))
                .connection_timeout(timeout)
                .error_handler(Box::new(r2d2::NopErrorHandler))
                .build(manager)
        })?;
        let pool = Pool(Some(pool));
        // The pool opens connections lazily: this one proves the server is reachable now.
        blocking(|| pool.get().map(drop))?;
        Ok(Db::Postgres(pool))
    }

    /// The dialect of this database.
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs `f` on a connection outside a transaction (each statement commits by itself).
    pub(crate) fn with<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&mut Conn<'_, '_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Db::Sqlite(c) => f(&mut Conn::Sqlite(c)),
            Db::Postgres(pool) => blocking(|| {
                let mut client = pool.get()?;
                f(&mut Conn::PostgresClient(&mut client))
            }),
        }
    }

    /// Runs `f` in one write transaction, committed when `f` returns `Ok` and rolled back
    /// otherwise. SQLite: `BEGIN IMMEDIATE` (the database's write lock from the start).
    /// PostgreSQL: READ COMMITTED; `f` locks what it reads with [`Dialect::row_lock`] or
    /// [`Dialect::lock_table`].
    pub(crate) fn transaction<T, E: From<DbError>>(
        &mut self,
        f: impl FnOnce(&mut Conn<'_, '_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Db::Sqlite(c) => {
                let tx = c
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(DbError::from)?;
                let out = f(&mut Conn::Sqlite(&tx))?;
                tx.commit().map_err(DbError::from)?;
                Ok(out)
            }
            Db::Postgres(pool) => blocking(|| {
                let mut client = pool.get()?;
                let mut tx = client.transaction().map_err(DbError::from)?;
                let out = f(&mut Conn::Postgres(&mut tx))?;
                tx.commit().map_err(DbError::from)?;
                Ok(out)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_placeholders_are_numbered_outside_literals_only() {
        let s = Dialect::Sqlite;
        assert_eq!(
            s.sql("SELECT a FROM t WHERE b = $1 AND c = $12"),
            "SELECT a FROM t WHERE b = ?1 AND c = ?12"
        );
        assert_eq!(s.sql("SELECT '$1', $2"), "SELECT '$1', ?2");
        assert_eq!(Dialect::Postgres.sql("SELECT $1"), "SELECT $1");
        assert_eq!(
            s.types("{id}, {int}, {blob}"),
            "INTEGER PRIMARY KEY AUTOINCREMENT, INTEGER, BLOB"
        );
    }
}
