//! S3 GetObject as one signed HTTPS GET, instead of the `aws-sdk-s3` crate.
//!
//! The functions only ever read one object from S3 (a smoke spec, a pipeline's input artifact).
//! The S3 crate brought its whole model, checksum algorithms and express-session machinery into
//! every binary that read one: the largest single part of the zips the size budget counts
//! (performance.md). This module signs the GET with `aws-sigv4` (the SDK's own signer) and sends
//! it with the same rustls stack as everything else, with the SDK's habits kept: the attempt and
//! operation timeouts of [`AwsSettings`], standard retries (throttling, 5xx, transport errors)
//! with capped, jittered exponential backoff, S3's error code and message in errors, and a cap
//! on the body that is enforced while reading.

use std::sync::Arc;
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

/// Why a GET did not return the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetError {
    /// S3 answered with an error (its code, e.g. `NoSuchKey`, `AccessDenied`).
    Service {
        status: u16,
        code: String,
        message: String,
    },
    /// No usable answer after every attempt: connection, timeout, credentials.
    Transport(String),
    /// The object is larger than the cap (its declared length, when S3 gave one).
    TooLarge { len: Option<u64> },
}

impl GetError {
    /// S3's error code, when S3 answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            GetError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// One line, in the wording of `aws::describe_sdk_error` (`Code: message`).
    pub fn describe(&self) -> String {
        match self {
            GetError::Service { code, message, .. } if message.is_empty() => code.clone(),
            GetError::Service { code, message, .. } => format!("{code}: {message}"),
            GetError::Transport(e) => e.clone(),
            GetError::TooLarge { len: Some(l) } => {
                format!("the object is {l} bytes, above the cap")
            }
            GetError::TooLarge { len: None } => "the object is above the cap".to_string(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            GetError::Transport(_) => true,
            GetError::Service { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || matches!(
                        code.as_str(),
                        "SlowDown" | "Throttling" | "ThrottlingException" | "RequestTimeout"
                    )
            }
            GetError::TooLarge { .. } => false,
        }
    }
}

/// Reads objects from S3. Cheap to clone (the HTTP client is shared).
#[derive(Clone)]
pub struct S3Reader {
    http: reqwest::Client,
    region: String,
    endpoint: Option<String>,
    path_style: bool,
    credentials: Option<SharedCredentialsProvider>,
    settings: AwsSettings,
}

impl std::fmt::Debug for S3Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Reader")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

impl S3Reader {
    /// A reader with the process's region, endpoint (`AWS_ENDPOINT_URL`) and credentials.
    pub fn new(sdk: &SdkConfig, settings: &AwsSettings) -> Self {
        Self {
            http: http_client(settings),
            region: sdk
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".to_string()),
            endpoint: sdk.endpoint_url().map(str::to_string),
            path_style: settings.s3_path_style,
            credentials: sdk.credentials_provider(),
            settings: settings.clone(),
        }
    }

    /// The same reader, signing with `credentials` (a CodePipeline job's artifact credentials).
    pub fn with_credentials(&self, credentials: Credentials) -> Self {
        Self {
            credentials: Some(SharedCredentialsProvider::new(credentials)),
            ..self.clone()
        }
    }

    /// The object at `bucket`/`key`, at most `max_bytes` of it (a larger object is an error,
    /// found from its Content-Length or while reading).
    pub async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>, GetError> {
        let started = Instant::now();
        let op = self.settings.operation_timeout;
        let mut attempt = 1;
        loop {
            let left = op.saturating_sub(started.elapsed());
            let limit = self.settings.attempt_timeout.min(left);
            let result =
                match tokio::time::timeout(limit, self.attempt(bucket, key, max_bytes)).await {
                    Ok(r) => r,
                    Err(_) => Err(GetError::Transport(format!(
                        "timed out waiting for S3 (after {} ms)",
                        limit.as_millis()
                    ))),
                };
            match result {
                Err(e) if e.retryable() && attempt < self.settings.max_attempts => {
                    let backoff = backoff(attempt);
                    if started.elapsed() + backoff >= op {
                        return Err(e);
                    }
                    tracing::debug!(attempt, error = %e.describe(), "S3 GetObject failed; retrying");
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn attempt(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>, GetError> {
        let url = self.url(bucket, key);
        let credentials = match &self.credentials {
            Some(p) => p
                .provide_credentials()
                .await
                .map_err(|e| GetError::Transport(format!("no credentials: {}", error_chain(&e))))?,
            None => return Err(GetError::Transport("no credentials configured".to_string())),
        };
        let identity = credentials.into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| GetError::Transport(format!("could not sign the request: {e}")))?
            .into();
        let signable = SignableRequest::new(
            "GET",
            url.as_str(),
            std::iter::empty(),
            SignableBody::Bytes(&[]),
        )
        .map_err(|e| GetError::Transport(format!("could not sign the request: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| GetError::Transport(format!("could not sign the request: {e}")))?
            .into_parts();
        let mut request = self.http.get(url.as_str());
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| GetError::Transport(format!("could not reach S3: {}", error_chain(&e))))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let body = read_capped(&mut response, 64 * 1024)
                .await
                .unwrap_or_default();
            return Err(service_error(status, &String::from_utf8_lossy(&body)));
        }
        if let Some(len) = response.content_length().filter(|l| *l > max_bytes) {
            return Err(GetError::TooLarge { len: Some(len) });
        }
        read_capped(&mut response, max_bytes).await
    }

    /// Virtual-hosted style (`bucket.s3.region.amazonaws.com/key`) unless path style is asked
    /// for or the bucket name has a dot (it would not match the certificate's wildcard).
    fn url(&self, bucket: &str, key: &str) -> String {
        let base = self.endpoint.clone().unwrap_or_else(|| {
            let suffix = if self.region.starts_with("cn-") {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            format!("https://s3.{}.{suffix}", self.region)
        });
        let base = base.trim_end_matches('/');
        let key = encode_key(key);
        if self.path_style || bucket.contains('.') {
            return format!("{base}/{bucket}/{key}");
        }
        match base.split_once("://") {
            Some((scheme, host)) => format!("{scheme}://{bucket}.{host}/{key}"),
            None => format!("{base}/{bucket}/{key}"),
        }
    }
}

/// The HTTP client for S3: compiled-in roots (as everywhere), no redirects, no proxy.
fn http_client(settings: &AwsSettings) -> reqwest::Client {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(settings.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .no_proxy();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    let builder = match tls {
        Ok(tls) => builder.tls_backend_preconfigured(tls),
        Err(_) => builder,
    };
    builder.build().unwrap_or_default()
}

/// Reads the body, failing as soon as it passes `max` bytes.
async fn read_capped(response: &mut reqwest::Response, max: u64) -> Result<Vec<u8>, GetError> {
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if (bytes.len() + chunk.len()) as u64 > max {
                    return Err(GetError::TooLarge { len: None });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(bytes),
            Err(e) => {
                return Err(GetError::Transport(format!(
                    "reading the object failed midway: {}",
                    error_chain(&e)
                )))
            }
        }
    }
}

/// S3's XML error (`<Error><Code>…</Code><Message>…</Message></Error>`), or the status alone.
fn service_error(status: u16, body: &str) -> GetError {
    let field = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        body.split_once(&open)
            .and_then(|(_, rest)| rest.split_once(&close))
            .map(|(v, _)| v.trim().to_string())
    };
    let code = field("Code").unwrap_or_else(|| {
        match status {
            403 => "AccessDenied",
            404 => "NotFound",
            _ => "UnknownError",
        }
        .to_string()
    });
    GetError::Service {
        status,
        code,
        message: field("Message").unwrap_or_default(),
    }
}

/// The key, percent-encoded for a URL path (`/` kept: S3 keys use it as a separator).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
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

    fn reader(endpoint: Option<&str>, path_style: bool) -> S3Reader {
        let mut sdk = SdkConfig::builder().region(aws_types::region::Region::new("eu-west-1"));
        if let Some(e) = endpoint {
            sdk = sdk.endpoint_url(e);
        }
        let mut settings =
            AwsSettings::from_env(&crate::config::Env::from_pairs([])).expect("defaults");
        settings.s3_path_style = path_style;
        S3Reader::new(&sdk.build(), &settings)
    }

    #[test]
    fn urls_are_virtual_hosted_unless_asked_or_dotted() {
        let r = reader(None, false);
        assert_eq!(
            r.url("specs", "a/b c+d.json"),
            "https://specs.s3.eu-west-1.amazonaws.com/a/b%20c%2Bd.json"
        );
        assert_eq!(
            r.url("my.bucket", "k"),
            "https://s3.eu-west-1.amazonaws.com/my.bucket/k"
        );
        let local = reader(Some("http://127.0.0.1:4566/"), true);
        assert_eq!(local.url("b", "k/é"), "http://127.0.0.1:4566/b/k/%C3%A9");
    }

    #[test]
    fn errors_carry_s3s_code_and_only_some_are_retried() {
        let e = service_error(
            404,
            "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>",
        );
        assert_eq!(e.code(), Some("NoSuchKey"));
        assert_eq!(e.describe(), "NoSuchKey: The specified key does not exist.");
        assert!(!e.retryable());
        assert_eq!(service_error(403, "").code(), Some("AccessDenied"));
        assert!(service_error(503, "<Error><Code>SlowDown</Code></Error>").retryable());
        assert!(service_error(500, "").retryable());
        assert!(GetError::Transport("reset".into()).retryable());
        assert!(!GetError::TooLarge { len: None }.retryable());
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
