//! The time an invocation may spend, derived from its Lambda deadline.
//!
//! Checks stop at [`Budget::work_deadline`], which is the Lambda deadline minus a reserve kept
//! for the report call (reliability.md, invariant 2). The report itself is bounded by
//! [`Budget::report_timeout`], so it never outlives the invocation.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;

/// Why [`Budget::guard`] has no result for the work it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interrupted {
    /// The deadline left no time for work at all: the work never started.
    NoTime { left: Duration, reserve: Duration },
    /// The work panicked (a bug); the panic's message.
    Panicked(String),
    /// The work was still running when its time ran out.
    OutOfTime,
}

impl Interrupted {
    /// A reason for a verdict, saying what could not be done (`doing`: "check", "act", …).
    pub fn reason(&self, doing: &str) -> String {
        match self {
            Interrupted::NoTime { left, reserve } => format!(
                "no time to {doing}: the invocation's deadline leaves {} ms, less than the {} ms kept for the report",
                left.as_millis(),
                reserve.as_millis()
            ),
            Interrupted::Panicked(msg) => {
                format!("internal error in deploy-guard (a bug; please report it): {msg}")
            }
            Interrupted::OutOfTime => format!(
                "ran out of time before a verdict: the invocation's time budget ran out before the {doing} finished (raise the function's timeout, or look for a slow AWS call in the logs)"
            ),
        }
    }
}

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

    /// Runs `work` under `catch_unwind`, for at most the work time left plus `grace` (work that
    /// stops itself at the work deadline gets `grace` to do so; the timeout is the backstop for
    /// what does not, such as a hung AWS call). Never starts work when no time is left. Every
    /// function runs its work through this, so a panic or a hang still ends in a verdict.
    pub async fn guard<F: Future>(
        &self,
        work: F,
        grace: Duration,
    ) -> Result<F::Output, Interrupted> {
        if self.work_exhausted() {
            return Err(Interrupted::NoTime {
                left: self.total_left(),
                reserve: self.deadline - self.work_deadline(),
            });
        }
        let limit = self.work_left() + grace;
        match tokio::time::timeout(limit, AssertUnwindSafe(work).catch_unwind()).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(panic)) => Err(Interrupted::Panicked(
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string()),
            )),
            Err(_) => Err(Interrupted::OutOfTime),
        }
    }

    /// The part of the reserve a self-stopping piece of work may overrun its deadline by.
    pub fn grace(&self) -> Duration {
        (self.deadline - self.work_deadline()) / 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn guard_turns_a_panic_a_hang_and_no_time_into_reasons() {
        // Generous budgets: these machines are shared, and only the outcome is asserted.
        let b = Budget::from_now(Duration::from_secs(60), Duration::from_millis(100));
        assert_eq!(b.guard(async { 7 }, Duration::ZERO).await, Ok(7));
        let panicked: Result<(), _> = b.guard(async { panic!("kaboom") }, Duration::ZERO).await;
        assert_eq!(panicked, Err(Interrupted::Panicked("kaboom".into())));
        assert!(Interrupted::Panicked("kaboom".into())
            .reason("check")
            .contains("kaboom"));
        let short = Budget::from_now(Duration::from_millis(1500), Duration::from_millis(100));
        let hung = short
            .guard(std::future::pending::<()>(), Duration::ZERO)
            .await;
        assert_eq!(hung, Err(Interrupted::OutOfTime));
        let gone = Budget::from_now(Duration::from_millis(50), Duration::from_millis(100));
        let never: Result<(), _> = gone
            .guard(async { panic!("not run") }, Duration::ZERO)
            .await;
        let Err(stop) = never else {
            panic!("work ran without time")
        };
        let reason = stop.reason("act");
        assert!(reason.starts_with("no time to act"), "{reason}");
        assert!(reason.contains("100 ms kept"), "{reason}");
    }

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
