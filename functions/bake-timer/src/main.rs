//! `bake-timer`: a CodePipeline invoke action that waits out a bake period after a deployment
//! while watching CloudWatch alarms, without ever sleeping inside Lambda: each invocation polls
//! once (current states and the history since the bake started) and answers with a
//! continuation token; CodePipeline invokes again about 30 s later.
//!
//! `main` wires: logging, configuration, the SDK config and clients, all built once.
//! `handler` decides and acts; `bake` holds the token and the pure decision.

mod bake;
mod config;
mod handler;

use deploy_guard::config::Env;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    deploy_guard::telemetry::init();
    let env = Env::from_process();
    let (aws, config) = config::load(&env);
    if let Err(e) = &config {
        // Keep serving: every job fails with this error instead of hanging the pipeline.
        tracing::error!(error = %e, "configuration error; every job will fail until it is fixed");
    }
    let sdk = deploy_guard::aws::load_sdk_config(&aws).await;
    let app = handler::App {
        codepipeline: aws_sdk_codepipeline::Client::new(&sdk),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
        aws,
        config,
    };
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        handler::handle(app, event)
    }))
    .await
}
