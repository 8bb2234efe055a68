//! Paging through S3 listings: one helper per listing kind (objects,
//! object versions), used by every caller in the workspace, each page
//! fetched through the one retry path. A store that says a listing is
//! truncated but gives no marker to continue from, or the same marker
//! again, is an error: stopping there would silently drop the rest, and
//! starting over would never end.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::WormError;
use crate::lock::{ListedObject, to_time};
use crate::retry::CallError;
use crate::s3::{Failed, S3Worm};

/// One version or delete marker in a version listing, as the store lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedVersion {
    /// Key.
    pub key: String,
    /// Version id.
    pub version_id: Option<String>,
    /// Whether the store calls it the current version.
    pub is_latest: bool,
    /// A delete marker rather than content.
    pub delete_marker: bool,
    /// Size as listed (`None` for delete markers, or when the store gives none or a negative one).
    pub size: Option<u64>,
    /// Last modified.
    pub last_modified: Option<OffsetDateTime>,
}

/// What a version listing says about one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyVersions {
    /// The newest content version (the first the store lists for the key);
    /// `None` when only delete markers remain, or when versions could not be listed.
    pub newest: Option<ListedVersion>,
    /// Content versions other than the newest.
    pub other_versions: usize,
    /// Delete markers.
    pub delete_markers: usize,
}

/// Every key under a prefix with its versions, or — when the store would
/// not list versions — every current key and the reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionsByKey {
    /// Per key, in key order.
    pub keys: BTreeMap<String, KeyVersions>,
    /// `Some(reason)` when ListObjectVersions failed and `keys` come from
    /// ListObjectsV2 (no versions, no delete markers, no sizes): the caller
    /// must report versions as not checked.
    pub versions_unlisted: Option<String>,
}

/// A listing the store cut short without a usable marker.
fn broken_paging(op: &str, what: &str) -> Failed {
    Failed {
        error: CallError {
            transient: false,
            code: "BrokenPagination".into(),
            status: None,
            message: format!(
                "{op} said the listing is truncated but {what}; the listing cannot be completed"
            ),
        },
        attempts: 1,
    }
}

impl S3Worm {
    /// Every object under `prefix` as the store lists it (all pages), only
    /// keys after `start_after` if given (ListObjectsV2 `StartAfter`).
    pub(crate) async fn list_objects_all(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<ListedObject>, Failed> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .call("ListObjectsV2", || {
                    self.client
                        .list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(prefix)
                        .set_start_after(start_after.map(str::to_owned))
                        .set_max_keys(self.list_page_size)
                        .set_continuation_token(token.clone())
                        .send()
                })
                .await?;
            found.extend(out.contents().iter().filter_map(|o| {
                Some(ListedObject {
                    key: o.key()?.to_owned(),
                    size: u64::try_from(o.size().unwrap_or(0)).unwrap_or(0),
                    last_modified: o.last_modified().and_then(to_time),
                })
            }));
            if out.is_truncated() != Some(true) {
                return Ok(found);
            }
            match out.next_continuation_token() {
                None | Some("") => {
                    return Err(broken_paging("ListObjectsV2", "gave no continuation token"));
                }
                Some(t) if token.as_deref() == Some(t) => {
                    return Err(broken_paging(
                        "ListObjectsV2",
                        "gave the same continuation token again",
                    ));
                }
                Some(t) => token = Some(t.to_owned()),
            }
        }
    }

    /// Every version and delete marker under `prefix` (all pages): per page,
    /// content versions in the store's order (newest first for each key),
    /// then delete markers.
    pub(crate) async fn list_versions_all(
        &self,
        prefix: &str,
    ) -> Result<Vec<ListedVersion>, Failed> {
        let mut found = Vec::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let out = self
                .call("ListObjectVersions", || {
                    self.client
                        .list_object_versions()
                        .bucket(&self.bucket)
                        .prefix(prefix)
                        .set_max_keys(self.list_page_size)
                        .set_key_marker(markers.0.clone())
                        .set_version_id_marker(markers.1.clone())
                        .send()
                })
                .await?;
            found.extend(out.versions().iter().filter_map(|v| {
                Some(ListedVersion {
                    key: v.key()?.to_owned(),
                    version_id: v.version_id().map(str::to_owned),
                    is_latest: v.is_latest() == Some(true),
                    delete_marker: false,
                    size: v.size().and_then(|n| u64::try_from(n).ok()),
                    last_modified: v.last_modified().and_then(to_time),
                })
            }));
            found.extend(out.delete_markers().iter().filter_map(|m| {
                Some(ListedVersion {
                    key: m.key()?.to_owned(),
                    version_id: m.version_id().map(str::to_owned),
                    is_latest: m.is_latest() == Some(true),
                    delete_marker: true,
                    size: None,
                    last_modified: m.last_modified().and_then(to_time),
                })
            }));
            if out.is_truncated() != Some(true) {
                return Ok(found);
            }
            let next = (
                out.next_key_marker().map(str::to_owned),
                out.next_version_id_marker().map(str::to_owned),
            );
            if next.0.as_deref().is_none_or(str::is_empty) {
                return Err(broken_paging("ListObjectVersions", "gave no key marker"));
            }
            if next == markers {
                return Err(broken_paging(
                    "ListObjectVersions",
                    "gave the same markers again",
                ));
            }
            markers = next;
        }
    }

    /// Every version and delete marker under `prefix`, in the store's order
    /// (all pages: per page, content versions newest first for each key, then delete markers).
    ///
    /// # Errors
    ///
    /// Any [`WormError`].
    pub async fn list_versions(&self, prefix: &str) -> Result<Vec<ListedVersion>, WormError> {
        self.list_versions_all(prefix)
            .await
            .map_err(|f| self.error("ListObjectVersions", prefix, f))
    }

    /// Per key under `prefix`: the newest content version, how many other
    /// versions and delete markers there are. When the store will not list
    /// versions (a role without `s3:ListBucketVersions`, or a listing that
    /// failed), the keys come from ListObjectsV2 and
    /// [`VersionsByKey::versions_unlisted`] says why.
    ///
    /// # Errors
    ///
    /// Any [`WormError`] from the ListObjectsV2 fallback.
    pub async fn versions_by_key(&self, prefix: &str) -> Result<VersionsByKey, WormError> {
        match self.list_versions_all(prefix).await {
            Ok(listed) => {
                let mut keys: BTreeMap<String, KeyVersions> = BTreeMap::new();
                for v in listed {
                    let entry = keys.entry(v.key.clone()).or_default();
                    if v.delete_marker {
                        entry.delete_markers += 1;
                    } else if entry.newest.is_none() {
                        // Versions come newest first for each key.
                        entry.newest = Some(v);
                    } else {
                        entry.other_versions += 1;
                    }
                }
                Ok(VersionsByKey {
                    keys,
                    versions_unlisted: None,
                })
            }
            Err(failed) => {
                tracing::warn!(code = %failed.error.code, message = %failed.error.message, "cannot list object versions; falling back to ListObjectsV2");
                let keys = self
                    .list_objects_all(prefix, None)
                    .await
                    .map_err(|f| self.error("ListObjectsV2", prefix, f))?
                    .into_iter()
                    .map(|o| (o.key, KeyVersions::default()))
                    .collect();
                Ok(VersionsByKey {
                    keys,
                    versions_unlisted: Some(format!(
                        "ListObjectVersions was refused: {}",
                        failed.error.code
                    )),
                })
            }
        }
    }
}
