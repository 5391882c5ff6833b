//! `smoke-test-hook`: smoke-tests a new ECS version on its test listener before traffic moves,
//! and tells CodeDeploy (or ECS) a verdict every time, with the reasons.
//!
//! `main` wires: logging, configuration, SDK clients and the HTTP engine, all built once.
//! `handler` decides and acts.

mod config;
mod handler;

use deploy_guard::config::Env;
use deploy_guard::discovery::Clients;
use deploy_guard::smoke::engine::Engine;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    deploy_guard::telemetry::init();
    let env = Env::from_process();
    let (aws, config) = config::load(&env);
    if let Err(e) = &config {
        // Keep serving: every invocation reports Failed with this error, instead of leaving
        // CodeDeploy waiting an hour for a function that cannot start.
        tracing::error!(error = %e, "configuration error; every verdict will be Failed until it is fixed");
    }
    let sdk = deploy_guard::aws::load_sdk_config(&aws).await;
    let clients = Clients {
        codedeploy: aws_sdk_codedeploy::Client::new(&sdk),
        ecs: aws_sdk_ecs::Client::new(&sdk),
        elbv2: aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
        s3: deploy_guard::s3get::S3Reader::new(&sdk, &aws),
        params: deploy_guard::awsjson::ParamsAndSecrets::new(&sdk, &aws),
    };
    let engine = Engine::new(
        config
            .as_ref()
            .map(|c| c.resolve.clone())
            .unwrap_or_default(),
    );
    let app = handler::App {
        clients,
        aws,
        config,
        engine,
    };
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        handler::handle(app, event)
    }))
    .await
}
