//! Check results and their three renderings (no I/O): a text table for
//! people, JSON for machines, JUnit XML for CI pipelines.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::controls::Control;

/// The result of one control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The bucket meets the control.
    Pass,
    /// It does not; the message says what was found and the control what to fix.
    Fail,
    /// The endpoint does not implement what the control needs; not a failure, but shown.
    UnsupportedByEndpoint,
}

impl Status {
    /// `pass`, `fail`, `unsupported-by-endpoint`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::UnsupportedByEndpoint => "unsupported-by-endpoint",
        }
    }
}

/// One control's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The control.
    pub control: &'static Control,
    /// The result.
    pub status: Status,
    /// What was found (and, for a failure, what is wrong).
    pub message: String,
}

impl Finding {
    /// A finding for `control`.
    pub fn new(control: &'static Control, status: Status, message: impl Into<String>) -> Self {
        Self {
            control,
            status,
            message: message.into(),
        }
    }
}

/// Everything `stele bucket check` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Bucket.
    pub bucket: String,
    /// What the endpoint was found to support (one line).
    pub endpoint: String,
    /// One finding per evaluated control, in catalogue order.
    pub findings: Vec<Finding>,
    /// Assumptions made and controls not evaluated.
    pub notes: Vec<String>,
}

impl Report {
    /// Number of findings with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.findings.iter().filter(|f| f.status == status).count()
    }

    /// True when any control failed.
    pub fn has_failures(&self) -> bool {
        self.count(Status::Fail) > 0
    }

    /// The finding for control `id`.
    pub fn finding(&self, id: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.control.id == id)
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "bucket": self.bucket,
            "endpoint": self.endpoint,
            "summary": {
                "pass": self.count(Status::Pass),
                "fail": self.count(Status::Fail),
                "unsupported_by_endpoint": self.count(Status::UnsupportedByEndpoint),
            },
            "results": self.findings.iter().map(|f| json!({
                "control": f.control.id,
                "title": f.control.title,
                "status": f.status.as_str(),
                "message": f.message,
                "fix": (f.status == Status::Fail).then_some(f.control.fix),
                "mappings": {
                    "cis_aws": f.control.cis_aws,
                    "soc2": f.control.soc2,
                    "hipaa_164_312": f.control.hipaa,
                    "sec_17a_4": f.control.sec_17a_4,
                },
            })).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }

    /// The report as a text table.
    pub fn to_text(&self) -> String {
        let width = self
            .findings
            .iter()
            .map(|f| f.control.id.len())
            .max()
            .unwrap_or(0)
            .max("CONTROL".len());
        let indent = " ".repeat(12 + 1 + width + 1);
        let mut out = format!(
            "stele bucket check: s3://{}\nendpoint: {}\n\n{:<12} {:<width$} FINDING\n",
            self.bucket, self.endpoint, "STATUS", "CONTROL"
        );
        for f in &self.findings {
            let status = match f.status {
                Status::Pass => "pass",
                Status::Fail => "FAIL",
                Status::UnsupportedByEndpoint => "unsupported",
            };
            let _ = writeln!(out, "{status:<12} {:<width$} {}", f.control.id, f.message);
            if f.status == Status::Fail {
                let _ = writeln!(out, "{indent}fix: {}", f.control.fix);
            }
            if f.status != Status::Pass {
                let _ = writeln!(out, "{indent}maps to: {}", f.control.mappings().join(", "));
            }
        }
        let _ = writeln!(
            out,
            "\n{} controls: {} pass, {} fail, {} unsupported by this endpoint",
            self.findings.len(),
            self.count(Status::Pass),
            self.count(Status::Fail),
            self.count(Status::UnsupportedByEndpoint)
        );
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    /// The report as JUnit XML: one testcase per control; failures carry the
    /// message, the fix and the mappings; unsupported controls are skipped.
    pub fn to_junit(&self) -> String {
        let (tests, failures, skipped) = (
            self.findings.len(),
            self.count(Status::Fail),
            self.count(Status::UnsupportedByEndpoint),
        );
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"stele bucket check\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">"
        );
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">",
            xml_escape(&format!("stele bucket check s3://{}", self.bucket))
        );
        out.push_str("    <properties>\n");
        for (name, value) in [("bucket", &self.bucket), ("endpoint", &self.endpoint)] {
            let _ = writeln!(
                out,
                "      <property name=\"{name}\" value=\"{}\"/>",
                xml_escape(value)
            );
        }
        out.push_str("    </properties>\n");
        for f in &self.findings {
            let mappings = f.control.mappings().join(", ");
            let _ = write!(
                out,
                "    <testcase classname=\"stele.bucket.{}\" name=\"{}\">",
                xml_escape(&self.bucket),
                xml_escape(&format!("{}: {}", f.control.id, f.control.title))
            );
            match f.status {
                Status::Pass => {
                    let _ = write!(
                        out,
                        "<system-out>{}</system-out>",
                        xml_escape(&format!("{}\nmaps to: {mappings}", f.message))
                    );
                }
                Status::Fail => {
                    let _ = write!(
                        out,
                        "<failure type=\"{}\" message=\"{}\">{}</failure>",
                        xml_escape(f.control.id),
                        xml_escape(&f.message),
                        xml_escape(&format!(
                            "{}\nfix: {}\nmaps to: {mappings}",
                            f.message, f.control.fix
                        ))
                    );
                }
                Status::UnsupportedByEndpoint => {
                    let _ = write!(
                        out,
                        "<skipped message=\"{}\"/>",
                        xml_escape(&format!("unsupported by this endpoint: {}", f.message))
                    );
                }
            }
            out.push_str("</testcase>\n");
        }
        if !self.notes.is_empty() {
            let _ = writeln!(
                out,
                "    <system-out>{}</system-out>",
                xml_escape(&self.notes.join("\n"))
            );
        }
        out.push_str("  </testsuite>\n</testsuites>\n");
        out
    }
}

/// Escapes text for XML content and attribute values. Characters XML 1.0
/// cannot carry at all are replaced; line breaks become character
/// references so attributes keep them.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use quick_xml::events::Event;
    use quick_xml::{Reader, XmlVersion};

    use super::*;
    use crate::controls;

    fn report() -> Report {
        Report {
            bucket: "b<&>\"'".into(),
            endpoint: "AWS-like".into(),
            findings: vec![
                Finding::new(
                    &controls::OBJECT_LOCK,
                    Status::Pass,
                    "Object Lock is enabled",
                ),
                Finding::new(
                    &controls::DENY_WRONG_KMS_KEY,
                    Status::Fail,
                    "DenyWrongKmsKey is not enforced: condition is [\"<k2>\"] & not \"k1\"\nsecond line\u{1}",
                ),
                Finding::new(
                    &controls::OBJECT_OWNERSHIP,
                    Status::UnsupportedByEndpoint,
                    "answered as ListObjects",
                ),
            ],
            notes: vec!["mfa-delete not evaluated".into()],
        }
    }

    /// An element's name and attributes.
    type Element = (String, Vec<(String, String)>);

    /// Parses the XML, failing on any well-formedness error, and returns
    /// every start/empty element plus all text.
    fn parse(xml: &str) -> (Vec<Element>, String) {
        let mut reader = Reader::from_str(xml);
        let mut elements = Vec::new();
        let mut text = String::new();
        let mut depth = 0i32;
        let record = |e: &quick_xml::events::BytesStart<'_>| {
            let name = e.name().as_ref().to_owned();
            let attrs = e
                .attributes()
                .map(|a| {
                    let a = a.expect("valid attribute");
                    (
                        a.key.as_ref().to_owned(),
                        a.normalized_value(XmlVersion::Explicit1_0)
                            .expect("valid escapes")
                            .into_owned(),
                    )
                })
                .collect();
            (name, attrs)
        };
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) => {
                    elements.push(record(&e));
                    depth += 1;
                }
                Event::Empty(e) => elements.push(record(&e)),
                Event::End(_) => depth -= 1,
                Event::Text(t) => text.push_str(&t.xml10_content()),
                Event::GeneralRef(r) => match r.resolve_char_ref().expect("valid reference") {
                    Some(c) => text.push(c),
                    None => text.push_str(match r.xml10_content().as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        other => panic!("unknown entity {other}"),
                    }),
                },
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(depth, 0, "every element closed");
        (elements, text)
    }

    fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> &'a str {
        &attrs.iter().find(|(k, _)| k == name).unwrap().1
    }

    #[test]
    fn junit_is_well_formed_with_one_testcase_per_control() {
        let xml = report().to_junit();
        let (elements, text) = parse(&xml);
        let suites: Vec<_> = elements.iter().filter(|(n, _)| n == "testsuite").collect();
        assert_eq!(suites.len(), 1);
        assert_eq!(attr(&suites[0].1, "tests"), "3");
        assert_eq!(attr(&suites[0].1, "failures"), "1");
        assert_eq!(attr(&suites[0].1, "skipped"), "1");
        let cases: Vec<_> = elements.iter().filter(|(n, _)| n == "testcase").collect();
        assert_eq!(cases.len(), 3);
        assert_eq!(
            attr(&cases[1].1, "name"),
            "policy.DenyWrongKmsKey: Policy denies uploads with another KMS key"
        );
        assert_eq!(attr(&cases[0].1, "classname"), "stele.bucket.b<&>\"'");
        let failure = elements.iter().find(|(n, _)| n == "failure").unwrap();
        assert_eq!(attr(&failure.1, "type"), "policy.DenyWrongKmsKey");
        assert_eq!(
            attr(&failure.1, "message"),
            "DenyWrongKmsKey is not enforced: condition is [\"<k2>\"] & not \"k1\"\nsecond line\u{FFFD}"
        );
        let skipped = elements.iter().find(|(n, _)| n == "skipped").unwrap();
        assert!(attr(&skipped.1, "message").starts_with("unsupported by this endpoint: "));
        assert!(text.contains("fix: apply the policy rendered from deploy/policy/"));
        assert!(text.contains("maps to: CIS AWS 2.1.5, SOC 2 CC6.1, SOC 2 CC6.6"));
    }

    #[test]
    fn json_has_status_fix_and_mappings() {
        let v = report().to_json();
        assert_eq!(v["summary"]["fail"], 1);
        assert_eq!(v["results"][1]["status"], "fail");
        assert_eq!(v["results"][1]["mappings"]["cis_aws"][0], "2.1.5");
        assert!(v["results"][1]["fix"].is_string());
        assert!(v["results"][0]["fix"].is_null());
        assert_eq!(v["results"][2]["status"], "unsupported-by-endpoint");
    }

    #[test]
    fn text_shows_fix_and_mappings_for_what_did_not_pass() {
        let text = report().to_text();
        assert!(
            text.contains("FAIL         policy.DenyWrongKmsKey"),
            "{text}"
        );
        assert!(text.contains("unsupported  object-ownership"), "{text}");
        assert!(text.contains("fix: apply the policy"), "{text}");
        assert!(text.contains("3 controls: 1 pass, 1 fail, 1 unsupported by this endpoint"));
        assert!(text.contains("note: mfa-delete not evaluated"));
    }
}
