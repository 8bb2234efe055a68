//! The append path shared by every backend: lock the chain, resume its
//! Merkle frontier, resolve idempotency keys, build the rows, write them
//! and move the head — all inside the caller's write transaction.

use std::collections::HashMap;

use stele_ledger::append::{AppendedEvent, ChainAppender, ChainState, Receipt};
use stele_ledger::event::ValidEvent;
use stele_ledger::merkle;
use stele_ledger::{ChainId, Event, Hash, HmacKey, Timestamp};

use crate::StoreError;

/// The current time as an event timestamp.
pub fn now() -> Timestamp {
    Timestamp::from_datetime(time::OffsetDateTime::now_utc())
}

/// What a backend provides inside one write transaction.
pub(crate) trait AppendTx {
    /// Takes the chain's write lock (creating an empty head if the chain is
    /// new) and returns its state. Held until commit or rollback.
    fn lock_chain(&mut self, chain: &ChainId) -> Result<ChainState, StoreError>;
    /// Reads Merkle stored hashes, in the order asked.
    fn read_hashes(&mut self, chain: &ChainId, indexes: &[u64]) -> Result<Vec<Hash>, StoreError>;
    /// Events already stored under any of these idempotency keys.
    fn find_by_idempotency_keys(
        &mut self,
        chain: &ChainId,
        keys: &[String],
    ) -> Result<Vec<Event>, StoreError>;
    /// Writes the event rows and their stored hashes.
    fn insert(&mut self, chain: &ChainId, rows: &[AppendedEvent]) -> Result<(), StoreError>;
    /// Moves the chain head.
    fn set_head(&mut self, chain: &ChainId, state: &ChainState) -> Result<(), StoreError>;
}

fn same_content(stored: &Event, new: &ValidEvent) -> bool {
    stored.event_type == new.event_type
        && stored.actor == new.actor
        && stored.payload == new.payload
}

/// Appends `events` to `chain` within the caller's transaction.
pub(crate) fn append_locked(
    tx: &mut dyn AppendTx,
    chain: &ChainId,
    events: Vec<ValidEvent>,
    key: &HmacKey,
) -> Result<Vec<Receipt>, StoreError> {
    let state = tx.lock_chain(chain)?;
    // Taken after the lock, so ts order follows seq order across writers.
    let now = now();
    let frontier = tx.read_hashes(chain, &merkle::frontier_indexes(state.size))?;
    let mut appender = ChainAppender::new(chain.clone(), &state, &frontier, key)?;

    let keys: Vec<String> = events
        .iter()
        .filter_map(|e| e.idempotency_key.clone())
        .collect();
    let mut by_key: HashMap<String, Event> = HashMap::new();
    if !keys.is_empty() {
        for e in tx.find_by_idempotency_keys(chain, &keys)? {
            if let Some(k) = e.idempotency_key.clone() {
                by_key.insert(k, e);
            }
        }
    }

    let mut rows = Vec::with_capacity(events.len());
    let mut receipts = Vec::with_capacity(events.len());
    for input in events {
        if let Some(original) = input.idempotency_key.as_ref().and_then(|k| by_key.get(k)) {
            if !same_content(original, &input) {
                return Err(StoreError::IdempotencyConflict {
                    key: input.idempotency_key.unwrap_or_default(),
                    seq: original.seq,
                });
            }
            receipts.push(Receipt::for_event(original, true));
            continue;
        }
        let appended = appender.append(input, now);
        if let Some(k) = &appended.event.idempotency_key {
            by_key.insert(k.clone(), appended.event.clone());
        }
        receipts.push(Receipt::for_event(&appended.event, false));
        rows.push(appended);
    }
    if !rows.is_empty() {
        tx.insert(chain, &rows)?;
        tx.set_head(chain, &appender.state())?;
    }
    Ok(receipts)
}

/// Hex of whatever bytes are stored; a wrong length shows up in verification.
pub(crate) fn stored_hex(bytes: &[u8]) -> String {
    stele_ledger::hex_bytes(bytes)
}

/// A row's Merkle nodes as one blob: 32-byte hashes, level 1 upwards.
pub(crate) fn concat_nodes(nodes: &[Hash]) -> Vec<u8> {
    nodes.iter().flat_map(|h| h.0).collect()
}

/// The genesis chain state, for a new chain's head row.
pub(crate) fn empty_state() -> ChainState {
    ChainState::empty()
}
