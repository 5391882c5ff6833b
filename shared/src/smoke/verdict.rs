//! From what a run observed to a verdict: pure, table-tested.

use super::engine::{ReadinessOutcome, ReadinessState, RunReport};

/// What a run means for the release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every check passed.
    Pass { summary: String },
    /// At least one thing failed; every reason, in order.
    Fail { reasons: Vec<String> },
    /// Readiness is still open when the invocation's budget ran out.
    Wait { state: ReadinessState, note: String },
}

pub fn decide(report: &RunReport) -> Decision {
    match &report.readiness {
        Some(ReadinessOutcome::NotReady { reason, .. }) => {
            return Decision::Fail {
                reasons: vec![format!("readiness: {reason}")],
            };
        }
        Some(ReadinessOutcome::Pending { state, last }) => {
            return Decision::Wait {
                state: *state,
                note: format!(
                    "readiness: {} polls, {} consecutive successes so far{}",
                    state.polls,
                    state.consecutive,
                    last.as_deref()
                        .map(|l| format!("; last: {l}"))
                        .unwrap_or_default()
                ),
            };
        }
        _ => {}
    }
    let reasons: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{}: {}", c.name, c.reason.as_deref().unwrap_or("failed")))
        .collect();
    if !reasons.is_empty() {
        return Decision::Fail { reasons };
    }
    let mut summary = format!("{} checks passed", report.checks.len());
    if let Some(ReadinessOutcome::Ready { polls, elapsed_ms }) = &report.readiness {
        summary.push_str(&format!("; ready after {polls} polls in {elapsed_ms} ms"));
    }
    Decision::Pass { summary }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smoke::engine::CheckReport;

    fn check(name: &str, passed: bool, reason: Option<&str>) -> CheckReport {
        CheckReport {
            name: name.into(),
            passed,
            status: Some(200),
            latency_ms: Some(3),
            attempts: 1,
            reason: reason.map(Into::into),
        }
    }

    #[test]
    fn decision_table() {
        let state = ReadinessState {
            started_ms: 1,
            polls: 4,
            consecutive: 1,
        };
        let cases: Vec<(RunReport, &str)> = vec![
            (
                RunReport {
                    readiness: None,
                    checks: vec![check("a", true, None), check("b", true, None)],
                },
                "pass:2 checks passed",
            ),
            (
                RunReport {
                    readiness: Some(ReadinessOutcome::Ready {
                        polls: 3,
                        elapsed_ms: 40,
                    }),
                    checks: vec![check("a", true, None)],
                },
                "pass:1 checks passed; ready after 3 polls in 40 ms",
            ),
            (
                RunReport {
                    readiness: None,
                    checks: vec![
                        check("a", false, Some("status 500")),
                        check("b", true, None),
                    ],
                },
                "fail:a: status 500",
            ),
            (
                RunReport {
                    readiness: Some(ReadinessOutcome::NotReady {
                        polls: 9,
                        elapsed_ms: 1,
                        reason: "never".into(),
                    }),
                    checks: vec![],
                },
                "fail:readiness: never",
            ),
            (
                RunReport {
                    readiness: Some(ReadinessOutcome::Pending {
                        state,
                        last: Some("503".into()),
                    }),
                    checks: vec![],
                },
                "wait:readiness: 4 polls, 1 consecutive successes so far; last: 503",
            ),
        ];
        for (report, want) in cases {
            let got = match decide(&report) {
                Decision::Pass { summary } => format!("pass:{summary}"),
                Decision::Fail { reasons } => format!("fail:{}", reasons.join("|")),
                Decision::Wait { note, .. } => format!("wait:{note}"),
            };
            assert_eq!(got, want);
        }
    }

    #[test]
    fn every_failed_check_is_a_reason() {
        let r = RunReport {
            readiness: None,
            checks: vec![check("a", false, None), check("b", false, Some("x"))],
        };
        assert_eq!(
            decide(&r),
            Decision::Fail {
                reasons: vec!["a: failed".into(), "b: x".into()]
            }
        );
    }
}
