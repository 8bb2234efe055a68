//! Reading outside input with its size limit enforced while reading: an
//! oversized line or file is refused after at most `limit + 1` bytes, never
//! parsed or held whole.

use std::io::{BufRead, Read};
use std::path::Path;

use anyhow::anyhow;

use crate::error::Failure;

/// Longest line accepted in an event file (`append --jsonl`, an export):
/// every event's payload is at most `max_payload_bytes` canonical bytes,
/// which JSON escaping can make at most six times longer, plus room for
/// the other fields.
pub fn max_event_line(max_payload_bytes: usize) -> usize {
    max_payload_bytes
        .saturating_mul(6)
        .saturating_add(64 * 1024)
}

/// One line of input.
pub enum Line {
    /// The line, without its newline.
    Text(Vec<u8>),
    /// The line was longer than the limit; it was skipped, not kept.
    TooLong,
}

/// Lines of at most `limit` bytes each, numbered from 1.
pub struct BoundedLines<R> {
    reader: R,
    limit: usize,
    number: usize,
}

impl<R: BufRead> BoundedLines<R> {
    pub fn new(reader: R, limit: usize) -> Self {
        Self {
            reader,
            limit,
            number: 0,
        }
    }

    /// The next line and its number, or `None` at the end.
    pub fn next_line(&mut self) -> std::io::Result<Option<(usize, Line)>> {
        let mut buf = Vec::new();
        let cap = u64::try_from(self.limit)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let n = (&mut self.reader).take(cap).read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.number += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Some((self.number, Line::Text(buf))));
        }
        if buf.len() <= self.limit {
            // The last line, without a newline.
            return Ok(Some((self.number, Line::Text(buf))));
        }
        // Too long: skip the rest of the line without keeping it.
        drop(buf);
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                break;
            }
            if let Some(i) = available.iter().position(|b| *b == b'\n') {
                self.reader.consume(i + 1);
                break;
            }
            let len = available.len();
            self.reader.consume(len);
        }
        Ok(Some((self.number, Line::TooLong)))
    }
}

/// Reads a regular file of at most `limit` bytes; `what` names it in errors.
/// A larger file, a directory, a FIFO or a device is refused (exit 2)
/// without reading more than `limit + 1` bytes.
pub fn read_file(path: &Path, limit: usize, what: &str) -> Result<Vec<u8>, Failure> {
    // Before opening: opening a FIFO for reading would wait for a writer.
    regular_file(path, what)?;
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::Input(anyhow!("cannot read {what} {}: {e}", path.display())))?;
    let meta = file
        .metadata()
        .map_err(|e| Failure::Input(anyhow!("cannot read {what} {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Failure::Input(anyhow!(
            "{what} {} is not a regular file",
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::Input(anyhow!("cannot read {what} {}: {e}", path.display())))?;
    if bytes.len() > limit {
        return Err(Failure::Input(anyhow!(
            "{what} {} is larger than {limit} bytes, the most it may have; it was not read",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Refuses (exit 2) anything at `path` but a regular file, before it is opened.
pub fn regular_file(path: &Path, what: &str) -> Result<(), Failure> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Failure::Input(anyhow!("cannot read {what} {}: {e}", path.display())))?;
    if meta.is_file() {
        Ok(())
    } else {
        Err(Failure::Input(anyhow!(
            "{what} {} is not a regular file",
            path.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], limit: usize) -> Vec<Option<Vec<u8>>> {
        let mut r = BoundedLines::new(input, limit);
        let mut out = Vec::new();
        while let Some((_, l)) = r.next_line().unwrap() {
            out.push(match l {
                Line::Text(t) => Some(t),
                Line::TooLong => None,
            });
        }
        out
    }

    #[test]
    fn long_lines_are_skipped_and_the_rest_is_read() {
        assert_eq!(
            lines(b"abcd\nabcde\nab\r\nabcdefghij", 4),
            vec![Some(b"abcd".to_vec()), None, Some(b"ab".to_vec()), None]
        );
        assert_eq!(lines(b"abc", 4), vec![Some(b"abc".to_vec())]);
    }
}
