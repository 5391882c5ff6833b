//! Logging: JSON lines with structured fields, and one outcome line per invocation.
//!
//! The level comes from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG` (default INFO). Whatever it says,
//! the runtime, the SDK and the HTTP stack are clamped to INFO: `lambda_runtime` prints raw
//! events at TRACE, and those may hold live credentials (reliability.md, invariant 8).

use std::io::Write;

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Crates whose DEBUG/TRACE output may carry raw events, headers or bodies.
/// `aws` covers every crate of the SDK (`aws_sdk_*`, `aws_smithy_*`, `aws_config`,
/// `aws_runtime`, `aws_credential_types`, and `aws_sigv4`, which prints the access key id of the
/// signing credentials at TRACE).
const CLAMPED: &[&str] = &[
    "lambda_runtime",
    "lambda_runtime_api_client",
    "aws",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "reqwest",
    "tower",
];

/// True when a log record from `target` at `level` may be written.
pub fn allowed(target: &str, level: &Level) -> bool {
    let clamped = CLAMPED.iter().any(|c| {
        target == *c
            || target.starts_with(&format!("{c}::"))
            || target.starts_with(&format!("{c}_"))
    });
    !clamped || *level <= Level::INFO
}

/// The level filter from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`: a level (`debug`), or
/// `target=level` directives separated by commas (`info,deploy_guard=trace`). Anything that does
/// not parse means INFO. (`tracing_subscriber`'s `Targets`, not `EnvFilter`: the span and field
/// filters `EnvFilter` adds are never used here, and its regex engine was in every binary.)
pub fn level_filter(spec: Option<&str>) -> Targets {
    let info = || Targets::new().with_default(LevelFilter::INFO);
    let mut targets = Targets::new().with_default(LevelFilter::INFO);
    for part in spec.unwrap_or("info").split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let level = |l: &str| l.trim().to_ascii_lowercase().parse::<LevelFilter>().ok();
        match part.split_once('=') {
            Some((target, l)) => {
                let target = target.trim();
                let valid = !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
                match (valid, level(l)) {
                    (true, Some(l)) => targets = targets.with_target(target.to_string(), l),
                    _ => return info(),
                }
            }
            None => match level(part) {
                Some(l) => targets = targets.with_default(l),
                None => return info(),
            },
        }
    }
    targets
}

fn env_filter() -> Targets {
    let spec = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    level_filter(spec.as_deref())
}

/// Installs the JSON logger on stdout. Call once, first thing in `main`.
pub fn init() {
    let clamp = filter_fn(|meta| allowed(meta.target(), meta.level()));
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .without_time()
        .with_writer(std::io::stdout)
        .with_filter(env_filter().and(clamp));
    // A second init (tests) is harmless; keep the first.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Writes the invocation's outcome as one JSON line on stdout, `"target": "outcome"`.
/// `fields` is an object; it must hold no secret (it is built from reports, not from inputs).
pub fn emit_outcome(fields: serde_json::Value) {
    let mut line = serde_json::json!({"level": "INFO", "target": "outcome", "message": "outcome"});
    if let (Some(obj), serde_json::Value::Object(extra)) = (line.as_object_mut(), fields) {
        obj.extend(extra);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_and_sdk_are_clamped_to_info() {
        for target in [
            "lambda_runtime",
            "lambda_runtime::layers::api_client",
            "lambda_runtime_api_client",
            "aws_smithy_runtime::client::orchestrator",
            "aws_sdk_codedeploy::operation",
            "aws_sigv4::http_request::sign",
            "aws_credential_types::provider",
            "hyper_util::client",
            "reqwest::connect",
        ] {
            assert!(
                !allowed(target, &Level::TRACE),
                "{target} TRACE must be dropped"
            );
            assert!(
                !allowed(target, &Level::DEBUG),
                "{target} DEBUG must be dropped"
            );
            assert!(allowed(target, &Level::INFO), "{target} INFO passes");
            assert!(allowed(target, &Level::ERROR), "{target} ERROR passes");
        }
    }

    #[test]
    fn the_level_comes_from_a_level_or_directives() {
        let enabled = |spec: Option<&str>, target: &str, level: Level| {
            let f = level_filter(spec);
            f.would_enable(target, &level)
        };
        assert!(enabled(None, "deploy_guard", Level::INFO));
        assert!(!enabled(None, "deploy_guard", Level::DEBUG));
        assert!(enabled(Some("DEBUG"), "smoke_test_hook", Level::DEBUG));
        assert!(!enabled(Some("warn"), "smoke_test_hook", Level::INFO));
        assert!(enabled(
            Some("info,deploy_guard=trace"),
            "deploy_guard::smoke",
            Level::TRACE
        ));
        assert!(!enabled(
            Some("info,deploy_guard=trace"),
            "image_gate",
            Level::DEBUG
        ));
        assert!(
            enabled(Some("not a [valid] filter"), "x", Level::INFO),
            "nonsense means INFO"
        );
        assert!(!enabled(Some("not a [valid] filter"), "x", Level::DEBUG));
    }

    #[test]
    fn our_own_targets_follow_the_level() {
        assert!(allowed("smoke_test_hook::handler", &Level::TRACE));
        assert!(allowed("deploy_guard::smoke", &Level::DEBUG));
        assert!(
            allowed("hyperion", &Level::TRACE),
            "only whole crate names are clamped"
        );
    }
}
