//! One job of the image gate: read the job, find the image (UserParameters, or the input
//! artifact's `imageDetail.json` / `imagedefinitions.json`), gather facts from ECR, decide,
//! and report exactly once.
//!
//! Whatever happens inside (a panic, bad parameters, an AWS error, the budget running out)
//! becomes a failure report with its reason and type. Only an event without a job id ends in a
//! Lambda error, and so does a report that could not be delivered (so Lambda's retry may).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_ecr::types::ImageIdentifier;
use deploy_guard::aws::{describe_sdk_error, error_code};
use deploy_guard::budget::Budget;
use deploy_guard::config::{AwsSettings, ConfigError};
use deploy_guard::pipeline::{
    self, artifact_reader, read_artifact, unzip_member, user_parameters, zip_names, ArtifactError,
    FailureKind, Job, Verdict,
};
use deploy_guard::s3get::S3Reader;
use deploy_guard::text::quote;
use lambda_runtime::{Error, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::GateConfig;
use crate::policy::{
    decide, EcrImage, Facts, Finding, ImageRef, Params, Policy, Problem, RepositoryFacts,
    ScanFacts, Severity,
};

/// Everything built once per process.
pub struct App {
    pub codepipeline: aws_sdk_codepipeline::Client,
    pub ecr: aws_sdk_ecr::Client,
    /// The process's S3 reader, from which each job's artifact reader is made.
    pub s3: S3Reader,
    pub region: String,
    pub aws: AwsSettings,
    pub config: Result<GateConfig, ConfigError>,
}

/// The files looked for at the artifact's root, in order.
const IMAGE_FILES: &[&str] = &["imageDetail.json", "imagedefinitions.json"];
/// Most pages of scan findings read (1000 findings each).
const MAX_FINDING_PAGES: usize = 20;

/// The verdict and what explains it.
#[derive(Debug)]
struct Evaluation {
    verdict: Verdict,
    image: Option<String>,
    source: Option<String>,
    tag: Option<String>,
    digest: Option<String>,
    warnings: Vec<String>,
}

impl Evaluation {
    fn failed(kind: FailureKind, reason: impl Into<String>) -> Self {
        Self::from(Verdict::failed(kind, reason))
    }
}

impl From<Verdict> for Evaluation {
    fn from(verdict: Verdict) -> Self {
        Self {
            verdict,
            image: None,
            source: None,
            tag: None,
            digest: None,
            warnings: vec![],
        }
    }
}

/// The Lambda handler.
pub async fn handle(app: &App, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, ctx) = event.into_parts();
    let reserve = app
        .config
        .as_ref()
        .map(|c| c.report_reserve)
        .unwrap_or(Duration::from_secs(3));
    let budget = Budget::from_deadline(ctx.deadline(), reserve);
    let work = |job: Job| async move {
        let ev = evaluate(app, &job).await;
        let fields = json!({
            "image": ev.image,
            "source": ev.source,
            "tag": ev.tag,
            "digest": ev.digest,
            "warnings": ev.warnings,
        });
        (ev.verdict, fields.as_object().cloned().unwrap_or_default())
    };
    pipeline::handle_job(
        "image-gate",
        &app.codepipeline,
        &app.aws,
        &payload,
        &budget,
        work,
    )
    .await
    .map_err(Error::from)
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn evaluate(app: &App, job: &Job) -> Evaluation {
    let config = match &app.config {
        Ok(c) => c,
        Err(e) => return Evaluation::failed(FailureKind::ConfigurationError, e.to_string()),
    };
    let policy =
        match user_parameters::<Params>(job.data.user_parameters()).and_then(Params::compile) {
            Ok(p) => p,
            Err(e) => return Evaluation::failed(FailureKind::ConfigurationError, e),
        };
    let located = match locate(app, config, job, &policy).await {
        Ok(l) => l,
        Err(e) => return Evaluation::failed(e.kind, e.message),
    };
    let facts = gather(app, located).await;
    let d = decide(&facts, &policy, now_s());
    let name = facts.image.short();
    let mut ev = Evaluation {
        verdict: Verdict::failed(FailureKind::JobFailed, "undecided"),
        image: Some(name.clone()),
        source: Some(facts.source.clone()),
        tag: d.tag.clone(),
        digest: d.digest.clone(),
        warnings: d.warnings.clone(),
    };
    ev.verdict = if d.failures.is_empty() {
        let (Some(tag), Some(digest)) = (&d.tag, &d.digest) else {
            return Evaluation::failed(
                FailureKind::JobFailed,
                "internal error: passed without a tag and digest",
            );
        };
        let registry = facts.image.registry.clone().unwrap_or_else(|| {
            let account = facts
                .ecr
                .as_ref()
                .map(|e| e.registry_id.clone())
                .unwrap_or_default();
            format!("{account}.dkr.ecr.{}.amazonaws.com", app.region)
        });
        let pinned = format!("{registry}/{}@{digest}", facts.image.repository);
        let mut summary = format!(
            "image {name} allowed ({}): {}; ship {pinned}",
            facts.source,
            d.passed.join("; ")
        );
        for w in &d.warnings {
            summary.push_str(&format!("; warning: {w}"));
        }
        let output_variables = BTreeMap::from([
            ("ImageUri".to_string(), pinned),
            ("ImageDigest".to_string(), digest.clone()),
            ("ImageTag".to_string(), tag.clone()),
            (
                "ImageRepository".to_string(),
                facts.image.repository.clone(),
            ),
        ]);
        Verdict::Succeeded {
            summary,
            output_variables,
        }
    } else {
        let mut reasons = vec![format!(
            "image {name} refused ({}), {} rule(s) failed",
            facts.source,
            d.failures.len()
        )];
        reasons.extend(d.failures);
        reasons.extend(d.warnings.iter().map(|w| format!("warning: {w}")));
        Verdict::Failed {
            kind: d.kind.unwrap_or(FailureKind::JobFailed),
            reasons,
        }
    };
    ev
}

/// The image to check and where it came from.
struct Located {
    image: ImageRef,
    source: String,
    artifact_tags: Vec<String>,
}

#[derive(Deserialize)]
struct ImageDetail {
    #[serde(rename = "ImageURI")]
    image_uri: String,
    #[serde(rename = "ImageDigest", default)]
    image_digest: Option<String>,
    #[serde(rename = "ImageTags", default)]
    image_tags: Vec<String>,
}

#[derive(Deserialize)]
struct ImageDefinition {
    name: String,
    #[serde(rename = "imageUri")]
    image_uri: String,
}

fn config_error(msg: impl Into<String>) -> ArtifactError {
    ArtifactError {
        kind: FailureKind::ConfigurationError,
        message: msg.into(),
    }
}

async fn locate(
    app: &App,
    config: &GateConfig,
    job: &Job,
    policy: &Policy,
) -> Result<Located, ArtifactError> {
    if let Some(image) = &policy.image {
        return Ok(Located {
            image: image.clone(),
            source: "UserParameters.image".into(),
            artifact_tags: vec![],
        });
    }
    let inputs = &job.data.input_artifacts;
    let artifact = match &policy.artifact {
        Some(name) => inputs.iter().find(|a| &a.name == name).ok_or_else(|| {
            let names: Vec<String> = inputs.iter().map(|a| quote(&a.name, 60)).collect();
            config_error(format!(
                "UserParameters.artifact: no input artifact is named {}; the action has [{}]",
                quote(name, 60),
                names.join(", ")
            ))
        })?,
        None => inputs.first().ok_or_else(|| {
            config_error("no image to check: give the action an input artifact holding imageDetail.json (ECR source action) or imagedefinitions.json (a build step), or set UserParameters.image")
        })?,
    };
    let artifact_name = quote(&artifact.name, 60);
    let Some(creds) = &job.data.artifact_credentials else {
        return Err(ArtifactError {
            kind: FailureKind::JobFailed,
            message: format!(
                "the job carries no artifactCredentials to read input artifact {artifact_name}"
            ),
        });
    };
    let s3 = artifact_reader(&app.s3, creds);
    let zip = read_artifact(&s3, artifact, config.artifact_max_bytes).await?;
    let file = unzip_member(&zip, IMAGE_FILES, config.file_max_bytes)
        .map_err(|e| config_error(format!("input artifact {artifact_name}: {e}")))?
        .ok_or_else(|| {
            config_error(format!(
                "input artifact {artifact_name} has neither imageDetail.json nor imagedefinitions.json at its root (it holds [{}])",
                zip_names(&zip, 10).join(", ")
            ))
        })?;
    let source = format!("{} in artifact {artifact_name}", file.name);
    let bad = |e: String| config_error(format!("{source}: {e}"));
    if file.name == "imageDetail.json" {
        let detail: ImageDetail =
            serde_json::from_slice(&file.bytes).map_err(|e| bad(e.to_string()))?;
        let mut image =
            ImageRef::parse(&detail.image_uri).map_err(|e| bad(format!("ImageURI: {e}")))?;
        if let Some(d) = detail.image_digest.filter(|d| !d.is_empty()) {
            let parsed =
                ImageRef::parse(&format!("x@{d}")).map_err(|e| bad(format!("ImageDigest: {e}")))?;
            match &image.digest {
                Some(uri_digest) if *uri_digest != d => {
                    return Err(bad(format!(
                        "ImageURI names {uri_digest} but ImageDigest is {d}"
                    )))
                }
                _ => image.digest = parsed.digest,
            }
        }
        return Ok(Located {
            image,
            source,
            artifact_tags: detail.image_tags,
        });
    }
    let defs: Vec<ImageDefinition> =
        serde_json::from_slice(&file.bytes).map_err(|e| bad(e.to_string()))?;
    let def = match (&policy.container, defs.len()) {
        (_, 0) => return Err(bad("lists no image".into())),
        (Some(c), _) => defs.iter().find(|d| &d.name == c).ok_or_else(|| {
            bad(format!(
                "no entry is named {} (UserParameters.container); it lists [{}]",
                quote(c, 60),
                defs.iter()
                    .map(|d| quote(&d.name, 60))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?,
        (None, 1) => &defs[0],
        (None, _) => {
            return Err(bad(format!(
                "lists {} images ([{}]); set UserParameters.container to the one to check",
                defs.len(),
                defs.iter()
                    .map(|d| quote(&d.name, 60))
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let image = ImageRef::parse(&def.image_uri)
        .map_err(|e| bad(format!("imageUri of {}: {e}", quote(&def.name, 60))))?;
    Ok(Located {
        image,
        source: format!("{source}, container {}", quote(&def.name, 60)),
        artifact_tags: vec![],
    })
}

/// An ECR error as a fact: not found, denied (PermissionError), or anything else.
fn problem<E, R>(
    op: &str,
    e: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
    not_found: impl FnOnce(&str) -> Option<String>,
) -> Problem
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let code = error_code(e).unwrap_or_default().to_string();
    if let Some(msg) = not_found(&code) {
        return Problem::failed(msg);
    }
    let kind = FailureKind::of_aws_code(Some(&code));
    let hint = if kind == FailureKind::PermissionError {
        format!(" (the function's role needs ecr:{op} on the repository)")
    } else {
        String::new()
    };
    Problem {
        kind,
        message: format!("{op} failed: {}{hint}", describe_sdk_error(e)),
    }
}

async fn gather(app: &App, located: Located) -> Facts {
    let Located {
        image,
        source,
        artifact_tags,
    } = located;
    let registry_id = image.ecr_registry().map(|(account, _)| account);
    let id = match (&image.tag, &image.digest) {
        (Some(t), _) => ImageIdentifier::builder().image_tag(t).build(),
        (None, Some(d)) => ImageIdentifier::builder().image_digest(d).build(),
        (None, None) => ImageIdentifier::builder().image_tag("latest").build(),
    };
    let repo = image.repository.clone();
    let name = image.short();
    let (images, repos) = tokio::join!(
        app.ecr
            .describe_images()
            .repository_name(&repo)
            .set_registry_id(registry_id.clone())
            .image_ids(id)
            .send(),
        app.ecr
            .describe_repositories()
            .repository_names(&repo)
            .set_registry_id(registry_id.clone())
            .send()
    );
    let repo_missing = |code: &str| {
        (code == "RepositoryNotFoundException").then(|| {
            format!(
                "repository {repo} does not exist in ECR{}",
                registry_id
                    .as_deref()
                    .map(|r| format!(" (registry {r})"))
                    .unwrap_or_default()
            )
        })
    };
    let ecr = match images {
        Ok(out) => match out.image_details().first() {
            Some(d) => Ok(EcrImage {
                registry_id: d.registry_id().unwrap_or_default().to_string(),
                digest: d.image_digest().unwrap_or_default().to_string(),
                tags: d.image_tags().to_vec(),
                pushed_at: d.image_pushed_at().map(|t| t.secs()),
            }),
            None => Err(Problem::failed(format!(
                "image {name} is not in ECR repository {repo}"
            ))),
        },
        Err(e) => Err(problem("DescribeImages", &e, |code| {
            (code == "ImageNotFoundException")
                .then(|| format!("image {name} is not in ECR repository {repo}"))
                .or_else(|| repo_missing(code))
        })),
    };
    let repository = match repos {
        Ok(out) => match out.repositories().first() {
            Some(r) => Ok(RepositoryFacts {
                mutability: r
                    .image_tag_mutability()
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_else(|| "MUTABLE".into()),
                exclusions: r
                    .image_tag_mutability_exclusion_filters()
                    .iter()
                    .map(|f| f.filter().to_string())
                    .collect(),
            }),
            None => Err(Problem::failed(format!(
                "repository {repo} does not exist in ECR"
            ))),
        },
        Err(e) => Err(problem("DescribeRepositories", &e, repo_missing)),
    };
    let scan = match &ecr {
        Ok(found) if !found.digest.is_empty() => {
            Some(scan(app, &repo, registry_id.clone(), &found.digest).await)
        }
        _ => None,
    };
    Facts {
        image,
        source,
        artifact_tags,
        region: app.region.clone(),
        ecr,
        repository,
        scan,
    }
}

async fn scan(
    app: &App,
    repo: &str,
    registry_id: Option<String>,
    digest: &str,
) -> Result<ScanFacts, Problem> {
    let mut findings = Vec::new();
    let mut counts = BTreeMap::new();
    let mut token: Option<String> = None;
    for page in 0..MAX_FINDING_PAGES {
        let out = app
            .ecr
            .describe_image_scan_findings()
            .repository_name(repo)
            .set_registry_id(registry_id.clone())
            .image_id(ImageIdentifier::builder().image_digest(digest).build())
            .max_results(1000)
            .set_next_token(token.clone())
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) if error_code(&e) == Some("ScanNotFoundException") => {
                return Ok(ScanFacts::None)
            }
            Err(e) => return Err(problem("DescribeImageScanFindings", &e, |_| None)),
        };
        let status = out
            .image_scan_status()
            .and_then(|s| s.status())
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        if status != "COMPLETE" && status != "ACTIVE" {
            return Ok(ScanFacts::Unfinished {
                status: if status.is_empty() {
                    "unknown".into()
                } else {
                    status
                },
                description: out
                    .image_scan_status()
                    .and_then(|s| s.description())
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        if let Some(f) = out.image_scan_findings() {
            if page == 0 {
                if let Some(c) = f.finding_severity_counts() {
                    for (sev, n) in c {
                        counts.insert(Severity::parse(sev.as_str()), (*n).max(0) as u32);
                    }
                }
            }
            for x in f.findings() {
                findings.push(Finding {
                    id: x.name().unwrap_or("unnamed").to_string(),
                    severity: Severity::parse(
                        x.severity().map(|s| s.as_str()).unwrap_or("UNDEFINED"),
                    ),
                });
            }
            for x in f.enhanced_findings() {
                let id = x
                    .package_vulnerability_details()
                    .and_then(|p| p.vulnerability_id())
                    .or(x.title())
                    .unwrap_or("unnamed")
                    .to_string();
                findings.push(Finding {
                    id,
                    severity: Severity::parse(x.severity().unwrap_or("UNDEFINED")),
                });
            }
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(ScanFacts::Complete { findings, counts });
        }
    }
    Err(Problem::failed(format!(
        "more than {} findings; too many to judge (fix the image, or raise the limits in a separate gate)",
        MAX_FINDING_PAGES * 1000
    )))
}

/// SDK-level tests for what the test bed cannot produce (a panic mid-check), and the protocol's
/// edges. Unmatched SDK calls fail these tests.
#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_codepipeline::operation::put_job_failure_result::PutJobFailureResultOutput;
    use aws_sdk_codepipeline::operation::put_job_success_result::PutJobSuccessResultOutput;
    use aws_sdk_codepipeline::types::FailureType;
    use aws_sdk_ecr::operation::describe_image_scan_findings::DescribeImageScanFindingsOutput;
    use aws_sdk_ecr::operation::describe_images::DescribeImagesOutput;
    use aws_sdk_ecr::operation::describe_repositories::DescribeRepositoriesOutput;
    use aws_sdk_ecr::types::{
        ImageDetail as EcrDetail, ImageScanFindings, ImageScanStatus, ImageTagMutability,
        Repository, ScanStatus,
    };
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use deploy_guard::config::Env;

    const JOB: &str = "0a1b2c3d-0000-4000-8000-00000000abcd";
    const DIGEST: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    fn app(cp: &[&Rule], ecr: &[&Rule]) -> App {
        let (aws, config) = crate::config::load(&Env::from_pairs([]));
        App {
            codepipeline: mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, cp),
            ecr: mock_client!(aws_sdk_ecr, RuleMode::MatchAny, ecr),
            s3: S3Reader::new(
                &aws_types::SdkConfig::builder()
                    .region(aws_types::region::Region::new("us-east-1"))
                    .build(),
                &aws,
            ),
            region: "us-east-1".into(),
            aws,
            config,
        }
    }

    fn event(params: &str) -> LambdaEvent<Value> {
        let payload = json!({"CodePipeline.job": {"id": JOB, "accountId": "123456789012", "data": {
            "actionConfiguration": {"configuration": {"FunctionName": "image-gate", "UserParameters": params}},
            "inputArtifacts": [], "outputArtifacts": [],
            "artifactCredentials": {"accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "s", "sessionToken": "t"}}}});
        let mut ctx = lambda_runtime::Context::default();
        ctx.deadline = (now_s() as u64 + 10) * 1000;
        LambdaEvent::new(payload, ctx)
    }

    fn failure(kind: FailureType) -> Rule {
        mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
            .match_requests(move |r| {
                r.job_id() == Some(JOB) && r.failure_details().map(|d| d.r#type()) == Some(&kind)
            })
            .then_output(|| PutJobFailureResultOutput::builder().build())
    }

    fn repo_rule() -> Rule {
        mock!(aws_sdk_ecr::Client::describe_repositories).then_output(|| {
            DescribeRepositoriesOutput::builder()
                .repositories(
                    Repository::builder()
                        .repository_name("shop")
                        .image_tag_mutability(ImageTagMutability::Immutable)
                        .build(),
                )
                .build()
        })
    }

    #[tokio::test]
    async fn a_panic_mid_check_is_reported_as_job_failed() {
        let images = mock!(aws_sdk_ecr::Client::describe_images)
            .then_compute_output(|_| -> DescribeImagesOutput { panic!("ecr boom") });
        let repos = repo_rule();
        let failed = failure(FailureType::JobFailed);
        let app = app(&[&failed], &[&images, &repos]);
        let out = handle(&app, event(r#"{"image": "shop:1.4.0"}"#))
            .await
            .expect("reported");
        assert_eq!(failed.num_calls(), 1, "exactly one failure report");
        assert!(
            out["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("ecr boom"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn an_allowed_image_reports_success_with_pinned_output_variables() {
        let images = mock!(aws_sdk_ecr::Client::describe_images).then_output(|| {
            DescribeImagesOutput::builder()
                .image_details(
                    EcrDetail::builder()
                        .registry_id("123456789012")
                        .image_digest(DIGEST)
                        .image_tags("1.4.0")
                        .build(),
                )
                .build()
        });
        let repos = repo_rule();
        let findings = mock!(aws_sdk_ecr::Client::describe_image_scan_findings).then_output(|| {
            DescribeImageScanFindingsOutput::builder()
                .image_scan_status(
                    ImageScanStatus::builder()
                        .status(ScanStatus::Complete)
                        .build(),
                )
                .image_scan_findings(ImageScanFindings::builder().build())
                .build()
        });
        let success = mock!(aws_sdk_codepipeline::Client::put_job_success_result)
            .match_requests(|r| {
                let vars = r.output_variables();
                r.continuation_token().is_none()
                    && vars.and_then(|v| v.get("ImageUri")).map(String::as_str)
                        == Some(&*format!(
                            "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop@{DIGEST}"
                        ))
                    && vars.and_then(|v| v.get("ImageTag")).map(String::as_str) == Some("1.4.0")
            })
            .then_output(|| PutJobSuccessResultOutput::builder().build());
        let app = app(&[&success], &[&images, &repos, &findings]);
        let out = handle(&app, event(r#"{"image": "shop:1.4.0"}"#))
            .await
            .expect("reported");
        assert_eq!(success.num_calls(), 1, "{out}");
        assert_eq!(out["verdict"], "Succeeded");
    }

    #[tokio::test]
    async fn bad_parameters_are_a_configuration_error_and_touch_no_ecr() {
        let failed = failure(FailureType::ConfigurationError);
        let app = app(&[&failed], &[]);
        let out = handle(&app, event(r#"{"tag_pattern": "(", "image": "shop:1"}"#))
            .await
            .expect("reported");
        assert_eq!(failed.num_calls(), 1);
        assert!(
            out["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("UserParameters.tag_pattern"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn an_event_without_a_job_id_is_a_lambda_error_and_reports_nothing() {
        let failed = failure(FailureType::JobFailed);
        let app = app(&[&failed], &[]);
        let mut ctx = lambda_runtime::Context::default();
        ctx.deadline = (now_s() as u64 + 10) * 1000;
        let err = handle(
            &app,
            LambdaEvent::new(json!({"CodePipeline.job": {"data": {}}}), ctx),
        )
        .await
        .expect_err("no id");
        assert!(err.to_string().contains("id is missing"), "{err}");
        assert_eq!(failed.num_calls(), 0);
    }
}
