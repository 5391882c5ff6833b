//! The CodePipeline job protocol (Lambda invoke action), shared by the image gate and the bake
//! timer.
//!
//! - [`classify`] reads the job id leniently from a `serde_json::Value` first, so that whatever
//!   else is wrong with the event, a job id still gets its report (reliability.md, invariant 3).
//! - [`user_parameters`] parses `UserParameters` (at most 1000 characters) against a strict
//!   schema; every error names the field.
//! - [`ArtifactCredentials`] hold the job's live temporary credentials in [`Secret`]s: they are
//!   never formatted, and an error about their shape never quotes them.
//! - [`artifact_reader`], [`read_artifact`] and [`unzip_member`] read an input artifact from
//!   S3 with the job's credentials (SSE-KMS artifacts decrypt transparently) and unzip one file
//!   of it in memory, with caps on both sizes.
//! - [`Verdict`] and [`report`]: exactly one `PutJobSuccessResult` (the verdict in
//!   `executionDetails.summary`, a continuation token or output variables) or
//!   `PutJobFailureResult` (JobFailed, ConfigurationError, PermissionError) per job, bounded by
//!   the invocation's deadline. `InvalidJobStateException` after an earlier report is "done".
//! - [`guarded`] runs a job's work under `catch_unwind` and the budget, so a panic or a hang
//!   still ends in a Failed verdict with its reason.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::aws::{describe_sdk_error, error_code, report_timeouts};
use crate::budget::Budget;
use crate::config::AwsSettings;
use crate::s3get::S3Reader;
use crate::secret::Secret;
use crate::signed::CallError;
use crate::telemetry::emit_outcome;
use crate::text::{join_capped, quote};

/// The event's top-level key.
pub const JOB_KEY: &str = "CodePipeline.job";
/// CodePipeline's limit on `UserParameters`.
pub const USER_PARAMETERS_MAX: usize = 1000;
/// CodePipeline's limit on a continuation token.
pub const CONTINUATION_TOKEN_MAX: usize = 2048;
/// CodePipeline's limit on `executionDetails.summary`.
pub const SUMMARY_MAX: usize = 2048;
/// CodePipeline's limit on `failureDetails.message`.
pub const FAILURE_MESSAGE_MAX: usize = 5000;

// ---------------------------------------------------------------------------------------------
// The event

/// One CodePipeline job: its id and its data.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub account_id: Option<String>,
    pub data: JobData,
}

/// `CodePipeline.job.data`. Unknown fields are ignored (CodePipeline adds fields over time);
/// the fields read have to have the documented types.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobData {
    #[serde(default)]
    pub action_configuration: ActionConfiguration,
    #[serde(default)]
    pub input_artifacts: Vec<Artifact>,
    #[serde(default)]
    pub output_artifacts: Vec<Artifact>,
    #[serde(default)]
    pub artifact_credentials: Option<ArtifactCredentials>,
    #[serde(default)]
    pub continuation_token: Option<String>,
    #[serde(default)]
    pub encryption_key: Option<EncryptionKey>,
}

impl JobData {
    /// `actionConfiguration.configuration.UserParameters`, if set.
    pub fn user_parameters(&self) -> Option<&str> {
        self.action_configuration
            .configuration
            .user_parameters
            .as_deref()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ActionConfiguration {
    #[serde(default)]
    pub configuration: ActionConfigurationValues,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ActionConfigurationValues {
    #[serde(default)]
    pub function_name: Option<String>,
    #[serde(default)]
    pub user_parameters: Option<String>,
}

/// An input or output artifact.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub location: Option<ArtifactLocation>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactLocation {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub s3_location: Option<S3Location>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Location {
    pub bucket_name: String,
    pub object_key: String,
}

/// The job's temporary credentials for its artifacts. Every field is a [`Secret`]: formatting
/// prints `[redacted]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactCredentials {
    pub access_key_id: Secret<String>,
    pub secret_access_key: Secret<String>,
    #[serde(default)]
    pub session_token: Option<Secret<String>>,
}

/// The artifact store's KMS key (informational: S3 decrypts SSE-KMS objects itself, given
/// `kms:Decrypt` on the key for the job's credentials).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EncryptionKey {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// What arrived.
#[derive(Debug, Clone)]
pub enum Incoming {
    Job(Box<Job>),
    /// A job id to report against, but the job's data does not parse: reported as failed.
    Invalid {
        job_id: String,
        reason: String,
    },
    /// No job id to report against: the only case that ends in a Lambda error.
    Unreportable(String),
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

/// True for the UUIDs CodePipeline uses as job ids (`8-4-4-4-12` hexadecimal digits).
pub fn is_job_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Classifies a raw invoke event: the job id leniently, then the job's data.
pub fn classify(event: &Value) -> Incoming {
    let Some(obj) = event.as_object() else {
        return Incoming::Unreportable(format!(
            "the event is not a JSON object (found {}); expected a CodePipeline job {{\"{JOB_KEY}\": {{\"id\", \"data\"}}}}",
            kind(event)
        ));
    };
    let Some(job) = obj.get(JOB_KEY) else {
        let keys: Vec<String> = obj.keys().take(10).map(|k| quote(k, 40)).collect();
        return Incoming::Unreportable(format!(
            "the event is not a CodePipeline job: \"{JOB_KEY}\" is missing; found keys [{}]",
            keys.join(", ")
        ));
    };
    let Some(job) = job.as_object() else {
        return Incoming::Unreportable(format!(
            "\"{JOB_KEY}\" must be an object, found {}",
            kind(job)
        ));
    };
    let id = match job.get("id") {
        None | Some(Value::Null) => {
            return Incoming::Unreportable(format!(
                "{JOB_KEY}.id is missing: nothing to report against"
            ))
        }
        Some(Value::String(s)) if is_job_id(s) => s.clone(),
        Some(Value::String(s)) => {
            return Incoming::Unreportable(format!(
                "{JOB_KEY}.id must be a job id (a UUID), found {}",
                quote(s, 80)
            ))
        }
        Some(other) => {
            return Incoming::Unreportable(format!(
                "{JOB_KEY}.id must be a string, found {}",
                kind(other)
            ))
        }
    };
    let account_id = job
        .get("accountId")
        .and_then(Value::as_str)
        .map(|s| s.chars().take(64).collect());
    let data = match job.get("data") {
        None | Some(Value::Null) => {
            return Incoming::Invalid {
                job_id: id,
                reason: format!("{JOB_KEY}.data is missing"),
            }
        }
        Some(d) => d,
    };
    match serde_path_to_error::deserialize::<_, JobData>(data) {
        Ok(data) => Incoming::Job(Box::new(Job {
            id,
            account_id,
            data,
        })),
        Err(e) => {
            let path = e.path().to_string();
            // Never quote what sits under artifactCredentials: serde's message may hold the value.
            let problem = if path.starts_with("artifactCredentials") {
                "does not have the expected shape {accessKeyId, secretAccessKey, sessionToken} (the value is not shown: it holds credentials)".to_string()
            } else {
                cap_chars(&e.inner().to_string(), 300)
            };
            Incoming::Invalid {
                job_id: id,
                reason: format!("{JOB_KEY}.data.{path}: {problem}"),
            }
        }
    }
}

fn cap_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max).collect();
        format!("{head}…")
    }
}

/// Parses `UserParameters` into `T` (whose fields should refuse unknown names). Unset or blank
/// parses as `{}`. Errors name the field: `UserParameters.scan.max.HIGH: invalid type: …`.
pub fn user_parameters<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, String> {
    let text = raw.map(str::trim).filter(|s| !s.is_empty()).unwrap_or("{}");
    let n = text.chars().count();
    if n > USER_PARAMETERS_MAX {
        return Err(format!(
            "UserParameters is {n} characters long; CodePipeline allows at most {USER_PARAMETERS_MAX}"
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "UserParameters is not valid JSON ({e}); found {}",
            quote(text, 80)
        )
    })?;
    if !value.is_object() {
        return Err(format!(
            "UserParameters must be a JSON object ({{\"field\": value, …}}), found {}",
            kind(&value)
        ));
    }
    serde_path_to_error::deserialize::<_, T>(&value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            format!("UserParameters: {inner}")
        } else {
            format!("UserParameters.{path}: {inner}")
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Artifacts

/// How a job failed, as CodePipeline's `failureDetails.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum FailureKind {
    /// A check failed, a rule was broken, or something went wrong while checking.
    JobFailed,
    /// The action is configured wrongly: `UserParameters`, the function's environment, the
    /// input artifacts.
    ConfigurationError,
    /// AWS refused access (the function's role or the job's artifact credentials).
    PermissionError,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::JobFailed => "JobFailed",
            FailureKind::ConfigurationError => "ConfigurationError",
            FailureKind::PermissionError => "PermissionError",
        }
    }

    fn sdk(self) -> aws_sdk_codepipeline::types::FailureType {
        use aws_sdk_codepipeline::types::FailureType;
        match self {
            FailureKind::JobFailed => FailureType::JobFailed,
            FailureKind::ConfigurationError => FailureType::ConfigurationError,
            FailureKind::PermissionError => FailureType::PermissionError,
        }
    }

    /// PermissionError for AWS's "access denied" answers (KMS ones included), else JobFailed.
    pub fn of_aws_code(code: Option<&str>) -> Self {
        match code {
            Some(c)
                if c.contains("AccessDenied")
                    || c.contains("Unauthorized")
                    || c.starts_with("KMS.")
                    || c == "InvalidAccessKeyId"
                    || c == "SignatureDoesNotMatch"
                    || c == "ExpiredToken" =>
            {
                FailureKind::PermissionError
            }
            _ => FailureKind::JobFailed,
        }
    }
}

/// A problem reading an input artifact, with the failure type it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ArtifactError {
    pub kind: FailureKind,
    pub message: String,
}

impl ArtifactError {
    fn config(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::ConfigurationError,
            message: message.into(),
        }
    }

    fn failed(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::JobFailed,
            message: message.into(),
        }
    }
}

/// An S3 reader signing with the job's artifact credentials, made from the process's reader
/// (its timeouts, retries, region and endpoint). Cheap: the HTTP client is shared.
pub fn artifact_reader(base: &S3Reader, credentials: &ArtifactCredentials) -> S3Reader {
    let creds = aws_credential_types::Credentials::new(
        credentials.access_key_id.expose().clone(),
        credentials.secret_access_key.expose().clone(),
        credentials
            .session_token
            .as_ref()
            .map(|t| t.expose().clone()),
        None,
        "codepipeline-job",
    );
    base.with_credentials(creds)
}

/// Reads an input artifact's object from S3, at most `max_bytes` of it.
pub async fn read_artifact(
    s3: &S3Reader,
    artifact: &Artifact,
    max_bytes: u64,
) -> Result<Vec<u8>, ArtifactError> {
    let name = quote(&artifact.name, 100);
    let loc = match &artifact.location {
        Some(l) if l.kind == "S3" => l.s3_location.as_ref(),
        Some(l) => {
            return Err(ArtifactError::config(format!(
                "input artifact {name} is stored in {}, not S3",
                quote(&l.kind, 40)
            )))
        }
        None => None,
    };
    let Some(loc) = loc else {
        return Err(ArtifactError::config(format!(
            "input artifact {name} has no S3 location"
        )));
    };
    let where_ = format!(
        "s3://{}/{}",
        cap_chars(&loc.bucket_name, 63),
        cap_chars(&loc.object_key, 200)
    );
    tracing::debug!(artifact = %name, location = %where_, "reading the input artifact with the job's credentials");
    s3.get(&loc.bucket_name, &loc.object_key, max_bytes)
        .await
        .map_err(|e| match e {
            CallError::TooLarge { len } => ArtifactError::failed(format!(
                "input artifact {name} ({where_}) is {}above the cap of {max_bytes} bytes",
                len.map(|l| format!("{l} bytes, ")).unwrap_or_default()
            )),
            e => ArtifactError {
                kind: match e.code() {
                    Some("NoSuchKey" | "NoSuchBucket") => FailureKind::JobFailed,
                    c => FailureKind::of_aws_code(c),
                },
                message: format!(
                    "could not read input artifact {name} ({where_}) with the job's artifact credentials: {}",
                    e.describe()
                ),
            },
        })
}

/// One file taken out of a zip archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unzipped {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Most entries an artifact may list.
pub const ZIP_MAX_ENTRIES: usize = 10_000;

/// The first of `wanted` (file names at the archive's root, in order of preference) found in
/// `zip`, read whole but at most `max_member_bytes` (the declared size is not trusted: the read
/// itself is capped). `Ok(None)` when none is there; the error of a damaged archive says so.
pub fn unzip_member(
    zip: &[u8],
    wanted: &[&str],
    max_member_bytes: u64,
) -> Result<Option<Unzipped>, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map_err(|e| format!("the artifact is not a readable zip file: {e}"))?;
    if archive.len() > ZIP_MAX_ENTRIES {
        return Err(format!(
            "the artifact's zip lists {} entries, more than the {ZIP_MAX_ENTRIES} accepted",
            archive.len()
        ));
    }
    for name in wanted {
        let mut file = match archive.by_name(name) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => continue,
            Err(e) => return Err(format!("could not open {name} in the artifact: {e}")),
        };
        if file.size() > max_member_bytes {
            return Err(format!(
                "{name} in the artifact is {} bytes uncompressed, above the cap of {max_member_bytes} bytes",
                file.size()
            ));
        }
        let mut bytes = Vec::new();
        (&mut file)
            .take(max_member_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("could not unzip {name} from the artifact: {e}"))?;
        if bytes.len() as u64 > max_member_bytes {
            return Err(format!(
                "{name} in the artifact unzips to more than the cap of {max_member_bytes} bytes"
            ));
        }
        return Ok(Some(Unzipped {
            name: (*name).to_string(),
            bytes,
        }));
    }
    Ok(None)
}

/// The file names at the root of a zip (at most `max`), for error messages.
pub fn zip_names(zip: &[u8], max: usize) -> Vec<String> {
    zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map(|a| {
            a.file_names_raw()
                .take(max)
                .map(|n| quote(&String::from_utf8_lossy(n), 80))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The verdict and its report

/// A job's verdict: what is reported to CodePipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Final success: the summary, and output variables for the next actions.
    Succeeded {
        summary: String,
        output_variables: BTreeMap<String, String>,
    },
    /// Not done yet: success with a continuation token; CodePipeline invokes again.
    InProgress {
        summary: String,
        percent: u8,
        continuation_token: String,
    },
    /// Failure, with every reason.
    Failed {
        kind: FailureKind,
        reasons: Vec<String>,
    },
}

impl Verdict {
    pub fn failed(kind: FailureKind, reason: impl Into<String>) -> Self {
        Verdict::Failed {
            kind,
            reasons: vec![reason.into()],
        }
    }

    /// `Succeeded`, `InProgress` or `Failed`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Succeeded { .. } => "Succeeded",
            Verdict::InProgress { .. } => "InProgress",
            Verdict::Failed { .. } => "Failed",
        }
    }

    /// The failure type, when failed.
    pub fn failure_kind(&self) -> Option<FailureKind> {
        match self {
            Verdict::Failed { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// What the console shows: the summary, or the failure's reasons joined and capped.
    pub fn reason(&self) -> String {
        match self {
            Verdict::Succeeded { summary, .. } | Verdict::InProgress { summary, .. } => {
                cap_chars(summary, SUMMARY_MAX - 16)
            }
            Verdict::Failed { reasons, .. } => join_capped(reasons, "; ", FAILURE_MESSAGE_MAX - 64),
        }
    }
}

/// Sends the one report of `job_id`: `PutJobSuccessResult` or `PutJobFailureResult`, bounded
/// by what is left of the invocation. `Ok("delivered")`, or `Ok("already reported")` when
/// CodePipeline answers `InvalidJobStateException` (a duplicate or a retry after an earlier
/// report: done, not an error).
pub async fn report(
    client: &aws_sdk_codepipeline::Client,
    aws: &AwsSettings,
    job_id: &str,
    verdict: &Verdict,
    budget: &Budget,
) -> Result<&'static str, String> {
    use aws_sdk_codepipeline::types::{ExecutionDetails, FailureDetails};
    let within = budget.report_timeout(aws.operation_timeout, std::time::Duration::from_secs(1));
    let timeouts = aws_sdk_codepipeline::config::Builder::default()
        .timeout_config(report_timeouts(aws, within));
    let reason = verdict.reason();
    let result = match verdict {
        Verdict::Succeeded {
            output_variables, ..
        } => client
            .put_job_success_result()
            .job_id(job_id)
            .execution_details(
                ExecutionDetails::builder()
                    .summary(reason)
                    .percent_complete(100)
                    .build(),
            )
            .set_output_variables(
                (!output_variables.is_empty())
                    .then(|| output_variables.clone().into_iter().collect()),
            )
            .customize()
            .config_override(timeouts)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let done = e
                    .as_service_error()
                    .is_some_and(|s| s.is_invalid_job_state_exception());
                delivery(e, done)
            }),
        Verdict::InProgress {
            percent,
            continuation_token,
            ..
        } => client
            .put_job_success_result()
            .job_id(job_id)
            .execution_details(
                ExecutionDetails::builder()
                    .summary(reason)
                    .percent_complete(i32::from((*percent).min(99)))
                    .build(),
            )
            .continuation_token(continuation_token)
            .customize()
            .config_override(timeouts)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let done = e
                    .as_service_error()
                    .is_some_and(|s| s.is_invalid_job_state_exception());
                delivery(e, done)
            }),
        Verdict::Failed { kind, .. } => {
            let details = FailureDetails::builder()
                .r#type(kind.sdk())
                .message(reason)
                .build()
                .map_err(|e| format!("could not build the failure details: {e}"))?;
            client
                .put_job_failure_result()
                .job_id(job_id)
                .failure_details(details)
                .customize()
                .config_override(timeouts)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    let done = e
                        .as_service_error()
                        .is_some_and(|s| s.is_invalid_job_state_exception());
                    delivery(e, done)
                })
        }
    };
    match result {
        Ok(()) => Ok("delivered"),
        Err(Delivery::Already) => Ok("already reported"),
        Err(Delivery::Failed(e)) => Err(e),
    }
}

enum Delivery {
    Already,
    Failed(String),
}

/// `InvalidJobStateException` (`done`): an earlier report of this job is in; anything else is
/// a failure to deliver.
fn delivery<E, R>(e: aws_smithy_runtime_api::client::result::SdkError<E, R>, done: bool) -> Delivery
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    if done || error_code(&e) == Some("InvalidJobStateException") {
        Delivery::Already
    } else {
        Delivery::Failed(describe_sdk_error(&e))
    }
}

/// One CodePipeline invocation, the same for every action: classify the event leniently, run
/// `work` on the job under [`guarded`], report exactly once, write the outcome line (the
/// common fields plus the action's own `fields`) and answer. `Err` only for an event with no
/// job id, or a report that could not be delivered (so Lambda's retry may deliver it).
pub async fn handle_job<Fut>(
    action: &str,
    client: &aws_sdk_codepipeline::Client,
    aws: &AwsSettings,
    payload: &Value,
    budget: &Budget,
    work: impl FnOnce(Job) -> Fut,
) -> Result<Value, String>
where
    Fut: Future<Output = (Verdict, serde_json::Map<String, Value>)>,
{
    let started = std::time::Instant::now();
    let (job_id, (verdict, fields)) = match classify(payload) {
        Incoming::Unreportable(reason) => {
            emit_outcome(
                serde_json::json!({"protocol": "codepipeline", "action": action, "verdict": "none", "reason": reason}),
            );
            return Err(reason);
        }
        Incoming::Invalid { job_id, reason } => (
            job_id,
            (
                Verdict::failed(FailureKind::JobFailed, reason),
                Default::default(),
            ),
        ),
        Incoming::Job(job) => {
            let id = job.id.clone();
            let result = guarded(work(*job), budget)
                .await
                .unwrap_or_else(|v| (v, Default::default()));
            (id, result)
        }
    };
    let delivery = report(client, aws, &job_id, &verdict, budget).await;
    let mut line = serde_json::json!({
        "protocol": "codepipeline",
        "action": action,
        "job_id": job_id,
        "verdict": verdict.name(),
        "failure_type": verdict.failure_kind(),
        "reason": verdict.reason(),
        "report": match &delivery { Ok(d) => (*d).to_string(), Err(e) => format!("not delivered: {e}") },
        "duration_ms": started.elapsed().as_millis() as u64,
    });
    if let Some(obj) = line.as_object_mut() {
        obj.extend(fields);
    }
    emit_outcome(line);
    match delivery {
        Ok(_) => Ok(serde_json::json!({"verdict": verdict.name(), "reason": verdict.reason()})),
        Err(e) => Err(format!(
            "could not report the {} verdict of job {job_id}: {e}",
            verdict.name()
        )),
    }
}

/// Runs `work` within the budget. A panic or the budget running out becomes `Err` with a
/// JobFailed verdict and its reason, so the job still gets its report.
pub async fn guarded<T, F: Future<Output = T>>(work: F, budget: &Budget) -> Result<T, Verdict> {
    budget
        .guard(work, Duration::ZERO)
        .await
        .map_err(|stop| Verdict::failed(FailureKind::JobFailed, stop.reason("check")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const JOB: &str = "11111111-2222-3333-4444-555555555555";

    fn event(data: Value) -> Value {
        json!({"CodePipeline.job": {"id": JOB, "accountId": "123456789012", "data": data}})
    }

    #[test]
    fn a_full_job_parses_and_its_credentials_never_print() {
        let e = event(json!({
            "actionConfiguration": {"configuration": {"FunctionName": "gate", "UserParameters": "{\"a\": 1}"}},
            "inputArtifacts": [{"name": "Image", "revision": "r1", "location": {"type": "S3",
                "s3Location": {"bucketName": "b", "objectKey": "k/x.zip"}}}],
            "outputArtifacts": [],
            "artifactCredentials": {"accessKeyId": "AKIDSECRETVALUE", "secretAccessKey": "sEcReT/KEY", "sessionToken": "TOKEN-VALUE"},
            "encryptionKey": {"id": "arn:aws:kms:us-east-1:1:key/x", "type": "KMS"},
            "newField": {"ignored": true}
        }));
        let Incoming::Job(job) = classify(&e) else {
            panic!("not a job: {:?}", classify(&e))
        };
        assert_eq!(job.id, JOB);
        assert_eq!(job.data.user_parameters(), Some("{\"a\": 1}"));
        assert_eq!(job.data.input_artifacts[0].name, "Image");
        let printed = format!("{job:?} {job:#?}");
        for secret in ["AKIDSECRETVALUE", "sEcReT/KEY", "TOKEN-VALUE"] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
        assert!(printed.contains("[redacted]"));
    }

    /// Each bad event, and the words of its classification.
    #[test]
    fn bad_events_table() {
        let long = "a".repeat(100_000);
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!([]), "unreportable", "not a JSON object"),
            (json!({}), "unreportable", "\"CodePipeline.job\" is missing"),
            (
                json!({"CodePipeline.job": "x"}),
                "unreportable",
                "must be an object",
            ),
            (
                json!({"CodePipeline.job": {}}),
                "unreportable",
                "id is missing",
            ),
            (
                json!({"CodePipeline.job": {"id": 5}}),
                "unreportable",
                "must be a string, found a number",
            ),
            (
                json!({"CodePipeline.job": {"id": long}}),
                "unreportable",
                "(100000 characters)",
            ),
            (
                json!({"CodePipeline.job": {"id": "x\u{1}y"}}),
                "unreportable",
                "\\u{1}",
            ),
            (
                json!({"CodePipeline.job": {"id": JOB}}),
                "invalid",
                "data is missing",
            ),
            (
                event(json!({"inputArtifacts": "nope"})),
                "invalid",
                "data.inputArtifacts: invalid type",
            ),
            (
                event(json!({"artifactCredentials": "AKIDLEAK"})),
                "invalid",
                "data.artifactCredentials: does not have the expected shape",
            ),
            (
                event(
                    json!({"artifactCredentials": {"accessKeyId": "AKIDLEAK", "secretAccessKey": 12345678}}),
                ),
                "invalid",
                "value is not shown",
            ),
        ];
        for (e, want, words) in cases {
            let (got, text) = match classify(&e) {
                Incoming::Job(_) => ("job", String::new()),
                Incoming::Invalid { reason, job_id } => {
                    assert_eq!(job_id, JOB);
                    ("invalid", reason)
                }
                Incoming::Unreportable(r) => ("unreportable", r),
            };
            assert_eq!(got, want, "{e}");
            assert!(text.contains(words), "expected {words:?} in {text}");
            assert!(
                !text.contains("AKIDLEAK") && !text.contains("12345678"),
                "{text}"
            );
            assert!(text.len() < 400, "{}", text.len());
        }
    }

    /// Every sample event of the two pipeline actions classifies as its name says.
    #[test]
    fn sample_events() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
        let mut seen = 0;
        for dir in ["image-gate", "bake-timer"] {
            let entries = std::fs::read_dir(root.join(dir)).expect("events folder");
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let text = std::fs::read_to_string(entry.path()).expect("read");
                let event: Value = serde_json::from_str(&text).expect(&name);
                let got = match classify(&event) {
                    Incoming::Job(_) => "job",
                    Incoming::Invalid { .. } => "invalid",
                    Incoming::Unreportable(_) => "unreportable",
                };
                let want = match name.as_str() {
                    "bad-no-job-id.json" => "unreportable",
                    "bad-data.json" => "invalid",
                    _ => "job",
                };
                assert_eq!(got, want, "{dir}/{name}");
                seen += 1;
            }
        }
        assert!(seen >= 7, "{seen} sample events");
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Params {
        #[serde(default)]
        tag_pattern: Option<String>,
        #[serde(default)]
        scan: Option<Scan>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Scan {
        #[serde(default)]
        max: BTreeMap<String, u32>,
    }

    #[test]
    fn user_parameters_errors_name_the_field() {
        let ok: Params = user_parameters(None).expect("unset is {}");
        assert_eq!(
            ok,
            Params {
                tag_pattern: None,
                scan: None
            }
        );
        let ok: Params = user_parameters(Some("  ")).expect("blank is {}");
        assert_eq!(ok.scan, None);
        let cases = [
            ("not json", "UserParameters is not valid JSON"),
            (
                "{\"tag_pattern\": \"x\"} trailing",
                "UserParameters is not valid JSON",
            ),
            ("{\"nope\": 1}", "unknown field `nope`"),
            (
                "{\"scan\": {\"max\": {\"HIGH\": \"many\"}}}",
                "UserParameters.scan.max.HIGH: invalid type",
            ),
            ("[1, 2]", "UserParameters must be a JSON object"),
            ("\"x\"", "found a string"),
        ];
        for (raw, words) in cases {
            let e = user_parameters::<Params>(Some(raw)).expect_err(raw);
            assert!(e.contains(words), "{raw}: expected {words:?} in {e}");
        }
        let long = format!("{{\"tag_pattern\": \"{}\"}}", "a".repeat(1000));
        let e = user_parameters::<Params>(Some(&long)).expect_err("too long");
        assert!(e.contains("at most 1000"), "{e}");
    }

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, body) in files {
            w.start_file(*name, opts).expect("start");
            w.write_all(body).expect("write");
        }
        w.finish().expect("finish").into_inner()
    }

    #[test]
    fn unzips_the_preferred_member_within_the_cap() {
        let z = zip_of(&[
            ("imagedefinitions.json", b"[]"),
            ("imageDetail.json", b"{\"ImageURI\": \"x\"}"),
        ]);
        let got = unzip_member(&z, &["imageDetail.json", "imagedefinitions.json"], 1024)
            .expect("reads")
            .expect("found");
        assert_eq!(got.name, "imageDetail.json");
        assert_eq!(got.bytes, b"{\"ImageURI\": \"x\"}");
        assert_eq!(unzip_member(&z, &["other.json"], 1024), Ok(None));
        let big = zip_of(&[("imageDetail.json", &[b' '; 5000])]);
        let e = unzip_member(&big, &["imageDetail.json"], 1000).expect_err("capped");
        assert!(e.contains("above the cap of 1000 bytes"), "{e}");
        let e = unzip_member(b"PK\x03\x04 not really", &["a"], 10).expect_err("damaged");
        assert!(e.contains("not a readable zip"), "{e}");
        assert_eq!(zip_names(&z, 10).len(), 2);
    }

    #[test]
    fn verdict_reasons_are_capped_for_the_console() {
        let v = Verdict::Failed {
            kind: FailureKind::JobFailed,
            reasons: (0..2000).map(|i| format!("rule {i} failed")).collect(),
        };
        assert!(v.reason().len() <= FAILURE_MESSAGE_MAX);
        assert!(v.reason().contains("more"));
        let s = Verdict::Succeeded {
            summary: "é".repeat(5000),
            output_variables: BTreeMap::new(),
        };
        assert!(s.reason().chars().count() <= SUMMARY_MAX);
    }

    #[test]
    fn access_denied_codes_are_permission_errors() {
        for c in [
            "AccessDenied",
            "AccessDeniedException",
            "KMS.AccessDeniedException",
            "ExpiredToken",
        ] {
            assert_eq!(
                FailureKind::of_aws_code(Some(c)),
                FailureKind::PermissionError,
                "{c}"
            );
        }
        for c in [Some("ThrottlingException"), Some("InternalFailure"), None] {
            assert_eq!(FailureKind::of_aws_code(c), FailureKind::JobFailed, "{c:?}");
        }
    }

    mod sdk {
        use super::*;
        use aws_sdk_codepipeline::operation::put_job_failure_result::{
            PutJobFailureResultError, PutJobFailureResultOutput,
        };
        use aws_sdk_codepipeline::operation::put_job_success_result::PutJobSuccessResultOutput;
        use aws_sdk_codepipeline::types::error::InvalidJobStateException;
        use aws_sdk_codepipeline::types::FailureType;
        use aws_smithy_mocks::{mock, mock_client, RuleMode};
        use std::time::Duration;

        fn budget() -> Budget {
            Budget::from_now(Duration::from_secs(10), Duration::from_secs(2))
        }

        fn aws() -> AwsSettings {
            AwsSettings::from_env(&crate::config::Env::from_pairs([])).expect("defaults")
        }

        #[tokio::test]
        async fn a_failure_is_reported_with_its_type_and_an_invalid_job_state_counts_as_done() {
            let failed = mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
                .match_requests(|r| {
                    r.job_id() == Some(JOB)
                        && r.failure_details().map(|d| d.r#type())
                            == Some(&FailureType::ConfigurationError)
                        && r.failure_details().map(|d| d.message()) == Some("UserParameters: bad")
                })
                .then_output(|| PutJobFailureResultOutput::builder().build());
            let client = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, &[&failed]);
            let v = Verdict::failed(FailureKind::ConfigurationError, "UserParameters: bad");
            assert_eq!(
                report(&client, &aws(), JOB, &v, &budget()).await,
                Ok("delivered")
            );
            assert_eq!(failed.num_calls(), 1);

            let again =
                mock!(aws_sdk_codepipeline::Client::put_job_failure_result).then_error(|| {
                    PutJobFailureResultError::InvalidJobStateException(
                        InvalidJobStateException::builder()
                            .message("already")
                            .build(),
                    )
                });
            let client = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, &[&again]);
            assert_eq!(
                report(&client, &aws(), JOB, &v, &budget()).await,
                Ok("already reported")
            );
        }

        #[tokio::test]
        async fn progress_carries_the_token_and_success_the_output_variables() {
            let progress = mock!(aws_sdk_codepipeline::Client::put_job_success_result)
                .match_requests(|r| {
                    r.continuation_token() == Some("tok")
                        && r.output_variables().is_none()
                        && r.execution_details().and_then(|d| d.percent_complete()) == Some(40)
                })
                .then_output(|| PutJobSuccessResultOutput::builder().build());
            let done = mock!(aws_sdk_codepipeline::Client::put_job_success_result)
                .match_requests(|r| {
                    r.continuation_token().is_none()
                        && r.output_variables()
                            .and_then(|v| v.get("Digest"))
                            .map(String::as_str)
                            == Some("sha256:ab")
                        && r.execution_details().and_then(|d| d.summary()) == Some("all good")
                })
                .then_output(|| PutJobSuccessResultOutput::builder().build());
            let client = mock_client!(
                aws_sdk_codepipeline,
                RuleMode::MatchAny,
                &[&progress, &done]
            );
            let v = Verdict::InProgress {
                summary: "baking".into(),
                percent: 40,
                continuation_token: "tok".into(),
            };
            assert_eq!(
                report(&client, &aws(), JOB, &v, &budget()).await,
                Ok("delivered")
            );
            let v = Verdict::Succeeded {
                summary: "all good".into(),
                output_variables: [("Digest".to_string(), "sha256:ab".to_string())].into(),
            };
            assert_eq!(
                report(&client, &aws(), JOB, &v, &budget()).await,
                Ok("delivered")
            );
            assert_eq!((progress.num_calls(), done.num_calls()), (1, 1));
        }

        #[tokio::test]
        async fn a_panic_and_a_hang_become_failures() {
            let v = guarded(async { panic!("kaboom") }, &budget()).await;
            let v: Verdict = v.expect_err("a panic fails");
            assert!(v.reason().contains("kaboom"), "{v:?}");
            let short = Budget::from_now(Duration::from_millis(1500), Duration::from_millis(100));
            let v = guarded(
                async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Verdict::failed(FailureKind::JobFailed, "never")
                },
                &short,
            )
            .await
            .expect_err("a hang fails");
            assert!(v.reason().contains("ran out of time"), "{v:?}");
            let gone = Budget::from_now(Duration::ZERO, Duration::from_millis(100));
            let v: Verdict = guarded(async { panic!("not run") }, &gone)
                .await
                .expect_err("no time");
            assert!(v.reason().contains("no time to check"), "{v:?}");
        }
    }
}
