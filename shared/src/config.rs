//! Typed configuration read once from the environment.
//!
//! Every error names the variable and quotes what was found, so a misconfigured function says
//! exactly what to fix. Functions build their own config structs from [`Env`]; the settings
//! every function shares ([`AwsSettings`]) live here.

use std::collections::BTreeMap;
use std::time::Duration;

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration variable {var}: {problem}")]
pub struct ConfigError {
    pub var: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(var: &str, problem: impl Into<String>) -> Self {
        Self {
            var: var.to_string(),
            problem: problem.into(),
        }
    }
}

/// A source of variables: the process environment, or a map in tests.
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// Snapshot of the process environment.
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    /// A fixed set of variables (tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The value, if set and not blank.
    pub fn get(&self, var: &str) -> Option<&str> {
        self.vars
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// The value, or an error naming the variable.
    pub fn required(&self, var: &str) -> Result<&str, ConfigError> {
        self.get(var)
            .ok_or_else(|| ConfigError::new(var, "is required but not set"))
    }

    /// A whole number of milliseconds, or `default` when unset.
    pub fn millis(&self, var: &str, default: u64) -> Result<Duration, ConfigError> {
        self.parsed(var, default).map(Duration::from_millis)
    }

    /// A number parsed with `FromStr`, or `default` when unset.
    pub fn parsed<T: std::str::FromStr>(&self, var: &str, default: T) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|_| {
                ConfigError::new(
                    var,
                    format!(
                        "expected a {}, found {raw:?}",
                        std::any::type_name::<T>()
                            .rsplit("::")
                            .next()
                            .unwrap_or("value")
                    ),
                )
            }),
        }
    }

    /// `true`/`false` (also 1/0, yes/no), or `default` when unset.
    pub fn flag(&self, var: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes") => Ok(true),
            Some(v) if matches!(v.as_str(), "false" | "0" | "no") => Ok(false),
            Some(v) => Err(ConfigError::new(
                var,
                format!("expected true or false, found {v:?}"),
            )),
        }
    }

    /// A JSON document parsed into `T`, or `None` when unset.
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        var: &str,
    ) -> Result<Option<T>, ConfigError> {
        self.get(var)
            .map(|raw| {
                serde_json::from_str(raw)
                    .map_err(|e| ConfigError::new(var, format!("is not valid: {e}")))
            })
            .transpose()
    }
}

/// How every function talks to AWS: timeouts and retries. The Rust SDK has no default
/// operation timeout, so all three timeouts are always set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// `AWS_CONNECT_TIMEOUT_MS` (default 3000).
    pub connect_timeout: Duration,
    /// `AWS_ATTEMPT_TIMEOUT_MS` (default 5000): one HTTP attempt.
    pub attempt_timeout: Duration,
    /// `AWS_OPERATION_TIMEOUT_MS` (default 15000): all attempts of one call.
    pub operation_timeout: Duration,
    /// `AWS_MAX_ATTEMPTS` (default 3): standard retry mode.
    pub max_attempts: u32,
    /// `AWS_S3_FORCE_PATH_STYLE` (default: on when `AWS_ENDPOINT_URL` is set, for local AWS).
    pub s3_path_style: bool,
}

/// Reads the SDK settings and a function's own configuration (`own`). A function still starts
/// when either is wrong, and reports the error on every invocation: the SDK then runs on its
/// defaults, and the error is the configuration's result.
pub fn load<T>(
    env: &Env,
    own: impl FnOnce(&Env) -> Result<T, ConfigError>,
) -> (AwsSettings, Result<T, ConfigError>) {
    let config = own(env);
    match AwsSettings::from_env(env) {
        Ok(aws) => (aws, config),
        Err(e) => {
            let defaults = AwsSettings::from_env(&Env::from_pairs([]))
                .unwrap_or_else(|_| unreachable!("defaults are valid"));
            (defaults, Err(e))
        }
    }
}

impl AwsSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let s = Self {
            connect_timeout: env.millis("AWS_CONNECT_TIMEOUT_MS", 3_000)?,
            attempt_timeout: env.millis("AWS_ATTEMPT_TIMEOUT_MS", 5_000)?,
            operation_timeout: env.millis("AWS_OPERATION_TIMEOUT_MS", 15_000)?,
            max_attempts: env.parsed("AWS_MAX_ATTEMPTS", 3)?,
            s3_path_style: env.flag(
                "AWS_S3_FORCE_PATH_STYLE",
                env.get("AWS_ENDPOINT_URL").is_some(),
            )?,
        };
        if s.max_attempts == 0 {
            return Err(ConfigError::new(
                "AWS_MAX_ATTEMPTS",
                "must be at least 1, found 0",
            ));
        }
        for (var, d) in [
            ("AWS_CONNECT_TIMEOUT_MS", s.connect_timeout),
            ("AWS_ATTEMPT_TIMEOUT_MS", s.attempt_timeout),
            ("AWS_OPERATION_TIMEOUT_MS", s.operation_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(var, "must be above 0"));
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_unset() {
        let s = AwsSettings::from_env(&Env::from_pairs([])).expect("defaults");
        assert_eq!(s.operation_timeout, Duration::from_secs(15));
        assert_eq!(s.max_attempts, 3);
        assert!(!s.s3_path_style);
    }

    #[test]
    fn errors_name_the_variable_and_quote_the_value() {
        let e = AwsSettings::from_env(&Env::from_pairs([("AWS_ATTEMPT_TIMEOUT_MS", "5s")]))
            .expect_err("bad");
        assert_eq!(e.var, "AWS_ATTEMPT_TIMEOUT_MS");
        assert!(e.to_string().contains("\"5s\""), "{e}");
        let e =
            AwsSettings::from_env(&Env::from_pairs([("AWS_MAX_ATTEMPTS", "0")])).expect_err("zero");
        assert_eq!(e.var, "AWS_MAX_ATTEMPTS");
        let e = Env::from_pairs([("F", "maybe")])
            .flag("F", true)
            .expect_err("flag");
        assert!(e.to_string().contains("maybe"));
    }

    #[test]
    fn endpoint_override_turns_on_path_style() {
        let s = AwsSettings::from_env(&Env::from_pairs([(
            "AWS_ENDPOINT_URL",
            "http://127.0.0.1:1",
        )]))
        .expect("ok");
        assert!(s.s3_path_style);
    }
}
