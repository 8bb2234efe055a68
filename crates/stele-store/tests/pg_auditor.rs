//! An auditor's PostgreSQL role can only read: stele must open, read and
//! verify the ledger with it, and writing must fail without changing anything.

mod common;

use common::{Db, event, keyring, runtime, verify};
use stele_ledger::ChainId;
use stele_store::{DbLocation, Store, StoreError, StoreOptions};

/// A login role granted SELECT on the ledger's tables and nothing else;
/// dropped with the guard.
struct ReadOnlyRole<'a> {
    db: &'a Db,
    name: String,
}

impl<'a> ReadOnlyRole<'a> {
    fn create(db: &'a Db) -> Self {
        static ROLES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = ROLES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("stele_auditor_{}_{n}", std::process::id());
        db.exec(&format!(
            "DROP ROLE IF EXISTS {name}; CREATE ROLE {name} LOGIN; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {name};"
        ));
        Self { db, name }
    }

    /// The test database's URL, logging in as this role.
    fn url(&self) -> String {
        let DbLocation::Postgres(url) = &self.db.location else {
            unreachable!("a PostgreSQL fixture")
        };
        url.replacen("postgres@", &format!("{}@", self.name), 1)
    }
}

impl Drop for ReadOnlyRole<'_> {
    fn drop(&mut self) {
        let name = &self.name;
        self.db.exec(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'; \
             DROP OWNED BY {name}; DROP ROLE {name};"
        ));
    }
}

#[test]
fn a_read_only_role_opens_reads_and_verifies_but_cannot_write() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    let keys = keyring();
    let chain = ChainId::new("audited").unwrap();
    let rt = runtime();
    rt.block_on(async {
        let writer = db.open().await;
        writer
            .append(&chain, (0..30).map(event).collect(), keys.active())
            .await
            .unwrap();
        writer.close().await;
    });

    let role = ReadOnlyRole::create(&db);
    assert!(
        role.url().contains("stele_auditor_"),
        "the fixture URL logs in as postgres: {}",
        role.url()
    );
    let err = rt.block_on(async {
        // A writing open: the schema is current, so opening writes nothing.
        let auditor = Store::open(&DbLocation::Postgres(role.url()), StoreOptions::default())
            .await
            .unwrap_or_else(|e| panic!("a read-only role must be able to open the ledger: {e}"));
        assert_eq!(auditor.chains().await.unwrap().len(), 1);
        let report = verify(&auditor, &chain, Some(&keys)).await.unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(report.events_checked, 30);

        auditor
            .append(&chain, vec![event(30)], keys.active())
            .await
            .unwrap_err()
    });
    assert!(matches!(err, StoreError::Postgres { .. }), "{err}");
    assert!(err.to_string().contains("permission denied"), "{err}");
    // Configuration, not a passing fault: the SQLSTATE says so, kept.
    assert_eq!(err.sqlstate(), Some("42501"), "{err:?}");
    assert!(!err.is_retryable(), "{err:?}");
    assert_eq!(
        db.query_text("SELECT count(*)::text FROM audit_events")
            .as_deref(),
        Some("30")
    );
}

#[test]
fn a_read_only_role_cannot_create_the_schema_and_says_so() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    let role = ReadOnlyRole::create(&db);
    let err = runtime()
        .block_on(Store::open(
            &DbLocation::Postgres(role.url()),
            StoreOptions::default(),
        ))
        .expect_err("a role that cannot create tables cannot set the ledger up");
    assert!(err.to_string().contains("permission denied"), "{err}");
    assert_eq!(err.sqlstate(), Some("42501"), "{err:?}");
    assert!(!err.is_retryable(), "{err:?}");
    assert_eq!(
        db.query_text("SELECT coalesce(to_regclass('stele_schema')::text, 'none')")
            .as_deref(),
        Some("none"),
        "nothing was created"
    );
}
