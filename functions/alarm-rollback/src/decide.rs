//! The decision table (reliability.md, "Decision table for the alarm → rollback router"): live
//! state in, one action and its reason out. Pure: no SDK types, no I/O, no clock.

use deploy_guard::alarms::Target;

/// The alarm as re-read from CloudWatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveAlarm {
    InAlarm,
    /// Another state (`OK`, `INSUFFICIENT_DATA`).
    Other(String),
    /// DescribeAlarms does not know it any more.
    Missing,
}

/// Who deploys an ECS service (from DescribeServices); CodeDeploy targets are always `CodeDeploy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Controller {
    CodeDeploy,
    /// ECS controller with its strategy (ROLLING, BLUE_GREEN, LINEAR, CANARY).
    Ecs(String),
    /// A service whose `deploymentController` is CODE_DEPLOY: its releases are CodeDeploy's.
    EcsServiceByCodeDeploy,
    External,
    ServiceMissing,
}

/// Where a release stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created, queued, in progress, baking, ready; ECS PENDING / IN_PROGRESS.
    InFlight,
    /// A rollback or stop is already under way (ECS ROLLBACK_REQUESTED/IN_PROGRESS, STOP_REQUESTED).
    Unwinding,
    Succeeded,
    Failed,
    Stopped,
    /// ECS ROLLBACK_SUCCESSFUL / ROLLBACK_FAILED.
    RolledBack,
}

/// One deployment (CodeDeploy) or service deployment (ECS), as re-read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Deployment id, or service deployment ARN.
    pub id: String,
    pub phase: Phase,
    /// The service's own word for it (`InProgress`, `ROLLBACK_REQUESTED`, …), for reasons.
    pub status: String,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    /// Set when this release is itself a rollback: CodeDeploy `creator` codeDeployRollback or
    /// `rollbackInfo.rollbackTriggeringDeploymentId`, or deploy-guard's own redeploy. Holds what
    /// it rolled back (or why it counts as a rollback).
    pub rollback_of: Option<String>,
    /// Set when something already rolled this release back (`rollbackInfo.rollbackDeploymentId`).
    pub rolled_back_by: Option<String>,
    /// What it deployed: a revision fingerprint (CodeDeploy) or the target task definition (ECS).
    pub revision: String,
    /// ECS: the task definition it replaced (the source revision).
    pub replaced: Option<String>,
}

/// Everything the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub alarm_name: String,
    pub alarm: LiveAlarm,
    pub target: Target,
    pub controller: Controller,
    /// Newest first.
    pub releases: Vec<Release>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// `StopDeployment(autoRollbackEnabled = true)`.
    StopDeployment {
        deployment_id: String,
    },
    /// `StopServiceDeployment(stopType = ROLLBACK)`.
    StopServiceDeployment {
        arn: String,
    },
    /// `CreateDeployment` of the revision of `good` (an earlier successful deployment).
    Redeploy {
        bad: String,
        good: String,
    },
    /// `UpdateService` back to `task_definition`.
    UpdateService {
        bad: String,
        task_definition: String,
    },
}

impl Action {
    /// Short name for the outcome line.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Nothing => "nothing",
            Action::StopDeployment { .. } => "StopDeployment",
            Action::StopServiceDeployment { .. } => "StopServiceDeployment",
            Action::Redeploy { .. } => "CreateDeployment",
            Action::UpdateService { .. } => "UpdateService",
        }
    }

    /// The release this action rolls back.
    pub fn release(&self) -> Option<&str> {
        match self {
            Action::Nothing => None,
            Action::StopDeployment { deployment_id } => Some(deployment_id),
            Action::StopServiceDeployment { arn } => Some(arn),
            Action::Redeploy { bad, .. } | Action::UpdateService { bad, .. } => Some(bad),
        }
    }
}

/// The action and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub reason: String,
}

fn nothing(reason: impl Into<String>) -> Decision {
    Decision {
        action: Action::Nothing,
        reason: reason.into(),
    }
}

fn minutes(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s < 120 {
        format!("{s} s")
    } else {
        format!("{} min", s / 60)
    }
}

/// Marks ECS releases that undo the one before them (its target is what the previous one
/// replaced, and it replaces what the previous one deployed): deploy-guard's own `UpdateService`
/// rollback, or anyone's manual revert. A rollback is never rolled back.
fn with_reverts(mut releases: Vec<Release>) -> Vec<Release> {
    for i in 0..releases.len().saturating_sub(1) {
        let older = releases[i + 1].clone();
        let r = &mut releases[i];
        if r.rollback_of.is_none()
            && older.replaced.as_deref() == Some(r.revision.as_str())
            && r.replaced.as_deref() == Some(older.revision.as_str())
        {
            r.rollback_of = Some(format!(
                "{} (it returns to the task definition {} replaced)",
                older.id, older.id
            ));
        }
    }
    releases
}

/// The decision table. `window_ms`: how long after a release finished an alarm still rolls it
/// back; `now_ms`: the current time.
pub fn decide(facts: &Facts, window_ms: i64, now_ms: i64) -> Decision {
    let alarm = &facts.alarm_name;
    let target = &facts.target;
    match &facts.alarm {
        LiveAlarm::InAlarm => {}
        LiveAlarm::Other(state) => {
            return nothing(format!(
                "alarm {alarm} is {state} now (re-read): it recovered, nothing to roll back"
            ))
        }
        LiveAlarm::Missing => {
            return nothing(format!(
                "alarm {alarm} no longer exists (re-read): nothing to roll back"
            ))
        }
    }
    match &facts.controller {
        Controller::CodeDeploy | Controller::Ecs(_) => {}
        Controller::EcsServiceByCodeDeploy => {
            return nothing(format!(
                "{target} is deployed by CodeDeploy (deploymentController CODE_DEPLOY): map the alarm to its CodeDeploy application and deployment group instead"
            ))
        }
        Controller::External => {
            return nothing(format!(
                "{target} uses the EXTERNAL deployment controller: deploy-guard cannot roll it back"
            ))
        }
        Controller::ServiceMissing => {
            return nothing(format!(
                "{target}: the service does not exist (DescribeServices)"
            ))
        }
    }
    let ecs = matches!(facts.target, Target::Ecs { .. });
    let releases = if ecs {
        with_reverts(facts.releases.clone())
    } else {
        facts.releases.clone()
    };

    // A release in flight: stop it, unless it is itself a rollback or already unwinding.
    if let Some(r) = releases
        .iter()
        .find(|r| matches!(r.phase, Phase::InFlight | Phase::Unwinding))
    {
        if r.phase == Phase::Unwinding {
            return nothing(format!(
                "{} of {target} is already rolling back or stopping ({}): nothing more to do",
                r.id, r.status
            ));
        }
        if let Some(of) = &r.rollback_of {
            return nothing(format!(
                "{} of {target} ({}) is itself a rollback of {of}: a rollback is never rolled back",
                r.id, r.status
            ));
        }
        let action = if ecs {
            Action::StopServiceDeployment { arn: r.id.clone() }
        } else {
            Action::StopDeployment {
                deployment_id: r.id.clone(),
            }
        };
        let how = if ecs {
            "stopping it with ROLLBACK"
        } else {
            "stopping it with automatic rollback"
        };
        return Decision {
            action,
            reason: format!(
                "alarm {alarm} is in ALARM while {} of {target} is in flight ({}): {how}",
                r.id, r.status
            ),
        };
    }

    let Some(latest) = releases.first() else {
        return nothing(format!(
            "no deployment of {target} is in flight or on record: nothing to roll back"
        ));
    };
    if let Some(of) = &latest.rollback_of {
        return nothing(format!(
            "the latest deployment of {target}, {} ({}), was a rollback of {of}: a rollback is never rolled back",
            latest.id, latest.status
        ));
    }
    if let Some(by) = &latest.rolled_back_by {
        return nothing(format!(
            "the latest deployment of {target}, {} ({}), was already rolled back by {by}",
            latest.id, latest.status
        ));
    }
    match latest.phase {
        Phase::Succeeded => {}
        Phase::RolledBack => {
            return nothing(format!(
                "the latest deployment of {target}, {}, already rolled back ({})",
                latest.id, latest.status
            ))
        }
        _ => {
            return nothing(format!(
                "no deployment of {target} is in flight; the latest, {}, ended {} without a rollback: not redeploying over an unknown state, roll back by hand if needed",
                latest.id, latest.status
            ))
        }
    }
    let finished = latest.finished_ms.unwrap_or(latest.created_ms);
    let ago = now_ms - finished;
    if ago > window_ms {
        return nothing(format!(
            "no deployment of {target} is in flight; the latest, {}, finished {} ago, outside the rollback window of {}",
            latest.id,
            minutes(ago),
            minutes(window_ms)
        ));
    }
    let within = format!(
        "alarm {alarm} is in ALARM {} after {} of {target} finished (rollback window {})",
        minutes(ago),
        latest.id,
        minutes(window_ms)
    );
    if ecs {
        return match &latest.replaced {
            Some(td) if td != &latest.revision => Decision {
                action: Action::UpdateService {
                    bad: latest.id.clone(),
                    task_definition: td.clone(),
                },
                reason: format!("{within}: updating the service back to {td}"),
            },
            _ => nothing(format!(
                "{within}, but it replaced no other task definition: nothing earlier to go back to"
            )),
        };
    }
    match releases[1..]
        .iter()
        .find(|r| r.phase == Phase::Succeeded && r.revision != latest.revision)
    {
        Some(good) => Decision {
            action: Action::Redeploy {
                bad: latest.id.clone(),
                good: good.id.clone(),
            },
            reason: format!(
                "{within}: redeploying the revision of {}, the last successful deployment before it",
                good.id
            ),
        },
        None => nothing(format!(
            "{within}, but no earlier successful deployment of another revision is on record: nothing to go back to"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const MIN: i64 = 60_000;
    const WINDOW: i64 = 30 * MIN;

    fn cd_target() -> Target {
        Target::CodeDeploy {
            application: "app".into(),
            deployment_group: "grp".into(),
        }
    }

    fn ecs_target() -> Target {
        Target::Ecs {
            cluster: "c".into(),
            service: "s".into(),
        }
    }

    fn rel(id: &str, phase: Phase, status: &str, finished_ago_min: Option<i64>) -> Release {
        Release {
            id: id.into(),
            phase,
            status: status.into(),
            created_ms: NOW - 120 * MIN,
            finished_ms: finished_ago_min.map(|m| NOW - m * MIN),
            rollback_of: None,
            rolled_back_by: None,
            revision: format!("rev-{id}"),
            replaced: None,
        }
    }

    fn facts(target: Target, controller: Controller, releases: Vec<Release>) -> Facts {
        Facts {
            alarm_name: "shop-5xx".into(),
            alarm: LiveAlarm::InAlarm,
            target,
            controller,
            releases,
        }
    }

    fn cd(releases: Vec<Release>) -> Facts {
        facts(cd_target(), Controller::CodeDeploy, releases)
    }

    fn ecs(releases: Vec<Release>) -> Facts {
        facts(ecs_target(), Controller::Ecs("ROLLING".into()), releases)
    }

    fn ecs_rel(
        id: &str,
        phase: Phase,
        status: &str,
        from: &str,
        to: &str,
        ago: Option<i64>,
    ) -> Release {
        Release {
            revision: to.into(),
            replaced: Some(from.into()),
            ..rel(id, phase, status, ago)
        }
    }

    /// Every row of the decision table: the facts, the action expected, and words of the reason.
    #[test]
    fn decision_table() {
        let in_flight = rel("d-NEW", Phase::InFlight, "InProgress", None);
        let good = rel("d-OLD", Phase::Succeeded, "Succeeded", Some(24 * 60));
        let recent = rel("d-NEW", Phase::Succeeded, "Succeeded", Some(5));
        let old_finish = rel("d-NEW", Phase::Succeeded, "Succeeded", Some(45));
        let cd_rollback = Release {
            rollback_of: Some("d-NEW".into()),
            ..rel("d-RB", Phase::InFlight, "InProgress", None)
        };
        let stopped_rolled_back = Release {
            rolled_back_by: Some("d-RB".into()),
            ..rel("d-NEW", Phase::Stopped, "Stopped", Some(1))
        };
        let same_revision_good = Release {
            revision: "rev-d-NEW".into(),
            ..rel("d-SAME", Phase::Succeeded, "Succeeded", Some(60))
        };
        let mut recovered = cd(vec![in_flight.clone()]);
        recovered.alarm = LiveAlarm::Other("OK".into());
        let mut deleted = cd(vec![in_flight.clone()]);
        deleted.alarm = LiveAlarm::Missing;
        let stop_cd = Action::StopDeployment {
            deployment_id: "d-NEW".into(),
        };
        let stop_ecs = Action::StopServiceDeployment { arn: "sd-2".into() };
        let cases: Vec<(&str, Facts, Action, &str)> = vec![
            (
                "alarm no longer in ALARM",
                recovered,
                Action::Nothing,
                "is OK now (re-read)",
            ),
            (
                "alarm deleted",
                deleted,
                Action::Nothing,
                "no longer exists",
            ),
            (
                "nothing on record",
                cd(vec![]),
                Action::Nothing,
                "no deployment of codedeploy:app/grp",
            ),
            (
                "finished outside the window",
                cd(vec![old_finish, good.clone()]),
                Action::Nothing,
                "finished 45 min ago, outside the rollback window of 30 min",
            ),
            (
                "CodeDeploy in flight",
                cd(vec![in_flight.clone(), good.clone()]),
                stop_cd.clone(),
                "in flight (InProgress): stopping it with automatic rollback",
            ),
            (
                "CodeDeploy rollback in flight",
                cd(vec![cd_rollback, stopped_rolled_back.clone(), good.clone()]),
                Action::Nothing,
                "itself a rollback of d-NEW",
            ),
            (
                "Stopped with a rollback, rollback finished",
                cd(vec![
                    Release {
                        rollback_of: Some("d-NEW".into()),
                        ..rel("d-RB", Phase::Succeeded, "Succeeded", Some(1))
                    },
                    stopped_rolled_back.clone(),
                ]),
                Action::Nothing,
                "was a rollback of d-NEW",
            ),
            (
                "Failed with a rollback",
                cd(vec![
                    Release {
                        phase: Phase::Failed,
                        status: "Failed".into(),
                        ..stopped_rolled_back.clone()
                    },
                    good.clone(),
                ]),
                Action::Nothing,
                "already rolled back by d-RB",
            ),
            (
                "Failed without a rollback",
                cd(vec![
                    rel("d-NEW", Phase::Failed, "Failed", Some(2)),
                    good.clone(),
                ]),
                Action::Nothing,
                "ended Failed without a rollback",
            ),
            (
                "CodeDeploy finished within the window",
                cd(vec![recent.clone(), same_revision_good, good.clone()]),
                Action::Redeploy {
                    bad: "d-NEW".into(),
                    good: "d-OLD".into(),
                },
                "5 min after d-NEW",
            ),
            (
                "CodeDeploy finished within the window, nothing earlier",
                cd(vec![recent.clone()]),
                Action::Nothing,
                "no earlier successful deployment",
            ),
            (
                "ECS in flight",
                ecs(vec![
                    ecs_rel("sd-2", Phase::InFlight, "IN_PROGRESS", "td:1", "td:2", None),
                    ecs_rel(
                        "sd-1",
                        Phase::Succeeded,
                        "SUCCESSFUL",
                        "td:0",
                        "td:1",
                        Some(600),
                    ),
                ]),
                stop_ecs.clone(),
                "stopping it with ROLLBACK",
            ),
            (
                "ECS blue/green in flight",
                facts(
                    ecs_target(),
                    Controller::Ecs("BLUE_GREEN".into()),
                    vec![ecs_rel(
                        "sd-2",
                        Phase::InFlight,
                        "PENDING",
                        "td:1",
                        "td:2",
                        None,
                    )],
                ),
                stop_ecs,
                "in flight (PENDING)",
            ),
            (
                "ECS already rolling back",
                ecs(vec![ecs_rel(
                    "sd-2",
                    Phase::Unwinding,
                    "ROLLBACK_IN_PROGRESS",
                    "td:1",
                    "td:2",
                    None,
                )]),
                Action::Nothing,
                "already rolling back or stopping (ROLLBACK_IN_PROGRESS)",
            ),
            (
                "ECS rolled back",
                ecs(vec![ecs_rel(
                    "sd-2",
                    Phase::RolledBack,
                    "ROLLBACK_SUCCESSFUL",
                    "td:1",
                    "td:2",
                    Some(1),
                )]),
                Action::Nothing,
                "already rolled back (ROLLBACK_SUCCESSFUL)",
            ),
            (
                "ECS finished within the window",
                ecs(vec![ecs_rel(
                    "sd-2",
                    Phase::Succeeded,
                    "SUCCESSFUL",
                    "td:1",
                    "td:2",
                    Some(3),
                )]),
                Action::UpdateService {
                    bad: "sd-2".into(),
                    task_definition: "td:1".into(),
                },
                "updating the service back to td:1",
            ),
            (
                "ECS revert in flight (our own UpdateService rollback)",
                ecs(vec![
                    ecs_rel("sd-3", Phase::InFlight, "IN_PROGRESS", "td:2", "td:1", None),
                    ecs_rel(
                        "sd-2",
                        Phase::Succeeded,
                        "SUCCESSFUL",
                        "td:1",
                        "td:2",
                        Some(3),
                    ),
                ]),
                Action::Nothing,
                "itself a rollback of sd-2",
            ),
            (
                "ECS revert finished",
                ecs(vec![
                    ecs_rel(
                        "sd-3",
                        Phase::Succeeded,
                        "SUCCESSFUL",
                        "td:2",
                        "td:1",
                        Some(1),
                    ),
                    ecs_rel(
                        "sd-2",
                        Phase::Succeeded,
                        "SUCCESSFUL",
                        "td:1",
                        "td:2",
                        Some(3),
                    ),
                ]),
                Action::Nothing,
                "was a rollback of sd-2",
            ),
            (
                "ECS first deployment of a service",
                ecs(vec![Release {
                    replaced: None,
                    ..rel("sd-1", Phase::Succeeded, "SUCCESSFUL", Some(2))
                }]),
                Action::Nothing,
                "replaced no other task definition",
            ),
            (
                "ECS service deployed by CodeDeploy",
                facts(ecs_target(), Controller::EcsServiceByCodeDeploy, vec![]),
                Action::Nothing,
                "map the alarm to its CodeDeploy application",
            ),
            (
                "ECS EXTERNAL controller",
                facts(ecs_target(), Controller::External, vec![]),
                Action::Nothing,
                "EXTERNAL",
            ),
            (
                "ECS service missing",
                facts(ecs_target(), Controller::ServiceMissing, vec![]),
                Action::Nothing,
                "does not exist",
            ),
            (
                "ECS stopped (superseded) latest",
                ecs(vec![ecs_rel(
                    "sd-2",
                    Phase::Stopped,
                    "STOPPED",
                    "td:1",
                    "td:2",
                    Some(2),
                )]),
                Action::Nothing,
                "ended STOPPED without a rollback",
            ),
        ];
        for (row, f, action, words) in cases {
            let d = decide(&f, WINDOW, NOW);
            assert_eq!(d.action, action, "{row}: {}", d.reason);
            assert!(
                d.reason.contains(words),
                "{row}: {words:?} not in {}",
                d.reason
            );
        }
    }

    #[test]
    fn the_window_edge_is_inclusive() {
        let f = ecs(vec![ecs_rel(
            "sd-2",
            Phase::Succeeded,
            "SUCCESSFUL",
            "td:1",
            "td:2",
            Some(30),
        )]);
        assert_eq!(decide(&f, WINDOW, NOW).action.name(), "UpdateService");
        assert_eq!(decide(&f, WINDOW - 1, NOW).action, Action::Nothing);
    }

    #[test]
    fn action_names_and_releases() {
        let a = Action::Redeploy {
            bad: "d-1".into(),
            good: "d-0".into(),
        };
        assert_eq!((a.name(), a.release()), ("CreateDeployment", Some("d-1")));
        assert_eq!(Action::Nothing.release(), None);
    }
}
