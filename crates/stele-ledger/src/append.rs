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
