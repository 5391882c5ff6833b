//! The alarm-driven rollback router: every row of the decision table, duplicates, a flap, stale
//! and bad events, rollbacks of rollbacks, and AWS faults. Each test asserts the mutating calls
//! the test bed recorded (StopDeployment, StopServiceDeployment, CreateDeployment, UpdateService,
//! PutEvents): exactly the ones expected, and no others.

use std::path::PathBuf;
use std::time::Duration;

use deploy_guard_tests::demos::alarm_rollback::{self as demo, sample};
use deploy_guard_tests::runtime::{Function, Invocation};
use deploy_guard_tests::testbed::{throttled_twice_then_answered, Testbed};
use serde_json::{json, Value};

use crate::support::*;

const MUTATING: &[(&str, &str)] = &[
    ("codedeploy", "StopDeployment"),
    ("codedeploy", "CreateDeployment"),
    ("ecs", "StopServiceDeployment"),
    ("ecs", "UpdateService"),
    ("events", "PutEvents"),
];

fn router_binary() -> PathBuf {
    deploy_guard_tests::bin_dir().join("alarm-rollback")
}

async fn router(env: &[(&str, &str)]) -> Function {
    let mut all = Testbed::shared().aws_env();
    all.push(("DEADLINE_RESERVE_MS".into(), "500".into()));
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Function::start(&router_binary(), &all).await
}

/// `events/alarm-rollback/<file>` for `alarm`, sent `age_s` seconds ago in `state`.
fn event_from(file: &str, alarm: &str, state: &str, age_s: i64) -> Value {
    demo::alarm_event(file, &unique("event"), alarm, state, age_s)
}

fn alarm_event(alarm: &str) -> Value {
    event_from("metric-alarm.json", alarm, "ALARM", 5)
}

fn cd_tags(s: &Value) -> Value {
    json!({"deploy-guard:codedeploy-application": s["application"], "deploy-guard:codedeploy-deployment-group": s["deploymentGroup"]})
}

fn ecs_tags(s: &Value) -> Value {
    json!({"deploy-guard:ecs-cluster": s["cluster"], "deploy-guard:ecs-service": s["service"]})
}

/// The mutating calls recorded whose parameters mention any of `needles`, in order, as
/// `service.Operation` (with the error code when there was one).
async fn mutations(needles: &[&str]) -> Vec<String> {
    let bed = Testbed::shared();
    let mut calls = vec![];
    for (service, operation) in MUTATING {
        for c in bed.calls(service, operation, "").await {
            let params = c.params.to_string();
            if needles.iter().any(|n| params.contains(n)) {
                calls.push(c);
            }
        }
    }
    calls.sort_by_key(|c| c.seq);
    calls
        .iter()
        .map(|c| match &c.error {
            Some(e) => format!("{}.{} ({e})", c.service, c.operation),
            None => format!("{}.{}", c.service, c.operation),
        })
        .collect()
}

async fn send(f: &Function, event: Value) -> Invocation {
    f.invoke(event, Duration::from_secs(20)).await
}

fn last_outcome(f: &Function) -> Value {
    f.outcomes()
        .last()
        .cloned()
        .unwrap_or_else(|| panic!("no outcome line; logs:\n{}", f.logs().join("\n")))
}

/// A CodeDeploy deployment in flight (InProgress at AfterAllowTestTraffic) and its tagged alarm.
struct CdCase {
    scenario: Value,
    alarm: String,
}

impl CdCase {
    async fn new(name: &str, extra: Value) -> CdCase {
        let bed = Testbed::shared();
        let mut body = json!({"name": unique(name), "prod_port": 18000, "test_port": 18001});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let scenario = bed.codedeploy_scenario(body).await;
        let alarm = unique(&format!("{name}-5xx"));
        bed.alarm(json!({"name": alarm, "tags": cd_tags(&scenario)}))
            .await;
        CdCase { scenario, alarm }
    }

    fn id(&self) -> &str {
        self.scenario["deploymentId"]
            .as_str()
            .expect("deploymentId")
    }

    fn cluster(&self) -> &str {
        self.scenario["cluster"].as_str().expect("cluster")
    }

    async fn mutations(&self) -> Vec<String> {
        mutations(&[self.id(), self.cluster(), &self.alarm]).await
    }

    async fn deployment(&self, id: &str) -> Value {
        Testbed::shared()
            .aws_json(
                "CodeDeploy_20141006.GetDeployment",
                json!({"deploymentId": id}),
            )
            .await["deploymentInfo"]
            .clone()
    }
}

/// An ECS-controller service deployment and its tagged alarm.
struct EcsCase {
    scenario: Value,
    alarm: String,
}

impl EcsCase {
    async fn new(name: &str, strategy: &str, status: &str) -> EcsCase {
        let bed = Testbed::shared();
        let scenario = bed
            .ecs_scenario(
                json!({"name": unique(name), "prod_port": 18000, "test_port": 18001,
                                 "strategy": strategy, "deployment_status": status}),
            )
            .await;
        let alarm = unique(&format!("{name}-5xx"));
        bed.alarm(json!({"name": alarm, "tags": ecs_tags(&scenario)}))
            .await;
        EcsCase { scenario, alarm }
    }

    fn arn(&self) -> &str {
        self.scenario["serviceDeploymentArn"]
            .as_str()
            .expect("serviceDeploymentArn")
    }

    fn cluster(&self) -> &str {
        self.scenario["cluster"].as_str().expect("cluster")
    }

    async fn mutations(&self) -> Vec<String> {
        mutations(&[self.cluster(), &self.alarm]).await
    }

    async fn status(&self) -> String {
        let out = Testbed::shared()
            .aws_json(
                "AmazonEC2ContainerServiceV20141113.DescribeServiceDeployments",
                json!({"serviceDeploymentArns": [self.arn()]}),
            )
            .await;
        out["serviceDeployments"][0]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// CodeDeploy

#[tokio::test]
async fn codedeploy_in_flight_is_stopped_with_rollback_confirmed_and_announced_once() {
    let case = CdCase::new("cd-inflight", json!({})).await;
    let f = router(&[]).await;
    let inv = send(&f, alarm_event(&case.alarm)).await;
    assert!(inv.error.is_none(), "{inv:?}");
    let out = last_outcome(&f);
    assert_eq!(out["action"], "StopDeployment");
    assert_eq!(out["release"], case.id());
    assert_eq!(out["live"]["alarm_state"], "ALARM");
    assert_eq!(out["mapping"], "alarm tags (ListTagsForResource)");
    assert_mentions(
        out["result"].as_str().unwrap_or_default(),
        &["stopped", "status Stopped", "rollback deployment d-"],
    );
    assert_mentions(
        &reason(&out),
        &[
            "is in ALARM while",
            case.id(),
            "stopping it with automatic rollback",
        ],
    );
    assert_eq!(out["announcement"], "sent to event bus default", "{out:#}");
    assert_eq!(
        case.mutations().await,
        vec!["codedeploy.StopDeployment", "events.PutEvents"]
    );
    let stop = &Testbed::shared()
        .calls("codedeploy", "StopDeployment", case.id())
        .await[0];
    assert_eq!(stop.params["autoRollbackEnabled"], true);
    let put = &Testbed::shared()
        .calls("events", "PutEvents", &case.alarm)
        .await[0];
    let entry = &put.params["Entries"][0];
    assert_eq!(entry["Source"], "deploy-guard.alarm-rollback");
    assert_eq!(entry["DetailType"], "Rollback Started");
    let detail: Value =
        serde_json::from_str(entry["Detail"].as_str().expect("detail")).expect("detail JSON");
    assert_eq!(detail["release"], case.id());
    assert_eq!(detail["action"], "StopDeployment");
    let info = case.deployment(case.id()).await;
    assert_eq!(info["status"], "Stopped");

    // The same event again (EventBridge's at-least-once): re-read, nothing more to do.
    let again = send(&f, alarm_event(&case.alarm)).await;
    assert!(again.error.is_none(), "{again:?}");
    let out = last_outcome(&f);
    assert_eq!(out["action"], "nothing");
    assert_mentions(&reason(&out), &["is itself a rollback of", case.id()]);
    assert_eq!(
        case.mutations().await,
        vec!["codedeploy.StopDeployment", "events.PutEvents"],
        "still exactly one rollback"
    );
}

#[tokio::test]
async fn duplicate_concurrent_events_roll_back_once() {
    let case = CdCase::new("cd-dup", json!({})).await;
    let (a, b) = tokio::join!(router(&[]), router(&[]));
    let event = alarm_event(&case.alarm);
    let (ia, ib) = tokio::join!(send(&a, event.clone()), send(&b, event));
    assert!(ia.error.is_none() && ib.error.is_none(), "{ia:?} {ib:?}");
    let muts = case.mutations().await;
    let stopped: Vec<_> = muts
        .iter()
        .filter(|m| *m == "codedeploy.StopDeployment")
        .collect();
    assert_eq!(stopped.len(), 1, "one successful stop: {muts:?}");
    assert_eq!(
        muts.iter().filter(|m| *m == "events.PutEvents").count(),
        1,
        "one announcement: {muts:?}"
    );
    assert!(
        muts.iter().all(|m| m == "codedeploy.StopDeployment"
            || m == "events.PutEvents"
            || m == "codedeploy.StopDeployment (DeploymentAlreadyCompletedException)"),
        "{muts:?}"
    );
    let actions: Vec<Value> = [last_outcome(&a), last_outcome(&b)]
        .iter()
        .map(|o| o["result"].clone())
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|r| r.as_str().unwrap_or_default().starts_with("stopped"))
            .count(),
        1,
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_flap_rolls_back_once() {
    let case = CdCase::new("cd-flap", json!({})).await;
    let bed = Testbed::shared();
    let f = router(&[]).await;
    send(&f, alarm_event(&case.alarm)).await;
    bed.alarm(json!({"name": case.alarm, "state": "OK", "tags": {}}))
        .await;
    let ok = send(&f, event_from("ok-state.json", &case.alarm, "OK", 1)).await;
    assert!(ok.error.is_none(), "{ok:?}");
    assert_eq!(last_outcome(&f)["action"], "ignored");
    bed.alarm(json!({"name": case.alarm, "state": "ALARM", "tags": cd_tags(&case.scenario)}))
        .await;
    send(&f, alarm_event(&case.alarm)).await;
    let out = last_outcome(&f);
    assert_eq!(out["action"], "nothing");
    assert_mentions(&reason(&out), &["a rollback is never rolled back"]);
    assert_eq!(
        case.mutations().await,
        vec!["codedeploy.StopDeployment", "events.PutEvents"]
    );
}

#[tokio::test]
async fn a_rollback_deployment_is_never_rolled_back() {
    let case = CdCase::new("cd-rbrb", json!({})).await;
    let bed = Testbed::shared();
    // The smoke hook fails the release: CodeDeploy (the test bed) starts a rollback deployment.
    bed.aws_json(
        "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus",
        json!({"deploymentId": case.id(), "lifecycleEventHookExecutionId": case.scenario["hookExecutionId"], "status": "Failed"}),
    )
    .await;
    let rollback = case.deployment(case.id()).await["rollbackInfo"]["rollbackDeploymentId"]
        .as_str()
        .expect("rollback id")
        .to_string();
    let f = router(&[]).await;
    send(&f, alarm_event(&case.alarm)).await;
    let out = last_outcome(&f);
    assert_eq!(out["action"], "nothing");
    assert_mentions(
        &reason(&out),
        &[&rollback, "is itself a rollback of", case.id()],
    );
    assert_eq!(
        out["live"]["releases"][0]["id"], rollback,
        "the live read saw the rollback deployment: {out:#}"
    );
    assert!(case.mutations().await.is_empty());
}

#[tokio::test]
async fn codedeploy_finished_within_the_window_redeploys_the_last_good_revision_once() {
    let case = CdCase::new("cd-window", json!({"previous_deployment": true})).await;
    let bed = Testbed::shared();
    bed.codedeploy_deployment(
        json!({"deploymentId": case.id(), "status": "Succeeded", "completedMinutesAgo": 5}),
    )
    .await;
    let previous = case.scenario["previousDeploymentId"]
        .as_str()
        .expect("previous");
    let f = router(&[("ROLLBACK_WINDOW_S", "1800")]).await;
    send(&f, alarm_event(&case.alarm)).await;
    let out = last_outcome(&f);
    assert_eq!(out["action"], "CreateDeployment", "{out:#}");
    assert_mentions(
        &reason(&out),
        &[
            "5 min after",
            case.id(),
            "redeploying the revision of",
            previous,
        ],
    );
    assert_eq!(
        case.mutations().await,
        vec!["codedeploy.CreateDeployment", "events.PutEvents"]
    );
    let create = &bed
        .calls("codedeploy", "CreateDeployment", case.cluster())
        .await[0];
    let content = create.params["revision"]["appSpecContent"]["content"]
        .as_str()
        .unwrap_or_default();
    let from = case.scenario["taskDefinitionFrom"].as_str().expect("from");
    assert!(
        content.contains(from),
        "the old task definition is redeployed: {content}"
    );
    assert_mentions(
        create.params["description"].as_str().unwrap_or_default(),
        &[
            "deploy-guard alarm-rollback:",
            &format!("rolling back {}", case.id()),
        ],
    );

    // The alarm fires again while the redeploy runs: it is a rollback, never rolled back.
    send(&f, alarm_event(&case.alarm)).await;
    let out = last_outcome(&f);
    assert_eq!(out["action"], "nothing");
    assert_mentions(&reason(&out), &["is itself a rollback of", case.id()]);
    assert_eq!(
        case.mutations().await,
        vec!["codedeploy.CreateDeployment", "events.PutEvents"]
    );
}

#[tokio::test]
async fn codedeploy_finished_outside_the_window_does_nothing_and_says_why() {
    let case = CdCase::new("cd-late", json!({"previous_deployment": true})).await;
    Testbed::shared()
        .codedeploy_deployment(
            json!({"deploymentId": case.id(), "status": "Succeeded", "completedMinutesAgo": 45}),
        )
        .await;
    let f = router(&[("ROLLBACK_WINDOW_S", "1800")]).await;
    send(&f, alarm_event(&case.alarm)).await;
    let out = last_outcome(&f);
    assert_eq!(out["action"], "nothing");
    assert_mentions(
        &reason(&out),
        &[
            "finished 45 min ago",
            "outside the rollback window of 30 min",
        ],
    );
    assert!(case.mutations().await.is_empty());
}

#[tokio::test]
async fn an_alarm_that_recovered_changes_nothing() {
    let case = CdCase::new("cd-recovered", json!({})).await;
    Testbed::shared()
        .alarm(json!({"name": case.alarm, "state": "OK", "tags": {}}))
        .await;
    let f = router(&[]).await;
    send(&f, alarm_event(&case.alarm)).await;
    let out = last_outcome(&f);
    assert_eq!(out["action"], "nothing");
    assert_eq!(out["live"]["alarm_state"], "OK");
    assert_mentions(&reason(&out), &["is OK now (re-read)"]);
    assert!(case.mutations().await.is_empty());
    assert!(
        Testbed::shared()
            .calls("codedeploy", "ListDeployments", case.cluster())
            .await
            .is_empty(),
        "no deployment is read for a recovered alarm"
    );
}

#[tokio::test]
async fn a_stale_event_is_ignored_without_reading_anything() {
    let case = CdCase::new("cd-stale", json!({})).await;
    let f = router(&[("MAX_EVENT_AGE_S", "600")]).await;
    let inv = send(
        &f,
        event_from("metric-alarm.json", &case.alarm, "ALARM", 3600),
    )
    .await;
    assert!(inv.error.is_none(), "{inv:?}");
    let out = last_outcome(&f);
    assert_eq!(out["action"], "ignored");
    assert_mentions(
        &reason(&out),
        &["stale", "older than the maximum age of 600 s"],
    );
    assert!(case.mutations().await.is_empty());
    assert!(Testbed::shared()
        .calls("cloudwatch", "DescribeAlarms", &case.alarm)
        .await
        .is_empty());
}

#[tokio::test]
async fn dry_run_decides_and_changes_nothing() {
    let case = CdCase::new("cd-dry", json!({})).await;
    let f = router(&[("DRY_RUN", "true")]).await;
    send(&f, alarm_event(&case.alarm)).await;
    let out = last_outcome(&f);
    assert_eq!(out["action"], "StopDeployment");
    assert_eq!(out["dry_run"], true);
    assert_eq!(out["result"], "dry run: would call StopDeployment");
    assert!(case.mutations().await.is_empty());
    assert_eq!(case.deployment(case.id()).await["status"], "InProgress");
}

// ---------------------------------------------------------------------------------------------
// ECS

#[tokio::test]
async fn ecs_deployments_in_flight_are_stopped_with_rollback() {
    for strategy in ["BLUE_GREEN", "ROLLING", "CANARY"] {
        let case = EcsCase::new(&format!("ecs-{strategy}"), strategy, "IN_PROGRESS").await;
        let f = router(&[]).await;
        // Tags propagated in the event: no ListTagsForResource.
        let mut event = alarm_event(&case.alarm);
        event["detail"]["alarmTags"] = ecs_tags(&case.scenario);
        event["detail"]["alarmTagsStatus"] = json!("SUCCESS");
        let inv = send(&f, event).await;
        assert!(inv.error.is_none(), "{strategy}: {inv:?}");
        let out = last_outcome(&f);
        assert_eq!(
            out["action"], "StopServiceDeployment",
            "{strategy}: {out:#}"
        );
        assert_eq!(out["mapping"], "alarm tags in the event");
        assert_eq!(out["live"]["controller"], format!("ECS {strategy}"));
        assert_mentions(&reason(&out), &["stopping it with ROLLBACK"]);
        assert_eq!(
            out["result"],
            "rollback of the service deployment requested (status ROLLBACK_REQUESTED)"
        );
        assert_eq!(
            case.mutations().await,
            vec!["ecs.StopServiceDeployment", "events.PutEvents"],
            "{strategy}"
        );
        let stop = &Testbed::shared()
            .calls("ecs", "StopServiceDeployment", case.cluster())
            .await[0];
        assert_eq!(stop.params["stopType"], "ROLLBACK");
        assert_eq!(case.status().await, "ROLLBACK_REQUESTED");
        assert!(Testbed::shared()
            .calls("cloudwatch", "ListTagsForResource", &case.alarm)
            .await
            .is_empty());
        // A duplicate finds the rollback under way.
        send(&f, alarm_event(&case.alarm)).await;
        assert_mentions(
            &reason(&last_outcome(&f)),
            &["already rolling back or stopping (ROLLBACK_REQUESTED)"],
        );
        assert_eq!(case.mutations().await.len(), 2, "{strategy}");
    }
}

#[tokio::test]
async fn ecs_rolling_finished_within_the_window_goes_back_to_the_previous_task_definition_once() {
    let case = EcsCase::new("ecs-window", "ROLLING", "SUCCESSFUL").await;
    Testbed::shared()
        .ecs_service_deployment(json!({"serviceDeploymentArn": case.arn(), "status": "SUCCESSFUL", "finishedMinutesAgo": 5}))
        .await;
    let f = router(&[]).await;
    send(&f, alarm_event(&case.alarm)).await;
    let out = last_outcome(&f);
    let from = case.scenario["taskDefinitionFrom"].as_str().expect("from");
    assert_eq!(out["action"], "UpdateService", "{out:#}");
    assert_mentions(
        &reason(&out),
        &["5 min after", "updating the service back to", from],
    );
    assert_eq!(
        case.mutations().await,
        vec!["ecs.UpdateService", "events.PutEvents"]
    );
    let update = &Testbed::shared()
        .calls("ecs", "UpdateService", case.cluster())
        .await[0];
    assert_eq!(update.params["taskDefinition"], from);
    // Again while the revert rolls out: a rollback is never rolled back.
    send(&f, alarm_event(&case.alarm)).await;
    let out = last_outcome(&f);
    assert_eq!(out["action"], "nothing");
    assert_mentions(&reason(&out), &["is itself a rollback of", case.arn()]);
    assert_eq!(
        case.mutations().await,
        vec!["ecs.UpdateService", "events.PutEvents"]
    );
}

#[tokio::test]
async fn ecs_already_rolling_back_or_rolled_back_does_nothing() {
    for status in ["ROLLBACK_IN_PROGRESS", "ROLLBACK_SUCCESSFUL"] {
        let case = EcsCase::new(&format!("ecs-{status}"), "BLUE_GREEN", status).await;
        let f = router(&[]).await;
        send(&f, alarm_event(&case.alarm)).await;
        let out = last_outcome(&f);
        assert_eq!(out["action"], "nothing", "{status}");
        assert_mentions(&reason(&out), &[status]);
        assert!(case.mutations().await.is_empty(), "{status}");
    }
}

#[tokio::test]
async fn an_ecs_service_deployed_by_codedeploy_says_to_map_its_deployment_group() {
    let bed = Testbed::shared();
    let scenario = bed
        .codedeploy_scenario(
            json!({"name": unique("ecs-cd"), "prod_port": 18000, "test_port": 18001}),
        )
        .await;
    let alarm = unique("ecs-cd-5xx");
    bed.alarm(json!({"name": alarm, "tags": ecs_tags(&scenario)}))
        .await;
    let f = router(&[]).await;
    send(&f, alarm_event(&alarm)).await;
    let out = last_outcome(&f);
    assert_eq!(out["action"], "nothing");
    assert_mentions(
        &reason(&out),
        &[
            "deploymentController CODE_DEPLOY",
            "map the alarm to its CodeDeploy application",
        ],
    );
    let cluster = scenario["cluster"].as_str().expect("cluster");
    assert!(mutations(&[cluster, &alarm]).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Mapping

#[tokio::test]
async fn mapping_problems_do_nothing_and_say_how_to_fix_them() {
    let bed = Testbed::shared();
    let untagged = unique("untagged");
    bed.alarm(json!({"name": untagged, "tags": {"team": "shop"}}))
        .await;
    let half = unique("half");
    bed.alarm(json!({"name": half, "tags": {"deploy-guard:ecs-service": "shop"}}))
        .await;
    let mapped = unique("mapped");
    bed.alarm(json!({"name": mapped})).await;
    let f = router(&[(
        "ALARM_TARGETS",
        &json!({format!("{mapped}*"): "ecs:no-such-cluster/shop"}).to_string(),
    )])
    .await;
    let cases = [
        (
            untagged.as_str(),
            "names no release to guard: tag it with deploy-guard:codedeploy-application",
        ),
        (
            half.as_str(),
            "has the tag deploy-guard:ecs-service but not deploy-guard:ecs-cluster",
        ),
        (
            mapped.as_str(),
            "ecs:no-such-cluster/shop: the service does not exist",
        ),
    ];
    for (alarm, words) in cases {
        let inv = send(&f, alarm_event(alarm)).await;
        assert!(inv.error.is_none(), "{alarm}: {inv:?}");
        let out = last_outcome(&f);
        assert_eq!(out["action"], "nothing", "{alarm}");
        assert_mentions(&reason(&out), &[words]);
        assert!(mutations(&[alarm]).await.is_empty());
    }
    assert_eq!(
        last_outcome(&f)["mapping"],
        "static mapping (ALARM_TARGETS)"
    );
}

// ---------------------------------------------------------------------------------------------
// Faults

#[tokio::test]
async fn throttling_twice_then_success_still_rolls_back() {
    let case = CdCase::new("cd-throttle2", json!({})).await;
    Testbed::shared()
        .fault(json!({"service": "cloudwatch", "operation": "DescribeAlarms", "match_text": case.alarm, "mode": "throttle", "times": 2}))
        .await;
    let f = router(&[]).await;
    let inv = send(&f, alarm_event(&case.alarm)).await;
    assert!(inv.error.is_none(), "{inv:?}");
    assert_eq!(
        Testbed::shared()
            .call_errors("cloudwatch", "DescribeAlarms", &case.alarm)
            .await,
        throttled_twice_then_answered()
    );
    assert_eq!(
        case.mutations().await,
        vec!["codedeploy.StopDeployment", "events.PutEvents"]
    );
}

#[tokio::test]
async fn throttling_that_never_clears_is_a_lambda_error_and_announces_nothing() {
    let case = CdCase::new("cd-throttle", json!({})).await;
    Testbed::shared()
        .fault(json!({"service": "codedeploy", "operation": "StopDeployment", "match_text": case.id(), "mode": "throttle"}))
        .await;
    let f = router(&[]).await;
    let inv = send(&f, alarm_event(&case.alarm)).await;
    let error = inv.error.expect("a Lambda error, so Lambda retries");
    assert_mentions(
        &error.to_string(),
        &[
            "could not stop deployment",
            case.id(),
            "ThrottlingException",
        ],
    );
    let throttled = "codedeploy.StopDeployment (ThrottlingException)";
    assert_eq!(
        case.mutations().await,
        vec![throttled, throttled, throttled],
        "standard retries, no announcement"
    );
    let out = last_outcome(&f);
    assert_eq!(
        (out["result"].as_str(), out["handled"].as_bool()),
        (Some("error"), Some(false))
    );
}

#[tokio::test]
async fn access_denied_reading_the_alarm_tags_is_a_lambda_error() {
    let case = CdCase::new("cd-denied", json!({})).await;
    Testbed::shared()
        .fault(json!({"service": "cloudwatch", "operation": "ListTagsForResource", "match_text": case.alarm, "mode": "access_denied"}))
        .await;
    let f = router(&[]).await;
    let inv = send(&f, alarm_event(&case.alarm)).await;
    assert_mentions(
        &inv.error.expect("error").to_string(),
        &["could not read the tags of alarm", "AccessDeniedException"],
    );
    assert!(case.mutations().await.is_empty());
}

#[tokio::test]
async fn a_hung_endpoint_ends_before_the_deadline_in_a_lambda_error() {
    let case = CdCase::new("cd-hang", json!({})).await;
    Testbed::shared()
        .fault(json!({"service": "cloudwatch", "operation": "DescribeAlarms", "match_text": case.alarm, "mode": "hang", "hang_seconds": 30, "times": 1}))
        .await;
    let f = router(&[
        ("AWS_ATTEMPT_TIMEOUT_MS", "20000"),
        ("AWS_OPERATION_TIMEOUT_MS", "25000"),
    ])
    .await;
    let budget = Duration::from_secs(4);
    let inv = f.invoke(alarm_event(&case.alarm), budget).await;
    assert!(
        inv.elapsed < budget,
        "answered after the deadline: {:?}",
        inv.elapsed
    );
    assert_mentions(&inv.error.expect("error").to_string(), &["ran out of time"]);
    assert_eq!(last_outcome(&f)["alarm"], case.alarm.as_str());
    assert!(case.mutations().await.is_empty());
}

#[tokio::test]
async fn an_announcement_that_cannot_be_sent_does_not_undo_the_rollback() {
    let case = CdCase::new("cd-noannounce", json!({})).await;
    Testbed::shared()
        .fault(json!({"service": "events", "operation": "PutEvents", "match_text": case.alarm, "mode": "access_denied"}))
        .await;
    let f = router(&[]).await;
    let inv = send(&f, alarm_event(&case.alarm)).await;
    assert!(inv.error.is_none(), "the rollback was handled: {inv:?}");
    let out = last_outcome(&f);
    assert_eq!(out["action"], "StopDeployment");
    assert_mentions(
        out["announcement"].as_str().unwrap_or_default(),
        &["not sent", "AccessDeniedException"],
    );
    assert_eq!(
        case.mutations().await,
        vec![
            "codedeploy.StopDeployment",
            "events.PutEvents (AccessDeniedException)"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input

/// Events that cannot be handled end in a Lambda error naming the problem; events that are not
/// for us are ignored with the reason; neither changes anything.
#[tokio::test]
async fn bad_and_foreign_events() {
    let f = router(&[]).await;
    let errors: Vec<(Value, &str)> = vec![
        (json!({}), "no source and detail-type"),
        (json!("text"), "not a JSON object"),
        (
            sample("bad-missing-alarm-name.json"),
            "detail.alarmName is missing",
        ),
    ];
    for (event, words) in errors {
        let inv = send(&f, event.clone()).await;
        let err = inv
            .error
            .unwrap_or_else(|| panic!("{event:.60}: expected a Lambda error"));
        assert!(err.to_string().contains(words), "{event:.60}: {err}");
    }
    let alarm = unique("foreign");
    let mut other_account = alarm_event(&alarm);
    other_account["account"] = json!("999999999999");
    let mut other_region = alarm_event(&alarm);
    other_region["region"] = json!("eu-west-1");
    let mut other_source = event_from("not-an-alarm-event.json", &alarm, "ALARM", 1);
    other_source["detail"]["alarmName"] = json!(alarm);
    let ignored: Vec<(Value, &str)> = vec![
        (other_source, "not an alarm state change"),
        (event_from("ok-state.json", &alarm, "OK", 1), "not ALARM"),
        (
            event_from("metric-alarm.json", &alarm, "INSUFFICIENT_DATA", 1),
            "INSUFFICIENT_DATA",
        ),
        (other_account, "account \"999999999999\""),
        (other_region, "region \"eu-west-1\""),
    ];
    for (event, words) in ignored {
        let inv = send(&f, event).await;
        assert!(inv.error.is_none(), "{words}: {inv:?}");
        let out = last_outcome(&f);
        assert_eq!(out["action"], "ignored", "{words}");
        assert_mentions(&reason(&out), &[words]);
    }
    assert!(
        Testbed::shared()
            .calls("cloudwatch", "DescribeAlarms", &alarm)
            .await
            .is_empty(),
        "ignored events read nothing"
    );
    assert!(mutations(&[&alarm]).await.is_empty());
}

/// A composite alarm, and a metric-math alarm with a one-day period and propagated tags.
#[tokio::test]
async fn composite_and_daily_metric_math_alarms_are_handled() {
    let case = EcsCase::new("ecs-composite", "ROLLING", "IN_PROGRESS").await;
    let bed = Testbed::shared();
    let composite = unique("composite");
    bed.alarm(json!({"name": composite, "composite": true, "tags": ecs_tags(&case.scenario)}))
        .await;
    let f = router(&[]).await;
    send(
        &f,
        event_from("composite-alarm.json", &composite, "ALARM", 1),
    )
    .await;
    let out = last_outcome(&f);
    assert_eq!(out["alarm_kind"], "composite");
    assert_eq!(out["action"], "StopServiceDeployment", "{out:#}");
    assert_eq!(
        mutations(&[case.cluster(), &composite]).await,
        vec!["ecs.StopServiceDeployment", "events.PutEvents"]
    );

    let daily = unique("daily");
    bed.alarm(json!({"name": daily, "period": 86400})).await;
    let mut event = event_from("metric-math-daily-with-tags.json", &daily, "ALARM", 1);
    event["detail"]["alarmTags"]["deploy-guard:ecs-cluster"] = json!(unique("no-cluster"));
    send(&f, event).await;
    let out = last_outcome(&f);
    assert_eq!(out["alarm_kind"], "metric-math");
    assert_eq!(out["mapping"], "alarm tags in the event");
    assert_mentions(&reason(&out), &["the service does not exist"]);
    assert!(mutations(&[&daily]).await.is_empty());
}

#[tokio::test]
async fn a_configuration_error_is_a_lambda_error_naming_the_variable() {
    let f = router(&[("ROLLBACK_WINDOW_S", "half an hour")]).await;
    let inv = send(&f, alarm_event(&unique("config"))).await;
    assert_mentions(
        &inv.error.expect("error").to_string(),
        &["ROLLBACK_WINDOW_S", "half an hour"],
    );
}

/// The demo's story holds: both rollbacks happen, the duplicate does nothing.
#[tokio::test]
async fn the_demo_tells_its_story() {
    assert!(
        demo::run().await,
        "the alarm-rollback demo got an unexpected decision"
    );
}
