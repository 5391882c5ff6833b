//! The bake timer's configuration, read once from the environment. The policy itself is per
//! pipeline, in the action's `UserParameters` (see `bake`).

use std::time::Duration;

use deploy_guard::config::{AwsSettings, ConfigError, Env};

/// Everything the bake timer reads from its environment.
#[derive(Debug, Clone)]
pub struct BakeConfig {
    /// `REPORT_RESERVE_MS` (default 3000): time kept for the report call.
    pub report_reserve: Duration,
    /// `HISTORY_CONCURRENCY` (default 4, 1 to 16): alarm histories read at once.
    pub history_concurrency: usize,
}

impl BakeConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let history_concurrency: usize = env.parsed("HISTORY_CONCURRENCY", 4)?;
        if !(1..=16).contains(&history_concurrency) {
            return Err(ConfigError::new(
                "HISTORY_CONCURRENCY",
                format!("must be 1 to 16, found {history_concurrency}"),
            ));
        }
        Ok(Self {
            report_reserve: env.millis("REPORT_RESERVE_MS", 3_000)?,
            history_concurrency,
        })
    }
}

/// Reads both configurations; the function still starts when they are wrong, and reports it.
pub fn load(env: &Env) -> (AwsSettings, Result<BakeConfig, ConfigError>) {
    deploy_guard::config::load(env, BakeConfig::from_env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_values() {
        let c = BakeConfig::from_env(&Env::from_pairs([])).expect("defaults");
        assert_eq!(c.history_concurrency, 4);
        assert_eq!(c.report_reserve, Duration::from_secs(3));
        for (var, value) in [
            ("HISTORY_CONCURRENCY", "0"),
            ("HISTORY_CONCURRENCY", "lots"),
            ("REPORT_RESERVE_MS", "soon"),
        ] {
            let e = BakeConfig::from_env(&Env::from_pairs([(var, value)])).expect_err(var);
            assert_eq!(e.var, var, "{e}");
        }
        let (aws, bake) = load(&Env::from_pairs([("AWS_MAX_ATTEMPTS", "x")]));
        assert_eq!(aws.max_attempts, 3);
        assert_eq!(bake.expect_err("bad").var, "AWS_MAX_ATTEMPTS");
    }
}
