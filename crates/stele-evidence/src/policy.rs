//! How long evidence is locked, and the floor below which stele refuses.

use stele_worm::{LockMode, Retention};
use time::{Duration, OffsetDateTime};

use crate::EvidenceError;

/// Retention policy for new evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Days from upload until the lock expires.
    pub days: u32,
    /// The shortest retention accepted; lowering it is an explicit operator decision.
    pub floor_days: u32,
    /// Lock mode.
    pub mode: LockMode,
}

impl RetentionPolicy {
    /// 90 days, as the seeds and HIPAA practice ask.
    pub const DEFAULT_DAYS: u32 = 90;
    /// The default floor: evidence is never kept for less unless an operator lowers it.
    pub const DEFAULT_FLOOR_DAYS: u32 = 90;
    /// S3's longest retention (100 years).
    pub const MAX_DAYS: u32 = 36_500;

    /// Checks the days against the floor and S3's limits.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::RetentionBelowFloor`] or [`EvidenceError::Invalid`].
    pub fn validate(&self) -> Result<(), EvidenceError> {
        if self.days == 0 || self.days > Self::MAX_DAYS {
            return Err(EvidenceError::Invalid(format!(
                "retention of {} days is out of range: use 1-{} days",
                self.days,
                Self::MAX_DAYS
            )));
        }
        if self.days < self.floor_days {
            return Err(EvidenceError::RetentionBelowFloor {
                days: self.days,
                floor: self.floor_days,
            });
        }
        Ok(())
    }

    /// The lock for an upload at `now`: retain-until is whole seconds (S3's
    /// precision), and no later than any store can hold
    /// ([`stele_worm::latest_retain_until`]).
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate); [`EvidenceError::Invalid`] for a
    /// retention that would end after the latest retain-until a store can hold.
    pub fn retention_at(&self, now: OffsetDateTime) -> Result<Retention, EvidenceError> {
        self.validate()?;
        let too_long = || {
            let latest = stele_worm::latest_retain_until(now);
            EvidenceError::Invalid(format!(
                "retention of {} days from {} would end after {}, the latest retain-until stele asks any store for (AWS allows at most 100 years; Ceph RGW keeps retain-until in 32 bits and silently wraps a later date to one near 1970, leaving the object unlocked); use at most {} days. Nothing was stored",
                self.days,
                crate::vault::rfc3339(now),
                crate::vault::rfc3339(latest),
                stele_worm::max_retention_days(now)
            ))
        };
        let until = now
            .to_offset(time::UtcOffset::UTC)
            .checked_add(Duration::days(i64::from(self.days)))
            .ok_or_else(too_long)?;
        let retention = Retention {
            mode: self.mode,
            retain_until: until.replace_nanosecond(0).unwrap_or(until),
        };
        match retention.check(now) {
            Ok(()) => Ok(retention),
            Err(stele_worm::WormError::RetainUntilTooLate { .. }) => Err(too_long()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            days: Self::DEFAULT_DAYS,
            floor_days: Self::DEFAULT_FLOOR_DAYS,
            mode: LockMode::Compliance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn defaults_are_90_days_compliance() {
        let p = RetentionPolicy::default();
        let r = p
            .retention_at(datetime!(2026-01-01 12:00:00.7 UTC))
            .unwrap();
        assert_eq!(r.mode, LockMode::Compliance);
        assert_eq!(r.retain_until, datetime!(2026-04-01 12:00:00 UTC));
    }

    #[test]
    fn retention_ending_after_what_a_store_can_hold_is_refused() {
        // 2106-02-07T06:28:15Z is the last retain-until Ceph RGW can hold.
        let now = datetime!(2026-12-01 00:00:00 UTC);
        let days = |days| RetentionPolicy {
            days,
            ..RetentionPolicy::default()
        };
        assert!(days(28_000).retention_at(now).is_ok());
        let err = days(30_000).retention_at(now).unwrap_err();
        assert!(
            matches!(&err, EvidenceError::Invalid(m) if m.contains("30000 days") && m.contains("2106-02-07T06:28:15Z")),
            "{err}"
        );
        let max = stele_worm::max_retention_days(now);
        assert!(days(max).retention_at(now).is_ok());
        assert!(days(max + 1).retention_at(now).is_err());
    }

    #[test]
    fn below_the_floor_is_refused_unless_the_floor_is_lowered() {
        let short = RetentionPolicy {
            days: 30,
            ..RetentionPolicy::default()
        };
        assert!(matches!(
            short.validate(),
            Err(EvidenceError::RetentionBelowFloor {
                days: 30,
                floor: 90
            })
        ));
        let lowered = RetentionPolicy {
            floor_days: 1,
            ..short
        };
        assert!(lowered.validate().is_ok());
        assert!(
            RetentionPolicy {
                days: 0,
                floor_days: 0,
                ..short
            }
            .validate()
            .is_err()
        );
        assert!(
            RetentionPolicy {
                days: 40_000,
                ..short
            }
            .validate()
            .is_err()
        );
    }
}
