//! Turning validated inputs into committed events: assigns `seq` and `ts`,
//! computes canonical bytes, the leaf hash, the HMAC chain hash and the
//! Merkle stored hashes. Storage backends run this inside their write
//! transaction, so every backend commits byte-identical rows.

use serde::Serialize;
use tlog_tiles::Hash;

use crate::event::ValidEvent;
use crate::hashing::{GENESIS_HASH, HmacKey, LeafStart};
use crate::merkle::{MerkleError, TreeAppender};
use crate::{ChainId, Event, Timestamp, hex_hash};

/// What storage knows about a chain's head before an append.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainState {
    /// Number of events (= next seq = Merkle tree size).
    pub size: u64,
    /// `event_hash` of the last event, or the genesis hash.
    pub head_hash: Hash,
    /// Time of the last event; new events never get an earlier `ts`.
    pub last_ts: Option<Timestamp>,
}

impl ChainState {
    /// The state of a chain with no events.
    pub fn empty() -> Self {
        Self {
            size: 0,
            head_hash: GENESIS_HASH,
            last_ts: None,
        }
    }
}

/// One event ready to be written, with everything storage persists.
#[derive(Clone, Debug)]
pub struct AppendedEvent {
    /// The committed event (hashes in hex).
    pub event: Event,
    /// Leaf hash, raw.
    pub leaf_hash: Hash,
    /// Chain hash, raw.
    pub event_hash: Hash,
    /// Merkle nodes this event completes, level 1 upwards (stored with the event).
    pub merkle_nodes: Vec<Hash>,
}

/// One event's place in its chain, from [`ChainAppender::link`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Linked {
    /// Assigned seq.
    pub seq: u64,
    /// Leaf hash.
    pub leaf_hash: Hash,
    /// Chain hash.
    pub event_hash: Hash,
}

/// What a client gets back for an acknowledged event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// Chain.
    pub chain_id: String,
    /// Assigned seq.
    pub seq: u64,
    /// Assigned time.
    pub ts: String,
    /// Hex leaf hash.
    pub leaf_hash: String,
    /// Hex chain hash.
    pub event_hash: String,
    /// HMAC key used.
    pub key_id: String,
    /// True when this is the original receipt returned for a repeated idempotency key.
    pub duplicate: bool,
}

impl Receipt {
    /// The receipt for a just-written event, taking its fields rather than
    /// copying them.
    pub fn from_event(e: Event, duplicate: bool) -> Self {
        Self {
            chain_id: e.chain_id,
            seq: e.seq,
            ts: e.ts,
            leaf_hash: e.leaf_hash,
            event_hash: e.event_hash,
            key_id: e.key_id,
            duplicate,
        }
    }

    /// The receipt for a stored event.
    pub fn for_event(e: &Event, duplicate: bool) -> Self {
        Self {
            chain_id: e.chain_id.clone(),
            seq: e.seq,
            ts: e.ts.clone(),
            leaf_hash: e.leaf_hash.clone(),
            event_hash: e.event_hash.clone(),
            key_id: e.key_id.clone(),
            duplicate,
        }
    }
}

/// A receipt borrowed from where it is kept, for an answer written straight
/// from it: no text is made per event but the answer itself. Serializes
/// exactly as [`Receipt`] does.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ReceiptRef<'a> {
    /// Chain.
    pub chain_id: &'a str,
    /// Assigned seq.
    pub seq: u64,
    /// Assigned time.
    pub ts: &'a str,
    /// Leaf hash.
    pub leaf_hash: HashText<'a>,
    /// Chain hash.
    pub event_hash: HashText<'a>,
    /// HMAC key used.
    pub key_id: &'a str,
    /// True when this is the original receipt returned for a repeated idempotency key.
    pub duplicate: bool,
}

impl ReceiptRef<'_> {
    /// The owned receipt.
    pub fn to_receipt(&self) -> Receipt {
        Receipt {
            chain_id: self.chain_id.to_owned(),
            seq: self.seq,
            ts: self.ts.to_owned(),
            leaf_hash: self.leaf_hash.to_string(),
            event_hash: self.event_hash.to_string(),
            key_id: self.key_id.to_owned(),
            duplicate: self.duplicate,
        }
    }
}

impl Receipt {
    /// The receipt, borrowed.
    pub fn as_ref(&self) -> ReceiptRef<'_> {
        ReceiptRef {
            chain_id: &self.chain_id,
            seq: self.seq,
            ts: &self.ts,
            leaf_hash: HashText::Hex(&self.leaf_hash),
            event_hash: HashText::Hex(&self.event_hash),
            key_id: &self.key_id,
            duplicate: self.duplicate,
        }
    }
}

/// A hash as receipts show it, lowercase hex: made from the raw hash as it
/// is written out, or text already made.
#[derive(Clone, Copy, Debug)]
pub enum HashText<'a> {
    /// The raw hash.
    Raw(&'a Hash),
    /// Its hex text.
    Hex(&'a str),
}

impl HashText<'_> {
    /// Runs `f` on the hex text, made on the stack if need be.
    fn with_str<T>(&self, f: impl FnOnce(&str) -> T) -> T {
        match self {
            HashText::Hex(text) => f(text),
            HashText::Raw(hash) => {
                let mut text = [0u8; 64];
                for (pair, b) in text.chunks_exact_mut(2).zip(hash.0) {
                    pair.copy_from_slice(&crate::hex_pair(b));
                }
                // Hex digits are ASCII.
                f(std::str::from_utf8(&text).unwrap_or_default())
            }
        }
    }
}

impl std::fmt::Display for HashText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.with_str(|text| f.write_str(text))
    }
}

impl Serialize for HashText<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.with_str(|text| serializer.serialize_str(text))
    }
}

/// Extends one chain inside a write transaction.
#[derive(Debug)]
pub struct ChainAppender<'k> {
    chain: ChainId,
    key: &'k HmacKey,
    head_hash: Hash,
    last_ts: Option<Timestamp>,
    /// The text of `last_ts`: events of one commit share their time.
    last_ts_text: String,
    tree: TreeAppender,
}

impl<'k> ChainAppender<'k> {
    /// Resumes `chain` from `state`, given the Merkle frontier hashes of `state.size`.
    ///
    /// # Errors
    ///
    /// [`MerkleError::Storage`] if the frontier does not fit the size.
    pub fn new(
        chain: ChainId,
        state: &ChainState,
        frontier: &[Hash],
        key: &'k HmacKey,
    ) -> Result<Self, MerkleError> {
        Ok(Self {
            chain,
            key,
            head_hash: state.head_hash,
            last_ts: state.last_ts,
            last_ts_text: state.last_ts.map(|t| t.to_string()).unwrap_or_default(),
            tree: TreeAppender::resume(state.size, frontier)?,
        })
    }

    /// Commits `input` as the next event at time `now` (clamped so `ts` never goes backwards).
    pub fn append(&mut self, input: ValidEvent, now: Timestamp) -> AppendedEvent {
        let start = LeafStart::new(&self.chain, &input);
        self.append_started(input, &start, now)
    }

    /// [`append`](Self::append), with the leaf hash already begun (by
    /// [`LeafStart::new`] for this chain and this input).
    pub fn append_started(
        &mut self,
        input: ValidEvent,
        start: &LeafStart,
        now: Timestamp,
    ) -> AppendedEvent {
        let mut merkle_nodes = Vec::new();
        let linked = self.link(&input.event_type, start, now, &mut merkle_nodes);
        AppendedEvent {
            event: Event {
                chain_id: self.chain.to_string(),
                seq: linked.seq,
                ts: self.last_ts_text.clone(),
                event_type: input.event_type,
                actor: input.actor,
                payload: input.payload,
                idempotency_key: input.idempotency_key,
                key_id: self.key.id().to_string(),
                leaf_hash: hex_hash(&linked.leaf_hash),
                event_hash: hex_hash(&linked.event_hash),
            },
            leaf_hash: linked.leaf_hash,
            event_hash: linked.event_hash,
            merkle_nodes,
        }
    }

    /// Links the next event (of `event_type`, its leaf hash begun by
    /// `start`) at time `now`, for a caller that keeps the event's content
    /// itself: returns its seq and hashes, adds the Merkle nodes it
    /// completes to the end of `nodes`, and leaves its time in
    /// [`time`](Self::time). Events linked with the same `now` share one time.
    pub fn link(
        &mut self,
        event_type: &str,
        start: &LeafStart,
        now: Timestamp,
        nodes: &mut Vec<Hash>,
    ) -> Linked {
        let ts = match self.last_ts {
            Some(last) if last > now => last,
            _ => now,
        };
        let seq = self.tree.size();
        if self.last_ts != Some(ts) {
            self.last_ts_text = ts.to_string();
        }
        let leaf_hash = start.finish(seq, &self.last_ts_text, event_type);
        let event_hash = self.key.chain_hash(&self.head_hash, &leaf_hash);
        self.tree.push_onto(leaf_hash, nodes);
        self.head_hash = event_hash;
        self.last_ts = Some(ts);
        Linked {
            seq,
            leaf_hash,
            event_hash,
        }
    }

    /// The time of the last event linked (before any, of the chain's last
    /// event; empty for a new chain), as stored.
    pub fn time(&self) -> &str {
        &self.last_ts_text
    }

    /// The chain's state after the appends so far.
    pub fn state(&self) -> ChainState {
        ChainState {
            size: self.tree.size(),
            head_hash: self.head_hash,
            last_ts: self.last_ts,
        }
    }

    /// Merkle root after the appends so far.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventInput, Limits};
    use crate::{HmacKey, KeyId};

    /// An answer written from borrowed receipts, hashes raw, is the one
    /// written from owned receipts, byte for byte.
    #[test]
    fn a_borrowed_receipt_is_written_as_the_owned_one() {
        let key = HmacKey::new(KeyId::new("k1").unwrap(), &[7; 32]);
        let chain = ChainId::new("c").unwrap();
        let mut appender =
            ChainAppender::new(chain.clone(), &ChainState::empty(), &[], &key).unwrap();
        let input = EventInput {
            event_type: "user.login".into(),
            actor: Some("alice".into()),
            payload: None,
            idempotency_key: None,
        }
        .validate(&Limits::default())
        .unwrap();
        let now = Timestamp::parse("2026-12-07T10:00:00.000001Z").unwrap();
        let owned = Receipt::from_event(appender.append(input, now).event, false);
        let linked = Linked {
            seq: owned.seq,
            leaf_hash: crate::parse_hex_hash(&owned.leaf_hash).unwrap(),
            event_hash: crate::parse_hex_hash(&owned.event_hash).unwrap(),
        };
        let borrowed = ReceiptRef {
            chain_id: chain.as_str(),
            seq: linked.seq,
            ts: &owned.ts,
            leaf_hash: HashText::Raw(&linked.leaf_hash),
            event_hash: HashText::Raw(&linked.event_hash),
            key_id: key.id().as_str(),
            duplicate: false,
        };
        let owned_json = serde_json::to_string(&owned).unwrap();
        assert_eq!(serde_json::to_string(&borrowed).unwrap(), owned_json);
        assert_eq!(serde_json::to_string(&owned.as_ref()).unwrap(), owned_json);
        assert_eq!(borrowed.to_receipt(), owned);
    }
}
