//! Runs each registry test on both backends: [`both_backends!`] turns `fn name(db: &TestDb)`
//! into the tests `name::sqlite` (a file in a temporary directory) and `name::postgres` (a
//! fresh database in the test process's private PostgreSQL cluster,
//! `swtpm_tests::postgres::PgCluster`).

use super::Registry;
use crate::config::PostgresUrl;

/// A registry database for one test; [`TestDb::open`] may be called again for a second
/// connection (another process).
pub(crate) enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres(PostgresUrl),
}

impl TestDb {
    pub(crate) fn sqlite() -> TestDb {
        TestDb::Sqlite(tempfile::tempdir().unwrap())
    }

    pub(crate) fn postgres() -> TestDb {
        let url = swtpm_tests::postgres::PgCluster::shared()
            .database()
            .unwrap_or_else(|e| panic!("{e}"));
        TestDb::Postgres(PostgresUrl::parse(&url).unwrap())
    }

    pub(crate) fn open(&self) -> Registry {
        match self {
            TestDb::Sqlite(dir) => Registry::open(dir.path()).unwrap(),
            TestDb::Postgres(url) => Registry::open_postgres(url, 2).unwrap(),
        }
    }
}

/// `both_backends!(name);` after `fn name(db: &TestDb)`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(&$crate::registry::testing::TestDb::sqlite());
            }
            #[test]
            fn postgres() {
                super::$name(&$crate::registry::testing::TestDb::postgres());
            }
        }
    )*};
}
pub(crate) use both_backends;
