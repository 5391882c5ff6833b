//! The CodePipeline actions demo: the image gate refusing a `latest` image and allowing a
//! pinned one, and the bake timer passing a clean bake and failing one broken by an alarm.
//! Everything runs on this machine: the extended moto test bed and the real binaries.
//!
//! Also holds the helpers the end-to-end tests of both actions share: job events and job ids.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::runtime::Function;
use crate::testbed::{Call, Testbed};

/// The job's artifact credentials in every event built here (the test bed accepts any).
pub const ACCESS_KEY: &str = "ASIADEMOJOBKEY000001";
pub const SECRET_KEY: &str = "demo/secret/key/that/must/never/be/logged";
pub const SESSION_TOKEN: &str = "demo-session-token-that-must-never-be-logged";

/// A fresh job id (a UUID, as CodePipeline's are).
pub fn job_id() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{:08x}-{:04x}-4000-8000-{:012x}",
        std::process::id(),
        n & 0xffff,
        (u64::from(nanos) << 16) | u64::from(n & 0xffff)
    )
}

/// A CodePipeline invoke-action job: `UserParameters`, input artifacts as
/// `(name, bucket, key)`, and a continuation token.
pub fn job_event(
    id: &str,
    function: &str,
    user_parameters: &str,
    inputs: &[(&str, &str, &str)],
    token: Option<&str>,
) -> Value {
    let artifacts: Vec<Value> = inputs
        .iter()
        .map(|(name, bucket, key)| {
            json!({"name": name, "revision": "r1", "location": {"type": "S3",
                   "s3Location": {"bucketName": bucket, "objectKey": key}}})
        })
        .collect();
    let mut data = json!({
        "actionConfiguration": {"configuration": {"FunctionName": function, "UserParameters": user_parameters}},
        "inputArtifacts": artifacts,
        "outputArtifacts": [],
        "artifactCredentials": {"accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY, "sessionToken": SESSION_TOKEN},
        "encryptionKey": {"id": "arn:aws:kms:us-east-1:123456789012:key/demo", "type": "KMS"},
    });
    if let Some(t) = token {
        data["continuationToken"] = json!(t);
    }
    json!({"CodePipeline.job": {"id": id, "accountId": "123456789012", "data": data}})
}

/// The one report recorded for `job` (panics with the list when there is not exactly one).
pub async fn single_report(bed: &Testbed, job: &str) -> Call {
    let reports = bed.job_reports(job).await;
    assert_eq!(
        reports.len(),
        1,
        "exactly one report expected for job {job}: {reports:#?}"
    );
    reports[0].clone()
}

/// `(verdict, text)` of a recorded report: Succeeded / InProgress / the failure type, and the
/// summary or failure message.
pub fn describe(call: &Call) -> (String, String) {
    let p = &call.params;
    if call.operation == "PutJobFailureResult" {
        return (
            p["failureDetails"]["type"]
                .as_str()
                .unwrap_or("?")
                .to_string(),
            p["failureDetails"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let verdict = if p.get("continuationToken").is_some_and(|t| !t.is_null()) {
        "InProgress"
    } else {
        "Succeeded"
    };
    (
        verdict.to_string(),
        p["executionDetails"]["summary"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn show(step: &str, call: &Call) -> String {
    let (verdict, text) = describe(call);
    let mark = match verdict.as_str() {
        "Succeeded" => "✔",
        "InProgress" => "…",
        _ => "✘",
    };
    println!("   {mark} {step}: {verdict}");
    for line in text.split("; ") {
        println!("       {line}");
    }
    if let Some(vars) = call
        .params
        .get("outputVariables")
        .and_then(Value::as_object)
    {
        for (k, v) in vars {
            println!(
                "       output variable {k} = {}",
                v.as_str().unwrap_or_default()
            );
        }
    }
    verdict
}

/// Runs the story; true when every verdict was the expected one.
pub async fn run() -> bool {
    let bed = Testbed::shared();
    let run = std::process::id();
    let mut ok = true;
    println!(
        "deploy-guard demo: the CodePipeline actions against a local AWS on {}",
        bed.url()
    );
    let mut env = bed.aws_env();
    env.push(("REPORT_RESERVE_MS".into(), "1000".into()));
    let gate = Function::start(&crate::bin_dir().join("image-gate"), &env).await;
    let bake = Function::start(&crate::bin_dir().join("bake-timer"), &env).await;
    let budget = Duration::from_secs(20);

    // Image gate.
    let repo = format!("demo-shop-{run}");
    let latest = bed
        .ecr_image(json!({"repository": format!("{repo}-dev"), "tags": ["latest"], "mutability": "MUTABLE",
                          "scan": {"status": "COMPLETE", "findings": [{"name": "CVE-2026-0001", "severity": "CRITICAL"}]}}))
        .await;
    let pinned = bed
        .ecr_image(json!({"repository": repo, "tags": ["1.4.0"], "scan": {"status": "COMPLETE", "findings": [{"name": "CVE-2026-0002", "severity": "MEDIUM"}]}}))
        .await;
    let dev = latest["repositoryUri"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let host = pinned["repositoryUri"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let bucket = format!("demo-artifacts-{run}");
    println!(
        "\n━━ image gate: a build step hands over imagedefinitions.json naming {repo}-dev:latest"
    );
    bed.pipeline_artifact(
        &bucket,
        "build/latest.zip",
        json!({"imagedefinitions.json": [{"name": "web", "imageUri": format!("{dev}:latest")}]}),
        true,
    )
    .await;
    let id = job_id();
    gate.invoke(
        job_event(
            &id,
            "image-gate",
            "",
            &[("BuildOutput", &bucket, "build/latest.zip")],
            None,
        ),
        budget,
    )
    .await;
    let verdict = show("CodePipeline records", &single_report(bed, &id).await);
    ok &= verdict == "JobFailed";

    println!("\n━━ image gate: the ECR source action hands over imageDetail.json for {repo}:1.4.0, pinned by digest");
    let digest = pinned["digest"].as_str().unwrap_or_default();
    bed.pipeline_artifact(&bucket, "source/pinned.zip", json!({"imageDetail.json": {
            "ImageURI": format!("{host}@{digest}"), "ImageDigest": digest, "ImageTags": ["1.4.0"], "RepositoryName": repo}}), true)
        .await;
    let id = job_id();
    let params = json!({"scan": {"max": {"CRITICAL": 0, "HIGH": 0}}}).to_string();
    gate.invoke(
        job_event(
            &id,
            "image-gate",
            &params,
            &[("SourceArtifact", &bucket, "source/pinned.zip")],
            None,
        ),
        budget,
    )
    .await;
    let verdict = show("CodePipeline records", &single_report(bed, &id).await);
    ok &= verdict == "Succeeded";

    // Bake timer.
    for (story, breaks) in [
        ("a clean bake", false),
        (
            "a bake broken by an alarm that fired and cleared between two polls",
            true,
        ),
    ] {
        let prefix = format!("demo-{run}-{}-", if breaks { "broken" } else { "clean" });
        for name in ["5xx", "latency"] {
            bed.alarm(json!({"name": format!("{prefix}{name}"), "state": "OK"}))
                .await;
        }
        let params = json!({"duration_seconds": 3, "alarms": {"prefix": prefix}}).to_string();
        println!("\n━━ bake timer: {story} (3 s bake, alarms {prefix}*; CodePipeline calls back with the token)");
        let mut token: Option<String> = None;
        let mut last = String::new();
        for poll in 1..=6 {
            if poll > 1 {
                tokio::time::sleep(Duration::from_millis(1300)).await;
            }
            if breaks && poll == 2 {
                println!("   (between polls: {prefix}5xx goes to ALARM and back to OK)");
                bed.alarm_state(&format!("{prefix}5xx"), "ALARM").await;
                bed.alarm_state(&format!("{prefix}5xx"), "OK").await;
            }
            let id = job_id();
            bake.invoke(
                job_event(&id, "bake-timer", &params, &[], token.as_deref()),
                budget,
            )
            .await;
            let report = single_report(bed, &id).await;
            last = show(&format!("poll {poll}"), &report);
            token = report
                .params
                .get("continuationToken")
                .and_then(Value::as_str)
                .map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        ok &= if breaks {
            last == "JobFailed"
        } else {
            last == "Succeeded"
        };
    }
    gate.stop().await;
    bake.stop().await;
    println!();
    if ok {
        println!("The latest image was refused and the pinned one allowed; the clean bake passed and the broken one failed, each with its reasons.");
    } else {
        println!("Some verdict was not the expected one.");
    }
    ok
}
