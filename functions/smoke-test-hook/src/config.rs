//! The smoke hook's configuration, read once from the environment.

use std::collections::BTreeMap;
use std::time::Duration;

use deploy_guard::config::{AwsSettings, ConfigError, Env};
use deploy_guard::smoke::engine::ResolveMap;
use deploy_guard::smoke::spec::Spec;
use deploy_guard::specs::{SpecLocation, SpecSource};
use serde::Deserialize;

/// An operator's override of where a service's checks go.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Override {
    Url(String),
    Full {
        base_url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone)]
pub struct TargetOverride {
    pub base_url: url::Url,
    pub headers: Vec<(String, String)>,
}

/// Everything the hook reads from its environment.
#[derive(Debug, Clone)]
pub struct HookConfig {
    /// `SMOKE_SPEC_LOCATION` and `SMOKE_SPEC_DEFAULT`.
    pub specs: SpecSource,
    /// `TARGET_OVERRIDES`: JSON object keyed by `application/deploymentGroup` or
    /// `cluster/service`; a base URL, or `{"base_url", "headers"}`.
    pub overrides: BTreeMap<String, TargetOverride>,
    /// `SMOKE_RESOLVE`: curl `--resolve` style host mappings.
    pub resolve: ResolveMap,
    /// `REPORT_RESERVE_MS` (default 3000): time kept for the report call.
    pub report_reserve: Duration,
    /// `ECS_CALLBACK_DELAY_S` (default 30): how soon ECS calls back after IN_PROGRESS.
    pub ecs_callback_delay: u32,
    /// `ECS_INVOCATION_BUDGET_MS` (default 60000): how long one ECS invocation polls before
    /// answering IN_PROGRESS, so waiting is not paid for by the second.
    pub ecs_invocation_budget: Duration,
}

impl HookConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let location = env
            .get("SMOKE_SPEC_LOCATION")
            .map(SpecLocation::parse)
            .transpose()
            .map_err(|e| ConfigError::new("SMOKE_SPEC_LOCATION", e))?;
        let default = env.get("SMOKE_SPEC_DEFAULT").map(str::to_string);
        if let Some(text) = &default {
            Spec::parse(text).map_err(|e| ConfigError::new("SMOKE_SPEC_DEFAULT", e.to_string()))?;
        }
        let raw: BTreeMap<String, Override> = env.json("TARGET_OVERRIDES")?.unwrap_or_default();
        let mut overrides = BTreeMap::new();
        for (key, o) in raw {
            let (url, headers) = match o {
                Override::Url(u) => (u, BTreeMap::new()),
                Override::Full { base_url, headers } => (base_url, headers),
            };
            let base_url = url::Url::parse(&url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .ok_or_else(|| {
                    ConfigError::new(
                        "TARGET_OVERRIDES",
                        format!("{key}: {url:?} is not an http(s) URL"),
                    )
                })?;
            if !key.contains('/') {
                return Err(ConfigError::new(
                    "TARGET_OVERRIDES",
                    format!("key {key:?} must be application/deploymentGroup or cluster/service"),
                ));
            }
            overrides.insert(
                key,
                TargetOverride {
                    base_url,
                    headers: headers.into_iter().collect(),
                },
            );
        }
        let resolve = env
            .get("SMOKE_RESOLVE")
            .map(ResolveMap::parse)
            .transpose()
            .map_err(|e| ConfigError::new("SMOKE_RESOLVE", e))?
            .unwrap_or_default();
        let ecs_callback_delay: u32 = env.parsed("ECS_CALLBACK_DELAY_S", 30)?;
        if !(1..=3600).contains(&ecs_callback_delay) {
            return Err(ConfigError::new(
                "ECS_CALLBACK_DELAY_S",
                format!("must be 1 to 3600, found {ecs_callback_delay}"),
            ));
        }
        Ok(Self {
            specs: SpecSource { location, default },
            overrides,
            resolve,
            report_reserve: env.millis("REPORT_RESERVE_MS", 3_000)?,
            ecs_callback_delay,
            ecs_invocation_budget: env.millis("ECS_INVOCATION_BUDGET_MS", 60_000)?,
        })
    }
}

/// Reads both configurations; the function still starts when they are wrong, and reports it.
pub fn load(env: &Env) -> (AwsSettings, Result<HookConfig, ConfigError>) {
    deploy_guard::config::load(env, HookConfig::from_env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_configuration_reads() {
        let env = Env::from_pairs([
            ("SMOKE_SPEC_LOCATION", "ssm:/dg/specs"),
            ("SMOKE_SPEC_DEFAULT", r#"{"checks": [{"path": "/"}]}"#),
            (
                "TARGET_OVERRIDES",
                r#"{"app/grp": "http://svc.local:8080", "c/s": {"base_url": "http://x:1", "headers": {"x-amzn-ecs-bluegreen-test": "1"}}}"#,
            ),
            ("SMOKE_RESOLVE", "svc.local:8080:127.0.0.1"),
            ("REPORT_RESERVE_MS", "1500"),
        ]);
        let c = HookConfig::from_env(&env).expect("valid");
        assert_eq!(c.overrides.len(), 2);
        assert_eq!(c.overrides["c/s"].headers.len(), 1);
        assert_eq!(c.report_reserve, Duration::from_millis(1500));
        assert!(!c.resolve.is_empty());
    }

    /// Each bad variable and the name its error must carry.
    #[test]
    fn bad_variables_are_named() {
        let cases = [
            ("SMOKE_SPEC_LOCATION", "dynamodb://x"),
            ("SMOKE_SPEC_DEFAULT", r#"{"checks": [{"path": "nope"}]}"#),
            ("TARGET_OVERRIDES", "not json"),
            ("TARGET_OVERRIDES", r#"{"app/grp": "ftp://x"}"#),
            ("TARGET_OVERRIDES", r#"{"nokey": "http://x"}"#),
            ("SMOKE_RESOLVE", "host-without-port"),
            ("REPORT_RESERVE_MS", "soon"),
            ("ECS_CALLBACK_DELAY_S", "0"),
        ];
        for (var, value) in cases {
            let e = HookConfig::from_env(&Env::from_pairs([(var, value)])).expect_err(var);
            assert_eq!(e.var, var, "{e}");
        }
    }

    #[test]
    fn bad_aws_settings_still_give_usable_settings_and_an_error() {
        let (aws, hook) = load(&Env::from_pairs([("AWS_MAX_ATTEMPTS", "lots")]));
        assert_eq!(aws.max_attempts, 3);
        assert_eq!(hook.expect_err("error").var, "AWS_MAX_ATTEMPTS");
    }
}
