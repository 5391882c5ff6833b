//! The smoke hook under CodeDeploy: discovery, verdicts, faults, bad input.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deploy_guard_tests::runtime::Function;
use deploy_guard_tests::sample_app::Behaviour;
use deploy_guard_tests::testbed::{throttled_twice_then_answered, Testbed};
use serde_json::{json, Value};

use crate::support::*;

const TEST_EVENT: &str = "AfterAllowTestTraffic";

#[tokio::test]
async fn a_good_release_passes_on_the_test_listener_with_its_version_proven() {
    let cd = CodeDeploy::new("good", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    let hook = cd.hook(&[]).await;
    let inv = invoke(&hook, cd.event()).await;
    assert!(inv.error.is_none(), "{inv:?}");
    assert_eq!(cd.single_report().await, "Succeeded");
    let out = single_outcome(&hook);
    assert_eq!(out["verdict"], "Succeeded");
    assert_eq!(out["lifecycle_event"], TEST_EVENT);
    assert_eq!(out["version"]["tag"], "v2");
    assert_mentions(&reason(&out), &["3 checks passed", "version v2 proven"]);
    assert_mentions(
        out["endpoint"].as_str().unwrap_or_default(),
        &["test listener"],
    );
    let checks = out["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 3);
    assert!(
        checks
            .iter()
            .all(|c| c["passed"] == true && c["status"] == 200 && c["attempts"] == 1),
        "{checks:#?}"
    );
    assert!(
        cd.prod_app.seen().is_empty(),
        "the production listener must not be tested at {TEST_EVENT}"
    );
}

#[tokio::test]
async fn a_broken_release_fails_with_the_reason() {
    let cd = CodeDeploy::new("broken", Behaviour::Error500, healthy("v1"), TEST_EVENT).await;
    let spec = json!({"checks": [{"name": "home", "path": "/", "retry": {"attempts": 2, "base_delay_ms": 10, "max_delay_ms": 20}}]});
    let hook = cd.hook(&[("SMOKE_SPEC_DEFAULT", spec.to_string())]).await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Failed");
    let out = single_outcome(&hook);
    assert_mentions(
        &reason(&out),
        &["home: status 500 (expected 200-299)", "after 2 attempts"],
    );
    assert_eq!(out["checks"][0]["attempts"], 2);
}

#[tokio::test]
async fn the_old_version_answering_fails_the_version_proof() {
    let cd = CodeDeploy::new("oldver", healthy("v1"), healthy("v1"), TEST_EVENT).await;
    let spec = json!({"defaults": {"retry": {"attempts": 2, "base_delay_ms": 10, "max_delay_ms": 20}},
                      "version_proof": {"header": "x-app-version", "path": "/"}});
    let hook = cd.hook(&[("SMOKE_SPEC_DEFAULT", spec.to_string())]).await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Failed");
    assert_mentions(
        &reason(&single_outcome(&hook)),
        &["version proof", "\"v1\" answered, expected \"v2\""],
    );
}

#[tokio::test]
async fn readiness_polls_until_the_new_version_answers_instead_of_sleeping() {
    let switching = Behaviour::SwitchesAfter {
        n: 4,
        old: "v1".into(),
        new: "v2".into(),
    };
    let cd = CodeDeploy::new("switch", switching, healthy("v1"), TEST_EVENT).await;
    let spec = json!({"readiness": {"path": "/version", "consecutive": 2, "interval_ms": 50, "timeout_s": 10},
                      "version_proof": {"path": "/version", "json_pointer": "/version"}});
    let hook = cd.hook(&[("SMOKE_SPEC_DEFAULT", spec.to_string())]).await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Succeeded");
    let out = single_outcome(&hook);
    assert_eq!(out["readiness"]["result"], "ready");
    let polls = out["readiness"]["polls"].as_u64().expect("polls");
    assert!(
        polls >= 6,
        "4 old answers then 2 consecutive new ones: {polls} polls"
    );
}

#[tokio::test]
async fn after_allow_traffic_tests_the_production_listener() {
    let cd = CodeDeploy::new(
        "prod",
        Behaviour::Error500,
        healthy("v2"),
        "AfterAllowTraffic",
    )
    .await;
    let hook = cd.hook(&[]).await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Succeeded");
    let out = single_outcome(&hook);
    assert_eq!(out["lifecycle_event"], "AfterAllowTraffic");
    assert_mentions(
        out["endpoint"].as_str().unwrap_or_default(),
        &["production listener"],
    );
    assert!(cd.test_app.seen().is_empty());
    assert!(!cd.prod_app.seen().is_empty());
}

#[tokio::test]
async fn spec_from_ssm_with_a_secret_header_that_never_reaches_the_logs() {
    let cd = CodeDeploy::new("ssm", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    let secret_value = format!("tok-{}", unique("s3cr3t"));
    let secret_name = unique("smoke/token");
    cd.bed
        .put_secret(&secret_name, &json!({"token": secret_value}).to_string())
        .await;
    let spec = json!({"checks": [{"name": "authorised", "path": "/api",
        "headers": {"Authorization": {"secretsmanager": secret_name, "json_key": "token", "prefix": "Bearer "}}}]});
    let (location, parameter) = cd.spec_in_ssm(&spec.to_string()).await;
    let hook = cd
        .hook(&[
            ("SMOKE_SPEC_LOCATION", location),
            ("RUST_LOG", "trace".into()),
        ])
        .await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Succeeded");
    let out = single_outcome(&hook);
    assert_mentions(
        out["spec"].as_str().unwrap_or_default(),
        &[&format!("ssm:{parameter}")],
    );
    let seen = cd.test_app.seen();
    let auth = seen[0]
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone());
    assert_eq!(
        auth,
        Some(format!("Bearer {secret_value}")),
        "the app got the secret"
    );
    let logs = hook.logs().join("\n");
    assert!(
        logs.contains("running the smoke spec"),
        "DEBUG lines are written at TRACE"
    );
    assert!(
        !logs.contains(&secret_value),
        "the secret leaked into the logs"
    );
}

/// SSM and Secrets Manager are signed JSON calls of our own (shared/src/awsjson.rs): throttling
/// is retried like the SDK does, and a missing secret fails the verdict naming the secret and
/// the service's error, before any request is sent with a header missing.
#[tokio::test]
async fn a_throttled_spec_read_is_retried_and_a_missing_secret_fails_naming_it() {
    let cd = CodeDeploy::new("jsonapi", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    let secret_name = unique("smoke/absent");
    let spec = json!({"checks": [{"name": "authorised", "path": "/api",
        "headers": {"Authorization": {"secretsmanager": secret_name}}}]});
    let (location, parameter) = cd.spec_in_ssm(&spec.to_string()).await;
    cd.bed
        .fault(
            json!({"service": "ssm", "operation": "GetParameter", "match_text": parameter,
                      "mode": "throttle", "times": 2}),
        )
        .await;
    let hook = cd.hook(&[("SMOKE_SPEC_LOCATION", location)]).await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Failed");
    assert_eq!(
        cd.bed.call_errors("ssm", "GetParameter", &parameter).await,
        throttled_twice_then_answered()
    );
    assert_mentions(
        &reason(&single_outcome(&hook)),
        &[
            &secret_name,
            "GetSecretValue failed",
            "ResourceNotFoundException",
        ],
    );
    assert!(
        cd.test_app.seen().is_empty(),
        "no request is sent without its secret header"
    );
}

#[tokio::test]
async fn a_bad_spec_fails_with_a_reason_quoting_the_problem() {
    let cd = CodeDeploy::new("badspec", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    let (location, _) = cd
        .spec_in_ssm(r#"{"checks": [{"path": "https://evil.example/x"}]}"#)
        .await;
    let hook = cd.hook(&[("SMOKE_SPEC_LOCATION", location)]).await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Failed");
    assert_mentions(
        &reason(&single_outcome(&hook)),
        &["invalid smoke spec", "checks[0].path", "evil.example"],
    );
    assert!(
        cd.test_app.seen().is_empty(),
        "nothing is sent under a bad spec"
    );
}

/// Each target misbehaviour, the spec to run, and the words the reason must contain.
#[tokio::test]
async fn target_faults_fail_with_their_reason() {
    let quick = |extra: Value| {
        let mut check =
            json!({"name": "probe", "path": "/", "timeout_ms": 700, "retry": {"attempts": 1}});
        if let (Some(c), Some(e)) = (check.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        json!({"defaults": {"max_body_bytes": 100000}, "checks": [check]})
    };
    let cases: Vec<(&str, Behaviour, Value, Vec<&str>)> = vec![
        (
            "redirect",
            Behaviour::RedirectToLoopback,
            quick(json!({})),
            vec![
                "status 302",
                "redirect to \"http://127.0.0.1:9001",
                "not followed",
            ],
        ),
        (
            "endless",
            Behaviour::EndlessBody,
            quick(json!({})),
            vec!["above the cap of 100000 bytes"],
        ),
        (
            "trickle",
            Behaviour::TrickleBody,
            quick(json!({})),
            vec!["no complete response", "within 700 ms"],
        ),
        (
            "slow",
            Behaviour::Slow(Duration::from_secs(3)),
            quick(json!({})),
            vec!["no complete response", "within 700 ms"],
        ),
        (
            "persistent500",
            Behaviour::Error500,
            quick(json!({})),
            vec!["status 500"],
        ),
    ];
    for (name, behaviour, spec, words) in cases {
        let cd = CodeDeploy::new(name, behaviour, healthy("v1"), TEST_EVENT).await;
        let hook = cd.hook(&[("SMOKE_SPEC_DEFAULT", spec.to_string())]).await;
        invoke(&hook, cd.event()).await;
        assert_eq!(cd.single_report().await, "Failed", "{name}");
        let r = reason(&single_outcome(&hook));
        for w in words {
            assert!(r.contains(w), "{name}: expected {w:?} in {r}");
        }
        // The redirect target (the Runtime API on loopback) was never requested.
        assert!(cd.test_app.seen().iter().all(|s| s.path == "/"), "{name}");
    }
}

#[tokio::test]
async fn a_flaky_503_then_200_passes_on_retry() {
    let flaky = Behaviour::FlakyThenHealthy {
        n: 2,
        version: "v2".into(),
    };
    let cd = CodeDeploy::new("flaky", flaky, healthy("v1"), TEST_EVENT).await;
    let spec = json!({"checks": [{"name": "home", "path": "/", "retry": {"attempts": 4, "base_delay_ms": 20, "max_delay_ms": 50}}]});
    let hook = cd.hook(&[("SMOKE_SPEC_DEFAULT", spec.to_string())]).await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Succeeded");
    assert_eq!(single_outcome(&hook)["checks"][0]["attempts"], 3);
}

#[tokio::test]
async fn connection_refused_fails() {
    let cd = CodeDeploy::new("refused", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    // Point the load balancer's name at a port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dns = cd.scenario["loadBalancerDns"].as_str().expect("dns");
    let spec = json!({"checks": [{"path": "/", "retry": {"attempts": 1}}]});
    let hook = start_hook(
        cd.bed,
        Some(format!("{dns}:{}:127.0.0.1", cd.test_app.port)),
        &[
            ("SMOKE_SPEC_DEFAULT", spec.to_string()),
            (
                "TARGET_OVERRIDES",
                json!({cd.group_key(): format!("http://127.0.0.1:{closed}")}).to_string(),
            ),
        ],
    )
    .await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Failed");
    let out = single_outcome(&hook);
    assert_mentions(&reason(&out), &["could not connect"]);
    assert_mentions(
        out["endpoint"].as_str().unwrap_or_default(),
        &["operator override"],
    );
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_unless_mapped() {
    let cd = CodeDeploy::new("loopback", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    let key = cd.group_key();
    let spec = json!({"checks": [{"path": "/", "retry": {"attempts": 1}}]});
    let hook = start_hook(
        cd.bed,
        None,
        &[
            ("SMOKE_SPEC_DEFAULT", spec.to_string()),
            (
                "TARGET_OVERRIDES",
                json!({key: format!("http://localhost:{}", cd.test_app.port)}).to_string(),
            ),
        ],
    )
    .await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Failed");
    assert_mentions(&reason(&single_outcome(&hook)), &["refused", "loopback"]);
    assert!(cd.test_app.seen().is_empty());
}

#[tokio::test]
async fn a_dns_failure_fails() {
    let cd = CodeDeploy::new("dns", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    let key = cd.group_key();
    let spec = json!({"checks": [{"path": "/", "timeout_ms": 3000, "retry": {"attempts": 1}}]});
    let hook = start_hook(
        cd.bed,
        None,
        &[
            ("SMOKE_SPEC_DEFAULT", spec.to_string()),
            (
                "TARGET_OVERRIDES",
                json!({key: "http://no-such-host.invalid:8080"}).to_string(),
            ),
        ],
    )
    .await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Failed");
    assert_mentions(&reason(&single_outcome(&hook)), &["no-such-host.invalid"]);
}

#[tokio::test]
async fn throttling_twice_then_success_reports_once() {
    let cd = CodeDeploy::new("throttle2", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    cd.bed
        .fault(
            json!({"service": "codedeploy", "operation": "PutLifecycleEventHookExecutionStatus",
                      "match_text": cd.id(), "mode": "throttle", "times": 2}),
        )
        .await;
    let hook = cd.hook(&[]).await;
    let inv = invoke(&hook, cd.event()).await;
    assert!(inv.error.is_none(), "{inv:?}");
    let reports = cd.reports().await;
    let errors: Vec<_> = reports.iter().map(|c| c.error.clone()).collect();
    assert_eq!(errors, throttled_twice_then_answered());
    assert_eq!(reports[2].params["status"], "Succeeded");
    assert_eq!(single_outcome(&hook)["report"], "delivered");
}

#[tokio::test]
async fn throttling_that_never_clears_ends_in_a_lambda_error_so_lambda_retries() {
    let cd = CodeDeploy::new("throttleforever", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    cd.bed
        .fault(
            json!({"service": "codedeploy", "operation": "PutLifecycleEventHookExecutionStatus",
                      "match_text": cd.id(), "mode": "throttle"}),
        )
        .await;
    let hook = cd.hook(&[]).await;
    let inv = invoke(&hook, cd.event()).await;
    let error = inv
        .error
        .expect("a Lambda error when no verdict could be delivered");
    assert_mentions(
        &error.to_string(),
        &[
            "could not report the Succeeded verdict",
            "ThrottlingException",
        ],
    );
    assert_eq!(
        cd.reports().await.len(),
        3,
        "standard retry mode: 3 attempts"
    );
    assert_mentions(
        single_outcome(&hook)["report"].as_str().unwrap_or_default(),
        &["not delivered"],
    );
}

#[tokio::test]
async fn access_denied_reading_the_deployment_fails_with_the_reason() {
    let cd = CodeDeploy::new("denied", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    cd.bed
        .fault(json!({"service": "codedeploy", "operation": "GetDeployment", "match_text": cd.id(), "mode": "access_denied"}))
        .await;
    let hook = cd.hook(&[]).await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Failed");
    assert_mentions(
        &reason(&single_outcome(&hook)),
        &["could not read the deployment", "AccessDeniedException"],
    );
}

#[tokio::test]
async fn an_aws_500_fails_with_the_reason() {
    let cd = CodeDeploy::new("aws500", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    // The listener's own id, as it appears (unescaped) in the form-encoded request body.
    let listener = cd.scenario["testListenerArn"].as_str().expect("arn");
    let listener_id = listener.rsplit('/').next().expect("id");
    cd.bed
        .fault(json!({"service": "elbv2", "operation": "DescribeListeners", "match_text": listener_id, "mode": "internal_error"}))
        .await;
    let hook = cd.hook(&[]).await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Failed");
    assert_mentions(
        &reason(&single_outcome(&hook)),
        &[
            "could not find the test listener",
            "DescribeListeners",
            "InternalFailure",
        ],
    );
    let calls = cd
        .bed
        .calls("elbv2", "DescribeListeners", listener_id)
        .await;
    assert_eq!(calls.len(), 3, "retried by the standard mode: {calls:#?}");
}

#[tokio::test]
async fn a_hung_aws_endpoint_still_gets_a_verdict_before_the_deadline() {
    let cd = CodeDeploy::new("hang", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    cd.bed
        .fault(json!({"service": "codedeploy", "operation": "GetDeployment", "match_text": cd.id(), "mode": "hang", "hang_seconds": 30}))
        .await;
    let hook = cd
        .hook(&[
            ("AWS_ATTEMPT_TIMEOUT_MS", "20000".into()),
            ("AWS_OPERATION_TIMEOUT_MS", "25000".into()),
        ])
        .await;
    let budget = Duration::from_secs(5);
    let inv = hook.invoke(cd.event(), budget).await;
    assert!(
        inv.elapsed < budget,
        "answered after the deadline: {:?}",
        inv.elapsed
    );
    assert_eq!(cd.single_report().await, "Failed");
    assert_mentions(&reason(&single_outcome(&hook)), &["ran out of time"]);
}

#[tokio::test]
async fn a_deadline_already_past_still_reports_failed() {
    let cd = CodeDeploy::new("pastdeadline", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    let hook = cd.hook(&[]).await;
    let past = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
        - 1000;
    hook.invoke_at(cd.event(), past, Duration::from_secs(15))
        .await;
    assert_eq!(cd.single_report().await, "Failed");
    assert_mentions(&reason(&single_outcome(&hook)), &["no time to check"]);
    assert!(cd.test_app.seen().is_empty());
}

#[tokio::test]
async fn duplicate_concurrent_invocations_report_once_and_both_end_cleanly() {
    let cd = CodeDeploy::new("dup", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    let (a, b) = tokio::join!(cd.hook(&[]), cd.hook(&[]));
    let (ia, ib) = tokio::join!(invoke(&a, cd.event()), invoke(&b, cd.event()));
    assert!(ia.error.is_none() && ib.error.is_none(), "{ia:?} {ib:?}");
    let reports = cd.reports().await;
    assert_eq!(reports.len(), 2, "{reports:#?}");
    let mut errors: Vec<_> = reports.iter().map(|c| c.error.clone()).collect();
    errors.sort();
    assert_eq!(
        errors,
        vec![None, Some("LifecycleEventAlreadyCompletedException".into())]
    );
    let deliveries: Vec<String> = [single_outcome(&a), single_outcome(&b)]
        .iter()
        .map(|o| o["report"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        deliveries.contains(&"delivered".to_string())
            && deliveries.contains(&"already completed".to_string()),
        "{deliveries:?}"
    );
}

#[tokio::test]
async fn a_retry_after_the_first_report_counts_as_done() {
    let cd = CodeDeploy::new("retry", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    let hook = cd.hook(&[]).await;
    invoke(&hook, cd.event()).await;
    let again = invoke(&hook, cd.event()).await;
    assert!(again.error.is_none(), "{again:?}");
    let errors: Vec<_> = cd.reports().await.into_iter().map(|c| c.error).collect();
    assert_eq!(
        errors,
        vec![None, Some("LifecycleEventAlreadyCompletedException".into())]
    );
}

#[tokio::test]
async fn a_rollback_deployment_is_not_gated() {
    let cd = CodeDeploy::new("rollback", Behaviour::Error500, healthy("v1"), TEST_EVENT).await;
    let spec = json!({"checks": [{"path": "/", "retry": {"attempts": 1}}]});
    let hook = cd.hook(&[("SMOKE_SPEC_DEFAULT", spec.to_string())]).await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Failed");
    // The failure made CodeDeploy (the test bed) start a rollback deployment.
    let info = cd
        .bed
        .aws_json(
            "CodeDeploy_20141006.GetDeployment",
            json!({"deploymentId": cd.id()}),
        )
        .await;
    let rollback_id = info["deploymentInfo"]["rollbackInfo"]["rollbackDeploymentId"]
        .as_str()
        .expect("rollback id")
        .to_string();
    let exec = cd.bed.lifecycle(&rollback_id, TEST_EVENT).await;
    invoke(
        &hook,
        json!({"DeploymentId": rollback_id, "LifecycleEventHookExecutionId": exec}),
    )
    .await;
    let reports = cd
        .bed
        .calls(
            "codedeploy",
            "PutLifecycleEventHookExecutionStatus",
            &rollback_id,
        )
        .await;
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].params["status"], "Succeeded");
    let outcomes = hook.outcomes();
    assert_mentions(&reason(&outcomes[1]), &["rollback deployment", "not gated"]);
}

#[tokio::test]
async fn an_event_the_spec_does_not_cover_fails_and_says_how_to_fix_it() {
    let cd = CodeDeploy::new("stage", healthy("v2"), healthy("v1"), "BeforeInstall").await;
    let hook = cd.hook(&[]).await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Failed");
    assert_mentions(
        &reason(&single_outcome(&hook)),
        &["invoked at BeforeInstall", "AfterAllowTestTraffic"],
    );
}

#[tokio::test]
async fn a_configuration_error_is_reported_as_failed_naming_the_variable() {
    let cd = CodeDeploy::new("config", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    let hook = cd.hook(&[("TARGET_OVERRIDES", "{not json".into())]).await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Failed");
    assert_mentions(&reason(&single_outcome(&hook)), &["TARGET_OVERRIDES"]);
}

/// Events that carry no ids to report against end in a Lambda error naming the problem; events
/// with ids and noise still get their verdict.
#[tokio::test]
async fn bad_events() {
    let bed = Testbed::shared();
    let hook: Function = start_hook(bed, None, &[]).await;
    let long = "d".repeat(100_000);
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "neither a CodeDeploy hook"),
        (
            json!({"DeploymentId": "d-ONLYONE00"}),
            "LifecycleEventHookExecutionId is missing",
        ),
        (
            json!({"DeploymentId": 12, "LifecycleEventHookExecutionId": true}),
            "DeploymentId must be a string",
        ),
        (
            json!({"DeploymentId": long, "LifecycleEventHookExecutionId": "x"}),
            "100000 characters",
        ),
        (
            json!({"DeploymentId": "d-\u{7}\u{0}", "LifecycleEventHookExecutionId": "x"}),
            "not an id",
        ),
        (json!("just a string"), "not a JSON object"),
    ];
    for (event, words) in cases {
        let inv = invoke(&hook, event.clone()).await;
        let err = inv.error.unwrap_or_else(|| {
            panic!(
                "{event:.60}: expected a Lambda error, got {:?}",
                inv.response
            )
        });
        assert!(err.to_string().contains(words), "{event:.60}: {err}");
    }
    // Ids with unknown extra fields and control characters elsewhere: still a verdict.
    let cd = CodeDeploy::new("noise", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    let hook2 = cd.hook(&[]).await;
    let mut ev = cd.event();
    ev["Unexpected"] = json!({"nested": ["\u{1}", "x".repeat(100_000)]});
    invoke(&hook2, ev).await;
    assert_eq!(cd.single_report().await, "Succeeded");
    // A deployment that does not exist: Failed cannot be delivered either, so a Lambda error.
    let ghost = invoke(
        &hook,
        json!({"DeploymentId": "d-NOSUCH000", "LifecycleEventHookExecutionId": "x"}),
    )
    .await;
    assert_mentions(
        &ghost.error.expect("error").to_string(),
        &["DeploymentDoesNotExist"],
    );
}

/// The bad sample events in events/smoke-test-hook: no ids means a Lambda error naming what is
/// missing; an ECS-shaped payload is answered FAILED.
#[tokio::test]
async fn bad_sample_events() {
    let hook = start_hook(Testbed::shared(), None, &[]).await;
    let empty = invoke(&hook, sample_event("bad-empty.json")).await;
    assert_mentions(
        &empty.error.expect("error").to_string(),
        &["neither a CodeDeploy hook"],
    );
    let missing = invoke(&hook, sample_event("bad-missing-execution-id.json")).await;
    assert_mentions(
        &missing.error.expect("error").to_string(),
        &["LifecycleEventHookExecutionId is missing"],
    );
    let stage = invoke(&hook, sample_event("bad-ecs-unknown-stage.json"))
        .await
        .response
        .expect("reply");
    assert_eq!(stage["hookStatus"], "FAILED");
    assert_mentions(
        stage["hookDetails"]["deployGuard"]["reason"]
            .as_str()
            .unwrap_or_default(),
        &["\"BAKE_TIME\" is not an ECS hook stage"],
    );
}

#[tokio::test]
async fn spec_from_s3_with_an_ssm_securestring_header() {
    let cd = CodeDeploy::new("s3spec", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    let bucket = unique("specs").to_lowercase();
    let token = unique("ssm-token");
    let param = format!("/{}/api-key", unique("secure"));
    cd.bed.put_parameter(&param, &token, true).await;
    let spec = json!({"checks": [{"name": "keyed", "path": "/", "headers": {"x-api-key": {"ssm": param}}}]});
    let app = cd.scenario["application"].as_str().expect("app");
    let group = cd.scenario["deploymentGroup"].as_str().expect("group");
    cd.bed
        .put_object(
            &bucket,
            &format!("smoke/{app}/{group}.json"),
            &spec.to_string(),
        )
        .await;
    let hook = cd
        .hook(&[("SMOKE_SPEC_LOCATION", format!("s3://{bucket}/smoke"))])
        .await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Succeeded");
    let out = single_outcome(&hook);
    assert_eq!(
        out["spec"],
        format!("s3://{bucket}/smoke/{app}/{group}.json")
    );
    let key = cd.test_app.seen()[0]
        .headers
        .iter()
        .find(|(k, _)| k == "x-api-key")
        .map(|(_, v)| v.clone());
    assert_eq!(key, Some(token.clone()));
    assert!(
        !hook.logs().join("\n").contains(&token),
        "the SecureString value leaked into the logs"
    );
}

#[tokio::test]
async fn a_missing_spec_without_default_fails_naming_where_it_looked() {
    let cd = CodeDeploy::new("nospec", healthy("v2"), healthy("v1"), TEST_EVENT).await;
    let prefix = format!("/{}", unique("empty"));
    let mut env = cd.bed.aws_env();
    env.push(("SMOKE_RESOLVE".into(), cd.resolve()));
    env.push(("SMOKE_SPEC_LOCATION".into(), format!("ssm:{prefix}")));
    let hook = Function::start(&hook_binary(), &env).await;
    invoke(&hook, cd.event()).await;
    assert_eq!(cd.single_report().await, "Failed");
    assert_mentions(
        &reason(&single_outcome(&hook)),
        &[
            "no smoke spec",
            &format!("ssm:{prefix}/"),
            "SMOKE_SPEC_DEFAULT",
        ],
    );
}

#[tokio::test]
async fn readiness_longer_than_a_codedeploy_invocation_fails_before_the_deadline() {
    let cd = CodeDeploy::new("slowready", Behaviour::Error500, healthy("v1"), TEST_EVENT).await;
    let spec = json!({"readiness": {"path": "/health", "consecutive": 1, "interval_ms": 200, "timeout_s": 600}});
    let hook = cd.hook(&[("SMOKE_SPEC_DEFAULT", spec.to_string())]).await;
    let budget = Duration::from_secs(4);
    let inv = hook.invoke(cd.event(), budget).await;
    assert!(
        inv.elapsed < budget,
        "answered after the deadline: {:?}",
        inv.elapsed
    );
    assert_eq!(cd.single_report().await, "Failed");
    let out = single_outcome(&hook);
    assert_eq!(out["verdict"], "Failed");
    assert_mentions(
        &reason(&out),
        &["not ready before the invocation's deadline", "status 500"],
    );
}
