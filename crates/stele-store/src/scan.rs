//! Scanning a chain's rows on two cores: a reader thread decodes rows from
//! the database into batches while the caller's thread visits the rows of
//! the batch before, borrowed straight from the batch's buffer.
//!
//! A batch is one byte buffer holding every field of its rows back to back
//! plus where each field ends, so reading a row allocates nothing; emptied
//! batches go back to the reader to be filled again. Both channels are
//! bounded: the reader runs at most [`BATCHES_IN_FLIGHT`] batches ahead.

use std::sync::mpsc;

use stele_ledger::{StoredEvent, StoredHash};

use crate::{StoreError, StoredRowVisitor};

/// Rows per batch: large enough that handing a batch over is rare, small
/// enough that a batch stays in cache between the two threads.
const BATCH_ROWS: usize = 512;

/// Filled batches waiting for the visitor.
const BATCHES_IN_FLIGHT: usize = 2;

/// The fields a reader supplies for each row, in this order (`seq` apart).
pub(crate) const FIELDS: [&str; 10] = [
    "chain_id",
    "ts",
    "event_type",
    "actor",
    "payload",
    "idempotency_key",
    "key_id",
    "leaf_hash",
    "event_hash",
    "merkle_nodes",
];

/// How many of [`FIELDS`], from the first, are text.
const TEXT_FIELDS: usize = 7;

/// Where one row's fields are in its batch's buffer.
struct RowSpans {
    /// The stored seq, as the database holds it (a negative one is tampering).
    seq: i64,
    /// Offset of the row's first field.
    start: usize,
    /// End offset of each field; a field starts where the one before ends.
    ends: [usize; FIELDS.len()],
    /// Bit `i` set: field `i` is NULL.
    nulls: u16,
}

/// Decoded rows, in seq order.
#[derive(Default)]
pub(crate) struct RowBatch {
    bytes: Vec<u8>,
    rows: Vec<RowSpans>,
}

impl RowBatch {
    /// Appends one row; `None` is NULL.
    pub(crate) fn push(&mut self, seq: i64, fields: &[Option<&[u8]>; FIELDS.len()]) {
        let start = self.bytes.len();
        let mut ends = [start; FIELDS.len()];
        let mut nulls = 0u16;
        for (i, field) in fields.iter().enumerate() {
            match field {
                Some(bytes) => self.bytes.extend_from_slice(bytes),
                None => nulls |= 1 << i,
            }
            ends[i] = self.bytes.len();
        }
        self.rows.push(RowSpans {
            seq,
            start,
            ends,
            nulls,
        });
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.rows.clear();
    }

    /// Field `i` of `row`, `None` if NULL.
    fn field(&self, row: &RowSpans, i: usize) -> Option<&[u8]> {
        let start = if i == 0 { row.start } else { row.ends[i - 1] };
        (row.nulls & (1 << i) == 0).then(|| &self.bytes[start..row.ends[i]])
    }

    /// The row's text fields (the first [`TEXT_FIELDS`], which lie back to
    /// back), checked as UTF-8 in one pass; `None` if any is not UTF-8.
    fn text_fields(&self, row: &RowSpans) -> Option<&str> {
        std::str::from_utf8(&self.bytes[row.start..row.ends[TEXT_FIELDS - 1]]).ok()
    }

    /// Text field `i`, from the row's checked text or, failing that, checked
    /// on its own so the error names the field.
    fn text<'b>(
        &'b self,
        text: Option<&'b str>,
        row: &RowSpans,
        seq: u64,
        i: usize,
    ) -> Result<Option<&'b str>, StoreError> {
        let Some(bytes) = self.field(row, i) else {
            return Ok(None);
        };
        let start = if i == 0 {
            0
        } else {
            row.ends[i - 1] - row.start
        };
        // A field is UTF-8 when the whole text is and the field starts and
        // ends on character boundaries.
        if let Some(field) = text.and_then(|t| t.get(start..row.ends[i] - row.start)) {
            return Ok(Some(field));
        }
        std::str::from_utf8(bytes).map(Some).map_err(|e| {
            StoreError::Corrupt(format!("seq {seq}: {} is not UTF-8 text ({e})", FIELDS[i]))
        })
    }

    fn required_text<'b>(
        &'b self,
        text: Option<&'b str>,
        row: &RowSpans,
        seq: u64,
        i: usize,
    ) -> Result<&'b str, StoreError> {
        self.text(text, row, seq, i)?
            .ok_or_else(|| not_null(seq, i))
    }

    fn hash(&self, row: &RowSpans, seq: u64, i: usize) -> Result<StoredHash<'_>, StoreError> {
        self.field(row, i)
            .map(StoredHash::Bytes)
            .ok_or_else(|| not_null(seq, i))
    }

    /// Visits every row, in order.
    fn visit<F>(&self, visit: &mut F) -> Result<(), StoreError>
    where
        F: FnMut(StoredEvent<'_>, &[u8]) -> Result<(), StoreError> + ?Sized,
    {
        for row in &self.rows {
            // A negative seq can only come from tampering; map it far away so verification flags it.
            let seq = u64::try_from(row.seq).unwrap_or(u64::MAX);
            let text = self.text_fields(row);
            let event = StoredEvent {
                chain_id: self.required_text(text, row, seq, 0)?,
                seq,
                ts: self.required_text(text, row, seq, 1)?,
                event_type: self.required_text(text, row, seq, 2)?,
                actor: self.text(text, row, seq, 3)?,
                payload: self.text(text, row, seq, 4)?,
                idempotency_key: self.text(text, row, seq, 5)?,
                key_id: self.required_text(text, row, seq, 6)?,
                leaf_hash: self.hash(row, seq, 7)?,
                event_hash: self.hash(row, seq, 8)?,
            };
            visit(event, self.field(row, 9).unwrap_or_default())?;
        }
        Ok(())
    }
}

fn not_null(seq: u64, field: usize) -> StoreError {
    StoreError::Corrupt(format!("seq {seq}: {} is NULL", FIELDS[field]))
}

/// Where a scan's reader puts the rows it decodes.
pub(crate) trait RowSink {
    /// Adds a row. Returns `false` once the visiting side has stopped (its
    /// visitor failed): the reader should read no further.
    fn push(&mut self, seq: i64, fields: &[Option<&[u8]>; FIELDS.len()]) -> bool;
}

/// The reader's end of a scan: collects rows into batches and hands each
/// full one to the visiting thread.
pub(crate) struct BatchSink {
    batch: RowBatch,
    filled: mpsc::SyncSender<RowBatch>,
    emptied: mpsc::Receiver<RowBatch>,
}

impl RowSink for BatchSink {
    fn push(&mut self, seq: i64, fields: &[Option<&[u8]>; FIELDS.len()]) -> bool {
        self.batch.push(seq, fields);
        if self.batch.len() < BATCH_ROWS {
            return true;
        }
        let next = self.emptied.try_recv().unwrap_or_default();
        self.filled
            .send(std::mem::replace(&mut self.batch, next))
            .is_ok()
    }
}

impl BatchSink {
    /// Hands over the last, partly filled batch.
    fn finish(self) {
        if self.batch.len() > 0 {
            // If the visiting side has stopped, its error is the one reported.
            let _ = self.filled.send(self.batch);
        }
    }
}

/// A sink that visits each batch as soon as it is full, on the reader's
/// own thread or task: the scan of an async connection, whose reader is
/// the caller's task itself.
pub(crate) struct VisitingSink<'v, F: ?Sized> {
    batch: RowBatch,
    visit: &'v mut F,
    /// The visitor's first error; the scan stops there.
    failed: Option<StoreError>,
}

impl<'v, F> VisitingSink<'v, F>
where
    F: FnMut(StoredEvent<'_>, &[u8]) -> Result<(), StoreError> + ?Sized,
{
    pub(crate) fn new(visit: &'v mut F) -> Self {
        Self {
            batch: RowBatch::default(),
            visit,
            failed: None,
        }
    }

    fn flush(&mut self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        let visited = self.batch.visit(self.visit);
        self.batch.clear();
        match visited {
            Ok(()) => true,
            Err(e) => {
                self.failed = Some(e);
                false
            }
        }
    }

    /// Visits the last rows; the visitor's error, if it failed, comes
    /// before the reader's result.
    pub(crate) fn finish(mut self, read: Result<(), StoreError>) -> Result<(), StoreError> {
        if read.is_ok() {
            self.flush();
        }
        match self.failed {
            Some(e) => Err(e),
            None => read,
        }
    }
}

impl<F> RowSink for VisitingSink<'_, F>
where
    F: FnMut(StoredEvent<'_>, &[u8]) -> Result<(), StoreError> + ?Sized,
{
    fn push(&mut self, seq: i64, fields: &[Option<&[u8]>; FIELDS.len()]) -> bool {
        self.batch.push(seq, fields);
        self.batch.len() < BATCH_ROWS || self.flush()
    }
}

/// A sink on a blocking thread that hands full batches to an async
/// visitor over a bounded channel (see [`visit_batches`]).
pub(crate) struct ChannelSink {
    batch: RowBatch,
    filled: tokio::sync::mpsc::Sender<RowBatch>,
}

impl ChannelSink {
    /// Hands over the last, partly filled batch.
    pub(crate) fn finish(self) {
        if self.batch.len() > 0 {
            // If the visiting side has stopped, its error is the one reported.
            let _ = self.filled.blocking_send(self.batch);
        }
    }
}

impl RowSink for ChannelSink {
    fn push(&mut self, seq: i64, fields: &[Option<&[u8]>; FIELDS.len()]) -> bool {
        self.batch.push(seq, fields);
        if self.batch.len() < BATCH_ROWS {
            return true;
        }
        self.filled
            .blocking_send(std::mem::take(&mut self.batch))
            .is_ok()
    }
}

/// A [`ChannelSink`] for a reader on a blocking thread, and the receiving
/// end for [`visit_batches`].
pub(crate) fn channel() -> (ChannelSink, tokio::sync::mpsc::Receiver<RowBatch>) {
    let (filled, receiver) = tokio::sync::mpsc::channel(BATCHES_IN_FLIGHT);
    (
        ChannelSink {
            batch: RowBatch::default(),
            filled,
        },
        receiver,
    )
}

/// Visits the batches a [`ChannelSink`] sends, in order, until its reader
/// is done or `visit` fails. Dropping the receiver on failure stops the reader.
pub(crate) async fn visit_batches<F>(
    mut batches: tokio::sync::mpsc::Receiver<RowBatch>,
    visit: &mut F,
) -> Result<(), StoreError>
where
    F: FnMut(StoredEvent<'_>, &[u8]) -> Result<(), StoreError> + ?Sized,
{
    while let Some(batch) = batches.recv().await {
        batch.visit(visit)?;
    }
    Ok(())
}

/// Runs `read` on a thread of its own, feeding a [`BatchSink`], and calls
/// `visit` for every row on this thread, in order. A database error from
/// `read` or the first error from `visit` ends the scan and is returned.
pub(crate) fn pipelined<R>(read: R, visit: &mut StoredRowVisitor<'_>) -> Result<(), StoreError>
where
    R: FnOnce(&mut BatchSink) -> Result<(), StoreError> + Send,
{
    let (filled_tx, filled_rx) = mpsc::sync_channel::<RowBatch>(BATCHES_IN_FLIGHT);
    let (emptied_tx, emptied_rx) = mpsc::sync_channel::<RowBatch>(BATCHES_IN_FLIGHT + 1);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut sink = BatchSink {
                batch: RowBatch::default(),
                filled: filled_tx,
                emptied: emptied_rx,
            };
            let result = read(&mut sink);
            if result.is_ok() {
                sink.finish();
            }
            result
        });
        // Owning the receiver here means it is dropped when visiting stops
        // early, which stops the reader instead of leaving it blocked.
        let visited = (move || {
            for mut batch in filled_rx {
                batch.visit(visit)?;
                batch.clear();
                // The reader allocates a new batch if this one is not back in time.
                let _ = emptied_tx.try_send(batch);
            }
            Ok(())
        })();
        let read = reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // A visitor error comes first: the reader only saw the scan stop.
        visited.and(read)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes rows 0..n through a pipelined scan, failing the read at `fail_at`.
    fn scan(
        n: i64,
        fail_read_at: Option<i64>,
        visit: &mut StoredRowVisitor<'_>,
    ) -> Result<(), StoreError> {
        pipelined(
            |sink| {
                for seq in 0..n {
                    if Some(seq) == fail_read_at {
                        return Err(StoreError::Corrupt("read failed".into()));
                    }
                    let payload = format!("{{\"n\":{seq}}}");
                    let fields = [
                        Some(&b"c"[..]),
                        Some(b"ts"),
                        Some(b"t"),
                        None,
                        Some(payload.as_bytes()),
                        None,
                        Some(b"k1"),
                        Some(&[1; 32][..]),
                        Some(&[2; 31][..]),
                        Some(&[]),
                    ];
                    if !sink.push(seq, &fields) {
                        break;
                    }
                }
                Ok(())
            },
            visit,
        )
    }

    #[test]
    fn every_row_arrives_in_order_across_batches() {
        let n = i64::try_from(BATCH_ROWS * 5 + 7).unwrap();
        let mut next = 0;
        scan(n, None, &mut |e, nodes| {
            assert_eq!(e.seq, next);
            assert_eq!(e.payload, Some(format!("{{\"n\":{next}}}").as_str()));
            assert_eq!((e.actor, e.idempotency_key, e.key_id), (None, None, "k1"));
            assert_eq!(e.leaf_hash.parse().map(|h| h.0), Some([1; 32]));
            assert_eq!(e.event_hash.parse(), None);
            assert!(nodes.is_empty());
            next += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(next, u64::try_from(n).unwrap());
    }

    #[test]
    fn a_visitor_error_stops_the_reader_and_is_returned() {
        let mut seen = 0;
        let err = scan(1_000_000, None, &mut |e, _| {
            seen += 1;
            if e.seq == 700 {
                return Err(StoreError::Corrupt("visitor failed".into()));
            }
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("visitor failed"), "{err}");
        assert_eq!(seen, 701);
    }

    #[test]
    fn a_read_error_is_returned_after_the_rows_before_it() {
        let mut seen = 0;
        let err = scan(5000, Some(1500), &mut |_, _| {
            seen += 1;
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("read failed"), "{err}");
        assert!(seen <= 1500);
    }

    #[test]
    fn text_that_is_not_utf8_is_named() {
        let mut batch = RowBatch::default();
        batch.push(
            3,
            &[
                Some(b"c"),
                Some(b"ts"),
                Some(b"t"),
                Some(b"\xff"),
                None,
                None,
                Some(b"k1"),
                Some(b""),
                Some(b""),
                Some(b""),
            ],
        );
        let err = batch.visit(&mut |_, _| Ok(())).unwrap_err();
        assert!(
            err.to_string().contains("seq 3: actor is not UTF-8"),
            "{err}"
        );

        // Two halves of one character in two fields: the text as a whole is
        // UTF-8, each field is not.
        let mut batch = RowBatch::default();
        batch.push(
            4,
            &[
                Some(b"c"),
                Some(b"ts"),
                Some(b"t"),
                Some(b"\xc3"),
                Some(b"\xa9"),
                None,
                Some(b"k1"),
                Some(b""),
                Some(b""),
                Some(b""),
            ],
        );
        let err = batch.visit(&mut |_, _| Ok(())).unwrap_err();
        assert!(
            err.to_string().contains("seq 4: actor is not UTF-8"),
            "{err}"
        );
    }
}
