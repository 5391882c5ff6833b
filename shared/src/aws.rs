//! One AWS SDK configuration per process, with explicit timeouts and standard retries.
//!
//! Built once in `main`, outside the handler; clients are made from it and passed in by
//! reference. Per-call overrides (the report call's shorter timeout) use
//! [`report_timeouts`] with the SDK's `customize()`.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::config::AwsSettings;

/// Loads the shared SDK config: region and credentials from the environment (as Lambda provides
/// them), `AWS_ENDPOINT_URL[_<SERVICE>]` honoured (the local test bed), timeouts and retries
/// from `settings`.
pub async fn load_sdk_config(settings: &AwsSettings) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts(settings))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(settings.max_attempts)
                .with_initial_backoff(Duration::from_millis(100))
                .with_max_backoff(Duration::from_secs(2)),
        )
        .load()
        .await
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
