//! PostgreSQL's binary `COPY` output, as a scan reads it: the parser turns
//! the protocol's `CopyData` messages into rows of borrowed fields, whatever
//! way the bytes are split. Everything here reads bytes from the server, so
//! nothing may panic on them (a fuzz target feeds it arbitrary input).

use stele_ledger::ChainId;

use crate::scan::{self, RowSink};
use crate::{StoreError, to_i64};

/// The scan's `COPY` columns: `chain_index`, then [`scan::FIELDS`] after `chain_id`.
pub(crate) const COPY_COLUMN_LIST: &str = "chain_index, ts, event_type, actor, payload, idempotency_key, key_id, leaf_hash, event_hash, merkle_nodes";

/// Columns a scan's `COPY` returns ([`COPY_COLUMN_LIST`]).
pub(crate) const COPY_COLUMNS: usize = 10;

/// One row's fields as slices of the input, NULL as `None`.
pub(crate) type CopyFields<'a> = [Option<&'a [u8]>; COPY_COLUMNS];

/// Parses PostgreSQL's binary `COPY` format: a signature and header, then
/// per row a 16-bit field count and, per field, a 32-bit length (-1 for
/// NULL) and that many bytes; a field count of -1 ends the data.
///
/// The input comes as the protocol's `CopyData` messages. The server sends
/// each row in a message of its own, so a row is parsed in place in its
/// message; `carry` collects a row that arrives split across messages.
#[derive(Default)]
pub(crate) struct CopyParser {
    header_read: bool,
    carry: Vec<u8>,
}

/// What feeding the parser some input came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fed {
    /// Every whole row was emitted; more input is needed.
    More,
    /// `emit` asked to stop.
    Stopped,
    /// The end-of-data marker was reached.
    End,
}

/// What the start of some bytes holds.
enum Parsed<'a> {
    /// A row of this many bytes.
    Row(usize, CopyFields<'a>),
    /// The end-of-data marker.
    End,
    /// Not a whole row yet.
    Incomplete,
}

impl CopyParser {
    const SIGNATURE: &'static [u8; 11] = b"PGCOPY\n\xff\r\n\0";

    /// Parses `input` (following what was fed before) and passes each whole
    /// row to `emit`, which returns `false` to stop.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        emit: &mut impl FnMut(&CopyFields<'_>) -> Result<bool, StoreError>,
    ) -> Result<Fed, StoreError> {
        let mut carry = std::mem::take(&mut self.carry);
        let carried = !carry.is_empty();
        let bytes: &[u8] = if carried {
            carry.extend_from_slice(input);
            &carry
        } else {
            input
        };
        let mut at = 0;
        let fed = loop {
            if !self.header_read {
                match parse_header(&bytes[at..])? {
                    Some(len) => {
                        at += len;
                        self.header_read = true;
                    }
                    None => break Fed::More,
                }
            }
            match parse_row(&bytes[at..])? {
                Parsed::Row(len, fields) => {
                    at += len;
                    if !emit(&fields)? {
                        break Fed::Stopped;
                    }
                }
                Parsed::End => break Fed::End,
                Parsed::Incomplete => break Fed::More,
            }
        };
        if carried {
            carry.drain(..at);
        } else {
            carry.extend_from_slice(&input[at..]);
        }
        self.carry = carry;
        Ok(fed)
    }
}

/// The length of the header at the start of `bytes`, `None` if it is not all there.
fn parse_header(bytes: &[u8]) -> Result<Option<usize>, StoreError> {
    let signature = &CopyParser::SIGNATURE[..bytes.len().min(CopyParser::SIGNATURE.len())];
    if !bytes.starts_with(signature) {
        return Err(StoreError::postgres_local(
            "COPY output is not in binary format",
        ));
    }
    let Some(header) = bytes.first_chunk::<19>() else {
        return Ok(None);
    };
    let extension = u32::from_be_bytes([header[15], header[16], header[17], header[18]]);
    // No header extension is defined yet; skip one a newer server sends.
    let extension = usize::try_from(extension)
        .ok()
        .filter(|len| *len <= 1 << 20)
        .ok_or_else(|| {
            StoreError::postgres_local(format!("COPY header extension of {extension} bytes"))
        })?;
    Ok((bytes.len() >= header.len() + extension).then_some(header.len() + extension))
}

/// Parses the row at the start of `bytes`.
fn parse_row(bytes: &[u8]) -> Result<Parsed<'_>, StoreError> {
    let Some(count) = bytes.first_chunk::<2>() else {
        return Ok(Parsed::Incomplete);
    };
    let count = i16::from_be_bytes(*count);
    if count == -1 {
        return Ok(Parsed::End);
    }
    if usize::try_from(count).ok() != Some(COPY_COLUMNS) {
        return Err(StoreError::postgres_local(format!(
            "COPY row has {count} fields, expected {COPY_COLUMNS}"
        )));
    }
    let mut at = 2;
    let mut fields = [None; COPY_COLUMNS];
    for field in &mut fields {
        let Some(len) = bytes.get(at..).and_then(<[u8]>::first_chunk::<4>) else {
            return Ok(Parsed::Incomplete);
        };
        at += 4;
        // A negative length is NULL.
        if let Ok(len) = usize::try_from(i32::from_be_bytes(*len)) {
            let Some(value) = bytes.get(at..at + len) else {
                return Ok(Parsed::Incomplete);
            };
            *field = Some(value);
            at += len;
        }
    }
    Ok(Parsed::Row(at, fields))
}

/// A row's `chain_index`, the first field.
///
/// # Errors
///
/// [`StoreError::Corrupt`] if it is NULL or not 8 bytes.
/// The `COPY` that streams a chain's rows `from <= seq <= to` in seq order.
///
/// # Errors
///
/// A bound too large for the database.
pub(crate) fn scan_sql(chain: &ChainId, from: u64, to: Option<u64>) -> Result<String, StoreError> {
    let from = to_i64(from, "seq")?;
    let to = to.map_or(Ok(i64::MAX), |t| to_i64(t, "seq"))?;
    // COPY takes no bind parameters. A chain id is [a-z0-9._-] only (ChainId
    // checks that), so quoting it cannot be escaped; the bounds are integers.
    let chain_literal = format!("'{}'", chain.as_str().replace('\'', "''"));
    Ok(format!(
        "COPY (SELECT {COPY_COLUMN_LIST} FROM audit_events WHERE chain_id = {chain_literal} AND chain_index >= {from} AND chain_index <= {to} ORDER BY chain_index) TO STDOUT (FORMAT binary)"
    ))
}

/// Hands one parsed `COPY` row of chain `chain_id` to `sink`; `false` once
/// the sink wants no more.
///
/// `chain_id` is not read from the row: the scan's WHERE clause fixes it,
/// so every row returned has the requested one. A row whose chain_id was
/// rewritten is not returned at all, and the gap it leaves is reported by seq.
pub(crate) fn push_row(
    chain_id: &[u8],
    fields: &CopyFields<'_>,
    sink: &mut impl RowSink,
) -> Result<bool, StoreError> {
    let seq = row_seq(fields)?;
    let mut event_fields = [None; scan::FIELDS.len()];
    event_fields[0] = Some(chain_id);
    event_fields[1..].copy_from_slice(&fields[1..]);
    Ok(sink.push(seq, &event_fields))
}

/// A `COPY` whose output stopped before its end marker.
pub(crate) fn truncated() -> StoreError {
    StoreError::postgres_local("COPY output ended without its end-of-data marker")
}

pub(crate) fn row_seq(fields: &CopyFields<'_>) -> Result<i64, StoreError> {
    match fields[0] {
        Some(bytes) => Ok(i64::from_be_bytes(bytes.try_into().map_err(|_| {
            StoreError::Corrupt(format!("chain_index is {} bytes, not 8", bytes.len()))
        })?)),
        None => Err(StoreError::Corrupt("chain_index is NULL".into())),
    }
}

/// One row as parsed, owned: its seq and every field (NULL as `None`).
pub type OwnedCopyRow = (i64, Vec<Option<Vec<u8>>>);

/// Parses binary `COPY` output arriving in `chunks` the way a scan does,
/// up to the end-of-data marker. For the fuzz target and tests; scans use
/// the parser in place.
///
/// # Errors
///
/// What the scan would report: a malformed header or row, a bad seq, or
/// output that ends without its end-of-data marker.
#[doc(hidden)]
pub fn parse_copy_output(chunks: &[&[u8]]) -> Result<Vec<OwnedCopyRow>, StoreError> {
    let mut parser = CopyParser::default();
    let mut rows = Vec::new();
    let mut push = |fields: &CopyFields<'_>| {
        let seq = row_seq(fields)?;
        rows.push((seq, fields.iter().map(|f| f.map(<[u8]>::to_vec)).collect()));
        Ok(true)
    };
    for chunk in chunks {
        if parser.feed(chunk, &mut push)? == Fed::End {
            return Ok(rows);
        }
    }
    Err(StoreError::postgres_local(
        "COPY output ended without its end-of-data marker",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binary COPY output: the header, one row per entry (`None` is NULL), the trailer.
    fn copy_output(rows: &[[Option<&[u8]>; COPY_COLUMNS]]) -> Vec<u8> {
        let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
        out.extend_from_slice(&[0; 8]);
        for row in rows {
            out.extend_from_slice(&10i16.to_be_bytes());
            for field in row {
                match field {
                    Some(bytes) => {
                        out.extend_from_slice(&i32::try_from(bytes.len()).unwrap().to_be_bytes());
                        out.extend_from_slice(bytes);
                    }
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    /// Feeds `input` to a parser `chunk` bytes at a time and collects its rows.
    fn parse_in_chunks(input: &[u8], chunk: usize) -> (Vec<Vec<Option<Vec<u8>>>>, Fed) {
        let mut parser = CopyParser::default();
        let mut rows = Vec::new();
        let mut fed = Fed::More;
        for piece in input.chunks(chunk) {
            fed = parser
                .feed(piece, &mut |fields| {
                    rows.push(fields.iter().map(|f| f.map(<[u8]>::to_vec)).collect());
                    Ok(true)
                })
                .unwrap();
            if fed != Fed::More {
                break;
            }
        }
        (rows, fed)
    }

    #[test]
    fn rows_split_across_messages_parse_the_same() {
        let seqs: Vec<[u8; 8]> = (0..3i64).map(i64::to_be_bytes).collect();
        let rows: Vec<[Option<&[u8]>; COPY_COLUMNS]> = seqs
            .iter()
            .map(|seq| {
                [
                    Some(&seq[..]),
                    Some(b"2026-01-01T00:00:00.000000Z"),
                    Some(b"t"),
                    None,
                    Some(br#"{"a":1}"#),
                    None,
                    Some(b"k1"),
                    Some(&[1; 32][..]),
                    Some(&[2; 32][..]),
                    Some(&[]),
                ]
            })
            .collect();
        let bytes = copy_output(&rows);
        let expected: Vec<Vec<Option<Vec<u8>>>> = rows
            .iter()
            .map(|row| row.iter().map(|f| f.map(<[u8]>::to_vec)).collect())
            .collect();
        // All in one message, and a few bytes per message.
        for chunk in [bytes.len(), 1, 3, 7, 40] {
            assert_eq!(
                parse_in_chunks(&bytes, chunk),
                (expected.clone(), Fed::End),
                "{chunk} bytes per message"
            );
        }
    }

    #[test]
    fn emit_can_stop_the_parse() {
        let seq = 5i64.to_be_bytes();
        let row = [
            Some(&seq[..]),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ];
        let bytes = copy_output(&[row, row]);
        let mut seen = 0;
        let fed = CopyParser::default()
            .feed(&bytes, &mut |_| {
                seen += 1;
                Ok(false)
            })
            .unwrap();
        assert_eq!((fed, seen), (Fed::Stopped, 1));
    }

    #[test]
    fn truncated_or_foreign_copy_output_is_an_error() {
        let bytes = copy_output(&[]);
        // Without its end marker the data is incomplete; the stream ending
        // there is reported as truncated by `read_rows`.
        assert_eq!(parse_in_chunks(&bytes[..bytes.len() - 2], 4).1, Fed::More);
        assert!(
            CopyParser::default()
                .feed(b"chain_id\tchain_index\n", &mut |_| Ok(true))
                .is_err()
        );
        assert!(
            CopyParser::default()
                .feed(&bytes[..bytes.len() - 2], &mut |_| Ok(true))
                .is_ok_and(|fed| fed == Fed::More)
        );
    }
}
