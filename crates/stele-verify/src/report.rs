//! Findings and verdicts.

use serde::Serialize;

/// Which verdict a finding counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aspect {
    /// Something that is there was altered (or is not what it claims).
    Integrity,
    /// Something is missing: a gap, a truncated tail, a stale or deleted anchor.
    Completeness,
}

/// One thing that is wrong, named precisely.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Integrity or completeness.
    pub aspect: Aspect,
    /// Machine-readable kind, e.g. `bad_signature`, `cadence_gap`, `content_altered`.
    pub kind: String,
    /// What it is about: an object key, an anchor, a seq, a time window.
    pub subject: String,
    /// Anchor concerned, if any.
    pub anchor_seq: Option<u64>,
    /// Event seq concerned, if any.
    pub seq: Option<u64>,
    /// When (RFC 3339), for the timeline.
    pub at: Option<String>,
    /// What differs, in words.
    pub message: String,
}

impl Finding {
    pub(crate) fn new(
        aspect: Aspect,
        kind: &str,
        subject: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            aspect,
            kind: kind.to_owned(),
            subject: subject.into(),
            anchor_seq: None,
            seq: None,
            at: None,
            message: message.into(),
        }
    }

    pub(crate) fn anchor(mut self, anchor_seq: u64) -> Self {
        self.anchor_seq = Some(anchor_seq);
        self
    }

    pub(crate) fn seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }

    pub(crate) fn at(mut self, at: impl Into<String>) -> Self {
        self.at = Some(at.into());
        self
    }
}

/// A verdict: passed, or how many findings count against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// True when no finding counts against it.
    pub ok: bool,
    /// Findings against it.
    pub findings: usize,
    /// False when this aspect was not checked at all (a database-only run
    /// has no anchors to check completeness against): then `ok` only says
    /// that nothing was found, never that it passed.
    #[serde(skip_serializing_if = "is_true")]
    pub checked: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

/// A check that could not be performed (a permission, the endpoint, or
/// nothing to check against). Unless the auditor waived it by name, the
/// run cannot pass: an unperformed check is never reported as passed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotChecked {
    /// Short name the auditor waives it by, e.g. `versions`, `anchors`, `hmac`.
    pub check: String,
    /// Why it could not be performed, and what it would have shown.
    pub reason: String,
    /// The auditor waived it (`--waive NAME`, or a flag that says so).
    pub waived: bool,
}

impl NotChecked {
    /// A check that could not be performed, not waived.
    pub fn new(check: &str, reason: impl Into<String>) -> Self {
        Self {
            check: check.to_owned(),
            reason: reason.into(),
            waived: false,
        }
    }

    /// A check the auditor chose not to perform.
    pub fn waived(check: &str, reason: impl Into<String>) -> Self {
        Self {
            waived: true,
            ..Self::new(check, reason)
        }
    }
}

/// Something worth the auditor's attention that is not evidence against
/// either verdict: an object under the chain's prefix that is not an anchor
/// signed by the verifier key (a squatter, junk), or an anchor found at its
/// alternate key because its intended key was taken. It never hides a
/// finding: a missing anchor is still missing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Machine-readable kind, e.g. `foreign_object`, `relocated_anchor`.
    pub kind: String,
    /// The object key it is about.
    pub subject: String,
    /// What it is and why it does not count, in words.
    pub message: String,
}

impl Warning {
    pub(crate) fn new(kind: &str, subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            subject: subject.into(),
            message: message.into(),
        }
    }
}

/// A span of time or seqs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Range {
    /// Start, if bounded.
    pub from: Option<String>,
    /// End, if bounded.
    pub to: Option<String>,
}

/// One anchor on the timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    /// Anchor seq.
    pub anchor_seq: u64,
    /// Object key.
    pub key: String,
    /// `ts_utc`.
    pub ts_utc: String,
    /// Trigger.
    pub trigger: String,
    /// Tree size.
    pub tree_size: u64,
    /// Whether every check on this anchor passed.
    pub ok: bool,
}

/// The result of a verification run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Chain verified.
    pub chain_id: String,
    /// What was checked, in words, for the workpaper.
    pub checked: Vec<String>,
    /// Range requested.
    pub requested: Range,
    /// Range found (first and last anchor time).
    pub found: Range,
    /// Anchors examined.
    pub anchors_checked: usize,
    /// Events examined, when the log was verified.
    pub events_checked: Option<u64>,
    /// Nothing that is there was altered.
    pub integrity: Verdict,
    /// Nothing is missing.
    pub completeness: Verdict,
    /// `pass`, `fail` (a finding), or `not_checked` (no finding, but a
    /// check that was not waived could not be performed).
    pub verdict: &'static str,
    /// Checks that could not be performed, waived or not.
    pub not_checked: Vec<NotChecked>,
    /// Every finding.
    pub findings: Vec<Finding>,
    /// Non-failing observations (see [`Warning`]).
    pub warnings: Vec<Warning>,
    /// Anchors in order, for the timeline.
    pub timeline: Vec<TimelineEntry>,
}

impl Report {
    /// Builds a report and computes the verdicts from the findings.
    pub fn new(
        chain_id: &str,
        checked: Vec<String>,
        requested: Range,
        found: Range,
        events_checked: Option<u64>,
        findings: Vec<Finding>,
        timeline: Vec<TimelineEntry>,
    ) -> Self {
        let count = |a: Aspect| findings.iter().filter(|f| f.aspect == a).count();
        let (i, c) = (count(Aspect::Integrity), count(Aspect::Completeness));
        Self {
            chain_id: chain_id.to_owned(),
            checked,
            requested,
            found,
            anchors_checked: timeline.len(),
            events_checked,
            integrity: Verdict {
                ok: i == 0,
                findings: i,
                checked: true,
            },
            completeness: Verdict {
                ok: c == 0,
                findings: c,
                checked: true,
            },
            verdict: if i + c == 0 { "pass" } else { "fail" },
            not_checked: Vec::new(),
            findings,
            warnings: Vec::new(),
            timeline,
        }
    }

    /// Adds checks that could not be performed; any named in `waivers` is
    /// marked waived. Recomputes the overall verdict.
    pub fn add_not_checked(
        &mut self,
        items: impl IntoIterator<Item = NotChecked>,
        waivers: &[String],
    ) {
        for item in items {
            if !self.not_checked.contains(&item) {
                self.not_checked.push(item);
            }
        }
        for item in &mut self.not_checked {
            if waivers.contains(&item.check) {
                item.waived = true;
            }
        }
        self.verdict = if !(self.integrity.ok && self.completeness.ok) {
            "fail"
        } else if self.not_checked.iter().any(|n| !n.waived) {
            "not_checked"
        } else {
            "pass"
        };
    }

    /// True when both verdicts pass and every check was performed or waived.
    pub fn is_clean(&self) -> bool {
        self.verdict == "pass"
    }

    /// True when no finding counts against either verdict (checks may still be missing).
    pub fn no_findings(&self) -> bool {
        self.integrity.ok && self.completeness.ok
    }

    /// Checks that could not be performed and were not waived.
    pub fn unwaived(&self) -> impl Iterator<Item = &NotChecked> {
        self.not_checked.iter().filter(|n| !n.waived)
    }

    /// A terse human summary.
    pub fn summary(&self) -> String {
        let verdict = |v: Verdict| {
            if v.ok {
                "PASS".to_owned()
            } else {
                format!("FAIL ({} finding(s))", v.findings)
            }
        };
        let range = |r: &Range| {
            format!(
                "{} .. {}",
                r.from.as_deref().unwrap_or("start"),
                r.to.as_deref().unwrap_or("now")
            )
        };
        let mut out = format!(
            "chain {}: {} anchors{}\n  requested {}\n  found     {}\n  integrity    {}\n  completeness {}\n",
            self.chain_id,
            self.anchors_checked,
            self.events_checked
                .map(|n| format!(", {n} events"))
                .unwrap_or_default(),
            range(&self.requested),
            range(&self.found),
            verdict(self.integrity),
            verdict(self.completeness),
        );
        for n in &self.not_checked {
            if n.waived {
                out.push_str(&format!("  WAIVED       {}: {}\n", n.check, n.reason));
            } else {
                out.push_str(&format!(
                    "  NOT CHECKED  {}: {} (the verdict cannot be PASS; to accept this, --waive {})\n",
                    n.check, n.reason, n.check
                ));
            }
        }
        out.push_str(&format!(
            "  verdict      {}\n",
            match self.verdict {
                "pass" => "PASS",
                "fail" => "FAIL",
                _ => "NOT CHECKED (a check could not be performed)",
            }
        ));
        for w in &self.warnings {
            out.push_str(&format!(
                "  WARNING      {} {}: {} (does not count against the verdict)\n",
                w.kind, w.subject, w.message
            ));
        }
        for f in &self.findings {
            let aspect = match f.aspect {
                Aspect::Integrity => "integrity",
                Aspect::Completeness => "completeness",
            };
            out.push_str(&format!("  - [{aspect}] {}: {}\n", f.subject, f.message));
        }
        out
    }
}
