//! The local AWS: `testbed/testbed.py` (moto, extended) in the project's virtualenv, started
//! once per process on 127.0.0.1 and a free port. It exits when this process ends (its stdin
//! closes).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use serde_json::{json, Value};

/// A handle on the running test bed.
pub struct Testbed {
    pub port: u16,
    _child: Mutex<Child>,
}

/// One AWS call the test bed recorded.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Call {
    pub seq: u64,
    pub service: String,
    pub operation: String,
    pub params: Value,
    pub status: u16,
    pub error: Option<String>,
}

static SHARED: OnceLock<Testbed> = OnceLock::new();

/// The interpreter of the project's virtualenv (`DEPLOY_GUARD_PYTHON` overrides; set but empty
/// counts as unset).
pub fn python() -> std::path::PathBuf {
    std::env::var("DEPLOY_GUARD_PYTHON")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .map(Into::into)
        .unwrap_or_else(|| crate::repo_root().join(".venv/bin/python"))
}

impl Testbed {
    /// The process-wide test bed, started on first use.
    pub fn shared() -> &'static Testbed {
        SHARED.get_or_init(Testbed::start)
    }

    fn start() -> Testbed {
        let py = python();
        assert!(
            py.exists(),
            "{} not found: run scripts/test.sh (it creates the virtualenv with the test bed's pinned packages)",
            py.display()
        );
        let script = crate::repo_root().join("tests/testbed/testbed.py");
        let mut child = Command::new(&py)
            .arg(&script)
            .args(["--port", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", script.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the test bed's first line");
        let port = line
            .trim()
            .strip_prefix("TESTBED_READY port=")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the test bed did not start; it said {line:?}"));
        Testbed {
            port,
            _child: Mutex::new(child),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A fresh client: each test has its own runtime, and a client's pool belongs to one.
    fn client() -> reqwest::Client {
        // The workspace's reqwest has no built-in crypto provider (the functions configure
        // their own); the harness only speaks plain HTTP to 127.0.0.1, so no roots are needed.
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .build()
            .expect("client")
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = Self::client()
            .post(format!("{}{path}", self.url()))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path} {body}: {status} {v}");
        v
    }

    /// Seeds a CodeDeploy blue/green deployment (see testbed/README.md for the fields).
    pub async fn codedeploy_scenario(&self, body: Value) -> Value {
        self.post("/_testbed/scenarios/codedeploy", body).await
    }

    /// Seeds an ECS-controller blue/green service deployment.
    pub async fn ecs_scenario(&self, body: Value) -> Value {
        self.post("/_testbed/scenarios/ecs", body).await
    }

    /// Moves a CodeDeploy deployment to `event`; returns the new hook execution id.
    pub async fn lifecycle(&self, deployment_id: &str, event: &str) -> String {
        let v = self
            .post(
                "/_testbed/codedeploy/lifecycle",
                json!({"deploymentId": deployment_id, "lifecycleEventName": event}),
            )
            .await;
        v["hookExecutionId"]
            .as_str()
            .expect("hookExecutionId")
            .to_string()
    }

    /// Installs a fault (see testbed/README.md).
    pub async fn fault(&self, body: Value) {
        self.post("/_testbed/faults", body).await;
    }

    /// Recorded calls of one operation whose parameters contain `contains`.
    pub async fn calls(&self, service: &str, operation: &str, contains: &str) -> Vec<Call> {
        let resp = Self::client()
            .get(format!("{}/_testbed/calls", self.url()))
            .query(&[
                ("service", service),
                ("operation", operation),
                ("contains", contains),
            ])
            .send()
            .await
            .expect("GET calls");
        resp.json().await.expect("calls JSON")
    }

    /// The error codes of the recorded calls of one operation, in order (`None`: answered).
    pub async fn call_errors(
        &self,
        service: &str,
        operation: &str,
        contains: &str,
    ) -> Vec<Option<String>> {
        self.calls(service, operation, contains)
            .await
            .into_iter()
            .map(|c| c.error)
            .collect()
    }

    /// Calls an awsJson API directly (seeding SSM parameters and secrets).
    pub async fn aws_json(&self, target: &str, body: Value) -> Value {
        let resp = Self::client()
            .post(format!("{}/", self.url()))
            .header("x-amz-target", target)
            .header("content-type", "application/x-amz-json-1.1")
            .body(body.to_string())
            .send()
            .await
            .expect("aws json call");
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{target}: {status} {v}");
        v
    }

    /// Stores an SSM parameter (`SecureString` when `secure`).
    pub async fn put_parameter(&self, name: &str, value: &str, secure: bool) {
        self.aws_json(
            "AmazonSSM.PutParameter",
            json!({"Name": name, "Value": value, "Type": if secure {"SecureString"} else {"String"}, "Overwrite": true}),
        )
        .await;
    }

    /// Creates a Secrets Manager secret.
    pub async fn put_secret(&self, name: &str, value: &str) {
        self.aws_json(
            "secretsmanager.CreateSecret",
            json!({"Name": name, "SecretString": value}),
        )
        .await;
    }

    /// Creates `bucket` (if needed) and stores `body` at `key` (S3, path-style).
    pub async fn put_object(&self, bucket: &str, key: &str, body: &str) {
        let auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";
        let c = Self::client();
        let _ = c
            .put(format!("{}/{bucket}", self.url()))
            .header("authorization", auth)
            .send()
            .await;
        let resp = c
            .put(format!("{}/{bucket}/{key}", self.url()))
            .header("authorization", auth)
            .body(body.to_string())
            .send()
            .await
            .expect("PutObject");
        assert!(
            resp.status().is_success(),
            "PutObject {bucket}/{key}: {}",
            resp.status()
        );
    }

    /// Environment for a function binary that talks to this test bed.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.url()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            // Fast failure in tests: short timeouts, two attempts.
            ("AWS_ATTEMPT_TIMEOUT_MS", "3000".into()),
            ("AWS_OPERATION_TIMEOUT_MS", "8000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// Seeding for the alarm-rollback router (testbed/README.md, "alarm-rollback scenarios").
impl Testbed {
    /// Creates or updates a tagged alarm (`{name, state?, tags?, composite?, period?}`) and
    /// sets its state; returns `{alarmName, alarmArn, state}`.
    pub async fn alarm(&self, body: Value) -> Value {
        self.post("/_testbed/cloudwatch/alarm", body).await
    }

    /// Sets a CodeDeploy deployment's status (`{deploymentId, status, completedMinutesAgo?}`).
    pub async fn codedeploy_deployment(&self, body: Value) -> Value {
        self.post("/_testbed/codedeploy/deployment", body).await
    }

    /// Sets an ECS service deployment's status (`{serviceDeploymentArn, status,
    /// finishedMinutesAgo?}`).
    pub async fn ecs_service_deployment(&self, body: Value) -> Value {
        self.post("/_testbed/ecs/service-deployment", body).await
    }
}

/// Seeding and reading for the CodePipeline actions (image gate, bake timer).
impl Testbed {
    /// Stores an input artifact at `bucket`/`key`: a zip of `files` (name → text or JSON),
    /// SSE-KMS encrypted when `kms`. Returns `{bucket, key, size, kmsKeyId}`.
    pub async fn pipeline_artifact(
        &self,
        bucket: &str,
        key: &str,
        files: Value,
        kms: bool,
    ) -> Value {
        self.post(
            "/_testbed/codepipeline/artifact",
            json!({"bucket": bucket, "key": key, "files": files, "kms": kms}),
        )
        .await
    }

    /// Stores raw bytes (base64) as an input artifact: a damaged or non-zip artifact.
    pub async fn pipeline_artifact_raw(&self, bucket: &str, key: &str, base64: &str) -> Value {
        self.post(
            "/_testbed/codepipeline/artifact",
            json!({"bucket": bucket, "key": key, "raw_base64": base64}),
        )
        .await
    }

    /// Pushes an image to ECR (`{repository, tags, mutability?, pushed_days_ago?, scan?}`);
    /// returns `{repository, registryId, digest, repositoryUri, tags}`.
    pub async fn ecr_image(&self, body: Value) -> Value {
        self.post("/_testbed/ecr/image", body).await
    }

    /// Sets an alarm's state (a StateUpdate history entry), unrecorded.
    pub async fn alarm_state(&self, name: &str, state: &str) -> Value {
        self.post(
            "/_testbed/cloudwatch/alarm-state",
            json!({"name": name, "state": state, "reason": format!("testbed set {state}")}),
        )
        .await
    }

    /// Every `PutJobSuccessResult` / `PutJobFailureResult` recorded for `job_id`.
    pub async fn job_reports(&self, job_id: &str) -> Vec<Call> {
        let mut calls = self
            .calls("codepipeline", "PutJobSuccessResult", job_id)
            .await;
        calls.extend(
            self.calls("codepipeline", "PutJobFailureResult", job_id)
                .await,
        );
        calls.sort_by_key(|c| c.seq);
        calls
    }
}

/// What [`Testbed::call_errors`] reads after a `throttle` fault with `times: 2` when the caller
/// retries as the SDK's standard mode does: two throttles, then an answer.
pub fn throttled_twice_then_answered() -> Vec<Option<String>> {
    vec![
        Some("ThrottlingException".into()),
        Some("ThrottlingException".into()),
        None,
    ]
}
