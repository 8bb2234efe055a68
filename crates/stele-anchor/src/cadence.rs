//! When the next anchor is due (docs/contracts.md §2): every interval on the boundary
//! (hourly at :00 by default) even when nothing happened, every N events,
//! on HMAC key rotation; shutdown and manual anchors are asked for directly.

use std::time::Duration;

use time::OffsetDateTime;

use crate::Trigger;

/// Anchoring cadence settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cadence {
    /// Time between time-triggered anchors; anchors fall on multiples of it since the Unix epoch.
    pub interval: Duration,
    /// Events since the previous anchor that trigger a volume anchor.
    pub volume: u64,
}

impl Default for Cadence {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3600),
            volume: 10_000,
        }
    }
}

/// What the cadence looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainProgress {
    /// Time of the chain's last anchor, if any.
    pub last_anchor_ts: Option<OffsetDateTime>,
    /// Tree size at the last anchor.
    pub last_anchor_size: u64,
    /// HMAC key id at the last anchor.
    pub last_anchor_key_id: Option<String>,
    /// Current tree size.
    pub size: u64,
    /// Current active HMAC key id.
    pub key_id: String,
}

/// The first interval boundary strictly after `t`; `t` itself when that
/// boundary is past the end of representable time (an anchor may claim 9999).
pub fn next_boundary(t: OffsetDateTime, interval: Duration) -> OffsetDateTime {
    checked_next_boundary(t, interval).unwrap_or(t)
}

/// The first interval boundary strictly after `t`, if it can be represented.
pub fn checked_next_boundary(t: OffsetDateTime, interval: Duration) -> Option<OffsetDateTime> {
    let step = i128::try_from(interval.as_nanos())
        .unwrap_or(i128::MAX)
        .max(1_000_000_000);
    let next = t
        .unix_timestamp_nanos()
        .div_euclid(step)
        .checked_add(1)?
        .checked_mul(step)?;
    OffsetDateTime::from_unix_timestamp_nanos(next).ok()
}

impl Cadence {
    /// The trigger due at `now`, if any. A chain never anchored is due at once.
    pub fn due(&self, p: &ChainProgress, now: OffsetDateTime) -> Option<Trigger> {
        let Some(last) = p.last_anchor_ts else {
            return Some(Trigger::Time);
        };
        if p.last_anchor_key_id
            .as_deref()
            .is_some_and(|k| k != p.key_id)
        {
            return Some(Trigger::KeyRotation);
        }
        if self.volume > 0 && p.size.saturating_sub(p.last_anchor_size) >= self.volume {
            return Some(Trigger::Volume);
        }
        if now >= next_boundary(last, self.interval) {
            return Some(Trigger::Time);
        }
        None
    }

    /// When to look again if nothing is due now: the next boundary after the last anchor.
    pub fn next_time(&self, p: &ChainProgress, now: OffsetDateTime) -> OffsetDateTime {
        p.last_anchor_ts
            .map_or(now, |last| next_boundary(last, self.interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn progress(
        last: Option<OffsetDateTime>,
        last_size: u64,
        size: u64,
        key: &str,
    ) -> ChainProgress {
        ChainProgress {
            last_anchor_ts: last,
            last_anchor_size: last_size,
            last_anchor_key_id: Some("k1".into()),
            size,
            key_id: key.into(),
        }
    }

    #[test]
    fn boundaries_are_aligned() {
        let hour = Duration::from_secs(3600);
        assert_eq!(
            next_boundary(datetime!(2026-01-15 14:20:05 UTC), hour),
            datetime!(2026-01-15 15:00:00 UTC)
        );
        assert_eq!(
            next_boundary(datetime!(2026-01-15 14:00:00 UTC), hour),
            datetime!(2026-01-15 15:00:00 UTC)
        );
        let five = Duration::from_secs(300);
        assert_eq!(
            next_boundary(datetime!(2026-01-15 14:07:00 UTC), five),
            datetime!(2026-01-15 14:10:00 UTC)
        );
    }

    #[test]
    fn boundaries_at_the_end_of_time_do_not_panic() {
        let late = datetime!(9999-12-31 23:30:00 UTC);
        assert_eq!(checked_next_boundary(late, Duration::from_secs(3600)), None);
        assert_eq!(next_boundary(late, Duration::from_secs(3600)), late);
        assert_eq!(
            checked_next_boundary(late, Duration::from_secs(u64::MAX)),
            None
        );
        let c = Cadence::default();
        assert_eq!(
            c.due(&progress(Some(late), 0, 1, "k1"), late),
            Some(Trigger::Time)
        );
    }

    #[test]
    fn triggers_in_priority_order() {
        let c = Cadence::default();
        let t = datetime!(2026-01-15 14:20:00 UTC);
        assert_eq!(
            c.due(
                &ChainProgress {
                    last_anchor_ts: None,
                    ..progress(None, 0, 0, "k1")
                },
                t
            ),
            Some(Trigger::Time)
        );
        assert_eq!(c.due(&progress(Some(t), 0, 5, "k1"), t), None);
        assert_eq!(
            c.due(&progress(Some(t), 0, 10_000, "k1"), t),
            Some(Trigger::Volume)
        );
        assert_eq!(
            c.due(&progress(Some(t), 0, 5, "k2"), t),
            Some(Trigger::KeyRotation)
        );
        // An interval with no new events still anchors: silence is evidence too.
        assert_eq!(
            c.due(
                &progress(Some(t), 5, 5, "k1"),
                datetime!(2026-01-15 15:00:00 UTC)
            ),
            Some(Trigger::Time)
        );
        assert_eq!(
            c.due(
                &progress(Some(t), 5, 5, "k1"),
                datetime!(2026-01-15 14:59:59 UTC)
            ),
            None
        );
    }
}
