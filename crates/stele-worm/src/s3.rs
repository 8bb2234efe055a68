//! The S3 Object Lock store.

use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ChecksumMode, ObjectLockEnabled, ObjectLockMode, ServerSideEncryption};
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use md5::Digest as _;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::retry::CallError;
use crate::{LockMode, Retention, RetryPolicy, StoredObject, WormError, sha256_hex};

/// How to reach the bucket.
#[derive(Clone, Default)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL for S3-compatible stores (RGW, ministack); `None` for AWS
    /// (the SDK also honours `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Region; `None` uses the SDK's chain (`AWS_REGION`, profile), else `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing; `None` means on when an endpoint is given.
    pub path_style: Option<bool>,
    /// Static credentials `(access key id, secret)`; `None` uses the SDK's standard chain.
    pub static_credentials: Option<(String, String)>,
    /// SSE-KMS key id or ARN to encrypt with; `None` leaves encryption to the bucket default.
    pub kms_key_id: Option<String>,
    /// Retries for transient failures.
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field(
                "static_credentials",
                &self
                    .static_credentials
                    .as_ref()
                    .map(|(id, _)| (id, "<redacted>")),
            )
            .field("kms_key_id", &self.kms_key_id)
            .field("retry", &self.retry)
            .finish()
    }
}

/// An S3 bucket with Object Lock.
#[derive(Debug)]
pub struct S3Worm {
    pub(crate) client: Client,
    pub(crate) bucket: String,
    pub(crate) kms_key_id: Option<String>,
    pub(crate) retry: RetryPolicy,
    /// `max-keys` per listing page; `None` leaves it to the store (1000 on AWS).
    pub(crate) list_page_size: Option<i32>,
    lock_checked: OnceCell<()>,
}

/// A failed call after retries.
pub(crate) struct Failed {
    pub(crate) error: CallError,
    pub(crate) attempts: u32,
}

/// Facts about one stored object version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectFacts {
    /// Version id.
    pub version_id: Option<String>,
    /// Size.
    pub size: u64,
    /// SHA-256 from the checksum API (hex), where the store returns one.
    pub checksum_sha256: Option<String>,
    /// `sha256` user metadata (hex), if set.
    pub metadata_sha256: Option<String>,
    /// Lock mode.
    pub lock_mode: Option<LockMode>,
    /// Retain-until.
    pub retain_until: Option<OffsetDateTime>,
    /// `aws:kms` when SSE-KMS applies.
    pub sse: Option<String>,
    /// SSE-KMS key id/ARN.
    pub kms_key_id: Option<String>,
}

impl S3Worm {
    /// Builds a client (no network calls yet).
    ///
    /// # Errors
    ///
    /// [`WormError::Config`] for an empty bucket name.
    pub async fn connect(cfg: S3Config) -> Result<Self, WormError> {
        if cfg.bucket.trim().is_empty() {
            return Err(WormError::Config(
                "no bucket configured: the bucket name is empty".into(),
            ));
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &cfg.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &cfg.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some((id, secret)) = &cfg.static_credentials {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret,
                None,
                None,
                "stele-static",
            ));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            // stele retries itself: transient failures only, with jitter, logged.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(120))
                    .build(),
            )
            // Checksums are set explicitly on every PUT; SDK defaults (aws-chunked
            // trailers) are rejected by some S3-compatible stores.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
        if shared.region().is_none() {
            builder = builder.region(Region::new("us-east-1"));
        }
        let path_style = cfg
            .path_style
            .unwrap_or(cfg.endpoint.is_some() || shared.endpoint_url().is_some());
        builder = builder.force_path_style(path_style);
        Ok(Self {
            client: Client::from_conf(builder.build()),
            bucket: cfg.bucket,
            kms_key_id: cfg.kms_key_id,
            retry: cfg.retry,
            list_page_size: None,
            lock_checked: OnceCell::new(),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The underlying SDK client, for callers that need other S3 calls: run
    /// them through [`retrying`](Self::retrying) or [`crate::call_with_retry`],
    /// and list through this crate's listing methods, never a loop of their own.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) async fn call<T, E, F, Fut>(&self, op: &'static str, f: F) -> Result<T, Failed>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        call_with_retry(self.retry, op, f).await
    }

    /// Runs one S3 call with stele's retry policy (transient failures only,
    /// backoff with jitter) and its error classification, for S3 calls this
    /// crate does not wrap (legal holds, retention changes, version listings).
    ///
    /// # Errors
    ///
    /// The classified [`WormError`]; `target` names the bucket/key in messages.
    pub async fn retrying<T, E, F, Fut>(
        &self,
        op: &'static str,
        target: &str,
        f: F,
    ) -> Result<T, WormError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.call(op, f)
            .await
            .map_err(|failed| self.error(op, target, failed))
    }

    /// Asks for at most `max_keys` entries per listing page (`None`: the
    /// store's default). Listings still return every entry, over more pages.
    #[must_use]
    pub fn with_list_page_size(mut self, max_keys: Option<i32>) -> Self {
        self.list_page_size = max_keys;
        self
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// [`error`](Self::error) for a write that asked for SSE-KMS. The same
    /// credentials have just passed GetObjectLockConfiguration and
    /// HeadObject, so a credential error here comes from the KMS key: Ceph
    /// RGW answers an unknown SSE-KMS key id with InvalidAccessKeyId.
    pub(crate) fn write_error(&self, op: &'static str, target: &str, f: Failed) -> WormError {
        match &self.kms_key_id {
            Some(kms) if f.error.code == "InvalidAccessKeyId" => WormError::KmsKey {
                key_id: kms.clone(),
                message: format!("{}: {}", f.error.code, f.error.message),
            },
            _ => self.error(op, target, f),
        }
    }

    /// A failed call as the [`WormError`] that says what to do about it.
    pub(crate) fn error(&self, op: &'static str, target: &str, f: Failed) -> WormError {
        let Failed { error, attempts } = f;
        if error.transient {
            return WormError::Unavailable {
                op,
                attempts,
                message: format!("{}: {}", error.code, error.message),
            };
        }
        match error.code.as_str() {
            "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken" => {
                WormError::BadCredentials {
                    op,
                    code: error.code,
                }
            }
            "NoSuchBucket" => WormError::NoSuchBucket {
                bucket: self.bucket.clone(),
            },
            "ObjectLockConfigurationNotFoundError" | "NoSuchObjectLockConfiguration" => {
                WormError::NoObjectLock {
                    bucket: self.bucket.clone(),
                }
            }
            code if self.kms_key_id.is_some()
                && op == "PutObject"
                && (code.contains("KMS") || error.message.to_ascii_lowercase().contains("key")) =>
            {
                WormError::KmsKey {
                    key_id: self.kms_key_id.clone().unwrap_or_default(),
                    message: error.message,
                }
            }
            "AccessDenied" | "Forbidden" => WormError::AccessDenied {
                op,
                target: target.to_owned(),
                message: error.message,
            },
            _ => WormError::Refused {
                op,
                target: target.to_owned(),
                code: error.code,
                message: error.message,
            },
        }
    }

    /// Checks the bucket has Object Lock enabled; cached after the first success.
    ///
    /// # Errors
    ///
    /// [`WormError::NoObjectLock`], [`WormError::NoSuchBucket`], credential and availability errors.
    pub async fn check_object_lock(&self) -> Result<(), WormError> {
        self.lock_checked
            .get_or_try_init(|| async {
                let out = self
                    .call("GetObjectLockConfiguration", || {
                        self.client
                            .get_object_lock_configuration()
                            .bucket(&self.bucket)
                            .send()
                    })
                    .await
                    .map_err(|f| self.error("GetObjectLockConfiguration", &self.bucket, f))?;
                let enabled = out
                    .object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    .is_some_and(|e| *e == ObjectLockEnabled::Enabled);
                if enabled {
                    Ok(())
                } else {
                    Err(WormError::NoObjectLock {
                        bucket: self.bucket.clone(),
                    })
                }
            })
            .await
            .map(|_| ())
    }

    /// Facts about the current (or a given) version of `key`; `None` if there is none.
    ///
    /// # Errors
    ///
    /// Any [`WormError`].
    pub async fn head(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<ObjectFacts>, WormError> {
        Ok(self
            .head_with_raw_checksum(key, version_id)
            .await?
            .map(|(facts, _)| facts))
    }

    /// [`head`](Self::head) plus the store's `ChecksumSHA256` exactly as
    /// returned: a multipart object's is composite (`<base64>-<parts>`), which
    /// [`ObjectFacts::checksum_sha256`] leaves out.
    pub(crate) async fn head_with_raw_checksum(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<(ObjectFacts, Option<String>)>, WormError> {
        let result = self
            .call("HeadObject", || {
                self.client
                    .head_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .set_version_id(version_id.map(str::to_owned))
                    .checksum_mode(ChecksumMode::Enabled)
                    .send()
            })
            .await;
        let out = match result {
            Ok(out) => out,
            Err(f)
                if f.error.status == Some(404)
                    || f.error.code == "NotFound"
                    || f.error.code == "NoSuchKey" =>
            {
                return Ok(None);
            }
            Err(f) => return Err(self.error("HeadObject", key, f)),
        };
        let facts = ObjectFacts {
            version_id: out.version_id().map(str::to_owned),
            size: u64::try_from(out.content_length().unwrap_or(-1)).unwrap_or(u64::MAX),
            checksum_sha256: out
                .checksum_sha256()
                .and_then(|b| BASE64_STANDARD.decode(b).ok())
                // Multipart uploads report a composite checksum ("…-N"), not the object's SHA-256.
                .filter(|raw| raw.len() == 32)
                .map(hex::encode),
            metadata_sha256: out
                .metadata()
                .and_then(|m| m.get("sha256"))
                .map(|s| s.to_ascii_lowercase()),
            lock_mode: out
                .object_lock_mode()
                .and_then(|m| LockMode::parse(m.as_str())),
            retain_until: out
                .object_lock_retain_until_date()
                .and_then(|d| OffsetDateTime::from_unix_timestamp(d.secs()).ok()),
            sse: out.server_side_encryption().map(|s| s.as_str().to_owned()),
            kms_key_id: out.ssekms_key_id().map(str::to_owned),
        };
        Ok(Some((facts, out.checksum_sha256().map(str::to_owned))))
    }

    /// Reads the current version of `key`.
    ///
    /// # Errors
    ///
    /// Any [`WormError`].
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, WormError> {
        self.get_version(key, None).await
    }

    /// Reads one version of `key`.
    ///
    /// # Errors
    ///
    /// Any [`WormError`].
    pub async fn get_version(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Vec<u8>, WormError> {
        let out = self
            .call("GetObject", || {
                self.client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .set_version_id(version_id.map(str::to_owned))
                    .send()
            })
            .await
            .map_err(|f| self.error("GetObject", key, f))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| WormError::Unavailable {
                op: "GetObject",
                attempts: 1,
                message: format!("reading the body failed: {e}"),
            })?;
        Ok(body.into_bytes().to_vec())
    }

    /// Reads at most `limit` bytes of an object version: a ranged GET of the
    /// first `limit + 1` bytes, read as a stream and stopped there even if
    /// the store ignores the range. `Ok(None)` means the object is larger
    /// than `limit` (its bytes were not kept).
    ///
    /// # Errors
    ///
    /// Any [`WormError`].
    pub async fn get_version_bounded(
        &self,
        key: &str,
        version_id: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, WormError> {
        let range = format!("bytes=0-{limit}");
        let mut out = self
            .call("GetObject", || {
                self.client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .set_version_id(version_id.map(str::to_owned))
                    .range(&range)
                    .send()
            })
            .await
            .map_err(|f| self.error("GetObject", key, f))?;
        let mut bytes = Vec::new();
        while let Some(chunk) = out
            .body
            .try_next()
            .await
            .map_err(|e| WormError::Unavailable {
                op: "GetObject",
                attempts: 1,
                message: format!("reading the body failed: {e}"),
            })?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > limit {
                return Ok(None);
            }
        }
        Ok(Some(bytes))
    }

    /// Keys under `prefix`, in key order (all pages).
    ///
    /// # Errors
    ///
    /// Any [`WormError`].
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, WormError> {
        self.list_after(prefix, None).await
    }

    /// Keys under `prefix` that sort after `start_after` (all of them if
    /// `None`), in key order (all pages): the store skips the earlier ones
    /// (ListObjectsV2 `StartAfter`), so a caller that remembers the last key
    /// it saw lists only what came since.
    ///
    /// # Errors
    ///
    /// Any [`WormError`].
    pub async fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<String>, WormError> {
        let mut keys: Vec<String> = self
            .list_objects_all(prefix, start_after)
            .await
            .map_err(|f| self.error("ListObjectsV2", prefix, f))?
            .into_iter()
            .map(|o| o.key)
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Writes `bytes` at `key` create-only with `retention`, then verifies it.
    /// An existing object with identical bytes counts as success (a retried write).
    ///
    /// # Errors
    ///
    /// [`WormError::Conflict`] if different bytes are there; [`WormError::Verification`]
    /// if the store does not hold what was sent; other [`WormError`]s.
    pub async fn put_locked(
        &self,
        key: &str,
        bytes: &[u8],
        retention: Retention,
    ) -> Result<StoredObject, WormError> {
        self.put_locked_with_metadata(key, bytes, retention, &[])
            .await
    }

    /// [`put_locked`](Self::put_locked) with extra user metadata (`x-amz-meta-*`)
    /// beside `sha256`, which is always set by stele and cannot be overridden.
    ///
    /// # Errors
    ///
    /// As [`put_locked`](Self::put_locked).
    pub async fn put_locked_with_metadata(
        &self,
        key: &str,
        bytes: &[u8],
        retention: Retention,
        metadata: &[(String, String)],
    ) -> Result<StoredObject, WormError> {
        // Before any request: a retain-until the store cannot hold is never sent.
        retention.check(OffsetDateTime::now_utc())?;
        let sha = sha256_hex(bytes);
        self.check_object_lock().await?;
        if let Some(existing) = self.head(key, None).await? {
            return self
                .accept_existing(key, bytes, &sha, existing, retention)
                .await;
        }

        let md5 = BASE64_STANDARD.encode(md5::Md5::digest(bytes));
        let sha_b64 = BASE64_STANDARD.encode(sha2::Sha256::digest(bytes));
        let until = DateTime::from_secs(retention.retain_until.unix_timestamp());
        let mode = match retention.mode {
            LockMode::Compliance => ObjectLockMode::Compliance,
            LockMode::Governance => ObjectLockMode::Governance,
        };
        let result = self
            .call("PutObject", || {
                let mut req = self
                    .client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .body(ByteStream::from(bytes.to_vec()))
                    .content_length(i64::try_from(bytes.len()).unwrap_or(i64::MAX))
                    .content_md5(&md5)
                    .checksum_sha256(&sha_b64)
                    .set_metadata(Some(user_metadata(&sha, metadata)))
                    .object_lock_mode(mode.clone())
                    .object_lock_retain_until_date(until)
                    .if_none_match("*");
                if let Some(kms) = &self.kms_key_id {
                    req = req
                        .server_side_encryption(ServerSideEncryption::AwsKms)
                        .ssekms_key_id(kms);
                }
                req.send()
            })
            .await;
        let version_id = match result {
            Ok(out) => out.version_id().map(str::to_owned),
            // Someone else created it between our HEAD and PUT: accept only identical bytes.
            Err(f) if f.error.status == Some(412) || f.error.code == "PreconditionFailed" => {
                let existing =
                    self.head(key, None)
                        .await?
                        .ok_or_else(|| WormError::Verification {
                            key: key.to_owned(),
                            what: "the store reported the key exists, but it cannot be read".into(),
                        })?;
                return self
                    .accept_existing(key, bytes, &sha, existing, retention)
                    .await;
            }
            Err(f) => return Err(self.write_error("PutObject", key, f)),
        };
        // A store that ignores If-None-Match (Ceph RGW on versioned buckets)
        // lets a concurrent writer store a version too: the first version holds the key.
        if let Some((first, _)) = self
            .first_version_holder(key, version_id.as_deref(), bytes.len() as u64, &sha)
            .await?
        {
            return self
                .accept_existing(key, bytes, &sha, first, retention)
                .await;
        }
        let facts = self
            .head(key, version_id.as_deref())
            .await?
            .ok_or_else(|| WormError::Verification {
                key: key.to_owned(),
                what: "the object is not there after the upload".into(),
            })?;
        self.verify(key, bytes, &sha, facts, retention, false).await
    }

    async fn accept_existing(
        &self,
        key: &str,
        bytes: &[u8],
        sha: &str,
        existing: ObjectFacts,
        retention: Retention,
    ) -> Result<StoredObject, WormError> {
        let existing_sha = existing
            .checksum_sha256
            .clone()
            .or_else(|| existing.metadata_sha256.clone());
        if existing.size != bytes.len() as u64 || existing_sha.as_deref().is_some_and(|s| s != sha)
        {
            return Err(WormError::Conflict {
                key: key.to_owned(),
                existing: existing_sha.unwrap_or_else(|| "unknown".into()),
                version_id: existing.version_id.clone(),
            });
        }
        // The same bytes (by the store's own hash): a retried upload. If it
        // asks for a later retain-until than the first attempt got, it gets
        // it. Never on a hash not yet seen to match: a lock cannot be undone.
        let existing = if existing_sha.is_some() {
            self.extend_lock_to(key, existing, retention).await?
        } else {
            existing
        };
        self.verify(key, bytes, sha, existing, retention, true)
            .await
    }

    /// Checks the lock mode, retain-until and (when configured) SSE-KMS of a
    /// stored version. `exact`: the version was just written with this lock,
    /// so the store must report exactly it; otherwise at least it (a lock
    /// may have been extended since).
    pub(crate) fn check_lock_and_encryption(
        &self,
        key: &str,
        facts: &ObjectFacts,
        retention: Retention,
        exact: bool,
    ) -> Result<(), WormError> {
        let fail = |what: String| WormError::Verification {
            key: key.to_owned(),
            what,
        };
        crate::lock::check_lock_is(key, facts, retention, exact)?;
        if let Some(kms) = &self.kms_key_id {
            if facts.sse.as_deref() != Some("aws:kms") {
                return Err(fail(format!(
                    "server-side encryption is {}, expected aws:kms",
                    facts.sse.as_deref().unwrap_or("none")
                )));
            }
            // AWS reports the key ARN; accept the configured id, ARN or a suffix match.
            let matches = facts.kms_key_id.as_deref().is_none_or(|got| {
                got == kms || got.ends_with(&format!("/{kms}")) || kms.starts_with("alias/")
            });
            if !matches {
                return Err(fail(format!(
                    "SSE-KMS key is {}, expected {kms}",
                    facts.kms_key_id.as_deref().unwrap_or("none")
                )));
            }
        }
        Ok(())
    }

    /// Checks what the store holds against what was sent.
    async fn verify(
        &self,
        key: &str,
        bytes: &[u8],
        sha: &str,
        facts: ObjectFacts,
        retention: Retention,
        already_present: bool,
    ) -> Result<StoredObject, WormError> {
        let fail = |what: String| WormError::Verification {
            key: key.to_owned(),
            what,
        };
        if facts.size != bytes.len() as u64 {
            return Err(fail(format!(
                "size is {} bytes, {} were sent",
                facts.size,
                bytes.len()
            )));
        }
        if let Some(meta) = &facts.metadata_sha256
            && meta != sha
        {
            return Err(fail(format!("sha256 metadata is {meta}, expected {sha}")));
        }
        let verified_by = match &facts.checksum_sha256 {
            Some(api) if api == sha => "checksum-api",
            Some(api) => {
                return Err(fail(format!(
                    "the store's SHA-256 checksum is {api}, expected {sha}"
                )));
            }
            None => {
                // Stores without flexible checksums (e.g. Ceph RGW): compare the bytes themselves.
                let stored = self.get_version(key, facts.version_id.as_deref()).await?;
                let stored_sha = sha256_hex(&stored);
                if stored_sha != sha {
                    return Err(fail(format!(
                        "the stored bytes hash to {stored_sha}, expected {sha}"
                    )));
                }
                "bytes"
            }
        };
        // A version this call just wrote carries exactly the lock it was sent with.
        self.check_lock_and_encryption(key, &facts, retention, !already_present)?;
        Ok(StoredObject {
            key: key.to_owned(),
            version_id: facts.version_id,
            size: facts.size,
            sha256: sha.to_owned(),
            verified_by,
            lock_mode: facts.lock_mode,
            retain_until: facts.retain_until,
            kms_key_id: facts.kms_key_id,
            already_present,
            worm: true,
        })
    }
}

/// User metadata for a locked object: the caller's entries, then `sha256` (always stele's).
pub(crate) fn user_metadata(
    sha256: &str,
    extra: &[(String, String)],
) -> std::collections::HashMap<String, String> {
    let mut map: std::collections::HashMap<String, String> = extra
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("sha256"))
        .cloned()
        .collect();
    map.insert("sha256".into(), sha256.to_owned());
    map
}

/// [`crate::retry::call_with_retry`], keeping only the classified failure.
pub(crate) async fn call_with_retry<T, E, F, Fut>(
    policy: RetryPolicy,
    op: &'static str,
    f: F,
) -> Result<T, Failed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    crate::retry::call_with_retry(policy, op, f)
        .await
        .map_err(|failure| Failed {
            error: failure.error,
            attempts: failure.attempts,
        })
}
