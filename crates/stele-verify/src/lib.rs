//! The auditor's verification: what someone holding only read-only access
//! and the public verifier key can establish (docs/contracts.md §4).
//!
//! - [`anchors`]: every anchor object — signature, checkpoint, links,
//!   storage protection — and the cadence: missing, extra, stale anchors.
//! - [`log`]: the log (from a database or an export file) against the anchors.
//! - [`report`]: findings and the two verdicts, never blended: **integrity**
//!   (nothing that is there was altered) and **completeness** (nothing is
//!   missing).
//!
//! # No I/O
//!
//! Callers fetch objects and rows and pass them in, with the time; the
//! same code checks a live bucket, an offline mirror and an export file.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod anchors;
pub mod html;
pub mod log;
pub mod report;

pub use anchors::{
    AnchorAudit, AuditPolicy, MAX_ANCHOR_BYTES, StorageFacts, StoredAnchor, Unreadable,
    audit_anchors, check_verifier_key,
};
pub use log::AnchoredLog;
pub use report::{Aspect, Finding, NotChecked, Report, Warning};
