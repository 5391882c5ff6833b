//! `alarm-rollback`: rolls back the release behind a CloudWatch alarm the moment it goes to
//! ALARM, whichever way the service is deployed (CodeDeploy, ECS rolling, ECS blue/green, linear
//! or canary), and says what it decided and why in one line.
//!
//! `main` wires: logging, configuration and the SDK clients, all built once. `handler` reads
//! and acts; `decide` is the decision table, pure.

mod config;
mod decide;
mod handler;

use deploy_guard::config::Env;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    deploy_guard::telemetry::init();
    let env = Env::from_process();
    let (aws, config) = config::load(&env);
    if let Err(e) = &config {
        // Keep serving: every event ends in a Lambda error naming the variable (and reaches the
        // dead-letter queue), instead of a function that cannot start.
        tracing::error!(error = %e, "configuration error; every event will fail until it is fixed");
    }
    let sdk = deploy_guard::aws::load_sdk_config(&aws).await;
    let app = handler::App {
        clients: handler::Clients {
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
            codedeploy: aws_sdk_codedeploy::Client::new(&sdk),
            ecs: aws_sdk_ecs::Client::new(&sdk),
            events: aws_sdk_eventbridge::Client::new(&sdk),
        },
        config,
    };
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        handler::handle(app, event)
    }))
    .await
}
