//! One invocation of the smoke hook: recognise the protocol, gather facts, run the spec,
//! decide, and deliver exactly one verdict.
//!
//! Whatever happens inside (a panic, a bad spec, an AWS error, the budget running out) becomes
//! a Failed verdict with its reason. Only an event without ids to report against ends in a
//! Lambda error, which means "could not deliver a verdict at all".

use std::time::{Duration, Instant};

use aws_sdk_codedeploy::types::LifecycleEventStatus;
use deploy_guard::aws::{describe_sdk_error, report_timeouts};
use deploy_guard::budget::Budget;
use deploy_guard::config::{AwsSettings, ConfigError};
use deploy_guard::discovery::{self, Clients};
use deploy_guard::hooks::{
    classify, service_of, CodeDeployIds, EcsHookEvent, EcsHookResponse, EcsHookStatus, Incoming,
    CODEDEPLOY_DEFAULT_EVENTS, ECS_DEFAULT_STAGES,
};
use deploy_guard::smoke::engine::{Engine, Plan, ReadinessState, RunReport, Target};
use deploy_guard::smoke::verdict::{decide, Decision};
use deploy_guard::specs::{load_spec, resolve_secrets};
use deploy_guard::telemetry::emit_outcome;
use deploy_guard::text::join_capped;
use deploy_guard::version::ImageVersion;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::{json, Value};

use crate::config::HookConfig;

/// Everything built once per process.
pub struct App {
    pub clients: Clients,
    pub aws: AwsSettings,
    pub config: Result<HookConfig, ConfigError>,
    pub engine: Result<Engine, String>,
}

/// The verdict and everything that explains it.
#[derive(Debug, Default)]
struct Evaluation {
    passed: bool,
    /// ECS only: readiness still open, with the state to carry.
    wait: Option<ReadinessState>,
    reasons: Vec<String>,
    stage: Option<String>,
    service: Option<String>,
    target: Option<String>,
    spec: Option<String>,
    version: Option<ImageVersion>,
    run: Option<RunReport>,
}

impl Evaluation {
    fn fail(reason: impl Into<String>) -> Self {
        Self {
            reasons: vec![reason.into()],
            ..Self::default()
        }
    }

    fn pass(reason: impl Into<String>) -> Self {
        Self {
            passed: true,
            reasons: vec![reason.into()],
            ..Self::default()
        }
    }

    fn verdict(&self) -> &'static str {
        match (self.passed, self.wait.is_some()) {
            (_, true) => "InProgress",
            (true, _) => "Succeeded",
            (false, _) => "Failed",
        }
    }

    /// The reasons in one line, capped for CodeDeploy's and ECS's displays.
    fn reason(&self) -> String {
        join_capped(&self.reasons, "; ", 1800)
    }
}

/// The Lambda handler.
pub async fn handle(app: &App, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, ctx) = event.into_parts();
    let reserve = app
        .config
        .as_ref()
        .map(|c| c.report_reserve)
        .unwrap_or(Duration::from_secs(3));
    let budget = Budget::from_deadline(ctx.deadline(), reserve);
    match classify(&payload) {
        Incoming::CodeDeploy(ids) => codedeploy(app, ids, budget).await,
        Incoming::Ecs(e) => Ok(ecs(app, e, budget).await),
        Incoming::EcsInvalid {
            reason,
            hook_details,
        } => {
            let ev = Evaluation::fail(reason);
            Ok(ecs_reply(
                app,
                &ev,
                hook_details.as_ref(),
                None,
                &payload_ids(&payload),
                Instant::now(),
            ))
        }
        Incoming::Unreportable(reason) => {
            emit_outcome(json!({"protocol": "unknown", "verdict": "none", "reason": reason}));
            Err(reason.into())
        }
    }
}

fn payload_ids(payload: &Value) -> Value {
    let s = |k: &str| {
        payload
            .get(k)
            .and_then(Value::as_str)
            .map(|v| deploy_guard::text::quote(v, 80))
    };
    json!({"execution_id": s("executionId"), "stage": s("lifecycleStage")})
}

/// Runs `work` within the budget; a panic or the budget running out becomes a failure. The work
/// stops itself at the work deadline; the budget's grace leaves the engine a moment to do so.
async fn guarded<F: std::future::Future<Output = Evaluation>>(
    work: F,
    budget: &Budget,
) -> Evaluation {
    budget
        .guard(work, budget.grace())
        .await
        .unwrap_or_else(|stop| Evaluation::fail(stop.reason("check")))
}

// ---------------------------------------------------------------------------------------------
// CodeDeploy

async fn codedeploy(app: &App, ids: CodeDeployIds, budget: Budget) -> Result<Value, Error> {
    let started = Instant::now();
    let ev = guarded(evaluate_codedeploy(app, &ids, &budget), &budget).await;
    let status = if ev.passed {
        LifecycleEventStatus::Succeeded
    } else {
        LifecycleEventStatus::Failed
    };
    let delivery = report_codedeploy(app, &ids, status, &budget).await;
    let delivered = match &delivery {
        Ok(d) => (*d).to_string(),
        Err(e) => format!("not delivered: {e}"),
    };
    emit_outcome(json!({
        "protocol": "codedeploy",
        "deployment_id": ids.deployment_id,
        "hook_execution_id": ids.hook_execution_id,
        "lifecycle_event": ev.stage,
        "deployment_group": ev.service,
        "endpoint": ev.target,
        "spec": ev.spec,
        "version": ev.version,
        "verdict": ev.verdict(),
        "reason": ev.reason(),
        "readiness": ev.run.as_ref().and_then(|r| r.readiness.clone()),
        "checks": ev.run.as_ref().map(|r| r.checks.clone()).unwrap_or_default(),
        "report": delivered,
        "duration_ms": started.elapsed().as_millis() as u64,
    }));
    match delivery {
        Ok(_) => Ok(json!({"verdict": ev.verdict(), "reason": ev.reason()})),
        // Only now is a Lambda error right: the verdict could not be delivered, and an
        // asynchronous retry may still deliver one.
        Err(e) => Err(format!(
            "could not report the {} verdict for {}: {e}",
            ev.verdict(),
            ids.deployment_id
        )
        .into()),
    }
}

async fn report_codedeploy(
    app: &App,
    ids: &CodeDeployIds,
    status: LifecycleEventStatus,
    budget: &Budget,
) -> Result<&'static str, String> {
    let within = budget.report_timeout(app.aws.operation_timeout, Duration::from_secs(1));
    let result = app
        .clients
        .codedeploy
        .put_lifecycle_event_hook_execution_status()
        .deployment_id(&ids.deployment_id)
        .lifecycle_event_hook_execution_id(&ids.hook_execution_id)
        .status(status)
        .customize()
        .config_override(
            aws_sdk_codedeploy::config::Builder::default()
                .timeout_config(report_timeouts(&app.aws, within)),
        )
        .send()
        .await;
    match result {
        Ok(_) => Ok("delivered"),
        // At least once: a duplicate or a retry finds the first report already in. Done.
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_lifecycle_event_already_completed_exception()) =>
        {
            Ok("already completed")
        }
        Err(e) => Err(describe_sdk_error(&e)),
    }
}

async fn evaluate_codedeploy(app: &App, ids: &CodeDeployIds, budget: &Budget) -> Evaluation {
    let config = match &app.config {
        Ok(c) => c,
        Err(e) => return Evaluation::fail(e.to_string()),
    };
    let facts = match discovery::codedeploy_facts(&app.clients, &ids.deployment_id).await {
        Ok(f) => f,
        Err(e) => return Evaluation::fail(format!("could not read the deployment: {e}")),
    };
    let group = format!("{}/{}", facts.application, facts.deployment_group);
    let mut ev = Evaluation {
        service: Some(group.clone()),
        version: facts.image.as_ref().ok().cloned(),
        ..Default::default()
    };
    if facts.is_rollback() {
        ev.passed = true;
        ev.reasons = vec!["a rollback deployment (created by codeDeployRollback) is not gated: passing so the rollback proceeds".into()];
        return ev;
    }
    let event = match &facts.lifecycle_event {
        Ok(e) => e.clone(),
        Err(e) => {
            return fail_with(
                ev,
                format!("could not tell which lifecycle event is running: {e}"),
            )
        }
    };
    ev.stage = Some(event.clone());
    let production = event == "AfterAllowTraffic";
    // The spec and the listener are read together (one round trip instead of two); their
    // errors are still reported in that order.
    let (loaded, target) = tokio::join!(
        load_spec(
            &app.clients,
            &config.specs,
            &facts.application,
            &facts.deployment_group,
        ),
        codedeploy_target(app, config, &facts, &group, production)
    );
    let loaded = match loaded {
        Ok(s) => s,
        Err(e) => return fail_with(ev, e),
    };
    ev.spec = Some(loaded.origin.clone());
    let spec = loaded.spec;
    if !spec.runs_at(&event, CODEDEPLOY_DEFAULT_EVENTS) {
        let list = spec.stages.clone().unwrap_or_else(|| {
            CODEDEPLOY_DEFAULT_EVENTS
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        return fail_with(ev, format!(
            "the hook was invoked at {event}, but the spec runs at {}: attach the hook to one of those events or add {event} to the spec's stages",
            list.join(", ")
        ));
    }
    let target = match target {
        Ok(t) => t,
        Err(e) => return fail_with(ev, e),
    };
    run_spec(
        app,
        ev,
        &spec,
        target,
        &facts.image,
        Continuation::Final,
        budget,
    )
    .await
}

/// Where a CodeDeploy deployment's new version answers: the operator's override for the group
/// (or its ECS service), else the test listener (the production listener at
/// AfterAllowTraffic).
async fn codedeploy_target(
    app: &App,
    config: &HookConfig,
    facts: &discovery::CodeDeployFacts,
    group: &str,
    production: bool,
) -> Result<Target, String> {
    let overridden = config.overrides.get(group).or_else(|| {
        facts
            .ecs_service
            .as_ref()
            .and_then(|(c, s)| config.overrides.get(&format!("{c}/{s}")))
    });
    if let Some(o) = overridden {
        return Ok(Target {
            base_url: o.base_url.clone(),
            headers: o.headers.clone(),
            origin: format!("operator override for {group}"),
            operator_set: true,
        });
    }
    let (route, listeners) = if production {
        ("production", &facts.prod_listeners)
    } else {
        ("test", &facts.test_listeners)
    };
    let Some(listener) = listeners.first() else {
        return Err(format!(
            "deployment group {group} has no {route} traffic route (loadBalancerInfo.targetGroupPairInfoList); give it one or set TARGET_OVERRIDES"
        ));
    };
    match discovery::listener_url(&app.clients, listener).await {
        Ok(url) => Ok(Target {
            base_url: url,
            headers: vec![],
            origin: format!("{route} listener {listener}"),
            operator_set: false,
        }),
        Err(e) => Err(format!("could not find the {route} listener: {e}")),
    }
}

fn fail_with(mut ev: Evaluation, reason: String) -> Evaluation {
    ev.passed = false;
    ev.reasons = vec![reason];
    ev
}

/// Whether a run may end with readiness still open.
enum Continuation {
    Final,
    Resumable(Option<ReadinessState>),
}

/// Resolves secrets, runs the engine and turns the run into the evaluation.
///
/// With [`Continuation::Resumable`] (ECS) an open readiness phase answers IN_PROGRESS and
/// resumes from the carried progress; with [`Continuation::Final`] (CodeDeploy) the verdict
/// must be given now.
async fn run_spec(
    app: &App,
    mut ev: Evaluation,
    spec: &deploy_guard::smoke::spec::Spec,
    target: Target,
    image: &Result<ImageVersion, String>,
    continuation: Continuation,
    budget: &Budget,
) -> Evaluation {
    ev.target = Some(format!("{} ({})", target.base_url, target.origin));
    tracing::debug!(
        endpoint = %target.base_url,
        origin = %target.origin,
        checks = spec.checks.len(),
        secret_headers = spec.secret_refs().len(),
        "running the smoke spec"
    );
    let engine = match &app.engine {
        Ok(e) => e,
        Err(e) => return fail_with(ev, e.clone()),
    };
    let secrets = match resolve_secrets(&app.clients, &spec.secret_refs()).await {
        Ok(s) => s,
        Err(e) => return fail_with(ev, format!("could not resolve a secret header: {e}")),
    };
    let source = spec
        .version_proof
        .as_ref()
        .map(|v| v.source)
        .unwrap_or(deploy_guard::smoke::spec::VersionSource::Auto);
    let expected: Result<String, String> = match image {
        Ok(v) => v.expected(source).map(str::to_string),
        Err(e) => Err(format!("the deployed version is unknown: {e}")),
    };
    let plan = Plan {
        spec,
        target: &target,
        secrets: &secrets,
        expected_version: expected.as_deref().map_err(String::as_str),
    };
    let (resume, can_continue) = match continuation {
        Continuation::Final => (None, false),
        Continuation::Resumable(state) => (state, true),
    };
    let run = engine.run(&plan, resume, budget).await;
    match decide(&run) {
        Decision::Pass { summary } => {
            ev.passed = true;
            let mut s = summary;
            if let (Some(_), Ok(v)) = (&spec.version_proof, &expected) {
                s.push_str(&format!("; version {v} proven"));
            }
            ev.reasons = vec![s];
        }
        Decision::Fail { reasons } => {
            ev.passed = false;
            ev.reasons = reasons;
        }
        Decision::Wait { state, note } if can_continue => {
            ev.passed = false;
            ev.wait = Some(state);
            ev.reasons = vec![note];
        }
        Decision::Wait { note, .. } => {
            ev.passed = false;
            ev.reasons = vec![format!(
                "not ready before the invocation's deadline ({note}); raise the function's timeout or lower readiness.timeout_s"
            )];
        }
    }
    ev.run = Some(run);
    ev
}

// ---------------------------------------------------------------------------------------------
// ECS

async fn ecs(app: &App, event: EcsHookEvent, budget: Budget) -> Value {
    let started = Instant::now();
    let ev = if event.is_rollback() {
        Evaluation {
            stage: Some(event.lifecycle_stage.clone()),
            ..Evaluation::pass(format!(
                "rollback re-invocation at {} (target revision at weight 0): passing so the rollback proceeds",
                event.lifecycle_stage
            ))
        }
    } else {
        // ECS pays for every second an invocation waits: poll for at most the configured
        // slice, then answer IN_PROGRESS and let ECS call back.
        let slice = app
            .config
            .as_ref()
            .map(|c| c.ecs_invocation_budget)
            .unwrap_or(Duration::from_secs(60));
        let reserve = budget.deadline() - budget.work_deadline();
        let inner = Budget::from_now(budget.total_left().min(slice + reserve), reserve);
        guarded(evaluate_ecs(app, &event, inner), &budget).await
    };
    let ids = json!({"execution_id": event.execution_id, "stage": event.lifecycle_stage, "resource_arn": event.resource_arn});
    ecs_reply(
        app,
        &ev,
        event.hook_details.as_ref(),
        Some(&event),
        &ids,
        started,
    )
}

fn ecs_reply(
    app: &App,
    ev: &Evaluation,
    incoming: Option<&Value>,
    event: Option<&EcsHookEvent>,
    ids: &Value,
    started: Instant,
) -> Value {
    let status = match (ev.passed, ev.wait) {
        (_, Some(_)) => EcsHookStatus::InProgress,
        (true, None) => EcsHookStatus::Succeeded,
        (false, None) => EcsHookStatus::Failed,
    };
    let delay = ev.wait.map(|_| {
        app.config
            .as_ref()
            .map(|c| c.ecs_callback_delay)
            .unwrap_or(30)
    });
    let mut ours = json!({"verdict": ev.verdict(), "reason": ev.reason()});
    if let Some(state) = ev.wait {
        ours["state"] = json!(state);
    }
    if let Some(checks) = ev.run.as_ref().map(|r| &r.checks).filter(|c| !c.is_empty()) {
        ours["checks"] = json!(checks
            .iter()
            .map(|c| json!({"name": c.name, "passed": c.passed, "status": c.status}))
            .collect::<Vec<_>>());
    }
    let reply = EcsHookResponse::new(status, incoming, ours, delay);
    emit_outcome(json!({
        "protocol": "ecs",
        "execution_id": ids.get("execution_id"),
        "lifecycle_stage": ev.stage.clone().or_else(|| event.map(|e| e.lifecycle_stage.clone())).or_else(|| ids.get("stage").and_then(|s| s.as_str().map(str::to_string))),
        "resource_arn": ids.get("resource_arn"),
        "service": ev.service,
        "endpoint": ev.target,
        "spec": ev.spec,
        "version": ev.version,
        "verdict": ev.verdict(),
        "reason": ev.reason(),
        "readiness": ev.run.as_ref().and_then(|r| r.readiness.clone()),
        "checks": ev.run.as_ref().map(|r| r.checks.clone()).unwrap_or_default(),
        "report": "returned",
        "duration_ms": started.elapsed().as_millis() as u64,
    }));
    serde_json::to_value(&reply).unwrap_or_else(|e| json!({"hookStatus": "FAILED", "hookDetails": {"deployGuard": {"reason": format!("could not encode the reply: {e}")}}}))
}

async fn evaluate_ecs(app: &App, event: &EcsHookEvent, budget: Budget) -> Evaluation {
    let stage = event.lifecycle_stage.clone();
    let config = match &app.config {
        Ok(c) => c,
        Err(e) => {
            return Evaluation {
                stage: Some(stage),
                ..Evaluation::fail(e.to_string())
            }
        }
    };
    let (cluster, service) = match service_of(event) {
        Ok(cs) => cs,
        Err(e) => {
            return Evaluation {
                stage: Some(stage),
                ..Evaluation::fail(e)
            }
        }
    };
    let key = format!("{cluster}/{service}");
    let mut ev = Evaluation {
        stage: Some(stage.clone()),
        service: Some(key.clone()),
        ..Default::default()
    };
    // The spec and the service are read together; their errors are reported in that order.
    let (loaded, facts) = tokio::join!(
        load_spec(&app.clients, &config.specs, &cluster, &service),
        discovery::ecs_facts(
            &app.clients,
            &cluster,
            &service,
            event
                .execution_details
                .target_service_revision_arn
                .as_deref(),
        )
    );
    let loaded = match loaded {
        Ok(s) => s,
        Err(e) => return fail_with(ev, e),
    };
    ev.spec = Some(loaded.origin.clone());
    let spec = loaded.spec;
    if !spec.runs_at(&stage, ECS_DEFAULT_STAGES) {
        let list = spec
            .stages
            .clone()
            .unwrap_or_else(|| ECS_DEFAULT_STAGES.iter().map(|s| s.to_string()).collect());
        return fail_with(ev, format!(
            "the hook was invoked at stage {stage}, but the spec runs at {}: remove the hook from {stage} or add it to the spec's stages",
            list.join(", ")
        ));
    }
    let facts = match facts {
        Ok(f) => f,
        Err(e) => return fail_with(ev, format!("could not read the service: {e}")),
    };
    ev.version = facts.image.as_ref().ok().cloned();
    let target = match config.overrides.get(&key) {
        Some(o) => Target {
            base_url: o.base_url.clone(),
            headers: o.headers.clone(),
            origin: format!("operator override for {key}"),
            operator_set: true,
        },
        None => {
            let (route, rule) = if event.tests_production() {
                ("production", &facts.prod_rule)
            } else {
                ("test", &facts.test_rule)
            };
            let Some(rule) = rule else {
                return fail_with(ev, format!(
                    "service {key} has no {route} listener rule in loadBalancers[].advancedConfiguration; configure blue/green with a load balancer or set TARGET_OVERRIDES"
                ));
            };
            let Some(listener) = discovery::listener_of_rule(rule) else {
                return fail_with(ev, format!("{rule} is not a listener rule ARN"));
            };
            let (url, headers) = tokio::join!(
                discovery::listener_url(&app.clients, &listener),
                discovery::rule_headers(&app.clients, rule)
            );
            match (url, headers) {
                (Ok(url), Ok(headers)) => Target {
                    base_url: url,
                    headers,
                    origin: format!("{route} listener rule {rule}"),
                    operator_set: false,
                },
                (Err(e), _) | (_, Err(e)) => {
                    return fail_with(ev, format!("could not find the {route} listener: {e}"))
                }
            }
        }
    };
    let resume = event.carried_state::<ReadinessState>();
    let continuation = Continuation::Resumable(resume);
    run_spec(app, ev, &spec, target, &facts.image, continuation, &budget).await
}

/// SDK-level fault tests for what the test bed cannot produce: a panic in the middle of the
/// work, and SDK errors at chosen points. Unmatched SDK calls fail these tests.
#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_codedeploy::operation::get_deployment::GetDeploymentOutput;
    use aws_sdk_codedeploy::operation::put_lifecycle_event_hook_execution_status::{
        PutLifecycleEventHookExecutionStatusError, PutLifecycleEventHookExecutionStatusOutput,
    };
    use aws_sdk_codedeploy::types::error::LifecycleEventAlreadyCompletedException;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use deploy_guard::config::Env;

    fn app(codedeploy: &[&Rule], ecs: &[&Rule], default_spec: Option<&str>) -> App {
        let mut vars = vec![];
        if let Some(s) = default_spec {
            vars.push(("SMOKE_SPEC_DEFAULT", s));
        }
        let (aws, config) = crate::config::load(&Env::from_pairs(vars));
        App {
            clients: Clients {
                codedeploy: mock_client!(aws_sdk_codedeploy, RuleMode::MatchAny, codedeploy),
                ecs: mock_client!(aws_sdk_ecs, RuleMode::MatchAny, ecs),
                elbv2: mock_client!(aws_sdk_elasticloadbalancingv2, RuleMode::MatchAny, &[]),
                s3: deploy_guard::s3get::S3Reader::new(
                    &aws_types::SdkConfig::builder().build(),
                    &aws,
                ),
                params: deploy_guard::awsjson::ParamsAndSecrets::new(
                    &aws_types::SdkConfig::builder().build(),
                    &aws,
                ),
            },
            aws,
            config,
            engine: Engine::new(Default::default()),
        }
    }

    fn event(payload: Value, budget_ms: u64) -> LambdaEvent<Value> {
        let mut ctx = lambda_runtime::Context::default();
        ctx.deadline = deploy_guard::smoke::engine::now_ms() + budget_ms;
        LambdaEvent::new(payload, ctx)
    }

    fn cd_event() -> Value {
        json!({"DeploymentId": "d-PANIC0000", "LifecycleEventHookExecutionId": "exec-1"})
    }

    fn report_rule(status: LifecycleEventStatus) -> Rule {
        mock!(aws_sdk_codedeploy::Client::put_lifecycle_event_hook_execution_status)
            .match_requests(move |r| {
                r.status() == Some(&status) && r.deployment_id() == Some("d-PANIC0000")
            })
            .then_output(|| PutLifecycleEventHookExecutionStatusOutput::builder().build())
    }

    /// A panic while the checks' facts are gathered. It is raised inside the ECS client so the
    /// CodeDeploy mock (whose lock a panic would poison) still takes the report.
    #[tokio::test]
    async fn a_panic_mid_check_is_reported_as_failed() {
        let appspec = r#"{"Resources": [{"TargetService": {"Properties": {"TaskDefinition": "arn:aws:ecs:us-east-1:1:task-definition/web:2", "LoadBalancerInfo": {"ContainerName": "web"}}}}]}"#;
        let get = mock!(aws_sdk_codedeploy::Client::get_deployment).then_output(move || {
            use aws_sdk_codedeploy::types::{AppSpecContent, DeploymentInfo, RevisionLocation};
            GetDeploymentOutput::builder()
                .deployment_info(
                    DeploymentInfo::builder()
                        .application_name("app")
                        .deployment_group_name("group")
                        .revision(
                            RevisionLocation::builder()
                                .app_spec_content(
                                    AppSpecContent::builder().content(appspec).build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
        let targets = mock!(aws_sdk_codedeploy::Client::list_deployment_targets)
            .then_output(|| aws_sdk_codedeploy::operation::list_deployment_targets::ListDeploymentTargetsOutput::builder().build());
        let group = mock!(aws_sdk_codedeploy::Client::get_deployment_group)
            .then_output(|| aws_sdk_codedeploy::operation::get_deployment_group::GetDeploymentGroupOutput::builder().build());
        let task_def = mock!(aws_sdk_ecs::Client::describe_task_definition).then_compute_output(
            |_| -> aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput {
                panic!("boom in the middle of discovery")
            },
        );
        let failed = report_rule(LifecycleEventStatus::Failed);
        let app = app(
            &[&get, &targets, &group, &failed],
            &[&task_def],
            Some(r#"{"checks": [{"path": "/"}]}"#),
        );
        let out = handle(&app, event(cd_event(), 10_000))
            .await
            .expect("the verdict was delivered");
        assert_eq!(task_def.num_calls(), 1, "the panic happened");
        assert_eq!(failed.num_calls(), 1, "exactly one Failed report");
        assert_eq!(out["verdict"], "Failed");
        let reason = out["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("internal error") && reason.contains("boom in the middle of discovery"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn an_already_completed_answer_counts_as_done() {
        use aws_sdk_codedeploy::operation::get_deployment::GetDeploymentError;
        use aws_sdk_codedeploy::operation::list_deployment_targets::ListDeploymentTargetsError;
        use aws_sdk_codedeploy::types::error::DeploymentDoesNotExistException;
        let get = mock!(aws_sdk_codedeploy::Client::get_deployment).then_error(|| {
            GetDeploymentError::DeploymentDoesNotExistException(
                DeploymentDoesNotExistException::builder()
                    .message("gone")
                    .build(),
            )
        });
        let done = mock!(aws_sdk_codedeploy::Client::put_lifecycle_event_hook_execution_status)
            .then_error(|| {
                PutLifecycleEventHookExecutionStatusError::LifecycleEventAlreadyCompletedException(
                    LifecycleEventAlreadyCompletedException::builder()
                        .message("already")
                        .build(),
                )
            });
        // The running event is read alongside the deployment: that fails the same way.
        let targets = mock!(aws_sdk_codedeploy::Client::list_deployment_targets).then_error(|| {
            ListDeploymentTargetsError::DeploymentDoesNotExistException(
                DeploymentDoesNotExistException::builder()
                    .message("gone")
                    .build(),
            )
        });
        let app = app(&[&get, &targets, &done], &[], None);
        let out = handle(&app, event(cd_event(), 10_000))
            .await
            .expect("already completed is done");
        assert_eq!(done.num_calls(), 1);
        assert_eq!(out["verdict"], "Failed");
        assert!(
            out["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("DeploymentDoesNotExistException"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn a_configuration_error_fails_every_invocation_without_touching_aws_but_the_report() {
        let failed = report_rule(LifecycleEventStatus::Failed);
        let mut a = app(&[&failed], &[], None);
        a.config = Err(ConfigError::new(
            "SMOKE_RESOLVE",
            "expected host:port:address, found \"x\"",
        ));
        let out = handle(&a, event(cd_event(), 10_000))
            .await
            .expect("delivered");
        assert_eq!(failed.num_calls(), 1);
        assert!(
            out["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("SMOKE_RESOLVE"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn a_panic_in_ecs_discovery_returns_failed() {
        let describe = mock!(aws_sdk_ecs::Client::describe_services).then_compute_output(
            |_| -> aws_sdk_ecs::operation::describe_services::DescribeServicesOutput {
                panic!("ecs boom")
            },
        );
        let revisions = mock!(aws_sdk_ecs::Client::describe_service_revisions)
            .then_output(|| aws_sdk_ecs::operation::describe_service_revisions::DescribeServiceRevisionsOutput::builder().build());
        let app = app(
            &[],
            &[&describe, &revisions],
            Some(r#"{"checks": [{"path": "/"}]}"#),
        );
        let payload = json!({"executionId": "e-1", "lifecycleStage": "POST_TEST_TRAFFIC_SHIFT",
            "resourceArn": "arn:aws:ecs:us-east-1:123456789012:service-deployment/c/s/x",
            "executionDetails": {"targetServiceRevisionArn": "arn:aws:ecs:us-east-1:123456789012:service-revision/c/s/1"}});
        let out = handle(&app, event(payload, 10_000)).await.expect("a reply");
        assert_eq!(out["hookStatus"], "FAILED");
        assert!(
            out["hookDetails"]["deployGuard"]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("ecs boom"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn an_unreportable_event_is_a_lambda_error_and_calls_nothing() {
        let failed = report_rule(LifecycleEventStatus::Failed);
        let app = app(&[&failed], &[], None);
        let err = handle(&app, event(json!({"DeploymentId": "d-1"}), 10_000))
            .await
            .expect_err("no ids");
        assert!(
            err.to_string()
                .contains("LifecycleEventHookExecutionId is missing"),
            "{err}"
        );
        assert_eq!(failed.num_calls(), 0);
    }
}
