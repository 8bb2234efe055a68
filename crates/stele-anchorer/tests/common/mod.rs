//! Keys, events and SQL helpers shared by the anchorer's tests.
#![allow(dead_code)] // each test file uses its own part

use signed_note::StandardSigner;
use stele_ledger::event::{EventInput, Limits, ValidEvent};
use stele_ledger::{HmacKey, KeyId, Keyring};
use stele_store::testkit::TestDb;
use stele_store::{DbLocation, Store, StoreOptions};

/// A fresh checkpoint signing key.
pub fn signer() -> StandardSigner {
    let (skey, _) = signed_note::generate_key(&mut rand::rngs::OsRng, "stele.test");
    StandardSigner::new(&skey).unwrap()
}

/// The HMAC key every event is chained with.
pub fn key() -> HmacKey {
    HmacKey::new(KeyId::new("k1").unwrap(), &[7; 32])
}

/// A keyring holding [`key`].
pub fn ring() -> Keyring {
    Keyring::new(KeyId::new("k1").unwrap(), [key()]).unwrap()
}

/// `n` payment events numbered from `from`.
pub fn events(from: usize, n: usize) -> Vec<ValidEvent> {
    (from..from + n)
        .map(|i| {
            EventInput {
                event_type: "payment.approved".into(),
                actor: Some("alice".into()),
                payload: Some(serde_json::json!({"amount": i, "to": "acct-1"})),
                idempotency_key: None,
            }
            .validate(&Limits::default())
            .unwrap()
        })
        .collect()
}

/// `bytes` as an SQL blob literal for the test database.
pub fn blob(db: &TestDb, bytes: &[u8]) -> String {
    match db.location {
        DbLocation::Sqlite(_) => format!("X'{}'", hex::encode(bytes)),
        DbLocation::Postgres(_) => format!("decode('{}', 'hex')", hex::encode(bytes)),
    }
}

/// The shared store over `db`, opened on `rt` (which runs its committer).
pub fn open(rt: &tokio::runtime::Runtime, db: &TestDb) -> Store {
    rt.block_on(Store::open(&db.location, StoreOptions::default()))
        .unwrap()
}

/// A small runtime for the store and the object store.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}
