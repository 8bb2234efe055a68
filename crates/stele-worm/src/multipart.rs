//! Locked, verified uploads of local files, streamed from disk.
//!
//! Small files (up to [`UploadTuning::multipart_threshold`]) go in one
//! [`S3Worm::put_locked_with_metadata`] PUT. Larger ones go multipart:
//!
//! - `CreateMultipartUpload` carries the explicit lock mode and retain-until,
//!   the `sha256` metadata (the whole file's, computed by the caller before the
//!   first byte is sent), the SHA-256 checksum algorithm and SSE-KMS;
//! - one reader thread reads the file in order and hands parts to at most
//!   [`UploadTuning::concurrency`] uploads in flight through a channel of
//!   one, so memory stays about `(concurrency + 2) × part_size` whatever the
//!   file's size; part buffers are lent to the SDK without a copy and reused
//!   once sent. Each part carries its SHA-256 as `x-amz-checksum-sha256`
//!   (AWS refuses a part whose bytes do not match): hashed with the file
//!   beforehand ([`FileDigest::of_file_with_parts`]) or, failing that, by the
//!   reader, which then hashes the whole stream too;
//! - each part is retried on transient failures with the store's
//!   [`RetryPolicy`](crate::RetryPolicy); a permanent failure, or a part that
//!   exhausts its retries, aborts the upload;
//! - if the file changed after it was hashed, the upload is aborted (the
//!   reader's whole-stream hash differs, or the store refuses a part whose
//!   checksum no longer matches) or fails verification (the bytes read back);
//! - `CompleteMultipartUpload` is create-only (`If-None-Match: *`); a retry
//!   of it that finds the upload already completed is accepted once the
//!   object is verified.
//!
//! Stores that ignore the lock on `CreateMultipartUpload` (Ceph RGW 16,
//! ministack) get it set on the new version with `PutObjectRetention`.
//!
//! Then the stored version is verified: size, `sha256` metadata, lock mode,
//! retain-until and SSE-KMS from a HEAD, and the content either by the
//! store's checksum (the composite SHA-256 of the parts, which must equal the
//! one computed here; a multipart checksum is never the whole file's SHA-256)
//! or, where the store has no checksum API (Ceph RGW), by reading the object
//! back: in part-sized ranges, several at once, each hashed as it arrives and
//! compared with the file's part hash. The part hashes come from the same
//! read of the file as its whole SHA-256 (or, hashed by the reader, from the
//! bytes whose whole hash was checked against it), so every range matching
//! means the stored bytes are the file's and their SHA-256 is the file's —
//! with the hashing spread over every core instead of one sequential pass.
//!
//! Parts are sent with `UNSIGNED-PAYLOAD`: signing the payload would hash
//! every byte a third time; the per-part checksum (AWS) and the whole-object
//! verification (everywhere) already guard the content.

use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream, DateTime, SdkBody};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockMode,
    ServerSideEncryption,
};
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::digest::{FileDigest, PartDigests};
use crate::s3::{Failed, ObjectFacts, S3Worm, call_with_retry, user_metadata};
use crate::{LockMode, Retention, RetryPolicy, StoredObject, WormError};

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;
/// S3's smallest part (all but the last).
const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's most parts per upload.
const MAX_PARTS: u64 = 10_000;

/// How a file upload is split and parallelized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadTuning {
    /// Bytes per part (raised to S3's 5 MiB minimum, and further so the file
    /// fits in 10,000 parts).
    pub part_size: u64,
    /// Parts in flight at once (at least 1).
    pub concurrency: usize,
    /// Files up to this size go in one PUT, read into memory; larger ones go multipart.
    pub multipart_threshold: u64,
}

impl Default for UploadTuning {
    /// 32 MiB parts, 3 in flight (at most 5 parts, 160 MiB, in memory), one
    /// PUT up to 32 MiB: the fastest of the settings measured against Ceph
    /// RGW on two cores (upload and verification together; 8-64 MiB parts,
    /// 2-8 in flight).
    fn default() -> Self {
        Self {
            part_size: 32 * MIB,
            concurrency: 3,
            multipart_threshold: 32 * MIB,
        }
    }
}

impl UploadTuning {
    /// The part size used for a file of `size` bytes.
    pub fn part_size_for(&self, size: u64) -> u64 {
        let fit = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        self.part_size.max(MIN_PART_SIZE).max(fit)
    }
}

/// What a progress report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Bytes sent to the store.
    Upload,
    /// Bytes read back from the store to verify them.
    Verify,
    /// Bytes downloaded.
    Download,
}

/// Receives progress, e.g. to drive a progress bar. Called from upload tasks.
pub trait Progress: Send + Sync {
    /// `bytes` more are done in `phase`.
    fn advance(&self, phase: Phase, bytes: u64);
}

/// Ignores progress.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _phase: Phase, _bytes: u64) {}
}

/// One local file to store under Object Lock.
#[derive(Clone, Copy, Debug)]
pub struct FileUpload<'a> {
    /// Object key.
    pub key: &'a str,
    /// The file.
    pub path: &'a Path,
    /// Its size and SHA-256, from [`FileDigest::of_file`] (or, to spare the
    /// upload the part hashing, [`FileDigest::of_file_with_parts`] with
    /// [`UploadTuning::part_size_for`]).
    pub digest: &'a FileDigest,
    /// Lock mode and retain-until.
    pub retention: Retention,
    /// Extra user metadata (`sha256` is always stele's).
    pub metadata: &'a [(String, String)],
    /// Part size and parallelism.
    pub tuning: UploadTuning,
}

/// One part read from the file, ready to send.
struct Part {
    number: i32,
    body: bytes::Bytes,
    sha256: [u8; 32],
}

/// A part's buffer, lent to the SDK without a copy; it goes back to the
/// reader for the next part once the last reference is dropped, so an upload
/// allocates (and page-faults) its few buffers once, not once per part.
struct PooledBuffer {
    buf: Vec<u8>,
    home: std::sync::mpsc::Sender<Vec<u8>>,
}

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        // The reader may be gone (upload finished or stopped); then the buffer is freed.
        let _ = self.home.send(std::mem::take(&mut self.buf));
    }
}

/// What every part upload needs, shared by the tasks.
struct PartTarget {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    retry: RetryPolicy,
}

impl S3Worm {
    /// Stores a local file at `upload.key` create-only under Object Lock and
    /// verifies what the store holds: one PUT up to the multipart threshold,
    /// else a parallel multipart upload with per-part SHA-256 checksums; then
    /// size, metadata, lock, encryption and content (checksum API, else the
    /// bytes read back). An existing object with the same size and SHA-256
    /// counts as success (a retried upload) once verified.
    ///
    /// # Errors
    ///
    /// [`WormError::Conflict`] if different content is at the key;
    /// [`WormError::Verification`] if the store does not hold the file's
    /// bytes, lock or encryption (or the file changed while it was read);
    /// [`WormError::Io`] if the file cannot be read; other [`WormError`]s.
    pub async fn put_file_locked(
        &self,
        upload: &FileUpload<'_>,
        progress: &dyn Progress,
    ) -> Result<StoredObject, WormError> {
        // Before any request: a retain-until the store cannot hold is never sent.
        upload.retention.check(OffsetDateTime::now_utc())?;
        self.check_object_lock().await?;
        if upload.digest.size <= upload.tuning.multipart_threshold {
            return self.put_small_file(upload, progress).await;
        }
        if let Some((facts, checksum)) = self.head_with_raw_checksum(upload.key, None).await? {
            return self
                .accept_existing_file(upload, facts, checksum, progress)
                .await;
        }
        self.put_multipart(upload, progress).await
    }

    /// One PUT from memory: the file is at most the multipart threshold.
    async fn put_small_file(
        &self,
        upload: &FileUpload<'_>,
        progress: &dyn Progress,
    ) -> Result<StoredObject, WormError> {
        let path = upload.path.to_path_buf();
        let bytes = tokio::task::spawn_blocking(move || std::fs::read(&path))
            .await
            .map_err(|e| internal(upload.key, &e))?
            .map_err(|source| io_error(upload.path, source))?;
        let sha = crate::sha256_hex(&bytes);
        if bytes.len() as u64 != upload.digest.size || sha != upload.digest.sha256 {
            return Err(file_changed(upload, &sha));
        }
        let stored = self
            .put_locked_with_metadata(upload.key, &bytes, upload.retention, upload.metadata)
            .await?;
        progress.advance(Phase::Upload, upload.digest.size);
        progress.advance(Phase::Verify, upload.digest.size);
        Ok(stored)
    }

    async fn put_multipart(
        &self,
        upload: &FileUpload<'_>,
        progress: &dyn Progress,
    ) -> Result<StoredObject, WormError> {
        let key = upload.key;
        let started = std::time::Instant::now();
        let upload_id = self.create_multipart(upload).await?;
        let parts = match self.upload_parts(upload, &upload_id, progress).await {
            Ok(parts) => parts,
            Err(e) => {
                self.abort_multipart(key, &upload_id).await;
                return Err(e);
            }
        };
        tracing::debug!(
            key,
            parts = parts.len(),
            secs = started.elapsed().as_secs_f64(),
            "parts uploaded"
        );
        let composite = composite_checksum(&parts);
        let part_hashes = PartDigests {
            part_size: upload.tuning.part_size_for(upload.digest.size),
            sha256: parts.iter().map(|(_, sha)| *sha).collect(),
        };
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(parts.into_iter().map(|(part, _)| part).collect()))
            .build();
        let result = self
            .call("CompleteMultipartUpload", || {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(completed.clone())
                    .if_none_match("*")
                    .send()
            })
            .await;
        let version_id = match result {
            Ok(out) => out.version_id().map(str::to_owned),
            // Someone else created the key meanwhile: accept only the same content.
            Err(f) if f.error.status == Some(412) || f.error.code == "PreconditionFailed" => {
                self.abort_multipart(key, &upload_id).await;
                let (facts, checksum) = self.head_required(key, None).await?;
                return self
                    .accept_existing_file(upload, facts, checksum, progress)
                    .await;
            }
            // An earlier attempt completed, but its answer was lost: the
            // upload is gone and the object is there (verified below).
            Err(f) if f.attempts > 1 && f.error.code == "NoSuchUpload" => None,
            Err(f) => {
                self.abort_multipart(key, &upload_id).await;
                return Err(self.error("CompleteMultipartUpload", key, f));
            }
        };
        // A store that ignores If-None-Match (Ceph RGW on versioned buckets)
        // lets a concurrent writer complete a version too: the first holds the key.
        if let Some((first, checksum)) = self
            .first_version_holder(
                key,
                version_id.as_deref(),
                upload.digest.size,
                &upload.digest.sha256,
            )
            .await?
        {
            return self
                .accept_existing_file(upload, first, checksum, progress)
                .await;
        }
        let (facts, checksum) = self.head_required(key, version_id.as_deref()).await?;
        tracing::debug!(
            key,
            secs = started.elapsed().as_secs_f64(),
            "multipart upload completed"
        );
        let stored = self
            .verify_file_object(
                upload,
                facts,
                checksum,
                Some(&composite),
                Some(&part_hashes),
                false,
                progress,
            )
            .await;
        tracing::debug!(key, secs = started.elapsed().as_secs_f64(), "verified");
        stored
    }

    async fn create_multipart(&self, upload: &FileUpload<'_>) -> Result<String, WormError> {
        upload.retention.check(OffsetDateTime::now_utc())?;
        let until = DateTime::from_secs(upload.retention.retain_until.unix_timestamp());
        let mode = match upload.retention.mode {
            LockMode::Compliance => ObjectLockMode::Compliance,
            LockMode::Governance => ObjectLockMode::Governance,
        };
        let metadata = user_metadata(&upload.digest.sha256, upload.metadata);
        let result = self
            .call("CreateMultipartUpload", || {
                let mut req = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(upload.key)
                    .set_metadata(Some(metadata.clone()))
                    .object_lock_mode(mode.clone())
                    .object_lock_retain_until_date(until)
                    .checksum_algorithm(ChecksumAlgorithm::Sha256);
                if let Some(kms) = &self.kms_key_id {
                    req = req
                        .server_side_encryption(ServerSideEncryption::AwsKms)
                        .ssekms_key_id(kms);
                }
                req.send()
            })
            .await;
        match result {
            Ok(out) => out
                .upload_id()
                .map(str::to_owned)
                .ok_or_else(|| WormError::Verification {
                    key: upload.key.to_owned(),
                    what: "the store started a multipart upload without an upload id".into(),
                }),
            Err(f) => Err(self.write_error("CreateMultipartUpload", upload.key, f)),
        }
    }

    /// Sends every part, at most `concurrency` at once; returns them in part
    /// order with their raw SHA-256s.
    async fn upload_parts(
        &self,
        upload: &FileUpload<'_>,
        upload_id: &str,
        progress: &dyn Progress,
    ) -> Result<Vec<(CompletedPart, [u8; 32])>, WormError> {
        let key = upload.key;
        let part_size = upload.tuning.part_size_for(upload.digest.size);
        debug_assert!(part_size >= MIN_PART_SIZE);
        let concurrency = upload.tuning.concurrency.max(1);
        let target = Arc::new(PartTarget {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            retry: self.retry,
        });
        let (tx, mut rx) = mpsc::channel::<Part>(1);
        let path = upload.path.to_path_buf();
        let size = upload.digest.size;
        // Part hashes from the digest pass, if made for this part size.
        let known = upload
            .digest
            .parts
            .as_ref()
            .filter(|p| {
                p.part_size == part_size && p.sha256.len() as u64 == size.div_ceil(part_size)
            })
            .map(|p| p.sha256.clone());
        let reader = tokio::task::spawn_blocking(move || {
            read_parts(&path, size, part_size, known.as_deref(), &tx)
        });

        let mut in_flight = JoinSet::new();
        let mut done = Vec::new();
        let mut reading = true;
        loop {
            while reading && in_flight.len() < concurrency {
                match rx.recv().await {
                    Some(part) => {
                        in_flight.spawn(upload_part(target.clone(), part));
                    }
                    None => reading = false,
                }
            }
            let Some(joined) = in_flight.join_next().await else {
                break;
            };
            match joined {
                Ok(Ok((part, sha, len))) => {
                    progress.advance(Phase::Upload, len);
                    done.push((part, sha));
                }
                Ok(Err(failed)) => {
                    in_flight.abort_all();
                    return Err(self.error("UploadPart", key, failed));
                }
                Err(e) => {
                    in_flight.abort_all();
                    return Err(internal(key, &e));
                }
            }
        }
        // The reader has finished (its channel closed): did it read the file the caller hashed?
        let read_sha = reader
            .await
            .map_err(|e| internal(key, &e))?
            .map_err(|source| io_error(upload.path, source))?;
        if let Some(read_sha) = read_sha
            && read_sha != upload.digest.sha256
        {
            return Err(file_changed(upload, &read_sha));
        }
        done.sort_by_key(|(part, _)| part.part_number());
        Ok(done)
    }

    /// Best effort: a failed upload should not leave parts behind (a bucket
    /// lifecycle rule `AbortIncompleteMultipartUpload` catches what this misses).
    async fn abort_multipart(&self, key: &str, upload_id: &str) {
        let result = self
            .call("AbortMultipartUpload", || {
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .send()
            })
            .await;
        if let Err(f) = result {
            tracing::warn!(key, upload_id, code = %f.error.code, "could not abort the multipart upload; its parts stay until a lifecycle rule removes them");
        }
    }

    async fn head_required(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(ObjectFacts, Option<String>), WormError> {
        self.head_with_raw_checksum(key, version_id)
            .await?
            .ok_or_else(|| WormError::Verification {
                key: key.to_owned(),
                what: "the object is not there after the upload".into(),
            })
    }

    /// An object already at the key: the same size and SHA-256 is a retried
    /// upload (verified like a new one); anything else is a conflict.
    async fn accept_existing_file(
        &self,
        upload: &FileUpload<'_>,
        facts: ObjectFacts,
        checksum: Option<String>,
        progress: &dyn Progress,
    ) -> Result<StoredObject, WormError> {
        let existing_sha = facts
            .checksum_sha256
            .clone()
            .or_else(|| facts.metadata_sha256.clone());
        if facts.size != upload.digest.size
            || existing_sha
                .as_deref()
                .is_some_and(|s| s != upload.digest.sha256)
        {
            return Err(WormError::Conflict {
                key: upload.key.to_owned(),
                existing: existing_sha.unwrap_or_else(|| "unknown".into()),
                version_id: facts.version_id.clone(),
            });
        }
        progress.advance(Phase::Upload, upload.digest.size);
        self.verify_file_object(
            upload,
            facts,
            checksum,
            None,
            upload.digest.parts.as_ref(),
            true,
            progress,
        )
        .await
    }

    /// Checks a stored version against the file: size, metadata, content
    /// (checksum API, else bytes), lock and encryption.
    #[allow(clippy::too_many_arguments)] // every argument is one fact being checked
    async fn verify_file_object(
        &self,
        upload: &FileUpload<'_>,
        facts: ObjectFacts,
        checksum: Option<String>,
        composite: Option<&str>,
        parts: Option<&PartDigests>,
        already_present: bool,
        progress: &dyn Progress,
    ) -> Result<StoredObject, WormError> {
        let key = upload.key;
        // Stores that ignore the lock requested by `CreateMultipartUpload`
        // (Ceph RGW 16 applies only the bucket's default; ministack none),
        // and retried uploads asking for a later retain-until, get the lock
        // set on the version.
        // An existing object whose hash is unknown is not ours to lock until its bytes are checked.
        let hash_known = facts.metadata_sha256.is_some() || facts.checksum_sha256.is_some();
        let facts = if !already_present || hash_known {
            self.extend_lock_to(key, facts, upload.retention).await?
        } else {
            facts
        };
        let want = &upload.digest.sha256;
        let fail = |what: String| WormError::Verification {
            key: key.to_owned(),
            what,
        };
        if facts.size != upload.digest.size {
            return Err(fail(format!(
                "size is {} bytes, the file has {}",
                facts.size, upload.digest.size
            )));
        }
        if let Some(meta) = &facts.metadata_sha256
            && meta != want
        {
            return Err(fail(format!("sha256 metadata is {meta}, expected {want}")));
        }
        // At least, not exactly: a store that ignores the lock of
        // CreateMultipartUpload applies the bucket's default, which may be longer.
        self.check_lock_and_encryption(key, &facts, upload.retention, false)?;
        let whole = facts.checksum_sha256.as_deref();
        let verified_by = match checksum.as_deref() {
            // The store's SHA-256 of the whole object (single-part uploads).
            Some(_) if whole == Some(want.as_str()) => "checksum-api",
            // The store's SHA-256 over the parts' SHA-256s, as computed here
            // from the same bytes that hashed to the file's digest.
            Some(c) if composite == Some(c) => "checksum-api",
            Some(c) if whole.is_some() || composite.is_some() => {
                return Err(fail(format!(
                    "the store's SHA-256 checksum is {c}, expected {}",
                    composite.unwrap_or(want)
                )));
            }
            // No checksum (Ceph RGW), or a composite we cannot recompute
            // (an existing object): read the stored bytes back. With the
            // file's part hashes (made in the same read as its whole hash),
            // ranges are compared in parallel; otherwise one stream is hashed.
            _ => {
                if let Some(parts) = parts.filter(|p| {
                    p.part_size > 0
                        && p.sha256.len() as u64 == upload.digest.size.div_ceil(p.part_size)
                }) {
                    let differs = self
                        .compare_parts(
                            key,
                            facts.version_id.as_deref(),
                            parts.part_size,
                            &parts.sha256,
                            upload.tuning.concurrency,
                            progress,
                        )
                        .await?;
                    if let Some(what) = differs {
                        return Err(fail(what));
                    }
                } else {
                    let read = self
                        .read_streamed_as(
                            key,
                            facts.version_id.as_deref(),
                            &mut |_| Ok(()),
                            progress,
                            Phase::Verify,
                        )
                        .await?;
                    if read.size != upload.digest.size || &read.sha256 != want {
                        return Err(fail(format!(
                            "the stored bytes ({} bytes) hash to {}, expected {want}",
                            read.size, read.sha256
                        )));
                    }
                }
                "bytes"
            }
        };
        if verified_by == "checksum-api" {
            progress.advance(Phase::Verify, upload.digest.size);
        }
        Ok(StoredObject {
            key: key.to_owned(),
            version_id: facts.version_id,
            size: facts.size,
            sha256: want.clone(),
            verified_by,
            lock_mode: facts.lock_mode,
            retain_until: facts.retain_until,
            kms_key_id: facts.kms_key_id,
            already_present,
            worm: true,
        })
    }
}

/// Reads the file in order and sends each part with its SHA-256: the one
/// hashed before the upload when `known` has them, else hashed here. Without
/// known part hashes the whole stream is hashed too, and returned, so the
/// caller can tell whether this is still the file that was hashed before.
/// Runs on a blocking thread.
fn read_parts(
    path: &Path,
    size: u64,
    part_size: u64,
    known: Option<&[[u8; 32]]>,
    tx: &mpsc::Sender<Part>,
) -> std::io::Result<Option<String>> {
    let mut file = std::fs::File::open(path)?;
    let mut whole = known.is_none().then(Sha256::new);
    let (home, returned) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut offset = 0u64;
    let mut number = 1i32;
    while offset < size {
        let len = usize::try_from(part_size.min(size - offset))
            .map_err(|_| std::io::Error::other("part larger than memory"))?;
        let mut body = returned
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(len));
        body.clear();
        // `take` + `read_to_end` fills the buffer without zeroing it first.
        (&mut file).take(len as u64).read_to_end(&mut body)?;
        if body.len() != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file is shorter than when it was hashed",
            ));
        }
        let sha256 = match known.and_then(|k| k.get(usize::try_from(number - 1).ok()?)) {
            Some(sha) => *sha,
            None => Sha256::digest(&body).into(),
        };
        if let Some(h) = whole.as_mut() {
            h.update(&body);
        }
        let body = bytes::Bytes::from_owner(PooledBuffer {
            buf: body,
            home: home.clone(),
        });
        if tx
            .blocking_send(Part {
                number,
                body,
                sha256,
            })
            .is_err()
        {
            // The upload stopped (a part failed); nothing more to read.
            return Err(std::io::Error::other("the upload was stopped"));
        }
        offset += len as u64;
        number += 1;
    }
    let Some(mut whole) = whole else {
        return Ok(None);
    };
    // A file that grew since it was hashed is not the file that was hashed.
    let mut probe = [0u8; 1];
    if file.read(&mut probe)? != 0 {
        whole.update(probe);
    }
    Ok(Some(hex::encode(whole.finalize())))
}

async fn upload_part(
    target: Arc<PartTarget>,
    part: Part,
) -> Result<(CompletedPart, [u8; 32], u64), Failed> {
    let len = part.body.len() as u64;
    let checksum = BASE64_STANDARD.encode(part.sha256);
    // In-memory bodies clone cheaply (shared bytes), so every retry resends the same part.
    let body = SdkBody::from(part.body);
    let out = call_with_retry(target.retry, "UploadPart", || {
        target
            .client
            .upload_part()
            .bucket(&target.bucket)
            .key(&target.key)
            .upload_id(&target.upload_id)
            .part_number(part.number)
            .content_length(i64::try_from(len).unwrap_or(i64::MAX))
            .checksum_sha256(&checksum)
            // `taken()` fails the request rather than sending nothing, should
            // an in-memory body ever refuse to clone.
            .body(ByteStream::new(
                body.try_clone().unwrap_or_else(SdkBody::taken),
            ))
            .customize()
            .disable_payload_signing()
            .send()
    })
    .await?;
    let completed = CompletedPart::builder()
        .part_number(part.number)
        .set_e_tag(out.e_tag().map(str::to_owned))
        .checksum_sha256(checksum)
        .build();
    Ok((completed, part.sha256, len))
}

/// S3's composite SHA-256 of a multipart object: base64 of the SHA-256 of the
/// parts' raw SHA-256s, then `-<number of parts>`.
fn composite_checksum(parts: &[(CompletedPart, [u8; 32])]) -> String {
    let mut hasher = Sha256::new();
    for (_, sha) in parts {
        hasher.update(sha);
    }
    format!(
        "{}-{}",
        BASE64_STANDARD.encode(hasher.finalize()),
        parts.len()
    )
}

fn file_changed(upload: &FileUpload<'_>, read_sha: &str) -> WormError {
    WormError::Verification {
        key: upload.key.to_owned(),
        what: format!(
            "{} changed while it was being uploaded (it hashed to {} before, {read_sha} while uploading); nothing was stored — upload it again once it is stable",
            upload.path.display(),
            upload.digest.sha256
        ),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> WormError {
    WormError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn internal(key: &str, e: &dyn std::fmt::Display) -> WormError {
    WormError::Verification {
        key: key.to_owned(),
        what: format!("internal error: an upload task failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_respects_minimum_and_part_limit() {
        let t = UploadTuning {
            part_size: MIB,
            ..UploadTuning::default()
        };
        assert_eq!(t.part_size_for(100 * MIB), MIN_PART_SIZE);
        let huge = 5 * 1024 * 1024 * MIB; // 5 TiB, S3's largest object
        let p = UploadTuning::default().part_size_for(huge);
        assert!(huge.div_ceil(p) <= MAX_PARTS);
        assert_eq!(p % MIB, 0);
        assert_eq!(UploadTuning::default().part_size_for(MIB), 32 * MIB);
    }

    #[test]
    fn composite_checksum_matches_s3s_definition() {
        let a: [u8; 32] = Sha256::digest(b"a").into();
        let b: [u8; 32] = Sha256::digest(b"b").into();
        let parts = vec![
            (CompletedPart::builder().part_number(1).build(), a),
            (CompletedPart::builder().part_number(2).build(), b),
        ];
        let mut cat = a.to_vec();
        cat.extend_from_slice(&b);
        let want = format!("{}-2", BASE64_STANDARD.encode(Sha256::digest(&cat)));
        assert_eq!(composite_checksum(&parts), want);
    }
}
