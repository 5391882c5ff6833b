//! The bake timer as CodePipeline runs it: one poll per invocation, a new job (and job id) per
//! continuation, alarms in the test bed's CloudWatch (served over CBOR). Every test asserts the
//! single recorded report of each job: its type, its summary or message, its token.

use std::time::Duration;

use deploy_guard_tests::demos::pipeline::{
    describe, job_event, job_id, single_report, SECRET_KEY, SESSION_TOKEN,
};
use deploy_guard_tests::runtime::Function;
use deploy_guard_tests::testbed::{throttled_twice_then_answered, Call, Testbed};
use serde_json::{json, Value};

use crate::support::{assert_mentions, unique};

async fn timer(bed: &Testbed, env: &[(&str, &str)]) -> Function {
    let mut all = bed.aws_env();
    all.push(("REPORT_RESERVE_MS".into(), "1000".into()));
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Function::start(&deploy_guard_tests::bin_dir().join("bake-timer"), &all).await
}

/// Alarms `<prefix><name>` in state OK (tagged `service=<tag>` when given).
async fn alarms(bed: &Testbed, prefix: &str, names: &[&str], tag: Option<&str>) {
    for n in names {
        let mut body = json!({"name": format!("{prefix}{n}"), "state": "OK"});
        if let Some(t) = tag {
            body["tags"] = json!({"service": t});
        }
        bed.alarm(body).await;
    }
}

/// One poll: a new job carrying `token`; its single report.
async fn poll(bed: &Testbed, f: &Function, params: &str, token: Option<&str>) -> Call {
    let id = job_id();
    let inv = f
        .invoke(
            job_event(&id, "bake-timer", params, &[], token),
            Duration::from_secs(20),
        )
        .await;
    assert!(inv.error.is_none(), "{inv:?}");
    single_report(bed, &id).await
}

fn token_of(report: &Call) -> String {
    report.params["continuationToken"]
        .as_str()
        .unwrap_or_else(|| panic!("a continuation token expected: {report:#?}"))
        .to_string()
}

#[tokio::test]
async fn a_clean_bake_passes_over_several_continuations() {
    let bed = Testbed::shared();
    let prefix = format!("{}-", unique("clean"));
    alarms(bed, &prefix, &["5xx", "latency"], None).await;
    let f = timer(bed, &[("RUST_LOG", "trace")]).await;
    let params = json!({"duration_seconds": 3, "alarms": {"prefix": prefix}}).to_string();
    let first = poll(bed, &f, &params, None).await;
    let (verdict, summary) = describe(&first);
    assert_eq!(verdict, "InProgress", "{summary}");
    assert_eq!(first.params["executionDetails"]["percentComplete"], 0);
    assert_mentions(
        &summary,
        &[
            "baking 0%",
            "2 alarms OK so far",
            &format!("{prefix}5xx"),
            &format!("{prefix}latency"),
        ],
    );
    let mut token = token_of(&first);
    assert!(
        token.len() < 300 && token.starts_with("{\"v\":1,"),
        "{token}"
    );
    let mut polls = 1;
    let mut last = first;
    while describe(&last).0 == "InProgress" {
        assert!(polls < 10, "the bake never ended");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        last = poll(bed, &f, &params, Some(&token)).await;
        polls += 1;
        if describe(&last).0 == "InProgress" {
            let next = token_of(&last);
            assert_ne!(next, token, "each poll carries a new token");
            let pct = last.params["executionDetails"]["percentComplete"]
                .as_i64()
                .unwrap_or(-1);
            assert!((1..100).contains(&pct), "{pct}");
            token = next;
        }
    }
    assert!(polls >= 3, "at least two continuations: {polls} polls");
    let (verdict, summary) = describe(&last);
    assert_eq!(verdict, "Succeeded", "{summary}");
    assert_eq!(last.params["executionDetails"]["percentComplete"], 100);
    assert_mentions(
        &summary,
        &[
            "bake passed: 2 alarms watched through the 3 s bake",
            &format!(", {polls} polls)"),
            "none went to ALARM",
        ],
    );
    let vars = &last.params["outputVariables"];
    assert_eq!(vars["AlarmsWatched"], "2");
    assert_eq!(vars["Polls"], polls.to_string());
    // Each poll read the current states and, after the first, the history since the start.
    let history = bed
        .calls(
            "cloudwatch",
            "DescribeAlarmHistory",
            &format!("{prefix}5xx"),
        )
        .await;
    assert_eq!(history.len(), polls - 1, "{history:#?}");
    assert_eq!(history[0].params["HistoryItemType"], "StateUpdate");
    let logs = f.logs().join("\n");
    assert!(
        !logs.contains(SECRET_KEY) && !logs.contains(SESSION_TOKEN),
        "credentials leaked"
    );
}

#[tokio::test]
async fn an_alarm_that_flapped_between_polls_fails_the_bake_naming_it_and_when() {
    let bed = Testbed::shared();
    let prefix = format!("{}-", unique("flap"));
    alarms(bed, &prefix, &["5xx", "latency"], None).await;
    let f = timer(bed, &[]).await;
    let params = json!({"duration_minutes": 10, "alarms": {"names": [format!("{prefix}5xx"), format!("{prefix}latency")]}}).to_string();
    let first = poll(bed, &f, &params, None).await;
    assert_eq!(describe(&first).0, "InProgress");
    // Between two polls: ALARM, then back to OK. A state-only check would miss it.
    bed.alarm_state(&format!("{prefix}5xx"), "ALARM").await;
    bed.alarm_state(&format!("{prefix}5xx"), "OK").await;
    let second = poll(bed, &f, &params, Some(&token_of(&first))).await;
    let (verdict, message) = describe(&second);
    assert_eq!(verdict, "JobFailed", "{message}");
    assert_mentions(
        &message,
        &[
            "bake failed after",
            &format!("alarm {prefix}5xx went to ALARM at 20"),
            "during the bake (now OK)",
        ],
    );
    assert!(
        !message.contains(&format!("{prefix}latency went")),
        "{message}"
    );
}

#[tokio::test]
async fn an_alarm_in_alarm_or_without_data_fails_at_once() {
    let bed = Testbed::shared();
    let prefix = format!("{}-", unique("firing"));
    alarms(bed, &prefix, &["5xx", "cpu"], None).await;
    bed.alarm_state(&format!("{prefix}5xx"), "ALARM").await;
    bed.alarm_state(&format!("{prefix}cpu"), "INSUFFICIENT_DATA")
        .await;
    let f = timer(bed, &[]).await;
    let params = json!({"duration_minutes": 5, "alarms": {"prefix": prefix}}).to_string();
    let (verdict, message) = describe(&poll(bed, &f, &params, None).await);
    assert_eq!(verdict, "JobFailed");
    assert_mentions(
        &message,
        &[
            &format!("alarm {prefix}5xx is in ALARM since 20"),
            "testbed set ALARM",
            &format!("alarm {prefix}cpu has INSUFFICIENT_DATA"),
        ],
    );
    let lenient = json!({"duration_minutes": 5, "alarms": {"names": [format!("{prefix}cpu")]}, "insufficient_data": "ignore"}).to_string();
    assert_eq!(
        describe(&poll(bed, &f, &lenient, None).await).0,
        "InProgress"
    );
}

#[tokio::test]
async fn alarms_selected_by_tag_and_missing_alarms_fail_closed() {
    let bed = Testbed::shared();
    let prefix = format!("{}-", unique("tagged"));
    let service = unique("svc");
    alarms(bed, &prefix, &["a", "b"], Some(&service)).await;
    alarms(bed, &prefix, &["untagged"], None).await;
    let f = timer(bed, &[]).await;
    let by_tag = json!({"duration_minutes": 5, "alarms": {"prefix": prefix, "tag": {"key": "service", "value": service}}}).to_string();
    let (verdict, summary) = describe(&poll(bed, &f, &by_tag, None).await);
    assert_eq!(verdict, "InProgress");
    assert_mentions(
        &summary,
        &[
            "2 alarms OK so far",
            &format!("{prefix}a"),
            &format!("{prefix}b"),
        ],
    );
    assert!(!summary.contains("untagged"), "{summary}");
    let missing = json!({"duration_minutes": 5, "alarms": {"names": [format!("{prefix}a"), format!("{prefix}gone")]}}).to_string();
    let (verdict, message) = describe(&poll(bed, &f, &missing, None).await);
    assert_eq!(verdict, "ConfigurationError");
    assert_mentions(
        &message,
        &[
            &format!("alarm \"{prefix}gone\" does not exist"),
            "set missing_alarm to ignore",
        ],
    );
    let ignored = json!({"duration_minutes": 5, "alarms": {"names": [format!("{prefix}a"), format!("{prefix}gone")]}, "missing_alarm": "ignore"}).to_string();
    let (verdict, summary) = describe(&poll(bed, &f, &ignored, None).await);
    assert_eq!(verdict, "InProgress");
    assert_mentions(&summary, &["1 alarm OK so far", "does not exist (ignored)"]);
    let none =
        json!({"duration_minutes": 5, "alarms": {"prefix": format!("{prefix}zzz")}}).to_string();
    let (verdict, message) = describe(&poll(bed, &f, &none, None).await);
    assert_eq!(verdict, "ConfigurationError");
    assert_mentions(&message, &["no alarm has the name prefix"]);
}

/// Tokens that are tampered with, garbage, from another version, too long, or spent: the job
/// fails with the reason, never loops.
#[tokio::test]
async fn bad_continuation_tokens_fail_the_job() {
    let bed = Testbed::shared();
    let prefix = format!("{}-", unique("token"));
    alarms(bed, &prefix, &["5xx"], None).await;
    let f = timer(bed, &[]).await;
    let params =
        json!({"duration_minutes": 10, "alarms": {"prefix": prefix}, "max_polls": 2}).to_string();
    let good = token_of(&poll(bed, &f, &params, None).await);
    let mut tampered: Value = serde_json::from_str(&good).expect("token is JSON");
    tampered["start"] = json!(tampered["start"].as_u64().unwrap_or(0) - 3_600_000);
    let version_sample: Value = {
        let p = deploy_guard_tests::repo_root().join("events/bake-timer/bad-token-version.json");
        serde_json::from_str(&std::fs::read_to_string(p).expect("event")).expect("json")
    };
    let other_version = version_sample["CodePipeline.job"]["data"]["continuationToken"]
        .as_str()
        .expect("token")
        .to_string();
    let cases: Vec<(String, &str)> = vec![
        (
            tampered.to_string(),
            "checksum does not match: it was altered",
        ),
        (
            "definitely not json".into(),
            "the continuation token is not JSON",
        ),
        (other_version, "has version 9"),
        ("x".repeat(3000), "3000 characters long, more than the 2048"),
    ];
    for (token, words) in cases {
        let (verdict, message) = describe(&poll(bed, &f, &params, Some(&token)).await);
        assert_eq!(verdict, "JobFailed", "{message}");
        assert_mentions(&message, &[words]);
    }
    // max_polls 2: the second poll continues, the third is refused.
    let second = poll(bed, &f, &params, Some(&good)).await;
    assert_eq!(describe(&second).0, "InProgress");
    let (verdict, message) = describe(&poll(bed, &f, &params, Some(&token_of(&second))).await);
    assert_eq!(verdict, "JobFailed");
    assert_mentions(&message, &["polled 2 times, the limit is 2"]);
    // A token carried into a changed configuration is refused too.
    let changed =
        json!({"duration_minutes": 20, "alarms": {"prefix": prefix}, "max_polls": 2}).to_string();
    let (verdict, message) = describe(&poll(bed, &f, &changed, Some(&good)).await);
    assert_eq!(verdict, "JobFailed");
    assert_mentions(&message, &["UserParameters changed during the bake"]);
}

#[tokio::test]
async fn bad_user_parameters_are_configuration_errors() {
    let bed = Testbed::shared();
    let f = timer(bed, &[]).await;
    let cases = [
        ("", "the bake period is required"),
        ("15 minutes", "UserParameters is not valid JSON"),
        (
            r#"{"duration_minutes": 15}"#,
            "UserParameters.alarms: name the alarms to watch",
        ),
        (
            r#"{"duration_minutes": 15, "alarms": {"names": ["a"]}, "sleep": true}"#,
            "UserParameters.sleep: unknown field",
        ),
        (
            r#"{"duration_minutes": 99999, "alarms": {"names": ["a"]}}"#,
            "UserParameters.duration_minutes: must be 1 to 1440",
        ),
    ];
    for (params, words) in cases {
        let (verdict, message) = describe(&poll(bed, &f, params, None).await);
        assert_eq!(verdict, "ConfigurationError", "{params}: {message}");
        assert_mentions(&message, &[words]);
    }
}

#[tokio::test]
async fn cloudwatch_faults_become_reports() {
    let bed = Testbed::shared();
    let prefix = format!("{}-", unique("faults"));
    alarms(bed, &prefix, &["5xx"], None).await;
    let f = timer(bed, &[]).await;
    let params = json!({"duration_minutes": 5, "alarms": {"prefix": prefix}}).to_string();
    // Throttled twice, then served: the poll goes on.
    bed.fault(json!({"service": "cloudwatch", "operation": "DescribeAlarms", "match_text": prefix, "mode": "throttle", "times": 2})).await;
    let first = poll(bed, &f, &params, None).await;
    assert_eq!(describe(&first).0, "InProgress");
    assert_eq!(
        bed.call_errors("cloudwatch", "DescribeAlarms", &prefix)
            .await,
        throttled_twice_then_answered()
    );
    // History denied: a PermissionError naming the permission.
    bed.fault(json!({"service": "cloudwatch", "operation": "DescribeAlarmHistory", "match_text": prefix, "mode": "access_denied"})).await;
    let (verdict, message) = describe(&poll(bed, &f, &params, Some(&token_of(&first))).await);
    assert_eq!(verdict, "PermissionError", "{message}");
    assert_mentions(
        &message,
        &[
            "DescribeAlarmHistory failed",
            "AccessDeniedException",
            "cloudwatch:DescribeAlarmHistory",
        ],
    );
}

#[tokio::test]
async fn a_hung_cloudwatch_still_gets_a_report_before_the_deadline() {
    let bed = Testbed::shared();
    let prefix = format!("{}-", unique("hang"));
    alarms(bed, &prefix, &["5xx"], None).await;
    bed.fault(json!({"service": "cloudwatch", "operation": "DescribeAlarms", "match_text": prefix, "mode": "hang", "hang_seconds": 30})).await;
    let f = timer(
        bed,
        &[
            ("AWS_ATTEMPT_TIMEOUT_MS", "20000"),
            ("AWS_OPERATION_TIMEOUT_MS", "25000"),
        ],
    )
    .await;
    let id = job_id();
    let params = json!({"duration_minutes": 5, "alarms": {"prefix": prefix}}).to_string();
    let inv = f
        .invoke(
            job_event(&id, "bake-timer", &params, &[], None),
            Duration::from_secs(5),
        )
        .await;
    assert!(inv.error.is_none(), "{inv:?}");
    let (verdict, message) = describe(&single_report(bed, &id).await);
    assert_eq!(verdict, "JobFailed", "{message}");
    assert_mentions(&message, &["ran out of time"]);
}

/// The demo module's story (both actions, four outcomes) holds: every verdict as expected.
#[tokio::test]
async fn the_pipeline_demo_shows_all_four_outcomes() {
    assert!(deploy_guard_tests::demos::pipeline::run().await);
}
