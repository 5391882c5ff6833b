//! `image-gate`: a CodePipeline invoke action that answers "is this image one we are allowed to
//! ship?" before the deploy stage: tag rules, the digest in ECR, the repository's tag
//! mutability, scan findings and age. On success its output variables pin the image by digest,
//! so the deploy stage ships exactly what was checked.
//!
//! `main` wires: logging, configuration, the SDK config and clients, all built once.
//! `handler` decides and acts; `policy` is the pure decision.

mod config;
mod handler;
mod policy;

use deploy_guard::config::Env;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    deploy_guard::telemetry::init();
    let env = Env::from_process();
    let (aws, config) = config::load(&env);
    if let Err(e) = &config {
        // Keep serving: every job is failed with this error (ConfigurationError), instead of
        // leaving the pipeline waiting for an action that never reports.
        tracing::error!(error = %e, "configuration error; every job will fail until it is fixed");
    }
    let sdk = deploy_guard::aws::load_sdk_config(&aws).await;
    let app = handler::App {
        codepipeline: aws_sdk_codepipeline::Client::new(&sdk),
        ecr: aws_sdk_ecr::Client::new(&sdk),
        region: sdk.region().map(|r| r.to_string()).unwrap_or_default(),
        s3: deploy_guard::s3get::S3Reader::new(&sdk, &aws),
        aws,
        config,
    };
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        handler::handle(app, event)
    }))
    .await
}
