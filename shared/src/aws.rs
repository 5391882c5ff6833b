//! One AWS SDK configuration per process, with explicit timeouts and standard retries.
//!
//! Built once in `main`, outside the handler; clients are made from it and passed in by
//! reference. Per-call overrides (the report call's shorter timeout) use
//! [`report_timeouts`] with the SDK's `customize()`.

use std::time::Duration;

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use aws_types::region::Region;
use aws_types::SdkConfig;

use crate::config::AwsSettings;

/// Builds the shared SDK config from the environment Lambda provides: region (`AWS_REGION`, else
/// `AWS_DEFAULT_REGION`), credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`), `AWS_ENDPOINT_URL` (the local test bed), `AWS_USE_FIPS_ENDPOINT` and
/// `AWS_USE_DUALSTACK_ENDPOINT`; timeouts and retries from `settings`.
///
/// Not `aws_config::load`: its default chain (profile files, SSO, web identity through STS,
/// IMDS, the ECS container endpoint) is never used in Lambda, yet it was linked into every
/// binary and its profile files were read at every cold start.
pub async fn load_sdk_config(settings: &AwsSettings) -> SdkConfig {
    sdk_config_from(settings, |name| std::env::var(name).ok())
}

/// [`load_sdk_config`] with the environment read through `var` (for tests).
pub fn sdk_config_from(settings: &AwsSettings, var: impl Fn(&str) -> Option<String>) -> SdkConfig {
    let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let region = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION"));
    let credentials = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => SharedCredentialsProvider::new(Credentials::new(
            id,
            secret,
            var("AWS_SESSION_TOKEN"),
            None,
            "Environment",
        )),
        _ => SharedCredentialsProvider::new(NoCredentials),
    };
    let flag = |name: &str| var(name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region.map(Region::new))
        .credentials_provider(credentials)
        .http_client(crate::awshttp::sdk_http_client(crate::awshttp::client(
            settings,
        )))
        .sleep_impl(aws_smithy_async::rt::sleep::SharedAsyncSleep::new(
            aws_smithy_async::rt::sleep::TokioSleep::new(),
        ))
        .time_source(aws_smithy_async::time::SharedTimeSource::new(
            aws_smithy_async::time::SystemTimeSource::new(),
        ))
        .timeout_config(timeouts(settings))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(settings.max_attempts)
                .with_initial_backoff(Duration::from_millis(100))
                .with_max_backoff(Duration::from_secs(2)),
        )
        .use_fips(flag("AWS_USE_FIPS_ENDPOINT"))
        .use_dual_stack(flag("AWS_USE_DUALSTACK_ENDPOINT"));
    if let Some(url) = var("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(url);
    }
    builder.build()
}

/// The credentials provider when the environment holds none: every call fails, saying why
/// (in Lambda this means the function has no execution role credentials at all).
#[derive(Debug)]
struct NoCredentials;

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
            "no AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set",
        )))
    }
}

fn timeouts(settings: &AwsSettings) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(settings.connect_timeout)
        .operation_attempt_timeout(settings.attempt_timeout)
        .operation_timeout(settings.operation_timeout)
        .build()
}

/// Timeouts for a call that must finish within `total` (the report call near the deadline).
pub fn report_timeouts(settings: &AwsSettings, total: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(settings.connect_timeout.min(total))
        .operation_attempt_timeout(settings.attempt_timeout.min(total))
        .operation_timeout(total)
        .build()
}

/// An SDK error in one line: the service's error code and message when there is one, else
/// the transport failure (timeout, connection, …) with its cause chain.
pub fn describe_sdk_error<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            match (e.code(), e.message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (Some(code), None) => code.to_string(),
                _ => error_chain(e),
            }
        }
        SdkError::TimeoutError(_) => "timed out waiting for AWS (operation timeout)".to_string(),
        SdkError::DispatchFailure(df) => {
            if df.is_timeout() {
                "timed out connecting to AWS".to_string()
            } else {
                format!("could not reach AWS: {}", error_chain(err))
            }
        }
        _ => error_chain(err),
    }
}

/// The service error code of an SDK error, if the service answered with one.
pub fn error_code<E, R>(err: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    }
}

/// `err` and its sources, joined with ": ".
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut src = err.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn settings() -> AwsSettings {
        AwsSettings::from_env(&crate::config::Env::from_pairs([])).expect("defaults")
    }

    #[tokio::test]
    async fn the_config_comes_from_the_lambda_environment() {
        let sdk = sdk_config_from(
            &settings(),
            env(&[
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_REGION", "eu-central-1"),
                ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
                ("AWS_SESSION_TOKEN", "token"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ]),
        );
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-central-1"));
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:4566"));
        assert_eq!(sdk.use_fips(), Some(false));
        let creds = sdk
            .credentials_provider()
            .expect("a provider")
            .provide_credentials()
            .await
            .expect("credentials");
        assert_eq!(creds.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(creds.session_token(), Some("token"));
        let timeouts = sdk.timeout_config().expect("timeouts");
        assert_eq!(timeouts.connect_timeout(), Some(Duration::from_secs(3)));
    }

    #[tokio::test]
    async fn missing_credentials_fail_each_call_with_the_reason() {
        let sdk = sdk_config_from(&settings(), env(&[("AWS_DEFAULT_REGION", "eu-west-1")]));
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(sdk.endpoint_url(), None);
        let err = sdk
            .credentials_provider()
            .expect("a provider")
            .provide_credentials()
            .await
            .expect_err("no credentials");
        assert!(
            error_chain(&err).contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set"),
            "{}",
            error_chain(&err)
        );
    }
}
