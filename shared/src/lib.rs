//! deploy-guard's common library: what every function of the suite stands on.
//!
//! - [`telemetry`]: JSON logs, clamped so raw events never reach them; the outcome line.
//! - [`config`]: typed configuration from the environment, errors naming the variable.
//! - [`aws`]: one SDK config with explicit timeouts and standard retries; error wording.
//! - [`awshttp`]: the one HTTPS client every AWS call goes through, SDK clients included.
//! - [`signed`], [`s3get`], [`awsjson`]: single signed calls where a service's SDK crate would
//!   cost more than the one operation used (S3 GetObject, SSM GetParameter, GetSecretValue).
//! - [`budget`]: the time an invocation may spend, with a reserve kept for its report.
//! - [`secret`]: a redacting wrapper for values that must never be logged.
//! - [`hooks`]: the CodeDeploy and ECS lifecycle-hook protocols.
//! - [`smoke`]: the smoke spec, the engine that runs it, and the verdict.
//! - [`discovery`]: finding the listener under test and the version deployed, from AWS state.
//! - [`specs`]: loading a service's smoke spec and its secrets from SSM, S3 or the default.

pub mod alarms;
pub mod aws;
pub mod awshttp;
pub mod awsjson;
pub mod budget;
pub mod config;
pub mod discovery;
pub mod hooks;
pub mod pipeline;
pub mod s3get;
pub mod secret;
pub mod signed;
pub mod smoke;
pub mod specs;
pub mod telemetry;
pub mod text;
pub mod version;
