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
        .http_client(https_client())
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

/// The SDK's HTTPS client, trusting the compiled-in Mozilla roots. The default client reads and
/// parses the whole system certificate store when the first SDK client is built, which was
/// most of the cold start (performance.md); AWS endpoints chain to these roots.
fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls;
    let trust = tls::TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(roots_pem().into_bytes());
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .unwrap_or_default();
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(context)
        .build_https()
}

/// The compiled-in roots as one PEM bundle (the SDK's trust store takes PEM).
fn roots_pem() -> String {
    let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS;
    let mut pem = String::with_capacity(roots.len() * 2048);
    for der in roots {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        pem.push_str(&aws_smithy_types::base64::encode(der.as_ref()));
        pem.push_str("\n-----END CERTIFICATE-----\n");
    }
    pem
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
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    #[test]
    fn the_roots_bundle_holds_every_compiled_in_root() {
        let pem = roots_pem();
        let certs: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("valid PEM");
        assert_eq!(certs.len(), webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        assert!(certs.len() > 100, "{} roots", certs.len());
        let mut store = rustls::RootCertStore::empty();
        let (added, ignored) = store.add_parsable_certificates(certs);
        assert_eq!((added > 100, ignored), (true, 0));
    }
}
