//! The time an invocation may spend, derived from its Lambda deadline.
//!
//! Checks stop at [`Budget::work_deadline`], which is the Lambda deadline minus a reserve kept
//! for the report call (reliability.md, invariant 2). The report itself is bounded by
//! [`Budget::report_timeout`], so it never outlives the invocation.

use std::time::{Duration, Instant, SystemTime};

/// Time left for work and for the report, measured on the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Instant,
    reserve: Duration,
}

impl Budget {
    /// A budget ending at `deadline` (wall clock, as Lambda gives it), keeping `reserve` for the
    /// report. A deadline already in the past gives a budget with no time left.
    pub fn from_deadline(deadline: SystemTime, reserve: Duration) -> Self {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Self::from_now(left, reserve)
    }

    /// A budget of `total` from now, keeping `reserve` of it for the report.
    pub fn from_now(total: Duration, reserve: Duration) -> Self {
        Self {
            deadline: Instant::now() + total,
            reserve,
        }
    }

    /// When the invocation ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// When checks must have stopped, leaving the reserve for the report.
    pub fn work_deadline(&self) -> Instant {
        self.deadline
            .checked_sub(self.reserve)
            .unwrap_or_else(Instant::now)
    }

    /// Time left for work (zero once the reserve is reached).
    pub fn work_left(&self) -> Duration {
        self.work_deadline()
            .saturating_duration_since(Instant::now())
    }

    /// Time left until the invocation ends.
    pub fn total_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// True when nothing is left for work.
    pub fn work_exhausted(&self) -> bool {
        self.work_left().is_zero()
    }

    /// How long the report may take: what is left of the invocation minus a small margin for
    /// the runtime to send our reply, capped at `cap` and never below `floor` (an expired
    /// budget still gets one short, honest attempt at reporting).
    pub fn report_timeout(&self, cap: Duration, floor: Duration) -> Duration {
        let margin = Duration::from_millis(150);
        self.total_left().saturating_sub(margin).min(cap).max(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_kept_for_the_report() {
        let b = Budget::from_now(Duration::from_secs(10), Duration::from_secs(3));
        let left = b.work_left();
        assert!(left <= Duration::from_secs(7), "{left:?}");
        assert!(left > Duration::from_secs(6), "{left:?}");
        assert!(!b.work_exhausted());
    }

    #[test]
    fn a_past_deadline_leaves_no_work_time_but_a_floor_for_the_report() {
        let b = Budget::from_deadline(
            SystemTime::now() - Duration::from_secs(5),
            Duration::from_secs(1),
        );
        assert!(b.work_exhausted());
        assert_eq!(b.total_left(), Duration::ZERO);
        assert_eq!(
            b.report_timeout(Duration::from_secs(5), Duration::from_millis(500)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn a_reserve_larger_than_the_budget_leaves_no_work_time() {
        let b = Budget::from_now(Duration::from_secs(1), Duration::from_secs(3));
        assert!(b.work_exhausted());
        let t = b.report_timeout(Duration::from_secs(5), Duration::from_millis(100));
        assert!(
            t <= Duration::from_secs(1) && t >= Duration::from_millis(100),
            "{t:?}"
        );
    }
}
