//! Test fixtures: one suite, run against every backend.

#![allow(dead_code)]

pub mod rfc6962;

/// Runs each case, a `fn(&Db)`, once on SQLite and once on the real
/// PostgreSQL, as tests named `sqlite::case` and `postgres::case`.
#[allow(unused_macros)]
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
use stele_ledger::{HmacKey, KeyId, Keyring};
pub use stele_store::testkit::TestDb as Db;

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
