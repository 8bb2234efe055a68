//! Does a live bucket policy enforce each required Deny? (No I/O.)
//!
//! The required statements are the template's, rendered with the values the
//! bucket should have. A required Deny is enforced when, for every action and
//! resource it names, some live `Deny` statement
//!
//! - applies to the same principals (`"*"` covers everyone; a named
//!   principal must be named, or not excluded by a `NotPrincipal`),
//! - covers the action (IAM wildcards, `NotAction`) and the resource
//!   (wildcards, `NotResource`),
//! - and is not narrower by its conditions: every condition it has must be
//!   one of the required conditions with the same operator, key and values
//!   (conditions are ANDed, so any other condition makes the Deny match fewer
//!   requests; a missing condition makes it match more, which still enforces).
//!
//! Live statements may be split, merged or renamed: only meaning counts. The
//! `Sid`s are used for reporting and to find the statement to blame.

use std::collections::BTreeSet;

use crate::policy::{
    Conditions, Effect, PolicyDocument, PrincipalSpec, Principals, Statement, Targets, glob_match,
};

/// The outcome for one required statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Enforced; the message names the live statements that do it.
    Enforced(String),
    /// Not enforced; the message says what was found instead.
    NotEnforced(String),
}

/// Evaluates every statement of `required` against `live` (`None`: the bucket has no policy).
pub fn evaluate(
    required: &PolicyDocument,
    live: Option<&PolicyDocument>,
) -> Vec<(String, Verdict)> {
    required
        .statements
        .iter()
        .map(|req| {
            let sid = req.sid.clone().unwrap_or_else(|| "(no Sid)".into());
            let verdict = match live {
                None => Verdict::NotEnforced("the bucket has no bucket policy".into()),
                Some(live) => evaluate_statement(req, live),
            };
            (sid, verdict)
        })
        .collect()
}

/// Evaluates one required Deny against a live policy.
pub fn evaluate_statement(required: &Statement, live: &PolicyDocument) -> Verdict {
    let sid = required.sid.as_deref().unwrap_or("(no Sid)");
    let (Some(PrincipalSpec::Is(who)), Targets::Only(actions), Targets::Only(resources)) =
        (&required.principal, &required.actions, &required.resources)
    else {
        return Verdict::NotEnforced(format!(
            "{sid}: the required statement uses NotPrincipal/NotAction/NotResource, which this checker does not evaluate"
        ));
    };
    let mut enforcing: BTreeSet<String> = BTreeSet::new();
    for action in actions {
        for resource in resources {
            let covering: Vec<String> = live
                .statements
                .iter()
                .enumerate()
                .filter(|(_, s)| covers(s, who, action, resource, required))
                .map(|(i, s)| label(s, i))
                .collect();
            if covering.is_empty() {
                return Verdict::NotEnforced(diagnose(required, who, action, resource, live));
            }
            enforcing.extend(covering);
        }
    }
    let by: Vec<String> = enforcing.into_iter().collect();
    Verdict::Enforced(format!(
        "enforced by statement{} {}",
        if by.len() == 1 { "" } else { "s" },
        by.join(", ")
    ))
}

fn label(s: &Statement, index: usize) -> String {
    s.sid
        .clone()
        .unwrap_or_else(|| format!("#{} (no Sid)", index + 1))
}

fn covers(
    live: &Statement,
    who: &Principals,
    action: &str,
    resource: &str,
    req: &Statement,
) -> bool {
    live.effect == Effect::Deny
        && live.applies_to_principals(who)
        && live.applies_to_action(action)
        && live.applies_to_resource(resource)
        && conditions_not_narrower(live, req)
}

/// Every live condition must be one of the required ones, exactly, once
/// both are in [`canonical_conditions`] form.
fn conditions_not_narrower(live: &Statement, req: &Statement) -> bool {
    let want = canonical_conditions(&req.conditions);
    canonical_conditions(&live.conditions).is_subset(&want)
}

/// The operator a presence test is rewritten to by [`canonical_conditions`].
const PRESENT: &str = "(key present)";

/// One condition as `(operator, key, values)`.
type ConditionTerm = (String, String, BTreeSet<String>);

/// The conditions as a set of terms, with the spellings that mean the same
/// thing made equal, so a policy is judged by meaning:
///
/// - `Null key = "false"` and `StringLike key = "*"` both say "the key is in
///   the request" (the template uses `StringLike`, which Ceph RGW 16
///   evaluates correctly; RGW ignores the value of a `Null` test);
/// - once a key must be present, `…IfExists` on that key is the plain operator.
fn canonical_conditions(conditions: &Conditions) -> BTreeSet<ConditionTerm> {
    let is_presence_test = |op: &str, values: &BTreeSet<String>| {
        values.len() == 1
            && ((op == "Null" && values.contains("false"))
                || (op == "StringLike" && values.contains("*")))
    };
    let present: BTreeSet<&str> = conditions
        .iter()
        .flat_map(|(op, keys)| keys.iter().map(move |(key, values)| (op, key, values)))
        .filter(|(op, _, values)| is_presence_test(op, values))
        .map(|(_, key, _)| key.as_str())
        .collect();
    conditions
        .iter()
        .flat_map(|(op, keys)| keys.iter().map(move |(key, values)| (op, key, values)))
        .map(|(op, key, values)| {
            if is_presence_test(op, values) {
                return (PRESENT.to_owned(), key.clone(), BTreeSet::new());
            }
            let op = match op.strip_suffix("IfExists") {
                Some(plain) if present.contains(key.as_str()) => plain,
                _ => op.as_str(),
            };
            (op.to_owned(), key.clone(), values.clone())
        })
        .collect()
}

/// Says why nothing enforces `action` on `resource`, blaming the statement
/// with the required Sid, else the statements that mention the action.
fn diagnose(
    req: &Statement,
    who: &Principals,
    action: &str,
    resource: &str,
    live: &PolicyDocument,
) -> String {
    let sid = req.sid.as_deref().unwrap_or("(no Sid)");
    let head = format!("{sid} is not enforced for {action} on {resource}");
    let numbered = || live.statements.iter().enumerate();
    let mut suspects: Vec<(usize, &Statement)> = numbered()
        .filter(|(_, s)| s.sid.as_deref() == Some(sid))
        .collect();
    let mut preface = String::new();
    if suspects.is_empty() {
        suspects = numbered()
            .filter(|(_, s)| s.applies_to_action(action) && s.applies_to_resource(resource))
            .collect();
        preface = format!("the statement is missing (no statement named {sid})");
        if suspects.is_empty() {
            return format!("{head}: {preface}, and no other statement applies to {action} there");
        }
        preface.push_str("; other statements on that action do not enforce it: ");
    }
    let findings: Vec<String> = suspects
        .iter()
        .map(|(i, s)| {
            format!(
                "statement {}: {}",
                label(s, *i),
                problems(s, req, who, action, resource).join("; ")
            )
        })
        .collect();
    format!("{head}: {preface}{}", findings.join(" | "))
}

fn problems(
    s: &Statement,
    req: &Statement,
    who: &Principals,
    action: &str,
    resource: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    if s.effect != Effect::Deny {
        out.push("it is an Allow, not a Deny".to_owned());
    }
    if !s.applies_to_principals(who) {
        out.push(format!(
            "it applies to {}, not to {}",
            describe_principal(s.principal.as_ref()),
            describe_principals(who)
        ));
    }
    if !s.applies_to_action(action) {
        out.push(format!(
            "it does not cover {action} (actions: {})",
            describe_targets(&s.actions)
        ));
    }
    if !s.applies_to_resource(resource) {
        out.push(format!(
            "it does not cover {resource} (resources: {})",
            describe_targets(&s.resources)
        ));
    }
    for (op, keys) in &s.conditions {
        for (key, values) in keys {
            let want_same_op = req.conditions.get(op).and_then(|k| k.get(key));
            let other_op = req
                .conditions
                .iter()
                .find(|(o, k)| *o != op && k.contains_key(key));
            match (want_same_op, other_op) {
                (Some(want), _) if want != values => out.push(format!(
                    "condition {op} {key} is {}, expected {}",
                    list(values),
                    list(want)
                )),
                (Some(_), _) => {}
                (None, Some((want_op, want_keys))) => out.push(format!(
                    "condition on {key} uses {op} {}, expected {want_op} {}",
                    list(values),
                    want_keys.get(key).map_or_else(String::new, list)
                )),
                (None, None) => out.push(format!(
                    "extra condition {op} {key} = {} narrows the Deny{}",
                    list(values),
                    if req.conditions.is_empty() {
                        String::new()
                    } else {
                        format!(" (expected only {})", describe_conditions(req))
                    }
                )),
            }
        }
    }
    if out.is_empty() {
        // Only reachable when the statement is fine for this pair but split
        // coverage elsewhere failed; say so rather than nothing.
        out.push("it does not, together with the other statements, cover the request".into());
    }
    out
}

fn list(values: &BTreeSet<String>) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", items.join(", "))
}

fn describe_conditions(s: &Statement) -> String {
    let parts: Vec<String> = s
        .conditions
        .iter()
        .flat_map(|(op, keys)| {
            keys.iter()
                .map(move |(k, v)| format!("{op} {k} = {}", list(v)))
        })
        .collect();
    parts.join(" and ")
}

fn describe_targets(t: &Targets) -> String {
    match t {
        Targets::Only(items) => items.iter().cloned().collect::<Vec<_>>().join(", "),
        Targets::AllExcept(items) => format!(
            "everything but {}",
            items.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
    }
}

fn describe_principals(p: &Principals) -> String {
    match p {
        Principals::Anyone => "everyone (\"*\")".into(),
        Principals::Named(map) => map
            .iter()
            .map(|(kind, ids)| {
                format!(
                    "{kind} {}",
                    ids.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn describe_principal(p: Option<&PrincipalSpec>) -> String {
    match p {
        None => "no principal".into(),
        Some(PrincipalSpec::Is(p)) => describe_principals(p),
        Some(PrincipalSpec::IsNot(p)) => format!("everyone except {}", describe_principals(p)),
    }
}

/// The request headers a part of a multipart upload never carries: AWS
/// authorizes `UploadPart` and `CompleteMultipartUpload` as `s3:PutObject`,
/// but only `CreateMultipartUpload` sends the upload's encryption headers.
const HEADERS_ABSENT_FROM_PARTS: [&str; 2] = [
    "s3:x-amz-server-side-encryption",
    "s3:x-amz-server-side-encryption-aws-kms-key-id",
];

/// How one condition fares against a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Matches,
    DoesNotMatch,
    /// The condition tests something this simulation does not model.
    Unknown,
}

/// The live Deny statements that refuse the parts of a multipart upload by
/// `writer` (`None`: any principal) into `object_arn`, as AWS evaluates them
/// (IAM: a key missing from the request makes a negated operator and every
/// `…IfExists` operator true, a positive operator false). Statements are
/// named by `Sid` (or position). Only certain refusals are reported: a
/// statement with a condition on anything but the encryption headers,
/// `aws:SecureTransport` (a part goes over TLS) and `aws:PrincipalArn` (the
/// writer) is left out.
pub fn multipart_part_refusals(
    live: &PolicyDocument,
    object_arn: &str,
    writer: Option<&str>,
) -> Vec<String> {
    let who = match writer {
        Some(arn) => {
            Principals::Named([("AWS".to_owned(), BTreeSet::from([arn.to_owned()]))].into())
        }
        None => Principals::Anyone,
    };
    live.statements
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            s.effect == Effect::Deny
                && s.applies_to_principals(&who)
                && s.applies_to_action("s3:PutObject")
                && s.applies_to_resource(object_arn)
                && s.conditions.iter().all(|(op, keys)| {
                    keys.iter().all(|(key, values)| {
                        part_condition(op, key, values, writer) == Outcome::Matches
                    })
                })
        })
        .map(|(i, s)| label(s, i))
        .collect()
}

/// One condition of a Deny against an `UploadPart` request.
fn part_condition(op: &str, key: &str, values: &BTreeSet<String>, writer: Option<&str>) -> Outcome {
    let (set_prefix, base) = match op.split_once(':') {
        Some((prefix, rest)) => (Some(prefix), rest),
        None => (None, op),
    };
    let (base, if_exists) = match base.strip_suffix("IfExists") {
        Some(plain) => (plain, true),
        None => (base, false),
    };
    let negated = base.contains("Not");
    let outcome = |yes: bool| {
        if yes {
            Outcome::Matches
        } else {
            Outcome::DoesNotMatch
        }
    };
    let value: Option<&str> = if HEADERS_ABSENT_FROM_PARTS.contains(&key) {
        None
    } else if key == "aws:securetransport" {
        Some("true")
    } else if key == "aws:principalarn" {
        match writer {
            Some(arn) => Some(arn),
            None => return Outcome::Unknown,
        }
    } else {
        return Outcome::Unknown;
    };
    let Some(value) = value else {
        // The key is missing from the request.
        return match (base, set_prefix) {
            ("Null", _) => outcome(values.contains("true")),
            (_, Some(prefix)) => outcome(prefix.eq_ignore_ascii_case("ForAllValues")),
            _ => outcome(if_exists || negated),
        };
    };
    if base == "Null" {
        return outcome(values.contains("false"));
    }
    if set_prefix.is_some() {
        return Outcome::Unknown;
    }
    let any = |case_insensitive: bool, wildcards: bool| {
        values.iter().any(|v| {
            if wildcards {
                glob_match(v, value, case_insensitive)
            } else if case_insensitive {
                v.eq_ignore_ascii_case(value)
            } else {
                v == value
            }
        })
    };
    match base {
        "Bool" => outcome(values.iter().any(|v| v == value)),
        "StringEquals" | "ArnEquals" => outcome(any(false, base == "ArnEquals")),
        "StringNotEquals" | "ArnNotEquals" => outcome(!any(false, base == "ArnNotEquals")),
        "StringEqualsIgnoreCase" => outcome(any(true, false)),
        "StringNotEqualsIgnoreCase" => outcome(!any(true, false)),
        "StringLike" | "ArnLike" => outcome(any(false, true)),
        "StringNotLike" | "ArnNotLike" => outcome(!any(false, true)),
        _ => Outcome::Unknown,
    }
}

/// The KMS key a live policy pins uploads to: the single value of a Deny on
/// `s3:PutObject` with `StringNotEquals s3:x-amz-server-side-encryption-aws-kms-key-id`.
pub fn pinned_kms_key(live: &PolicyDocument) -> Option<String> {
    single_value(live, "s3:PutObject", |s| {
        s.conditions
            .get("StringNotEquals")
            .and_then(|k| k.get("s3:x-amz-server-side-encryption-aws-kms-key-id"))
            .cloned()
    })
}

/// The principal a live policy denies `s3:BypassGovernanceRetention` to, when it names exactly one.
pub fn governance_bypass_denied_to(live: &PolicyDocument) -> Option<String> {
    single_value(live, "s3:BypassGovernanceRetention", |s| {
        match &s.principal {
            Some(PrincipalSpec::Is(Principals::Named(map))) => map.get("AWS").cloned(),
            _ => None,
        }
    })
}

fn single_value(
    live: &PolicyDocument,
    action: &str,
    pick: impl Fn(&Statement) -> Option<BTreeSet<String>>,
) -> Option<String> {
    let found: BTreeSet<String> = live
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Deny && s.applies_to_action(action))
        .filter_map(pick)
        .flatten()
        .collect();
    match found.len() {
        1 => found.into_iter().next(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::template::{PolicyValues, render_policy};

    const BUCKET: &str = "arn:aws:s3:::stele-example";
    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k1";
    const WRITER: &str = "arn:aws:iam::111122223333:role/stele-writer";

    fn rendered(writer_only: bool) -> Value {
        render_policy(
            &PolicyValues {
                bucket_arn: BUCKET.into(),
                kms_key_arn: KEY.into(),
                writer_role_arn: WRITER.into(),
            },
            writer_only,
        )
        .unwrap()
    }

    fn required() -> PolicyDocument {
        PolicyDocument::from_value(&rendered(true)).unwrap()
    }

    /// Evaluates `live` and returns the verdict for `sid`.
    fn verdict(live: &Value, sid: &str) -> Verdict {
        let live = PolicyDocument::from_value(live).unwrap();
        evaluate(&required(), Some(&live))
            .into_iter()
            .find(|(s, _)| s == sid)
            .unwrap()
            .1
    }

    /// The rendered policy with statement `sid` changed by `edit`.
    fn with_statement(sid: &str, edit: impl FnOnce(&mut Value)) -> Value {
        let mut policy = rendered(true);
        let stmt = policy["Statement"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|s| s["Sid"] == sid)
            .unwrap();
        edit(stmt);
        policy
    }

    fn without(sid: &str) -> Value {
        let mut policy = rendered(true);
        policy["Statement"]
            .as_array_mut()
            .unwrap()
            .retain(|s| s["Sid"] != sid);
        policy
    }

    fn not_enforced(v: Verdict) -> String {
        match v {
            Verdict::NotEnforced(m) => m,
            Verdict::Enforced(m) => panic!("expected a failure, got: {m}"),
        }
    }

    const ALL_SIDS: [&str; 8] = [
        "DenyInsecureTransport",
        "DenyWrongEncryptionHeader",
        "DenyWrongKmsKey",
        "DenyKmsUploadWithoutKeyId",
        "DenyObjectDeletion",
        "DenyBucketDeletion",
        "DenyGovernanceBypassByWriter",
        "DenyUploadsByNonWriter",
    ];

    #[test]
    fn the_rendered_policy_enforces_every_statement() {
        let live = PolicyDocument::from_value(&rendered(true)).unwrap();
        for (sid, v) in evaluate(&required(), Some(&live)) {
            assert_eq!(v, Verdict::Enforced(format!("enforced by statement {sid}")));
        }
    }

    #[test]
    fn each_statement_missing_is_reported_as_missing() {
        for sid in ALL_SIDS {
            let msg = not_enforced(verdict(&without(sid), sid));
            assert!(msg.starts_with(&format!("{sid} is not enforced")), "{msg}");
        }
        let msg = not_enforced(verdict(
            &without("DenyBucketDeletion"),
            "DenyBucketDeletion",
        ));
        assert!(
            msg.contains("the statement is missing (no statement named DenyBucketDeletion); other statements on that action do not enforce it: statement DenyInsecureTransport: extra condition"),
            "{msg}"
        );
        let mut bare = without("DenyGovernanceBypassByWriter");
        bare["Statement"]
            .as_array_mut()
            .unwrap()
            .retain(|s| s["Sid"] != "DenyInsecureTransport");
        let msg = not_enforced(verdict(&bare, "DenyGovernanceBypassByWriter"));
        assert!(
            msg.ends_with("and no other statement applies to s3:BypassGovernanceRetention there"),
            "{msg}"
        );
    }

    #[test]
    fn no_policy_at_all_fails_every_statement() {
        for (_, v) in evaluate(&required(), None) {
            assert_eq!(
                v,
                Verdict::NotEnforced("the bucket has no bucket policy".into())
            );
        }
    }

    #[test]
    fn allow_instead_of_deny_fails_for_each_statement() {
        for sid in ALL_SIDS {
            let live = with_statement(sid, |s| s["Effect"] = json!("Allow"));
            let msg = not_enforced(verdict(&live, sid));
            assert!(msg.contains("it is an Allow, not a Deny"), "{sid}: {msg}");
        }
    }

    #[test]
    fn a_narrower_action_fails() {
        let live = with_statement("DenyObjectDeletion", |s| {
            s["Action"] = json!("s3:DeleteObject")
        });
        let msg = not_enforced(verdict(&live, "DenyObjectDeletion"));
        assert!(
            msg.contains("does not cover s3:DeleteObjectVersion (actions: s3:DeleteObject)"),
            "{msg}"
        );
        let live = with_statement("DenyInsecureTransport", |s| {
            s["Action"] = json!("s3:GetObject")
        });
        assert!(matches!(
            verdict(&live, "DenyInsecureTransport"),
            Verdict::NotEnforced(_)
        ));
    }

    #[test]
    fn a_narrower_resource_or_principal_fails() {
        let live = with_statement("DenyObjectDeletion", |s| {
            s["Resource"] = json!(format!("{BUCKET}/anchors/*"))
        });
        let msg = not_enforced(verdict(&live, "DenyObjectDeletion"));
        assert!(msg.contains(&format!("does not cover {BUCKET}/*")), "{msg}");

        let live = with_statement("DenyBucketDeletion", |s| {
            s["Principal"] = json!({"AWS": "arn:aws:iam::111122223333:role/other"})
        });
        let msg = not_enforced(verdict(&live, "DenyBucketDeletion"));
        assert!(msg.contains("not to everyone"), "{msg}");

        let live = with_statement("DenyGovernanceBypassByWriter", |s| {
            s["Principal"] = json!({"AWS": "arn:aws:iam::111122223333:role/someone-else"})
        });
        assert!(matches!(
            verdict(&live, "DenyGovernanceBypassByWriter"),
            Verdict::NotEnforced(_)
        ));
    }

    #[test]
    fn a_weakened_condition_fails_and_says_how() {
        // Wrong value.
        let live = with_statement(
            "DenyWrongKmsKey",
            |s| s["Condition"]["StringNotEquals"] = json!({"s3:x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:us-east-1:111122223333:key/other"}),
        );
        let msg = not_enforced(verdict(&live, "DenyWrongKmsKey"));
        assert!(msg.contains("condition StringNotEquals s3:x-amz-server-side-encryption-aws-kms-key-id is [\"arn:aws:kms:us-east-1:111122223333:key/other\"]"), "{msg}");

        // Wrong operator.
        let live = with_statement("DenyWrongEncryptionHeader", |s| {
            s["Condition"] = json!({"StringEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}})
        });
        let msg = not_enforced(verdict(&live, "DenyWrongEncryptionHeader"));
        assert!(msg.contains("uses StringEquals"), "{msg}");

        // Wrong key.
        let live = with_statement("DenyKmsUploadWithoutKeyId", |s| {
            s["Condition"]["Null"] = json!({"s3:x-amz-server-side-encryption": "true"})
        });
        let msg = not_enforced(verdict(&live, "DenyKmsUploadWithoutKeyId"));
        assert!(
            msg.contains("condition on s3:x-amz-server-side-encryption uses Null [\"true\"]"),
            "{msg}"
        );

        // Null false instead of true.
        let live = with_statement("DenyKmsUploadWithoutKeyId", |s| {
            s["Condition"]["Null"] =
                json!({"s3:x-amz-server-side-encryption-aws-kms-key-id": "false"})
        });
        assert!(matches!(
            verdict(&live, "DenyKmsUploadWithoutKeyId"),
            Verdict::NotEnforced(_)
        ));

        // An extra value on a negated operator lets more through.
        let live = with_statement("DenyWrongEncryptionHeader", |s| {
            s["Condition"]["StringNotEquals"] =
                json!({"s3:x-amz-server-side-encryption": ["aws:kms", "AES256"]})
        });
        assert!(matches!(
            verdict(&live, "DenyWrongEncryptionHeader"),
            Verdict::NotEnforced(_)
        ));

        // An extra condition narrows an unconditional Deny.
        let live = with_statement("DenyBucketDeletion", |s| {
            s["Condition"] = json!({"Bool": {"aws:SecureTransport": "false"}})
        });
        let msg = not_enforced(verdict(&live, "DenyBucketDeletion"));
        assert!(
            msg.contains("extra condition Bool aws:securetransport"),
            "{msg}"
        );

        // SecureTransport "true" would deny TLS and allow HTTP: the opposite.
        let live = with_statement("DenyInsecureTransport", |s| {
            s["Condition"] = json!({"Bool": {"aws:SecureTransport": "true"}})
        });
        assert!(matches!(
            verdict(&live, "DenyInsecureTransport"),
            Verdict::NotEnforced(_)
        ));
    }

    #[test]
    fn meaning_counts_not_spelling() {
        // Split into two statements, different Sids, wildcards, other case.
        let live = with_statement("DenyObjectDeletion", |s| {
            s["Sid"] = json!("A");
            s["Action"] = json!("s3:deleteobject");
        });
        let mut live = live;
        live["Statement"].as_array_mut().unwrap().push(json!({
            "Sid": "B", "Effect": "Deny", "Principal": {"AWS": "*"},
            "Action": ["s3:DeleteObjectVer*"], "Resource": "arn:aws:s3:::stele-example*"
        }));
        assert_eq!(
            verdict(&live, "DenyObjectDeletion"),
            Verdict::Enforced("enforced by statements A, B".into())
        );

        // A broader Deny (all of s3, no condition) still enforces.
        let live = with_statement("DenyBucketDeletion", |s| s["Action"] = json!("s3:*"));
        assert!(matches!(
            verdict(&live, "DenyBucketDeletion"),
            Verdict::Enforced(_)
        ));
        let live = with_statement("DenyBucketDeletion", |s| s["Action"] = json!("*"));
        assert!(matches!(
            verdict(&live, "DenyBucketDeletion"),
            Verdict::Enforced(_)
        ));

        // Condition keys are case-insensitive; Bool values too.
        let live = with_statement("DenyInsecureTransport", |s| {
            s["Condition"] = json!({"Bool": {"AWS:SECURETRANSPORT": ["False"]}})
        });
        assert!(matches!(
            verdict(&live, "DenyInsecureTransport"),
            Verdict::Enforced(_)
        ));
    }

    #[test]
    fn not_action_deny_counts_when_it_covers() {
        let mut live = without("DenyBucketDeletion");
        live["Statement"].as_array_mut().unwrap().push(json!({
            "Sid": "DenyAllButReads", "Effect": "Deny", "Principal": "*",
            "NotAction": ["s3:Get*", "s3:List*"], "Resource": BUCKET
        }));
        assert!(matches!(
            verdict(&live, "DenyBucketDeletion"),
            Verdict::Enforced(_)
        ));
    }

    const PART: &str = "arn:aws:s3:::stele-example/evidence/c1/2026/01/big.bin";

    /// The encryption statements of the template before multipart uploads
    /// were considered (policy v1), as buckets provisioned then still have them.
    fn v1_encryption_statements() -> Vec<Value> {
        let resource = format!("{BUCKET}/*");
        vec![
            json!({"Sid": "DenyWrongEncryptionHeader", "Effect": "Deny", "Principal": "*",
                "Action": "s3:PutObject", "Resource": resource,
                "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}}),
            json!({"Sid": "DenyMissingEncryptionHeader", "Effect": "Deny", "Principal": "*",
                "Action": "s3:PutObject", "Resource": resource,
                "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}}),
            json!({"Sid": "DenyWrongKmsKey", "Effect": "Deny", "Principal": "*",
                "Action": "s3:PutObject", "Resource": resource,
                "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": KEY}}}),
        ]
    }

    fn policy_of(statements: Vec<Value>) -> PolicyDocument {
        PolicyDocument::from_value(&json!({"Version": "2012-10-17", "Statement": statements}))
            .unwrap()
    }

    #[test]
    fn the_template_lets_the_parts_of_a_multipart_upload_through() {
        for writer_only in [false, true] {
            let live = PolicyDocument::from_value(&rendered(writer_only)).unwrap();
            assert!(
                multipart_part_refusals(&live, PART, Some(WRITER)).is_empty(),
                "writer_only={writer_only}"
            );
        }
        // Without a known writer the optional statement's outcome is unknown, so not reported.
        let live = PolicyDocument::from_value(&rendered(true)).unwrap();
        assert!(multipart_part_refusals(&live, PART, None).is_empty());
    }

    #[test]
    fn the_v1_encryption_statements_refuse_every_part() {
        // Each of the three matches a part on AWS: Null = true directly, and
        // StringNotEquals because a key missing from the request makes a
        // negated operator true.
        assert_eq!(
            multipart_part_refusals(&policy_of(v1_encryption_statements()), PART, Some(WRITER)),
            [
                "DenyWrongEncryptionHeader",
                "DenyMissingEncryptionHeader",
                "DenyWrongKmsKey"
            ]
        );
        // ...IfExists does not help a Deny: a missing key makes it true too.
        let if_exists = json!({"Sid": "IfExists", "Effect": "Deny", "Principal": "*",
            "Action": "s3:PutObject", "Resource": format!("{BUCKET}/*"),
            "Condition": {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption-aws-kms-key-id": KEY}}});
        assert_eq!(
            multipart_part_refusals(&policy_of(vec![if_exists]), PART, None),
            ["IfExists"]
        );
    }

    #[test]
    fn only_certain_refusals_of_parts_are_reported() {
        let statement = |sid: &str, condition: Value| {
            json!({"Sid": sid, "Effect": "Deny", "Principal": "*",
                "Action": "s3:*", "Resource": format!("{BUCKET}/*"), "Condition": condition})
        };
        let live = policy_of(vec![
            // Guarded by a presence test, in either spelling: never matches a part.
            statement(
                "NullGuard",
                json!({"Null": {"s3:x-amz-server-side-encryption": "false"},
                "StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}),
            ),
            // A part goes over TLS.
            statement("Tls", json!({"Bool": {"aws:SecureTransport": "false"}})),
            // Positive operator on a missing key: false.
            statement(
                "Positive",
                json!({"StringEquals": {"s3:x-amz-server-side-encryption": "AES256"}}),
            ),
            // Something not modelled: left out rather than guessed.
            statement(
                "SourceIp",
                json!({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
            ),
            // The writer is the principal.
            statement(
                "NotWriter",
                json!({"ArnNotEquals": {"aws:PrincipalArn": WRITER}}),
            ),
        ]);
        assert!(multipart_part_refusals(&live, PART, Some(WRITER)).is_empty());
        // An unconditional Deny on PutObject refuses parts as well.
        let live = policy_of(vec![
            json!({"Sid": "NoUploads", "Effect": "Deny", "Principal": "*",
            "Action": "s3:PutObject", "Resource": "*"}),
        ]);
        assert_eq!(multipart_part_refusals(&live, PART, None), ["NoUploads"]);
    }

    #[test]
    fn a_presence_test_counts_in_either_spelling() {
        // Null = false is AWS's documented spelling of "the header is present";
        // with it, ...IfExists is the plain operator. Both enforce the statement.
        let live = with_statement("DenyWrongEncryptionHeader", |s| {
            s["Condition"] = json!({
                "Null": {"s3:x-amz-server-side-encryption": "false"},
                "StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}
            })
        });
        assert!(matches!(
            verdict(&live, "DenyWrongEncryptionHeader"),
            Verdict::Enforced(_)
        ));
        // The v1 forms (no presence test, no aws:kms gate) are broader, so they
        // still enforce the statements; that they refuse multipart uploads is
        // a separate finding.
        let mut live = without("DenyWrongKmsKey");
        let statements = live["Statement"].as_array_mut().unwrap();
        statements.retain(|s| s["Sid"] != "DenyWrongEncryptionHeader");
        let mut v1 = v1_encryption_statements();
        statements.push(v1.remove(2));
        statements.push(v1.remove(0));
        for sid in ["DenyWrongKmsKey", "DenyWrongEncryptionHeader"] {
            assert!(matches!(verdict(&live, sid), Verdict::Enforced(_)), "{sid}");
        }
        // A presence test does not excuse a wrong value.
        let live = with_statement("DenyWrongEncryptionHeader", |s| {
            s["Condition"] = json!({
                "StringLike": {"s3:x-amz-server-side-encryption": "*"},
                "StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}
            })
        });
        assert!(matches!(
            verdict(&live, "DenyWrongEncryptionHeader"),
            Verdict::NotEnforced(_)
        ));
    }

    #[test]
    fn infers_the_key_and_the_writer_from_a_live_policy() {
        let live = PolicyDocument::from_value(&rendered(false)).unwrap();
        assert_eq!(pinned_kms_key(&live).as_deref(), Some(KEY));
        assert_eq!(governance_bypass_denied_to(&live).as_deref(), Some(WRITER));
        let empty = PolicyDocument::parse(r#"{"Statement":[]}"#).unwrap();
        assert_eq!(pinned_kms_key(&empty), None);
    }
}
