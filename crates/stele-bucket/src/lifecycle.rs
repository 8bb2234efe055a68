//! Lifecycle rules (no I/O): the rules the Terraform module applies, and the
//! one property `stele bucket check` demands of any rule set — nothing
//! expires before the retention.
//!
//! S3 never deletes a locked version, but a current-version expiration puts
//! a delete marker in front of an anchor or a bundle and hides it from every
//! listing an auditor makes; a noncurrent-version expiration removes versions
//! whose lock has run out. So every expiration must be at least the
//! retention period (the module's precondition and checkov's `CKV2_STELE_2`
//! say the same).

/// A lifecycle expiration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expiration {
    /// Current versions expire this many days after creation.
    Days(i64),
    /// Current versions expire on a fixed date (ISO 8601).
    Date(String),
    /// Only delete markers without versions behind them are removed.
    ExpiredDeleteMarkersOnly,
}

/// A storage-class transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Days after creation.
    pub days: i64,
    /// Target storage class, e.g. `GLACIER_IR`.
    pub storage_class: String,
}

/// One lifecycle rule, as far as retention is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LifecycleRule {
    /// `ID`.
    pub id: String,
    /// `Status` is `Enabled`.
    pub enabled: bool,
    /// Key prefix the rule applies to; `None` for the whole bucket.
    pub prefix: Option<String>,
    /// Transitions of current versions.
    pub transitions: Vec<Transition>,
    /// Expiration of current versions.
    pub expiration: Option<Expiration>,
    /// Days after which noncurrent versions expire.
    pub noncurrent_expiration_days: Option<i64>,
    /// Days after which incomplete multipart uploads are aborted.
    pub abort_incomplete_upload_days: Option<i64>,
}

/// The module's lifecycle inputs (`deploy/terraform/modules/worm-bucket`), with its defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LifecycleSettings {
    /// Prefix before `anchors/`, `evidence/`, `proofs/` (module `key_prefix`).
    pub key_prefix: String,
    /// `anchors_transition_days` (90).
    pub anchors_transition_days: Option<i64>,
    /// `evidence_transition_days` (90).
    pub evidence_transition_days: Option<i64>,
    /// `proofs_transition_days` (90).
    pub proofs_transition_days: Option<i64>,
    /// `evidence_expiration_days` (none).
    pub evidence_expiration_days: Option<i64>,
    /// `proofs_expiration_days` (none).
    pub proofs_expiration_days: Option<i64>,
    /// `noncurrent_version_expiration_days` (none).
    pub noncurrent_version_expiration_days: Option<i64>,
    /// `abort_incomplete_multipart_upload_days` (7).
    pub abort_incomplete_multipart_upload_days: i64,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            key_prefix: String::new(),
            anchors_transition_days: Some(90),
            evidence_transition_days: Some(90),
            proofs_transition_days: Some(90),
            evidence_expiration_days: None,
            proofs_expiration_days: None,
            noncurrent_version_expiration_days: None,
            abort_incomplete_multipart_upload_days: 7,
        }
    }
}

/// The storage class the module transitions to.
pub const TRANSITION_STORAGE_CLASS: &str = "GLACIER_IR";

/// The module's rules for `settings`, in the module's order.
pub fn module_rules(settings: &LifecycleSettings) -> Vec<LifecycleRule> {
    let transition = |days: Option<i64>| {
        days.map(|days| Transition {
            days,
            storage_class: TRANSITION_STORAGE_CLASS.into(),
        })
        .into_iter()
        .collect::<Vec<_>>()
    };
    let prefixed = |name: &str| Some(format!("{}{name}/", settings.key_prefix));
    vec![
        LifecycleRule {
            id: "stele-abort-incomplete-uploads".into(),
            enabled: true,
            prefix: None,
            transitions: vec![],
            expiration: None,
            noncurrent_expiration_days: None,
            abort_incomplete_upload_days: Some(settings.abort_incomplete_multipart_upload_days),
        },
        LifecycleRule {
            id: "stele-anchors".into(),
            enabled: true,
            prefix: prefixed("anchors"),
            transitions: transition(settings.anchors_transition_days),
            expiration: None,
            noncurrent_expiration_days: None,
            abort_incomplete_upload_days: None,
        },
        LifecycleRule {
            id: "stele-evidence".into(),
            enabled: true,
            prefix: prefixed("evidence"),
            transitions: transition(settings.evidence_transition_days),
            expiration: settings.evidence_expiration_days.map(Expiration::Days),
            noncurrent_expiration_days: settings.noncurrent_version_expiration_days,
            abort_incomplete_upload_days: None,
        },
        LifecycleRule {
            id: "stele-proofs".into(),
            enabled: true,
            prefix: prefixed("proofs"),
            transitions: transition(settings.proofs_transition_days),
            expiration: settings.proofs_expiration_days.map(Expiration::Days),
            noncurrent_expiration_days: settings.noncurrent_version_expiration_days,
            abort_incomplete_upload_days: None,
        },
    ]
}

/// The same rules without storage-class transitions, for endpoints that
/// offer no such class. Rules left with no action are dropped.
pub fn without_transitions(rules: &[LifecycleRule]) -> Vec<LifecycleRule> {
    rules
        .iter()
        .map(|r| LifecycleRule {
            transitions: vec![],
            ..r.clone()
        })
        .filter(|r| {
            r.expiration.is_some()
                || r.noncurrent_expiration_days.is_some()
                || r.abort_incomplete_upload_days.is_some()
        })
        .collect()
}

/// Every enabled rule action that can remove or hide an object version
/// before `retention_days`; empty when the rules are safe.
pub fn expirations_before_retention(rules: &[LifecycleRule], retention_days: u32) -> Vec<String> {
    let retention = i64::from(retention_days);
    let scope = |r: &LifecycleRule| match &r.prefix {
        Some(p) if !p.is_empty() => format!("rule {:?} (prefix {p:?})", r.id),
        _ => format!("rule {:?} (whole bucket)", r.id),
    };
    let mut problems = Vec::new();
    for rule in rules.iter().filter(|r| r.enabled) {
        match &rule.expiration {
            Some(Expiration::Days(days)) if *days < retention => problems.push(format!(
                "{} expires current versions after {days} days, before the {retention}-day retention",
                scope(rule)
            )),
            Some(Expiration::Date(date)) => problems.push(format!(
                "{} expires current versions on a fixed date ({date}), which hides every object written less than {retention} days before it",
                scope(rule)
            )),
            _ => {}
        }
        if let Some(days) = rule.noncurrent_expiration_days
            && days < retention
        {
            problems.push(format!(
                "{} expires noncurrent versions after {days} days, before the {retention}-day retention",
                scope(rule)
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str) -> LifecycleRule {
        LifecycleRule {
            id: id.into(),
            enabled: true,
            prefix: Some("evidence/".into()),
            transitions: vec![],
            expiration: None,
            noncurrent_expiration_days: None,
            abort_incomplete_upload_days: None,
        }
    }

    #[test]
    fn the_module_defaults_never_expire_anything() {
        let rules = module_rules(&LifecycleSettings::default());
        let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "stele-abort-incomplete-uploads",
                "stele-anchors",
                "stele-evidence",
                "stele-proofs"
            ]
        );
        assert_eq!(rules[1].prefix.as_deref(), Some("anchors/"));
        assert_eq!(rules[1].transitions[0].storage_class, "GLACIER_IR");
        assert_eq!(rules[1].transitions[0].days, 90);
        assert_eq!(rules[0].abort_incomplete_upload_days, Some(7));
        assert!(expirations_before_retention(&rules, 36_500).is_empty());
    }

    #[test]
    fn the_key_prefix_goes_before_each_area() {
        let rules = module_rules(&LifecycleSettings {
            key_prefix: "tenant-a/".into(),
            ..LifecycleSettings::default()
        });
        assert_eq!(rules[3].prefix.as_deref(), Some("tenant-a/proofs/"));
    }

    #[test]
    fn expirations_shorter_than_retention_are_found() {
        let short = LifecycleRule {
            expiration: Some(Expiration::Days(30)),
            ..rule("short")
        };
        let noncurrent = LifecycleRule {
            noncurrent_expiration_days: Some(100),
            ..rule("noncurrent")
        };
        let dated = LifecycleRule {
            expiration: Some(Expiration::Date("2030-01-01T00:00:00Z".into())),
            prefix: None,
            ..rule("dated")
        };
        let problems = expirations_before_retention(&[short, noncurrent, dated], 400);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("after 30 days, before the 400-day retention"));
        assert!(problems[1].contains("noncurrent versions after 100 days"));
        assert!(problems[2].contains("(whole bucket)") && problems[2].contains("fixed date"));
    }

    #[test]
    fn expirations_at_or_after_retention_and_disabled_rules_are_fine() {
        let at = LifecycleRule {
            expiration: Some(Expiration::Days(400)),
            noncurrent_expiration_days: Some(400),
            ..rule("at")
        };
        let markers = LifecycleRule {
            expiration: Some(Expiration::ExpiredDeleteMarkersOnly),
            ..rule("markers")
        };
        let disabled = LifecycleRule {
            enabled: false,
            expiration: Some(Expiration::Days(1)),
            ..rule("disabled")
        };
        assert!(expirations_before_retention(&[at, markers, disabled], 400).is_empty());
    }

    #[test]
    fn dropping_transitions_keeps_only_rules_that_still_act() {
        let rules = without_transitions(&module_rules(&LifecycleSettings::default()));
        let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["stele-abort-incomplete-uploads"]);
    }
}
