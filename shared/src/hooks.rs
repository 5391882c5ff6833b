//! The two lifecycle-hook protocols the smoke hook serves, recognised by the payload.
//!
//! - CodeDeploy: `{"DeploymentId", "LifecycleEventHookExecutionId"}`; the verdict goes back
//!   through `PutLifecycleEventHookExecutionStatus`.
//! - ECS native blue/green, linear and canary: `{"executionId", "lifecycleStage",
//!   "resourceArn", "executionDetails", "hookDetails"}`; the verdict is the return value.
//!
//! Ids are read leniently from a `serde_json::Value` first (reliability.md, invariant 3): a
//! typed event that fails to deserialize would never reach the handler, and nothing would be
//! reported.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::text::quote;

/// The key under which deploy-guard keeps its state and reason in ECS `hookDetails`.
pub const HOOK_DETAILS_KEY: &str = "deployGuard";

/// A CodeDeploy hook invocation's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeDeployIds {
    pub deployment_id: String,
    pub hook_execution_id: String,
}

/// An ECS lifecycle hook invocation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsHookEvent {
    pub execution_id: String,
    pub lifecycle_stage: String,
    pub resource_arn: String,
    #[serde(default)]
    pub execution_details: ExecutionDetails,
    #[serde(default)]
    pub hook_details: Option<Value>,
}

/// `executionDetails` of an ECS hook invocation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionDetails {
    #[serde(default)]
    pub service_arn: Option<String>,
    #[serde(default)]
    pub target_service_revision_arn: Option<String>,
    #[serde(default)]
    pub test_traffic_weights: BTreeMap<String, f64>,
    #[serde(default)]
    pub production_traffic_weights: BTreeMap<String, f64>,
}

/// What arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    CodeDeploy(CodeDeployIds),
    Ecs(EcsHookEvent),
    /// Looks like an ECS hook but does not parse: still answered, with FAILED and the reason.
    EcsInvalid {
        reason: String,
        hook_details: Option<Value>,
    },
    /// No ids to report against: the only case that ends in a Lambda error.
    Unreportable(String),
}

/// ECS stages at which a spec runs when it names none.
pub const ECS_DEFAULT_STAGES: &[&str] = &[
    "POST_TEST_TRAFFIC_SHIFT",
    "PRE_PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
];

/// CodeDeploy lifecycle events at which a spec runs when it names none.
pub const CODEDEPLOY_DEFAULT_EVENTS: &[&str] = &[
    "AfterAllowTestTraffic",
    "BeforeAllowTraffic",
    "AfterAllowTraffic",
];

/// All ECS stages a Lambda hook can attach to.
pub const ECS_STAGES: &[&str] = &[
    "RECONCILE_SERVICE",
    "PRE_SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRE_PRODUCTION_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
];

const MAX_ID_LEN: usize = 512;

/// Classifies a raw event.
pub fn classify(event: &Value) -> Incoming {
    let Some(obj) = event.as_object() else {
        return Incoming::Unreportable(format!(
            "the event is not a JSON object (found {}); expected a CodeDeploy or ECS lifecycle hook payload",
            kind(event)
        ));
    };
    if obj.contains_key("DeploymentId") || obj.contains_key("LifecycleEventHookExecutionId") {
        let id = |key: &str| -> Result<String, String> {
            match obj.get(key) {
                None | Some(Value::Null) => Err(format!("{key} is missing")),
                Some(Value::String(s)) => valid_id(key, s).map(|_| s.clone()),
                Some(other) => Err(format!("{key} must be a string, found {}", kind(other))),
            }
        };
        return match (id("DeploymentId"), id("LifecycleEventHookExecutionId")) {
            (Ok(deployment_id), Ok(hook_execution_id)) => Incoming::CodeDeploy(CodeDeployIds {
                deployment_id,
                hook_execution_id,
            }),
            (a, b) => {
                let problems: Vec<String> = [a.err(), b.err()].into_iter().flatten().collect();
                Incoming::Unreportable(format!(
                    "CodeDeploy hook event cannot be reported: {}",
                    problems.join("; ")
                ))
            }
        };
    }
    if obj.contains_key("executionId")
        || obj.contains_key("lifecycleStage")
        || obj.contains_key("resourceArn")
    {
        let hook_details = obj.get("hookDetails").cloned().filter(Value::is_object);
        return match serde_json::from_value::<EcsHookEvent>(event.clone()) {
            Ok(e) => match validate_ecs(&e) {
                Ok(()) => Incoming::Ecs(e),
                Err(reason) => Incoming::EcsInvalid {
                    reason,
                    hook_details,
                },
            },
            Err(e) => Incoming::EcsInvalid {
                reason: format!("ECS hook payload does not parse: {e}"),
                hook_details,
            },
        };
    }
    let keys: Vec<String> = obj.keys().take(10).map(|k| quote(k, 40)).collect();
    Incoming::Unreportable(format!(
        "the event is neither a CodeDeploy hook (DeploymentId, LifecycleEventHookExecutionId) nor an ECS hook (executionId, lifecycleStage, resourceArn); found keys [{}]",
        keys.join(", ")
    ))
}

fn valid_id(key: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{key} is empty"));
    }
    if s.len() > MAX_ID_LEN || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{key} is not an id: {}", quote(s, 60)));
    }
    Ok(())
}

fn validate_ecs(e: &EcsHookEvent) -> Result<(), String> {
    valid_id("executionId", &e.execution_id)?;
    if !ECS_STAGES.contains(&e.lifecycle_stage.as_str()) {
        return Err(format!(
            "lifecycleStage {} is not an ECS hook stage (expected one of {})",
            quote(&e.lifecycle_stage, 60),
            ECS_STAGES.join(", ")
        ));
    }
    service_of(e)?;
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `(cluster, service)` from the service-deployment ARN, else from `executionDetails.serviceArn`.
pub fn service_of(e: &EcsHookEvent) -> Result<(String, String), String> {
    let from = |arn: &str, kind: &str| -> Option<(String, String)> {
        let resource = arn.splitn(6, ':').nth(5)?;
        let mut parts = resource.split('/');
        if parts.next()? != kind {
            return None;
        }
        let cluster = parts.next()?.to_string();
        let service = parts.next()?.to_string();
        (!cluster.is_empty() && !service.is_empty()).then_some((cluster, service))
    };
    from(&e.resource_arn, "service-deployment")
        .or_else(|| e.execution_details.service_arn.as_deref().and_then(|a| from(a, "service")))
        .ok_or_else(|| {
            format!(
                "resourceArn {} is not a service-deployment ARN (arn:aws:ecs:REGION:ACCOUNT:service-deployment/CLUSTER/SERVICE/ID)",
                quote(&e.resource_arn, 200)
            )
        })
}

impl EcsHookEvent {
    /// True at stages where production traffic is what the hook should test.
    pub fn tests_production(&self) -> bool {
        matches!(
            self.lifecycle_stage.as_str(),
            "PRODUCTION_TRAFFIC_SHIFT" | "POST_PRODUCTION_TRAFFIC_SHIFT"
        )
    }

    /// A rollback re-invocation: ECS calls the traffic-shift hooks again with the target
    /// revision at weight 0. Such a call must pass, never fail the rollback.
    pub fn is_rollback(&self) -> bool {
        let Some(target) = &self.execution_details.target_service_revision_arn else {
            return false;
        };
        let weights = if self.tests_production() {
            &self.execution_details.production_traffic_weights
        } else {
            &self.execution_details.test_traffic_weights
        };
        matches!(
            self.lifecycle_stage.as_str(),
            "TEST_TRAFFIC_SHIFT" | "PRODUCTION_TRAFFIC_SHIFT"
        ) && weights.get(target).is_some_and(|w| *w == 0.0)
    }

    /// Our state from an earlier IN_PROGRESS reply, if any.
    pub fn carried_state<T: for<'de> Deserialize<'de>>(&self) -> Option<T> {
        let v = self
            .hook_details
            .as_ref()?
            .get(HOOK_DETAILS_KEY)?
            .get("state")?;
        serde_json::from_value(v.clone()).ok()
    }
}

/// `hookStatus` of an ECS hook reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EcsHookStatus {
    Succeeded,
    Failed,
    InProgress,
}

/// The reply ECS reads from the function's return value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsHookResponse {
    pub hook_status: EcsHookStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_back_delay: Option<u32>,
    pub hook_details: Value,
}

impl EcsHookResponse {
    /// A reply carrying `ours` under [`HOOK_DETAILS_KEY`], keeping the other keys of the
    /// incoming `hookDetails` (the operator's static configuration).
    pub fn new(
        status: EcsHookStatus,
        incoming: Option<&Value>,
        ours: Value,
        call_back_delay: Option<u32>,
    ) -> Self {
        let mut details = incoming
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        details.insert(HOOK_DETAILS_KEY.to_string(), ours);
        Self {
            hook_status: status,
            call_back_delay,
            hook_details: Value::Object(details),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ecs(stage: &str, test_w: Value, prod_w: Value) -> Value {
        json!({"executionId": "e-1", "lifecycleStage": stage,
               "resourceArn": "arn:aws:ecs:us-east-1:123456789012:service-deployment/prod/web/abc",
               "executionDetails": {"targetServiceRevisionArn": "rev-new", "testTrafficWeights": test_w,
                                    "productionTrafficWeights": prod_w},
               "hookDetails": {"team": "payments"}})
    }

    /// (event, expected classification as text)
    #[test]
    fn classification_table() {
        let long = "a".repeat(100_000);
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"DeploymentId": "d-ABC", "LifecycleEventHookExecutionId": "x"}),
                "codedeploy",
            ),
            (
                json!({"DeploymentId": "d-ABC", "LifecycleEventHookExecutionId": "x", "extra": [1]}),
                "codedeploy",
            ),
            (json!({}), "unreportable:neither"),
            (json!([1, 2]), "unreportable:not a JSON object"),
            (json!(null), "unreportable:not a JSON object"),
            (
                json!({"DeploymentId": "d-ABC"}),
                "unreportable:LifecycleEventHookExecutionId is missing",
            ),
            (
                json!({"DeploymentId": 7, "LifecycleEventHookExecutionId": "x"}),
                "unreportable:DeploymentId must be a string, found a number",
            ),
            (
                json!({"DeploymentId": long, "LifecycleEventHookExecutionId": "x"}),
                "unreportable:100000 characters",
            ),
            (
                json!({"DeploymentId": "d-\u{0}", "LifecycleEventHookExecutionId": "x"}),
                "unreportable:not an id",
            ),
            (ecs("POST_TEST_TRAFFIC_SHIFT", json!({}), json!({})), "ecs"),
            (
                json!({"executionId": "e", "lifecycleStage": 5}),
                "ecs-invalid:does not parse",
            ),
            (
                json!({"executionId": "e", "lifecycleStage": "NAP_TIME", "resourceArn": "x"}),
                "ecs-invalid:\"NAP_TIME\" is not an ECS hook stage",
            ),
            (
                json!({"executionId": "e", "lifecycleStage": "PRE_SCALE_UP", "resourceArn": "arn:aws:ecs:r:a:service/c"}),
                "ecs-invalid:not a service-deployment ARN",
            ),
        ];
        for (event, want) in cases {
            let got = match classify(&event) {
                Incoming::CodeDeploy(_) => "codedeploy".to_string(),
                Incoming::Ecs(_) => "ecs".to_string(),
                Incoming::EcsInvalid { reason, .. } => format!("ecs-invalid:{reason}"),
                Incoming::Unreportable(r) => format!("unreportable:{r}"),
            };
            let (kind, words) = want.split_once(':').unwrap_or((want, ""));
            assert!(
                got.starts_with(kind) && got.contains(words),
                "{event:.80}: got {got:.300}, want {want}"
            );
        }
    }

    #[test]
    fn rollback_reinvocations_are_recognised() {
        let parse = |v: Value| match classify(&v) {
            Incoming::Ecs(e) => e,
            other => panic!("not ecs: {other:?}"),
        };
        assert!(parse(ecs(
            "TEST_TRAFFIC_SHIFT",
            json!({"rev-new": 0, "rev-old": 100}),
            json!({})
        ))
        .is_rollback());
        assert!(parse(ecs(
            "PRODUCTION_TRAFFIC_SHIFT",
            json!({}),
            json!({"rev-new": 0.0})
        ))
        .is_rollback());
        assert!(!parse(ecs(
            "TEST_TRAFFIC_SHIFT",
            json!({"rev-new": 100}),
            json!({})
        ))
        .is_rollback());
        assert!(!parse(ecs(
            "POST_TEST_TRAFFIC_SHIFT",
            json!({"rev-new": 0}),
            json!({})
        ))
        .is_rollback());
        let e = parse(ecs("POST_PRODUCTION_TRAFFIC_SHIFT", json!({}), json!({})));
        assert!(e.tests_production());
        assert_eq!(service_of(&e), Ok(("prod".into(), "web".into())));
    }

    #[test]
    fn reply_keeps_operator_details_and_adds_ours() {
        let incoming = json!({"team": "payments", "deployGuard": {"state": {"polls": 1}}});
        let r = EcsHookResponse::new(
            EcsHookStatus::InProgress,
            Some(&incoming),
            json!({"reason": "waiting"}),
            Some(15),
        );
        let v = serde_json::to_value(&r).expect("serializes");
        assert_eq!(
            v,
            json!({"hookStatus": "IN_PROGRESS", "callBackDelay": 15,
                             "hookDetails": {"team": "payments", "deployGuard": {"reason": "waiting"}}})
        );
    }

    /// Every sample event in events/smoke-test-hook classifies as its name says.
    #[test]
    fn sample_events_classify_as_named() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/smoke-test-hook");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("events dir") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let text = std::fs::read_to_string(&path).expect("read");
            let event: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let got = classify(&event);
            match name.as_str() {
                n if n.starts_with("codedeploy") => {
                    assert!(matches!(got, Incoming::CodeDeploy(_)), "{n}: {got:?}")
                }
                n if n.starts_with("bad-ecs") => {
                    assert!(matches!(got, Incoming::EcsInvalid { .. }), "{n}: {got:?}")
                }
                n if n.starts_with("bad") => {
                    assert!(matches!(got, Incoming::Unreportable(_)), "{n}: {got:?}")
                }
                n if n.starts_with("ecs") => {
                    let Incoming::Ecs(e) = got else {
                        panic!("{n}: {got:?}")
                    };
                    assert_eq!(e.is_rollback(), n.contains("rollback"), "{n}");
                    if n.contains("continuation") {
                        let state: Option<Value> = e.carried_state();
                        assert_eq!(state.map(|s| s["polls"].clone()), Some(json!(12)), "{n}");
                    }
                }
                n => panic!("{n}: name it codedeploy-*, ecs-* or bad-*"),
            }
            seen += 1;
        }
        assert!(seen >= 5, "only {seen} sample events");
    }
}
