//! Test fixtures for stele's own suites: a fresh database on either backend.
//! Built only with the `testkit` feature; never part of a release binary.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::{DbLocation, Store, StoreOptions};

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

/// Whether a PostgreSQL server answers at `url` (benchmarks measure it only then).
pub fn pg_answers(url: &str) -> bool {
    on_postgres(url, PgWork::Batch("")).is_ok()
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

/// What [`on_postgres`] runs.
enum PgWork<'a> {
    /// Statements, as one batch.
    Batch(&'a str),
    /// One query, its rows returned.
    Query(&'a str),
}

/// Runs `work` on a new connection to `url`, in clear (as an attacker or an
/// administrator with a direct connection would), on a thread and a
/// runtime of its own: callable from a plain test and from inside a test's
/// own runtime alike.
fn on_postgres(url: &str, work: PgWork<'_>) -> Result<Vec<tokio_postgres::Row>, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime: {e}"))?;
                runtime.block_on(async {
                    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                        .await
                        .map_err(|e| format!("cannot connect: {e}"))?;
                    let connection = tokio::spawn(connection);
                    let done = match work {
                        PgWork::Batch(sql) => client.batch_execute(sql).await.map(|()| Vec::new()),
                        PgWork::Query(sql) => client.query(sql, &[]).await,
                    };
                    // The session ends before this returns: a test that
                    // counts sessions next does not see this one.
                    drop(client);
                    let _ = connection.await;
                    done.map_err(|e| match e.as_db_error() {
                        Some(db) => format!("{}: {}", db.code().code(), db.message()),
                        None => e.to_string(),
                    })
                })
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
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
        on_postgres(&admin, PgWork::Batch(&format!("CREATE DATABASE {name}"))).unwrap_or_else(
            |e| {
                panic!(
                    "cannot create a test database on the PostgreSQL at {admin} ({e}); run scripts/test.sh, which starts one"
                )
            },
        );
        let url = replace_db(&admin, &name);
        Self {
            location: DbLocation::Postgres(url),
            _dir: None,
            pg_admin: Some((admin, name)),
        }
    }

    /// Opens the shared store for reading and writing, with the default
    /// options (panics on failure: this is a test fixture). Call it inside
    /// a Tokio runtime, which runs the PostgreSQL committer.
    pub async fn open(&self) -> Store {
        Store::open(&self.location, StoreOptions::default())
            .await
            .expect("open store")
    }

    /// Runs raw SQL against the database, as an attacker with database access would.
    pub fn exec(&self, sql: &str) {
        match &self.location {
            DbLocation::Sqlite(p) => {
                rusqlite::Connection::open(p)
                    .and_then(|c| c.execute_batch(sql))
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            DbLocation::Postgres(url) => {
                on_postgres(url, PgWork::Batch(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }

    /// A consistent copy of this SQLite ledger in one file at `to`, as a
    /// backup tool would take it: the WAL's commits included (`VACUUM INTO`).
    /// A plain copy of the main file may miss the newest commits.
    ///
    /// # Panics
    ///
    /// On PostgreSQL, and when the copy fails.
    pub fn sqlite_backup(&self, to: &std::path::Path) {
        let DbLocation::Sqlite(p) = &self.location else {
            panic!("sqlite_backup is for SQLite ledgers");
        };
        rusqlite::Connection::open(p)
            .and_then(|c| c.execute("VACUUM INTO ?1", [to.to_string_lossy()]))
            .unwrap_or_else(|e| panic!("backup of {} to {}: {e}", p.display(), to.display()));
    }

    /// One text value from a query: `None` if it returns no row (or, on
    /// SQLite, a value that is not text).
    pub fn query_text(&self, sql: &str) -> Option<String> {
        match &self.location {
            DbLocation::Sqlite(p) => rusqlite::Connection::open(p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .query_row(sql, [], |r| r.get(0))
                .ok(),
            DbLocation::Postgres(_) => {
                let rows = self.pg_rows(sql);
                assert!(rows.len() <= 1, "{sql}: {} rows, expected one", rows.len());
                rows.first().map(|r| r.get(0))
            }
        }
    }

    /// Every row of a query on this PostgreSQL database, for tests that read
    /// typed values.
    ///
    /// # Panics
    ///
    /// On SQLite, and when the query fails.
    pub fn pg_rows(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        let DbLocation::Postgres(url) = &self.location else {
            panic!(
                "pg_rows needs a PostgreSQL test database, not {}",
                self.location
            )
        };
        on_postgres(url, PgWork::Query(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.pg_admin {
            let _ = on_postgres(
                admin,
                PgWork::Batch(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
            );
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
