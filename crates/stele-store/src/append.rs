//! The append path shared by every backend: lock the chain, resume its
//! Merkle frontier, resolve idempotency keys, build the rows, write them
//! and move the head — all inside the caller's write transaction.

use std::collections::HashMap;

use stele_ledger::append::{ChainAppender, ChainState, HashText, Linked, Receipt, ReceiptRef};
use stele_ledger::event::ValidEvent;
use stele_ledger::hashing::LeafStart;
use stele_ledger::merkle;
use stele_ledger::{ChainId, Event, Hash, HmacKey, Timestamp, hex_hash};

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
    /// Writes a run's new rows and their stored hashes.
    fn insert(&mut self, run: &RunRows<'_>) -> Result<(), StoreError>;
    /// Moves the chain head.
    fn set_head(&mut self, chain: &ChainId, state: &ChainState) -> Result<(), StoreError>;
}

fn same_content(stored: &Event, new: &ValidEvent) -> bool {
    stored.event_type == new.event_type
        && stored.actor == new.actor
        && stored.payload == new.payload
}

/// One caller's append: a batch for one chain, chained with one key.
#[derive(Clone, Debug)]
pub(crate) struct AppendRequest {
    pub(crate) chain: ChainId,
    pub(crate) events: Vec<ValidEvent>,
    /// Each event's leaf hash, begun by the caller (see [`LeafStart`]).
    pub(crate) leaves: Vec<LeafStart>,
    pub(crate) key: HmacKey,
}

impl AppendRequest {
    /// A request for `events` on `chain`, their leaf hashes begun here, on
    /// the caller's thread rather than the committer's.
    pub(crate) fn new(chain: ChainId, events: Vec<ValidEvent>, key: HmacKey) -> Self {
        let leaves = events.iter().map(|e| LeafStart::new(&chain, e)).collect();
        Self {
            chain,
            events,
            leaves,
            key,
        }
    }
}

/// Each request's own outcome: an idempotency conflict fails its request
/// alone; its neighbours in the same transaction still commit.
pub(crate) type RequestResults = Vec<Result<Receipts, StoreError>>;

/// The receipts of one committed append, as the committer left them: seqs
/// and raw hashes, the texts every receipt of it repeats held once. Text
/// is made only when asked for ([`Receipts::into_vec`]) or written
/// straight into an answer ([`Receipts::iter`]), on the caller's thread:
/// the committer's is the one thread every append waits on.
#[derive(Debug)]
pub struct Receipts {
    chain: ChainId,
    /// The time of the append's new events.
    ts: String,
    key_id: String,
    receipts: Vec<Answered>,
}

/// One event's receipt, as the committer leaves it.
#[derive(Debug)]
enum Answered {
    /// Written by this commit.
    New(Linked),
    /// A repeated idempotency key: the original event's receipt.
    Repeat(Receipt),
}

impl Receipts {
    /// The receipts of an append of no events.
    pub(crate) fn none(chain: &ChainId) -> Self {
        Self {
            chain: chain.clone(),
            ts: String::new(),
            key_id: String::new(),
            receipts: Vec::new(),
        }
    }

    /// One receipt per event of the append.
    pub fn len(&self) -> usize {
        self.receipts.len()
    }

    /// True for an append of no events.
    pub fn is_empty(&self) -> bool {
        self.receipts.is_empty()
    }

    /// Events this append wrote (repeats of an idempotency key not counted).
    pub fn written(&self) -> usize {
        self.receipts
            .iter()
            .filter(|r| matches!(r, Answered::New(_)))
            .count()
    }

    /// Each receipt, borrowed, in the events' order.
    pub fn iter(&self) -> impl Iterator<Item = ReceiptRef<'_>> {
        self.receipts.iter().map(|answered| match answered {
            Answered::New(linked) => ReceiptRef {
                chain_id: self.chain.as_str(),
                seq: linked.seq,
                ts: &self.ts,
                leaf_hash: HashText::Raw(&linked.leaf_hash),
                event_hash: HashText::Raw(&linked.event_hash),
                key_id: &self.key_id,
                duplicate: false,
            },
            Answered::Repeat(receipt) => receipt.as_ref(),
        })
    }

    /// The receipts, owned, in the events' order.
    pub fn into_vec(self) -> Vec<Receipt> {
        self.iter().map(|r| r.to_receipt()).collect()
    }
}

/// The order requests are applied in within one transaction: grouped by
/// chain in chain-id order (so concurrent transactions from several
/// processes take chain locks in one order and never deadlock), callers'
/// order kept within a chain; each run shares one HMAC key. Returns runs of
/// request indexes.
pub(crate) fn plan_runs(requests: &[AppendRequest]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by(|&a, &b| requests[a].chain.as_str().cmp(requests[b].chain.as_str()));
    let mut runs: Vec<Vec<usize>> = Vec::new();
    for i in order {
        let same_run = runs.last().and_then(|run| run.last()).is_some_and(|&j| {
            requests[j].chain == requests[i].chain && requests[j].key.id() == requests[i].key.id()
        });
        match runs.last_mut() {
            Some(run) if same_run => run.push(i),
            _ => runs.push(vec![i]),
        }
    }
    runs
}

/// Idempotency keys used by the requests of one run, to look up in storage.
pub(crate) fn run_idempotency_keys(requests: &[AppendRequest], run: &[usize]) -> Vec<String> {
    run.iter()
        .flat_map(|&i| requests[i].events.iter())
        .filter_map(|e| e.idempotency_key.clone())
        .collect()
}

/// One new event's row: its content borrowed from its request (not copied:
/// a commit writes hundreds of thousands of them a second), its place in
/// the chain computed here.
pub(crate) struct NewRow<'r> {
    pub(crate) event: &'r ValidEvent,
    pub(crate) linked: Linked,
    /// Where its Merkle nodes are in [`RunRows`]' node buffer.
    nodes: std::ops::Range<usize>,
}

/// What one run writes: new rows that share their chain, time and key, and
/// the chain's state after them.
pub(crate) struct RunRows<'r> {
    pub(crate) chain: &'r ChainId,
    /// The time of every new row.
    pub(crate) ts: String,
    pub(crate) key_id: &'r str,
    pub(crate) rows: Vec<NewRow<'r>>,
    /// Every row's Merkle nodes, one after the other.
    nodes: Vec<Hash>,
    pub(crate) state: ChainState,
    /// Each accepted request of the run (by index), with where each of its
    /// receipts comes from.
    answers: Vec<(usize, Vec<Answer>)>,
}

/// Where one event's receipt comes from.
enum Answer {
    /// A repeated idempotency key: the original event's receipt.
    Repeat(Receipt),
    /// The next of the run's new rows, in order.
    NewRow,
}

impl RunRows<'_> {
    /// The Merkle nodes `row` completes, level 1 upwards.
    pub(crate) fn nodes(&self, row: &NewRow<'_>) -> &[Hash] {
        self.nodes.get(row.nodes.clone()).unwrap_or_default()
    }

    /// Once the rows are written: fills in each accepted request's result.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if receipts and rows do not pair up (a bug):
    /// the transaction must then be rolled back.
    pub(crate) fn answer(
        self,
        results: &mut [Option<Result<Receipts, StoreError>>],
    ) -> Result<(), StoreError> {
        let mut rows = self.rows.iter();
        for (i, answers) in self.answers {
            let receipts = answers
                .into_iter()
                .map(|answer| match answer {
                    Answer::Repeat(receipt) => Ok(Answered::Repeat(receipt)),
                    Answer::NewRow => {
                        rows.next()
                            .map(|row| Answered::New(row.linked))
                            .ok_or_else(|| {
                                StoreError::Corrupt(
                                    "an append's receipts outnumber its rows".into(),
                                )
                            })
                    }
                })
                .collect::<Result<_, _>>()?;
            results[i] = Some(Ok(Receipts {
                chain: self.chain.clone(),
                ts: self.ts.clone(),
                key_id: self.key_id.to_owned(),
                receipts,
            }));
        }
        if rows.next().is_some() {
            return Err(StoreError::Corrupt(
                "an append wrote rows it has no receipt for".into(),
            ));
        }
        Ok(())
    }
}

/// Builds one run's rows on top of the chain's locked `state` (pure: the
/// caller did the reads and does the writes). Refused requests get their
/// result in `results` here; accepted ones once the rows are written
/// ([`RunRows::answer`]).
pub(crate) fn build_run<'r>(
    requests: &'r [AppendRequest],
    run: &[usize],
    state: &ChainState,
    frontier: &[Hash],
    stored: Vec<Event>,
    now: Timestamp,
    results: &mut [Option<Result<Receipts, StoreError>>],
) -> Result<RunRows<'r>, StoreError> {
    let Some(&first) = run.first() else {
        return Err(StoreError::Corrupt("an append run without requests".into()));
    };
    let chain = &requests[first].chain;
    let key = &requests[first].key;
    let mut appender = ChainAppender::new(chain.clone(), state, frontier, key)?;
    let mut by_key: HashMap<String, Event> = stored
        .into_iter()
        .filter_map(|e| Some((e.idempotency_key.clone()?, e)))
        .collect();
    let mut rows = Vec::with_capacity(run.iter().map(|&i| requests[i].events.len()).sum());
    let mut nodes = Vec::with_capacity(rows.capacity() + 64);
    let mut answers = Vec::with_capacity(run.len());
    for &i in run {
        let events = &requests[i].events;
        if events.len() != requests[i].leaves.len() {
            // `AppendRequest::new` makes one per event; a pairing off by one
            // would hash one event's bytes for another.
            return Err(StoreError::Corrupt(
                "an append request's events and leaf hashes do not pair up".into(),
            ));
        }
        if let Err(e) = check_idempotency(events, &by_key) {
            results[i] = Some(Err(e));
            continue;
        }
        let mut request_answers = Vec::with_capacity(events.len());
        for (input, leaf) in events.iter().zip(&requests[i].leaves) {
            if let Some(original) = input.idempotency_key.as_ref().and_then(|k| by_key.get(k)) {
                request_answers.push(Answer::Repeat(Receipt::for_event(original, true)));
                continue;
            }
            let start = nodes.len();
            let linked = appender.link(&input.event_type, leaf, now, &mut nodes);
            if let Some(k) = &input.idempotency_key {
                let event = stored_form(chain, input, linked, appender.time(), key.id().as_str());
                by_key.insert(k.clone(), event);
            }
            request_answers.push(Answer::NewRow);
            rows.push(NewRow {
                event: input,
                linked,
                nodes: start..nodes.len(),
            });
        }
        answers.push((i, request_answers));
    }
    Ok(RunRows {
        chain,
        ts: appender.time().to_owned(),
        key_id: key.id().as_str(),
        rows,
        nodes,
        state: appender.state(),
        answers,
    })
}

/// A new event as storage will hold it, for a later event of the same
/// commit that repeats its idempotency key.
fn stored_form(
    chain: &ChainId,
    input: &ValidEvent,
    linked: Linked,
    ts: &str,
    key_id: &str,
) -> Event {
    Event {
        chain_id: chain.to_string(),
        seq: linked.seq,
        ts: ts.to_owned(),
        event_type: input.event_type.clone(),
        actor: input.actor.clone(),
        payload: input.payload.clone(),
        idempotency_key: input.idempotency_key.clone(),
        key_id: key_id.to_owned(),
        leaf_hash: hex_hash(&linked.leaf_hash),
        event_hash: hex_hash(&linked.event_hash),
    }
}

/// Refuses a request, before any of it is appended, if one of its
/// idempotency keys names an event with other content — stored earlier,
/// earlier in this transaction, or earlier in the request itself.
fn check_idempotency(
    events: &[ValidEvent],
    by_key: &HashMap<String, Event>,
) -> Result<(), StoreError> {
    let mut in_request: HashMap<&str, &ValidEvent> = HashMap::new();
    for input in events {
        let Some(k) = input.idempotency_key.as_deref() else {
            continue;
        };
        if let Some(original) = by_key.get(k) {
            if !same_content(original, input) {
                return Err(StoreError::IdempotencyConflict {
                    key: k.to_owned(),
                    seq: original.seq,
                });
            }
        } else if let Some(earlier) = in_request.insert(k, input)
            && earlier != input
        {
            // Its first use is in this very request, so it has no seq yet:
            // the conflict names the key only.
            return Err(StoreError::IdempotencyConflictInBatch { key: k.to_owned() });
        }
    }
    Ok(())
}

/// Applies `requests` inside the caller's write transaction, run by run
/// (see [`plan_runs`]). The outer error means the transaction must be
/// rolled back (nothing of it may commit); otherwise every request has its
/// own result.
pub(crate) fn append_requests_locked(
    tx: &mut dyn AppendTx,
    requests: &[AppendRequest],
) -> Result<RequestResults, StoreError> {
    let mut results: Vec<Option<Result<Receipts, StoreError>>> =
        requests.iter().map(|_| None).collect();
    for run in plan_runs(requests) {
        let chain = &requests[run[0]].chain;
        let state = tx.lock_chain(chain)?;
        // Taken after the lock, so ts order follows seq order across writers.
        let now = now();
        let frontier = tx.read_hashes(chain, &merkle::frontier_indexes(state.size))?;
        let keys = run_idempotency_keys(requests, &run);
        let stored = if keys.is_empty() {
            Vec::new()
        } else {
            tx.find_by_idempotency_keys(chain, &keys)?
        };
        let built = build_run(requests, &run, &state, &frontier, stored, now, &mut results)?;
        if !built.rows.is_empty() {
            tx.insert(&built)?;
            tx.set_head(chain, &built.state)?;
        }
        built.answer(&mut results)?;
    }
    Ok(collect_results(results))
}

/// Every request got a result from its run.
pub(crate) fn collect_results(
    results: Vec<Option<Result<Receipts, StoreError>>>,
) -> RequestResults {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(StoreError::Corrupt("append request skipped".into()))))
        .collect()
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
