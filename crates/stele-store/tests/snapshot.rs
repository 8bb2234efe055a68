//! Consistent reads (`read_consistent`): a verification, an export or a
//! proof reads one state of the chain — its head, its rows (PostgreSQL scans
//! them on a connection of their own) and its stored hashes — however much
//! another session appends meanwhile. On SQLite and the real PostgreSQL,
//! including an auditor's SELECT-only role over TLS.

#[macro_use]
mod common;

use common::{Db, event, keyring};
use stele_ledger::{ChainId, Hash};
use stele_store::{DbLocation, LedgerStore, StoreError, read_consistent, tree_root, verify_chain};

on_every_backend!(
    a_consistent_read_does_not_see_appends_made_during_it,
    an_append_inside_a_consistent_read_is_refused_and_errors_close_it,
);

/// What one consistent read saw.
#[derive(Debug, PartialEq)]
struct Seen {
    head: u64,
    listed: u64,
    tree_size: u64,
    root: Hash,
    rows_scanned: u64,
    events_verified: u64,
}

/// Reads the head, lets `meanwhile` commit an append from another session,
/// then reads everything else a verification reads.
fn read_with_append_in_between(
    reader: &mut dyn LedgerStore,
    chain: &ChainId,
    meanwhile: impl FnOnce(),
) -> Seen {
    let keys = keyring();
    read_consistent(reader, |r| -> Result<Seen, StoreError> {
        let head = r.head(chain)?.expect("the chain exists").size;
        meanwhile();
        // tree_root and verify_chain open consistent reads of their own:
        // nested, they share this one and leave it open.
        let (tree_size, root) = tree_root(r, chain, None)?;
        let mut rows_scanned = 0;
        r.scan_stored(chain, 0, None, &mut |_, _| {
            rows_scanned += 1;
            Ok(())
        })?;
        let report = verify_chain(r, chain, Some(&keys), &mut |_| {})?;
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        Ok(Seen {
            head,
            listed: r.chains()?.first().map_or(0, |h| h.size),
            tree_size,
            root,
            rows_scanned,
            events_verified: report.events_checked,
        })
    })
    .unwrap()
}

fn a_consistent_read_does_not_see_appends_made_during_it(db: &Db) {
    let keys = keyring();
    let chain = ChainId::new("live").unwrap();
    let mut writer = db.open();
    writer
        .append(&chain, (0..10).map(event).collect(), keys.active())
        .unwrap();
    let mut reader = stele_store::open_read_only(&db.location).unwrap();
    let (_, root_at_10) = tree_root(reader.as_mut(), &chain, None).unwrap();

    let seen = read_with_append_in_between(reader.as_mut(), &chain, || {
        writer
            .append(&chain, (10..15).map(event).collect(), keys.active())
            .unwrap();
    });
    assert_eq!(
        seen,
        Seen {
            head: 10,
            listed: 10,
            tree_size: 10,
            root: root_at_10,
            rows_scanned: 10,
            events_verified: 10,
        },
        "every read of one consistent read sees the state it started on"
    );

    // Once it ends, the next read sees the appended events.
    assert_eq!(reader.head(&chain).unwrap().unwrap().size, 15);
    let report = verify_chain(reader.as_mut(), &chain, Some(&keys), &mut |_| {}).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.events_checked, 15);
}

fn an_append_inside_a_consistent_read_is_refused_and_errors_close_it(db: &Db) {
    let keys = keyring();
    let chain = ChainId::new("c").unwrap();
    let mut store = db.open();
    store
        .append(&chain, (0..3).map(event).collect(), keys.active())
        .unwrap();
    let err = read_consistent(store.as_mut(), |s| {
        s.append(&chain, vec![event(3)], keys.active())
    })
    .unwrap_err();
    assert!(matches!(err, StoreError::AppendInReadSnapshot), "{err}");

    // The failed read closed its snapshot: the store appends and reads the new state.
    store.append(&chain, vec![event(3)], keys.active()).unwrap();
    let err = read_consistent(store.as_mut(), |s| tree_root(s, &chain, Some(99))).unwrap_err();
    assert!(matches!(err, StoreError::OutOfRange(_)), "{err}");
    store.append(&chain, vec![event(4)], keys.active()).unwrap();
    assert_eq!(store.head(&chain).unwrap().unwrap().size, 5);
    let report = verify_chain(store.as_mut(), &chain, Some(&keys), &mut |_| {}).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.events_checked, 5);
}

/// An auditor's role may only SELECT and reaches the server over TLS: the
/// exported snapshot works in its read-only transaction and is imported by
/// its scan connection, both encrypted.
#[test]
fn postgres_an_auditor_role_over_tls_reads_one_snapshot() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    assert_eq!(
        db.query_text("SHOW ssl").as_deref(),
        Some("on"),
        "the test PostgreSQL must offer TLS"
    );
    let keys = keyring();
    let chain = ChainId::new("audited").unwrap();
    let mut writer = db.open();
    writer
        .append(&chain, (0..10).map(event).collect(), keys.active())
        .unwrap();

    let role = format!("stele_snapshot_auditor_{}", std::process::id());
    db.exec(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; \
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
    ));
    let DbLocation::Postgres(url) = &db.location else {
        unreachable!("a PostgreSQL fixture")
    };
    let joiner = if url.contains('?') { '&' } else { '?' };
    let auditor_url =
        format!("{url}{joiner}sslmode=require").replacen("postgres@", &format!("{role}@"), 1);
    assert!(auditor_url.contains(&role), "{auditor_url}");

    let mut reader = stele_store::open_read_only(&DbLocation::Postgres(auditor_url)).unwrap();
    let (_, root_at_10) = tree_root(reader.as_mut(), &chain, None).unwrap();
    let seen = read_with_append_in_between(reader.as_mut(), &chain, || {
        writer
            .append(&chain, (10..15).map(event).collect(), keys.active())
            .unwrap();
    });
    let encrypted = db.query_text(&format!(
        "SELECT string_agg(s.ssl::text, ',') FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.usename = '{role}'"
    ));
    drop(reader);
    db.exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'; \
         DROP OWNED BY {role}; DROP ROLE {role};"
    ));
    assert_eq!(
        seen,
        Seen {
            head: 10,
            listed: 10,
            tree_size: 10,
            root: root_at_10,
            rows_scanned: 10,
            events_verified: 10,
        }
    );
    assert_eq!(
        encrypted.as_deref(),
        Some("true,true"),
        "the auditor's session and scan connection"
    );
}

/// A consistent read of a large ledger keeps its main session idle in its
/// transaction while the scan connection reads: a server that ends idle
/// transactions (`idle_in_transaction_session_timeout`) must not end it.
#[test]
fn postgres_a_slow_consistent_read_outlives_the_idle_transaction_timeout() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    let keys = keyring();
    let chain = ChainId::new("slow").unwrap();
    db.open()
        .append(&chain, (0..10).map(event).collect(), keys.active())
        .unwrap();
    db.exec(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET idle_in_transaction_session_timeout = ''100ms''', current_database()); END $$",
    );
    let mut reader = stele_store::open_read_only(&db.location).unwrap();
    let (size, rows) = read_consistent(reader.as_mut(), |r| -> Result<_, StoreError> {
        let head = r.head(&chain)?.expect("the chain exists");
        // Longer than the timeout, as a scan of millions of rows would be.
        std::thread::sleep(std::time::Duration::from_millis(600));
        let mut rows = 0u64;
        r.scan_stored(&chain, 0, None, &mut |_, _| {
            rows += 1;
            Ok(())
        })?;
        let (size, _) = tree_root(r, &chain, Some(head.size))?;
        Ok((size, rows))
    })
    .unwrap();
    assert_eq!((size, rows), (10, 10));
}
