//! A self-contained HTML report an auditor can attach to a workpaper: what
//! was checked, the range requested and found, every finding, and a
//! timeline of anchors with gaps and failures marked. No external assets.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::report::{Aspect, Report};

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control and bidirectional-override characters are shown, not
            // obeyed: an object key cannot reorder or hide the report's text.
            c if c.is_control() || is_format_char(c) => {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

/// Invisible characters that change how text around them is shown.
fn is_format_char(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

fn parse(t: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(t, &Rfc3339).ok()
}

/// Renders `report`; `generated_at` is shown in the header.
pub fn render(report: &Report, generated_at: &str) -> String {
    let verdict = |v: &crate::report::Verdict| {
        let (ok, n) = (v.ok, v.findings);
        if ok && !v.checked {
            "<span class=\"not-checked\">NOT CHECKED</span>".to_owned()
        } else if ok {
            "<span class=\"pass\">PASS</span>".to_owned()
        } else {
            format!(
                "<span class=\"fail\">FAIL</span> ({n} finding{})",
                if n == 1 { "" } else { "s" }
            )
        }
    };
    let range = |from: &Option<String>, to: &Option<String>| {
        format!(
            "{} &ndash; {}",
            esc(from.as_deref().unwrap_or("start")),
            esc(to.as_deref().unwrap_or("now"))
        )
    };
    let mut html = String::new();
    html.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>stele verification: {chain}</title>\n<style>{CSS}</style></head><body>\n\
         <h1>stele verification report</h1>\n<p class=\"meta\">chain <b>{chain}</b> &middot; generated {gen}</p>\n\
         <table class=\"verdicts\"><tr><th>Integrity</th><td id=\"integrity\">{i}</td><td>nothing that is there was altered</td></tr>\
         <tr><th>Completeness</th><td id=\"completeness\">{c}</td><td>nothing is missing: no gap, no truncated tail, newest anchor fresh</td></tr></table>\n\
         <h2>Range</h2><table class=\"range\"><tr><th>requested</th><td>{req}</td></tr><tr><th>found</th><td>{found}</td></tr>\
         <tr><th>anchors checked</th><td>{anchors}</td></tr>{events}</table>\n",
        chain = esc(&report.chain_id),
        gen = esc(generated_at),
        i = verdict(&report.integrity),
        c = verdict(&report.completeness),
        req = range(&report.requested.from, &report.requested.to),
        found = range(&report.found.from, &report.found.to),
        anchors = report.anchors_checked,
        events = report.events_checked.map(|n| format!("<tr><th>events checked</th><td>{n}</td></tr>")).unwrap_or_default(),
    ));
    if !report.not_checked.is_empty() {
        html.push_str(&format!(
            "<p id=\"verdict\" class=\"{}\">{}</p>\n<h2>Not checked</h2><table class=\"not-checked\" id=\"not-checked\"><thead><tr><th>check</th><th>status</th><th>why</th></tr></thead><tbody>\n",
            if report.verdict == "pass" { "pass" } else { "fail" },
            match report.verdict {
                "pass" => "PASS (with the waived checks below)",
                "fail" => "FAIL",
                _ => "NOT CHECKED: a check could not be performed; the verdict is not PASS",
            }
        ));
        for n in &report.not_checked {
            html.push_str(&format!(
                "<tr class=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
                if n.waived { "waived" } else { "bad" },
                esc(&n.check),
                if n.waived {
                    "waived by the auditor"
                } else {
                    "NOT CHECKED"
                },
                esc(&n.reason)
            ));
        }
        html.push_str("</tbody></table>\n");
    }
    html.push_str("<h2>Timeline</h2>\n");
    html.push_str(&timeline_svg(report));
    html.push_str("<h2>Findings</h2>\n");
    if report.findings.is_empty() {
        html.push_str("<p class=\"pass\" id=\"no-findings\">No findings.</p>\n");
    } else {
        html.push_str(
            "<p><label><input type=\"checkbox\" id=\"only-integrity\"> integrity only</label> \
             <label><input type=\"checkbox\" id=\"only-completeness\"> completeness only</label></p>\n\
             <table class=\"findings\" id=\"findings\"><thead><tr><th>#</th><th>verdict</th><th>kind</th><th>subject</th><th>what differs</th></tr></thead><tbody>\n",
        );
        for (n, f) in report.findings.iter().enumerate() {
            let aspect = match f.aspect {
                Aspect::Integrity => "integrity",
                Aspect::Completeness => "completeness",
            };
            html.push_str(&format!(
                "<tr class=\"finding {aspect}\"><td>{}</td><td>{aspect}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
                n + 1,
                esc(&f.kind),
                esc(&f.subject),
                esc(&f.message)
            ));
        }
        html.push_str("</tbody></table>\n");
    }
    if !report.warnings.is_empty() {
        html.push_str(
            "<h2>Warnings</h2><p>Not evidence against either verdict: objects under the anchor prefix that are not anchors signed by the verifier key (they claim no anchor), and anchors found at their alternate key.</p>\n\
             <table class=\"warnings\" id=\"warnings\"><thead><tr><th>kind</th><th>object</th><th>what it is</th></tr></thead><tbody>\n",
        );
        for w in &report.warnings {
            html.push_str(&format!(
                "<tr class=\"warning\"><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
                esc(&w.kind),
                esc(&w.subject),
                esc(&w.message)
            ));
        }
        html.push_str("</tbody></table>\n");
    }
    html.push_str("<h2>What was checked</h2><ul>\n");
    for c in &report.checked {
        html.push_str(&format!("<li>{}</li>\n", esc(c)));
    }
    html.push_str("</ul>\n<h2>Anchors</h2><table class=\"anchors\"><thead><tr><th>#</th><th>time</th><th>trigger</th><th>tree size</th><th>result</th><th>object</th></tr></thead><tbody>\n");
    for a in &report.timeline {
        html.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>\n",
            if a.ok { "ok" } else { "bad" },
            a.anchor_seq,
            esc(&a.ts_utc),
            esc(&a.trigger),
            a.tree_size,
            if a.ok { "ok" } else { "FAILED" },
            esc(&a.key)
        ));
    }
    html.push_str(&format!(
        "</tbody></table>\n<script>{SCRIPT}</script>\n</body></html>\n"
    ));
    html
}

/// Anchors as dots on a time axis; failed anchors red; gaps and stale tails shaded.
fn timeline_svg(report: &Report) -> String {
    let times: Vec<(OffsetDateTime, bool, u64)> = report
        .timeline
        .iter()
        .filter_map(|a| parse(&a.ts_utc).map(|t| (t, a.ok, a.anchor_seq)))
        .collect();
    let mut spans: Vec<(OffsetDateTime, OffsetDateTime, String)> = Vec::new();
    for f in &report.findings {
        if f.kind == "cadence_gap"
            && let Some((a, b)) = f.subject.split_once(" .. ")
            && let (Some(a), Some(b)) = (parse(a), parse(b))
        {
            spans.push((a, b, f.message.clone()));
        }
    }
    let all: Vec<OffsetDateTime> = times
        .iter()
        .map(|t| t.0)
        .chain(spans.iter().flat_map(|s| [s.0, s.1]))
        .collect();
    let (Some(min), Some(max)) = (all.iter().min().copied(), all.iter().max().copied()) else {
        return "<p>No anchors to show.</p>\n".to_owned();
    };
    let (w, h, pad) = (900.0_f64, 90.0_f64, 30.0_f64);
    let span = (max - min).as_seconds_f64().max(1.0);
    let x = |t: OffsetDateTime| pad + (t - min).as_seconds_f64() / span * (w - 2.0 * pad);
    let mut svg = format!(
        "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"anchor timeline\">\n\
         <line x1=\"{pad}\" y1=\"45\" x2=\"{}\" y2=\"45\" stroke=\"#888\"/>\n",
        w - pad
    );
    for (a, b, why) in &spans {
        svg.push_str(&format!(
            "<rect class=\"gap\" x=\"{:.1}\" y=\"20\" width=\"{:.1}\" height=\"50\" fill=\"#f5b7b1\"><title>{}</title></rect>\n",
            x(*a),
            (x(*b) - x(*a)).max(2.0),
            esc(why)
        ));
    }
    for (t, ok, seq) in &times {
        svg.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"45\" r=\"5\" fill=\"{}\"><title>anchor #{seq} {}</title></circle>\n",
            x(*t),
            if *ok { "#2e7d32" } else { "#c62828" },
            t.format(&Rfc3339).unwrap_or_default()
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{pad}\" y=\"85\" font-size=\"11\">{}</text><text x=\"{}\" y=\"85\" font-size=\"11\" text-anchor=\"end\">{}</text>\n</svg>\n",
        min.format(&Rfc3339).unwrap_or_default(),
        w - pad,
        max.format(&Rfc3339).unwrap_or_default()
    ));
    svg
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
table.findings,table.anchors{width:100%;table-layout:fixed}table.findings th:nth-child(1){width:2.5em}table.findings th:nth-child(2){width:7em}\
table.findings th:nth-child(3){width:12em}table.findings th:nth-child(4){width:22%}\
.pass{color:#2e7d32;font-weight:bold}span.not-checked{color:#b26a00;font-weight:bold}.fail{color:#c62828;font-weight:bold}tr.bad td{background:#fdecea}\
tr.integrity td:nth-child(2){color:#c62828}tr.completeness td:nth-child(2){color:#b26a00}.meta{color:#555}code{font-size:.9em}";

/// Filters the findings table; the report reads fine without it.
const SCRIPT: &str = "(function(){document.body.setAttribute('data-script','ok');\
var i=document.getElementById('only-integrity'),c=document.getElementById('only-completeness');\
if(!i||!c)return;function f(){document.querySelectorAll('tr.finding').forEach(function(r){\
var show=(!i.checked||r.classList.contains('integrity'))&&(!c.checked||r.classList.contains('completeness'));\
r.style.display=show?'':'none';});}i.addEventListener('change',f);c.addEventListener('change',f);})();";
