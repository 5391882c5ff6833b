//! The smoke hook under ECS native blue/green: the verdict is the return value.

use deploy_guard_tests::sample_app::{Behaviour, SampleApp};
use deploy_guard_tests::testbed::Testbed;
use serde_json::{json, Value};

use crate::support::*;

struct Ecs {
    bed: &'static Testbed,
    scenario: Value,
    test_app: SampleApp,
    prod_app: SampleApp,
}

impl Ecs {
    async fn new(name: &str, test: Behaviour, prod: Behaviour) -> Ecs {
        let bed = Testbed::shared();
        let test_app = SampleApp::start(test).await;
        let prod_app = SampleApp::start(prod).await;
        let scenario = bed
            .ecs_scenario(json!({
                "name": unique(name),
                "image_from": format!("{IMAGE}:v1"),
                "image_to": format!("{IMAGE}:v2"),
                "container": "web",
                "prod_port": prod_app.port,
                "test_port": test_app.port,
            }))
            .await;
        Ecs {
            bed,
            scenario,
            test_app,
            prod_app,
        }
    }

    fn s(&self, key: &str) -> String {
        self.scenario[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} in {}", self.scenario))
            .to_string()
    }

    /// `events/smoke-test-hook/ecs-post-test-traffic-shift.json` for this deployment at `stage`.
    fn event(&self, stage: &str) -> Value {
        let target = self.s("targetServiceRevisionArn");
        let source = self.s("sourceServiceRevisionArn");
        let mut e = sample_event("ecs-post-test-traffic-shift.json");
        e["executionId"] = json!(unique("exec"));
        e["lifecycleStage"] = json!(stage);
        e["resourceArn"] = json!(self.s("serviceDeploymentArn"));
        e["executionDetails"] = json!({
            "serviceArn": self.s("serviceArn"),
            "targetServiceRevisionArn": target,
            "testTrafficWeights": {target.clone(): 100, source.clone(): 0},
            "productionTrafficWeights": {source: 100, target: 0}
        });
        e
    }

    fn resolve(&self) -> String {
        let dns = self.s("loadBalancerDns");
        format!(
            "{dns}:{}:127.0.0.1,{dns}:{}:127.0.0.1",
            self.test_app.port, self.prod_app.port
        )
    }

    async fn hook(&self, env: &[(&str, String)]) -> deploy_guard_tests::runtime::Function {
        start_hook(self.bed, Some(self.resolve()), env).await
    }
}

fn status(reply: &Value) -> &str {
    reply["hookStatus"].as_str().unwrap_or("missing")
}

fn ours(reply: &Value) -> &Value {
    &reply["hookDetails"]["deployGuard"]
}

#[tokio::test]
async fn a_good_release_succeeds_with_the_reason_in_hook_details() {
    let ecs = Ecs::new("good", healthy("v2"), healthy("v1")).await;
    let hook = ecs.hook(&[]).await;
    let inv = invoke(&hook, ecs.event("POST_TEST_TRAFFIC_SHIFT")).await;
    let reply = inv.response.expect("a return value");
    assert_eq!(status(&reply), "SUCCEEDED", "{reply}");
    assert_mentions(
        ours(&reply)["reason"].as_str().unwrap_or_default(),
        &["3 checks passed", "version v2 proven"],
    );
    assert_eq!(
        reply["hookDetails"]["team"], "shop",
        "the operator's hookDetails are kept"
    );
    let out = single_outcome(&hook);
    assert_eq!(out["verdict"], "Succeeded");
    assert_eq!(out["lifecycle_stage"], "POST_TEST_TRAFFIC_SHIFT");
    assert_mentions(
        out["endpoint"].as_str().unwrap_or_default(),
        &["test listener rule"],
    );
    assert!(ecs.prod_app.seen().is_empty());
    // Nothing was reported through an API: the return value is the verdict.
    assert!(ecs
        .bed
        .calls(
            "codedeploy",
            "PutLifecycleEventHookExecutionStatus",
            &ecs.s("service")
        )
        .await
        .is_empty());
}

#[tokio::test]
async fn a_broken_release_fails_with_the_reason_for_the_deployment_history() {
    let ecs = Ecs::new("broken", Behaviour::Error500, healthy("v1")).await;
    let spec = json!({"checks": [{"name": "home", "path": "/", "retry": {"attempts": 1}}]});
    let hook = ecs.hook(&[("SMOKE_SPEC_DEFAULT", spec.to_string())]).await;
    let reply = invoke(&hook, ecs.event("POST_TEST_TRAFFIC_SHIFT"))
        .await
        .response
        .expect("reply");
    assert_eq!(status(&reply), "FAILED");
    assert_mentions(
        ours(&reply)["reason"].as_str().unwrap_or_default(),
        &["home: status 500"],
    );
    assert_eq!(ours(&reply)["checks"][0]["passed"], false);
}

#[tokio::test]
async fn production_stages_test_the_production_listener() {
    let ecs = Ecs::new("prod", Behaviour::Error500, healthy("v2")).await;
    let hook = ecs.hook(&[]).await;
    let reply = invoke(&hook, ecs.event("POST_PRODUCTION_TRAFFIC_SHIFT"))
        .await
        .response
        .expect("reply");
    assert_eq!(status(&reply), "SUCCEEDED", "{reply}");
    assert!(ecs.test_app.seen().is_empty());
    assert!(!ecs.prod_app.seen().is_empty());
}

#[tokio::test]
async fn readiness_longer_than_one_invocation_continues_through_in_progress() {
    let warming = Behaviour::FlakyThenHealthy {
        n: 8,
        version: "v2".into(),
    };
    let ecs = Ecs::new("continue", warming, healthy("v1")).await;
    let spec = json!({"readiness": {"path": "/health", "consecutive": 2, "interval_ms": 150, "timeout_s": 60},
                      "checks": [{"path": "/"}]});
    let hook = ecs
        .hook(&[
            ("SMOKE_SPEC_DEFAULT", spec.to_string()),
            ("ECS_INVOCATION_BUDGET_MS", "700".into()),
            ("ECS_CALLBACK_DELAY_S", "5".into()),
        ])
        .await;
    let mut event = ecs.event("POST_TEST_TRAFFIC_SHIFT");
    let mut statuses = Vec::new();
    let mut last = Value::Null;
    for _ in 0..10 {
        let reply = invoke(&hook, event.clone()).await.response.expect("reply");
        statuses.push(status(&reply).to_string());
        if status(&reply) != "IN_PROGRESS" {
            last = reply;
            break;
        }
        assert_eq!(reply["callBackDelay"], 5);
        let state = &ours(&reply)["state"];
        assert!(state["polls"].as_u64().unwrap_or(0) > 0, "{reply}");
        // ECS passes hookDetails back on the next invocation.
        event["hookDetails"] = reply["hookDetails"].clone();
    }
    assert!(
        statuses.len() >= 2
            && statuses[..statuses.len() - 1]
                .iter()
                .all(|s| s == "IN_PROGRESS"),
        "{statuses:?}"
    );
    assert_eq!(status(&last), "SUCCEEDED", "{statuses:?} {last}");
    let outcome = hook.outcomes().pop().expect("outcome");
    assert!(
        outcome["readiness"]["polls"].as_u64().unwrap_or(0) >= 10,
        "polls carried across invocations: {outcome}"
    );
}

#[tokio::test]
async fn a_rollback_reinvocation_passes_without_testing() {
    let ecs = Ecs::new("rollback", Behaviour::Error500, Behaviour::Error500).await;
    let hook = ecs.hook(&[]).await;
    let mut event = ecs.event("TEST_TRAFFIC_SHIFT");
    let target = ecs.s("targetServiceRevisionArn");
    event["executionDetails"]["testTrafficWeights"] =
        json!({target: 0, ecs.s("sourceServiceRevisionArn"): 100});
    let reply = invoke(&hook, event).await.response.expect("reply");
    assert_eq!(status(&reply), "SUCCEEDED");
    assert_mentions(
        ours(&reply)["reason"].as_str().unwrap_or_default(),
        &["rollback re-invocation", "weight 0"],
    );
    assert!(ecs.test_app.seen().is_empty() && ecs.prod_app.seen().is_empty());
}

#[tokio::test]
async fn the_old_version_answering_fails() {
    let ecs = Ecs::new("oldver", healthy("v1"), healthy("v1")).await;
    let spec = json!({"defaults": {"retry": {"attempts": 1}}, "version_proof": {"header": "x-app-version"}});
    let hook = ecs.hook(&[("SMOKE_SPEC_DEFAULT", spec.to_string())]).await;
    let reply = invoke(&hook, ecs.event("POST_TEST_TRAFFIC_SHIFT"))
        .await
        .response
        .expect("reply");
    assert_eq!(status(&reply), "FAILED");
    assert_mentions(
        ours(&reply)["reason"].as_str().unwrap_or_default(),
        &["\"v1\" answered, expected \"v2\""],
    );
}

#[tokio::test]
async fn a_stage_the_spec_does_not_cover_fails() {
    let ecs = Ecs::new("stage", healthy("v2"), healthy("v1")).await;
    let hook = ecs.hook(&[]).await;
    let reply = invoke(&hook, ecs.event("PRE_SCALE_UP"))
        .await
        .response
        .expect("reply");
    assert_eq!(status(&reply), "FAILED");
    assert_mentions(
        ours(&reply)["reason"].as_str().unwrap_or_default(),
        &["stage PRE_SCALE_UP", "POST_TEST_TRAFFIC_SHIFT"],
    );
}

#[tokio::test]
async fn malformed_ecs_payloads_still_get_a_failed_reply() {
    let bed = Testbed::shared();
    let hook = start_hook(bed, None, &[]).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"executionId": "e-1"}), "does not parse"),
        (
            json!({"executionId": "e-1", "lifecycleStage": ["x"], "resourceArn": "a"}),
            "does not parse",
        ),
        (
            json!({"executionId": "e-1", "lifecycleStage": "LUNCH", "resourceArn": "a", "hookDetails": {"team": "x"}}),
            "\"LUNCH\" is not an ECS hook stage",
        ),
        (
            json!({"executionId": "e-1", "lifecycleStage": "POST_TEST_TRAFFIC_SHIFT", "resourceArn": "arn:aws:ecs:us-east-1:1:cluster/x"}),
            "not a service-deployment ARN",
        ),
    ];
    for (event, words) in cases {
        let reply = invoke(&hook, event.clone())
            .await
            .response
            .unwrap_or_else(|| panic!("{event}: no reply"));
        assert_eq!(status(&reply), "FAILED", "{event}");
        assert_mentions(
            ours(&reply)["reason"].as_str().unwrap_or_default(),
            &[words],
        );
    }
}

#[tokio::test]
async fn throttled_discovery_that_clears_still_passes() {
    let ecs = Ecs::new("throttle", healthy("v2"), healthy("v1")).await;
    ecs.bed
        .fault(json!({"service": "ecs", "operation": "DescribeServices", "match_text": ecs.s("service"), "mode": "throttle", "times": 2}))
        .await;
    let hook = ecs.hook(&[]).await;
    let reply = invoke(&hook, ecs.event("POST_TEST_TRAFFIC_SHIFT"))
        .await
        .response
        .expect("reply");
    assert_eq!(status(&reply), "SUCCEEDED", "{reply}");
    let calls = ecs
        .bed
        .calls("ecs", "DescribeServices", &ecs.s("service"))
        .await;
    assert_eq!(calls.len(), 3, "{calls:#?}");
}
