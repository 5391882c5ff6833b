//! One alarm event: check it is ours, map the alarm to its target, re-read live state, decide,
//! act at most once, announce, and write one decision line.
//!
//! Whatever happens inside (a panic, an AWS error, the deadline) ends in that one line. Only an
//! event that could not be handled at all (no alarm name, a configuration error, live state that
//! could not be read, an action AWS refused) ends in a Lambda error, so that Lambda's async
//! retry, then the dead-letter queue, gets it. A retry is safe: every action is decided again
//! from live state, and "already done" answers are re-read, not errors.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_codedeploy::types::{DeploymentCreator, DeploymentStatus, RevisionLocation, TimeRange};
use aws_sdk_ecs::types::{
    DeploymentControllerType, ServiceDeploymentStatus, StopServiceDeploymentStopType,
};
use deploy_guard::alarms::{
    check, classify, target_from_tags, AlarmStateChange, Expectation, Incoming, Target,
};
use deploy_guard::aws::{describe_sdk_error, error_code};
use deploy_guard::budget::Budget;
use deploy_guard::config::ConfigError;
use deploy_guard::telemetry::emit_outcome;
use deploy_guard::text::quote;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::{json, Value};

use crate::config::RouterConfig;
use crate::decide::{decide, Action, Controller, Decision, Facts, LiveAlarm, Phase, Release};

/// `detail-type` of the announcement of a rollback this function started.
pub const ANNOUNCEMENT: &str = "Rollback Started";
/// Description of the deployments this function creates: marks them as rollbacks.
pub const REDEPLOY_MARK: &str = "deploy-guard alarm-rollback:";

/// The SDK clients, built once in `main`.
#[derive(Clone, Debug)]
pub struct Clients {
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub codedeploy: aws_sdk_codedeploy::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub events: aws_sdk_eventbridge::Client,
}

/// Everything built once per process.
pub struct App {
    pub clients: Clients,
    pub config: Result<RouterConfig, ConfigError>,
}

/// The decision line, built up as the invocation goes.
#[derive(Debug, Default)]
struct Record {
    event_id: Option<String>,
    alarm: Option<String>,
    alarm_kind: Option<&'static str>,
    target: Option<String>,
    mapping: Option<String>,
    live: BTreeMap<&'static str, Value>,
    action: String,
    release: Option<String>,
    result: String,
    reasons: Vec<String>,
    announcement: Option<String>,
    dry_run: bool,
    /// False when the event could not be handled at all: the invocation ends in a Lambda error.
    handled: bool,
}

impl Record {
    fn error(&mut self, reason: String) {
        self.handled = false;
        if self.action.is_empty() {
            self.action = "none".into();
        }
        self.result = "error".into();
        self.reasons.push(reason);
    }

    fn reason(&self) -> String {
        self.reasons.join("; ")
    }

    fn to_json(&self, started: Instant) -> Value {
        json!({
            "event_id": self.event_id,
            "alarm": self.alarm,
            "alarm_kind": self.alarm_kind,
            "mapped_to": self.target,
            "mapping": self.mapping,
            "live": self.live,
            "action": self.action,
            "release": self.release,
            "result": self.result,
            "reason": self.reason(),
            "announcement": self.announcement,
            "dry_run": self.dry_run,
            "handled": self.handled,
            "duration_ms": started.elapsed().as_millis() as u64,
        })
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The Lambda handler.
pub async fn handle(app: &App, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let started = Instant::now();
    let (payload, ctx) = event.into_parts();
    let mut rec = Record {
        handled: true,
        event_id: payload
            .get("id")
            .and_then(Value::as_str)
            .map(|s| quote(s, 80).trim_matches('"').to_string()),
        dry_run: app.config.as_ref().is_ok_and(|c| c.dry_run),
        ..Record::default()
    };
    match classify(&payload) {
        Incoming::Invalid(reason) => rec.error(format!("cannot handle this event: {reason}")),
        Incoming::NotOurs(reason) => {
            rec.action = "ignored".into();
            rec.result = "ignored".into();
            rec.reasons.push(reason);
        }
        Incoming::Alarm(alarm) => {
            rec.alarm = Some(alarm.detail.alarm_name.clone());
            rec.alarm_kind = Some(alarm.alarm_kind());
            let reserve = app
                .config
                .as_ref()
                .map(|c| c.deadline_reserve)
                .unwrap_or(Duration::from_secs(1));
            let budget = Budget::from_deadline(ctx.deadline(), reserve);
            let account = account_of(&ctx.invoked_function_arn);
            let work = route(app, &alarm, account, &mut rec);
            if let Err(reason) = guarded(work, &budget).await {
                rec.error(reason);
            }
        }
    }
    let line = rec.to_json(started);
    emit_outcome(line.clone());
    if rec.handled {
        Ok(line)
    } else {
        Err(rec.reason().into())
    }
}

/// The account in the function's own ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME`).
fn account_of(function_arn: &str) -> Option<String> {
    function_arn
        .split(':')
        .nth(4)
        .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
}

/// Runs `work` within the budget; a panic or the budget running out becomes an error.
async fn guarded<F: std::future::Future<Output = Result<(), String>>>(
    work: F,
    budget: &Budget,
) -> Result<(), String> {
    budget
        .guard(work, Duration::ZERO)
        .await
        .unwrap_or_else(|stop| Err(stop.reason("handle the event")))
}

/// Checks, maps, reads, decides, acts. `Err` only when the event could not be handled.
async fn route(
    app: &App,
    alarm: &AlarmStateChange,
    account: Option<String>,
    rec: &mut Record,
) -> Result<(), String> {
    let config = app.config.as_ref().map_err(|e| e.to_string())?;
    let expect = Expectation {
        account: config.account.clone().or(account),
        region: config.region.clone(),
        max_age_ms: config.max_event_age.as_millis() as i64,
    };
    if let Err(reason) = check(alarm, &expect, now_ms()) {
        rec.action = "ignored".into();
        rec.result = "ignored".into();
        rec.reasons.push(reason);
        return Ok(());
    }
    let name = alarm.detail.alarm_name.as_str();
    let (live, target) = tokio::join!(
        alarm_state(&app.clients, name),
        map_target(
            &app.clients,
            config,
            alarm,
            rec.mapping.get_or_insert_with(String::new)
        )
    );
    let live = live?;
    rec.live.insert(
        "alarm_state",
        json!(match &live {
            LiveAlarm::InAlarm => "ALARM".to_string(),
            LiveAlarm::Other(s) => s.clone(),
            LiveAlarm::Missing => "missing".to_string(),
        }),
    );
    let target = match target? {
        Ok(t) => t,
        Err(reason) => {
            rec.action = "nothing".into();
            rec.result = "not mapped".into();
            rec.reasons.push(reason);
            return Ok(());
        }
    };
    rec.target = Some(target.to_string());
    let mut decision = None;
    let mut history = History::default();
    for round in 0..2 {
        // The deployments are read only while the alarm fires: a recovered alarm decides nothing.
        let (controller, releases) = if live == LiveAlarm::InAlarm {
            let read = releases(&app.clients, config, &target, &mut history).await?;
            record_live(rec, &read.0, &read.1);
            read
        } else {
            (Controller::CodeDeploy, vec![])
        };
        let facts = Facts {
            alarm_name: name.to_string(),
            alarm: live.clone(),
            target: target.clone(),
            controller,
            releases,
        };
        let d = decide(&facts, config.rollback_window.as_millis() as i64, now_ms());
        rec.action = d.action.name().into();
        rec.release = d.action.release().map(str::to_string);
        rec.reasons.push(d.reason.clone());
        if d.action == Action::Nothing {
            rec.result = if round == 0 {
                "no action".into()
            } else {
                "already handled".into()
            };
            return Ok(());
        }
        if config.dry_run {
            rec.result = format!("dry run: would call {}", d.action.name());
            return Ok(());
        }
        match act(&app.clients, &target, &d, &history, name).await? {
            Acted::Done(result) => {
                rec.result = result;
                decision = Some(d);
                break;
            }
            Acted::AlreadyDone(note) => {
                rec.reasons
                    .push(format!("{note}: re-reading and deciding again"));
                if round == 1 {
                    rec.result = "already completed twice: left as it is".into();
                    return Ok(());
                }
            }
        }
    }
    if let Some(d) = decision {
        rec.announcement =
            Some(announce(&app.clients, config, alarm, &target, &d, &rec.result).await);
    }
    Ok(())
}

fn record_live(rec: &mut Record, controller: &Controller, releases: &[Release]) {
    let summary = |r: &Release| {
        json!({"id": r.id, "status": r.status, "rollback_of": r.rollback_of, "rolled_back_by": r.rolled_back_by,
               "finished_ms_ago": r.finished_ms.map(|f| now_ms() - f)})
    };
    rec.live.insert(
        "controller",
        json!(match controller {
            Controller::CodeDeploy => "CODE_DEPLOY".to_string(),
            Controller::Ecs(s) => format!("ECS {s}"),
            Controller::EcsServiceByCodeDeploy =>
                "ECS service with the CODE_DEPLOY controller".into(),
            Controller::External => "EXTERNAL".into(),
            Controller::ServiceMissing => "service missing".into(),
        }),
    );
    rec.live.insert(
        "releases",
        json!(releases.iter().take(3).map(summary).collect::<Vec<_>>()),
    );
    rec.live.insert("releases_read", json!(releases.len()));
}

// ---------------------------------------------------------------------------------------------
// Reading live state

/// The alarm's state now (metric or composite).
async fn alarm_state(c: &Clients, name: &str) -> Result<LiveAlarm, String> {
    use aws_sdk_cloudwatch::types::AlarmType;
    let out = c
        .cloudwatch
        .describe_alarms()
        .alarm_names(name)
        .alarm_types(AlarmType::MetricAlarm)
        .alarm_types(AlarmType::CompositeAlarm)
        .send()
        .await
        .map_err(|e| {
            format!(
                "could not re-read alarm {name} (DescribeAlarms): {}",
                describe_sdk_error(&e)
            )
        })?;
    let state = out
        .metric_alarms()
        .iter()
        .find(|a| a.alarm_name() == Some(name))
        .and_then(|a| a.state_value())
        .or_else(|| {
            out.composite_alarms()
                .iter()
                .find(|a| a.alarm_name() == Some(name))
                .and_then(|a| a.state_value())
        });
    Ok(match state {
        None => LiveAlarm::Missing,
        Some(s) if s.as_str() == "ALARM" => LiveAlarm::InAlarm,
        Some(s) => LiveAlarm::Other(s.as_str().to_string()),
    })
}

/// The target: the static mapping, else the propagated tags, else ListTagsForResource.
/// `Ok(Err(reason))` when the alarm names no target (nothing to do); `Err` when the tags could
/// not be read.
async fn map_target(
    c: &Clients,
    config: &RouterConfig,
    alarm: &AlarmStateChange,
    how: &mut String,
) -> Result<Result<Target, String>, String> {
    let name = &alarm.detail.alarm_name;
    if let Some(t) = config.targets.lookup(name) {
        *how = "static mapping (ALARM_TARGETS)".into();
        return Ok(Ok(t.clone()));
    }
    let tags = match alarm.propagated_tags() {
        Some(tags) => {
            *how = "alarm tags in the event".into();
            tags
        }
        None => {
            let arn = alarm.alarm_arn().map(str::to_string).unwrap_or_else(|| {
                format!(
                    "arn:aws:cloudwatch:{}:{}:alarm:{name}",
                    alarm.region, alarm.account
                )
            });
            *how = "alarm tags (ListTagsForResource)".into();
            let out = c
                .cloudwatch
                .list_tags_for_resource()
                .resource_arn(&arn)
                .send()
                .await;
            match out {
                Ok(o) => o
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                    .collect(),
                Err(e)
                    if error_code(&e) == Some("ResourceNotFound")
                        || error_code(&e) == Some("ResourceNotFoundException") =>
                {
                    return Ok(Err(format!(
                        "alarm {name} no longer exists (ListTagsForResource): nothing to roll back"
                    )))
                }
                Err(e) => {
                    return Err(format!(
                        "could not read the tags of alarm {name} (ListTagsForResource): {}",
                        describe_sdk_error(&e)
                    ))
                }
            }
        }
    };
    match target_from_tags(&tags, &config.tag_prefix) {
        Ok(Some(t)) => Ok(Ok(t)),
        Ok(None) => {
            let p = &config.tag_prefix;
            Ok(Err(format!(
                "alarm {name} names no release to guard: tag it with {p}codedeploy-application and {p}codedeploy-deployment-group, or {p}ecs-cluster and {p}ecs-service, or map it in ALARM_TARGETS"
            )))
        }
        Err(e) => Ok(Err(format!("alarm {name} is not mapped: {e}"))),
    }
}

/// What the reads found that the actions need, by release id: CodeDeploy revisions.
#[derive(Default)]
struct History {
    revisions: HashMap<String, RevisionLocation>,
}

/// The target's controller and releases, newest first.
async fn releases(
    c: &Clients,
    config: &RouterConfig,
    target: &Target,
    history: &mut History,
) -> Result<(Controller, Vec<Release>), String> {
    match target {
        Target::CodeDeploy {
            application,
            deployment_group,
        } => codedeploy_releases(c, config, application, deployment_group, history)
            .await
            .map(|r| (Controller::CodeDeploy, r)),
        Target::Ecs { cluster, service } => ecs_releases(c, cluster, service).await,
    }
}

fn ms(t: Option<&aws_smithy_types::DateTime>) -> Option<i64> {
    t.and_then(|t| t.to_millis().ok())
}

const MAX_PAGES: usize = 5;

async fn codedeploy_releases(
    c: &Clients,
    config: &RouterConfig,
    application: &str,
    group: &str,
    history: &mut History,
) -> Result<Vec<Release>, String> {
    let since =
        aws_smithy_types::DateTime::from_millis(now_ms() - config.history.as_millis() as i64);
    let mut ids: Vec<String> = vec![];
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let out = c
            .codedeploy
            .list_deployments()
            .application_name(application)
            .deployment_group_name(group)
            .create_time_range(TimeRange::builder().start(since).build())
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "could not list the deployments of {application}/{group} (ListDeployments): {}",
                    describe_sdk_error(&e)
                )
            })?;
        ids.extend(out.deployments().iter().cloned());
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let batches = ids.chunks(25).map(|chunk| {
        c.codedeploy
            .batch_get_deployments()
            .set_deployment_ids(Some(chunk.to_vec()))
            .send()
    });
    let mut out = vec![];
    for result in futures::future::join_all(batches).await {
        let o = result.map_err(|e| {
            format!(
                "could not read the deployments of {application}/{group} (BatchGetDeployments): {}",
                describe_sdk_error(&e)
            )
        })?;
        for d in o.deployments_info() {
            let Some(id) = d.deployment_id() else {
                continue;
            };
            let status = d
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            let phase = match d.status() {
                Some(DeploymentStatus::Succeeded) => Phase::Succeeded,
                Some(DeploymentStatus::Failed) => Phase::Failed,
                Some(DeploymentStatus::Stopped) => Phase::Stopped,
                _ => Phase::InFlight,
            };
            let rollback = d.rollback_info();
            let ours = d
                .description()
                .filter(|t| t.starts_with(REDEPLOY_MARK))
                .map(|t| {
                    t.split("rolling back ")
                        .nth(1)
                        .and_then(|s| s.split_whitespace().next())
                        .unwrap_or("an earlier deployment (deploy-guard redeploy)")
                        .to_string()
                });
            let rollback_of = rollback
                .and_then(|r| r.rollback_triggering_deployment_id())
                .map(str::to_string)
                .or(ours)
                .or_else(|| {
                    (d.creator() == Some(&DeploymentCreator::CodeDeployRollback))
                        .then(|| "an earlier deployment (creator codeDeployRollback)".to_string())
                });
            let revision = d.revision();
            if let Some(r) = revision {
                history.revisions.insert(id.to_string(), r.clone());
            }
            out.push(Release {
                id: id.to_string(),
                phase,
                status,
                created_ms: ms(d.create_time()).unwrap_or(0),
                finished_ms: ms(d.complete_time()),
                rollback_of,
                rolled_back_by: rollback
                    .and_then(|r| r.rollback_deployment_id())
                    .map(str::to_string),
                revision: revision.map(fingerprint).unwrap_or_default(),
                replaced: None,
            });
        }
    }
    out.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
    Ok(out)
}

/// What a CodeDeploy revision deploys, comparable across deployments.
fn fingerprint(r: &RevisionLocation) -> String {
    if let Some(a) = r.app_spec_content() {
        return format!("appspec:{}", a.sha256().or(a.content()).unwrap_or_default());
    }
    if let Some(s) = r.string() {
        return format!("string:{}", s.sha256().or(s.content()).unwrap_or_default());
    }
    if let Some(s) = r.s3_location() {
        return format!(
            "s3://{}/{}?version={}&etag={}",
            s.bucket().unwrap_or_default(),
            s.key().unwrap_or_default(),
            s.version().unwrap_or_default(),
            s.e_tag().unwrap_or_default()
        );
    }
    if let Some(g) = r.git_hub_location() {
        return format!(
            "github:{}@{}",
            g.repository().unwrap_or_default(),
            g.commit_id().unwrap_or_default()
        );
    }
    // Nothing to compare: such releases all look alike, so none is redeployed over another.
    String::new()
}

async fn ecs_releases(
    c: &Clients,
    cluster: &str,
    service: &str,
) -> Result<(Controller, Vec<Release>), String> {
    let described = c
        .ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await;
    let out = match described {
        Ok(o) => o,
        Err(e) if error_code(&e) == Some("ClusterNotFoundException") => {
            return Ok((Controller::ServiceMissing, vec![]))
        }
        Err(e) => {
            return Err(format!(
                "could not read service {cluster}/{service} (DescribeServices): {}",
                describe_sdk_error(&e)
            ))
        }
    };
    let Some(svc) = out
        .services()
        .iter()
        .find(|s| s.status() != Some("INACTIVE"))
    else {
        return Ok((Controller::ServiceMissing, vec![]));
    };
    let controller = match svc.deployment_controller().map(|d| d.r#type()) {
        Some(DeploymentControllerType::CodeDeploy) => Controller::EcsServiceByCodeDeploy,
        Some(DeploymentControllerType::External) => Controller::External,
        _ => Controller::Ecs(
            svc.deployment_configuration()
                .and_then(|d| d.strategy())
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "ROLLING".to_string()),
        ),
    };
    if !matches!(controller, Controller::Ecs(_)) {
        return Ok((controller, vec![]));
    }
    let read = |op: &str, e: String| {
        format!("could not read the deployments of {cluster}/{service} ({op}): {e}")
    };
    let list = c
        .ecs
        .list_service_deployments()
        .cluster(cluster)
        .service(service)
        .max_results(10)
        .send()
        .await
        .map_err(|e| read("ListServiceDeployments", describe_sdk_error(&e)))?;
    let arns: Vec<String> = list
        .service_deployments()
        .iter()
        .filter_map(|b| b.service_deployment_arn().map(str::to_string))
        .take(10)
        .collect();
    if arns.is_empty() {
        return Ok((controller, vec![]));
    }
    let deployments = c
        .ecs
        .describe_service_deployments()
        .set_service_deployment_arns(Some(arns))
        .send()
        .await
        .map_err(|e| read("DescribeServiceDeployments", describe_sdk_error(&e)))?;
    let mut revision_arns: Vec<String> = vec![];
    for d in deployments.service_deployments() {
        for arn in d
            .target_service_revision()
            .and_then(|r| r.arn())
            .into_iter()
            .chain(d.source_service_revisions().iter().filter_map(|r| r.arn()))
        {
            if !revision_arns.iter().any(|a| a == arn) {
                revision_arns.push(arn.to_string());
            }
        }
    }
    let mut task_defs: HashMap<String, String> = HashMap::new();
    for chunk in revision_arns.chunks(20) {
        let revs = c
            .ecs
            .describe_service_revisions()
            .set_service_revision_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| read("DescribeServiceRevisions", describe_sdk_error(&e)))?;
        for r in revs.service_revisions() {
            if let (Some(arn), Some(td)) = (r.service_revision_arn(), r.task_definition()) {
                task_defs.insert(arn.to_string(), td.to_string());
            }
        }
    }
    let td_of = |arn: Option<&str>| arn.and_then(|a| task_defs.get(a)).cloned();
    let mut out: Vec<Release> = deployments
        .service_deployments()
        .iter()
        .filter_map(|d| {
            let status = d.status()?;
            let phase = match status {
                ServiceDeploymentStatus::Pending | ServiceDeploymentStatus::InProgress => {
                    Phase::InFlight
                }
                ServiceDeploymentStatus::Successful => Phase::Succeeded,
                ServiceDeploymentStatus::Stopped => Phase::Stopped,
                ServiceDeploymentStatus::RollbackSuccessful
                | ServiceDeploymentStatus::RollbackFailed => Phase::RolledBack,
                // ROLLBACK_REQUESTED, ROLLBACK_IN_PROGRESS, STOP_REQUESTED, and anything newer:
                // something is already unwinding it.
                _ => Phase::Unwinding,
            };
            Some(Release {
                id: d.service_deployment_arn()?.to_string(),
                phase,
                status: status.as_str().to_string(),
                created_ms: ms(d.created_at()).unwrap_or(0),
                finished_ms: ms(d.finished_at()),
                rollback_of: None,
                rolled_back_by: None,
                revision: td_of(d.target_service_revision().and_then(|r| r.arn()))
                    .unwrap_or_default(),
                replaced: td_of(d.source_service_revisions().first().and_then(|r| r.arn())),
            })
        })
        .collect();
    out.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
    Ok((controller, out))
}

// ---------------------------------------------------------------------------------------------
// Acting

enum Acted {
    /// The action went through; what it did.
    Done(String),
    /// AWS said there was nothing left to do (a duplicate or a race): re-read and decide again.
    AlreadyDone(String),
}

async fn act(
    c: &Clients,
    target: &Target,
    d: &Decision,
    history: &History,
    alarm: &str,
) -> Result<Acted, String> {
    match (&d.action, target) {
        (Action::Nothing, _) => Ok(Acted::Done("no action".into())),
        (Action::StopDeployment { deployment_id }, _) => stop_deployment(c, deployment_id).await,
        (Action::StopServiceDeployment { arn }, _) => stop_service_deployment(c, arn).await,
        (
            Action::Redeploy { bad, good },
            Target::CodeDeploy {
                application,
                deployment_group,
            },
        ) => {
            let revision = history
                .revisions
                .get(good)
                .cloned()
                .ok_or_else(|| format!("the revision of {good} was not read: cannot redeploy it"))?;
            let description = format!(
                "{REDEPLOY_MARK} alarm {alarm} fired after {bad} finished; redeploying the revision of {good}, rolling back {bad}"
            );
            let out = c
                .codedeploy
                .create_deployment()
                .application_name(application)
                .deployment_group_name(deployment_group)
                .revision(revision)
                .description(description.chars().take(1000).collect::<String>())
                .send()
                .await;
            match out {
                Ok(o) => Ok(Acted::Done(format!(
                    "redeploying the revision of {good}: deployment {} created",
                    o.deployment_id().unwrap_or("?")
                ))),
                Err(e) if error_code(&e) == Some("DeploymentLimitExceededException") => Ok(
                    Acted::AlreadyDone(format!(
                        "CreateDeployment: {}",
                        describe_sdk_error(&e)
                    )),
                ),
                Err(e) => Err(format!(
                    "could not redeploy {application}/{deployment_group} (CreateDeployment): {}",
                    describe_sdk_error(&e)
                )),
            }
        }
        (
            Action::UpdateService {
                task_definition, ..
            },
            Target::Ecs { cluster, service },
        ) => {
            c.ecs
                .update_service()
                .cluster(cluster)
                .service(service)
                .task_definition(task_definition)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "could not update {cluster}/{service} back to {task_definition} (UpdateService): {}",
                        describe_sdk_error(&e)
                    )
                })?;
            Ok(Acted::Done(format!(
                "service updated back to {task_definition}"
            )))
        }
        (action, target) => Err(format!(
            "internal error in deploy-guard (a bug; please report it): {} does not apply to {target}",
            action.name()
        )),
    }
}

async fn stop_deployment(c: &Clients, id: &str) -> Result<Acted, String> {
    let out = c
        .codedeploy
        .stop_deployment()
        .deployment_id(id)
        .auto_rollback_enabled(true)
        .send()
        .await;
    if let Err(e) = out {
        if e.as_service_error()
            .is_some_and(|se| se.is_deployment_already_completed_exception())
        {
            return Ok(Acted::AlreadyDone(format!(
                "StopDeployment {id}: {}",
                describe_sdk_error(&e)
            )));
        }
        return Err(format!(
            "could not stop deployment {id} (StopDeployment): {}",
            describe_sdk_error(&e)
        ));
    }
    // Confirm: the stop and the rollback it started, as CodeDeploy now tells them.
    let confirm = c.codedeploy.get_deployment().deployment_id(id).send().await;
    Ok(Acted::Done(match confirm {
        Ok(o) => {
            let info = o.deployment_info();
            let status = info
                .and_then(|i| i.status())
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "unknown".into());
            match info
                .and_then(|i| i.rollback_info())
                .and_then(|r| r.rollback_deployment_id())
            {
                Some(rb) => {
                    format!("stopped {id} (status {status}); rollback deployment {rb} started")
                }
                None => {
                    format!("stop of {id} requested (status {status}); no rollback deployment yet")
                }
            }
        }
        Err(e) => format!(
            "stop of {id} requested; could not confirm (GetDeployment): {}",
            describe_sdk_error(&e)
        ),
    }))
}

async fn stop_service_deployment(c: &Clients, arn: &str) -> Result<Acted, String> {
    let out = c
        .ecs
        .stop_service_deployment()
        .service_deployment_arn(arn)
        .stop_type(StopServiceDeploymentStopType::Rollback)
        .send()
        .await;
    if let Err(e) = out {
        if e.as_service_error()
            .is_some_and(|se| se.is_conflict_exception())
        {
            return Ok(Acted::AlreadyDone(format!(
                "StopServiceDeployment: {}",
                describe_sdk_error(&e)
            )));
        }
        return Err(format!(
            "could not stop service deployment {arn} (StopServiceDeployment): {}",
            describe_sdk_error(&e)
        ));
    }
    let confirm = c
        .ecs
        .describe_service_deployments()
        .service_deployment_arns(arn)
        .send()
        .await;
    let status = confirm
        .ok()
        .and_then(|o| {
            o.service_deployments()
                .first()
                .and_then(|d| d.status())
                .map(|s| s.as_str().to_string())
        })
        .unwrap_or_else(|| "unconfirmed".into());
    Ok(Acted::Done(format!(
        "rollback of the service deployment requested (status {status})"
    )))
}

/// Announces the rollback on the event bus; says whether it was sent (never an error: the
/// rollback itself went through, and a retry would find it done and announce nothing).
async fn announce(
    c: &Clients,
    config: &RouterConfig,
    alarm: &AlarmStateChange,
    target: &Target,
    d: &Decision,
    result: &str,
) -> String {
    use aws_sdk_eventbridge::types::PutEventsRequestEntry;
    let detail = json!({
        "alarm": alarm.detail.alarm_name,
        "alarmArn": alarm.alarm_arn(),
        "alarmReason": alarm.detail.state.reason,
        "target": target.to_string(),
        "action": d.action.name(),
        "release": d.action.release(),
        "reason": d.reason,
        "result": result,
        "triggeringEventId": alarm.id,
    });
    let entry = PutEventsRequestEntry::builder()
        .source(&config.event_source)
        .detail_type(ANNOUNCEMENT)
        .detail(detail.to_string())
        .event_bus_name(&config.event_bus)
        .set_resources(alarm.alarm_arn().map(|a| vec![a.to_string()]))
        .build();
    match c.events.put_events().entries(entry).send().await {
        Ok(o) if o.failed_entry_count() == 0 => format!("sent to event bus {}", config.event_bus),
        Ok(o) => {
            let why = o
                .entries()
                .iter()
                .find_map(|e| {
                    e.error_code()
                        .map(|c| format!("{c}: {}", e.error_message().unwrap_or("")))
                })
                .unwrap_or_else(|| "the entry failed".into());
            tracing::error!(error = %why, "the rollback announcement was not accepted");
            format!("not sent: {why}")
        }
        Err(e) => {
            let why = describe_sdk_error(&e);
            tracing::error!(error = %why, "the rollback announcement could not be sent");
            format!("not sent: {why}")
        }
    }
}

/// SDK-level tests for what the test bed cannot produce: a panic mid-way and exact call counts.
/// Unmatched SDK calls fail these tests.
#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
    use aws_sdk_cloudwatch::types::{MetricAlarm, StateValue};
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use deploy_guard::config::Env;

    fn app(cw: &[&Rule], cd: &[&Rule], ecs: &[&Rule], ev: &[&Rule], env: &[(&str, &str)]) -> App {
        let mut vars = vec![("AWS_REGION", "us-east-1")];
        vars.extend_from_slice(env);
        let (_, config) = crate::config::load(&Env::from_pairs(vars));
        App {
            clients: Clients {
                cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, cw),
                codedeploy: mock_client!(aws_sdk_codedeploy, RuleMode::MatchAny, cd),
                ecs: mock_client!(aws_sdk_ecs, RuleMode::MatchAny, ecs),
                events: mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, ev),
            },
            config,
        }
    }

    fn event(payload: Value) -> LambdaEvent<Value> {
        let mut ctx = lambda_runtime::Context::default();
        ctx.deadline = now_ms() as u64 + 10_000;
        ctx.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:f".into();
        LambdaEvent::new(payload, ctx)
    }

    fn alarm_event(state: &str) -> Value {
        json!({"version": "0", "id": "e-1", "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
               "account": "123456789012", "region": "us-east-1",
               "time": aws_smithy_types::DateTime::from_millis(now_ms()).fmt(aws_smithy_types::date_time::Format::DateTime).expect("time"),
               "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:shop-5xx"],
               "detail": {"alarmName": "shop-5xx", "state": {"value": state, "reason": "r"},
                          "alarmTags": {"deploy-guard:codedeploy-application": "app", "deploy-guard:codedeploy-deployment-group": "grp"},
                          "alarmTagsStatus": "SUCCESS"}})
    }

    fn describe(state: StateValue) -> Rule {
        mock!(aws_sdk_cloudwatch::Client::describe_alarms).then_output(move || {
            DescribeAlarmsOutput::builder()
                .metric_alarms(
                    MetricAlarm::builder()
                        .alarm_name("shop-5xx")
                        .state_value(state.clone())
                        .build(),
                )
                .build()
        })
    }

    #[tokio::test]
    async fn a_panic_mid_way_is_a_lambda_error_with_the_reason_and_one_line() {
        let cw = describe(StateValue::Alarm);
        let list = mock!(aws_sdk_codedeploy::Client::list_deployments).then_compute_output(
            |_| -> aws_sdk_codedeploy::operation::list_deployments::ListDeploymentsOutput {
                panic!("boom while listing")
            },
        );
        let app = app(&[&cw], &[&list], &[], &[], &[]);
        let err = handle(&app, event(alarm_event("ALARM")))
            .await
            .expect_err("a Lambda error");
        assert!(err.to_string().contains("boom while listing"), "{err}");
        assert_eq!(list.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_alarm_that_recovered_reads_nothing_more_and_changes_nothing() {
        let cw = describe(StateValue::Ok);
        let app = app(&[&cw], &[], &[], &[], &[]);
        let out = handle(&app, event(alarm_event("ALARM")))
            .await
            .expect("handled");
        assert_eq!(cw.num_calls(), 1);
        assert_eq!(out["action"], "nothing");
        assert!(
            out["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("is OK now"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn an_ok_event_is_ignored_without_any_call() {
        let app = app(&[], &[], &[], &[], &[]);
        let out = handle(&app, event(alarm_event("OK")))
            .await
            .expect("handled");
        assert_eq!(out["action"], "ignored");
        assert!(
            out["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("not ALARM"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn a_configuration_error_is_a_lambda_error_naming_the_variable() {
        let app = app(&[], &[], &[], &[], &[("ROLLBACK_WINDOW_S", "soon")]);
        let err = handle(&app, event(alarm_event("ALARM")))
            .await
            .expect_err("error");
        assert!(err.to_string().contains("ROLLBACK_WINDOW_S"), "{err}");
    }

    /// StopDeployment finds the deployment already completed (a duplicate won the race): the
    /// router reads again, decides again, and does nothing more. Not an error.
    #[tokio::test]
    async fn an_already_completed_deployment_is_read_again_and_decided_once_more() {
        use aws_sdk_codedeploy::operation::batch_get_deployments::BatchGetDeploymentsOutput;
        use aws_sdk_codedeploy::operation::list_deployments::ListDeploymentsOutput;
        use aws_sdk_codedeploy::operation::stop_deployment::StopDeploymentError;
        use aws_sdk_codedeploy::types::error::DeploymentAlreadyCompletedException;
        use aws_sdk_codedeploy::types::{DeploymentInfo, RollbackInfo};
        let cw = describe(StateValue::Alarm);
        let list = mock!(aws_sdk_codedeploy::Client::list_deployments)
            .then_output(|| ListDeploymentsOutput::builder().deployments("d-1").build());
        let info = |status: DeploymentStatus, rollback: Option<&str>| {
            let mut d = DeploymentInfo::builder()
                .deployment_id("d-1")
                .status(status)
                .creator(DeploymentCreator::User)
                .create_time(aws_smithy_types::DateTime::from_millis(now_ms() - 60_000));
            if let Some(rb) = rollback {
                d = d.rollback_info(RollbackInfo::builder().rollback_deployment_id(rb).build());
            }
            BatchGetDeploymentsOutput::builder()
                .deployments_info(d.build())
                .build()
        };
        let batch = mock!(aws_sdk_codedeploy::Client::batch_get_deployments)
            .sequence()
            .output(move || info(DeploymentStatus::InProgress, None))
            .output(move || info(DeploymentStatus::Stopped, Some("d-2")))
            .build();
        let stop = mock!(aws_sdk_codedeploy::Client::stop_deployment).then_error(|| {
            StopDeploymentError::DeploymentAlreadyCompletedException(
                DeploymentAlreadyCompletedException::builder()
                    .message("already completed")
                    .build(),
            )
        });
        let app = app(&[&cw], &[&list, &batch, &stop], &[], &[], &[]);
        let out = handle(&app, event(alarm_event("ALARM")))
            .await
            .expect("handled, not an error");
        assert_eq!((stop.num_calls(), batch.num_calls()), (1, 2));
        assert_eq!(out["action"], "nothing");
        assert_eq!(out["result"], "already handled");
        let reason = out["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("DeploymentAlreadyCompletedException")
                && reason.contains("re-reading")
                && reason.contains("already rolled back by d-2"),
            "{reason}"
        );
        assert_eq!(
            out["announcement"],
            Value::Null,
            "nothing was started: nothing announced"
        );
    }

    /// StopServiceDeployment answers ConflictException (the deployment moved on): read again.
    #[tokio::test]
    async fn an_ecs_conflict_is_read_again_and_decided_once_more() {
        use aws_sdk_ecs::operation::describe_service_deployments::DescribeServiceDeploymentsOutput;
        use aws_sdk_ecs::operation::describe_services::DescribeServicesOutput;
        use aws_sdk_ecs::operation::list_service_deployments::ListServiceDeploymentsOutput;
        use aws_sdk_ecs::operation::stop_service_deployment::StopServiceDeploymentError;
        use aws_sdk_ecs::types::error::ConflictException;
        use aws_sdk_ecs::types::{
            DeploymentController, Service, ServiceDeployment, ServiceDeploymentBrief,
        };
        let cw = describe(StateValue::Alarm);
        let services = mock!(aws_sdk_ecs::Client::describe_services).then_output(|| {
            DescribeServicesOutput::builder()
                .services(
                    Service::builder()
                        .service_name("s")
                        .status("ACTIVE")
                        .deployment_controller(
                            DeploymentController::builder()
                                .r#type(DeploymentControllerType::Ecs)
                                .build()
                                .expect("controller"),
                        )
                        .build(),
                )
                .build()
        });
        let list = mock!(aws_sdk_ecs::Client::list_service_deployments).then_output(|| {
            ListServiceDeploymentsOutput::builder()
                .service_deployments(
                    ServiceDeploymentBrief::builder()
                        .service_deployment_arn("sd-1")
                        .build(),
                )
                .build()
        });
        let deployment = |status: ServiceDeploymentStatus| {
            DescribeServiceDeploymentsOutput::builder()
                .service_deployments(
                    ServiceDeployment::builder()
                        .service_deployment_arn("sd-1")
                        .status(status)
                        .created_at(aws_smithy_types::DateTime::from_millis(now_ms() - 60_000))
                        .build(),
                )
                .build()
        };
        let describe_deployments = mock!(aws_sdk_ecs::Client::describe_service_deployments)
            .sequence()
            .output(move || deployment(ServiceDeploymentStatus::InProgress))
            .output(move || deployment(ServiceDeploymentStatus::RollbackInProgress))
            .build();
        let stop = mock!(aws_sdk_ecs::Client::stop_service_deployment).then_error(|| {
            StopServiceDeploymentError::ConflictException(
                ConflictException::builder().message("finished").build(),
            )
        });
        let app = app(
            &[&cw],
            &[],
            &[&services, &list, &describe_deployments, &stop],
            &[],
            &[("ALARM_TARGETS", r#"{"shop-5xx": "ecs:c/s"}"#)],
        );
        let out = handle(&app, event(alarm_event("ALARM")))
            .await
            .expect("handled, not an error");
        assert_eq!((stop.num_calls(), describe_deployments.num_calls()), (1, 2));
        assert_eq!(out["action"], "nothing");
        let reason = out["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("ConflictException") && reason.contains("ROLLBACK_IN_PROGRESS"),
            "{reason}"
        );
    }

    /// Every sample event in events/alarm-rollback classifies as its name says, and round-trips.
    #[test]
    fn sample_events() {
        let samples: [(&str, &str, &str); 6] = [
            (
                "metric-alarm",
                include_str!("../../../events/alarm-rollback/metric-alarm.json"),
                "metric",
            ),
            (
                "metric-math",
                include_str!("../../../events/alarm-rollback/metric-math-daily-with-tags.json"),
                "metric-math",
            ),
            (
                "composite",
                include_str!("../../../events/alarm-rollback/composite-alarm.json"),
                "composite",
            ),
            (
                "ok",
                include_str!("../../../events/alarm-rollback/ok-state.json"),
                "unknown",
            ),
            (
                "bad",
                include_str!("../../../events/alarm-rollback/bad-missing-alarm-name.json"),
                "invalid",
            ),
            (
                "other",
                include_str!("../../../events/alarm-rollback/not-an-alarm-event.json"),
                "not ours",
            ),
        ];
        for (name, text, want) in samples {
            let v: Value = serde_json::from_str(text).expect(name);
            let back: Value = serde_json::from_str(&v.to_string()).expect(name);
            assert_eq!(v, back, "{name} round-trips");
            let got = match classify(&v) {
                Incoming::Alarm(a) => a.alarm_kind(),
                Incoming::Invalid(_) => "invalid",
                Incoming::NotOurs(_) => "not ours",
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn the_account_comes_from_the_function_arn() {
        assert_eq!(
            account_of("arn:aws:lambda:us-east-1:123456789012:function:f"),
            Some("123456789012".into())
        );
        assert_eq!(account_of(""), None);
    }
}
