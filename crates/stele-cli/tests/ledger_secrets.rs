//! Database passwords never reach the terminal: the real binary is given
//! passwords in every form a user might write them, against the real
//! PostgreSQL, and neither stdout nor stderr may contain them.

mod common;

use std::process::{Command, Output};

use common::{code, stderr};
use stele_store::DbLocation;
use stele_store::testkit::TestDb;

const SECRET: &str = "Zq7-s3cret-Vx";

fn stele(data_dir: &std::path::Path, db: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stele"));
    cmd.env_remove("STELE_DB").env_remove("STELE_DATA_DIR");
    // Run beside the data directory, so a location taken for a file name lands there.
    cmd.current_dir(data_dir.parent().unwrap_or(data_dir));
    cmd.arg("--data-dir").arg(data_dir);
    if let Some(db) = db {
        cmd.arg("--db").arg(db);
    }
    cmd.args(args).output().unwrap()
}

fn assert_not_echoed(out: &Output, secret: &str, what: &str) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains(secret),
        "{what}: the password {secret:?} was printed:\n{all}"
    );
}

/// `postgres://user:PASSWORD@host:port/db?query` for the test server's database.
fn with_password(db: &TestDb, password: &str, query: &str) -> String {
    let DbLocation::Postgres(url) = &db.location else {
        unreachable!()
    };
    let rest = url.strip_prefix("postgres://").unwrap();
    // The test server trusts local connections: the password is sent but not needed.
    let (user, rest) = rest.split_once('@').unwrap_or(("postgres", rest));
    let user = user.split(':').next().unwrap();
    format!("postgres://{user}:{password}@{rest}{query}")
}

#[test]
fn a_password_is_never_printed_by_init_or_connection_errors() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = TestDb::postgres();
    // An unencoded `/`: init connects (the driver reads everything before
    // the `@` as credentials) and prints where the ledger is.
    let password = format!("pa/{SECRET}");
    for (case, url) in [
        ("unencoded /", with_password(&db, &password, "")),
        (
            "unencoded / and ?",
            with_password(&db, &format!("{password}?x=1#y"), ""),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let out = stele(&data, Some(&url), &["init"]);
        assert!(out.status.success(), "{case}: {}", stderr(&out));
        assert_not_echoed(&out, SECRET, case);
        let out = stele(&data, Some(&url), &["--json", "init"]);
        assert_eq!(code(&out), 2, "{case}: {}", stderr(&out));
        assert_not_echoed(&out, SECRET, case);
        let out = stele(&data, Some(&url), &["log", "chains"]);
        assert!(out.status.success(), "{case}: {}", stderr(&out));
        assert_not_echoed(&out, SECRET, case);
    }

    // Connection errors: a port nothing listens on, an unknown database.
    for url in [
        format!("postgres://postgres:pa/{SECRET}@127.0.0.1:1/db"),
        format!("postgres://postgres:{SECRET}@127.0.0.1:1/db"),
        with_password(&db, &format!("pa/{SECRET}"), "")
            .replace(&format!("/{}", db_name(&db)), "/stele_no_such_database"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let out = stele(&data, Some(&url), &["init"]);
        assert_eq!(code(&out), 3, "{}", stderr(&out));
        assert_not_echoed(&out, SECRET, "connection error");
        // Nothing was written: a retry with the right location starts clean.
        assert!(!data.join("stele.toml").exists());
        assert!(!data.join("keys").exists());
        let out = stele(&data, Some(&url), &["--json", "log", "chains"]);
        assert_ne!(code(&out), 0, "{}", stderr(&out));
        assert_not_echoed(&out, SECRET, "connection error");
    }
}

fn db_name(db: &TestDb) -> String {
    let DbLocation::Postgres(url) = &db.location else {
        unreachable!()
    };
    url.rsplit('/').next().unwrap().to_owned()
}

#[test]
fn a_password_parameter_is_hidden_in_any_spelling() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = TestDb::postgres();
    let DbLocation::Postgres(url) = &db.location else {
        unreachable!()
    };
    for param in [
        "password",
        "PASSWORD",
        "Password",
        "pass%77ord",
        "sslpassword",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let with_param = format!("{url}?{param}={SECRET}");
        let out = stele(&data, Some(&with_param), &["init"]);
        assert_not_echoed(&out, SECRET, param);
        assert!(
            stderr(&out).contains("***") || String::from_utf8_lossy(&out.stdout).contains("***"),
            "{param}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        // A port nothing listens on: the connection error names the location.
        let unreachable = format!("postgres://postgres@127.0.0.1:1/db?{param}={SECRET}");
        let out = stele(&data, Some(&unreachable), &["log", "chains"]);
        assert_ne!(code(&out), 0);
        assert_not_echoed(&out, SECRET, param);
    }
}

#[test]
fn a_libpq_keyword_string_is_refused_without_echo() {
    for conninfo in [
        format!("host=127.0.0.1 port=5432 user=postgres password={SECRET} dbname=postgres"),
        format!("dbname = postgres password = '{SECRET}'"),
        format!("postgress://postgres:{SECRET}@127.0.0.1/db"),
        format!("postgres:{SECRET}@127.0.0.1:5432/postgres"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        for args in [
            &["init"][..],
            &["log", "chains"],
            &["--json", "verify", "log"],
        ] {
            let out = stele(&data, Some(&conninfo), args);
            assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
            assert_not_echoed(&out, SECRET, &conninfo);
        }
        // Nothing was created under that name (the binary ran in `dir`).
        assert!(!dir.path().join(&conninfo).exists());
        assert!(!data.join("stele.toml").exists());
        // Through the environment, as the README recommends for passwords.
        let out = Command::new(env!("CARGO_BIN_EXE_stele"))
            .current_dir(dir.path())
            .env("STELE_DB", &conninfo)
            .arg("--data-dir")
            .arg(&data)
            .arg("init")
            .output()
            .unwrap();
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert_not_echoed(&out, SECRET, &conninfo);
    }
}

#[test]
fn a_broken_config_file_is_reported_without_its_values() {
    let cases = [
        // A syntax error on the db line itself.
        format!("max_payload_bytes = 65536\ndb = \"postgres://postgres:{SECRET}@127.0.0.1/db\n"),
        // A syntax error on the line after it.
        format!(
            "max_payload_bytes = 65536\ndb = \"postgres://postgres:{SECRET}@127.0.0.1/db\"\n[anchor\n"
        ),
        // The URL given where a number belongs (serde quotes the value).
        format!("max_payload_bytes = \"postgres://postgres:{SECRET}@h/db\"\n"),
        format!("max_payload_bytes = \"a\\\"{SECRET}\"\n"),
        format!("max_payload_bytes = \"`{SECRET}`\"\n"),
        // An unknown key next to it.
        format!("max_payload_bytes = 65536\ndb = \"postgres://postgres:{SECRET}@h/db\"\ndbx = 1\n"),
        // Wrong type for db.
        format!("max_payload_bytes = 65536\ndb = [\"postgres://postgres:{SECRET}@h/db\"]\n"),
    ];
    for (i, config) in cases.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("stele.toml"), config).unwrap();
        for args in [&["log", "chains"][..], &["--json", "verify", "log"]] {
            let out = stele(&data, None, args);
            assert_eq!(code(&out), 2, "case {i} {args:?}: {}", stderr(&out));
            assert!(stderr(&out).contains("line "), "case {i}: {}", stderr(&out));
            assert_not_echoed(&out, SECRET, &format!("config case {i}"));
        }
    }
}
