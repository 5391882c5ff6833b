//! The one HTTPS stack for every AWS call: a `reqwest` client (rustls with ring, the compiled-in
//! Mozilla roots, HTTP/1.1, no proxy, no redirects), handed to the SDK clients as their HTTP
//! client and used directly by the signed S3 and JSON calls (`signed.rs`).
//!
//! Why not the SDK's own hyper client (`aws-smithy-http-client`): it built a rustls
//! configuration from a PEM trust store for every SDK client a function created (each time
//! parsing the 146 roots: about a third of the smoke hook's cold start, bench/analysis.md), and
//! it always links HTTP/2 (`h2`, about 0.36 MB of every zip) that the AWS JSON and query APIs
//! these functions call never use. `reqwest` was already linked for the smoke checks; its trust
//! anchors come pre-parsed from `webpki-roots`.
//!
//! Timeouts stay the SDK's: the orchestrator enforces the attempt and operation timeouts of
//! [`AwsSettings`] around every call; this client adds the connect timeout.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

use crate::config::AwsSettings;

/// `User-Agent` of the calls this crate signs itself (the SDK clients send their own).
pub const USER_AGENT: &str = concat!("deploy-guard/", env!("CARGO_PKG_VERSION"));

/// The HTTPS client for AWS endpoints, built once per process: the SDK clients, the S3 reader
/// and the JSON calls all get clones of it (one connection pool, one TLS configuration). A
/// caller asking for another connect timeout (tests) gets a client of its own.
pub fn client(settings: &AwsSettings) -> reqwest::Client {
    static SHARED: OnceLock<(Duration, reqwest::Client)> = OnceLock::new();
    let (timeout, shared) =
        SHARED.get_or_init(|| (settings.connect_timeout, build_client(settings)));
    if *timeout == settings.connect_timeout {
        shared.clone()
    } else {
        build_client(settings)
    }
}

fn build_client(settings: &AwsSettings) -> reqwest::Client {
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

/// The SDK's HTTP client: every SDK client of the process shares `http` (its connection pool and
/// its TLS configuration, built once).
pub fn sdk_http_client(http: reqwest::Client) -> SharedHttpClient {
    SharedHttpClient::new(SdkHttp {
        connector: SharedHttpConnector::new(Connector { http }),
    })
}

#[derive(Debug)]
struct SdkHttp {
    connector: SharedHttpConnector,
}

impl HttpClient for SdkHttp {
    /// One connector for every setting: the connect timeout is the client's, and the attempt and
    /// operation timeouts (which bound a shorter per-call connect timeout) are the orchestrator's.
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.connector.clone()
    }
}

#[derive(Debug, Clone)]
struct Connector {
    http: reqwest::Client,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let http = self.http.clone();
        HttpConnectorFuture::new(async move { send(&http, request).await })
    }
}

async fn send(
    http: &reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, ConnectorError> {
    let method = reqwest::Method::from_bytes(request.method().as_bytes())
        .map_err(|e| ConnectorError::user(e.into()))?;
    // Every operation these functions call has an in-memory body (JSON, query or CBOR).
    let body = request.body().bytes().map(<[u8]>::to_vec).ok_or_else(|| {
        ConnectorError::user("a streaming request body is not supported by this client".into())
    })?;
    let mut builder = http.request(method, request.uri());
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    let response = builder.body(body).send().await.map_err(connector_error)?;
    let status = StatusCode::try_from(response.status().as_u16())
        .map_err(|e| ConnectorError::other(e.into(), None))?;
    let headers = response.headers().clone();
    let bytes = response.bytes().await.map_err(connector_error)?;
    let mut out = HttpResponse::new(status, SdkBody::from(bytes));
    for (name, value) in &headers {
        if let Ok(value) = value.to_str() {
            out.headers_mut()
                .append(name.as_str().to_owned(), value.to_owned());
        }
    }
    Ok(out)
}

/// Sorts a transport failure the way the SDK's retry policy expects: timeouts and I/O failures
/// (refused, reset, cut off midway) are transient and retried; anything else is not.
fn connector_error(e: reqwest::Error) -> ConnectorError {
    if e.is_timeout() {
        ConnectorError::timeout(e.into())
    } else if e.is_connect() || e.is_request() || e.is_body() {
        ConnectorError::io(e.into())
    } else {
        ConnectorError::other(e.into(), None)
    }
}
