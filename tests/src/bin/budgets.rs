//! Checks the smoke hook's budgets on a release build and prints one PASS/FAIL line each:
//! zipped size, spawn → first invocation handled, and peak memory of a run of ten checks.
//! Run by `scripts/budgets.sh`, which builds the binary and zips it first.
//!
//! Usage: budgets <bootstrap> <zip> [runs]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deploy_guard_tests::runtime::Function;
use deploy_guard_tests::sample_app::{Behaviour, SampleApp};
use deploy_guard_tests::testbed::Testbed;
use serde_json::{json, Value};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn line(name: &str, figure: String, budget: &str, ok: bool) -> bool {
    println!(
        "{:<5} {name:<44} {figure:<28} budget {budget}",
        if ok { "PASS" } else { "FAIL" }
    );
    ok
}

fn sample(name: &str) -> Value {
    let path = deploy_guard_tests::repo_root()
        .join("events/smoke-test-hook")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("sample event")).expect("json")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (bin, zip) = (
        std::path::PathBuf::from(&args[1]),
        std::path::PathBuf::from(&args[2]),
    );
    let runs: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(30);
    let mut all = true;

    let zipped = std::fs::metadata(&zip).expect("zip").len();
    let unzipped = std::fs::metadata(&bin).expect("bootstrap").len();
    all &= line(
        "zipped bootstrap (smoke-test-hook)",
        format!(
            "{:.2} MB ({:.2} MB unzipped)",
            zipped as f64 / 1e6,
            unzipped as f64 / 1e6
        ),
        "<= 3 MB",
        zipped <= 3_000_000,
    );

    // Start-up: spawn → the first invocation answered. The event is an ECS rollback
    // re-invocation, which the hook answers without any AWS call, so the figure is the
    // runtime's start plus one handled event, not the test bed's latency.
    let bed = Testbed::shared();
    let env = bed.aws_env();
    let event = sample("ecs-rollback-test-traffic-shift.json");
    let mut startup = Vec::with_capacity(runs);
    for _ in 0..runs {
        let f = Function::start(&bin, &env).await;
        let deadline = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64
            + 10_000;
        let inv = f
            .invoke_at(event.clone(), deadline, Duration::from_secs(10))
            .await;
        let handled = f.spawned.elapsed();
        assert_eq!(
            inv.response.as_ref().map(|r| r["hookStatus"].clone()),
            Some(json!("SUCCEEDED")),
            "{inv:?}"
        );
        startup.push(handled.as_secs_f64() * 1000.0);
        f.stop().await;
    }
    let m = median(startup.clone());
    all &= line(
        "spawn -> first invocation handled (median)",
        format!(
            "{m:.2} ms over {runs} runs (min {:.2})",
            startup.iter().cloned().fold(f64::MAX, f64::min)
        ),
        "<= 10 ms",
        m <= 10.0,
    );

    // Peak memory of one CodeDeploy invocation running ten checks against a local app.
    let app = SampleApp::start(Behaviour::Healthy("v2".into())).await;
    let prod = SampleApp::start(Behaviour::Healthy("v1".into())).await;
    let name = format!("budget-{}", std::process::id());
    let sc = bed
        .codedeploy_scenario(
            json!({"name": name, "image_from": "repo/shop:v1", "image_to": "repo/shop:v2",
                                     "prod_port": prod.port, "test_port": app.port}),
        )
        .await;
    let checks: Vec<Value> = (0..10)
        .map(|i| json!({"name": format!("check {i}"), "path": format!("/page/{i}")}))
        .collect();
    let spec = json!({"concurrency": 4, "checks": checks});
    let dns = sc["loadBalancerDns"].as_str().unwrap_or_default();
    let mut env = bed.aws_env();
    env.push(("SMOKE_SPEC_DEFAULT".into(), spec.to_string()));
    env.push((
        "SMOKE_RESOLVE".into(),
        format!("{dns}:{}:127.0.0.1,{dns}:{}:127.0.0.1", app.port, prod.port),
    ));
    let f = Function::start(&bin, &env).await;
    let started = Instant::now();
    let inv = f
        .invoke(json!({"DeploymentId": sc["deploymentId"], "LifecycleEventHookExecutionId": sc["hookExecutionId"]}), Duration::from_secs(30))
        .await;
    let took = started.elapsed();
    let rss = f.peak_rss_kib().unwrap_or(u64::MAX);
    let verdict = inv
        .response
        .as_ref()
        .map(|r| r["verdict"].clone())
        .unwrap_or_default();
    assert_eq!(verdict, json!("Succeeded"), "{inv:?}");
    all &= line(
        "peak RSS, one invocation with ten checks",
        format!(
            "{:.1} MiB (verdict in {} ms)",
            rss as f64 / 1024.0,
            took.as_millis()
        ),
        "<= 16 MiB",
        rss <= 16 * 1024,
    );
    f.stop().await;
    std::process::exit(if all { 0 } else { 1 });
}
