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

/// Why a file could not be used.
pub enum FileProblem {
    /// It could not be opened or read.
    Unreadable(std::io::Error),
    /// It is a directory, a FIFO, a device: nothing to read.
    NotRegular,
    /// It has more than `limit` bytes.
    TooLarge { limit: usize },
}

impl FileProblem {
    /// The problem as a refusal (exit 2): a file given on the command line
    /// that cannot be used is a usage error; `what` names it.
    pub fn refused(self, what: &str, path: &Path) -> Failure {
        let path = path.display();
        Failure::Input(match self {
            Self::Unreadable(e) => anyhow!("cannot read {what} {path}: {e}"),
            Self::NotRegular => anyhow!("{what} {path} is not a regular file"),
            Self::TooLarge { limit } => anyhow!(
                "{what} {path} is larger than {limit} bytes, the most it may have; it was not read"
            ),
        })
    }
}

/// Opens `path` if it is a regular file. Checked before opening (opening a
/// FIFO for reading would wait for a writer) and again on the file opened
/// (the path may have changed in between).
pub fn open_regular(path: &Path) -> Result<std::fs::File, FileProblem> {
    let is_file = |meta: std::fs::Metadata| {
        if meta.is_file() {
            Ok(())
        } else {
            Err(FileProblem::NotRegular)
        }
    };
    is_file(std::fs::metadata(path).map_err(FileProblem::Unreadable)?)?;
    let file = std::fs::File::open(path).map_err(FileProblem::Unreadable)?;
    is_file(file.metadata().map_err(FileProblem::Unreadable)?)?;
    Ok(file)
}

/// Reads a regular file of at most `limit` bytes, never more than
/// `limit + 1` of a larger one.
pub fn read_regular(path: &Path, limit: usize) -> Result<Vec<u8>, FileProblem> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap)
        .read_to_end(&mut bytes)
        .map_err(FileProblem::Unreadable)?;
    if bytes.len() > limit {
        return Err(FileProblem::TooLarge { limit });
    }
    Ok(bytes)
}

/// [`read_regular`] for a file named on the command line: anything but a
/// readable regular file of at most `limit` bytes is refused (exit 2);
/// `what` names it in errors.
pub fn read_file(path: &Path, limit: usize, what: &str) -> Result<Vec<u8>, Failure> {
    read_regular(path, limit).map_err(|p| p.refused(what, path))
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
