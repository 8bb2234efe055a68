//! Checking a chain's anchor objects and their cadence.

use std::collections::BTreeMap;
use std::time::Duration;

use stele_anchor::cadence::checked_next_boundary;
use stele_anchor::{
    Anchor, LinkError, alternate_object_key, check_link, is_anchor_key, object_key, relocated_from,
};
use stele_ledger::ChainId;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::report::{Aspect, Finding, NotChecked, Range, Report, TimelineEntry, Warning};

/// Largest anchor object read (64 KiB). A real anchor is a few kilobytes (its
/// consistency proof has at most 64 hashes); anything larger is a finding and
/// is never read whole, so a bucket or mirror cannot exhaust the verifier.
pub const MAX_ANCHOR_BYTES: usize = 64 * 1024;

/// Checks that `key` is a well-formed signed-note verifier key
/// (`name+hash+base64`), so a typo is refused before anything is fetched.
///
/// # Errors
///
/// A sentence saying what is wrong, without echoing the key.
pub fn check_verifier_key(key: &str) -> Result<(), String> {
    signed_note::StandardVerifier::new(key.trim()).map(|_| ()).map_err(|_| {
        "the verifier key is not a signed-note verifier key (name+hash+base64, as `stele keys export-verifier` prints it)".to_owned()
    })
}

/// What the object store says about an anchor object (absent for an offline mirror).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageFacts {
    /// Version id of the current version.
    pub version_id: Option<String>,
    /// Object Lock mode.
    pub lock_mode: Option<String>,
    /// Retain-until.
    pub retain_until: Option<OffsetDateTime>,
    /// SHA-256 from the checksum API, hex.
    pub checksum_sha256: Option<String>,
    /// `sha256` metadata, hex.
    pub metadata_sha256: Option<String>,
    /// Versions of this key besides the current one.
    pub other_versions: usize,
    /// Delete markers on this key.
    pub delete_markers: usize,
    /// Set when the key's versions could not be listed (e.g. no
    /// `s3:ListBucketVersions`): why. Then `other_versions` and
    /// `delete_markers` say nothing, and the report says so.
    pub versions_unlisted: Option<String>,
}

/// Why an object under the chain's prefix was not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// Larger than [`MAX_ANCHOR_BYTES`]; its size when the store listed it.
    TooLarge(Option<u64>),
    /// Not something that can hold an anchor (a symlink, a FIFO, a device), said in words.
    NotAnObject(String),
}

/// One anchor object as fetched.
#[derive(Clone, Debug)]
pub struct StoredAnchor {
    /// Object key.
    pub key: String,
    /// Exact bytes (empty when `unreadable`).
    pub bytes: Vec<u8>,
    /// Why the object's bytes could not be read: a finding naming the object.
    pub unreadable: Option<Unreadable>,
    /// Storage facts, when read from the store itself.
    pub storage: Option<StorageFacts>,
}

/// What to expect of the anchors.
#[derive(Clone, Debug)]
pub struct AuditPolicy {
    /// The chain.
    pub chain: ChainId,
    /// The signed-note verifier key.
    pub verifier_key: String,
    /// Key prefix in the bucket.
    pub prefix: Option<String>,
    /// Anchoring interval (an anchor is expected in every interval).
    pub interval: Duration,
    /// Slack for freshness and gaps.
    pub grace: Duration,
    /// Minimum retention each anchor must carry, in days from its time.
    pub retention_days: Option<u32>,
    /// Expected Object Lock mode.
    pub expected_mode: Option<String>,
    /// Range requested.
    pub from: Option<OffsetDateTime>,
    /// Range requested.
    pub to: Option<OffsetDateTime>,
    /// The time of the check.
    pub now: OffsetDateTime,
}

/// The outcome of checking the anchors.
#[derive(Debug)]
pub struct AnchorAudit {
    /// The report (findings, verdicts, timeline).
    pub report: Report,
    /// Anchors that passed their own checks, in anchor order, with their bytes:
    /// the ones a log may be compared with.
    pub trusted: Vec<(Anchor, Vec<u8>)>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Checks every anchor object of one chain (in any order) against `policy`.
pub fn audit_anchors(objects: &[StoredAnchor], policy: &AuditPolicy) -> AnchorAudit {
    let mut findings = Vec::new();
    if let Err(why) = check_verifier_key(&policy.verifier_key) {
        // One finding, not one per anchor: nothing can be trusted without the key.
        findings.push(Finding::new(
            Aspect::Integrity,
            "malformed_verifier_key",
            format!("chain {}", policy.chain),
            why,
        ));
        return AnchorAudit {
            report: Report::new(
                policy.chain.as_str(),
                Vec::new(),
                Range::default(),
                Range::default(),
                None,
                findings,
                Vec::new(),
            ),
            trusted: Vec::new(),
        };
    }
    let mut not_checked = Vec::new();
    let mut checked = vec![
        "each anchor object: RFC 8785 form, Ed25519 signature over every field, embedded C2SP checkpoint (same key, same chain, size and root)".to_owned(),
        "each anchor's key is where its own time and seq put it".to_owned(),
        "consecutive anchors: anchor_seq +1, prev_anchor_hash = SHA-256 of the previous object's bytes, consistency proof, tree size and time never decrease".to_owned(),
        "no anchor_seq missing, none claimed twice (fork)".to_owned(),
        format!("cadence: an anchor in every {}-minute interval; the newest no older than the interval plus {} minutes", policy.interval.as_secs() / 60, policy.grace.as_secs() / 60),
    ];
    let online = objects.iter().any(|o| o.storage.is_some());
    let unlisted = objects
        .iter()
        .filter_map(|o| o.storage.as_ref()?.versions_unlisted.clone())
        .next();
    if online {
        let stored: Vec<&StorageFacts> =
            objects.iter().filter_map(|o| o.storage.as_ref()).collect();
        let with = |f: fn(&StorageFacts) -> bool| stored.iter().filter(|s| f(s)).count();
        checked.push(format!(
            "each object in the store: Object Lock mode and retain-until; bytes against the store's SHA-256 checksum ({} of {} objects have one) and `sha256` metadata ({} of {})",
            with(|s| s.checksum_sha256.is_some()),
            stored.len(),
            with(|s| s.metadata_sha256.is_some()),
            stored.len()
        ));
        match unlisted {
            None => checked.push("each key in the store: no other versions or delete markers".to_owned()),
            Some(why) => not_checked.push(NotChecked::new(
                "versions",
                format!("the anchor keys' versions and delete markers could not be listed ({why}): a replaced or deleted anchor version would not be seen"),
            )),
        }
    } else {
        not_checked.push(NotChecked::waived(
            "storage",
            "offline copy (--mirror): Object Lock, versions, delete markers and store checksums cannot be checked from a mirror",
        ));
    }

    // Per-object checks. Only anchors signed by the verifier key claim a
    // seq: anyone who may PutObject can put anything under the prefix
    // (a squatter on the next anchor's key), and such an object neither
    // fails the run nor stands in for an anchor — a seq it sits on is
    // still missing unless our anchor is found (at its alternate key).
    let mut by_seq: BTreeMap<u64, Vec<(String, Anchor, Vec<u8>)>> = BTreeMap::new();
    let mut bad_keys = Vec::new();
    let mut warnings = Vec::new();
    for obj in objects {
        match check_object(obj, policy) {
            Checked::Ours {
                anchor,
                findings: object_findings,
                relocated,
            } => {
                if !object_findings.is_empty() {
                    bad_keys.push(obj.key.clone());
                }
                findings.extend(object_findings);
                warnings.extend(relocated);
                by_seq.entry(anchor.anchor_seq).or_default().push((
                    obj.key.clone(),
                    *anchor,
                    obj.bytes.clone(),
                ));
            }
            Checked::Foreign {
                warning,
                findings: key_findings,
            } => {
                warnings.push(warning);
                findings.extend(key_findings);
            }
        }
    }
    if !warnings.is_empty() {
        checked.push("objects under the prefix that are not anchors signed by the verifier key are listed as warnings and claim no anchor_seq; an anchor whose intended key was taken is accepted only at the alternate key named by the SHA-256 of its own bytes".to_owned());
    }

    // The requested range, by anchor time.
    let in_range = |a: &Anchor| {
        let t = a.time().ok();
        policy.from.is_none_or(|from| t.is_some_and(|t| t >= from))
            && policy.to.is_none_or(|to| t.is_some_and(|t| t <= to))
    };
    by_seq.retain(|_, v| {
        v.retain(|(_, a, _)| in_range(a));
        !v.is_empty()
    });

    // Sequence: forks, gaps, links.
    let mut trusted: Vec<(Anchor, Vec<u8>)> = Vec::new();
    let mut timeline = Vec::new();
    let mut prev: Option<(Anchor, Vec<u8>)> = None;
    let first_seq = by_seq.keys().next().copied();
    if let (Some(first), None) = (first_seq, policy.from)
        && first > 0
    {
        findings.push(
            Finding::new(
                Aspect::Completeness,
                "missing_anchor",
                format!("anchors #0..#{}", first - 1),
                format!("{first} anchor(s) before the first one found are missing"),
            )
            .anchor(0),
        );
    }
    for (seq, claims) in &by_seq {
        if claims.len() > 1 {
            let keys: Vec<&str> = claims.iter().map(|(k, _, _)| k.as_str()).collect();
            findings.push(
                Finding::new(
                    Aspect::Integrity,
                    "fork",
                    format!("anchor #{seq}"),
                    format!(
                        "{} objects claim anchor_seq {seq}: {}",
                        claims.len(),
                        keys.join(", ")
                    ),
                )
                .anchor(*seq),
            );
        }
        let (key, anchor, bytes) = &claims[0];
        if let Some((p, _)) = &prev
            && *seq > p.anchor_seq + 1
        {
            findings.push(
                Finding::new(
                    Aspect::Completeness,
                    "missing_anchor",
                    format!("anchors #{}..#{}", p.anchor_seq + 1, seq - 1),
                    format!(
                        "{} anchor(s) between #{} ({}) and #{seq} ({}) are missing",
                        seq - p.anchor_seq - 1,
                        p.anchor_seq,
                        p.ts_utc,
                        anchor.ts_utc
                    ),
                )
                .anchor(p.anchor_seq + 1)
                .at(p.ts_utc.clone()),
            );
        }
        let mut ok = !bad_keys.contains(key) && claims.len() == 1;
        if let Some((p, pb)) = &prev
            && *seq == p.anchor_seq + 1
            && let Err(e) = check_link(p, pb, anchor)
        {
            ok = false;
            let kind = match e {
                LinkError::PrevHashMismatch { .. } => "prev_hash_mismatch",
                LinkError::NotConsistent { .. } => "not_an_extension",
                LinkError::TreeShrank { .. } => "tree_shrank",
                LinkError::TimeWentBack { .. } => "time_went_back",
                _ => "broken_link",
            };
            findings.push(
                Finding::new(
                    Aspect::Integrity,
                    kind,
                    format!("anchor #{seq} ({key})"),
                    e.to_string(),
                )
                .anchor(*seq)
                .at(anchor.ts_utc.clone()),
            );
        }
        timeline.push(TimelineEntry {
            anchor_seq: *seq,
            key: key.clone(),
            ts_utc: anchor.ts_utc.clone(),
            trigger: anchor.trigger.as_str().to_owned(),
            tree_size: anchor.tree_size,
            ok,
        });
        if ok {
            trusted.push((anchor.clone(), bytes.clone()));
        }
        prev = Some((anchor.clone(), bytes.clone()));
    }

    // Cadence and freshness.
    let times: Vec<OffsetDateTime> = by_seq.values().filter_map(|v| v[0].1.time().ok()).collect();
    let end = policy.to.unwrap_or(policy.now).min(policy.now);
    findings.extend(cadence_findings(&times, policy, end));

    let found = Range {
        from: times.first().map(|t| rfc3339(*t)),
        to: times.last().map(|t| rfc3339(*t)),
    };
    let requested = Range {
        from: policy.from.map(rfc3339),
        to: policy.to.map(rfc3339),
    };
    findings.sort_by(|a, b| a.at.cmp(&b.at).then(a.anchor_seq.cmp(&b.anchor_seq)));
    let mut report = Report::new(
        policy.chain.as_str(),
        checked,
        requested,
        found,
        None,
        findings,
        timeline,
    );
    report.warnings = warnings;
    report.add_not_checked(not_checked, &[]);
    AnchorAudit { report, trusted }
}

/// What one object under the chain's prefix turned out to be.
enum Checked {
    /// An anchor signed by the verifier key: it claims its seq. `findings`
    /// are failures of its own checks; `relocated` notes an alternate key.
    Ours {
        anchor: Box<Anchor>,
        findings: Vec<Finding>,
        relocated: Option<Warning>,
    },
    /// Not an anchor signed by the verifier key: it claims nothing.
    /// `findings` are what its key's history shows (other versions, delete
    /// markers): something was written over or deleted at a key under the
    /// prefix, which is how a real anchor would be replaced.
    Foreign {
        warning: Warning,
        findings: Vec<Finding>,
    },
}

fn foreign(obj: &StoredAnchor, why: String) -> Checked {
    let subject = obj.key.clone();
    let mut findings = Vec::new();
    if let Some(s) = obj
        .storage
        .as_ref()
        .filter(|s| s.versions_unlisted.is_none())
    {
        if s.other_versions > 0 {
            findings.push(Finding::new(
                Aspect::Integrity,
                "extra_versions",
                subject.clone(),
                format!(
                    "the key has {} other version(s) under an object that is not one of our anchors: an anchor may have been written over",
                    s.other_versions
                ),
            ));
        }
        if s.delete_markers > 0 {
            findings.push(Finding::new(
                Aspect::Integrity,
                "delete_marker",
                subject.clone(),
                format!(
                    "the key has {} delete marker(s): someone deleted an object under the anchor prefix",
                    s.delete_markers
                ),
            ));
        }
    }
    Checked::Foreign {
        warning: Warning::new(
            "foreign_object",
            subject,
            format!(
                "not an anchor of this chain signed by the verifier key ({why}); it claims no anchor_seq"
            ),
        ),
        findings,
    }
}

/// Parses and checks one object on its own.
fn check_object(obj: &StoredAnchor, policy: &AuditPolicy) -> Checked {
    let subject = obj.key.clone();
    match &obj.unreadable {
        Some(Unreadable::NotAnObject(why)) => {
            return foreign(obj, format!("it was not read: {why}"));
        }
        Some(Unreadable::TooLarge(size)) => {
            return foreign(
                obj,
                format!(
                    "it has {} bytes, more than the {MAX_ANCHOR_BYTES} an anchor may have, and was not read",
                    size.map_or_else(|| "more".to_owned(), |n| n.to_string())
                ),
            );
        }
        None => {}
    }
    if obj.bytes.len() > MAX_ANCHOR_BYTES {
        return foreign(
            obj,
            format!(
                "it has more than the {MAX_ANCHOR_BYTES} bytes an anchor may have and was not parsed"
            ),
        );
    }
    let anchor = match Anchor::from_bytes(&obj.bytes) {
        Ok(a) => a,
        Err(e) => return foreign(obj, format!("not a stele anchor: {e}")),
    };
    // The signature decides whose it is; nothing else in the object can be
    // trusted before it verifies.
    if let Err(e) = anchor.verify(&policy.verifier_key) {
        return foreign(
            obj,
            format!(
                "it parses as anchor #{} of chain {:?} but its signature does not verify: {e}",
                anchor.anchor_seq, anchor.chain_id
            ),
        );
    }
    // Signed by the key but for another chain (a copy, say): it claims no
    // seq of this one.
    if anchor.chain_id != policy.chain.as_str() {
        return foreign(
            obj,
            format!(
                "it is anchor #{} of chain {:?}, not of chain {}",
                anchor.anchor_seq, anchor.chain_id, policy.chain
            ),
        );
    }
    let mut findings = Vec::new();
    let mut relocated = None;
    let f = |kind: &str, message: String| {
        Finding::new(
            Aspect::Integrity,
            kind,
            format!("anchor #{} ({subject})", anchor.anchor_seq),
            message,
        )
        .anchor(anchor.anchor_seq)
        .at(anchor.ts_utc.clone())
    };
    // The object must be exactly the RFC 8785 bytes of what it says: no
    // indentation, reordering, escapes or extra fields.
    match anchor.to_bytes() {
        Ok(canonical) if canonical == obj.bytes => {}
        Ok(canonical) => findings.push(f(
            "not_canonical",
            format!(
                "the object's {} bytes are not the RFC 8785 serialization of the anchor ({} bytes): it was re-serialized or carries fields an anchor does not have",
                obj.bytes.len(),
                canonical.len()
            ),
        )),
        Err(e) => findings.push(f("not_canonical", e.to_string())),
    }
    if let Ok(t) = anchor.time() {
        // Its intended key, or the alternate key named by the SHA-256 of
        // these very bytes (so a copy under any other name is "moved").
        match is_anchor_key(
            policy.prefix.as_deref(),
            &policy.chain,
            t,
            anchor.anchor_seq,
            &obj.key,
            &obj.bytes,
        ) {
            Ok(true) => {
                if let Some(taken) = relocated_from(&obj.key, &obj.bytes) {
                    relocated = Some(Warning::new(
                        "relocated_anchor",
                        obj.key.clone(),
                        format!(
                            "anchor #{} is at its alternate key because its intended key {taken} was taken by another object when it was written",
                            anchor.anchor_seq
                        ),
                    ));
                }
            }
            Ok(false) => {
                if let Ok(expected) = object_key(
                    policy.prefix.as_deref(),
                    &policy.chain,
                    t,
                    anchor.anchor_seq,
                ) {
                    findings.push(f(
                        "moved",
                        format!(
                            "the object was moved: its time and seq put it at {expected} (or, if that key was taken, at {})",
                            alternate_object_key(&expected, &obj.bytes)
                        ),
                    ));
                }
            }
            Err(_) => {}
        }
    }
    let sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&obj.bytes))
    };
    if let Some(s) = &obj.storage {
        for (what, value) in [
            ("checksum API SHA-256", &s.checksum_sha256),
            ("`sha256` metadata", &s.metadata_sha256),
        ] {
            if let Some(v) = value.as_deref().filter(|v| *v != sha) {
                findings.push(f(
                    "checksum_mismatch",
                    format!("the bytes hash to {sha}, the {what} says {v}"),
                ));
            }
        }
        match (&s.lock_mode, &policy.expected_mode) {
            (None, _) => findings.push(f(
                "not_locked",
                "the object has no Object Lock retention".into(),
            )),
            (Some(m), Some(want)) if !m.eq_ignore_ascii_case(want) => findings.push(f(
                "lock_mode",
                format!("locked in {m} mode, expected {want}"),
            )),
            _ => {}
        }
        if let (Some(days), Ok(t)) = (policy.retention_days, anchor.time()) {
            // Checked: an anchor dated near 9999 has no representable end of retention.
            let needed = t.checked_add(time::Duration::days(i64::from(days)));
            match (s.retain_until, needed) {
                (Some(until), Some(needed))
                    if until.unix_timestamp() >= needed.unix_timestamp() => {}
                (other, needed) => findings.push(f(
                    "retention_short",
                    format!(
                        "retained until {}, expected at least {} ({days} days after the anchor)",
                        other.map_or_else(|| "never".into(), rfc3339),
                        needed.map_or_else(
                            || format!("{days} days after {}", anchor.ts_utc),
                            rfc3339
                        )
                    ),
                )),
            }
        }
        if s.versions_unlisted.is_none() && s.other_versions > 0 {
            findings.push(f(
                "extra_versions",
                format!(
                    "the key has {} other version(s): something was written over the anchor",
                    s.other_versions
                ),
            ));
        }
        if s.versions_unlisted.is_none() && s.delete_markers > 0 {
            findings.push(f(
                "delete_marker",
                format!(
                    "the key has {} delete marker(s): someone tried to delete the anchor",
                    s.delete_markers
                ),
            ));
        }
    }
    Checked::Ours {
        anchor: Box::new(anchor),
        findings,
        relocated,
    }
}

/// Missing intervals and a stale newest anchor. All date arithmetic is
/// checked (an anchor may claim any time up to 9999), and the work is bounded
/// by the number of anchors, not the number of intervals in the range.
fn cadence_findings(
    times: &[OffsetDateTime],
    policy: &AuditPolicy,
    end: OffsetDateTime,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let grace = time::Duration::try_from(policy.grace).unwrap_or(time::Duration::MAX);
    let interval = time::Duration::try_from(policy.interval).unwrap_or(time::Duration::MAX);
    let (Some(first), Some(last)) = (times.first().copied(), times.last().copied()) else {
        out.push(Finding::new(
            Aspect::Completeness,
            "no_anchors",
            format!("chain {}", policy.chain),
            "no anchors were found in the requested range",
        ));
        return out;
    };
    let start = policy.from.map_or(first, |f| f.min(first));
    // Every interval [b, b + interval) from the first boundary after the start
    // must hold an anchor, up to the last interval that ended `grace` before `end`.
    let due = |b: OffsetDateTime| b.checked_add(grace).is_some_and(|t| t <= end);
    let Some(mut b) = start
        .checked_sub(time::Duration::NANOSECOND)
        .and_then(|t| checked_next_boundary(t, policy.interval))
    else {
        return out;
    };
    // The first boundary that is not yet due (where a skip may land at most).
    let stop = end
        .checked_sub(grace)
        .and_then(|t| checked_next_boundary(t, policy.interval))
        .unwrap_or(end);
    let mut gap_start: Option<OffsetDateTime> = None;
    let mut idx = 0;
    while due(b) {
        while idx < times.len() && times[idx] < b {
            idx += 1;
        }
        let Some(b_end) = b.checked_add(interval) else {
            break;
        };
        let covered = idx < times.len() && times[idx] < b_end;
        let next = if covered {
            if let Some(g) = gap_start.take() {
                out.push(gap(g, b, policy));
            }
            Some(b_end)
        } else {
            gap_start.get_or_insert(b);
            // Skip the empty intervals at once: to the boundary holding the
            // next anchor, or past the end.
            match times.get(idx) {
                Some(t) => t
                    .checked_sub(time::Duration::NANOSECOND)
                    .and_then(|t| checked_next_boundary(t, policy.interval))
                    .and_then(|nb| {
                        if nb > *t {
                            nb.checked_sub(interval)
                        } else {
                            Some(nb)
                        }
                    })
                    .filter(|nb| *nb > b)
                    .or(Some(b_end))
                    .map(|nb| nb.min(stop)),
                None => Some(stop.max(b_end)),
            }
        };
        match next {
            Some(n) => b = n,
            None => break,
        }
    }
    if let Some(g) = gap_start {
        out.push(gap(g, b.min(end), policy));
    }
    let due_by = last
        .checked_add(interval)
        .and_then(|t| t.checked_add(grace));
    if let Some(due_by) = due_by.filter(|t| *t < end) {
        out.push(
            Finding::new(
                Aspect::Completeness,
                "stale",
                format!("chain {}", policy.chain),
                format!(
                    "the newest anchor is from {}; with a {}-minute cadence one was due by {} (deleted or suppressed anchors, or the anchorer is down)",
                    rfc3339(last),
                    policy.interval.as_secs() / 60,
                    rfc3339(due_by)
                ),
            )
            .at(rfc3339(last)),
        );
    }
    out
}

fn gap(from: OffsetDateTime, to: OffsetDateTime, policy: &AuditPolicy) -> Finding {
    Finding::new(
        Aspect::Completeness,
        "cadence_gap",
        format!("{} .. {}", rfc3339(from), rfc3339(to)),
        format!(
            "no anchor of chain {} between {} and {}",
            policy.chain,
            rfc3339(from),
            rfc3339(to)
        ),
    )
    .at(rfc3339(from))
}
