//! One schema on both backends: the migrations bring SQLite and PostgreSQL
//! to the same logical schema, an existing ledger is not migrated again,
//! concurrent first starts migrate once, and a stored value stele never
//! writes is read as the same error, naming its row, on both.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Db, event, keyed, keyring, open_reader, runtime, verify};
use stele_anchor::AnchorStatus;
use stele_ledger::ChainId;
use stele_store::testkit::every_backend;
use stele_store::{DbLocation, Store, StoreError, StoreOptions};

on_every_backend_async!(
    concurrent_first_opens_migrate_once,
    an_older_ledger_gets_only_the_missing_migrations,
    a_negative_attempt_count_is_corruption_named_by_its_anchor,
    an_outbox_value_stele_never_writes_is_corruption_named_by_its_anchor,
    an_attempt_count_past_u32_is_corruption_named_by_its_anchor,
    a_negative_anchor_seq_is_corruption_named_by_its_anchor,
    a_negative_chain_index_is_corruption_named_by_its_event,
    a_negative_tree_size_is_corruption_named_by_its_chain,
);

// ---- the logical schema ------------------------------------------------------

/// A column as both backends can describe it.
#[derive(Debug, PartialEq)]
struct Column {
    /// As the backend names it: `bigint`, `timestamp with time zone`, `INTEGER`, …
    ty: String,
    not_null: bool,
}

/// An index other than the primary key's.
#[derive(Debug, PartialEq)]
struct Index {
    unique: bool,
    /// Has a `WHERE` clause.
    partial: bool,
    columns: Vec<String>,
}

#[derive(Debug, Default)]
struct Table {
    columns: BTreeMap<String, Column>,
    primary_key: Vec<String>,
    indexes: BTreeMap<String, Index>,
}

type Schema = BTreeMap<String, Table>;

/// The SQLite type a PostgreSQL column type is stored as. A type missing
/// here is reported, not guessed.
fn sqlite_type_of(pg: &str) -> Option<&'static str> {
    Some(match pg {
        "text" => "TEXT",
        "bigint" => "INTEGER",
        "bytea" => "BLOB",
        // SQLite keeps times as RFC 3339 text.
        "timestamp with time zone" => "TEXT",
        _ => return None,
    })
}

/// Where the backends differ on purpose, each exactly as [`differences`]
/// words it. A difference not listed fails the test, and so does one listed
/// that is gone (remove it here).
const INTENDED_DIFFERENCES: &[&str] = &[
    // Leases are timed by one clock every writer shares: the server's on
    // PostgreSQL (several nodes), the host's on SQLite (one file, one host).
    "stele_anchors.lease_until: PostgreSQL timestamp with time zone (TEXT on SQLite), SQLite INTEGER",
    // SQLite lets NULL into a non-integer PRIMARY KEY of a rowid table
    // unless the column says NOT NULL; version 1 did not, and changing it
    // means rebuilding the table. stele never writes a NULL chain id.
    "stele_chains.chain_id: PostgreSQL NOT NULL, SQLite nullable",
];

/// Every way the two schemas differ, one line each.
fn differences(pg: &Schema, sqlite: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    let null = |not_null: bool| if not_null { "NOT NULL" } else { "nullable" };
    for name in pg.keys().filter(|t| !sqlite.contains_key(*t)) {
        out.push(format!("table {name}: on PostgreSQL only"));
    }
    for name in sqlite.keys().filter(|t| !pg.contains_key(*t)) {
        out.push(format!("table {name}: on SQLite only"));
    }
    for (name, p) in pg {
        let Some(s) = sqlite.get(name) else { continue };
        for (col, pc) in &p.columns {
            let Some(sc) = s.columns.get(col) else {
                out.push(format!("{name}.{col}: on PostgreSQL only"));
                continue;
            };
            match sqlite_type_of(&pc.ty) {
                None => out.push(format!(
                    "{name}.{col}: no SQLite type known for PostgreSQL {} (add one to sqlite_type_of)",
                    pc.ty
                )),
                Some(mapped) if mapped != sc.ty => out.push(format!(
                    "{name}.{col}: PostgreSQL {} ({mapped} on SQLite), SQLite {}",
                    pc.ty, sc.ty
                )),
                Some(_) => {}
            }
            if pc.not_null != sc.not_null {
                out.push(format!(
                    "{name}.{col}: PostgreSQL {}, SQLite {}",
                    null(pc.not_null),
                    null(sc.not_null)
                ));
            }
        }
        for col in s.columns.keys().filter(|c| !p.columns.contains_key(*c)) {
            out.push(format!("{name}.{col}: on SQLite only"));
        }
        if p.primary_key != s.primary_key {
            out.push(format!(
                "{name}: primary key ({}) on PostgreSQL, ({}) on SQLite",
                p.primary_key.join(", "),
                s.primary_key.join(", ")
            ));
        }
        for (index, pi) in &p.indexes {
            match s.indexes.get(index) {
                None => out.push(format!("index {index} on {name}: on PostgreSQL only")),
                Some(si) if si != pi => out.push(format!(
                    "index {index} on {name}: {pi:?} on PostgreSQL, {si:?} on SQLite"
                )),
                Some(_) => {}
            }
        }
        for index in s.indexes.keys().filter(|i| !p.indexes.contains_key(*i)) {
            out.push(format!("index {index} on {name}: on SQLite only"));
        }
    }
    out
}

/// The schema as `information_schema` and `pg_index` describe it.
fn pg_schema(db: &Db) -> Schema {
    let mut schema = Schema::new();
    for r in db.pg_rows(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable = 'NO'
           FROM information_schema.columns WHERE table_schema = current_schema()",
    ) {
        schema.entry(r.get(0)).or_default().columns.insert(
            r.get(1),
            Column {
                ty: r.get(2),
                not_null: r.get(3),
            },
        );
    }
    for r in db.pg_rows(
        "SELECT t.relname::text, i.relname::text, x.indisprimary, x.indisunique,
                x.indpred IS NOT NULL,
                array(SELECT a.attname::text
                        FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
                       ORDER BY k.n)
           FROM pg_index x
           JOIN pg_class i ON i.oid = x.indexrelid
           JOIN pg_class t ON t.oid = x.indrelid
          WHERE t.relnamespace = current_schema()::regnamespace",
    ) {
        let table = schema.entry(r.get(0)).or_default();
        let columns: Vec<String> = r.get(5);
        if r.get::<_, bool>(2) {
            table.primary_key = columns;
        } else {
            table.indexes.insert(
                r.get(1),
                Index {
                    unique: r.get(3),
                    partial: r.get(4),
                    columns,
                },
            );
        }
    }
    schema
}

/// The schema as `pragma_table_info` and `pragma_index_list` describe it.
fn sqlite_schema(path: &Path) -> Schema {
    let conn = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<(String, String)> = conn
        .prepare(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut schema = Schema::new();
    for (name, sql) in tables {
        let mut table = Table::default();
        let mut key: Vec<(i64, String, String)> = Vec::new();
        let mut info = conn
            .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)")
            .unwrap();
        let mut rows = info.query([&name]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let col: String = r.get(0).unwrap();
            let ty: String = r.get(1).unwrap();
            let pk: i64 = r.get(3).unwrap();
            if pk > 0 {
                key.push((pk, col.clone(), ty.clone()));
            }
            table.columns.insert(
                col,
                Column {
                    ty: ty.to_ascii_uppercase(),
                    not_null: r.get(2).unwrap(),
                },
            );
        }
        key.sort();
        // What SQLite enforces beyond the declared NOT NULLs: every key
        // column of a WITHOUT ROWID table, and an INTEGER PRIMARY KEY (the
        // rowid itself).
        let without_rowid = sql.to_ascii_uppercase().contains("WITHOUT ROWID");
        let rowid_alias = key.len() == 1 && key[0].2.eq_ignore_ascii_case("INTEGER");
        if without_rowid || rowid_alias {
            for (_, col, _) in &key {
                table.columns.get_mut(col).unwrap().not_null = true;
            }
        }
        table.primary_key = key.into_iter().map(|(_, col, _)| col).collect();
        let mut list = conn
            .prepare("SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1)")
            .unwrap();
        let mut rows = list.query([&name]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let origin: String = r.get(2).unwrap();
            // The primary key's own index is the primary key, compared above.
            if origin == "pk" {
                continue;
            }
            let index: String = r.get(0).unwrap();
            let columns = conn
                .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
                .unwrap()
                .query_map([&index], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            table.indexes.insert(
                index,
                Index {
                    unique: r.get(1).unwrap(),
                    partial: r.get(3).unwrap(),
                    columns,
                },
            );
        }
        schema.insert(name, table);
    }
    schema
}

fn schema_of(db: &Db) -> Schema {
    match &db.location {
        DbLocation::Sqlite(path) => sqlite_schema(path),
        DbLocation::Postgres(_) => pg_schema(db),
    }
}

/// A fresh ledger on each backend, opened (so migrated) once; `None`
/// where PostgreSQL is not available (the test skips).
fn migrated_pair(test: &str) -> Option<(Db, Db)> {
    let mut dbs = every_backend(test);
    runtime().block_on(async {
        for db in &dbs {
            db.open().await.close().await;
        }
    });
    let pg = dbs
        .pop()
        .filter(|db| matches!(db.location, DbLocation::Postgres(_)))?;
    let sqlite = dbs.pop()?;
    Some((pg, sqlite))
}

#[test]
fn both_backends_end_at_the_same_logical_schema() {
    let Some((pg, sqlite)) = migrated_pair("both_backends_end_at_the_same_logical_schema") else {
        return;
    };
    let (pg, sqlite) = (schema_of(&pg), schema_of(&sqlite));
    // Not trivially equal: the ledger's tables and their keys were read.
    for table in [
        "audit_events",
        "stele_chains",
        "stele_anchors",
        "stele_schema",
    ] {
        assert!(
            !pg[table].columns.is_empty() && !pg[table].primary_key.is_empty(),
            "{table}: {pg:?}"
        );
    }
    assert_eq!(
        sqlite["audit_events"].indexes["audit_events_idempotency"],
        Index {
            unique: true,
            partial: true,
            columns: vec!["chain_id".into(), "idempotency_key".into()],
        }
    );
    assert_eq!(differences(&pg, &sqlite), INTENDED_DIFFERENCES);
}

/// The comparison catches drift: a column, an index or a NOT NULL that one
/// backend's migrations add and the other's do not.
#[test]
fn a_change_to_one_backend_only_is_caught() {
    let Some((pg, sqlite)) = migrated_pair("a_change_to_one_backend_only_is_caught") else {
        return;
    };
    sqlite.exec("ALTER TABLE audit_events ADD COLUMN received_at TEXT");
    pg.exec(
        "CREATE INDEX audit_events_by_type ON audit_events (event_type); \
         ALTER TABLE stele_anchors ALTER COLUMN last_error SET NOT NULL",
    );
    let found = differences(&schema_of(&pg), &schema_of(&sqlite));
    let unintended: Vec<&String> = found
        .iter()
        .filter(|d| !INTENDED_DIFFERENCES.contains(&d.as_str()))
        .collect();
    assert_eq!(
        unintended,
        [
            "audit_events.received_at: on SQLite only",
            "index audit_events_by_type on audit_events: on PostgreSQL only",
            "stele_anchors.last_error: PostgreSQL NOT NULL, SQLite nullable",
        ]
    );
}

// ---- existing ledgers ----------------------------------------------------------

/// A ledger written by stele before its migrations moved to files (schema
/// version 3: 12 events on chain `baseline`, keyed with the test keyring,
/// and one pending anchor).
const LEDGER_V3: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ledger-v3.sqlite3"
);

fn sqlite_rows(path: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let width = stmt.column_count();
    stmt.query_map([], |r| (0..width).map(|i| r.get(i)).collect())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

const SCHEMA_ROWS: &str = "SELECT version || '', applied_at FROM stele_schema ORDER BY version";
const SCHEMA_TEXT: &str = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name";

/// Every stored value of every event, in key order.
const EVENT_ROWS: &str = "SELECT chain_id, chain_index || '', ts, event_type, actor, payload, \
     idempotency_key, key_id, hex(leaf_hash), hex(event_hash), hex(merkle_nodes) \
     FROM audit_events ORDER BY chain_id, chain_index";

#[test]
fn a_ledger_from_before_is_not_migrated_again_and_matches_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("ledger.db");
    std::fs::copy(LEDGER_V3, &old).unwrap();
    let recorded = sqlite_rows(&old, SCHEMA_ROWS);
    assert_eq!(recorded.len(), 3, "{recorded:?}");
    let events = sqlite_rows(&old, EVENT_ROWS);
    assert_eq!(events.len(), 12);

    let location = DbLocation::Sqlite(old.clone());
    let chain = ChainId::new("baseline").unwrap();
    let rt = runtime();
    // Version 4 changed only how events are laid out: a read-only open
    // (an auditor's copy) reads a version-3 ledger as it is, and changes
    // nothing of it.
    rt.block_on(async {
        let reader = open_reader(&location).await.unwrap();
        let report = verify(&reader, &chain, Some(&keyring())).await.unwrap();
        assert!(report.is_clean(), "{:?}", report.findings);
        assert_eq!(report.events_checked, 12);
        reader.close().await;
    });
    assert_eq!(
        sqlite_rows(&old, SCHEMA_ROWS),
        recorded,
        "a read migrates nothing"
    );
    rt.block_on(async {
        let store = Store::open(&location, StoreOptions::default())
            .await
            .unwrap();
        let report = verify(&store, &chain, Some(&keyring())).await.unwrap();
        assert!(report.is_clean(), "{:?}", report.findings);
        assert_eq!(report.events_checked, 12);
        assert_eq!(store.anchors(None, None).await.unwrap().len(), 1);
        store
            .append(&chain, vec![event(12)], keyring().active())
            .await
            .unwrap();
        store.close().await;
    });
    // Versions 1 to 3 are not applied again; 4 moved every row as it was.
    let migrated = sqlite_rows(&old, SCHEMA_ROWS);
    assert_eq!(migrated[..3], recorded, "no version applied again");
    assert_eq!(
        migrated[3..]
            .iter()
            .map(|r| r[0].clone())
            .collect::<Vec<_>>(),
        [Some("4".to_owned())]
    );
    assert_eq!(sqlite_rows(&old, EVENT_ROWS)[..12], events);
    drop(rt.block_on(open_reader(&location)).unwrap());

    // A new ledger's schema is the old one to the letter (SQLite keeps
    // each CREATE statement's text).
    let new = Db::sqlite();
    rt.block_on(async { new.open().await.close().await });
    let DbLocation::Sqlite(new) = &new.location else {
        unreachable!()
    };
    assert_eq!(
        sqlite_rows(new, SCHEMA_TEXT),
        sqlite_rows(&old, SCHEMA_TEXT)
    );
    assert_eq!(sqlite_rows(new, SCHEMA_ROWS).len(), 4);
    // The events table is a rowid table now, on both.
    for path in [new, &old] {
        let sql = sqlite_rows(
            path,
            "SELECT sql FROM sqlite_master WHERE name = 'audit_events'",
        );
        let sql = sql[0][0].clone().unwrap();
        assert!(!sql.to_ascii_uppercase().contains("WITHOUT ROWID"), "{sql}");
    }
}

/// Several processes starting on one new ledger at once: each opens it,
/// and every migration is applied once.
async fn concurrent_first_opens_migrate_once(db: &Db) {
    let start = std::sync::Barrier::new(6);
    // Each on a thread and a runtime of its own, as processes would.
    std::thread::scope(|s| {
        let opens: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    runtime().block_on(async {
                        start.wait();
                        let store = Store::open(&db.location, StoreOptions::default()).await?;
                        store.close().await;
                        Ok::<_, StoreError>(())
                    })
                })
            })
            .collect();
        for open in opens {
            open.join().unwrap().unwrap();
        }
    });
    let versions = match &db.location {
        DbLocation::Sqlite(_) => {
            "SELECT group_concat(version, ',') FROM (SELECT version FROM stele_schema ORDER BY version)"
        }
        DbLocation::Postgres(_) => {
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM stele_schema"
        }
    };
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .count();
    let expected: Vec<String> = (1..=migrations).map(|v| v.to_string()).collect();
    assert_eq!(db.query_text(versions), Some(expected.join(",")));
}

/// A ledger of an earlier schema (here version 2: before anchor leases)
/// gets only the migrations it lacks, each recorded once; until then a
/// read-only open refuses it, and (PostgreSQL) a role that may only read
/// cannot migrate it and is told why, with nothing changed.
async fn an_older_ledger_gets_only_the_missing_migrations(db: &Db) {
    ledger_with_an_anchor(db).await;
    db.exec(
        "ALTER TABLE stele_anchors DROP COLUMN lease_owner; \
         ALTER TABLE stele_anchors DROP COLUMN lease_until; \
         DELETE FROM stele_schema WHERE version >= 3",
    );
    let rows = match db.location {
        DbLocation::Sqlite(_) => {
            "SELECT group_concat(version || ' ' || applied_at, ', ') FROM (SELECT * FROM stele_schema ORDER BY version)"
        }
        DbLocation::Postgres(_) => {
            "SELECT string_agg(version || ' ' || applied_at, ', ' ORDER BY version) FROM stele_schema"
        }
    };
    let before = db.query_text(rows).unwrap();
    assert!(
        before.starts_with("1 ") && before.contains(", 2 "),
        "{before}"
    );

    let err = open_reader(&db.location).await.err().unwrap();
    assert!(
        err.to_string()
            .contains("(version 2) is older than this stele reads"),
        "{err}"
    );
    if let DbLocation::Postgres(url) = &db.location {
        let reader = SelectOnlyRole::create(db);
        let err = Store::open(
            &DbLocation::Postgres(reader.url(url)),
            StoreOptions::default(),
        )
        .await
        .err()
        .unwrap();
        assert_eq!(err.sqlstate(), Some("42501"), "{err}");
        assert!(
            err.to_string().contains(
                "this role may not create them: open the ledger once with the role that writes it"
            ),
            "{err}"
        );
    }
    assert_eq!(db.query_text(rows).unwrap(), before, "nothing was changed");

    let store = db.open().await;
    let after = db.query_text(rows).unwrap();
    assert!(
        after.starts_with(&format!("{before}, 3 ")),
        "versions 1 and 2 kept, 3 applied: {after}"
    );
    assert!(after.contains(", 4 "), "and 4 after it: {after}");
    // What version 3 added works.
    assert!(
        store
            .lease_anchor(&outbox(), 1, "me", std::time::Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert_eq!(store.anchors(None, None).await.unwrap()[0].attempts, 1);
    drop(open_reader(&db.location).await.unwrap());
}

/// A PostgreSQL login role granted SELECT on the ledger's tables and
/// nothing else; dropped with the guard.
struct SelectOnlyRole<'a> {
    db: &'a Db,
    name: String,
}

impl<'a> SelectOnlyRole<'a> {
    fn create(db: &'a Db) -> Self {
        let name = format!("stele_schema_reader_{}", std::process::id());
        db.exec(&format!(
            "DROP ROLE IF EXISTS {name}; CREATE ROLE {name} LOGIN; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {name};"
        ));
        Self { db, name }
    }

    /// `url`, logging in as this role.
    fn url(&self, url: &str) -> String {
        let as_role = url.replacen("postgres@", &format!("{}@", self.name), 1);
        assert_ne!(as_role, url, "the fixture URL logs in as postgres");
        as_role
    }
}

impl Drop for SelectOnlyRole<'_> {
    fn drop(&mut self) {
        let name = &self.name;
        self.db.exec(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'; \
             DROP OWNED BY {name}; DROP ROLE {name};"
        ));
    }
}

// ---- values stele never writes ---------------------------------------------------

fn outbox() -> ChainId {
    ChainId::new("outbox").unwrap()
}

/// A ledger with two events and anchor 1 of chain `outbox` pending.
async fn ledger_with_an_anchor(db: &Db) {
    let store = db.open().await;
    store
        .append(
            &outbox(),
            vec![keyed(0, "k0"), event(1)],
            keyring().active(),
        )
        .await
        .unwrap();
    store
        .insert_anchor(&common::pending_anchor("outbox", 1, 2, b"{}"))
        .await
        .unwrap();
    store.close().await;
}

/// The message of a [`StoreError::Corrupt`]; anything else fails.
fn corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Corrupt(what)) => what,
        other => panic!("expected stored data reported corrupt, got {other:?}"),
    }
}

/// Every way of reading the outbox reports the same corrupt row.
async fn outbox_reads_as_corrupt(db: &Db, expected: &str) {
    let store = db.open().await;
    assert_eq!(corrupt(store.anchors(None, None).await), expected);
    assert_eq!(corrupt(store.last_anchor(&outbox()).await), expected);
    let mut snapshot = store.read_snapshot().await.unwrap();
    assert_eq!(corrupt(snapshot.anchors(None, None).await), expected);
}

async fn a_negative_attempt_count_is_corruption_named_by_its_anchor(db: &Db) {
    ledger_with_an_anchor(db).await;
    db.exec("UPDATE stele_anchors SET attempts = -1");
    outbox_reads_as_corrupt(
        db,
        "anchor 1 of chain \"outbox\": attempts is -1, which stele never writes",
    )
    .await
}

/// The typed columns (trigger, status, lock mode, retain-until) read back
/// only as what stele writes: anything else names its row and column.
async fn an_outbox_value_stele_never_writes_is_corruption_named_by_its_anchor(db: &Db) {
    ledger_with_an_anchor(db).await;
    let cases = [
        ("trigger = 'whenever'", "trigger is \"whenever\""),
        ("status = 'lost'", "status is \"lost\""),
        ("lock_mode = 'LEGAL_HOLD'", "lock_mode is \"LEGAL_HOLD\""),
        ("retain_until = 'forever'", "retain_until is \"forever\""),
    ];
    for (set, named) in cases {
        db.exec("UPDATE stele_anchors SET trigger = 'manual', status = 'pending', lock_mode = NULL, retain_until = NULL");
        db.exec(&format!("UPDATE stele_anchors SET {set}"));
        outbox_reads_as_corrupt(
            db,
            &format!("anchor 1 of chain \"outbox\": {named}, which stele never writes"),
        )
        .await;
    }
    // What stele writes reads back typed.
    db.exec("UPDATE stele_anchors SET status = 'verified', lock_mode = 'COMPLIANCE', retain_until = '2027-02-19T14:00:00Z', trigger = 'shutdown'");
    let store = db.open().await;
    let read = store.last_anchor(&outbox()).await.unwrap().unwrap();
    assert_eq!(
        (read.trigger, read.status, read.lock_mode, read.retain_until),
        (
            stele_anchor::Trigger::Shutdown,
            AnchorStatus::Verified,
            Some(stele_anchor::LockMode::Compliance),
            stele_anchor::parse_retain_until("2027-02-19T14:00:00Z"),
        )
    );
}

async fn an_attempt_count_past_u32_is_corruption_named_by_its_anchor(db: &Db) {
    ledger_with_an_anchor(db).await;
    db.exec("UPDATE stele_anchors SET attempts = 4294967296");
    outbox_reads_as_corrupt(
        db,
        "anchor 1 of chain \"outbox\": attempts is 4294967296, which stele never writes",
    )
    .await
}

async fn a_negative_anchor_seq_is_corruption_named_by_its_anchor(db: &Db) {
    ledger_with_an_anchor(db).await;
    db.exec("UPDATE stele_anchors SET anchor_seq = -2");
    outbox_reads_as_corrupt(
        db,
        "anchor -2 of chain \"outbox\": anchor_seq is -2, which stele never writes",
    )
    .await
}

/// The idempotency lookup of an append reads the stored event back: a
/// corrupt one stops the append, and nothing is written.
async fn a_negative_chain_index_is_corruption_named_by_its_event(db: &Db) {
    ledger_with_an_anchor(db).await;
    // Row 0: the append's Merkle frontier (in row 1) is still there to read.
    db.exec("UPDATE audit_events SET chain_index = -1 WHERE idempotency_key = 'k0'");
    let store = db.open().await;
    assert_eq!(
        corrupt(
            store
                .append(&outbox(), vec![keyed(0, "k0")], keyring().active())
                .await
        ),
        "event seq -1 of chain \"outbox\": chain_index is -1, which stele never writes"
    );
    assert_eq!(
        db.query_text("SELECT count(*) || '' FROM audit_events")
            .as_deref(),
        Some("2"),
        "nothing was appended"
    );
}

async fn a_negative_tree_size_is_corruption_named_by_its_chain(db: &Db) {
    ledger_with_an_anchor(db).await;
    db.exec("UPDATE stele_chains SET tree_size = -5");
    let store = db.open().await;
    let expected = "the head of chain \"outbox\": tree_size is -5, which stele never writes";
    assert_eq!(corrupt(store.head(&outbox()).await), expected);
    let mut snapshot = store.read_snapshot().await.unwrap();
    assert_eq!(corrupt(snapshot.head(&outbox()).await), expected);
}
