//! The anchor outbox's records: an anchor built and signed once, then
//! uploaded until it lands. Owned here, beside the anchor format, and
//! typed; the storage crate maps them to rows and reads a value it could
//! not have written as corruption naming the row.

use std::fmt;

use time::OffsetDateTime;

use crate::Trigger;

/// Object Lock retention mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockMode {
    /// Nobody can shorten or remove the lock, root included.
    Compliance,
    /// Principals with `s3:BypassGovernanceRetention` can.
    Governance,
}

impl LockMode {
    /// The S3 name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compliance => "COMPLIANCE",
            Self::Governance => "GOVERNANCE",
        }
    }

    /// Parses `COMPLIANCE`/`GOVERNANCE` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "COMPLIANCE" => Some(Self::Compliance),
            "GOVERNANCE" => Some(Self::Governance),
            _ => None,
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an anchor is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnchorStatus {
    /// Built, signed and stored in the outbox; not yet in the object store.
    Pending,
    /// Written to a store that is not WORM (a local directory).
    Uploaded,
    /// Written to WORM storage and read back: bytes, lock mode and retain-until verified.
    Verified,
}

impl AnchorStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Uploaded => "uploaded",
            Self::Verified => "verified",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "uploaded" => Some(Self::Uploaded),
            "verified" => Some(Self::Verified),
            _ => None,
        }
    }
}

/// One anchor in the outbox: built and signed once, uploaded until it lands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorRecord {
    /// Chain.
    pub chain_id: String,
    /// Position in the chain's anchor sequence.
    pub anchor_seq: u64,
    /// What made it.
    pub trigger: Trigger,
    /// Tree size covered.
    pub tree_size: u64,
    /// Anchor time (`ts_utc`, as in the body).
    pub ts_utc: String,
    /// Object key it is (to be) written at.
    pub object_key: String,
    /// The exact object bytes; never changed once stored.
    pub body: Vec<u8>,
    /// Status.
    pub status: AnchorStatus,
    /// Upload attempts so far.
    pub attempts: u32,
    /// Last upload error, if any.
    pub last_error: Option<String>,
    /// Where it was written (`s3://bucket`, or a local directory).
    pub location: Option<String>,
    /// Object version id.
    pub version_id: Option<String>,
    /// Lock mode the store reported.
    pub lock_mode: Option<LockMode>,
    /// Retain-until the store reported.
    pub retain_until: Option<OffsetDateTime>,
    /// When it was written.
    pub uploaded_at: Option<String>,
}

/// The identity of an anchor as it enters the outbox: all
/// [`AnchorRecord::pending`] needs.
#[derive(Clone, Debug)]
pub struct NewAnchor {
    /// Chain.
    pub chain_id: String,
    /// Position in the chain's anchor sequence.
    pub anchor_seq: u64,
    /// What made it.
    pub trigger: Trigger,
    /// Tree size covered.
    pub tree_size: u64,
    /// Anchor time (`ts_utc`, as in the body).
    pub ts_utc: String,
    /// Object key it is to be written at.
    pub object_key: String,
    /// The exact object bytes.
    pub body: Vec<u8>,
}

impl AnchorRecord {
    /// A signed anchor not yet uploaded: pending, no attempt, nothing
    /// reported by an object store.
    pub fn pending(new: NewAnchor) -> Self {
        Self {
            chain_id: new.chain_id,
            anchor_seq: new.anchor_seq,
            trigger: new.trigger,
            tree_size: new.tree_size,
            ts_utc: new.ts_utc,
            object_key: new.object_key,
            body: new.body,
            status: AnchorStatus::Pending,
            attempts: 0,
            last_error: None,
            location: None,
            version_id: None,
            lock_mode: None,
            retain_until: None,
            uploaded_at: None,
        }
    }
}

/// What the object store reported for a written anchor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorUpload {
    /// `Verified` for WORM storage, `Uploaded` otherwise.
    pub status: AnchorStatus,
    /// `s3://bucket` or a local directory description.
    pub location: String,
    /// Version id.
    pub version_id: Option<String>,
    /// Lock mode.
    pub lock_mode: Option<LockMode>,
    /// Retain-until.
    pub retain_until: Option<OffsetDateTime>,
}

/// A retain-until as the outbox and every report write it (RFC 3339, UTC).
pub fn retain_until_text(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Parses a retain-until written by [`retain_until_text`].
pub fn parse_retain_until(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip_and_others_are_refused() {
        for s in [
            AnchorStatus::Pending,
            AnchorStatus::Uploaded,
            AnchorStatus::Verified,
        ] {
            assert_eq!(AnchorStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(AnchorStatus::parse("Pending"), None);
        for m in [LockMode::Compliance, LockMode::Governance] {
            assert_eq!(LockMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(LockMode::parse("compliance"), Some(LockMode::Compliance));
        assert_eq!(LockMode::parse("LEGAL_HOLD"), None);
        let t = time::macros::datetime!(2027-02-19 14:00:00 UTC);
        assert_eq!(retain_until_text(t), "2027-02-19T14:00:00Z");
        assert_eq!(parse_retain_until("2027-02-19T14:00:00Z"), Some(t));
        assert_eq!(parse_retain_until("next year"), None);
    }
}
