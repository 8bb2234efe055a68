//! Leaf hashes and the keyed HMAC chain (docs/contracts.md §1).
//!
//! - leaf hash = SHA-256(0x00 ‖ canonical bytes), the RFC 6962 record hash;
//! - `event_hash[seq] = HMAC-SHA256(K[key_id], event_hash[seq-1] ‖ leaf_hash[seq])`,
//!   with 32 zero bytes standing in for `event_hash[-1]`.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use tlog_tiles::Hash;

use crate::event::InputError;

/// The chain hash that precedes seq 0.
pub const GENESIS_HASH: Hash = Hash([0; 32]);

/// RFC 6962 leaf hash of an event's canonical bytes.
pub fn leaf_hash(canonical_bytes: &[u8]) -> Hash {
    tlog_tiles::record_hash(canonical_bytes)
}

/// An event's leaf hash, begun before storage gives the event its seq and
/// time: SHA-256 has taken the leaf prefix byte and the canonical bytes up
/// to `"seq":` (actor, chain, payload: nearly all of them). The store begins
/// it on the appending caller's thread, so its single writer only hashes
/// the few bytes from the seq on. [`finish`](Self::finish) equals
/// [`leaf_hash`] of the whole canonical bytes.
#[derive(Clone)]
pub struct LeafStart(Sha256);

impl LeafStart {
    /// Begins the leaf hash of `event` on `chain`.
    pub fn new(chain: &crate::ChainId, event: &crate::event::ValidEvent) -> Self {
        let mut before = Vec::with_capacity(
            64 + chain.as_str().len()
                + event.actor.as_deref().map_or(0, str::len)
                + event.payload.as_deref().map_or(0, str::len),
        );
        before.push(0x00);
        crate::canonical::write_before_seq(
            &mut before,
            event.actor.as_deref(),
            chain.as_str(),
            event.payload.as_deref(),
        );
        Self(Sha256::new_with_prefix(&before))
    }

    /// The leaf hash once the event has `seq`, `ts` and its type.
    pub fn finish(&self, seq: u64, ts: &str, event_type: &str) -> Hash {
        let mut rest = Vec::with_capacity(64 + ts.len() + event_type.len());
        crate::canonical::write_from_seq(&mut rest, seq, ts, event_type);
        let mut sha = self.0.clone();
        sha.update(&rest);
        Hash(sha.finalize().into())
    }
}

impl fmt::Debug for LeafStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeafStart")
    }
}

/// Name of an HMAC key: `[A-Za-z0-9._-]{1,64}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Validates a key id.
    ///
    /// # Errors
    ///
    /// [`InputError::InvalidKeyId`] if `s` does not match the pattern.
    pub fn new(s: &str) -> Result<Self, InputError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InputError::InvalidKeyId(s.chars().take(80).collect()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret HMAC-SHA256 chain key. `Debug` never shows the secret.
#[derive(Clone)]
pub struct HmacKey {
    id: KeyId,
    // Keyed once; cloning the prepared state per event skips re-deriving the pads.
    mac: Hmac<Sha256>,
}

impl HmacKey {
    /// Wraps secret key material under `id`.
    pub fn new(id: KeyId, secret: &[u8]) -> Self {
        // HMAC accepts keys of any length; new_from_slice cannot fail for it.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC-SHA256 takes keys of any length"));
        Self { id, mac }
    }

    /// The key's id, recorded with every event it chains.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// `HMAC-SHA256(key, prev ‖ leaf)`.
    pub fn chain_hash(&self, prev: &Hash, leaf: &Hash) -> Hash {
        let mut mac = self.mac.clone();
        mac.update(&prev.0);
        mac.update(&leaf.0);
        Hash(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The HMAC keys a deployment holds: the active one chains new events, the
/// others are kept to verify events chained before a rotation.
#[derive(Clone, Debug)]
pub struct Keyring {
    active: KeyId,
    keys: std::collections::BTreeMap<KeyId, HmacKey>,
}

impl Keyring {
    /// Builds a keyring; `active` must be one of `keys`.
    ///
    /// # Errors
    ///
    /// [`InputError::InvalidKeyId`] naming the active id if it has no key.
    pub fn new(active: KeyId, keys: impl IntoIterator<Item = HmacKey>) -> Result<Self, InputError> {
        let keys: std::collections::BTreeMap<KeyId, HmacKey> =
            keys.into_iter().map(|k| (k.id.clone(), k)).collect();
        if !keys.contains_key(&active) {
            return Err(InputError::UnknownKeyId(active.0));
        }
        Ok(Self { active, keys })
    }

    /// The key that chains new events.
    pub fn active(&self) -> &HmacKey {
        // `new` guarantees the active id is present.
        &self.keys[&self.active]
    }

    /// The key with this id, if held.
    pub fn get(&self, id: &str) -> Option<&HmacKey> {
        self.keys
            .iter()
            .find(|(k, _)| k.as_str() == id)
            .map(|(_, v)| v)
    }

    /// Ids of all held keys, in order.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leaf begun before its seq and time equals the leaf hash of the
    /// whole canonical bytes: with and without actor and payload, escapes
    /// in every field, and begun bytes across SHA-256 block edges.
    #[test]
    fn a_begun_leaf_hash_finishes_as_the_whole_leaf_hash() {
        use crate::canonical::CommittedFields;
        use crate::event::{EventInput, Limits};
        for (i, (actor, payload)) in [
            (None, None),
            (Some("alice@example.com"), None),
            (None, Some(serde_json::json!({"a": 1}))),
            (
                Some("quote\" and \\ and ü"),
                Some(serde_json::json!({"z": "é\n\u{1}", "a": [1, null, true]})),
            ),
        ]
        .into_iter()
        .enumerate()
        {
            for pad in 0..60 {
                let chain = crate::ChainId::new(&format!("c{}", "x".repeat(pad))).unwrap();
                let event = EventInput {
                    event_type: format!("t.{i}"),
                    actor: actor.map(str::to_owned),
                    payload: payload.clone(),
                    idempotency_key: None,
                }
                .validate(&Limits::default())
                .unwrap();
                let seq = (pad as u64) * 1_000_003;
                let ts = "2026-12-06T22:40:00.123456Z";
                let whole = CommittedFields {
                    chain_id: chain.as_str(),
                    seq,
                    ts,
                    event_type: &event.event_type,
                    actor: event.actor.as_deref(),
                    canonical_payload: event.payload.as_deref(),
                }
                .canonical_bytes();
                assert_eq!(
                    LeafStart::new(&chain, &event).finish(seq, ts, &event.event_type),
                    leaf_hash(&whole),
                    "{}",
                    String::from_utf8_lossy(&whole)
                );
            }
        }
    }

    #[test]
    fn leaf_hash_is_rfc6962_record_hash() {
        // SHA-256(0x00) — the RFC 6962 hash of an empty leaf.
        assert_eq!(
            hex::encode(leaf_hash(b"").0),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn chain_hash_is_hmac_of_prev_then_leaf() {
        // RFC 4231 test case 2 shape: key "Jefe", message = prev ‖ leaf, checked
        // against an HMAC computed over the concatenation in one go.
        let key = HmacKey::new(KeyId::new("k1").unwrap(), b"Jefe");
        let prev = Hash([1; 32]);
        let leaf = Hash([2; 32]);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(&[[1u8; 32], [2u8; 32]].concat());
        assert_eq!(
            key.chain_hash(&prev, &leaf).0,
            <[u8; 32]>::from(mac.finalize().into_bytes())
        );
        // RFC 4231 test case 2 proper, to pin the primitive itself.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let key = HmacKey::new(KeyId::new("k1").unwrap(), b"super-secret-value");
        let shown = format!("{key:?}");
        assert!(
            !shown.contains("super") && shown.contains("redacted"),
            "{shown}"
        );
    }

    #[test]
    fn key_ids_are_validated() {
        assert!(KeyId::new("k1").is_ok());
        assert!(KeyId::new("hmac-2026.11_a").is_ok());
        for bad in ["", "a b", "k/1", &"k".repeat(65)] {
            assert!(KeyId::new(bad).is_err(), "{bad}");
        }
    }
}
