//! `stele bucket init|check` against the real Ceph RGW (which enforces bucket
//! policies) and ministack (which has bucket encryption and ownership
//! controls).
//!
//! On RGW the writer is a second, non-owner user. The module grants its
//! writer role access through IAM; RGW has no IAM roles for another user
//! here, so these tests grant the writer user WRITE on the bucket with a
//! bucket ACL (ownership controls do not exist on RGW, so ACLs work) — the
//! closest equivalent of the module's writer grant. Everything the writer
//! is then refused is refused by the bucket policy (or Object Lock).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use stele_bucket::aws_sdk_s3;
use stele_worm::testkit::{
    create_bucket, create_ministack_kms_key, env_required, ministack, quick_retry,
    raw_multipart_upload, rgw, unique_bucket,
};
use stele_worm::{S3Config, S3Worm};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// One S3 endpoint and identity for `stele` runs.
struct Endpoint {
    url: String,
    access_key: String,
    secret_key: String,
}

impl Endpoint {
    fn rgw_owner() -> Self {
        Self {
            url: env_required("STELE_TEST_RGW_ENDPOINT"),
            access_key: env_required("STELE_TEST_RGW_ACCESS_KEY"),
            secret_key: env_required("STELE_TEST_RGW_SECRET_KEY"),
        }
    }

    fn ministack() -> Self {
        Self {
            url: env_required("STELE_TEST_MINISTACK_ENDPOINT"),
            access_key: "test".into(),
            secret_key: "test".into(),
        }
    }

    /// Runs `stele` with the standard AWS variables pointing here, as a deployment would.
    fn stele(&self, data_dir: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stele"));
        for var in [
            "STELE_DB",
            "STELE_DATA_DIR",
            "AUDIT_ANCHOR_BUCKET",
            "AUDIT_ANCHOR_KMS_KEY_ID",
            "AUDIT_ANCHOR_MIN_RETENTION_DAYS",
            "AWS_PROFILE",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_ENDPOINT_URL", &self.url)
            .env("AWS_REGION", "us-east-1")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .output()
            .unwrap()
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

fn writer_arn() -> String {
    format!(
        "arn:aws:iam:::user/{}",
        env_required("STELE_TEST_RGW_USER2_ID")
    )
}

fn rgw_init_args<'a>(bucket: &'a str, key: &'a str, writer: &'a str) -> Vec<&'a str> {
    vec![
        "--json",
        "bucket",
        "init",
        "--bucket",
        bucket,
        "--kms-key",
        key,
        "--writer-arn",
        writer,
        "--stage",
        "test",
    ]
}

fn step<'a>(init: &'a Value, name: &str) -> &'a Value {
    init["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {init}"))
}

fn result<'a>(check: &'a Value, control: &str) -> &'a Value {
    check["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["control"] == control)
        .unwrap_or_else(|| panic!("no result for {control}: {check}"))
}

fn failed_controls(check: &Value) -> Vec<String> {
    check["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "fail")
        .map(|r| r["control"].as_str().unwrap().to_owned())
        .collect()
}

/// `stele bucket check` on RGW with the expectations `init` was given.
fn rgw_check(dir: &Path, bucket: &str, extra: &[&str]) -> Output {
    let key = env_required("STELE_TEST_RGW_KMS_KEY_ID");
    let writer = writer_arn();
    let mut args = vec![
        "--json",
        "bucket",
        "check",
        "--bucket",
        bucket,
        "--kms-key",
        &key,
        "--writer-arn",
        &writer,
        "--min-days",
        "400",
    ];
    args.extend_from_slice(extra);
    Endpoint::rgw_owner().stele(dir, &args)
}

async fn client(cfg: S3Config) -> S3Worm {
    S3Worm::connect(cfg).await.unwrap()
}

/// The second RGW user, the writer.
fn rgw_writer(bucket: &str) -> S3Config {
    S3Config {
        static_credentials: Some((
            env_required("STELE_TEST_RGW_USER2_ACCESS_KEY"),
            env_required("STELE_TEST_RGW_USER2_SECRET_KEY"),
        )),
        retry: quick_retry(),
        ..rgw(bucket)
    }
}

fn error_code<E: aws_sdk_s3::error::ProvideErrorMetadata>(
    r: Result<impl std::fmt::Debug, E>,
) -> String {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(e) => e.code().unwrap_or("(no code)").to_owned(),
    }
}

#[test]
fn init_on_rgw_makes_the_store_refuse_what_the_policy_denies() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let bucket = unique_bucket("bkt-init");
    let key1 = env_required("STELE_TEST_RGW_KMS_KEY_ID");
    let key2 = env_required("STELE_TEST_RGW_KMS_KEY_ID2");
    let writer = writer_arn();
    let owner = Endpoint::rgw_owner();

    let out = owner.stele(dir.path(), &rgw_init_args(&bucket, &key1, &writer));
    assert_eq!(code(&out), 0, "{}", text(&out));
    let init = json(&out);
    assert_eq!(step(&init, "bucket")["outcome"], "done");
    // The RGW 16 bug is found and said plainly.
    let pab = step(&init, "public-access-block");
    assert_eq!(pab["outcome"], "adapted", "{pab}");
    let detail = pab["detail"].as_str().unwrap();
    assert!(
        detail.contains("BlockPublicAcls=true makes this endpoint refuse every upload")
            && detail.contains("found by a test upload"),
        "{detail}"
    );
    for skipped in ["default-encryption", "object-ownership"] {
        let s = step(&init, skipped);
        assert_eq!(s["outcome"], "skipped-unsupported", "{s}");
        assert!(s["detail"].as_str().unwrap().contains("ListObjects"), "{s}");
    }
    assert_eq!(step(&init, "default-retention")["outcome"], "done");
    assert_eq!(step(&init, "bucket-policy")["outcome"], "done");
    assert!(
        init["endpoint"]
            .as_str()
            .unwrap()
            .starts_with("Ceph RGW-like")
    );

    let owner_s3 = rt.block_on(client(rgw(&bucket)));
    // No test upload was left behind.
    let listed = rt
        .block_on(
            owner_s3
                .client()
                .list_object_versions()
                .bucket(&bucket)
                .send(),
        )
        .unwrap();
    assert!(listed.versions().is_empty() && listed.delete_markers().is_empty());

    // The writer's grant (see the module doc): WRITE on the bucket by ACL.
    rt.block_on(
        owner_s3
            .client()
            .put_bucket_acl()
            .bucket(&bucket)
            .grant_full_control(format!("id={}", env_required("STELE_TEST_RGW_USER_ID")))
            .grant_write(format!("id={}", env_required("STELE_TEST_RGW_USER2_ID")))
            .send(),
    )
    .unwrap();

    let w = rt.block_on(client(rgw_writer(&bucket)));
    let put = |key: &str| {
        w.client()
            .put_object()
            .bucket(&bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"anchor"))
    };
    use aws_sdk_s3::types::ServerSideEncryption::{Aes256, AwsKms};
    // DenyWrongEncryptionHeader.
    assert_eq!(
        error_code(rt.block_on(put("anchors/aes").server_side_encryption(Aes256).send())),
        "AccessDenied"
    );
    // DenyKmsUploadWithoutKeyId (RGW would also reject it itself; the policy answers first).
    assert_eq!(
        error_code(
            rt.block_on(
                put("anchors/kms-no-key")
                    .server_side_encryption(AwsKms)
                    .send()
            )
        ),
        "AccessDenied"
    );
    // DenyWrongKmsKey.
    assert_eq!(
        error_code(
            rt.block_on(
                put("anchors/wrong-key")
                    .server_side_encryption(AwsKms)
                    .ssekms_key_id(&key2)
                    .send()
            )
        ),
        "AccessDenied"
    );
    // The right key is allowed.
    let ok = rt
        .block_on(
            put("anchors/right-key")
                .server_side_encryption(AwsKms)
                .ssekms_key_id(&key1)
                .send(),
        )
        .unwrap();
    let version = ok.version_id().unwrap().to_owned();
    // DenyObjectDeletion: the version, and a delete marker (which Object Lock alone would allow).
    assert_eq!(
        error_code(
            rt.block_on(
                w.client()
                    .delete_object()
                    .bucket(&bucket)
                    .key("anchors/right-key")
                    .version_id(&version)
                    .send()
            )
        ),
        "AccessDenied"
    );
    assert_eq!(
        error_code(
            rt.block_on(
                w.client()
                    .delete_object()
                    .bucket(&bucket)
                    .key("anchors/right-key")
                    .send()
            )
        ),
        "AccessDenied"
    );
    // DenyBucketDeletion (the bucket is not empty either; the owner is refused before that matters).
    assert_eq!(
        error_code(rt.block_on(owner_s3.client().delete_bucket().bucket(&bucket).send())),
        "AccessDenied"
    );
    // The object is there, locked by the default retention, encrypted with the key.
    // (Read as the writer: without ownership controls, which RGW lacks, the
    // uploader owns its objects and the bucket owner cannot read them.)
    let head = rt
        .block_on(
            w.client()
                .head_object()
                .bucket(&bucket)
                .key("anchors/right-key")
                .send(),
        )
        .unwrap();
    assert_eq!(
        head.object_lock_mode().map(|m| m.as_str()),
        Some("COMPLIANCE")
    );
    assert_eq!(head.ssekms_key_id(), Some(key1.as_str()));

    // A multipart upload as the evidence vault makes it (SSE-KMS and the key
    // on CreateMultipartUpload, nothing on the parts) goes through the
    // policy and is stored under the key.
    assert_eq!(
        rt.block_on(raw_multipart_upload(
            &w,
            &bucket,
            "evidence/big.bin",
            Some(&key1)
        ))
        .map(|(_, key_id)| key_id),
        Ok(Some(key1.clone()))
    );
    // An upload without SSE headers is not refused (refusing it would refuse
    // every part too) and, RGW 16 having no bucket default encryption, is
    // stored unencrypted: check reports that under default-encryption.
    rt.block_on(put("anchors/no-sse").send()).unwrap();
    let head = rt
        .block_on(
            w.client()
                .head_object()
                .bucket(&bucket)
                .key("anchors/no-sse")
                .send(),
        )
        .unwrap();
    assert_eq!(head.server_side_encryption(), None);

    // check passes; what RGW lacks is shown as unsupported, not failed.
    let out = rgw_check(dir.path(), &bucket, &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let report = json(&out);
    assert!(failed_controls(&report).is_empty(), "{report}");
    for unsupported in [
        "default-encryption",
        "object-ownership",
        "public-access-block",
    ] {
        assert_eq!(
            result(&report, unsupported)["status"],
            "unsupported-by-endpoint"
        );
    }
    assert!(
        result(&report, "default-encryption")["message"]
            .as_str()
            .unwrap()
            .contains("stored unencrypted"),
        "{report}"
    );
    assert_eq!(result(&report, "object-lock")["status"], "pass");
    assert_eq!(result(&report, "policy.DenyWrongKmsKey")["status"], "pass");
    assert_eq!(result(&report, "policy-allows-multipart")["status"], "pass");

    // Re-running init changes nothing.
    let out = owner.stele(dir.path(), &rgw_init_args(&bucket, &key1, &writer));
    assert_eq!(code(&out), 0, "{}", text(&out));
    let again = json(&out);
    for s in again["steps"].as_array().unwrap() {
        assert_ne!(s["outcome"], "done", "re-run changed {s}");
    }

    // A bucket still carrying the v1 encryption statements: RGW refuses the
    // same multipart upload, and check says why.
    let mut v1: Value = serde_json::from_str(
        rt.block_on(owner_s3.client().get_bucket_policy().bucket(&bucket).send())
            .unwrap()
            .policy()
            .unwrap(),
    )
    .unwrap();
    let resource = format!("arn:aws:s3:::{bucket}/*");
    let statements = v1["Statement"].as_array_mut().unwrap();
    statements.retain(|s| {
        ![
            "DenyWrongEncryptionHeader",
            "DenyWrongKmsKey",
            "DenyKmsUploadWithoutKeyId",
        ]
        .contains(&s["Sid"].as_str().unwrap_or_default())
    });
    for (sid, condition) in [
        (
            "DenyWrongEncryptionHeader",
            serde_json::json!({"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}),
        ),
        (
            "DenyMissingEncryptionHeader",
            serde_json::json!({"Null": {"s3:x-amz-server-side-encryption": "true"}}),
        ),
        (
            "DenyWrongKmsKey",
            serde_json::json!({"StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": key1}}),
        ),
    ] {
        statements.push(
            serde_json::json!({"Sid": sid, "Effect": "Deny", "Principal": "*",
            "Action": "s3:PutObject", "Resource": resource, "Condition": condition}),
        );
    }
    rt.block_on(
        owner_s3
            .client()
            .put_bucket_policy()
            .bucket(&bucket)
            .policy(v1.to_string())
            .send(),
    )
    .unwrap();
    assert_eq!(
        rt.block_on(raw_multipart_upload(
            &w,
            &bucket,
            "evidence/big-2.bin",
            Some(&key1)
        )),
        Err("CreateMultipartUpload AccessDenied".to_owned())
    );
    let out = rgw_check(dir.path(), &bucket, &[]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let report = json(&out);
    assert_eq!(
        failed_controls(&report),
        [
            "policy.DenyKmsUploadWithoutKeyId",
            "policy-allows-multipart"
        ]
    );
    let msg = result(&report, "policy-allows-multipart")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.starts_with("multipart uploads will be refused: statements DenyWrongEncryptionHeader, DenyMissingEncryptionHeader, DenyWrongKmsKey match UploadPart"),
        "{msg}"
    );
}

#[test]
fn check_on_rgw_names_the_control_each_break_fails() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let bucket = unique_bucket("bkt-break");
    let key1 = env_required("STELE_TEST_RGW_KMS_KEY_ID");
    let writer = writer_arn();
    let owner = Endpoint::rgw_owner();
    let init_args = rgw_init_args(&bucket, &key1, &writer);
    let out = owner.stele(dir.path(), &init_args);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let applied = json(&out)["policy"].clone();
    let out = rgw_check(dir.path(), &bucket, &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));

    let s3 = rt.block_on(client(rgw(&bucket)));

    // 1. A Deny statement removed.
    let mut policy = applied.clone();
    policy["Statement"]
        .as_array_mut()
        .unwrap()
        .retain(|s| s["Sid"] != "DenyWrongKmsKey");
    rt.block_on(
        s3.client()
            .put_bucket_policy()
            .bucket(&bucket)
            .policy(policy.to_string())
            .send(),
    )
    .unwrap();
    let junit = dir.path().join("bucket-check.xml");
    let out = rgw_check(dir.path(), &bucket, &["--junit", junit.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let report = json(&out);
    assert_eq!(failed_controls(&report), ["policy.DenyWrongKmsKey"]);
    assert!(
        result(&report, "policy.DenyWrongKmsKey")["message"]
            .as_str()
            .unwrap()
            .contains("the statement is missing"),
        "{report}"
    );
    check_junit(
        &std::fs::read_to_string(&junit).unwrap(),
        "policy.DenyWrongKmsKey",
    );
    // The text table names it too.
    let out = owner.stele(
        dir.path(),
        &[
            "bucket",
            "check",
            "--bucket",
            &bucket,
            "--kms-key",
            &key1,
            "--writer-arn",
            &writer,
        ],
    );
    assert_eq!(code(&out), 1, "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("FAIL         policy.DenyWrongKmsKey"),
        "{table}"
    );
    assert!(table.contains("maps to: CIS AWS 2.1.5"), "{table}");

    // 1b. A Deny statement weakened: the delete Deny narrowed to DeleteObject.
    let mut policy = applied.clone();
    for s in policy["Statement"].as_array_mut().unwrap() {
        if s["Sid"] == "DenyObjectDeletion" {
            s["Action"] = Value::from("s3:DeleteObject");
        }
    }
    rt.block_on(
        s3.client()
            .put_bucket_policy()
            .bucket(&bucket)
            .policy(policy.to_string())
            .send(),
    )
    .unwrap();
    let out = rgw_check(dir.path(), &bucket, &[]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let report = json(&out);
    assert_eq!(failed_controls(&report), ["policy.DenyObjectDeletion"]);
    assert!(
        result(&report, "policy.DenyObjectDeletion")["message"]
            .as_str()
            .unwrap()
            .contains("does not cover s3:DeleteObjectVersion"),
        "{report}"
    );

    // init puts the policy back.
    let out = owner.stele(dir.path(), &init_args);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(step(&json(&out), "bucket-policy")["outcome"], "done");
    let out = rgw_check(dir.path(), &bucket, &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));

    // 2. The default retention shortened (RGW allows shortening the bucket default).
    rt.block_on(
        s3.client()
            .put_object_lock_configuration()
            .bucket(&bucket)
            .object_lock_configuration(
                aws_sdk_s3::types::ObjectLockConfiguration::builder()
                    .object_lock_enabled(aws_sdk_s3::types::ObjectLockEnabled::Enabled)
                    .rule(
                        aws_sdk_s3::types::ObjectLockRule::builder()
                            .default_retention(
                                aws_sdk_s3::types::DefaultRetention::builder()
                                    .mode(aws_sdk_s3::types::ObjectLockRetentionMode::Governance)
                                    .days(30)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send(),
    )
    .unwrap();
    let out = rgw_check(dir.path(), &bucket, &[]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let report = json(&out);
    assert_eq!(failed_controls(&report), ["default-retention"]);
    let msg = result(&report, "default-retention")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.contains("the mode is GOVERNANCE, expected COMPLIANCE")
            && msg.contains("30 days is shorter than the minimum of 400 days"),
        "{msg}"
    );

    // init restores a stricter retention, but never weakens one.
    let out = owner.stele(dir.path(), &init_args);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(step(&json(&out), "default-retention")["outcome"], "done");
    let mut weaker = init_args.clone();
    weaker.extend(["--mode", "GOVERNANCE"]);
    let out = owner.stele(dir.path(), &weaker);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(
        text(&out).contains("init never weakens a bucket"),
        "{}",
        text(&out)
    );
}

/// Parses the JUnit file (any well-formedness error fails) and checks its shape.
fn check_junit(xml: &str, failing: &str) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut depth, mut cases, mut failures) = (0i32, Vec::new(), Vec::new());
    let mut in_case = String::new();
    loop {
        match reader
            .read_event()
            .expect("the JUnit report is well-formed XML")
        {
            Event::Start(e) => {
                depth += 1;
                if e.name().as_ref() == "testcase" {
                    let name = e
                        .try_get_attribute("name")
                        .unwrap()
                        .unwrap()
                        .normalized_value(quick_xml::XmlVersion::Explicit1_0)
                        .unwrap()
                        .into_owned();
                    in_case = name.clone();
                    cases.push(name);
                }
                if e.name().as_ref() == "failure" {
                    failures.push(in_case.clone());
                }
            }
            Event::Empty(e) if e.name().as_ref() == "skipped" => {}
            Event::End(_) => depth -= 1,
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0, "every element closed");
    assert!(cases.len() >= 15, "one testcase per control: {cases:?}");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].starts_with(&format!("{failing}: ")),
        "{failures:?}"
    );
}

#[test]
fn a_bucket_without_object_lock_fails_check_and_is_refused_by_init() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let bucket = unique_bucket("bkt-nolock");
    rt.block_on(create_bucket(rgw(&bucket), false));
    let out = rgw_check(dir.path(), &bucket, &[]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let report = json(&out);
    let failed = failed_controls(&report);
    assert!(
        failed.starts_with(&["object-lock".to_owned(), "default-retention".to_owned()]),
        "{failed:?}"
    );
    assert!(
        result(&report, "object-lock")["message"]
            .as_str()
            .unwrap()
            .contains("not WORM storage")
    );

    let key = env_required("STELE_TEST_RGW_KMS_KEY_ID");
    let out = Endpoint::rgw_owner().stele(dir.path(), &rgw_init_args(&bucket, &key, &writer_arn()));
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(
        text(&out).contains("Object Lock can only be enabled when a bucket is created"),
        "{}",
        text(&out)
    );
}

#[test]
fn init_refuses_unsafe_settings_before_touching_the_store() {
    stele_store::testkit::live_or_skip!(Rgw);
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let bucket = unique_bucket("bkt-refuse");
    let key = env_required("STELE_TEST_RGW_KMS_KEY_ID");
    let writer = writer_arn();
    let owner = Endpoint::rgw_owner();
    let base = [
        "bucket",
        "init",
        "--bucket",
        &bucket,
        "--kms-key",
        &key,
        "--writer-arn",
        &writer,
    ];
    for (extra, expect) in [
        (
            &["--mode", "GOVERNANCE", "--stage", "prod"][..],
            "production stage",
        ),
        (
            &["--mode", "GOVERNANCE", "--stage", "Production"][..],
            "production stage",
        ),
        (&["--mode", "GOVERNANCE"][..], "needs --stage"),
        (&["--days", "30"][..], "below the minimum of 365 days"),
        (&["--days", "40000"][..], "out of range"),
    ] {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let out = owner.stele(dir.path(), &args);
        assert_eq!(code(&out), 2, "{extra:?}: {}", text(&out));
        assert!(text(&out).contains(expect), "{extra:?}: {}", text(&out));
    }
    let out = owner.stele(
        dir.path(),
        &[
            "bucket",
            "init",
            "--bucket",
            &bucket,
            "--kms-key",
            "alias/stele",
            "--writer-arn",
            &writer,
        ],
    );
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("is an alias"), "{}", text(&out));
    // None of that created the bucket.
    let s3 = rt.block_on(client(rgw(&bucket)));
    assert!(
        rt.block_on(s3.client().head_bucket().bucket(&bucket).send())
            .is_err()
    );
}

#[test]
fn init_and_check_on_ministack_set_and_read_encryption_and_ownership() {
    stele_store::testkit::live_or_skip!(Ministack);
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let bucket = unique_bucket("bkt-ms");
    let key = rt.block_on(create_ministack_kms_key());
    let writer = "arn:aws:iam::000000000000:role/stele-writer";
    let ms = Endpoint::ministack();
    // ministack, like AWS since 2023, starts buckets with BucketOwnerEnforced;
    // a bucket made elsewhere with ACLs on (but Object Lock) shows init setting it.
    let premade = unique_bucket("bkt-ms-acl");
    let s3 = rt.block_on(create_bucket(ministack(&premade), true));
    rt.block_on(
        s3.client()
            .put_bucket_ownership_controls()
            .bucket(&premade)
            .ownership_controls(
                aws_sdk_s3::types::OwnershipControls::builder()
                    .rules(
                        aws_sdk_s3::types::OwnershipControlsRule::builder()
                            .object_ownership(aws_sdk_s3::types::ObjectOwnership::ObjectWriter)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .send(),
    )
    .unwrap();
    let out = ms.stele(
        dir.path(),
        &[
            "--json",
            "bucket",
            "init",
            "--bucket",
            &premade,
            "--kms-key",
            &key,
            "--writer-arn",
            writer,
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    let init = json(&out);
    assert_eq!(step(&init, "bucket")["outcome"], "unchanged", "{init}");
    assert_eq!(step(&init, "object-ownership")["outcome"], "done", "{init}");
    assert_eq!(
        step(&init, "default-encryption")["outcome"],
        "done",
        "{init}"
    );
    let out = ms.stele(
        dir.path(),
        &[
            "--json",
            "bucket",
            "check",
            "--bucket",
            &premade,
            "--kms-key",
            &key,
            "--min-days",
            "400",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(result(&json(&out), "object-ownership")["status"], "pass");

    let out = ms.stele(
        dir.path(),
        &[
            "--json",
            "bucket",
            "init",
            "--bucket",
            &bucket,
            "--kms-key",
            &key,
            "--writer-arn",
            writer,
            "--restrict-uploads-to-writer",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    let init = json(&out);
    assert_eq!(
        step(&init, "object-ownership")["outcome"],
        "unchanged",
        "{init}"
    );
    for done in [
        "bucket",
        "default-encryption",
        "public-access-block",
        "default-retention",
        "bucket-policy",
        "lifecycle",
    ] {
        assert_eq!(step(&init, done)["outcome"], "done", "{done}: {init}");
    }
    assert!(
        init["endpoint"].as_str().unwrap().starts_with("AWS-like"),
        "{init}"
    );

    let out = ms.stele(
        dir.path(),
        &[
            "--json",
            "bucket",
            "check",
            "--bucket",
            &bucket,
            "--kms-key",
            &key,
            "--writer-arn",
            writer,
            "--min-days",
            "400",
            "--restrict-uploads-to-writer",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    let report = json(&out);
    for control in [
        "default-encryption",
        "object-ownership",
        "public-access-block",
        "policy.DenyUploadsByNonWriter",
        "lifecycle",
    ] {
        assert_eq!(
            result(&report, control)["status"],
            "pass",
            "{control}: {report}"
        );
    }
    assert!(failed_controls(&report).is_empty(), "{report}");
    assert_eq!(report["summary"]["unsupported_by_endpoint"], 0, "{report}");

    // Another key than the one configured fails both key controls.
    let out = ms.stele(
        dir.path(),
        &[
            "--json",
            "bucket",
            "check",
            "--bucket",
            &bucket,
            "--kms-key",
            "another-key",
            "--min-days",
            "400",
        ],
    );
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert_eq!(
        failed_controls(&json(&out)),
        ["default-encryption", "policy.DenyWrongKmsKey"]
    );
}
