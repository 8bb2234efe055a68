//! The two statements Ceph RGW cannot demonstrate, proved on ministack with
//! `AUTH=true` (where bucket policies are enforced for IAM users):
//!
//! - `DenyUploadsByNonWriter`: RGW 16.2.15 does not populate
//!   `aws:PrincipalArn`, so there the statement never matches;
//! - `DenyInsecureTransport`: RGW does not evaluate `aws:SecureTransport` on
//!   plain-HTTP requests. ministack takes the transport from
//!   `X-Forwarded-Proto` (as behind a TLS-terminating proxy), so one plain
//!   connection can show both sides.
//!
//! Each statement is taken from the shared template (rendered by
//! `stele_bucket::template`) and applied alone, so nothing else in the
//! policy decides the outcome.
//!
//! A second test shows, on this AWS-like evaluator (a key missing from the
//! request makes `Null … = true`, negated and `…IfExists` operators true), that
//! the encryption statements let a multipart upload through — its parts
//! carry no SSE headers — with the bucket's default encryption doing the
//! encrypting, while the v1 statements and an `…IfExists` Deny refuse it. The other statements are shown on RGW by the
//! CLI tests. The test starts its own ministack (the shared one runs without
//! `AUTH`) from the test services' venv and stops it at the end.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use stele_bucket::aws_sdk_s3::primitives::ByteStream;
use stele_bucket::policy::PolicyDocument;
use stele_bucket::template::{PolicyValues, render_policy};
use stele_worm::testkit::env_required;
use stele_worm::{RetryPolicy, S3Config, S3Worm};

const ACCOUNT: &str = "000000000000";

/// A ministack with `AUTH=true` on a free loopback port, stopped on drop.
struct AuthMinistack {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl AuthMinistack {
    fn start() -> Self {
        let bin = PathBuf::from(env_required("STELE_SERVICES_DIR")).join("venv/bin/ministack");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/test-services.sh start",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        for sub in ["s3", "state", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let log = std::fs::File::create(dir.path().join("ministack.log")).unwrap();
        let child = Command::new(&bin)
            .env("BIND_HOST", "127.0.0.1")
            .env("GATEWAY_PORT", port.to_string())
            .env("AUTH", "true")
            .env("S3_DATA_DIR", dir.path().join("s3"))
            .env("STATE_DIR", dir.path().join("state"))
            .env("TMPDIR", dir.path().join("tmp"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let me = Self {
            child,
            host: format!("127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !me.healthy() {
            assert!(
                Instant::now() < deadline,
                "ministack (AUTH=true) did not come up on {}",
                me.host
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        me
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.host)
    }

    fn healthy(&self) -> bool {
        http(&self.host, "GET /_localstack/health HTTP/1.1", &[], b"")
            .is_some_and(|(s, _)| s == 200)
    }

    /// One IAM Query API call, SigV4-signed with the root key (`test`).
    fn iam(&self, params: &[(&str, &str)]) -> String {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let body: String = params
            .iter()
            .chain([&("Version", "2010-05-08")])
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let identity =
            aws_credential_types::Credentials::new("test", "test", None, None, "stele-test").into();
        let params_v4 = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("iam")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let headers = [("host", self.host.as_str()), ("content-type", content_type)];
        let signable = SignableRequest::new(
            "POST",
            format!("{}/", self.endpoint()),
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params_v4).unwrap().into_parts();
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        all.extend(
            instructions
                .headers()
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let (status, response) =
            http(&self.host, "POST / HTTP/1.1", &all, body.as_bytes()).expect("ministack answers");
        assert_eq!(status, 200, "IAM {params:?}: {response}");
        response
    }

    /// An IAM user allowed everything in S3 by its own policy; returns its keys.
    fn user(&self, name: &str) -> (String, String) {
        self.iam(&[("Action", "CreateUser"), ("UserName", name)]);
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", "s3"),
            (
                "PolicyDocument",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
            ),
        ]);
        let answer = self.iam(&[("Action", "CreateAccessKey"), ("UserName", name)]);
        (tag(&answer, "AccessKeyId"), tag(&answer, "SecretAccessKey"))
    }

    async fn s3(&self, bucket: &str, keys: (String, String)) -> S3Worm {
        S3Worm::connect(S3Config {
            bucket: bucket.to_owned(),
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            path_style: Some(true),
            static_credentials: Some(keys),
            kms_key_id: None,
            retry: RetryPolicy {
                attempts: 1,
                ..RetryPolicy::default()
            },
        })
        .await
        .unwrap()
    }
}

impl Drop for AuthMinistack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 exchange; `None` if the connection fails.
fn http(
    host: &str,
    request_line: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Option<(u16, String)> {
    let mut conn = TcpStream::connect(host).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut req = format!("{request_line}\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("host: {host}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    conn.write_all(req.as_bytes()).ok()?;
    conn.write_all(body).ok()?;
    let mut resp = Vec::new();
    conn.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

fn form_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn tag(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no {name} in {xml}"))
        + open.len();
    let len = xml[start..].find('<').unwrap();
    xml[start..start + len].to_owned()
}

/// The template's statement `sid`, rendered for `bucket`, as a one-statement policy.
fn only_statement(bucket: &str, writer: &str, sid: &str) -> String {
    let policy = render_policy(
        &PolicyValues {
            bucket_arn: format!("arn:aws:s3:::{bucket}"),
            kms_key_arn: "unused-here".into(),
            writer_role_arn: writer.to_owned(),
        },
        true,
    )
    .unwrap();
    let statement = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == sid)
        .unwrap()
        .clone();
    serde_json::json!({"Version": "2012-10-17", "Statement": [statement]}).to_string()
}

fn denied<T: std::fmt::Debug, E: stele_bucket::aws_sdk_s3::error::ProvideErrorMetadata>(
    r: Result<T, E>,
) -> bool {
    match r {
        Ok(_) => false,
        Err(e) => e.code() == Some("AccessDenied"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn statements_rgw_cannot_show_are_enforced_on_an_aws_like_evaluator() {
    stele_worm::live_or_skip!(Ministack);
    let ms = AuthMinistack::start();
    let bucket = "stele-policy-proof";
    let root = ms.s3(bucket, ("test".into(), "test".into())).await;
    root.client()
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let writer_keys = ms.user("stele-writer");
    let other_keys = ms.user("someone-else");
    let writer_arn = format!("arn:aws:iam::{ACCOUNT}:user/stele-writer");
    let writer = ms.s3(bucket, writer_keys).await;
    let other = ms.s3(bucket, other_keys).await;
    let put = |s3: &S3Worm, key: &str| {
        s3.client()
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from_static(b"anchor"))
    };
    let set_policy = |text: String| {
        let client = root.client().clone();
        async move {
            // The policy parses as what the template says.
            PolicyDocument::parse(&text).unwrap();
            client
                .put_bucket_policy()
                .bucket(bucket)
                .policy(text)
                .send()
                .await
                .unwrap();
        }
    };

    // Without a policy both users may upload: what follows is the statement's doing.
    assert!(put(&writer, "anchors/w0").send().await.is_ok());
    assert!(put(&other, "anchors/o0").send().await.is_ok());

    // DenyUploadsByNonWriter (aws:PrincipalArn).
    set_policy(only_statement(
        bucket,
        &writer_arn,
        "DenyUploadsByNonWriter",
    ))
    .await;
    assert!(
        put(&writer, "anchors/w1").send().await.is_ok(),
        "the writer may upload"
    );
    assert!(
        denied(put(&other, "anchors/o1").send().await),
        "anyone else is refused"
    );

    // DenyInsecureTransport (aws:SecureTransport): refused over plain HTTP,
    // allowed when the request arrived over TLS (X-Forwarded-Proto: https).
    set_policy(only_statement(bucket, &writer_arn, "DenyInsecureTransport")).await;
    assert!(
        denied(put(&writer, "anchors/w2").send().await),
        "plain HTTP upload refused"
    );
    assert!(
        denied(
            writer
                .client()
                .list_objects_v2()
                .bucket(bucket)
                .send()
                .await
        ),
        "plain HTTP listing refused (the statement covers s3:* on the bucket too)"
    );
    let over_tls = put(&writer, "anchors/w3")
        .customize()
        .mutate_request(|req| {
            req.headers_mut().insert("x-forwarded-proto", "https");
        })
        .send()
        .await;
    assert!(
        over_tls.is_ok(),
        "an upload over TLS is allowed: {over_tls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn encryption_denies_let_multipart_through_and_the_bucket_default_encrypts_it() {
    stele_worm::live_or_skip!(Ministack);
    use stele_bucket::aws_sdk_s3::types::{
        ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
        ServerSideEncryptionRule,
    };
    let ms = AuthMinistack::start();
    let bucket = "stele-multipart-proof";
    // ministack does not check that a key exists: the test is about the policy.
    let key_arn =
        format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/5d1e0000-0000-4000-8000-000000000001");
    let other_key_arn =
        format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/5d1e0000-0000-4000-8000-000000000002");
    let root = ms.s3(bucket, ("test".into(), "test".into())).await;
    root.client()
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    root.client()
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::AwsKms)
                                .kms_master_key_id(&key_arn)
                                .build()
                                .unwrap(),
                        )
                        .bucket_key_enabled(true)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let writer_arn = format!("arn:aws:iam::{ACCOUNT}:user/stele-writer");
    let writer = ms.s3(bucket, ms.user("stele-writer")).await;
    let set_policy = |statements: Vec<serde_json::Value>| {
        let client = root.client().clone();
        async move {
            let text =
                serde_json::json!({"Version": "2012-10-17", "Statement": statements}).to_string();
            PolicyDocument::parse(&text).unwrap();
            client
                .put_bucket_policy()
                .bucket(bucket)
                .policy(text)
                .send()
                .await
                .unwrap();
        }
    };

    // The whole template but DenyInsecureTransport (these requests are plain
    // HTTP; the first test shows that statement).
    let template = render_policy(
        &PolicyValues {
            bucket_arn: format!("arn:aws:s3:::{bucket}"),
            kms_key_arn: key_arn.clone(),
            writer_role_arn: writer_arn.clone(),
        },
        true,
    )
    .unwrap();
    let statements: Vec<serde_json::Value> = template["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Sid"] != "DenyInsecureTransport")
        .cloned()
        .collect();
    set_policy(statements).await;

    // A multipart upload without SSE headers goes through, and the bucket
    // default encrypts it with the bucket's key.
    assert_eq!(
        stele_worm::testkit::raw_multipart_upload(&writer, bucket, "evidence/big.bin", None).await,
        Ok((Some("aws:kms".to_owned()), Some(key_arn.clone())))
    );
    // So does a single PUT without SSE headers, encrypted the same way.
    let put = |key: &str| {
        writer
            .client()
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from_static(b"evidence"))
    };
    put("evidence/small.bin").send().await.unwrap();
    let head = writer
        .client()
        .head_object()
        .bucket(bucket)
        .key("evidence/small.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(head.ssekms_key_id(), Some(key_arn.as_str()));
    // Asking for another algorithm is refused (DenyWrongEncryptionHeader).
    assert!(
        denied(
            put("evidence/aes.bin")
                .server_side_encryption(ServerSideEncryption::Aes256)
                .send()
                .await
        ),
        "AES256 refused"
    );
    // aws:kms naming no key is refused (DenyKmsUploadWithoutKeyId). ministack
    // never sets the key-id condition key, so it refuses a named key — right
    // or wrong — the same way: the wrong-key case is shown on Ceph RGW.
    assert!(
        denied(
            put("evidence/kms-no-key.bin")
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .send()
                .await
        ),
        "aws:kms without a key refused"
    );
    assert!(
        denied(
            put("evidence/other-key.bin")
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(&other_key_arn)
                .send()
                .await
        ),
        "another key refused"
    );

    // The forms that break multipart, on the same evaluator: the v1
    // statement (Null = true), and StringNotEqualsIfExists, which in a Deny
    // is true when the header is missing.
    let resource = format!("arn:aws:s3:::{bucket}/*");
    for (form, condition) in [
        (
            "v1 DenyMissingEncryptionHeader",
            serde_json::json!({"Null": {"s3:x-amz-server-side-encryption": "true"}}),
        ),
        (
            "StringNotEqualsIfExists",
            serde_json::json!({"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}}),
        ),
    ] {
        set_policy(vec![serde_json::json!({
            "Sid": "Form", "Effect": "Deny", "Principal": "*",
            "Action": "s3:PutObject", "Resource": resource, "Condition": condition
        })])
        .await;
        let outcome = stele_worm::testkit::raw_multipart_upload(
            &writer,
            bucket,
            "evidence/refused.bin",
            None,
        )
        .await;
        assert_eq!(
            outcome,
            Err("CreateMultipartUpload AccessDenied".to_owned()),
            "{form}"
        );
    }
}
