//! The paging helpers against Ceph RGW, with a page size small enough that
//! every listing takes several pages: objects (ListObjectsV2) and object
//! versions (ListObjectVersions), and the per-key summary built on them.

use aws_sdk_s3::primitives::ByteStream;
use stele_worm::S3Worm;
use stele_worm::testkit::{create_bucket, rgw, unique_bucket};

const PAGE: i32 = 2;

async fn put(store: &S3Worm, key: &str, body: &'static [u8]) -> String {
    let out = store
        .client()
        .put_object()
        .bucket(store.bucket())
        .key(key)
        .body(ByteStream::from_static(body))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    out.version_id().expect("a versioned bucket").to_owned()
}

#[tokio::test]
async fn rgw_listings_page_through_every_object_and_version() {
    stele_worm::live_or_skip!(Rgw);
    let store = create_bucket(rgw(&unique_bucket("worm-pages")), true)
        .await
        .with_list_page_size(Some(PAGE));
    // Five keys under the prefix; p/a1 has three versions, p/a2 is deleted
    // (its version stays, under a delete marker); one key outside the prefix.
    put(&store, "p/a0", b"zero").await;
    put(&store, "p/a1", b"one, first").await;
    put(&store, "p/a1", b"one, second").await;
    let a1_newest = put(&store, "p/a1", b"one, third").await;
    let a2 = put(&store, "p/a2", b"two").await;
    put(&store, "p/a3", b"three").await;
    put(&store, "p/a4", b"four").await;
    put(&store, "q/outside", b"not listed").await;
    store
        .client()
        .delete_object()
        .bucket(store.bucket())
        .key("p/a2")
        .send()
        .await
        .expect("delete marker");

    // The store honours the page size: one page does not hold everything,
    // so the helpers below must page to see it all.
    let first = store
        .client()
        .list_object_versions()
        .bucket(store.bucket())
        .prefix("p/")
        .max_keys(PAGE)
        .send()
        .await
        .expect("one page");
    assert_eq!(first.is_truncated(), Some(true), "{first:?}");

    // Objects: every current key, in order, over three pages.
    let keys = store.list("p/").await.expect("list");
    assert_eq!(keys, ["p/a0", "p/a1", "p/a3", "p/a4"]);
    let detailed = store.list_detailed("p/").await.expect("list_detailed");
    assert_eq!(detailed.len(), 4);
    assert_eq!(detailed[1].size, b"one, third".len() as u64);
    // Only what sorts after a known key, still over pages: the store skips the rest.
    assert_eq!(
        store
            .list_after("p/", Some("p/a0"))
            .await
            .expect("list_after"),
        ["p/a1", "p/a3", "p/a4"]
    );
    assert_eq!(
        store
            .list_after("p/", Some("p/a1"))
            .await
            .expect("list_after"),
        ["p/a3", "p/a4"]
    );
    assert!(
        store
            .list_after("p/", Some("p/a4"))
            .await
            .expect("list_after")
            .is_empty()
    );

    // Versions: 7 content versions and 1 delete marker, over several pages.
    let versions = store.list_versions("p/").await.expect("list_versions");
    assert_eq!(versions.iter().filter(|v| !v.delete_marker).count(), 7);
    assert_eq!(versions.iter().filter(|v| v.delete_marker).count(), 1);
    assert!(versions.iter().all(|v| v.key.starts_with("p/")));

    // Per key: newest version, other versions, delete markers.
    let by_key = store.versions_by_key("p/").await.expect("versions_by_key");
    assert_eq!(by_key.versions_unlisted, None);
    assert_eq!(
        by_key.keys.keys().collect::<Vec<_>>(),
        ["p/a0", "p/a1", "p/a2", "p/a3", "p/a4"]
    );
    let a1 = &by_key.keys["p/a1"];
    let newest = a1.newest.as_ref().expect("p/a1 has content");
    assert_eq!(newest.version_id.as_deref(), Some(a1_newest.as_str()));
    assert_eq!(newest.size, Some(b"one, third".len() as u64));
    assert_eq!((a1.other_versions, a1.delete_markers), (2, 0));
    let deleted = &by_key.keys["p/a2"];
    assert_eq!(
        deleted
            .newest
            .as_ref()
            .and_then(|v| v.version_id.as_deref()),
        Some(a2.as_str())
    );
    assert_eq!((deleted.other_versions, deleted.delete_markers), (0, 1));
    for key in ["p/a0", "p/a3", "p/a4"] {
        let k = &by_key.keys[key];
        assert!(k.newest.is_some(), "{key}");
        assert_eq!((k.other_versions, k.delete_markers), (0, 0), "{key}");
    }

    // One key's versions, newest first, with the page size still at 2.
    let a1_versions = store.versions("p/a1").await.expect("versions");
    assert_eq!(a1_versions.len(), 3);
    assert_eq!(
        a1_versions[0].version_id.as_deref(),
        Some(a1_newest.as_str())
    );
}
