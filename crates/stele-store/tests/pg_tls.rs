//! TLS to the real PostgreSQL (scripts/test.sh provides it, with `ssl = on`
//! and its own certificate, as Debian's server is set up): each `sslmode`
//! does what libpq's does, checked on the server's side in `pg_stat_ssl`.

mod common;

use common::{Db, event, keyring, runtime, verify};
use stele_ledger::ChainId;
use stele_store::{DbLocation, Store, StoreError, StoreOptions};
use tokio::runtime::Runtime;

/// The test database's URL with `params` appended.
fn url_with(db: &Db, params: &str) -> String {
    let DbLocation::Postgres(url) = &db.location else {
        unreachable!("a PostgreSQL fixture")
    };
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}{params}")
}

/// Whether each of stele's open connections to the test database is
/// encrypted, as the server sees it.
fn stele_sessions_encrypted(db: &Db) -> Vec<bool> {
    let flags = db
        .query_text(
            "SELECT coalesce(string_agg(s.ssl::text, ',' ORDER BY a.pid), '') FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = current_database() AND a.application_name = 'stele'",
        )
        .unwrap_or_default();
    flags
        .split(',')
        .filter(|f| !f.is_empty())
        .map(|f| f == "true")
        .collect()
}

/// Closes the store and waits until the server has ended its sessions.
fn close(rt: &Runtime, db: &Db, store: Store) {
    rt.block_on(store.close());
    drop(store);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !stele_sessions_encrypted(db).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "stele's sessions did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The server's certificate file, asserting the server offers TLS at all.
fn server_certificate(db: &Db) -> String {
    assert_eq!(
        db.query_text("SHOW ssl").as_deref(),
        Some("on"),
        "the test PostgreSQL must have ssl = on (Debian's package sets it up with its snakeoil certificate)"
    );
    db.query_text("SHOW ssl_cert_file").unwrap()
}

/// A name of this machine that the certificate at `path` is valid for.
fn name_in_certificate(path: &str) -> String {
    use rustls_pki_types::pem::PemObject as _;
    let der = rustls_pki_types::CertificateDer::from_pem_file(path).unwrap();
    let cert = webpki::EndEntityCert::try_from(&der).unwrap();
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    ["localhost", host.trim()]
        .into_iter()
        .filter(|n| !n.is_empty())
        .find(|n| {
            let name = rustls_pki_types::ServerName::try_from(*n).unwrap();
            cert.verify_is_valid_for_subject_name(&name).is_ok()
        })
        .unwrap_or_else(|| {
            panic!("the server certificate {path} names neither localhost nor this host")
        })
        .to_owned()
}

/// Appends to a new chain, then verifies it while another read snapshot
/// holds a connection: the store has two connections up (its pool makes
/// each one the same way), both idle in its pool when this returns.
fn append_and_verify(rt: &Runtime, url: &str) -> Result<Store, StoreError> {
    static CHAINS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    rt.block_on(async {
        let store = Store::open(
            &DbLocation::Postgres(url.to_owned()),
            StoreOptions::default(),
        )
        .await?;
        let keys = keyring();
        let n = CHAINS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let chain = ChainId::new(&format!("tls-{n}")).unwrap();
        store
            .append(&chain, (0..20).map(event).collect(), keys.active())
            .await?;
        let held = store.read_snapshot().await?;
        let report = verify(&store, &chain, Some(&keys)).await?;
        held.end().await?;
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(report.events_checked, 20);
        Ok(store)
    })
}

#[test]
fn require_encrypts_every_connection_and_disable_none() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    server_certificate(&db);
    let rt = runtime();

    let store = append_and_verify(&rt, &url_with(&db, "sslmode=require")).unwrap();
    assert_eq!(
        stele_sessions_encrypted(&db),
        [true, true],
        "both pooled connections"
    );
    close(&rt, &db, store);

    // prefer, the default, takes TLS when the server offers it.
    let store = append_and_verify(&rt, &url_with(&db, "sslmode=prefer")).unwrap();
    assert_eq!(stele_sessions_encrypted(&db), [true, true]);
    close(&rt, &db, store);

    let store = append_and_verify(&rt, &url_with(&db, "sslmode=disable")).unwrap();
    assert_eq!(stele_sessions_encrypted(&db), [false, false]);
    close(&rt, &db, store);

    // A mode libpq does not know is refused before anything is attempted.
    let err = append_and_verify(&rt, &url_with(&db, "sslmode=always"))
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::InvalidLocation { .. }), "{err}");
    assert!(stele_sessions_encrypted(&db).is_empty());
}

#[test]
fn verify_full_checks_the_certificate_chain_and_the_host_name() {
    stele_store::testkit::live_or_skip!(Postgres);
    let db = Db::postgres();
    let cert = server_certificate(&db);
    let rt = runtime();
    let DbLocation::Postgres(url) = &db.location else {
        unreachable!()
    };
    // Debian's snakeoil certificate names the machine (`localhost` or its
    // host name), not the address.
    let name = name_in_certificate(&cert);
    let by_name = url.replace("@127.0.0.1:", &format!("@{name}:"));
    assert_ne!(
        &by_name, url,
        "the test PostgreSQL URL is expected to use 127.0.0.1"
    );
    let joiner = if by_name.contains('?') { '&' } else { '?' };

    let store = append_and_verify(
        &rt,
        &format!("{by_name}{joiner}sslmode=verify-full&sslrootcert={cert}"),
    )
    .unwrap_or_else(|e| panic!("verify-full to localhost with the server's own certificate: {e}"));
    assert_eq!(stele_sessions_encrypted(&db), [true, true]);
    close(&rt, &db, store);

    // The certificate does not name the address: refused, with the reason.
    let err = append_and_verify(
        &rt,
        &url_with(&db, &format!("sslmode=verify-full&sslrootcert={cert}")),
    )
    .expect_err("a host name the certificate does not hold is refused");
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("not valid for name"), "{err}");
    // A certificate that does not fit is configuration: retrying the same
    // connection cannot help (the TLS error arrives as an I/O error).
    assert!(!err.is_retryable(), "{err:?}");

    // verify-ca checks the chain only, so the address is accepted.
    let store = append_and_verify(
        &rt,
        &url_with(&db, &format!("sslmode=verify-ca&sslrootcert={cert}")),
    )
    .unwrap();
    close(&rt, &db, store);

    // A certificate from a CA the client does not trust is refused, by chain.
    let unrelated_ca = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/unrelated-ca.pem"
    );
    let err = append_and_verify(
        &rt,
        &format!("{by_name}{joiner}sslmode=verify-full&sslrootcert={unrelated_ca}"),
    )
    .expect_err("a certificate that does not chain to the given root is refused");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    // verify-ca checks the chain too: the same unrelated CA is refused.
    let err = append_and_verify(
        &rt,
        &url_with(
            &db,
            &format!("sslmode=verify-ca&sslrootcert={unrelated_ca}"),
        ),
    )
    .expect_err("verify-ca refuses a certificate that does not chain to the given root");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}
