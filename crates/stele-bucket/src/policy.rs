//! Bucket-policy documents as data (no I/O).
//!
//! IAM JSON allows the same meaning in several spellings: a one-element
//! array or its single string, `"Principal": "*"` or `{"AWS": "*"}`,
//! condition keys in any case. [`PolicyDocument::parse`] folds those
//! spellings into one form, so policies are compared by meaning — statement
//! by statement — never as text.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use thiserror::Error;

/// A policy document that is not valid IAM JSON.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("the bucket policy is not a valid policy document: {0}")]
pub struct PolicyError(pub String);

/// A parsed policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyDocument {
    /// `Version`.
    pub version: Option<String>,
    /// `Id`.
    pub id: Option<String>,
    /// `Statement`, in document order.
    pub statements: Vec<Statement>,
}

/// `Allow` or `Deny`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Grants.
    Allow,
    /// Refuses, whatever any Allow says.
    Deny,
}

/// Who a statement is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principals {
    /// `"*"` or `{"AWS": "*"}`: everyone, the bucket owner included.
    Anyone,
    /// Named principals by type (`AWS`, `Service`, `CanonicalUser`, …).
    Named(BTreeMap<String, BTreeSet<String>>),
}

/// `Principal` or `NotPrincipal`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalSpec {
    /// `Principal`.
    Is(Principals),
    /// `NotPrincipal`: everyone except these.
    IsNot(Principals),
}

/// `Action`/`Resource` (only these) or `NotAction`/`NotResource` (all but these).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Targets {
    /// Only what matches one of the patterns.
    Only(BTreeSet<String>),
    /// Everything that matches none of the patterns.
    AllExcept(BTreeSet<String>),
}

/// `Condition`: operator → condition key (lower case: keys are case-insensitive) → values.
pub type Conditions = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// One statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// `Sid`.
    pub sid: Option<String>,
    /// `Effect`.
    pub effect: Effect,
    /// `Principal`/`NotPrincipal` (absent in identity policies).
    pub principal: Option<PrincipalSpec>,
    /// `Action`/`NotAction`.
    pub actions: Targets,
    /// `Resource`/`NotResource`.
    pub resources: Targets,
    /// `Condition` (empty when absent).
    pub conditions: Conditions,
}

impl PolicyDocument {
    /// Parses policy JSON text.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] if it is not JSON or not a policy document.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| PolicyError(format!("not JSON: {e}")))?;
        Self::from_value(&value)
    }

    /// Reads a policy from parsed JSON.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] if it is not a policy document.
    pub fn from_value(value: &Value) -> Result<Self, PolicyError> {
        let obj = value
            .as_object()
            .ok_or_else(|| PolicyError("the document is not a JSON object".into()))?;
        let statements = match obj.get("Statement") {
            Some(Value::Array(items)) => items.iter().map(Statement::from_value).collect(),
            Some(single @ Value::Object(_)) => Statement::from_value(single).map(|s| vec![s]),
            _ => Err(PolicyError("no Statement array".into())),
        }?;
        Ok(Self {
            version: obj
                .get("Version")
                .and_then(Value::as_str)
                .map(str::to_owned),
            id: obj.get("Id").and_then(Value::as_str).map(str::to_owned),
            statements,
        })
    }

    /// The statement with this `Sid`, if any.
    pub fn statement(&self, sid: &str) -> Option<&Statement> {
        self.statements
            .iter()
            .find(|s| s.sid.as_deref() == Some(sid))
    }

    /// Statements by `Sid` (statements without one are left out).
    pub fn by_sid(&self) -> BTreeMap<&str, &Statement> {
        self.statements
            .iter()
            .filter_map(|s| s.sid.as_deref().map(|sid| (sid, s)))
            .collect()
    }

    /// Allow statements that grant anyone access without a condition that
    /// pins the caller to an account, organisation, network or source — the
    /// local stand-in for S3's policy-status evaluation, used when an
    /// endpoint has none.
    pub fn public_grants(&self) -> Vec<&Statement> {
        const PINNING_KEYS: [&str; 9] = [
            "aws:sourcearn",
            "aws:sourceaccount",
            "aws:sourceowner",
            "aws:sourcevpc",
            "aws:sourcevpce",
            "aws:sourceip",
            "aws:principalorgid",
            "aws:principalaccount",
            "aws:userid",
        ];
        self.statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .filter(|s| {
                matches!(
                    &s.principal,
                    Some(PrincipalSpec::Is(Principals::Anyone) | PrincipalSpec::IsNot(_))
                )
            })
            .filter(|s| {
                !s.conditions
                    .values()
                    .flat_map(BTreeMap::keys)
                    .any(|k| PINNING_KEYS.contains(&k.as_str()))
            })
            .collect()
    }
}

impl Statement {
    fn from_value(value: &Value) -> Result<Self, PolicyError> {
        let obj = value
            .as_object()
            .ok_or_else(|| PolicyError("a statement is not a JSON object".into()))?;
        let sid = obj.get("Sid").and_then(Value::as_str).map(str::to_owned);
        let name = sid.clone().unwrap_or_else(|| "(no Sid)".into());
        let effect = match obj.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            other => {
                return Err(PolicyError(format!(
                    "statement {name}: Effect is {other:?}, expected \"Allow\" or \"Deny\""
                )));
            }
        };
        let principal = match (obj.get("Principal"), obj.get("NotPrincipal")) {
            (Some(p), None) => Some(PrincipalSpec::Is(principals(p, &name)?)),
            (None, Some(p)) => Some(PrincipalSpec::IsNot(principals(p, &name)?)),
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(PolicyError(format!(
                    "statement {name} has both Principal and NotPrincipal"
                )));
            }
        };
        let actions = targets(obj, "Action", "NotAction", &name)?;
        let resources = targets(obj, "Resource", "NotResource", &name)?;
        let conditions = match obj.get("Condition") {
            None => Conditions::new(),
            Some(c) => conditions(c, &name)?,
        };
        Ok(Self {
            sid,
            effect,
            principal,
            actions,
            resources,
            conditions,
        })
    }

    /// Whether this statement applies to `action` (IAM wildcards, case-insensitive).
    pub fn applies_to_action(&self, action: &str) -> bool {
        match &self.actions {
            Targets::Only(p) => p.iter().any(|p| glob_match(p, action, true)),
            Targets::AllExcept(p) => !p.iter().any(|p| glob_match(p, action, true)),
        }
    }

    /// Whether this statement applies to `resource` (wildcards, case-sensitive).
    /// A `*` in `resource` is taken literally, so a statement on
    /// `arn:aws:s3:::b/anchors/*` does not cover `arn:aws:s3:::b/*`.
    pub fn applies_to_resource(&self, resource: &str) -> bool {
        match &self.resources {
            Targets::Only(p) => p.iter().any(|p| glob_match(p, resource, false)),
            Targets::AllExcept(p) => !p.iter().any(|p| glob_match(p, resource, false)),
        }
    }

    /// Whether this statement applies to every principal `wanted` names.
    pub fn applies_to_principals(&self, wanted: &Principals) -> bool {
        match (&self.principal, wanted) {
            (Some(PrincipalSpec::Is(Principals::Anyone)), _) => true,
            (Some(PrincipalSpec::Is(Principals::Named(have))), Principals::Named(want)) => {
                want.iter().all(|(kind, ids)| {
                    have.get(kind)
                        .is_some_and(|have_ids| ids.iter().all(|id| have_ids.contains(id)))
                })
            }
            // Everyone but some: covers named principals that are not excluded.
            (Some(PrincipalSpec::IsNot(excluded)), Principals::Named(want)) => match excluded {
                Principals::Anyone => false,
                Principals::Named(ex) => want.iter().all(|(kind, ids)| {
                    ex.get(kind)
                        .is_none_or(|ex_ids| ids.iter().all(|id| !ex_ids.contains(id)))
                }),
            },
            _ => false,
        }
    }
}

fn strings(value: &Value, what: &str, name: &str) -> Result<BTreeSet<String>, PolicyError> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(PolicyError(format!(
            "statement {name}: {what} holds {v}, expected strings"
        ))),
    };
    match value {
        Value::Array(items) => items.iter().map(one).collect(),
        other => one(other).map(|s| BTreeSet::from([s])),
    }
}

fn principals(value: &Value, name: &str) -> Result<Principals, PolicyError> {
    match value {
        Value::String(s) if s == "*" => Ok(Principals::Anyone),
        Value::Object(map) => {
            let mut named = BTreeMap::new();
            for (kind, ids) in map {
                let ids = strings(ids, "Principal", name)?;
                if kind == "AWS" && ids.contains("*") {
                    return Ok(Principals::Anyone);
                }
                named.insert(kind.clone(), ids);
            }
            Ok(Principals::Named(named))
        }
        other => Err(PolicyError(format!(
            "statement {name}: Principal is {other}, expected \"*\" or an object"
        ))),
    }
}

fn targets(
    obj: &serde_json::Map<String, Value>,
    only: &str,
    except: &str,
    name: &str,
) -> Result<Targets, PolicyError> {
    match (obj.get(only), obj.get(except)) {
        (Some(v), None) => Ok(Targets::Only(strings(v, only, name)?)),
        (None, Some(v)) => Ok(Targets::AllExcept(strings(v, except, name)?)),
        (None, None) => Err(PolicyError(format!(
            "statement {name} has neither {only} nor {except}"
        ))),
        (Some(_), Some(_)) => Err(PolicyError(format!(
            "statement {name} has both {only} and {except}"
        ))),
    }
}

fn conditions(value: &Value, name: &str) -> Result<Conditions, PolicyError> {
    let ops = value
        .as_object()
        .ok_or_else(|| PolicyError(format!("statement {name}: Condition is not an object")))?;
    let mut out = Conditions::new();
    for (op, keys) in ops {
        let keys = keys.as_object().ok_or_else(|| {
            PolicyError(format!("statement {name}: Condition {op} is not an object"))
        })?;
        // Bool and Null compare "true"/"false", which IAM reads in any case.
        let fold_values = matches!(op.as_str(), "Bool" | "Null" | "BoolIfExists");
        let entry: &mut BTreeMap<String, BTreeSet<String>> = out.entry(op.clone()).or_default();
        for (key, values) in keys {
            let mut values = strings(values, "a condition value", name)?;
            if fold_values {
                values = values.iter().map(|v| v.to_ascii_lowercase()).collect();
            }
            entry
                .entry(key.to_ascii_lowercase())
                .or_default()
                .extend(values);
        }
    }
    Ok(out)
}

/// IAM wildcard match: `*` any run of characters, `?` any one character.
pub fn glob_match(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let norm = |s: &str| -> Vec<char> {
        if case_insensitive {
            s.chars().flat_map(char::to_lowercase).collect()
        } else {
            s.chars().collect()
        }
    };
    let (p, t) = (norm(pattern), norm(text));
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it currently absorbs up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_iam() {
        assert!(glob_match("s3:*", "s3:PutObject", true));
        assert!(glob_match("*", "s3:PutObject", true));
        assert!(glob_match("s3:Delete*", "s3:deleteobjectversion", true));
        assert!(glob_match("s3:?utObject", "s3:PutObject", true));
        assert!(!glob_match("s3:Get*", "s3:PutObject", true));
        assert!(!glob_match("s3:PutObject", "s3:PutObjectRetention", true));
        assert!(glob_match("arn:aws:s3:::b/*", "arn:aws:s3:::b/*", false));
        assert!(glob_match("arn:aws:s3:::b*", "arn:aws:s3:::b/*", false));
        assert!(!glob_match(
            "arn:aws:s3:::b/anchors/*",
            "arn:aws:s3:::b/*",
            false
        ));
        assert!(!glob_match("arn:aws:s3:::B/*", "arn:aws:s3:::b/*", false));
        assert!(glob_match("a*b*c", "aXXbYYc", false));
        assert!(!glob_match("a*b*c", "aXXbYY", false));
    }

    #[test]
    fn spellings_of_the_same_meaning_parse_equal() {
        let a = PolicyDocument::parse(
            r#"{"Statement":[{"Sid":"X","Effect":"Deny","Principal":"*","Action":"s3:PutObject",
                "Resource":"arn:aws:s3:::b/*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#,
        )
        .unwrap();
        let b = PolicyDocument::parse(
            r#"{"Statement":{"Sid":"X","Effect":"Deny","Principal":{"AWS":["*"]},"Action":["s3:PutObject"],
                "Resource":["arn:aws:s3:::b/*"],"Condition":{"Bool":{"aws:securetransport":["False"]}}}}"#,
        )
        .unwrap();
        assert_eq!(a.statements, b.statements);
    }

    #[test]
    fn rejects_documents_that_are_not_policies() {
        for bad in [
            "[]",
            r#"{"Version":"2012-10-17"}"#,
            r#"{"Statement":[{"Effect":"Maybe","Action":"*","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Deny","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Deny","Action":"*","NotAction":"s3:*","Resource":"*"}]}"#,
            "not json",
        ] {
            assert!(PolicyDocument::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn not_action_and_not_principal_are_understood() {
        let doc = PolicyDocument::parse(
            r#"{"Statement":[{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::1:role/admin"},
                "NotAction":"s3:Get*","NotResource":"arn:aws:s3:::b/public/*"}]}"#,
        )
        .unwrap();
        let s = &doc.statements[0];
        assert!(s.applies_to_action("s3:PutObject"));
        assert!(!s.applies_to_action("s3:GetObject"));
        assert!(s.applies_to_resource("arn:aws:s3:::b/*"));
        assert!(!s.applies_to_resource("arn:aws:s3:::b/public/*"));
        let writer = Principals::Named(BTreeMap::from([(
            "AWS".to_owned(),
            BTreeSet::from(["arn:aws:iam::1:role/writer".to_owned()]),
        )]));
        let admin = Principals::Named(BTreeMap::from([(
            "AWS".to_owned(),
            BTreeSet::from(["arn:aws:iam::1:role/admin".to_owned()]),
        )]));
        assert!(s.applies_to_principals(&writer));
        assert!(!s.applies_to_principals(&admin));
        assert!(!s.applies_to_principals(&Principals::Anyone));
    }

    #[test]
    fn finds_public_grants() {
        let doc = PolicyDocument::parse(
            r#"{"Statement":[
                {"Sid":"Public","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*"},
                {"Sid":"Pinned","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*",
                 "Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-123"}}},
                {"Sid":"Named","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:root"},"Action":"*","Resource":"*"},
                {"Sid":"Deny","Effect":"Deny","Principal":"*","Action":"*","Resource":"*"}]}"#,
        )
        .unwrap();
        let public: Vec<_> = doc
            .public_grants()
            .iter()
            .map(|s| s.sid.as_deref().unwrap())
            .collect();
        assert_eq!(public, ["Public"]);
    }
}
