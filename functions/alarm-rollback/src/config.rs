//! The router's configuration, read once from the environment.

use std::time::Duration;

use deploy_guard::alarms::{StaticTargets, DEFAULT_TAG_PREFIX};
use deploy_guard::config::{AwsSettings, ConfigError, Env};

/// Everything the router reads from its environment.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// `MAX_EVENT_AGE_S` (default 600): older events are ignored.
    pub max_event_age: Duration,
    /// `ROLLBACK_WINDOW_S` (default 1800): how long after a release finished an alarm still rolls
    /// it back (by redeploying the previous revision).
    pub rollback_window: Duration,
    /// `HISTORY_DAYS` (default 14): how far back CodeDeploy deployments are read to find the last
    /// good revision.
    pub history: Duration,
    /// `TAG_PREFIX` (default `deploy-guard:`): prefix of the alarm tags naming the target.
    pub tag_prefix: String,
    /// `ALARM_TARGETS`: JSON object, alarm name (or `prefix*`) → `codedeploy:APP/GROUP` or
    /// `ecs:CLUSTER/SERVICE`. Wins over tags.
    pub targets: StaticTargets,
    /// `EXPECTED_ACCOUNT` (default: the account in the function's own ARN).
    pub account: Option<String>,
    /// `EXPECTED_REGION` (default `AWS_REGION`).
    pub region: String,
    /// `EVENT_BUS_NAME` (default `default`): where "Rollback Started" is announced.
    pub event_bus: String,
    /// `EVENT_SOURCE` (default `deploy-guard.alarm-rollback`).
    pub event_source: String,
    /// `DRY_RUN` (default false): decide and log, change nothing, announce nothing.
    pub dry_run: bool,
    /// `DEADLINE_RESERVE_MS` (default 1000): time kept at the end of an invocation to log the
    /// decision and answer.
    pub deadline_reserve: Duration,
}

/// Source of the announcements, by default.
pub const DEFAULT_EVENT_SOURCE: &str = "deploy-guard.alarm-rollback";

impl RouterConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let secs = |var: &str, default: u64, min: u64| -> Result<Duration, ConfigError> {
            let v: u64 = env.parsed(var, default)?;
            if v < min {
                return Err(ConfigError::new(
                    var,
                    format!("must be at least {min}, found {v}"),
                ));
            }
            Ok(Duration::from_secs(v))
        };
        let rollback_window = secs("ROLLBACK_WINDOW_S", 1800, 0)?;
        let history_days: u64 = env.parsed("HISTORY_DAYS", 14)?;
        if !(1..=90).contains(&history_days) {
            return Err(ConfigError::new(
                "HISTORY_DAYS",
                format!("must be 1 to 90, found {history_days}"),
            ));
        }
        let history = Duration::from_secs(history_days * 86_400);
        if history < rollback_window {
            return Err(ConfigError::new(
                "HISTORY_DAYS",
                format!(
                    "{history_days} days is shorter than ROLLBACK_WINDOW_S ({} s)",
                    rollback_window.as_secs()
                ),
            ));
        }
        let targets = env
            .get("ALARM_TARGETS")
            .map(StaticTargets::parse)
            .transpose()
            .map_err(|e| ConfigError::new("ALARM_TARGETS", e))?
            .unwrap_or_default();
        let region = env
            .get("EXPECTED_REGION")
            .or_else(|| env.get("AWS_REGION"))
            .ok_or_else(|| {
                ConfigError::new(
                    "EXPECTED_REGION",
                    "is not set and neither is AWS_REGION: the region events must come from is unknown",
                )
            })?
            .trim()
            .to_string();
        let account = match env.get("EXPECTED_ACCOUNT").map(str::trim) {
            Some(a) if a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()) => {
                Some(a.to_string())
            }
            Some(a) => {
                return Err(ConfigError::new(
                    "EXPECTED_ACCOUNT",
                    format!("expected a 12-digit account id, found {a:?}"),
                ))
            }
            None => None,
        };
        let tag_prefix = env
            .get("TAG_PREFIX")
            .unwrap_or(DEFAULT_TAG_PREFIX)
            .to_string();
        Ok(Self {
            max_event_age: secs("MAX_EVENT_AGE_S", 600, 1)?,
            rollback_window,
            history,
            tag_prefix,
            targets,
            account,
            region,
            event_bus: env
                .get("EVENT_BUS_NAME")
                .unwrap_or("default")
                .trim()
                .to_string(),
            event_source: env
                .get("EVENT_SOURCE")
                .unwrap_or(DEFAULT_EVENT_SOURCE)
                .trim()
                .to_string(),
            dry_run: env.flag("DRY_RUN", false)?,
            deadline_reserve: env.millis("DEADLINE_RESERVE_MS", 1_000)?,
        })
    }
}

/// Reads both configurations; the function still starts when they are wrong, and reports it.
pub fn load(env: &Env) -> (AwsSettings, Result<RouterConfig, ConfigError>) {
    deploy_guard::config::load(env, RouterConfig::from_env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c =
            RouterConfig::from_env(&Env::from_pairs([("AWS_REGION", "us-east-1")])).expect("valid");
        assert_eq!(c.max_event_age, Duration::from_secs(600));
        assert_eq!(c.rollback_window, Duration::from_secs(1800));
        assert_eq!(c.tag_prefix, "deploy-guard:");
        assert_eq!(c.event_bus, "default");
        assert_eq!(c.event_source, DEFAULT_EVENT_SOURCE);
        assert!(!c.dry_run && c.targets.is_empty() && c.account.is_none());
    }

    #[test]
    fn a_full_configuration_reads() {
        let c = RouterConfig::from_env(&Env::from_pairs([
            ("AWS_REGION", "us-east-1"),
            ("EXPECTED_REGION", "eu-west-1"),
            ("EXPECTED_ACCOUNT", "123456789012"),
            ("ALARM_TARGETS", r#"{"shop-*": "ecs:prod/shop"}"#),
            ("ROLLBACK_WINDOW_S", "600"),
            ("DRY_RUN", "true"),
        ]))
        .expect("valid");
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.account.as_deref(), Some("123456789012"));
        assert!(c.targets.lookup("shop-5xx").is_some());
        assert!(c.dry_run);
    }

    /// Each bad variable and the name its error must carry.
    #[test]
    fn bad_variables_are_named() {
        let cases = [
            ("MAX_EVENT_AGE_S", "0"),
            ("MAX_EVENT_AGE_S", "ten"),
            ("ROLLBACK_WINDOW_S", "-1"),
            ("HISTORY_DAYS", "0"),
            ("ALARM_TARGETS", "not json"),
            ("ALARM_TARGETS", r#"{"a": "lambda:x/y"}"#),
            ("EXPECTED_ACCOUNT", "12345"),
            ("DRY_RUN", "maybe"),
            ("DEADLINE_RESERVE_MS", "1s"),
        ];
        for (var, value) in cases {
            let e = RouterConfig::from_env(&Env::from_pairs([
                ("AWS_REGION", "us-east-1"),
                (var, value),
            ]))
            .expect_err(var);
            assert_eq!(e.var, var, "{e}");
        }
        let e = RouterConfig::from_env(&Env::from_pairs([
            ("AWS_REGION", "us-east-1"),
            ("ROLLBACK_WINDOW_S", "864000"),
            ("HISTORY_DAYS", "1"),
        ]))
        .expect_err("history shorter than the window");
        assert_eq!(e.var, "HISTORY_DAYS");
        let e = RouterConfig::from_env(&Env::from_pairs([])).expect_err("no region");
        assert_eq!(e.var, "EXPECTED_REGION");
    }

    #[test]
    fn bad_aws_settings_still_give_usable_settings_and_an_error() {
        let (aws, router) = load(&Env::from_pairs([
            ("AWS_REGION", "us-east-1"),
            ("AWS_MAX_ATTEMPTS", "lots"),
        ]));
        assert_eq!(aws.max_attempts, 3);
        assert_eq!(router.expect_err("error").var, "AWS_MAX_ATTEMPTS");
    }
}
