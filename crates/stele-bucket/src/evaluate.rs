//! Evaluates a live configuration against the controls (no I/O).

use stele_worm::LockMode;

use crate::controls::{self, Control};
use crate::lifecycle::expirations_before_retention;
use crate::live::{LiveConfig, Observed, PublicAccessBlock, kms_keys_match};
use crate::policy::PolicyDocument;
use crate::policy_eval::{self, Verdict, governance_bypass_denied_to, pinned_kms_key};
use crate::report::{Finding, Report, Status};
use crate::spec::{CheckSpec, bucket_arn};
use crate::template::{PolicyValues, WRITER_ONLY_SID, render_policy};

/// Evaluates every control for `live` against what `spec` expects.
pub fn evaluate(spec: &CheckSpec, live: &LiveConfig) -> Report {
    let mut findings = Vec::new();
    let mut notes = Vec::new();

    findings.push(object_lock(live));
    findings.push(default_retention(spec, live));
    findings.push(versioning(live));
    if spec.require_mfa_delete {
        findings.push(mfa_delete(live));
    } else {
        notes.push("mfa-delete (CIS AWS 2.1.2) not evaluated: it was not required".into());
    }
    findings.push(default_encryption(spec, live, &mut notes));
    findings.push(public_access_block(live));
    findings.push(object_ownership(live));
    let policy = parsed_policy(live);
    findings.push(policy_not_public(live, &policy));
    findings.extend(policy_statements(spec, live, &policy, &mut notes));
    findings.push(lifecycle(spec, live));
    if spec.require_logging {
        findings.push(access_logging(live));
    } else {
        notes.push("access-logging (SOC 2 CC7.2) not evaluated: it was not required".into());
    }
    Report {
        bucket: spec.bucket.clone(),
        endpoint: live.profile.describe(),
        findings,
        notes,
    }
}

fn unreadable(control: &'static Control, why: &str) -> Finding {
    Finding::new(control, Status::Fail, format!("could not be read: {why}"))
}

fn unsupported(control: &'static Control, why: &str, consequence: &str) -> Finding {
    Finding::new(
        control,
        Status::UnsupportedByEndpoint,
        format!("{why}: {consequence}"),
    )
}

fn object_lock(live: &LiveConfig) -> Finding {
    let c = &controls::OBJECT_LOCK;
    match &live.object_lock {
        Observed::Found(Some(s)) if s.enabled => {
            Finding::new(c, Status::Pass, "Object Lock is enabled")
        }
        Observed::Found(_) => Finding::new(
            c,
            Status::Fail,
            "Object Lock is not enabled on this bucket (no Object Lock configuration): it is not WORM storage",
        ),
        // Without Object Lock there is no WORM bucket, whatever the reason.
        Observed::Unsupported(why) => Finding::new(
            c,
            Status::Fail,
            format!("{why}: this endpoint offers no Object Lock, so it cannot hold WORM data"),
        ),
        Observed::Unreadable(why) => unreadable(c, why),
    }
}

fn default_retention(spec: &CheckSpec, live: &LiveConfig) -> Finding {
    let c = &controls::DEFAULT_RETENTION;
    let state = match &live.object_lock {
        Observed::Found(Some(s)) if s.enabled => s,
        Observed::Found(_) | Observed::Unsupported(_) => {
            return Finding::new(
                c,
                Status::Fail,
                "no default retention: Object Lock is not enabled",
            );
        }
        Observed::Unreadable(why) => return unreadable(c, why),
    };
    let Some(rule) = &state.default_retention else {
        return Finding::new(
            c,
            Status::Fail,
            format!(
                "Object Lock is enabled but there is no default retention: objects uploaded without their own lock are not protected (expected {}, at least {} days)",
                spec.expect_mode, spec.min_days
            ),
        );
    };
    let mode = rule.mode.map_or("an unknown mode", LockMode::as_str);
    let mut problems = Vec::new();
    let mode_ok = match spec.expect_mode {
        LockMode::Compliance => rule.mode == Some(LockMode::Compliance),
        // COMPLIANCE is stricter than GOVERNANCE, so it satisfies it.
        LockMode::Governance => rule.mode.is_some(),
    };
    if !mode_ok {
        problems.push(format!(
            "the mode is {mode}, expected {}{}",
            spec.expect_mode,
            if rule.mode == Some(LockMode::Governance) {
                " (GOVERNANCE locks can be bypassed by principals with s3:BypassGovernanceRetention)"
            } else {
                ""
            }
        ));
    }
    if rule.days < spec.min_days {
        problems.push(format!(
            "{} is shorter than the minimum of {} days",
            rule.as_configured, spec.min_days
        ));
    }
    let found = format!("default retention {mode}, {}", rule.as_configured);
    if problems.is_empty() {
        Finding::new(
            c,
            Status::Pass,
            format!(
                "{found} (expected {}, at least {} days)",
                spec.expect_mode, spec.min_days
            ),
        )
    } else {
        Finding::new(c, Status::Fail, format!("{found}: {}", problems.join("; ")))
    }
}

fn versioning(live: &LiveConfig) -> Finding {
    let c = &controls::VERSIONING;
    match &live.versioning {
        Observed::Found(v) if v.status.as_deref() == Some("Enabled") => {
            Finding::new(c, Status::Pass, "versioning is Enabled")
        }
        Observed::Found(v) => Finding::new(
            c,
            Status::Fail,
            format!(
                "versioning is {}",
                v.status
                    .as_deref()
                    .unwrap_or("not enabled (never configured)")
            ),
        ),
        Observed::Unsupported(why) => Finding::new(c, Status::Fail, why.clone()),
        Observed::Unreadable(why) => unreadable(c, why),
    }
}

fn mfa_delete(live: &LiveConfig) -> Finding {
    let c = &controls::MFA_DELETE;
    match &live.versioning {
        Observed::Found(v) if v.mfa_delete => {
            Finding::new(c, Status::Pass, "MFA delete is Enabled")
        }
        Observed::Found(_) => Finding::new(c, Status::Fail, "MFA delete is Disabled"),
        Observed::Unsupported(why) => {
            unsupported(c, why, "MFA delete cannot be read on this endpoint")
        }
        Observed::Unreadable(why) => unreadable(c, why),
    }
}

fn default_encryption(spec: &CheckSpec, live: &LiveConfig, notes: &mut Vec<String>) -> Finding {
    let c = &controls::DEFAULT_ENCRYPTION;
    let rules = match &live.encryption {
        Observed::Found(Some(rules)) if !rules.is_empty() => rules,
        Observed::Found(_) => {
            return Finding::new(c, Status::Fail, "no default encryption is configured");
        }
        Observed::Unsupported(why) => {
            return unsupported(
                c,
                why,
                "this endpoint has no bucket default encryption, so an upload that names no encryption is stored unencrypted: the policy refuses only uploads that ask for another algorithm or key (DenyWrongEncryptionHeader, DenyWrongKmsKey, DenyKmsUploadWithoutKeyId), because refusing header-less requests would refuse every part of a multipart upload; stele's writers always send SSE-KMS with the key, other writers must too",
            );
        }
        Observed::Unreadable(why) => return unreadable(c, why),
    };
    let rule = &rules[0];
    let key = rule
        .kms_key
        .as_deref()
        .unwrap_or("no key (the AWS managed aws/s3 key)");
    let found = format!(
        "{} with {key}, bucket key {}",
        rule.algorithm,
        match rule.bucket_key {
            Some(true) => "on",
            Some(false) => "off",
            None => "not reported",
        }
    );
    let mut problems = Vec::new();
    if !rule.algorithm.starts_with("aws:kms") {
        problems.push(format!(
            "the algorithm is {}, expected aws:kms",
            rule.algorithm
        ));
    }
    match (&spec.kms_key, &rule.kms_key) {
        (Some(want), Some(have)) if !kms_keys_match(want, have) => {
            problems.push(format!("the key is {have}, expected {want}"));
        }
        (Some(want), None) => problems.push(format!("no customer managed key is set, expected {want}")),
        (None, _) => notes.push(format!(
            "no expected KMS key given: default-encryption was checked for SSE-KMS only, with the bucket's own key ({key})"
        )),
        _ => {}
    }
    if rule.bucket_key != Some(true) {
        problems
            .push("the bucket key is not enabled (every object then costs a KMS request)".into());
    }
    if problems.is_empty() {
        Finding::new(c, Status::Pass, found)
    } else {
        Finding::new(c, Status::Fail, format!("{found}: {}", problems.join("; ")))
    }
}

fn public_access_block(live: &LiveConfig) -> Finding {
    let c = &controls::PUBLIC_ACCESS_BLOCK;
    match &live.public_access_block {
        Observed::Found(Some(p)) if p.off().is_empty() => {
            Finding::new(c, Status::Pass, "all four flags are on")
        }
        Observed::Found(Some(p))
            if *p == PublicAccessBlock::ALL_BUT_BLOCK_PUBLIC_ACLS
                && live.profile.block_public_acls_breaks_uploads() =>
        {
            unsupported(
                c,
                "BlockPublicAcls is off and the other three flags are on",
                "on this Ceph RGW-like endpoint BlockPublicAcls=true makes every PutObject fail (an upstream bug), so it cannot be turned on; IgnorePublicAcls still makes public ACLs ineffective",
            )
        }
        Observed::Found(Some(p)) => {
            Finding::new(c, Status::Fail, format!("off: {}", p.off().join(", ")))
        }
        Observed::Found(None) => Finding::new(
            c,
            Status::Fail,
            "the bucket has no public access block (an account-level one is not checked here)",
        ),
        Observed::Unsupported(why) => {
            unsupported(c, why, "this endpoint has no public access block")
        }
        Observed::Unreadable(why) => unreadable(c, why),
    }
}

fn object_ownership(live: &LiveConfig) -> Finding {
    let c = &controls::OBJECT_OWNERSHIP;
    match &live.ownership {
        Observed::Found(Some(o)) if o == "BucketOwnerEnforced" => {
            Finding::new(c, Status::Pass, "BucketOwnerEnforced: ACLs are disabled")
        }
        Observed::Found(Some(o)) => Finding::new(
            c,
            Status::Fail,
            format!("object ownership is {o}: ACLs are still in effect"),
        ),
        Observed::Found(None) => Finding::new(
            c,
            Status::Fail,
            "no ownership controls are set: ACLs are still in effect",
        ),
        Observed::Unsupported(why) => unsupported(
            c,
            why,
            "this endpoint has no ownership controls, so ACLs stay in effect: keep bucket and object ACLs private, and have the writer send x-amz-acl: bucket-owner-full-control so the bucket owner can read what it uploads",
        ),
        Observed::Unreadable(why) => unreadable(c, why),
    }
}

/// The live policy: `Ok(None)` no policy, `Err` unreadable or invalid.
fn parsed_policy(live: &LiveConfig) -> Result<Option<PolicyDocument>, String> {
    match &live.policy {
        Observed::Found(None) => Ok(None),
        Observed::Found(Some(text)) => PolicyDocument::parse(text)
            .map(Some)
            .map_err(|e| e.to_string()),
        Observed::Unsupported(why) | Observed::Unreadable(why) => {
            Err(format!("the bucket policy could not be read: {why}"))
        }
    }
}

fn policy_not_public(
    live: &LiveConfig,
    policy: &Result<Option<PolicyDocument>, String>,
) -> Finding {
    let c = &controls::POLICY_NOT_PUBLIC;
    if let Observed::Found(Some(public)) = live.policy_status {
        return if public {
            Finding::new(
                c,
                Status::Fail,
                "S3's policy status reports the bucket policy as public",
            )
        } else {
            Finding::new(c, Status::Pass, "S3's policy status: not public")
        };
    }
    // No policy status from the endpoint: evaluate the document here.
    match policy {
        Ok(None) => Finding::new(c, Status::Pass, "the bucket has no policy"),
        Ok(Some(doc)) => {
            let public: Vec<String> = doc
                .public_grants()
                .iter()
                .map(|s| s.sid.clone().unwrap_or_else(|| "(no Sid)".into()))
                .collect();
            if public.is_empty() {
                Finding::new(
                    c,
                    Status::Pass,
                    "no statement grants access to everyone (evaluated by stele: the endpoint returned no policy status)",
                )
            } else {
                Finding::new(
                    c,
                    Status::Fail,
                    format!(
                        "statements granting access to everyone without a pinning condition: {} (evaluated by stele: the endpoint returned no policy status)",
                        public.join(", ")
                    ),
                )
            }
        }
        Err(why) => unreadable(c, why),
    }
}

/// One finding per required Deny statement.
fn policy_statements(
    spec: &CheckSpec,
    live: &LiveConfig,
    policy: &Result<Option<PolicyDocument>, String>,
    notes: &mut Vec<String>,
) -> Vec<Finding> {
    let doc = policy.as_ref().ok().and_then(Option::as_ref);
    let kms_key = spec.kms_key.clone().or_else(|| {
        let from_bucket = live
            .encryption
            .found()
            .and_then(|r| r.as_ref())
            .and_then(|r| r.first())
            .and_then(|r| r.kms_key.clone());
        let from_policy = || doc.and_then(pinned_kms_key);
        let (key, source) = match from_bucket {
            Some(k) => (Some(k), "the bucket's default encryption"),
            None => (from_policy(), "the bucket policy itself"),
        };
        if let Some(k) = &key {
            notes.push(format!(
                "no expected KMS key given: DenyWrongKmsKey was checked against {k}, taken from {source}"
            ));
        }
        key
    });
    let writer = spec.writer_arn.clone().or_else(|| {
        let w = doc.and_then(governance_bypass_denied_to);
        if let Some(w) = &w {
            notes.push(format!(
                "no writer ARN given: DenyGovernanceBypassByWriter was checked against {w}, taken from the bucket policy itself"
            ));
        }
        w
    });
    // The optional statement is evaluated when asked for or when the bucket has it.
    let writer_only = spec.require_writer_only_uploads
        || doc.is_some_and(|d| d.statement(WRITER_ONLY_SID).is_some());

    // Unknown values become a marker no live policy contains, and the
    // statements that need them say what to pass.
    const UNKNOWN: &str = "unknown";
    let values = PolicyValues {
        bucket_arn: bucket_arn(&spec.bucket, &spec.region),
        kms_key_arn: kms_key.clone().unwrap_or_else(|| UNKNOWN.into()),
        writer_role_arn: writer
            .clone()
            .unwrap_or_else(|| "arn:aws:iam:::user/unknown".into()),
    };
    let required = match render_policy(&values, writer_only)
        .map_err(|e| e.to_string())
        .and_then(|v| PolicyDocument::from_value(&v).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            return vec![Finding::new(
                &controls::DENY_INSECURE_TRANSPORT,
                Status::Fail,
                format!("the expected policy could not be rendered: {e}"),
            )];
        }
    };
    let verdicts = match policy {
        Err(why) => required
            .statements
            .iter()
            .map(|s| {
                (
                    s.sid.clone().unwrap_or_default(),
                    Verdict::NotEnforced(why.clone()),
                )
            })
            .collect(),
        Ok(doc) => policy_eval::evaluate(&required, doc.as_ref()),
    };
    let mut findings: Vec<Finding> = verdicts
        .into_iter()
        .filter_map(|(sid, verdict)| {
            let control = controls::for_statement(&sid)?;
            Some(statement_finding(
                control,
                &sid,
                verdict,
                live,
                kms_key.is_some(),
                writer.is_some(),
            ))
        })
        .collect();
    findings.push(multipart_allowed(
        policy,
        &values.bucket_arn,
        writer.as_deref(),
    ));
    findings
}

/// Whether any Deny refuses the parts of a multipart upload (which the
/// evidence vault uses for every file above its threshold).
fn multipart_allowed(
    policy: &Result<Option<PolicyDocument>, String>,
    bucket_arn: &str,
    writer: Option<&str>,
) -> Finding {
    let c = &controls::POLICY_ALLOWS_MULTIPART;
    let live = match policy {
        Err(why) => return unreadable(c, why),
        Ok(None) => return Finding::new(c, Status::Pass, "the bucket has no bucket policy"),
        Ok(Some(live)) => live,
    };
    // A representative evidence object: the vault is what uploads multipart.
    let object_arn = format!("{bucket_arn}/evidence/multipart-upload");
    let refusing = policy_eval::multipart_part_refusals(live, &object_arn, writer);
    if refusing.is_empty() {
        return Finding::new(
            c,
            Status::Pass,
            "no Deny matches an UploadPart or CompleteMultipartUpload request (no SSE headers, over TLS, by the writer)",
        );
    }
    Finding::new(
        c,
        Status::Fail,
        format!(
            "multipart uploads will be refused: statement{} {} match{} UploadPart and CompleteMultipartUpload, which AWS authorizes as s3:PutObject but which carry no x-amz-server-side-encryption headers (a Null = true test, or a negated or …IfExists operator on a header the request lacks, is true on AWS); files above the multipart threshold (32 MiB) cannot be stored",
            if refusing.len() == 1 { "" } else { "s" },
            refusing.join(", "),
            if refusing.len() == 1 { "es" } else { "" },
        ),
    )
}

fn statement_finding(
    control: &'static Control,
    sid: &str,
    verdict: Verdict,
    live: &LiveConfig,
    kms_known: bool,
    writer_known: bool,
) -> Finding {
    if sid == WRITER_ONLY_SID && !live.profile.evaluates_principal_arn() {
        let state = match &verdict {
            Verdict::Enforced(_) => "the statement is present",
            Verdict::NotEnforced(_) => "the statement is not in the policy",
        };
        return unsupported(
            control,
            state,
            "this Ceph RGW-like endpoint does not evaluate aws:PrincipalArn (measured on RGW 16.2.15), so the statement has no effect here; restrict uploads through the writer's own grants instead",
        );
    }
    match verdict {
        Verdict::Enforced(msg) => {
            let caveat = if sid == "DenyInsecureTransport" && live.profile.rgw_like() {
                " (Ceph RGW does not evaluate aws:SecureTransport on plain-HTTP requests: serve the endpoint over TLS only)"
            } else {
                ""
            };
            Finding::new(control, Status::Pass, format!("{msg}{caveat}"))
        }
        Verdict::NotEnforced(msg) => {
            let hint = match sid {
                "DenyWrongKmsKey" if !kms_known => {
                    " — no expected key is known: name the expected KMS key (the bucket has no default key and its policy pins none)"
                }
                "DenyGovernanceBypassByWriter" | "DenyUploadsByNonWriter" if !writer_known => {
                    " — no writer is known: name the writer's ARN (the policy names no single writer)"
                }
                _ => "",
            };
            Finding::new(control, Status::Fail, format!("{msg}{hint}"))
        }
    }
}

fn lifecycle(spec: &CheckSpec, live: &LiveConfig) -> Finding {
    let c = &controls::LIFECYCLE;
    let default_days = live
        .object_lock
        .found()
        .and_then(|s| s.as_ref())
        .and_then(|s| s.default_retention.as_ref())
        .map_or(0, |r| r.days);
    // The stricter of the bucket's default and the required minimum.
    let retention = default_days.max(spec.min_days);
    match &live.lifecycle {
        Observed::Found(rules) if rules.is_empty() => {
            Finding::new(c, Status::Pass, "no lifecycle rules: nothing expires")
        }
        Observed::Found(rules) => {
            let problems = expirations_before_retention(rules, retention);
            if problems.is_empty() {
                Finding::new(
                    c,
                    Status::Pass,
                    format!(
                        "{} rule(s); none expires anything before the {retention}-day retention",
                        rules.len()
                    ),
                )
            } else {
                Finding::new(c, Status::Fail, problems.join("; "))
            }
        }
        Observed::Unsupported(why) => unsupported(c, why, "this endpoint has no lifecycle rules"),
        Observed::Unreadable(why) => unreadable(c, why),
    }
}

fn access_logging(live: &LiveConfig) -> Finding {
    let c = &controls::ACCESS_LOGGING;
    match &live.logging {
        Observed::Found(Some(t)) => Finding::new(
            c,
            Status::Pass,
            format!("server access logs go to s3://{}/{}", t.bucket, t.prefix),
        ),
        Observed::Found(None) => Finding::new(c, Status::Fail, "server access logging is off"),
        Observed::Unsupported(why) => {
            unsupported(c, why, "this endpoint has no server access logging")
        }
        Observed::Unreadable(why) => unreadable(c, why),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::endpoint::EndpointProfile;
    use crate::lifecycle::{Expiration, LifecycleSettings, module_rules};
    use crate::live::{DefaultEncryption, DefaultRetention, ObjectLockState, VersioningState};

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k1";
    const WRITER: &str = "arn:aws:iam::111122223333:role/stele-writer";

    fn spec() -> CheckSpec {
        CheckSpec {
            bucket: "stele-example".into(),
            region: "us-east-1".into(),
            expect_mode: LockMode::Compliance,
            min_days: 365,
            kms_key: Some(KEY.into()),
            writer_arn: Some(WRITER.into()),
            require_mfa_delete: false,
            require_logging: false,
            require_writer_only_uploads: false,
        }
    }

    fn policy(writer_only: bool) -> Value {
        render_policy(
            &PolicyValues {
                bucket_arn: "arn:aws:s3:::stele-example".into(),
                kms_key_arn: KEY.into(),
                writer_role_arn: WRITER.into(),
            },
            writer_only,
        )
        .unwrap()
    }

    /// A bucket as `stele bucket init` leaves it on AWS.
    fn good() -> LiveConfig {
        LiveConfig {
            profile: EndpointProfile::aws_like(),
            object_lock: Observed::Found(Some(ObjectLockState {
                enabled: true,
                default_retention: Some(DefaultRetention {
                    mode: Some(LockMode::Compliance),
                    days: 400,
                    as_configured: "400 days".into(),
                }),
            })),
            versioning: Observed::Found(VersioningState {
                status: Some("Enabled".into()),
                mfa_delete: false,
            }),
            encryption: Observed::Found(Some(vec![DefaultEncryption {
                algorithm: "aws:kms".into(),
                kms_key: Some(KEY.into()),
                bucket_key: Some(true),
            }])),
            public_access_block: Observed::Found(Some(PublicAccessBlock::ALL)),
            ownership: Observed::Found(Some("BucketOwnerEnforced".into())),
            policy: Observed::Found(Some(policy(false).to_string())),
            policy_status: Observed::Found(Some(false)),
            lifecycle: Observed::Found(module_rules(&LifecycleSettings::default())),
            logging: Observed::Found(None),
        }
    }

    fn rgw() -> LiveConfig {
        let listing = |api: &str| format!("GET ?{api} was answered with a ListObjects result");
        LiveConfig {
            profile: EndpointProfile::from_reads(
                &Observed::<()>::Unsupported(listing("encryption")),
                &Observed::<()>::Unsupported(listing("ownershipControls")),
            ),
            encryption: Observed::Unsupported(listing("encryption")),
            ownership: Observed::Unsupported(listing("ownershipControls")),
            public_access_block: Observed::Found(Some(
                PublicAccessBlock::ALL_BUT_BLOCK_PUBLIC_ACLS,
            )),
            ..good()
        }
    }

    fn status(report: &Report, id: &str) -> Status {
        report
            .finding(id)
            .unwrap_or_else(|| panic!("no {id}"))
            .status
    }

    fn message(report: &Report, id: &str) -> String {
        report.finding(id).unwrap().message.clone()
    }

    /// The library says what is wrong in S3 and Terraform terms; the CLI
    /// adds its own flags, variables and commands.
    #[test]
    fn no_finding_note_fix_or_error_names_cli_flags_variables_or_commands() {
        let unknown = CheckSpec {
            kms_key: None,
            writer_arn: None,
            require_mfa_delete: false,
            require_logging: false,
            ..spec()
        };
        let bare = LiveConfig {
            encryption: Observed::Found(None),
            policy: Observed::Found(None),
            ..good()
        };
        let mut texts: Vec<String> = Vec::new();
        for live in [good(), bare, rgw()] {
            let report = evaluate(&unknown, &live);
            texts.extend(report.findings.iter().map(|f| f.message.clone()));
            texts.extend(report.notes);
        }
        assert!(
            texts.iter().any(|t| t.contains("no expected key is known")),
            "the hint-bearing findings were produced: {texts:?}"
        );
        texts.extend(controls::ALL.iter().map(|c| c.fix.to_owned()));
        use crate::spec::SpecError as S;
        texts.extend(
            [
                S::GovernanceInProduction {
                    stage: "prod".into(),
                },
                S::GovernanceWithoutStage,
                S::RetentionBelowFloor {
                    days: 30,
                    floor: 365,
                },
                S::KmsAlias("alias/x".into()),
                S::WriterArn("x".into()),
            ]
            .iter()
            .map(ToString::to_string),
        );
        use crate::BucketError as B;
        texts.extend(
            [
                B::NoObjectLock { bucket: "b".into() },
                B::WouldWeaken {
                    bucket: "b".into(),
                    what: "w".into(),
                },
                B::Credentials {
                    op: "GetObject",
                    code: "InvalidAccessKeyId".into(),
                },
            ]
            .iter()
            .map(ToString::to_string),
        );
        for text in &texts {
            for word in ["--", "AUDIT_", "AWS_", "STELE_", "`stele ", "stele bucket"] {
                assert!(!text.contains(word), "{word:?} in {text}");
            }
        }
    }

    #[test]
    fn a_bucket_made_by_init_passes_everything() {
        let report = evaluate(&spec(), &good());
        assert!(!report.has_failures(), "{}", report.to_text());
        assert_eq!(report.count(Status::UnsupportedByEndpoint), 0);
        // 3 + encryption, pab, ownership, not-public, 7 statements, multipart, lifecycle
        assert_eq!(report.findings.len(), 16);
    }

    #[test]
    fn on_rgw_the_missing_apis_are_unsupported_not_failures() {
        let report = evaluate(&spec(), &rgw());
        assert!(!report.has_failures(), "{}", report.to_text());
        for id in [
            "default-encryption",
            "object-ownership",
            "public-access-block",
        ] {
            assert_eq!(status(&report, id), Status::UnsupportedByEndpoint, "{id}");
        }
        assert!(
            message(&report, "policy.DenyInsecureTransport")
                .contains("serve the endpoint over TLS")
        );
        // Without default encryption nothing encrypts a header-less upload: said plainly.
        assert!(
            message(&report, "default-encryption")
                .contains("an upload that names no encryption is stored unencrypted")
        );
        assert_eq!(status(&report, "policy-allows-multipart"), Status::Pass);
    }

    #[test]
    fn the_v1_encryption_statements_are_found_to_refuse_multipart_uploads() {
        // A bucket provisioned with policy v1: the Null = true statement
        // beside the two statements without presence tests.
        let mut p = policy(false);
        let statements = p["Statement"].as_array_mut().unwrap();
        for s in statements.iter_mut() {
            if s["Sid"] == "DenyWrongEncryptionHeader" || s["Sid"] == "DenyWrongKmsKey" {
                let condition = s["Condition"]["StringNotEquals"].clone();
                s["Condition"] = serde_json::json!({"StringNotEquals": condition});
            }
        }
        statements.retain(|s| s["Sid"] != "DenyKmsUploadWithoutKeyId");
        let mut missing = statements[1].clone();
        missing["Sid"] = "DenyMissingEncryptionHeader".into();
        missing["Condition"] =
            serde_json::json!({"Null": {"s3:x-amz-server-side-encryption": "true"}});
        statements.push(missing);
        let live = LiveConfig {
            policy: Observed::Found(Some(p.to_string())),
            ..good()
        };
        let report = evaluate(&spec(), &live);
        let failed: Vec<&str> = report
            .findings
            .iter()
            .filter(|f| f.status == Status::Fail)
            .map(|f| f.control.id)
            .collect();
        // The two v1 encryption Denies still enforce theirs (broader, not
        // narrower); v1 lacked the key-id statement; and the multipart
        // refusal is found, naming the statements.
        assert_eq!(
            failed,
            [
                "policy.DenyKmsUploadWithoutKeyId",
                "policy-allows-multipart"
            ]
        );
        let msg = message(&report, "policy-allows-multipart");
        assert!(
            msg.starts_with("multipart uploads will be refused: statements DenyWrongEncryptionHeader, DenyWrongKmsKey, DenyMissingEncryptionHeader match UploadPart"),
            "{msg}"
        );
    }

    #[test]
    fn no_policy_fails_the_encryption_denies_but_refuses_no_parts() {
        let live = LiveConfig {
            policy: Observed::Found(None),
            ..good()
        };
        let report = evaluate(&spec(), &live);
        for id in [
            "policy.DenyWrongEncryptionHeader",
            "policy.DenyWrongKmsKey",
            "policy.DenyKmsUploadWithoutKeyId",
        ] {
            assert_eq!(status(&report, id), Status::Fail, "{id}");
        }
        assert_eq!(status(&report, "policy-allows-multipart"), Status::Pass);
    }

    #[test]
    fn block_public_acls_off_fails_where_it_is_not_the_rgw_bug() {
        let live = LiveConfig {
            public_access_block: Observed::Found(Some(
                PublicAccessBlock::ALL_BUT_BLOCK_PUBLIC_ACLS,
            )),
            ..good()
        };
        let report = evaluate(&spec(), &live);
        assert_eq!(status(&report, "public-access-block"), Status::Fail);
        assert_eq!(
            message(&report, "public-access-block"),
            "off: BlockPublicAcls"
        );
        // And on RGW, a flag other than BlockPublicAcls off still fails.
        let live = LiveConfig {
            public_access_block: Observed::Found(Some(PublicAccessBlock {
                restrict_public_buckets: false,
                ..PublicAccessBlock::ALL_BUT_BLOCK_PUBLIC_ACLS
            })),
            ..rgw()
        };
        assert_eq!(
            status(&evaluate(&spec(), &live), "public-access-block"),
            Status::Fail
        );
    }

    #[test]
    fn no_object_lock_fails_lock_and_retention() {
        let live = LiveConfig {
            object_lock: Observed::Found(None),
            ..good()
        };
        let report = evaluate(&spec(), &live);
        assert_eq!(status(&report, "object-lock"), Status::Fail);
        assert_eq!(status(&report, "default-retention"), Status::Fail);
    }

    #[test]
    fn retention_mode_and_days_are_checked() {
        let with = |mode, days| LiveConfig {
            object_lock: Observed::Found(Some(ObjectLockState {
                enabled: true,
                default_retention: Some(DefaultRetention {
                    mode: Some(mode),
                    days,
                    as_configured: format!("{days} days"),
                }),
            })),
            ..good()
        };
        let report = evaluate(&spec(), &with(LockMode::Compliance, 30));
        assert_eq!(status(&report, "default-retention"), Status::Fail);
        assert!(
            message(&report, "default-retention")
                .contains("30 days is shorter than the minimum of 365 days")
        );
        let report = evaluate(&spec(), &with(LockMode::Governance, 400));
        assert!(
            message(&report, "default-retention")
                .contains("the mode is GOVERNANCE, expected COMPLIANCE")
        );
        // GOVERNANCE expected: both modes pass.
        let gov = CheckSpec {
            expect_mode: LockMode::Governance,
            ..spec()
        };
        assert_eq!(
            status(
                &evaluate(&gov, &with(LockMode::Governance, 400)),
                "default-retention"
            ),
            Status::Pass
        );
        assert_eq!(
            status(
                &evaluate(&gov, &with(LockMode::Compliance, 400)),
                "default-retention"
            ),
            Status::Pass
        );
    }

    #[test]
    fn a_removed_statement_fails_its_own_control_only() {
        let mut p = policy(false);
        p["Statement"]
            .as_array_mut()
            .unwrap()
            .retain(|s| s["Sid"] != "DenyObjectDeletion");
        let live = LiveConfig {
            policy: Observed::Found(Some(p.to_string())),
            ..good()
        };
        let report = evaluate(&spec(), &live);
        let failed: Vec<&str> = report
            .findings
            .iter()
            .filter(|f| f.status == Status::Fail)
            .map(|f| f.control.id)
            .collect();
        assert_eq!(failed, ["policy.DenyObjectDeletion"]);
    }

    #[test]
    fn the_wrong_key_fails_encryption_and_the_key_statement() {
        let other = CheckSpec {
            kms_key: Some("arn:aws:kms:us-east-1:111122223333:key/other".into()),
            ..spec()
        };
        let report = evaluate(&other, &good());
        assert_eq!(status(&report, "default-encryption"), Status::Fail);
        assert_eq!(status(&report, "policy.DenyWrongKmsKey"), Status::Fail);
    }

    #[test]
    fn without_key_and_writer_they_are_taken_from_the_bucket_and_said_so() {
        let loose = CheckSpec {
            kms_key: None,
            writer_arn: None,
            ..spec()
        };
        let report = evaluate(&loose, &good());
        assert!(!report.has_failures(), "{}", report.to_text());
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("taken from the bucket's default encryption"))
        );
        assert!(report.notes.iter().any(|n| n.contains(WRITER)));
        // On RGW the key comes from the policy.
        let report = evaluate(&loose, &rgw());
        assert!(!report.has_failures(), "{}", report.to_text());
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("taken from the bucket policy itself"))
        );
    }

    #[test]
    fn bucket_key_off_and_sse_s3_fail() {
        let live = LiveConfig {
            encryption: Observed::Found(Some(vec![DefaultEncryption {
                algorithm: "AES256".into(),
                kms_key: None,
                bucket_key: Some(false),
            }])),
            ..good()
        };
        let msg = message(&evaluate(&spec(), &live), "default-encryption");
        assert!(
            msg.contains("the algorithm is AES256, expected aws:kms"),
            "{msg}"
        );
        assert!(msg.contains("bucket key is not enabled"), "{msg}");
    }

    #[test]
    fn the_optional_statement_is_unsupported_on_rgw_and_checked_elsewhere() {
        let require = CheckSpec {
            require_writer_only_uploads: true,
            ..spec()
        };
        let report = evaluate(&require, &good());
        assert_eq!(
            status(&report, "policy.DenyUploadsByNonWriter"),
            Status::Fail
        );
        let with = LiveConfig {
            policy: Observed::Found(Some(policy(true).to_string())),
            ..good()
        };
        assert_eq!(
            status(&evaluate(&require, &with), "policy.DenyUploadsByNonWriter"),
            Status::Pass
        );
        let on_rgw = LiveConfig {
            policy: Observed::Found(Some(policy(true).to_string())),
            ..rgw()
        };
        assert_eq!(
            status(&evaluate(&spec(), &on_rgw), "policy.DenyUploadsByNonWriter"),
            Status::UnsupportedByEndpoint
        );
    }

    #[test]
    fn expirations_before_retention_fail_the_lifecycle_control() {
        let mut rules = module_rules(&LifecycleSettings::default());
        rules[2].expiration = Some(Expiration::Days(100));
        let live = LiveConfig {
            lifecycle: Observed::Found(rules),
            ..good()
        };
        let msg = message(&evaluate(&spec(), &live), "lifecycle");
        assert!(
            msg.contains("\"stele-evidence\"") && msg.contains("before the 400-day retention"),
            "{msg}"
        );
    }

    #[test]
    fn a_public_policy_fails_by_status_or_by_local_evaluation() {
        let mut p = policy(false);
        p["Statement"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
                "Action": "s3:GetObject", "Resource": "arn:aws:s3:::stele-example/*"
            }));
        let live = LiveConfig {
            policy: Observed::Found(Some(p.to_string())),
            policy_status: Observed::Found(None),
            ..good()
        };
        let report = evaluate(&spec(), &live);
        assert!(message(&report, "policy-not-public").contains("PublicRead"));
        let live = LiveConfig {
            policy_status: Observed::Found(Some(true)),
            ..good()
        };
        assert_eq!(
            status(&evaluate(&spec(), &live), "policy-not-public"),
            Status::Fail
        );
    }

    #[test]
    fn optional_controls_appear_only_when_asked_for() {
        let report = evaluate(&spec(), &good());
        assert!(report.finding("mfa-delete").is_none());
        assert!(report.finding("access-logging").is_none());
        assert_eq!(report.notes.len(), 2);
        let strict = CheckSpec {
            require_mfa_delete: true,
            require_logging: true,
            ..spec()
        };
        let report = evaluate(&strict, &good());
        assert_eq!(status(&report, "mfa-delete"), Status::Fail);
        assert_eq!(status(&report, "access-logging"), Status::Fail);
    }

    #[test]
    fn an_unreadable_policy_fails_every_statement_with_the_reason() {
        let live = LiveConfig {
            policy: Observed::Unreadable("GetBucketPolicy was denied".into()),
            ..good()
        };
        let report = evaluate(&spec(), &live);
        let msg = message(&report, "policy.DenyBucketDeletion");
        assert!(msg.contains("GetBucketPolicy was denied"), "{msg}");
    }
}
