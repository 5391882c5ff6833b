//! The image gate as CodePipeline runs it: the real binary through the Runtime API emulator,
//! input artifacts in the test bed's S3 (SSE-KMS), images and scans in its ECR. Every test
//! asserts the job's single recorded report: its type and its summary or message.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deploy_guard_tests::demos::pipeline::{describe, job_event, job_id, single_report};
use deploy_guard_tests::runtime::Function;
use deploy_guard_tests::testbed::Testbed;
use serde_json::{json, Value};

use crate::support::{assert_mentions, single_outcome, unique};

fn binary() -> std::path::PathBuf {
    deploy_guard_tests::bin_dir().join("image-gate")
}

async fn gate(bed: &Testbed, env: &[(&str, &str)]) -> Function {
    let mut all = bed.aws_env();
    all.push(("REPORT_RESERVE_MS".into(), "1000".into()));
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Function::start(&binary(), &all).await
}

/// A repository of this test with one image: `tags`, a clean complete scan unless `extra`
/// says otherwise. Returns `(repository URI, digest)`.
async fn image(bed: &Testbed, repo: &str, tags: &[&str], extra: Value) -> (String, String) {
    let mut body = json!({"repository": repo, "tags": tags});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let out = bed.ecr_image(body).await;
    (
        out["repositoryUri"].as_str().expect("uri").to_string(),
        out["digest"].as_str().expect("digest").to_string(),
    )
}

/// `events/image-gate/<name>` with this test's job id, parameters and artifact location.
fn sample(name: &str, id: &str, params: Option<&str>, bucket: &str, key: &str) -> Value {
    let path = deploy_guard_tests::repo_root()
        .join("events/image-gate")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut e: Value = serde_json::from_str(&text).expect("sample event");
    let job = &mut e["CodePipeline.job"];
    job["id"] = json!(id);
    if let Some(p) = params {
        job["data"]["actionConfiguration"]["configuration"]["UserParameters"] = json!(p);
    }
    if let Some(a) = job["data"]["inputArtifacts"].get_mut(0) {
        a["location"]["s3Location"] = json!({"bucketName": bucket, "objectKey": key});
    }
    e
}

async fn run(f: &Function, event: Value) {
    let inv = f.invoke(event, Duration::from_secs(20)).await;
    assert!(inv.error.is_none(), "{inv:?}");
}

/// Runs one job with `params` against an artifact holding `files`; returns (verdict, text).
async fn job_with_artifact(
    bed: &Testbed,
    f: &Function,
    params: &str,
    files: Value,
) -> (String, String) {
    let bucket = unique("artifacts").to_lowercase();
    bed.pipeline_artifact(&bucket, "in/a.zip", files, true)
        .await;
    let id = job_id();
    run(
        f,
        job_event(
            &id,
            "image-gate",
            params,
            &[("BuildOutput", &bucket, "in/a.zip")],
            None,
        ),
    )
    .await;
    describe(&single_report(bed, &id).await)
}

#[tokio::test]
async fn an_allowed_image_from_an_encrypted_image_detail_ships_pinned_by_digest() {
    let bed = Testbed::shared();
    let repo = unique("shop");
    let (uri, digest) = image(bed, &repo, &["1.4.0"], json!({"scan": {"status": "COMPLETE", "findings": [{"name": "CVE-2026-1", "severity": "HIGH"}]}})).await;
    let bucket = unique("artifacts").to_lowercase();
    let stored = bed
        .pipeline_artifact(&bucket, "src/image.zip", json!({"imageDetail.json": {
            "ImageURI": format!("{uri}@{digest}"), "ImageDigest": digest, "ImageTags": ["1.4.0"], "RepositoryName": repo}}), true)
        .await;
    assert!(
        stored["kmsKeyId"]
            .as_str()
            .is_some_and(|k| k.contains(":key/")),
        "{stored}"
    );
    let f = gate(bed, &[("RUST_LOG", "trace")]).await;
    let id = job_id();
    run(
        &f,
        sample("job-image-detail.json", &id, None, &bucket, "src/image.zip"),
    )
    .await;
    let report = single_report(bed, &id).await;
    assert_eq!(report.operation, "PutJobSuccessResult");
    assert!(
        report.params.get("continuationToken").is_none(),
        "{report:?}"
    );
    let vars = &report.params["outputVariables"];
    assert_eq!(vars["ImageUri"], format!("{uri}@{digest}"));
    assert_eq!(vars["ImageDigest"], digest);
    assert_eq!(vars["ImageTag"], "1.4.0");
    let (_, summary) = describe(&report);
    assert_mentions(
        &summary,
        &[
            "allowed",
            "imageDetail.json in artifact \"ImageArtifact\"",
            "tag 1.4.0 matches",
            "1 HIGH within limits",
            "has immutable tags",
        ],
    );
    // The artifact was read with the job's own credentials, not the function's.
    let reads = bed.calls("s3", "GetObject", &bucket).await;
    assert_eq!(reads.len(), 1, "{reads:#?}");
    assert_eq!(reads[0].params["accessKeyId"], "ASIAEXAMPLEJOBKEY000");
    // TRACE logging is on, and no credential reached the logs.
    let logs = f.logs().join("\n");
    assert!(
        logs.contains("reading the input artifact"),
        "DEBUG lines are written at TRACE: {logs}"
    );
    for secret in [
        "example/secret/access/key/never/logged",
        "example-session-token-never-logged",
        // Not a secret by itself, but aws-sigv4 prints it at TRACE: the clamp keeps it out.
        "ASIAEXAMPLEJOBKEY000",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
    let out = single_outcome(&f);
    assert_eq!(out["verdict"], "Succeeded");
    assert_eq!(out["report"], "delivered");
}

#[tokio::test]
async fn a_latest_image_is_refused_listing_every_failed_rule() {
    let bed = Testbed::shared();
    let repo = unique("shop");
    let (uri, _) = image(bed, &repo, &["latest"], json!({"mutability": "MUTABLE",
        "scan": {"status": "COMPLETE", "findings": [{"name": "CVE-2026-9", "severity": "CRITICAL"}]}})).await;
    let f = gate(bed, &[]).await;
    let (verdict, message) = job_with_artifact(
        bed,
        &f,
        "",
        json!({"imagedefinitions.json": [{"name": "web", "imageUri": format!("{uri}:latest")}]}),
    )
    .await;
    assert_eq!(verdict, "JobFailed");
    assert_mentions(&message, &[
        "refused (imagedefinitions.json in artifact \"BuildOutput\", container \"web\"), 4 rule(s) failed",
        "mutable tag: \"latest\" can move",
        "tag pattern: \"latest\" does not match",
        "tag mutability: repository",
        "has MUTABLE tags",
        "scan findings: 1 CRITICAL findings, at most 0 allowed (CVE-2026-9)",
    ]);
}

#[tokio::test]
async fn a_digest_that_does_not_match_ecr_is_refused() {
    let bed = Testbed::shared();
    let repo = unique("shop");
    let (uri, digest) = image(bed, &repo, &["2.0.0"], json!({})).await;
    let stale = format!("sha256:{}", "0".repeat(64));
    let f = gate(bed, &[]).await;
    let (verdict, message) = job_with_artifact(bed, &f, "", json!({"imagedefinitions.json": [{"name": "web", "imageUri": format!("{uri}:2.0.0@{stale}")}]})).await;
    assert_eq!(verdict, "JobFailed");
    assert_mentions(
        &message,
        &[
            "digest: the artifact names sha256:0000",
            &format!("ECR's tag 2.0.0 is {digest}"),
        ],
    );
}

#[tokio::test]
async fn scan_thresholds_and_an_expired_allowlist_entry() {
    let bed = Testbed::shared();
    let repo = unique("shop");
    let findings = json!({"status": "COMPLETE", "findings": [
        {"name": "CVE-2026-10", "severity": "HIGH"}, {"name": "CVE-2026-11", "severity": "HIGH"},
        {"name": "CVE-2026-12", "severity": "CRITICAL"}]});
    let (uri, _) = image(bed, &repo, &["3.1.0"], json!({"scan": findings})).await;
    let f = gate(bed, &[]).await;
    let with = |allow: &str, high: u32| {
        json!({"image": format!("{uri}:3.1.0"), "scan": {"max": {"CRITICAL": 0, "HIGH": high},
               "allow": [{"id": "CVE-2026-12", "expires": allow, "reason": "no fix upstream"}]}})
        .to_string()
    };
    let cases = [
        (with("2020-01-31", 2), "JobFailed", vec!["1 CRITICAL findings, at most 0 allowed (CVE-2026-12)", "expired allowlist entries no longer apply: CVE-2026-12 (allowlist entry expired 2020-01-31)"]),
        (with("2099-12-31", 1), "JobFailed", vec!["2 HIGH findings, at most 1 allowed (CVE-2026-10, CVE-2026-11)"]),
        (with("2099-12-31", 2), "Succeeded", vec!["scan: 2 HIGH within limits", "allowlisted: CVE-2026-12 until 2099-12-31 (\"no fix upstream\")"]),
    ];
    for (params, want, words) in cases {
        let id = job_id();
        run(&f, job_event(&id, "image-gate", &params, &[], None)).await;
        let (verdict, text) = describe(&single_report(bed, &id).await);
        assert_eq!(verdict, want, "{params}: {text}");
        assert_mentions(&text, &words);
    }
}

#[tokio::test]
async fn missing_and_unfinished_scans_fail_unless_the_policy_only_warns() {
    let bed = Testbed::shared();
    let repo = unique("shop");
    let (uri, _) = image(bed, &repo, &["1.0.0"], json!({"scan": null})).await;
    image(
        bed,
        &repo,
        &["1.0.1"],
        json!({"scan": {"status": "IN_PROGRESS"}}),
    )
    .await;
    let f = gate(bed, &[]).await;
    let cases = [
        (
            json!({"image": format!("{uri}:1.0.0")}),
            "JobFailed",
            "scan: the image has no scan",
        ),
        (
            json!({"image": format!("{uri}:1.0.1")}),
            "JobFailed",
            "scan: the image's scan is IN_PROGRESS",
        ),
        (
            json!({"image": format!("{uri}:1.0.1"), "scan": {"missing": "warn"}}),
            "Succeeded",
            "warning: scan: the image's scan is IN_PROGRESS",
        ),
    ];
    for (params, want, words) in cases {
        let id = job_id();
        run(
            &f,
            job_event(&id, "image-gate", &params.to_string(), &[], None),
        )
        .await;
        let (verdict, text) = describe(&single_report(bed, &id).await);
        assert_eq!(verdict, want, "{params}: {text}");
        assert_mentions(&text, &[words]);
    }
}

#[tokio::test]
async fn an_image_or_repository_not_in_ecr_and_an_old_image_are_refused() {
    let bed = Testbed::shared();
    let repo = unique("shop");
    let (uri, _) = image(bed, &repo, &["1.2.3"], json!({"pushed_days_ago": 40})).await;
    let f = gate(bed, &[]).await;
    let cases = [
        (
            json!({"image": format!("{uri}:9.9.9")}),
            vec!["exists: image", ":9.9.9 is not in ECR repository"],
        ),
        (
            json!({"image": "no-such-repo-anywhere:1.0.0"}),
            vec!["repository no-such-repo-anywhere does not exist in ECR"],
        ),
        (
            json!({"image": format!("{uri}:1.2.3"), "max_age_days": 30}),
            vec!["age: pushed 40 days ago, more than the 30 days allowed"],
        ),
    ];
    for (params, words) in cases {
        let id = job_id();
        run(
            &f,
            job_event(&id, "image-gate", &params.to_string(), &[], None),
        )
        .await;
        let (verdict, text) = describe(&single_report(bed, &id).await);
        assert_eq!(verdict, "JobFailed", "{params}: {text}");
        assert_mentions(&text, &words);
    }
}

/// UserParameters and artifact problems: a ConfigurationError naming what is wrong.
#[tokio::test]
async fn configuration_errors_name_the_field() {
    let bed = Testbed::shared();
    let f = gate(bed, &[]).await;
    let long = json!({"image": "shop:1.0.0", "tag_pattern": "x".repeat(1000)}).to_string();
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            "image: shop:1.0.0".into(),
            vec!["UserParameters is not valid JSON"],
        ),
        (
            r#"{"image": "shop:1.0.0", "tags": ["x"]}"#.into(),
            vec!["UserParameters.tags: unknown field `tags`"],
        ),
        (
            r#"{"image": "shop:1.0.0", "scan": {"max": {"HIGH": -1}}}"#.into(),
            vec!["UserParameters.scan.max.HIGH: invalid value"],
        ),
        (
            r#"{"image": "shop:1.0.0", "tag_pattern": "(unclosed"}"#.into(),
            vec!["UserParameters.tag_pattern: not a valid regular expression"],
        ),
        (
            r#"{"image": "shop:1.0.0", "scan": {"allow": [{"id": "CVE-1", "expires": "soon"}]}}"#
                .into(),
            vec![
                "UserParameters.scan.allow[0].expires: expected a date YYYY-MM-DD, found \"soon\"",
            ],
        ),
        (
            long,
            vec!["characters long; CodePipeline allows at most 1000"],
        ),
        ("{}".into(), vec!["no image to check"]),
    ];
    for (params, words) in cases {
        let id = job_id();
        run(&f, job_event(&id, "image-gate", &params, &[], None)).await;
        let (verdict, text) = describe(&single_report(bed, &id).await);
        assert_eq!(verdict, "ConfigurationError", "{params}: {text}");
        assert_mentions(&text, &words);
    }
    // Artifacts that do not hold an image.
    let (verdict, text) =
        job_with_artifact(bed, &f, "", json!({"README.md": "no image here"})).await;
    assert_eq!(verdict, "ConfigurationError");
    assert_mentions(
        &text,
        &[
            "has neither imageDetail.json nor imagedefinitions.json",
            "\"README.md\"",
        ],
    );
    let (verdict, text) = job_with_artifact(bed, &f, "", json!({"imagedefinitions.json": [{"name": "web", "imageUri": "shop:1.0.0"}, {"name": "worker", "imageUri": "jobs:1.0.0"}]})).await;
    assert_eq!(verdict, "ConfigurationError");
    assert_mentions(&text, &["lists 2 images", "set UserParameters.container"]);
    let bucket = unique("artifacts").to_lowercase();
    bed.pipeline_artifact_raw(&bucket, "in/junk.zip", "bm90IGEgemlw")
        .await;
    let id = job_id();
    run(
        &f,
        job_event(
            &id,
            "image-gate",
            "",
            &[("BuildOutput", &bucket, "in/junk.zip")],
            None,
        ),
    )
    .await;
    let (verdict, text) = describe(&single_report(bed, &id).await);
    assert_eq!(verdict, "ConfigurationError");
    assert_mentions(&text, &["not a readable zip file"]);
}

/// Events without a job id end in a Lambda error and report nothing; a job id with a broken
/// rest still gets its report.
#[tokio::test]
async fn bad_events() {
    let bed = Testbed::shared();
    let f = gate(bed, &[]).await;
    let load = |name: &str| -> Value {
        let p = deploy_guard_tests::repo_root()
            .join("events/image-gate")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(p).expect("event")).expect("json")
    };
    let long = "7".repeat(100_000);
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "\"CodePipeline.job\" is missing"),
        (load("bad-no-job-id.json"), "CodePipeline.job.id is missing"),
        (
            json!({"CodePipeline.job": {"id": 42}}),
            "id must be a string, found a number",
        ),
        (
            json!({"CodePipeline.job": {"id": long}}),
            "(100000 characters)",
        ),
        (
            json!({"CodePipeline.job": {"id": "\u{7}\u{1b}[31m"}}),
            "\\u{7}",
        ),
    ];
    for (event, words) in cases {
        let inv = f.invoke(event, Duration::from_secs(20)).await;
        let err = inv.error.expect("a Lambda error without a job id");
        let err = err["errorMessage"].as_str().unwrap_or_default().to_string();
        assert_mentions(&err, &[words]);
    }
    assert!(
        f.outcomes().iter().all(|o| o["verdict"] == "none"),
        "nothing was reported"
    );
    let mut broken = load("bad-data.json");
    let id = job_id();
    broken["CodePipeline.job"]["id"] = json!(id);
    broken["CodePipeline.job"]["unknownExtra"] = json!({"x": 1});
    run(&f, broken).await;
    let (verdict, text) = describe(&single_report(bed, &id).await);
    assert_eq!(verdict, "JobFailed");
    assert_mentions(
        &text,
        &["CodePipeline.job.data.inputArtifacts: invalid type"],
    );
}

#[tokio::test]
async fn access_denied_reading_the_artifact_is_a_permission_error() {
    let bed = Testbed::shared();
    let bucket = unique("artifacts").to_lowercase();
    bed.pipeline_artifact(
        &bucket,
        "in/denied.zip",
        json!({"imageDetail.json": {"ImageURI": "shop:1.0.0"}}),
        true,
    )
    .await;
    bed.fault(json!({"service": "s3", "operation": "GetObject", "match_text": format!("{bucket}/"), "mode": "access_denied"})).await;
    let f = gate(bed, &[]).await;
    let id = job_id();
    run(
        &f,
        job_event(
            &id,
            "image-gate",
            "",
            &[("BuildOutput", &bucket, "in/denied.zip")],
            None,
        ),
    )
    .await;
    let (verdict, text) = describe(&single_report(bed, &id).await);
    assert_eq!(verdict, "PermissionError");
    assert_mentions(
        &text,
        &[
            "could not read input artifact \"BuildOutput\"",
            "with the job's artifact credentials",
            "AccessDenied",
        ],
    );
}

#[tokio::test]
async fn ecr_faults_fail_with_the_reason() {
    let bed = Testbed::shared();
    let repo = unique("shop");
    let (uri, _) = image(bed, &repo, &["1.0.0"], json!({})).await;
    let f = gate(bed, &[]).await;
    bed.fault(json!({"service": "ecr", "operation": "DescribeImages", "match_text": format!("{repo}\""), "mode": "internal_error"})).await;
    bed.fault(json!({"service": "ecr", "operation": "DescribeRepositories", "match_text": format!("{repo}\""), "mode": "access_denied"})).await;
    let id = job_id();
    run(
        &f,
        job_event(
            &id,
            "image-gate",
            &json!({"image": format!("{uri}:1.0.0")}).to_string(),
            &[],
            None,
        ),
    )
    .await;
    let (verdict, text) = describe(&single_report(bed, &id).await);
    assert_eq!(verdict, "PermissionError", "{text}");
    assert_mentions(
        &text,
        &[
            "exists: DescribeImages failed",
            "InternalFailure",
            "repository: DescribeRepositories failed",
            "AccessDeniedException",
            "needs ecr:DescribeRepositories",
        ],
    );
    assert_eq!(
        bed.calls("ecr", "DescribeImages", &format!("{repo}\""))
            .await
            .len(),
        3,
        "retried by the standard mode"
    );
}

#[tokio::test]
async fn a_hung_ecr_still_gets_a_report_before_the_deadline() {
    let bed = Testbed::shared();
    let repo = unique("shop");
    let (uri, _) = image(bed, &repo, &["1.0.0"], json!({})).await;
    bed.fault(json!({"service": "ecr", "operation": "DescribeImages", "match_text": format!("{repo}\""), "mode": "hang", "hang_seconds": 30})).await;
    let f = gate(
        bed,
        &[
            ("AWS_ATTEMPT_TIMEOUT_MS", "20000"),
            ("AWS_OPERATION_TIMEOUT_MS", "25000"),
        ],
    )
    .await;
    let id = job_id();
    let budget = Duration::from_secs(5);
    let inv = f
        .invoke(
            job_event(
                &id,
                "image-gate",
                &json!({"image": format!("{uri}:1.0.0")}).to_string(),
                &[],
                None,
            ),
            budget,
        )
        .await;
    assert!(inv.error.is_none(), "{inv:?}");
    let (verdict, text) = describe(&single_report(bed, &id).await);
    assert_eq!(verdict, "JobFailed", "{text}");
    assert_mentions(&text, &["ran out of time"]);
}

#[tokio::test]
async fn a_deadline_already_past_still_reports() {
    let bed = Testbed::shared();
    let f = gate(bed, &[]).await;
    let id = job_id();
    let past = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
        - 1000;
    f.invoke_at(
        job_event(&id, "image-gate", r#"{"image": "shop:1.0.0"}"#, &[], None),
        past,
        Duration::from_secs(15),
    )
    .await;
    let (verdict, text) = describe(&single_report(bed, &id).await);
    assert_eq!(verdict, "JobFailed");
    assert_mentions(&text, &["no time to check"]);
    assert_eq!(single_outcome(&f)["report"], "delivered");
}

#[tokio::test]
async fn throttled_reports_are_retried_and_a_duplicate_job_is_done_not_an_error() {
    let bed = Testbed::shared();
    let repo = unique("shop");
    let (uri, _) = image(bed, &repo, &["1.0.0"], json!({})).await;
    let f = gate(bed, &[]).await;
    let id = job_id();
    bed.fault(json!({"service": "codepipeline", "operation": "PutJobSuccessResult", "match_text": id, "mode": "throttle", "times": 2})).await;
    let event = job_event(
        &id,
        "image-gate",
        &json!({"image": format!("{uri}:1.0.0")}).to_string(),
        &[],
        None,
    );
    run(&f, event.clone()).await;
    run(&f, event).await;
    let reports = bed.job_reports(&id).await;
    let errors: Vec<Option<String>> = reports.iter().map(|c| c.error.clone()).collect();
    assert_eq!(
        errors,
        vec![
            Some("ThrottlingException".into()),
            Some("ThrottlingException".into()),
            None,
            Some("InvalidJobStateException".into())
        ]
    );
    let outcomes: Vec<String> = f
        .outcomes()
        .iter()
        .map(|o| o["report"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(outcomes, vec!["delivered", "already reported"]);
}

#[tokio::test]
async fn a_report_that_never_gets_through_is_a_lambda_error() {
    let bed = Testbed::shared();
    let f = gate(bed, &[]).await;
    let id = job_id();
    bed.fault(json!({"service": "codepipeline", "match_text": id, "mode": "throttle"}))
        .await;
    let inv = f
        .invoke(
            job_event(&id, "image-gate", "not json", &[], None),
            Duration::from_secs(20),
        )
        .await;
    let err = inv
        .error
        .expect("a Lambda error so that Lambda retries")
        .to_string();
    assert_mentions(
        &err,
        &["could not report the Failed verdict", "ThrottlingException"],
    );
    assert_eq!(
        bed.job_reports(&id).await.len(),
        3,
        "standard retry mode: 3 attempts"
    );
    assert_mentions(
        single_outcome(&f)["report"].as_str().unwrap_or_default(),
        &["not delivered"],
    );
}

#[tokio::test]
async fn a_configuration_error_in_the_environment_fails_every_job_naming_the_variable() {
    let bed = Testbed::shared();
    let f = gate(bed, &[("ARTIFACT_MAX_BYTES", "huge")]).await;
    let id = job_id();
    run(
        &f,
        job_event(&id, "image-gate", r#"{"image": "shop:1.0.0"}"#, &[], None),
    )
    .await;
    let (verdict, text) = describe(&single_report(bed, &id).await);
    assert_eq!(verdict, "ConfigurationError");
    assert_mentions(&text, &["ARTIFACT_MAX_BYTES", "\"huge\""]);
}
