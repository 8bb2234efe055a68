//! `stele init` records the ledger it created (never a password), later
//! commands write there and nowhere else, and a failed init leaves the data
//! directory as it was.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{code, stderr};
use stele_store::DbLocation;
use stele_store::testkit::TestDb;

const PASSWORD: &str = "Qx9-i13-s3cret";

fn stele(data_dir: &Path, db: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stele"));
    cmd.env_remove("STELE_DB")
        .env_remove("STELE_DATA_DIR")
        .env_remove("PGPASSWORD");
    cmd.current_dir(data_dir.parent().unwrap_or(data_dir));
    cmd.arg("--data-dir").arg(data_dir);
    if let Some(db) = db {
        cmd.arg("--db").arg(db);
    }
    cmd.args(args).output().unwrap()
}

fn pg_url(db: &TestDb) -> String {
    let DbLocation::Postgres(url) = &db.location else {
        unreachable!()
    };
    url.clone()
}

/// The test server trusts local connections: the password is sent, not needed.
fn with_password(url: &str) -> String {
    let rest = url.strip_prefix("postgres://").unwrap();
    let (user, rest) = rest.split_once('@').unwrap_or(("postgres", rest));
    format!("postgres://{user}:{PASSWORD}@{rest}")
}

fn chain_size(data_dir: &Path, db: &str, chain: &str) -> u64 {
    let out = stele(data_dir, Some(db), &["--json", "log", "chains"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let chains: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    chains
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["chain_id"] == chain)
        .map_or(0, |c| c["size"].as_u64().unwrap())
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walk(dir);
    names.sort();
    names
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let e = e.unwrap();
        out.push(e.path().display().to_string());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

#[test]
fn init_with_postgres_records_it_without_the_password_and_append_writes_there() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = TestDb::postgres();
    let url = pg_url(&db);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = stele(&data, Some(&with_password(&url)), &["init"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!all.contains(PASSWORD), "{all}");

    let config = std::fs::read_to_string(data.join("stele.toml")).unwrap();
    assert!(
        !config.contains(PASSWORD),
        "the password is in stele.toml:\n{config}"
    );
    assert!(
        config.contains("db = "),
        "the database is recorded:\n{config}"
    );

    // No --db: the event goes to PostgreSQL, and no SQLite file appears.
    let out = stele(
        &data,
        None,
        &[
            "append",
            "--chain",
            "pg",
            "--type",
            "t.x",
            "--payload",
            "{\"n\":1}",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        !data.join("ledger.db").exists(),
        "a SQLite ledger was created"
    );
    assert_eq!(chain_size(&data, &url, "pg"), 1);
    // Reading without --db reads PostgreSQL too.
    let out = stele(&data, None, &["--json", "log", "chains"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"pg\""));
}

#[test]
fn a_write_never_creates_a_new_ledger_in_place_of_the_initialized_one() {
    // The default SQLite ledger, removed after init.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = stele(&data, None, &["init"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    std::fs::remove_file(data.join("ledger.db")).unwrap();
    let out = stele(&data, None, &["append", "--chain", "c", "--type", "t.x"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("not there"), "{}", stderr(&out));
    assert!(!data.join("ledger.db").exists(), "a new ledger was created");

    // A recorded PostgreSQL database that holds no ledger (emptied, or the
    // wrong one): refused, and no schema is created there.
    stele_store::testkit::live_or_skip!(Postgres);
    let db = TestDb::postgres();
    let url = pg_url(&db);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = stele(&data, Some(&url), &["init"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let config = std::fs::read_to_string(data.join("stele.toml")).unwrap();
    let other = TestDb::postgres();
    let config = config.replace(&url, &pg_url(&other));
    std::fs::write(data.join("stele.toml"), config).unwrap();
    let out = stele(&data, None, &["append", "--chain", "c", "--type", "t.x"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds no stele ledger"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        other.query_text(
            "SELECT count(*)::text FROM information_schema.tables WHERE table_name LIKE 'stele%'"
        ),
        Some("0".to_owned())
    );
}

#[test]
fn a_failed_init_leaves_the_directory_as_it_was_and_the_retry_succeeds() {
    stele_store::testkit::live_or_skip!(Postgres);
    // A database that refuses (it does not exist): no data directory appears.
    let db = TestDb::postgres();
    let url = pg_url(&db);
    let missing = format!("{}_missing", url);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = stele(&data, Some(&missing), &["init"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(!data.exists(), "init left {:?}", listing(&data));
    let out = stele(&data, Some(&url), &["init"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // A read-only file where the keys go: the SQLite ledger it created is removed.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("keys"), "in the way").unwrap();
    std::fs::set_permissions(
        data.join("keys"),
        std::os::unix::fs::PermissionsExt::from_mode(0o444),
    )
    .unwrap();
    let before = listing(&data);
    let out = stele(&data, None, &["init"]);
    assert_ne!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(listing(&data), before, "init left things behind");
    std::fs::remove_file(data.join("keys")).unwrap();
    let out = stele(&data, None, &["init"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = stele(&data, None, &["append", "--chain", "c", "--type", "t.x"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // A dangling link where stele.toml goes: nothing written; removed, the retry succeeds.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::symlink(dir.path().join("nowhere"), data.join("stele.toml")).unwrap();
    let before = listing(&data);
    let out = stele(&data, None, &["init"]);
    assert_ne!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(listing(&data), before, "init left things behind");
    std::fs::remove_file(data.join("stele.toml")).unwrap();
    let out = stele(&data, None, &["init"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}
