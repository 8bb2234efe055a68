//! Prometheus metrics, in the text exposition format: requests and
//! rejections by code, appended events, append latency, group commits.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stele_store::StoreStats;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];
/// Upper bounds of the batch-size buckets, in events.
const BATCH: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0,
];

/// A histogram over fixed buckets.
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// Millionths of the unit.
    sum_millionths: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_millionths: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            if value <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        // Saturating float-to-int conversion: a huge value pins the sum.
        self.sum_millionths
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str) {
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_millionths.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// What the server counts.
pub struct Metrics {
    responses: Mutex<BTreeMap<(u16, &'static str), u64>>,
    appended_events: AtomicU64,
    append_requests: AtomicU64,
    append_latency: Histogram,
    batch_sizes: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            responses: Mutex::default(),
            appended_events: AtomicU64::new(0),
            append_requests: AtomicU64::new(0),
            append_latency: Histogram::new(LATENCY),
            batch_sizes: Histogram::new(BATCH),
        }
    }
}

impl Metrics {
    /// Counts a response (its status and, for errors, its code).
    pub fn response(&self, status: u16, code: &'static str) {
        if let Ok(mut r) = self.responses.lock() {
            *r.entry((status, code)).or_default() += 1;
        }
    }

    /// Counts an acknowledged append request.
    pub fn appended(&self, events: usize, written: usize, latency: Duration) {
        self.append_requests.fetch_add(1, Ordering::Relaxed);
        self.appended_events
            .fetch_add(written as u64, Ordering::Relaxed);
        self.append_latency.observe(latency.as_secs_f64());
        self.batch_sizes.observe(events as f64);
    }

    /// The exposition text, with the store's counters and the anchor backlog.
    pub fn render(&self, store: &StoreStats, pending_anchors: Option<usize>) -> String {
        let mut out = String::new();
        out.push_str("# HELP stele_http_responses_total Responses by status and error code.\n# TYPE stele_http_responses_total counter\n");
        if let Ok(r) = self.responses.lock() {
            for ((status, code), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "stele_http_responses_total{{status=\"{status}\",code=\"{code}\"}} {n}"
                );
            }
        }
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            &mut out,
            "stele_append_requests_total",
            "Append requests acknowledged.",
            self.append_requests.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "stele_appended_events_total",
            "Events written (idempotent repeats not counted).",
            self.appended_events.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "stele_commits_total",
            "Durable transactions that committed appends.",
            store.commits,
        );
        counter(
            &mut out,
            "stele_store_busy_total",
            "Appends refused because the commit queue was full.",
            store.busy,
        );
        out.push_str("# HELP stele_largest_commit_group Most appends one transaction carried.\n# TYPE stele_largest_commit_group gauge\n");
        let _ = writeln!(out, "stele_largest_commit_group {}", store.largest_group);
        let _ = writeln!(
            out,
            "# HELP stele_appends_per_commit Appends per durable commit, on average.\n# TYPE stele_appends_per_commit gauge\nstele_appends_per_commit {}",
            if store.commits == 0 {
                0.0
            } else {
                store.appends as f64 / store.commits as f64
            }
        );
        out.push_str("# HELP stele_append_duration_seconds Time from receiving an append to its durable commit.\n# TYPE stele_append_duration_seconds histogram\n");
        self.append_latency
            .render(&mut out, "stele_append_duration_seconds");
        out.push_str("# HELP stele_append_batch_events Events per append request.\n# TYPE stele_append_batch_events histogram\n");
        self.batch_sizes
            .render(&mut out, "stele_append_batch_events");
        if let Some(pending) = pending_anchors {
            let _ = writeln!(
                out,
                "# HELP stele_anchor_backlog Anchors built but not yet locked in WORM storage.\n# TYPE stele_anchor_backlog gauge\nstele_anchor_backlog {pending}"
            );
        }
        out
    }
}

/// The verification job's metrics.
pub fn verification(job: &crate::verification::Verification) -> String {
    let (runs, failed) = job.counts();
    let latest = job.latest();
    let mut out = format!(
        "# HELP stele_verification_runs_total Scheduled verification runs.\n# TYPE stele_verification_runs_total counter\nstele_verification_runs_total {runs}\n\
         # HELP stele_verification_failed_runs_total Runs that found something or could not complete.\n# TYPE stele_verification_failed_runs_total counter\nstele_verification_failed_runs_total {failed}\n"
    );
    if let Some(latest) = latest {
        let _ = writeln!(
            out,
            "# HELP stele_verification_ok Whether the newest run found nothing (1) or something (0).\n# TYPE stele_verification_ok gauge\nstele_verification_ok {}",
            u8::from(latest.ok)
        );
        out.push_str("# HELP stele_verification_findings Findings of the newest run, per chain.\n# TYPE stele_verification_findings gauge\n");
        for c in &latest.chains {
            let _ = writeln!(
                out,
                "stele_verification_findings{{chain=\"{}\"}} {}",
                c.chain_id, c.total_findings
            );
        }
    }
    out
}

/// Anchoring's metrics.
pub fn anchoring(status: &crate::anchoring::AnchoringStatus) -> String {
    let now = time::OffsetDateTime::now_utc();
    let mut ages = String::from(
        "# HELP stele_newest_anchor_age_seconds Seconds since each chain's newest anchor was written to the anchor store.\n# TYPE stele_newest_anchor_age_seconds gauge\n",
    );
    for (chain, at) in &status.newest_written {
        if let Ok(at) =
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        {
            let _ = writeln!(
                ages,
                "stele_newest_anchor_age_seconds{{chain=\"{chain}\"}} {}",
                (now - at).whole_seconds().max(0)
            );
        }
    }
    ages + &format!(
        "# HELP stele_anchors_uploaded_total Anchors uploaded since start.\n# TYPE stele_anchors_uploaded_total counter\nstele_anchors_uploaded_total {}\n\
         # HELP stele_anchor_upload_failures_total Failed upload attempts (retried).\n# TYPE stele_anchor_upload_failures_total counter\nstele_anchor_upload_failures_total {}\n\
         # HELP stele_anchoring_refused_chains Chains whose anchors are held back for investigation.\n# TYPE stele_anchoring_refused_chains gauge\nstele_anchoring_refused_chains {}\n",
        status.uploaded,
        status.failed_attempts,
        status.refused_chains.len()
    )
}
