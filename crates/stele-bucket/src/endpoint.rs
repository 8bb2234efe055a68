//! What an endpoint supports, decided without calling anything dangerous.
//! All endpoint detection lives in this module.
//!
//! S3-compatible stores implement different subsets of S3, and some answer
//! an API they lack as if its sub-resource were not in the URL. Measured on
//! Ceph RGW 16.2.15 (`shared/ref/s3-servers.md`): GET `?encryption` and GET
//! `?ownershipControls` are served as ListObjects (200 with a
//! `ListBucketResult`), PUT `?encryption` is refused — and **DELETE
//! `?encryption` deletes the bucket**. So:
//!
//! 1. Support is decided from GETs only. stele never sends
//!    DeleteBucketEncryption (or any DELETE of a bucket sub-resource) to any
//!    endpoint, and sends a PUT of such a configuration only after its GET
//!    proved the API is there.
//! 2. A 2xx answer whose body is not the document the API defines — a
//!    `ListBucketResult`, anything else the SDK cannot read as that
//!    document, or no document at all — means "not implemented by this
//!    endpoint". AWS answers a bucket without the configuration with a 404
//!    error code, never with an empty 200.
//! 3. Known dialects are read as what they are: Ceph RGW 16 answers
//!    GetPublicAccessBlock with the four flags under a root element named
//!    `BlockPublicAccessBlockConfiguration` (AWS: `PublicAccessBlockConfiguration`),
//!    which the SDK refuses; `read_public_access_block` reads the flags
//!    from the body itself.
//! 4. What cannot be read at all is inferred from the profile: an endpoint
//!    that serves both GETs as listings behaves like Ceph RGW 16, where
//!    (measured) `BlockPublicAcls=true` makes every PutObject fail and bucket
//!    policies do not evaluate `aws:PrincipalArn`. `init` confirms the first
//!    with a test upload wherever that upload can be removed again
//!    (`probe_upload`); `check`, being read-only, relies on the profile.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use md5::Digest as _;

use crate::BucketError;
use crate::live::{DefaultEncryption, Observed, PublicAccessBlock};
use crate::s3call::{IntoBucketError as _, call, classify};

/// Whether an endpoint implements one API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Support {
    /// It answered with the API's own document or error codes.
    Implemented,
    /// It answered with something else; the reason says what.
    NotImplemented(String),
    /// The read failed (e.g. access denied), so nothing is known.
    Unknown(String),
}

/// What an endpoint was found to support.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointProfile {
    /// Bucket default encryption (GetBucketEncryption).
    pub bucket_encryption: Support,
    /// Object ownership controls (GetBucketOwnershipControls).
    pub ownership_controls: Support,
}

impl EndpointProfile {
    /// An endpoint that implements everything (AWS S3), for tests and defaults.
    pub fn aws_like() -> Self {
        Self {
            bucket_encryption: Support::Implemented,
            ownership_controls: Support::Implemented,
        }
    }

    /// Both GETs were answered as listings: the Ceph RGW 16 signature.
    pub fn rgw_like(&self) -> bool {
        matches!(self.bucket_encryption, Support::NotImplemented(_))
            && matches!(self.ownership_controls, Support::NotImplemented(_))
    }

    /// Whether `BlockPublicAcls=true` is expected to break every upload here
    /// (measured on Ceph RGW 16.2.15; confirmed by `init`'s probe where it can run one).
    pub fn block_public_acls_breaks_uploads(&self) -> bool {
        self.rgw_like()
    }

    /// Whether bucket policies here evaluate `aws:PrincipalArn` (Ceph RGW
    /// 16.2.15 does not: a Deny on it never matches).
    pub fn evaluates_principal_arn(&self) -> bool {
        !self.rgw_like()
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        if self.rgw_like() {
            return "Ceph RGW-like: GET ?encryption and GET ?ownershipControls are answered as ListObjects, so there is no bucket default encryption and no ownership controls; BlockPublicAcls breaks uploads and aws:PrincipalArn is not evaluated on such stores".into();
        }
        let part = |name: &str, s: &Support| match s {
            Support::Implemented => format!("{name}: implemented"),
            Support::NotImplemented(why) => format!("{name}: not implemented ({why})"),
            Support::Unknown(why) => format!("{name}: unknown ({why})"),
        };
        format!(
            "AWS-like; {}; {}",
            part("bucket encryption", &self.bucket_encryption),
            part("ownership controls", &self.ownership_controls)
        )
    }

    /// The profile implied by the two detecting reads.
    pub fn from_reads<A, B>(encryption: &Observed<A>, ownership: &Observed<B>) -> Self {
        let support = |o: &Observed<_>| match o {
            Observed::Found(_) => Support::Implemented,
            Observed::Unsupported(why) => Support::NotImplemented(why.clone()),
            Observed::Unreadable(why) => Support::Unknown(why.clone()),
        };
        Self {
            bucket_encryption: support(&map_unit(encryption)),
            ownership_controls: support(&map_unit(ownership)),
        }
    }
}

fn map_unit<T>(o: &Observed<T>) -> Observed<()> {
    match o {
        Observed::Found(_) => Observed::Found(()),
        Observed::Unsupported(s) => Observed::Unsupported(s.clone()),
        Observed::Unreadable(s) => Observed::Unreadable(s.clone()),
    }
}

/// If a failed call was really a 2xx answer with some other document, says
/// what was answered instead: the "not implemented" signal of rule 2.
fn answered_with_something_else<E>(
    err: &SdkError<E, HttpResponse>,
    request: &str,
    document: &str,
) -> Option<String> {
    let raw = err.raw_response()?;
    if !raw.status().is_success() {
        return None;
    }
    let body = raw
        .body()
        .bytes()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    Some(if body.contains("<ListBucketResult") {
        format!("{request} was answered with a ListObjects result")
    } else {
        format!(
            "{request} was answered with HTTP {} and a body that is not {document}",
            raw.status().as_u16()
        )
    })
}

/// Reads the default encryption, deciding on the way whether the endpoint
/// has the API at all. `Found(None)`: implemented, nothing configured.
pub(crate) async fn read_encryption(
    client: &Client,
    bucket: &str,
) -> Result<Observed<Option<Vec<DefaultEncryption>>>, BucketError> {
    let result = call("GetBucketEncryption", || {
        client.get_bucket_encryption().bucket(bucket).send()
    })
    .await;
    match result {
        Ok(out) => Ok(match out.server_side_encryption_configuration() {
            None => Observed::Unsupported(
                "GET ?encryption was answered without a ServerSideEncryptionConfiguration document"
                    .into(),
            ),
            Some(cfg) => Observed::Found(Some(
                cfg.rules()
                    .iter()
                    .map(|r| {
                        let default = r.apply_server_side_encryption_by_default();
                        DefaultEncryption {
                            algorithm: default
                                .map(|d| d.sse_algorithm().as_str().to_owned())
                                .unwrap_or_default(),
                            kms_key: default
                                .and_then(|d| d.kms_master_key_id())
                                .filter(|k| !k.is_empty())
                                .map(str::to_owned),
                            bucket_key: r.bucket_key_enabled(),
                        }
                    })
                    .collect(),
            )),
        }),
        Err(e) => {
            if let Some(why) = answered_with_something_else(
                &e,
                "GET ?encryption",
                "a ServerSideEncryptionConfiguration document",
            ) {
                return Ok(Observed::Unsupported(why));
            }
            let c = classify(&e);
            if c.is(&["ServerSideEncryptionConfigurationNotFoundError"]) {
                Ok(Observed::Found(None))
            } else {
                failed_read(&e, "GetBucketEncryption", "s3:GetEncryptionConfiguration")
            }
        }
    }
}

/// Reads the object ownership setting, deciding on the way whether the
/// endpoint has the API. `Found(None)`: implemented, nothing set.
pub(crate) async fn read_ownership(
    client: &Client,
    bucket: &str,
) -> Result<Observed<Option<String>>, BucketError> {
    let result = call("GetBucketOwnershipControls", || {
        client.get_bucket_ownership_controls().bucket(bucket).send()
    })
    .await;
    match result {
        Ok(out) => Ok(match out.ownership_controls() {
            None => Observed::Unsupported(
                "GET ?ownershipControls was answered without an OwnershipControls document".into(),
            ),
            Some(c) => Observed::Found(
                c.rules()
                    .first()
                    .map(|r| r.object_ownership().as_str().to_owned()),
            ),
        }),
        Err(e) => {
            if let Some(why) = answered_with_something_else(
                &e,
                "GET ?ownershipControls",
                "an OwnershipControls document",
            ) {
                return Ok(Observed::Unsupported(why));
            }
            let c = classify(&e);
            if c.is(&["OwnershipControlsNotFoundError"]) {
                Ok(Observed::Found(None))
            } else {
                failed_read(
                    &e,
                    "GetBucketOwnershipControls",
                    "s3:GetBucketOwnershipControls",
                )
            }
        }
    }
}

/// Reads the public access block; `Found(None)`: none configured.
pub(crate) async fn read_public_access_block(
    client: &Client,
    bucket: &str,
) -> Result<Observed<Option<PublicAccessBlock>>, BucketError> {
    let op = "GetPublicAccessBlock";
    match call(op, || {
        client.get_public_access_block().bucket(bucket).send()
    })
    .await
    {
        Ok(out) => Ok(Observed::Found(
            out.public_access_block_configuration()
                .map(|c| PublicAccessBlock {
                    block_public_acls: c.block_public_acls() == Some(true),
                    ignore_public_acls: c.ignore_public_acls() == Some(true),
                    block_public_policy: c.block_public_policy() == Some(true),
                    restrict_public_buckets: c.restrict_public_buckets() == Some(true),
                }),
        )),
        Err(e) => {
            // Rule 3: RGW's differently named root element.
            let rgw_dialect = e
                .raw_response()
                .filter(|raw| raw.status().is_success())
                .and_then(|raw| raw.body().bytes())
                .and_then(|body| parse_public_access_block(&String::from_utf8_lossy(body)));
            if let Some(flags) = rgw_dialect {
                return Ok(Observed::Found(Some(flags)));
            }
            let c = classify(&e);
            if c.is(&["NoSuchPublicAccessBlockConfiguration"]) {
                Ok(Observed::Found(None))
            } else {
                failed_read(&e, op, "s3:GetBucketPublicAccessBlock")
            }
        }
    }
}

/// The four flags from a public-access-block document whatever its root is
/// called; `None` unless it is one and all four flags are there.
fn parse_public_access_block(body: &str) -> Option<PublicAccessBlock> {
    if !body.contains("PublicAccessBlockConfiguration>") {
        return None;
    }
    let flag = |name: &str| -> Option<bool> {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let len = body[start..].find('<')?;
        Some(body[start..start + len].trim().eq_ignore_ascii_case("true"))
    };
    Some(PublicAccessBlock {
        block_public_acls: flag("BlockPublicAcls")?,
        ignore_public_acls: flag("IgnorePublicAcls")?,
        block_public_policy: flag("BlockPublicPolicy")?,
        restrict_public_buckets: flag("RestrictPublicBuckets")?,
    })
}

/// A failed read: outages end the run; a 2xx answer that is not the API's
/// document means the endpoint lacks the API (rule 2, for every read);
/// anything else is reported against the control.
pub(crate) fn failed_read<T, E>(
    err: &SdkError<E, HttpResponse>,
    op: &'static str,
    permission: &str,
) -> Result<Observed<T>, BucketError>
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    if let Some(why) = answered_with_something_else(err, op, "the API's document") {
        return Ok(Observed::Unsupported(why));
    }
    let c = classify(err);
    if c.transient {
        return Err(c.into_error(op));
    }
    if c.code == "NotImplemented" {
        return Ok(Observed::Unsupported(format!(
            "{op} was answered NotImplemented"
        )));
    }
    let message = if c.is_access_denied() {
        format!(
            "{op} was denied ({}): the checking identity needs {permission}",
            c.code
        )
    } else {
        format!("{op} failed: {}: {}", c.code, c.message)
    };
    Ok(Observed::Unreadable(message))
}

/// What a test upload found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The upload was accepted (and its version deleted again, or the note says why not).
    Accepted {
        /// Set when the probe version could not be removed.
        leftover: Option<String>,
    },
    /// The upload was refused with this code.
    Refused(String),
}

/// Key prefix of test uploads.
pub const PROBE_PREFIX: &str = "stele-init-probe/";

/// Uploads a small test object and deletes that exact version again.
///
/// Only call this on a bucket without default retention and without a
/// bucket policy (so the version is not locked and may be deleted):
/// `init` runs it on a bucket it has just created, before anything else is
/// configured. The upload carries no lock and no SSE headers; the delete
/// names the version id, so no delete marker is left behind.
pub(crate) async fn probe_upload(
    client: &Client,
    bucket: &str,
) -> Result<ProbeOutcome, BucketError> {
    let body = b"stele bucket init: test upload, deleted right after\n".to_vec();
    let md5 = BASE64_STANDARD.encode(md5::Md5::digest(&body));
    let key = format!("{PROBE_PREFIX}{:016x}", rand::random::<u64>());
    let put = call("PutObject", || {
        client
            .put_object()
            .bucket(bucket)
            .key(&key)
            .content_md5(&md5)
            .body(ByteStream::from(body.clone()))
            .send()
    })
    .await;
    let version = match put {
        Ok(out) => out.version_id().map(str::to_owned),
        Err(e) => {
            let c = classify(&e);
            if c.transient {
                return Err(c.into_error("PutObject"));
            }
            return Ok(ProbeOutcome::Refused(c.code));
        }
    };
    let delete = call("DeleteObject", || {
        client
            .delete_object()
            .bucket(bucket)
            .key(&key)
            .set_version_id(version.clone())
            .send()
    })
    .await;
    let leftover = match (delete, &version) {
        (Ok(_), Some(_)) => None,
        (Ok(_), None) => Some(format!(
            "the store returned no version id for the test object {key}; it was deleted without one"
        )),
        (Err(e), _) => {
            let c = classify(&e);
            Some(format!(
                "could not delete the test object {key} ({}: {}); remove it by hand",
                c.code, c.message
            ))
        }
    };
    Ok(ProbeOutcome::Accepted { leftover })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_public_access_block_in_rgw_dialect() {
        let rgw = r#"<?xml version="1.0" encoding="UTF-8"?><BlockPublicAccessBlockConfiguration><BlockPublicAcls>false</BlockPublicAcls><IgnorePublicAcls>true</IgnorePublicAcls><BlockPublicPolicy>true</BlockPublicPolicy><RestrictPublicBuckets>true</RestrictPublicBuckets></BlockPublicAccessBlockConfiguration>"#;
        assert_eq!(
            parse_public_access_block(rgw),
            Some(PublicAccessBlock::ALL_BUT_BLOCK_PUBLIC_ACLS)
        );
        let listing = r#"<ListBucketResult><Name>b</Name></ListBucketResult>"#;
        assert_eq!(parse_public_access_block(listing), None);
        let partial = r#"<PublicAccessBlockConfiguration><BlockPublicAcls>true</BlockPublicAcls></PublicAccessBlockConfiguration>"#;
        assert_eq!(parse_public_access_block(partial), None);
    }

    #[test]
    fn both_listings_make_an_rgw_like_profile() {
        let listing: Observed<()> = Observed::Unsupported("listing".into());
        let found: Observed<()> = Observed::Found(());
        let rgw = EndpointProfile::from_reads(&listing, &listing);
        assert!(rgw.rgw_like());
        assert!(rgw.block_public_acls_breaks_uploads());
        assert!(!rgw.evaluates_principal_arn());
        assert!(rgw.describe().starts_with("Ceph RGW-like"));

        let aws = EndpointProfile::from_reads(&found, &found);
        assert_eq!(aws, EndpointProfile::aws_like());
        assert!(!aws.block_public_acls_breaks_uploads());

        // One missing API alone is not the RGW signature.
        let partial = EndpointProfile::from_reads(&found, &listing);
        assert!(!partial.rgw_like());
        assert!(
            partial
                .describe()
                .contains("ownership controls: not implemented")
        );
        let denied: Observed<()> = Observed::Unreadable("denied".into());
        assert!(!EndpointProfile::from_reads(&denied, &listing).rgw_like());
    }
}
