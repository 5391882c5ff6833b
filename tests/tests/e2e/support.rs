//! Helpers shared by the end-to-end tests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use deploy_guard_tests::runtime::{Function, Invocation};
use deploy_guard_tests::sample_app::{Behaviour, SampleApp};
use deploy_guard_tests::testbed::{Call, Testbed};
use serde_json::{json, Value};

pub const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop";

/// A name no other test (or earlier run on the same test bed) uses.
pub fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn hook_binary() -> PathBuf {
    deploy_guard_tests::bin_dir().join("smoke-test-hook")
}

pub fn healthy(v: &str) -> Behaviour {
    Behaviour::Healthy(v.to_string())
}

/// The spec most tests use: readiness, a version proof by header, and two checks.
pub fn standard_spec() -> Value {
    json!({
        "defaults": {"timeout_ms": 1000, "retry": {"attempts": 2, "base_delay_ms": 50, "max_delay_ms": 200}},
        "readiness": {"path": "/health", "consecutive": 2, "interval_ms": 100, "timeout_s": 10},
        "version_proof": {"path": "/version", "json_pointer": "/version"},
        "checks": [
            {"name": "home page", "path": "/", "expect": {"status": 200, "body_contains": "hello"}},
            {"name": "health", "path": "/health", "expect": {"json": {"/status": "ok"}, "max_latency_ms": 2000}}
        ]
    })
}

/// A sample event from `events/smoke-test-hook/`.
pub fn sample_event(name: &str) -> Value {
    let path = deploy_guard_tests::repo_root()
        .join("events/smoke-test-hook")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A CodeDeploy deployment of `v1` → `v2` with a test and a production app.
pub struct CodeDeploy {
    pub bed: &'static Testbed,
    pub scenario: Value,
    pub test_app: SampleApp,
    pub prod_app: SampleApp,
}

impl CodeDeploy {
    pub async fn new(name: &str, test: Behaviour, prod: Behaviour, event: &str) -> CodeDeploy {
        let bed = Testbed::shared();
        let test_app = SampleApp::start(test).await;
        let prod_app = SampleApp::start(prod).await;
        let scenario = bed
            .codedeploy_scenario(json!({
                "name": unique(name),
                "image_from": format!("{IMAGE}:v1"),
                "image_to": format!("{IMAGE}:v2"),
                "container": "web",
                "prod_port": prod_app.port,
                "test_port": test_app.port,
                "lifecycle_event": event,
            }))
            .await;
        CodeDeploy {
            bed,
            scenario,
            test_app,
            prod_app,
        }
    }

    pub fn id(&self) -> &str {
        self.scenario["deploymentId"]
            .as_str()
            .expect("deploymentId")
    }

    /// `events/smoke-test-hook/codedeploy-hook.json` with this deployment's ids.
    pub fn event(&self) -> Value {
        let mut e = sample_event("codedeploy-hook.json");
        e["DeploymentId"] = json!(self.id());
        e["LifecycleEventHookExecutionId"] = self.scenario["hookExecutionId"].clone();
        e
    }

    /// `application/deploymentGroup`: the key of `TARGET_OVERRIDES` and of spec locations.
    pub fn group_key(&self) -> String {
        let field = |k: &str| self.scenario[k].as_str().unwrap_or_default().to_string();
        format!("{}/{}", field("application"), field("deploymentGroup"))
    }

    /// Stores `spec` in SSM, under a fresh prefix, where the hook looks for this deployment
    /// group's spec: the `SMOKE_SPEC_LOCATION` to give the hook, and the parameter's name.
    pub async fn spec_in_ssm(&self, spec: &str) -> (String, String) {
        let prefix = format!("/{}", unique("specs"));
        let parameter = format!("{prefix}/{}", self.group_key());
        self.bed.put_parameter(&parameter, spec, false).await;
        (format!("ssm:{prefix}"), parameter)
    }

    /// `SMOKE_RESOLVE` mapping the load balancer's name to the local apps.
    pub fn resolve(&self) -> String {
        let dns = self.scenario["loadBalancerDns"].as_str().expect("dns");
        format!(
            "{dns}:{}:127.0.0.1,{dns}:{}:127.0.0.1",
            self.test_app.port, self.prod_app.port
        )
    }

    /// The hook, with the standard spec as default unless `env` sets one.
    pub async fn hook(&self, env: &[(&str, String)]) -> Function {
        start_hook(self.bed, Some(self.resolve()), env).await
    }

    /// The lifecycle status reports recorded for this deployment.
    pub async fn reports(&self) -> Vec<Call> {
        self.bed
            .calls(
                "codedeploy",
                "PutLifecycleEventHookExecutionStatus",
                self.id(),
            )
            .await
    }

    /// Exactly one report was recorded; its status.
    pub async fn single_report(&self) -> String {
        let reports = self.reports().await;
        assert_eq!(
            reports.len(),
            1,
            "exactly one report expected: {reports:#?}"
        );
        assert_eq!(reports[0].status, 200, "{reports:#?}");
        reports[0].params["status"]
            .as_str()
            .expect("status")
            .to_string()
    }
}

pub async fn start_hook(
    bed: &Testbed,
    resolve: Option<String>,
    env: &[(&str, String)],
) -> Function {
    let mut all = bed.aws_env();
    if let Some(r) = resolve {
        all.push(("SMOKE_RESOLVE".into(), r));
    }
    if !env.iter().any(|(k, _)| *k == "SMOKE_SPEC_DEFAULT") {
        all.push(("SMOKE_SPEC_DEFAULT".into(), standard_spec().to_string()));
    }
    all.push(("REPORT_RESERVE_MS".into(), "1000".into()));
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
    Function::start(&hook_binary(), &all).await
}

/// Invokes with a 20 s deadline.
pub async fn invoke(f: &Function, event: Value) -> Invocation {
    f.invoke(event, Duration::from_secs(20)).await
}

/// The only outcome line the function wrote.
pub fn single_outcome(f: &Function) -> Value {
    let outcomes = f.outcomes();
    assert_eq!(
        outcomes.len(),
        1,
        "one outcome line expected; logs:\n{}",
        f.logs().join("\n")
    );
    outcomes[0].clone()
}

/// The outcome's reason.
pub fn reason(outcome: &Value) -> String {
    outcome["reason"].as_str().unwrap_or_default().to_string()
}

/// Asserts `text` contains every word.
#[track_caller]
pub fn assert_mentions(text: &str, words: &[&str]) {
    for w in words {
        assert!(text.contains(w), "expected {w:?} in: {text}");
    }
}
