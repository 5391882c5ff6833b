//! AWS calls without the service's SDK crate: one SigV4-signed HTTPS request, sent with the
//! shared client of `awshttp.rs`, with the SDK's habits kept: the attempt and operation timeouts
//! of [`AwsSettings`], standard retries (throttling, 5xx, transport errors) with capped, jittered
//! exponential backoff, the service's error code and message in errors, and a cap on the answer
//! that is enforced while reading.
//!
//! Used where a function needs one operation of a service whose crate would bring its whole
//! model into the zip the size budget counts (performance.md): S3 GetObject (`s3get.rs`), SSM
//! GetParameter and Secrets Manager GetSecretValue (`awsjson.rs`).

use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_types::SdkConfig;

use crate::aws::error_chain;
use crate::config::AwsSettings;

/// Why a call did not return what was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The service answered with an error (its code, e.g. `NoSuchKey`, `ParameterNotFound`).
    Service {
        status: u16,
        code: String,
        message: String,
    },
    /// No usable answer after every attempt: connection, timeout, credentials.
    Transport(String),
    /// The answer is larger than the cap (its declared length, when the service gave one).
    TooLarge { len: Option<u64> },
}

impl CallError {
    /// The service's error code, when the service answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            CallError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// One line, in the wording of `aws::describe_sdk_error` (`Code: message`).
    pub fn describe(&self) -> String {
        match self {
            CallError::Service { code, message, .. } if message.is_empty() => code.clone(),
            CallError::Service { code, message, .. } => format!("{code}: {message}"),
            CallError::Transport(e) => e.clone(),
            CallError::TooLarge { len: Some(l) } => {
                format!("the answer is {l} bytes, above the cap")
            }
            CallError::TooLarge { len: None } => "the answer is above the cap".to_string(),
        }
    }

    pub(crate) fn retryable(&self) -> bool {
        match self {
            CallError::Transport(_) => true,
            CallError::Service { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || matches!(
                        code.as_str(),
                        "SlowDown"
                            | "Throttling"
                            | "ThrottlingException"
                            | "ThrottledException"
                            | "TooManyRequestsException"
                            | "RequestLimitExceeded"
                            | "RequestTimeout"
                    )
            }
            CallError::TooLarge { .. } => false,
        }
    }
}

/// One request to sign and send.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The signing name (`s3`, `ssm`, `secretsmanager`).
    pub service: &'a str,
    pub method: &'a str,
    pub url: &'a str,
    /// Sent and signed.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// The largest answer accepted.
    pub max_bytes: u64,
}

/// Signs and sends requests with the process's region, endpoint and credentials. Cheap to clone.
#[derive(Clone)]
pub struct Signer {
    http: reqwest::Client,
    region: String,
    endpoint: Option<String>,
    fips: bool,
    dual_stack: bool,
    credentials: Option<SharedCredentialsProvider>,
    settings: AwsSettings,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with the region, endpoint (`AWS_ENDPOINT_URL`), FIPS/dual-stack choices and
    /// credentials of `sdk`.
    pub fn new(sdk: &SdkConfig, settings: &AwsSettings) -> Self {
        Self {
            http: crate::awshttp::client(settings),
            region: sdk
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".to_string()),
            endpoint: sdk
                .endpoint_url()
                .map(|e| e.trim_end_matches('/').to_string()),
            fips: sdk.use_fips().unwrap_or(false),
            dual_stack: sdk.use_dual_stack().unwrap_or(false),
            credentials: sdk.credentials_provider(),
            settings: settings.clone(),
        }
    }

    /// The same signer, with `credentials` (a CodePipeline job's artifact credentials).
    pub fn with_credentials(&self, credentials: Credentials) -> Self {
        Self {
            credentials: Some(SharedCredentialsProvider::new(credentials)),
            ..self.clone()
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The endpoint override (`AWS_ENDPOINT_URL`), without a trailing slash.
    pub fn endpoint_override(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    pub fn settings(&self) -> &AwsSettings {
        &self.settings
    }

    /// `https://<service>.<region>.amazonaws.com` for a regional JSON API, honouring FIPS
    /// (`<service>-fips.`) and dual-stack (`.api.aws`), unless an endpoint override is set.
    pub fn regional_endpoint(&self, service: &str) -> String {
        if let Some(e) = &self.endpoint {
            return e.clone();
        }
        let host = if self.fips {
            format!("{service}-fips")
        } else {
            service.to_string()
        };
        let domain = if self.dual_stack {
            "api.aws"
        } else if self.region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("https://{host}.{}.{domain}", self.region)
    }

    pub(crate) fn fips(&self) -> bool {
        self.fips
    }

    pub(crate) fn dual_stack(&self) -> bool {
        self.dual_stack
    }

    /// Sends `req`, retrying what the SDK would retry, within the operation timeout.
    pub async fn send(&self, req: &Request<'_>) -> Result<Vec<u8>, CallError> {
        let started = Instant::now();
        let op = self.settings.operation_timeout;
        let mut attempt = 1;
        loop {
            let left = op.saturating_sub(started.elapsed());
            let limit = self.settings.attempt_timeout.min(left);
            let result = match tokio::time::timeout(limit, self.attempt(req)).await {
                Ok(r) => r,
                Err(_) => Err(CallError::Transport(format!(
                    "timed out waiting for {} (after {} ms)",
                    req.service,
                    limit.as_millis()
                ))),
            };
            match result {
                Err(e) if e.retryable() && attempt < self.settings.max_attempts => {
                    let backoff = backoff(attempt);
                    if started.elapsed() + backoff >= op {
                        return Err(e);
                    }
                    tracing::debug!(attempt, service = req.service, error = %e.describe(), "AWS call failed; retrying");
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn attempt(&self, req: &Request<'_>) -> Result<Vec<u8>, CallError> {
        let credentials = match &self.credentials {
            Some(p) => p.provide_credentials().await.map_err(|e| {
                CallError::Transport(format!("no credentials: {}", error_chain(&e)))
            })?,
            None => {
                return Err(CallError::Transport(
                    "no credentials configured".to_string(),
                ))
            }
        };
        let identity = credentials.into();
        let mut settings = SigningSettings::default();
        if req.service == "s3" {
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let unsignable = |e: &dyn std::fmt::Display| {
            CallError::Transport(format!("could not sign the request: {e}"))
        };
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(req.service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| unsignable(&e))?
            .into();
        let signable = SignableRequest::new(
            req.method,
            req.url,
            req.headers.iter().copied(),
            SignableBody::Bytes(req.body),
        )
        .map_err(|e| unsignable(&e))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| unsignable(&e))?
            .into_parts();
        let method =
            reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|e| unsignable(&e))?;
        let mut request = self
            .http
            .request(method, req.url)
            .header("user-agent", crate::awshttp::USER_AGENT);
        for (name, value) in req.headers.iter().copied().chain(instructions.headers()) {
            request = request.header(name, value);
        }
        if !req.body.is_empty() {
            request = request.body(req.body.to_vec());
        }
        let mut response = request.send().await.map_err(|e| {
            CallError::Transport(format!(
                "could not reach {}: {}",
                req.service,
                error_chain(&e)
            ))
        })?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let error_type = response
                .headers()
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = read_capped(&mut response, 64 * 1024)
                .await
                .unwrap_or_default();
            return Err(service_error(
                status,
                error_type.as_deref(),
                &String::from_utf8_lossy(&body),
            ));
        }
        if let Some(len) = response.content_length().filter(|l| *l > req.max_bytes) {
            return Err(CallError::TooLarge { len: Some(len) });
        }
        read_capped(&mut response, req.max_bytes).await
    }
}

/// Reads the body, failing as soon as it passes `max` bytes.
async fn read_capped(response: &mut reqwest::Response, max: u64) -> Result<Vec<u8>, CallError> {
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if (bytes.len() + chunk.len()) as u64 > max {
                    return Err(CallError::TooLarge { len: None });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(bytes),
            Err(e) => {
                return Err(CallError::Transport(format!(
                    "reading the answer failed midway: {}",
                    error_chain(&e)
                )))
            }
        }
    }
}

/// The service's error: from a JSON body (`__type`, `message`), an XML body (`<Code>`,
/// `<Message>`) or the `x-amzn-ErrorType` header, else the status alone.
pub(crate) fn service_error(status: u16, error_type: Option<&str>, body: &str) -> CallError {
    let trimmed = body.trim_start();
    let (code, message) = if trimmed.starts_with('{') {
        let doc: serde_json::Value = serde_json::from_str(trimmed).unwrap_or_default();
        let text = |k: &str| doc.get(k).and_then(|v| v.as_str()).map(str::to_string);
        (
            text("__type")
                .or_else(|| text("code"))
                .or_else(|| text("Code")),
            text("message").or_else(|| text("Message")),
        )
    } else {
        let field = |name: &str| {
            let open = format!("<{name}>");
            let close = format!("</{name}>");
            body.split_once(&open)
                .and_then(|(_, rest)| rest.split_once(&close))
                .map(|(v, _)| v.trim().to_string())
        };
        (field("Code"), field("Message"))
    };
    // `com.amazonaws.ssm#ParameterNotFound` and `ParameterNotFound:http://…` both mean the
    // code after the namespace, before the URL.
    let code = code
        .or_else(|| error_type.map(str::to_string))
        .map(|c| {
            let c = c.rsplit('#').next().unwrap_or(&c);
            c.split(':').next().unwrap_or(c).trim().to_string()
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| {
            match status {
                403 => "AccessDenied",
                404 => "NotFound",
                _ => "UnknownError",
            }
            .to_string()
        });
    CallError::Service {
        status,
        code,
        message: message.unwrap_or_default(),
    }
}

/// 100 ms, 200 ms, 400 ms, … capped at 2 s, with full jitter on the upper half.
fn backoff(attempt: u32) -> Duration {
    let base = 100u64
        .saturating_mul(1 << attempt.saturating_sub(1).min(5))
        .min(2_000);
    Duration::from_millis(base / 2 + fastrand::u64(0..=base / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_the_services_code_and_only_some_are_retried() {
        let e = service_error(
            404,
            None,
            "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>",
        );
        assert_eq!(e.code(), Some("NoSuchKey"));
        assert_eq!(e.describe(), "NoSuchKey: The specified key does not exist.");
        assert!(!e.retryable());
        assert_eq!(service_error(403, None, "").code(), Some("AccessDenied"));
        assert!(service_error(503, None, "<Error><Code>SlowDown</Code></Error>").retryable());
        assert!(service_error(500, None, "").retryable());
        assert!(CallError::Transport("reset".into()).retryable());
        assert!(!CallError::TooLarge { len: None }.retryable());
    }

    #[test]
    fn json_errors_lose_their_namespace_and_url() {
        let e = service_error(
            400,
            None,
            r#"{"__type":"com.amazonaws.ssm#ParameterNotFound","message":"no such parameter"}"#,
        );
        assert_eq!(e.describe(), "ParameterNotFound: no such parameter");
        let e = service_error(
            400,
            Some("ThrottlingException:http://internal.amazon.com/"),
            "{}",
        );
        assert_eq!(e.code(), Some("ThrottlingException"));
        assert!(e.retryable());
        let e = service_error(
            400,
            None,
            r#"{"__type":"ResourceNotFoundException","Message":"Secrets Manager can't find the specified secret."}"#,
        );
        assert_eq!(e.code(), Some("ResourceNotFoundException"));
        assert!(e.describe().ends_with("can't find the specified secret."));
        assert!(!e.retryable());
    }

    #[test]
    fn regional_endpoints_follow_fips_dual_stack_and_the_override() {
        let settings =
            AwsSettings::from_env(&crate::config::Env::from_pairs([])).expect("defaults");
        let signer = |fips: bool, dual: bool, region: &str, endpoint: Option<&str>| {
            let mut b = SdkConfig::builder()
                .region(aws_types::region::Region::new(region.to_string()))
                .use_fips(fips)
                .use_dual_stack(dual);
            if let Some(e) = endpoint {
                b = b.endpoint_url(e);
            }
            Signer::new(&b.build(), &settings)
        };
        let ssm = |s: Signer| s.regional_endpoint("ssm");
        assert_eq!(
            ssm(signer(false, false, "eu-west-1", None)),
            "https://ssm.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            ssm(signer(true, false, "us-east-1", None)),
            "https://ssm-fips.us-east-1.amazonaws.com"
        );
        assert_eq!(
            ssm(signer(false, true, "eu-west-1", None)),
            "https://ssm.eu-west-1.api.aws"
        );
        assert_eq!(
            ssm(signer(false, false, "cn-north-1", None)),
            "https://ssm.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            ssm(signer(
                true,
                true,
                "eu-west-1",
                Some("http://127.0.0.1:4566/")
            )),
            "http://127.0.0.1:4566"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..10 {
            let b = backoff(attempt);
            assert!(b <= Duration::from_secs(2), "{b:?}");
            assert!(b >= Duration::from_millis(50), "{b:?}");
        }
    }
}
