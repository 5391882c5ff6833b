//! The image gate's configuration, read once from the environment. The policy itself is per
//! pipeline, in the action's `UserParameters` (see `policy`).

use std::time::Duration;

use deploy_guard::config::{AwsSettings, ConfigError, Env};

/// Everything the gate reads from its environment.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// `REPORT_RESERVE_MS` (default 3000): time kept for the report call.
    pub report_reserve: Duration,
    /// `ARTIFACT_MAX_BYTES` (default 10 MiB, at most 100 MiB): the input artifact's zip.
    pub artifact_max_bytes: u64,
    /// `ARTIFACT_FILE_MAX_BYTES` (default 1 MiB, at most 10 MiB): the file unzipped from it.
    pub file_max_bytes: u64,
}

impl GateConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let bounded = |var: &str, default: u64, max: u64| -> Result<u64, ConfigError> {
            let v: u64 = env.parsed(var, default)?;
            if v == 0 || v > max {
                return Err(ConfigError::new(
                    var,
                    format!("must be 1 to {max}, found {v}"),
                ));
            }
            Ok(v)
        };
        Ok(Self {
            report_reserve: env.millis("REPORT_RESERVE_MS", 3_000)?,
            artifact_max_bytes: bounded("ARTIFACT_MAX_BYTES", 10 << 20, 100 << 20)?,
            file_max_bytes: bounded("ARTIFACT_FILE_MAX_BYTES", 1 << 20, 10 << 20)?,
        })
    }
}

/// Reads both configurations; the function still starts when they are wrong, and reports it.
pub fn load(env: &Env) -> (AwsSettings, Result<GateConfig, ConfigError>) {
    deploy_guard::config::load(env, GateConfig::from_env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_values() {
        let c = GateConfig::from_env(&Env::from_pairs([])).expect("defaults");
        assert_eq!(c.artifact_max_bytes, 10 << 20);
        assert_eq!(c.report_reserve, Duration::from_secs(3));
        for (var, value) in [
            ("ARTIFACT_MAX_BYTES", "0"),
            ("ARTIFACT_MAX_BYTES", "lots"),
            ("ARTIFACT_FILE_MAX_BYTES", "999999999999"),
            ("REPORT_RESERVE_MS", "soon"),
        ] {
            let e = GateConfig::from_env(&Env::from_pairs([(var, value)])).expect_err(var);
            assert_eq!(e.var, var, "{e}");
        }
        let (aws, gate) = load(&Env::from_pairs([("AWS_MAX_ATTEMPTS", "x")]));
        assert_eq!(aws.max_attempts, 3);
        assert_eq!(gate.expect_err("bad").var, "AWS_MAX_ATTEMPTS");
    }
}
