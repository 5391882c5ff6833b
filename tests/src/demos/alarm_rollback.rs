//! The alarm-rollback demo: a release passes its smoke tests, then its error alarm fires and the
//! router rolls it back (CodeDeploy blue/green in flight: stopped with automatic rollback); an
//! ECS rolling release that finished five minutes ago is sent back to its previous task
//! definition. Everything runs on this machine: the extended moto test bed and the real binary.
//!
//! Also holds the helpers the end-to-end tests share: alarm state change events.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::runtime::Function;
use crate::testbed::Testbed;

/// RFC 3339 (UTC, whole seconds) of a Unix time, as EventBridge writes an event's `time`.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `events/alarm-rollback/<file>`.
pub fn sample(file: &str) -> Value {
    let path = crate::repo_root().join("events/alarm-rollback").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The sample `file` made into `alarm`'s state change to `state`, sent `age_s` seconds ago, with
/// id `id`.
pub fn alarm_event(file: &str, id: &str, alarm: &str, state: &str, age_s: i64) -> Value {
    let mut e = sample(file);
    e["id"] = json!(id);
    e["time"] = json!(rfc3339(now_secs() - age_s));
    e["resources"] = json!([format!(
        "arn:aws:cloudwatch:us-east-1:123456789012:alarm:{alarm}"
    )]);
    e["detail"]["alarmName"] = json!(alarm);
    e["detail"]["state"]["value"] = json!(state);
    e
}

const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop";

/// Runs the demo; true when every decision was the expected one.
pub async fn run() -> bool {
    let bed = Testbed::shared();
    let run = std::process::id();
    let mut env = bed.aws_env();
    env.push(("ROLLBACK_WINDOW_S".into(), "1800".into()));
    let router = Function::start(&crate::bin_dir().join("alarm-rollback"), &env).await;
    let mut ok = true;

    println!("━━ CodeDeploy blue/green: shop:v1 → shop:v2, rolled back when its error alarm fires");
    let s = bed
        .codedeploy_scenario(json!({"name": format!("demo-rb-{run}"), "prod_port": 18000, "test_port": 18001,
                                    "image_from": format!("{IMAGE}:v1"), "image_to": format!("{IMAGE}:v2")}))
        .await;
    let id = s["deploymentId"].as_str().unwrap_or_default().to_string();
    // The smoke hook passed v2 on the test listener; production traffic then moved to v2.
    bed.aws_json(
        "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus",
        json!({"deploymentId": id, "lifecycleEventHookExecutionId": s["hookExecutionId"], "status": "Succeeded"}),
    )
    .await;
    bed.lifecycle(&id, "AfterAllowTraffic").await;
    println!(
        "   deployment {id}: smoke tests passed at AfterAllowTestTraffic; production now serves v2"
    );
    let alarm = format!("demo-shop-5xx-{run}");
    bed.alarm(json!({"name": alarm, "tags": {
            "deploy-guard:codedeploy-application": s["application"],
            "deploy-guard:codedeploy-deployment-group": s["deploymentGroup"]}}))
        .await;
    println!("   alarm {alarm} (tagged with the application and deployment group) goes to ALARM: 42 5xx in a minute");
    let event = alarm_event(
        "metric-alarm.json",
        &format!("demo-{run}-1"),
        &alarm,
        "ALARM",
        2,
    );
    router.invoke(event, Duration::from_secs(30)).await;
    let out = last(&router);
    print_decision(&out);
    let info = bed
        .aws_json(
            "CodeDeploy_20141006.GetDeployment",
            json!({"deploymentId": id}),
        )
        .await;
    let status = info["deploymentInfo"]["status"].as_str().unwrap_or("?");
    let rollback = info["deploymentInfo"]["rollbackInfo"]["rollbackDeploymentId"]
        .as_str()
        .unwrap_or("none");
    println!("   CodeDeploy now says: {id} {status}, rollback deployment {rollback}");
    ok &= out["action"] == "StopDeployment" && status == "Stopped" && rollback != "none";

    println!("   the alarm fires again (a duplicate, or a flap):");
    let event = alarm_event(
        "metric-alarm.json",
        &format!("demo-{run}-2"),
        &alarm,
        "ALARM",
        1,
    );
    router.invoke(event, Duration::from_secs(30)).await;
    let again = last(&router);
    print_decision(&again);
    ok &= again["action"] == "nothing";

    println!();
    println!(
        "━━ ECS rolling: shop:v1 → shop:v2 finished 5 minutes ago, then its error alarm fires"
    );
    let e = bed
        .ecs_scenario(json!({"name": format!("demo-rb-{run}"), "prod_port": 18000, "test_port": 18001,
                             "strategy": "ROLLING", "deployment_status": "SUCCESSFUL",
                             "image_from": format!("{IMAGE}:v1"), "image_to": format!("{IMAGE}:v2")}))
        .await;
    bed.ecs_service_deployment(json!({"serviceDeploymentArn": e["serviceDeploymentArn"],
                                      "status": "SUCCESSFUL", "finishedMinutesAgo": 5}))
        .await;
    let ecs_alarm = format!("demo-shop-latency-{run}");
    bed.alarm(json!({"name": ecs_alarm, "tags": {
            "deploy-guard:ecs-cluster": e["cluster"], "deploy-guard:ecs-service": e["service"]}}))
        .await;
    println!("   alarm {ecs_alarm} (tagged with cluster and service) goes to ALARM");
    let event = alarm_event(
        "metric-alarm.json",
        &format!("demo-{run}-3"),
        &ecs_alarm,
        "ALARM",
        2,
    );
    router.invoke(event, Duration::from_secs(30)).await;
    let out = last(&router);
    print_decision(&out);
    let updates = bed
        .calls(
            "ecs",
            "UpdateService",
            e["cluster"].as_str().unwrap_or_default(),
        )
        .await;
    let to = updates
        .first()
        .and_then(|c| c.params["taskDefinition"].as_str())
        .unwrap_or("none");
    println!("   ECS was asked to go back to {to}");
    ok &= out["action"] == "UpdateService" && Some(to) == e["taskDefinitionFrom"].as_str();

    let mut announced = 0;
    for a in [&alarm, &ecs_alarm] {
        announced += bed.calls("events", "PutEvents", a).await.len();
    }
    println!(
        "\n{announced} \"Rollback Started\" event(s) announced on the default bus, for chat or paging."
    );
    ok &= announced == 2;
    router.stop().await;
    ok
}

fn last(f: &Function) -> Value {
    f.outcomes().last().cloned().unwrap_or(Value::Null)
}

/// The decision line, readably.
fn print_decision(out: &Value) {
    let s = |k: &str| out[k].as_str().unwrap_or("-").to_string();
    let mark = match out["action"].as_str() {
        Some("nothing") | Some("ignored") => "NO ACTION",
        Some(_) => "ROLLBACK",
        None => "?",
    };
    println!("   [{mark}] {} → {}", s("alarm"), s("mapped_to"));
    println!("          why:    {}", s("reason"));
    println!("          did:    {} ({})", s("action"), s("result"));
    if let Some(a) = out["announcement"].as_str() {
        println!("          told:   {a}");
    }
}
