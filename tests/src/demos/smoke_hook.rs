//! The smoke hook's story: two releases under CodeDeploy blue/green, two under ECS native
//! blue/green, each verdict printed with its reasons.

use std::time::Duration;

use crate::runtime::Function;
use crate::sample_app::{Behaviour, SampleApp};
use crate::testbed::Testbed;
use serde_json::{json, Value};

const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop";

fn spec() -> Value {
    json!({
        "defaults": {"timeout_ms": 1000, "retry": {"attempts": 2, "base_delay_ms": 100, "max_delay_ms": 400}},
        "readiness": {"path": "/health", "consecutive": 2, "interval_ms": 200, "timeout_s": 5},
        "version_proof": {"path": "/version", "json_pointer": "/version"},
        "checks": [
            {"name": "home page", "path": "/", "expect": {"status": 200, "body_contains": "hello"}},
            {"name": "health", "path": "/health", "expect": {"json": {"/status": "ok"}, "max_latency_ms": 500}}
        ]
    })
}

/// Runs the story; true when every release got the verdict it should.
pub async fn run() -> bool {
    let bed = Testbed::shared();
    let hook_bin = crate::bin_dir().join("smoke-test-hook");
    println!(
        "deploy-guard demo: the smoke-test hook against a local AWS (moto, extended) on {}",
        bed.url()
    );
    println!("spec used by every release below:\n  {}\n", spec());

    let run = format!("{}", std::process::id());
    let releases = [
        (
            "CodeDeploy",
            "v2",
            Behaviour::Healthy("v2".into()),
            "a good release: v2 answers on the test listener",
        ),
        (
            "CodeDeploy",
            "v3",
            Behaviour::Error500,
            "a broken release: v3 answers 500",
        ),
        (
            "ECS",
            "v2",
            Behaviour::Healthy("v2".into()),
            "a good release: v2 answers on the test listener",
        ),
        (
            "ECS",
            "v3",
            Behaviour::Healthy("v2".into()),
            "a broken release: the old v2 tasks still answer for v3",
        ),
    ];
    let mut failures = 0;
    for (i, (controller, version, behaviour, story)) in releases.into_iter().enumerate() {
        let test_app = SampleApp::start(behaviour).await;
        let prod_app = SampleApp::start(Behaviour::Healthy("v1".into())).await;
        let name = format!("demo-{run}-{i}");
        let body = json!({"name": name, "image_from": format!("{IMAGE}:v1"), "image_to": format!("{IMAGE}:{version}"),
                          "container": "web", "prod_port": prod_app.port, "test_port": test_app.port});
        let scenario = if controller == "CodeDeploy" {
            bed.codedeploy_scenario(body).await
        } else {
            bed.ecs_scenario(body).await
        };
        let dns = scenario["loadBalancerDns"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut env = bed.aws_env();
        env.push(("SMOKE_SPEC_DEFAULT".into(), spec().to_string()));
        env.push((
            "SMOKE_RESOLVE".into(),
            format!(
                "{dns}:{}:127.0.0.1,{dns}:{}:127.0.0.1",
                test_app.port, prod_app.port
            ),
        ));
        let hook = Function::start(&hook_bin, &env).await;

        println!("━━ {controller} blue/green: shop:v1 → shop:{version} ({story})");
        let verdict = if controller == "CodeDeploy" {
            let id = scenario["deploymentId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let event = json!({"DeploymentId": id, "LifecycleEventHookExecutionId": scenario["hookExecutionId"]});
            println!("   CodeDeploy invokes the hook at AfterAllowTestTraffic for deployment {id}");
            hook.invoke(event, Duration::from_secs(30)).await;
            let reports = bed
                .calls("codedeploy", "PutLifecycleEventHookExecutionStatus", &id)
                .await;
            let sent: Vec<String> = reports
                .iter()
                .map(|c| c.params["status"].as_str().unwrap_or("?").to_string())
                .collect();
            println!(
                "   the test bed recorded {} report(s) to CodeDeploy: {}",
                reports.len(),
                sent.join(", ")
            );
            sent.first().cloned().unwrap_or_default()
        } else {
            let target = scenario["targetServiceRevisionArn"].clone();
            let event = json!({"executionId": format!("demo-{i}"), "lifecycleStage": "POST_TEST_TRAFFIC_SHIFT",
                               "resourceArn": scenario["serviceDeploymentArn"],
                               "executionDetails": {"serviceArn": scenario["serviceArn"], "targetServiceRevisionArn": target},
                               "hookDetails": {}});
            println!(
                "   ECS invokes the hook at POST_TEST_TRAFFIC_SHIFT for {}",
                scenario["service"].as_str().unwrap_or_default()
            );
            let reply = hook
                .invoke(event, Duration::from_secs(30))
                .await
                .response
                .unwrap_or(Value::Null);
            println!("   the hook returned hookStatus {}", reply["hookStatus"]);
            reply["hookStatus"].as_str().unwrap_or_default().to_string()
        };
        for out in hook.outcomes() {
            print_outcome(&out);
        }
        let passed = verdict.eq_ignore_ascii_case("succeeded");
        let expected_pass = story.starts_with("a good");
        if passed != expected_pass {
            failures += 1;
        }
        println!();
        hook.stop().await;
    }
    if failures > 0 {
        println!("{failures} release(s) got an unexpected verdict");
        return false;
    }
    println!("Good releases passed, broken releases were stopped with their reasons.");
    true
}

fn print_outcome(out: &Value) {
    let verdict = out["verdict"].as_str().unwrap_or("?");
    let mark = if verdict == "Succeeded" {
        "PASS"
    } else {
        "FAIL"
    };
    println!(
        "   [{mark}] verdict {verdict}: {}",
        out["reason"].as_str().unwrap_or_default()
    );
    if let Some(e) = out["endpoint"].as_str() {
        println!("          tested {e}");
    }
    if let Some(v) = out["version"]["image"].as_str() {
        println!("          deploying {v}");
    }
    if let Some(r) = out["readiness"].as_object() {
        println!(
            "          readiness: {} after {} polls",
            r.get("result").and_then(Value::as_str).unwrap_or("?"),
            r.get("polls").unwrap_or(&Value::Null)
        );
    }
    for c in out["checks"].as_array().into_iter().flatten() {
        let ok = c["passed"] == true;
        println!(
            "          {} {:<14} status {:<4} {:>4} ms  {} attempt(s){}",
            if ok { "ok " } else { "BAD" },
            c["name"].as_str().unwrap_or("?"),
            c["status"]
                .as_u64()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            c["latency_ms"]
                .as_u64()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            c["attempts"],
            c["reason"]
                .as_str()
                .map(|r| format!("  ← {r}"))
                .unwrap_or_default()
        );
    }
}
