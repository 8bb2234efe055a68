//! Test fixtures for stele's own suites: a fresh database on either backend.
//! Built only with the `testkit` feature; never part of a release binary.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::{DbLocation, LedgerStore};

/// A fresh, empty database on one backend, dropped with the fixture.
pub struct TestDb {
    /// Where the database is.
    pub location: DbLocation,
    _dir: Option<tempfile::TempDir>,
    pg_admin: Option<(String, String)>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub use stele_worm::live_or_skip;
pub use stele_worm::testkit::{Service, live};

/// The PostgreSQL server benchmarks probe (`STELE_TEST_PG_URL`, default the local one).
pub fn pg_admin_url() -> String {
    std::env::var("STELE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// SQLite, and PostgreSQL when it is available: for tests that run one case
/// per backend in a loop. Without PostgreSQL the SQLite half still runs and
/// the PostgreSQL half is skipped (or fails under `STELE_TEST_REQUIRE_LIVE=1`).
pub fn every_backend(test: &str) -> Vec<TestDb> {
    let mut dbs = vec![TestDb::sqlite()];
    if live(test, &[Service::Postgres]) {
        dbs.push(TestDb::postgres());
    }
    dbs
}

impl TestDb {
    /// A new SQLite file in a temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.db");
        Self {
            location: DbLocation::Sqlite(path),
            _dir: Some(dir),
            pg_admin: None,
        }
    }

    /// A new database on the test PostgreSQL (`STELE_TEST_PG_URL`).
    /// Tests call `live_or_skip!(Postgres)` (or use [`every_backend`]) first;
    /// there is no default server here, so a test that forgot fails on a
    /// machine without services instead of finding a server by chance.
    pub fn postgres() -> Self {
        let admin = stele_worm::testkit::env_required("STELE_TEST_PG_URL");
        let name = format!(
            "stele_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin} is not reachable ({e}); run scripts/test.sh, which starts one")
        });
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        let url = replace_db(&admin, &name);
        Self {
            location: DbLocation::Postgres(url),
            _dir: None,
            pg_admin: Some((admin, name)),
        }
    }

    /// Opens the store (panics on failure: this is a test fixture).
    pub fn open(&self) -> Box<dyn LedgerStore> {
        crate::open(&self.location).expect("open store")
    }

    /// Runs raw SQL against the database, as an attacker with database access would.
    pub fn exec(&self, sql: &str) {
        match &self.location {
            DbLocation::Sqlite(p) => {
                rusqlite::Connection::open(p)
                    .unwrap()
                    .execute_batch(sql)
                    .unwrap();
            }
            DbLocation::Postgres(url) => {
                postgres::Client::connect(url, postgres::NoTls)
                    .unwrap()
                    .batch_execute(sql)
                    .unwrap();
            }
        }
    }

    /// One text value from a query.
    pub fn query_text(&self, sql: &str) -> Option<String> {
        match &self.location {
            DbLocation::Sqlite(p) => rusqlite::Connection::open(p)
                .unwrap()
                .query_row(sql, [], |r| r.get(0))
                .ok(),
            DbLocation::Postgres(url) => postgres::Client::connect(url, postgres::NoTls)
                .unwrap()
                .query_opt(sql, &[])
                .unwrap()
                .map(|r| r.get(0)),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.pg_admin
            && let Ok(mut c) = postgres::Client::connect(admin, postgres::NoTls)
        {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

fn replace_db(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}
