//! The bucket-policy renderer (no I/O).
//!
//! The policy is written once, in `deploy/policy/*.json.tftpl`, and both the
//! Terraform module (`templatefile()`) and this renderer read those files.
//! They are compiled in with `include_str!`, so this crate carries no copy of
//! the statements. The rules are the ones in `deploy/policy/README.md`:
//!
//! 1. placeholders are `${name}` with `name` matching `[A-Za-z_][A-Za-z0-9_]*`;
//!    any other `${`, any `%{` and any `$${` is an error;
//! 2. every placeholder needs a value (unknown names are errors; extra values
//!    are ignored);
//! 3. values are pasted verbatim inside JSON strings, so values containing
//!    `"`, `\`, control characters, `$`, `%`, `{` or `}` are refused, never
//!    escaped;
//! 4. the result must parse as JSON;
//! 5. the optional statement is rendered the same way and appended to
//!    `Statement`.

use serde_json::Value;
use thiserror::Error;

/// `deploy/policy/bucket-policy.json.tftpl`: every statement that is always present.
pub const BASE_TEMPLATE: &str = include_str!("../../../deploy/policy/bucket-policy.json.tftpl");

/// `deploy/policy/deny-non-writer-uploads.json.tftpl`: the optional `DenyUploadsByNonWriter` statement.
pub const WRITER_ONLY_TEMPLATE: &str =
    include_str!("../../../deploy/policy/deny-non-writer-uploads.json.tftpl");

/// Sid of the optional statement.
pub const WRITER_ONLY_SID: &str = "DenyUploadsByNonWriter";

/// The values the templates need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyValues {
    /// `${bucket_arn}`, e.g. `arn:aws:s3:::my-bucket`.
    pub bucket_arn: String,
    /// `${kms_key_arn}`: exactly what uploads send as the SSE-KMS key id.
    pub kms_key_arn: String,
    /// `${writer_role_arn}`: the writer role (AWS) or user (Ceph RGW).
    pub writer_role_arn: String,
}

impl PolicyValues {
    fn lookup(&self, name: &str) -> Option<&str> {
        match name {
            "bucket_arn" => Some(&self.bucket_arn),
            "kms_key_arn" => Some(&self.kms_key_arn),
            "writer_role_arn" => Some(&self.writer_role_arn),
            _ => None,
        }
    }
}

/// Rendering failed; nothing was produced.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenderError {
    /// The template uses a placeholder this renderer has no value for.
    #[error(
        "template {template}: unknown placeholder ${{{name}}} (known: bucket_arn, kms_key_arn, writer_role_arn); both renderers must learn a new placeholder together"
    )]
    UnknownPlaceholder {
        /// Template file.
        template: &'static str,
        /// Placeholder name.
        name: String,
    },
    /// The template contains Terraform syntax other than a plain placeholder.
    #[error(
        "template {template}: {what} at byte {offset}; the policy templates may only contain plain ${{name}} placeholders"
    )]
    UnsupportedSyntax {
        /// Template file.
        template: &'static str,
        /// What was found.
        what: &'static str,
        /// Byte offset.
        offset: usize,
    },
    /// A value would change the JSON it is pasted into.
    #[error(
        "{name} = {value:?} cannot go into the policy: {why} (ARNs and key ids never contain such characters)"
    )]
    UnsafeValue {
        /// Placeholder name.
        name: &'static str,
        /// The refused value.
        value: String,
        /// Why.
        why: &'static str,
    },
    /// The rendered text is not the JSON expected.
    #[error("template {template} did not render to valid JSON: {message}")]
    InvalidJson {
        /// Template file.
        template: &'static str,
        /// Parser message.
        message: String,
    },
}

/// Renders the bucket policy from the shared templates; `writer_only_uploads`
/// appends `DenyUploadsByNonWriter`.
///
/// # Errors
///
/// [`RenderError`] for unsafe values or a template this renderer cannot handle.
pub fn render_policy(
    values: &PolicyValues,
    writer_only_uploads: bool,
) -> Result<Value, RenderError> {
    check_values(values)?;
    let mut policy = render_json("bucket-policy.json.tftpl", BASE_TEMPLATE, values)?;
    if writer_only_uploads {
        let extra = render_json(
            "deny-non-writer-uploads.json.tftpl",
            WRITER_ONLY_TEMPLATE,
            values,
        )?;
        match policy.get_mut("Statement").and_then(Value::as_array_mut) {
            Some(statements) => statements.push(extra),
            None => {
                return Err(RenderError::InvalidJson {
                    template: "bucket-policy.json.tftpl",
                    message: "no Statement array to append the optional statement to".into(),
                });
            }
        }
    }
    Ok(policy)
}

fn check_values(values: &PolicyValues) -> Result<(), RenderError> {
    for (name, value) in [
        ("bucket_arn", &values.bucket_arn),
        ("kms_key_arn", &values.kms_key_arn),
        ("writer_role_arn", &values.writer_role_arn),
    ] {
        let why = if value.trim().is_empty() {
            Some("it is empty")
        } else if value.chars().any(char::is_control) {
            Some("it contains a control character")
        } else if value.contains(['"', '\\']) {
            Some("it contains a quote or backslash")
        } else if value.contains(['$', '%', '{', '}']) {
            Some("it contains template syntax ($, %, { or })")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(RenderError::UnsafeValue {
                name,
                value: value.clone(),
                why,
            });
        }
    }
    Ok(())
}

fn render_json(
    template_name: &'static str,
    template: &str,
    values: &PolicyValues,
) -> Result<Value, RenderError> {
    let text = substitute(template_name, template, values)?;
    serde_json::from_str(&text).map_err(|e| RenderError::InvalidJson {
        template: template_name,
        message: e.to_string(),
    })
}

/// Replaces `${name}` placeholders; refuses any other template syntax.
fn substitute(
    template_name: &'static str,
    template: &str,
    values: &PolicyValues,
) -> Result<String, RenderError> {
    let syntax = |what, offset| RenderError::UnsupportedSyntax {
        template: template_name,
        what,
        offset,
    };
    let bytes = template.as_bytes();
    let mut out = String::with_capacity(template.len() + 256);
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let next = bytes.get(i + 1).copied();
        match (bytes[i], next) {
            (b'%', Some(b'{')) => return Err(syntax("a template directive `%{`", i)),
            (b'$', Some(b'$')) if bytes.get(i + 2) == Some(&b'{') => {
                return Err(syntax("an escaped placeholder `$${`", i));
            }
            (b'$', Some(b'{')) => {
                let start = i + 2;
                let len = template[start..]
                    .find('}')
                    .ok_or_else(|| syntax("an unterminated `${`", i))?;
                let name = &template[start..start + len];
                if !is_identifier(name) {
                    return Err(syntax(
                        "an expression that is not a plain name in `${…}`",
                        i,
                    ));
                }
                let value = values
                    .lookup(name)
                    .ok_or_else(|| RenderError::UnknownPlaceholder {
                        template: template_name,
                        name: name.to_owned(),
                    })?;
                out.push_str(&template[copied..i]);
                out.push_str(value);
                i = start + len + 1;
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&template[copied..]);
    Ok(out)
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> PolicyValues {
        PolicyValues {
            bucket_arn: "arn:aws:s3:::stele-example".into(),
            kms_key_arn:
                "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".into(),
            writer_role_arn: "arn:aws:iam::111122223333:role/stele-writer".into(),
        }
    }

    fn sids(policy: &Value) -> Vec<&str> {
        policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Sid"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn renders_every_base_statement_with_the_values() {
        let policy = render_policy(&values(), false).unwrap();
        assert_eq!(
            sids(&policy),
            [
                "DenyInsecureTransport",
                "DenyWrongEncryptionHeader",
                "DenyWrongKmsKey",
                "DenyKmsUploadWithoutKeyId",
                "DenyObjectDeletion",
                "DenyBucketDeletion",
                "DenyGovernanceBypassByWriter"
            ]
        );
        let text = policy.to_string();
        assert!(!text.contains("${"), "no placeholder left: {text}");
        assert_eq!(
            policy["Statement"][2]["Condition"]["StringNotEquals"]["s3:x-amz-server-side-encryption-aws-kms-key-id"],
            values().kms_key_arn
        );
        assert_eq!(
            policy["Statement"][6]["Principal"]["AWS"],
            values().writer_role_arn
        );
    }

    #[test]
    fn appends_the_optional_statement_last() {
        let policy = render_policy(&values(), true).unwrap();
        let all = sids(&policy);
        assert_eq!(all.len(), 8);
        assert_eq!(all[7], WRITER_ONLY_SID);
        assert_eq!(
            policy["Statement"][7]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"],
            values().writer_role_arn
        );
    }

    #[test]
    fn refuses_unknown_placeholders() {
        let err = substitute(
            "t",
            r#"{"a":"${bucket_arn}","b":"${account_id}"}"#,
            &values(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            RenderError::UnknownPlaceholder {
                template: "t",
                name: "account_id".into()
            }
        );
    }

    #[test]
    fn refuses_terraform_syntax_other_than_placeholders() {
        for (template, what) in [
            (
                r#"{"a":"%{ if x }y%{ endif }"}"#,
                "a template directive `%{`",
            ),
            (r#"{"a":"$${bucket_arn}"}"#, "an escaped placeholder `$${`"),
            (
                r#"{"a":"${upper(bucket_arn)}"}"#,
                "an expression that is not a plain name in `${…}`",
            ),
            ("x ${bucket_arn", "an unterminated `${`"),
        ] {
            match substitute("t", template, &values()) {
                Err(RenderError::UnsupportedSyntax { what: got, .. }) => {
                    assert_eq!(got, what, "{template}")
                }
                other => panic!("{template}: {other:?}"),
            }
        }
        // A lone `$` is plain text, as in Terraform.
        assert_eq!(substitute("t", "a$b", &values()).unwrap(), "a$b");
    }

    #[test]
    fn refuses_values_that_would_change_the_json() {
        for bad in [
            "arn:aws:s3:::b\",\"Effect\":\"Allow",
            "arn:aws:s3:::b\\",
            "arn:aws:s3:::b\n",
            "arn:aws:s3:::${x}",
            "arn:aws:s3:::%{x}",
            "",
            "  ",
        ] {
            let mut v = values();
            v.bucket_arn = bad.into();
            assert!(
                matches!(
                    render_policy(&v, false),
                    Err(RenderError::UnsafeValue {
                        name: "bucket_arn",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        let mut v = values();
        v.writer_role_arn = "arn:aws:iam::1:role/x}".into();
        assert!(matches!(
            render_policy(&v, true),
            Err(RenderError::UnsafeValue {
                name: "writer_role_arn",
                ..
            })
        ));
    }

    #[test]
    fn the_shipped_templates_use_only_the_documented_placeholders() {
        for template in [BASE_TEMPLATE, WRITER_ONLY_TEMPLATE] {
            let mut rest = template;
            while let Some(at) = rest.find("${") {
                let end = rest[at..].find('}').unwrap();
                let name = &rest[at + 2..at + end];
                assert!(
                    ["bucket_arn", "kms_key_arn", "writer_role_arn"].contains(&name),
                    "{name}"
                );
                rest = &rest[at + end..];
            }
        }
    }
}
