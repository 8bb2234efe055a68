//! Hashing a local file before it is uploaded.
//!
//! The whole file's SHA-256 must be known before the first byte is sent (it
//! goes into the object's `sha256` metadata and any signature). For a
//! multipart upload the parts' SHA-256s (their `x-amz-checksum-sha256`, and
//! what the read-back is checked against) are computed from the same read,
//! on a second thread: while nothing is being uploaded yet a second core is
//! idle, and during the upload the store needs the CPU.

use std::io::Read as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::multipart::MIB;

/// The SHA-256 of every part of a file, for one part size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartDigests {
    /// Part size they were computed for.
    pub part_size: u64,
    /// Raw SHA-256 of each part, in order.
    pub sha256: Vec<[u8; 32]>,
}

/// Size and SHA-256 of a local file, computed before an upload starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigest {
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256.
    pub sha256: String,
    /// Per-part SHA-256s, when computed for a multipart upload.
    pub parts: Option<PartDigests>,
}

impl FileDigest {
    /// Streams the file through SHA-256 (blocking; 1 MiB buffer).
    ///
    /// # Errors
    ///
    /// The file cannot be opened or read.
    pub fn of_file(path: &Path) -> std::io::Result<Self> {
        let (size, sha256) = whole_file(path)?;
        Ok(Self {
            size,
            sha256,
            parts: None,
        })
    }

    /// [`of_file`](Self::of_file) plus the SHA-256 of each `part_size` part,
    /// from the same read, hashed at the same time on other threads (blocking).
    ///
    /// # Errors
    ///
    /// The file cannot be opened or read, or it changed size between the two reads.
    pub fn of_file_with_parts(path: &Path, part_size: u64) -> std::io::Result<Self> {
        // One read feeds both hashes, so the parts' hashes are provably of the
        // same bytes as the whole file's (verification relies on that). The
        // whole-file hash is the critical path, so its thread only hashes:
        // this thread reads, a third hashes the parts.
        let (to_whole, whole_chunks) = std::sync::mpsc::sync_channel::<Chunk>(BUFFERS);
        let (to_parts, part_chunks) = std::sync::mpsc::sync_channel::<Chunk>(BUFFERS);
        let (give_back, returned) = std::sync::mpsc::channel::<Chunk>();
        let (read, whole, parts) = std::thread::scope(|s| {
            let back = give_back.clone();
            let whole = s.spawn(move || {
                let mut hasher = Sha256::new();
                for chunk in whole_chunks {
                    hasher.update(chunk.as_slice());
                    let _ = back.send(chunk);
                }
                hex::encode(hasher.finalize())
            });
            let parts = s.spawn(move || hash_parts(&part_chunks, &give_back, part_size));
            let read = read_chunks(path, &to_whole, &to_parts, &returned);
            drop((to_whole, to_parts));
            (read, whole.join(), parts.join())
        });
        let size = read?;
        let panicked = |_| std::io::Error::other("a hashing thread panicked");
        Ok(Self {
            size,
            sha256: whole.map_err(panicked)?,
            parts: Some(PartDigests {
                part_size,
                sha256: parts.map_err(panicked)?,
            }),
        })
    }
}

/// A chunk of the file, shared by the two hashers.
type Chunk = std::sync::Arc<Vec<u8>>;

/// Chunks in flight to each hasher.
const BUFFERS: usize = 8;

fn whole_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = Vec::with_capacity(MIB as usize);
    let mut size = 0u64;
    loop {
        buf.clear();
        // `take` + `read_to_end` fills spare capacity without zeroing it first.
        let n = (&mut file).take(MIB).read_to_end(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Reads the file in 1 MiB chunks and sends each to both hashers, reusing a
/// chunk's buffer once both have given it back. Returns the size read.
fn read_chunks(
    path: &Path,
    to_whole: &std::sync::mpsc::SyncSender<Chunk>,
    to_parts: &std::sync::mpsc::SyncSender<Chunk>,
    returned: &std::sync::mpsc::Receiver<Chunk>,
) -> std::io::Result<u64> {
    let stopped = || std::io::Error::other("a hashing thread stopped");
    let mut file = std::fs::File::open(path)?;
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let mut size = 0u64;
    loop {
        // The second hasher to give a chunk back frees it for reuse.
        pool.extend(
            returned
                .try_iter()
                .filter_map(|c| std::sync::Arc::try_unwrap(c).ok()),
        );
        let mut buf = pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(MIB as usize));
        buf.clear();
        let n = (&mut file).take(MIB).read_to_end(&mut buf)?;
        if n == 0 {
            return Ok(size);
        }
        size += n as u64;
        let chunk = std::sync::Arc::new(buf);
        to_whole.send(chunk.clone()).map_err(|_| stopped())?;
        to_parts.send(chunk).map_err(|_| stopped())?;
    }
}

/// The SHA-256 of each `part_size` part of the chunks received, in order;
/// each chunk is given back once hashed.
fn hash_parts(
    chunks: &std::sync::mpsc::Receiver<Chunk>,
    give_back: &std::sync::mpsc::Sender<Chunk>,
    part_size: u64,
) -> Vec<[u8; 32]> {
    let mut hashes = Vec::new();
    let mut hasher = Sha256::new();
    let mut in_part = 0u64;
    let mut any = false;
    for chunk in chunks {
        let mut rest: &[u8] = chunk.as_slice();
        while !rest.is_empty() {
            any = true;
            let take = usize::try_from(part_size - in_part)
                .unwrap_or(usize::MAX)
                .min(rest.len());
            hasher.update(&rest[..take]);
            in_part += take as u64;
            rest = &rest[take..];
            if in_part == part_size {
                hashes.push(hasher.finalize_reset().into());
                in_part = 0;
            }
        }
        // The reader may have finished already; then the buffer is just dropped.
        let _ = give_back.send(chunk);
    }
    if in_part > 0 || !any {
        hashes.push(hasher.finalize().into());
    }
    hashes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_stream_the_file_and_its_parts() {
        let dir = std::env::temp_dir().join(format!("stele-worm-digest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let part = 5 * MIB;
        let data: Vec<u8> = (0..2 * part + 7).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let d = FileDigest::of_file_with_parts(&path, part).unwrap();
        assert_eq!(d.size, data.len() as u64);
        assert_eq!(d.sha256, crate::sha256_hex(&data));
        let parts = d.parts.unwrap();
        assert_eq!(parts.sha256.len(), 3);
        for (i, chunk) in data.chunks(part as usize).enumerate() {
            assert_eq!(parts.sha256[i], <[u8; 32]>::from(Sha256::digest(chunk)));
        }
        assert_eq!(FileDigest::of_file(&path).unwrap().sha256, d.sha256);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
