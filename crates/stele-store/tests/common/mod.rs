//! Test fixtures: one suite, run against every backend.

// Each test crate uses some of these.
#![allow(dead_code, unused_macros)]

pub mod rfc6962;

/// Runs each case, an `async fn(&Db)`, on [`runtime`] once on SQLite and
/// once on the real PostgreSQL, as tests named `sqlite::case` and
/// `postgres::case`.
macro_rules! on_every_backend_async {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $case() {
                crate::common::runtime().block_on(super::$case(&super::Db::sqlite()));
            })*
        }
        mod postgres {
            $(#[test] fn $case() {
                stele_store::testkit::live_or_skip!(Postgres);
                crate::common::runtime().block_on(super::$case(&super::Db::postgres()));
            })*
        }
    };
}

/// Runs each case, a `fn(&Db)`, once on SQLite and once on the real
/// PostgreSQL, as tests named `sqlite::case` and `postgres::case`.
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $case() { super::$case(&super::Db::sqlite()); })*
        }
        mod postgres {
            $(#[test] fn $case() {
                stele_store::testkit::live_or_skip!(Postgres);
                super::$case(&super::Db::postgres());
            })*
        }
    };
}

use stele_ledger::event::{EventInput, Limits, ValidEvent};
use stele_ledger::verify::VerifyReport;
use stele_ledger::{ChainId, HmacKey, KeyId, Keyring};
pub use stele_store::testkit::TestDb as Db;
use stele_store::{DbLocation, Store, StoreError, StoreOptions};

/// The runtime a test's stores run on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Opens `location` read-only, as verification does.
pub async fn open_reader(location: &DbLocation) -> Result<Store, StoreError> {
    Store::open_read_only(location, StoreOptions::default()).await
}

/// Verifies `chain` as `stele verify log` does: every row recomputed and
/// compared with the stored head and Merkle hashes, in one read snapshot.
pub async fn verify(
    store: &Store,
    chain: &ChainId,
    keys: Option<&Keyring>,
) -> Result<VerifyReport, StoreError> {
    let mut snapshot = store.read_snapshot().await?;
    let report = stele_audit::verify_chain(&mut snapshot, chain, keys, &mut (), &mut |_| {}).await;
    let ended = snapshot.end().await;
    let report = report?;
    ended?;
    Ok(report)
}

pub fn keyring() -> Keyring {
    let k1 = HmacKey::new(KeyId::new("k1").unwrap(), &[7u8; 32]);
    let k2 = HmacKey::new(KeyId::new("k2").unwrap(), &[9u8; 32]);
    Keyring::new(KeyId::new("k1").unwrap(), [k1, k2]).unwrap()
}

pub fn rotated_keyring() -> Keyring {
    let k1 = HmacKey::new(KeyId::new("k1").unwrap(), &[7u8; 32]);
    let k2 = HmacKey::new(KeyId::new("k2").unwrap(), &[9u8; 32]);
    Keyring::new(KeyId::new("k2").unwrap(), [k1, k2]).unwrap()
}

pub fn event(i: usize) -> ValidEvent {
    EventInput {
        event_type: ["user.login", "role.granted", "config.changed", "export.downloaded"][i % 4].into(),
        actor: Some(format!("user{}@example.com", i % 17)),
        payload: Some(serde_json::json!({"i": i, "ip": format!("10.0.{}.{}", i % 250, i % 7), "ok": !i.is_multiple_of(3)})),
        idempotency_key: None,
    }
    .validate(&Limits::default())
    .unwrap()
}

pub fn keyed(i: usize, key: &str) -> ValidEvent {
    ValidEvent {
        idempotency_key: Some(key.into()),
        ..event(i)
    }
}

/// A pending outbox row as the anchorer stores one, holding `body`.
pub fn pending_anchor(
    chain: &str,
    anchor_seq: u64,
    tree_size: u64,
    body: &[u8],
) -> stele_anchor::AnchorRecord {
    stele_anchor::AnchorRecord::pending(stele_anchor::NewAnchor {
        chain_id: chain.into(),
        anchor_seq,
        trigger: stele_anchor::Trigger::Manual,
        tree_size,
        ts_utc: "2026-01-15T14:00:00Z".into(),
        object_key: format!("anchors/{chain}/{anchor_seq}.json"),
        body: body.to_vec(),
    })
}
