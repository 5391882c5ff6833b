//! Where a service's smoke spec and its secret header values come from.
//!
//! A spec is looked up per service in SSM Parameter Store (`ssm:/prefix` → parameter
//! `/prefix/<a>/<b>`) or S3 (`s3://bucket/prefix` → object `prefix/<a>/<b>.json`), where
//! `<a>/<b>` is the CodeDeploy application and deployment group, or the ECS cluster and
//! service. When there is none, the function's default spec applies. An error other than
//! "not found" fails the verdict: falling back to a laxer default on AccessDenied would let a
//! release through unchecked.

use crate::discovery::Clients;
use crate::secret::Secret;
use crate::signed::CallError;
use crate::smoke::engine::SecretValues;
use crate::smoke::spec::{SecretRef, Spec};
use crate::text::quote;

/// Where per-service specs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecLocation {
    Ssm { prefix: String },
    S3 { bucket: String, prefix: String },
}

impl SpecLocation {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if let Some(p) = t.strip_prefix("ssm:") {
            let prefix = p.trim_end_matches('/').to_string();
            if !prefix.starts_with('/') {
                return Err(format!(
                    "an SSM location is ssm:/path/prefix, found {}",
                    quote(t, 100)
                ));
            }
            return Ok(Self::Ssm { prefix });
        }
        if let Some(rest) = t.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!(
                    "an S3 location is s3://bucket/prefix, found {}",
                    quote(t, 100)
                ));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        Err(format!(
            "expected ssm:/prefix or s3://bucket/prefix, found {}",
            quote(t, 100)
        ))
    }

    /// Where the spec of `a/b` would be.
    pub fn describe(&self, a: &str, b: &str) -> String {
        match self {
            Self::Ssm { prefix } => format!("ssm:{prefix}/{a}/{b}"),
            Self::S3 { bucket, prefix } if prefix.is_empty() => {
                format!("s3://{bucket}/{a}/{b}.json")
            }
            Self::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}/{a}/{b}.json"),
        }
    }
}

/// The configured sources of specs.
#[derive(Debug, Clone, Default)]
pub struct SpecSource {
    pub location: Option<SpecLocation>,
    /// The default spec's text, already validated at start-up.
    pub default: Option<String>,
}

/// A spec and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub spec: Spec,
    pub origin: String,
}

/// The largest smoke spec read from S3.
const SPEC_MAX_BYTES: u64 = 512 * 1024;

/// Finds and parses the spec for `a/b`.
pub async fn load_spec(
    c: &Clients,
    source: &SpecSource,
    a: &str,
    b: &str,
) -> Result<LoadedSpec, String> {
    let mut looked = Vec::new();
    if let Some(loc) = &source.location {
        let at = loc.describe(a, b);
        let text = match loc {
            SpecLocation::Ssm { prefix } => {
                let name = format!("{prefix}/{a}/{b}");
                c.params
                    .parameter(&name)
                    .await
                    .map_err(|e| format!("reading the smoke spec at {at}: {}", e.describe()))?
                    .map(|text| text.expose().clone())
            }
            SpecLocation::S3 { bucket, .. } => {
                let key = at
                    .trim_start_matches(&format!("s3://{bucket}/"))
                    .to_string();
                match c.s3.get(bucket, &key, SPEC_MAX_BYTES).await {
                    Ok(bytes) => Some(
                        String::from_utf8(bytes)
                            .map_err(|_| format!("the smoke spec at {at} is not UTF-8"))?,
                    ),
                    Err(e) if matches!(e.code(), Some("NoSuchKey") | Some("NotFound")) => None,
                    Err(CallError::TooLarge { len }) => {
                        return Err(format!(
                            "the smoke spec at {at} is {}; the limit is 512 KiB",
                            len.map(|l| format!("{l} bytes"))
                                .unwrap_or_else(|| "larger".to_string())
                        ))
                    }
                    Err(e) => {
                        return Err(format!("reading the smoke spec at {at}: {}", e.describe()))
                    }
                }
            }
        };
        if let Some(text) = text {
            return Spec::parse(&text)
                .map(|spec| LoadedSpec {
                    spec,
                    origin: at.clone(),
                })
                .map_err(|e| format!("{e} (spec at {at})"));
        }
        looked.push(at);
    }
    match &source.default {
        Some(text) => Spec::parse(text)
            .map(|spec| LoadedSpec {
                spec,
                origin: "the function's default spec (SMOKE_SPEC_DEFAULT)".to_string(),
            })
            .map_err(|e| format!("{e} (the default spec)")),
        None => Err(format!(
            "no smoke spec for {a}/{b}: {} and no default spec is configured (SMOKE_SPEC_DEFAULT)",
            if looked.is_empty() {
                "no SMOKE_SPEC_LOCATION is set".to_string()
            } else {
                format!("nothing at {}", looked.join(", "))
            }
        )),
    }
}

/// Fetches every secret the spec's headers reference. Errors name the secret, never its value.
pub async fn resolve_secrets(c: &Clients, refs: &[SecretRef]) -> Result<SecretValues, String> {
    let fetches = refs
        .iter()
        .map(|r| async move { (r.clone(), fetch_secret(c, r).await) });
    let mut out = SecretValues::new();
    for (r, value) in futures::future::join_all(fetches).await {
        out.insert(r, value?);
    }
    Ok(out)
}

async fn fetch_secret(c: &Clients, r: &SecretRef) -> Result<Secret<String>, String> {
    let raw: Secret<String> = match (&r.secretsmanager, &r.ssm) {
        (Some(id), _) => {
            let text = c
                .params
                .secret_string(id)
                .await
                .map_err(|e| {
                    format!(
                        "secret {}: GetSecretValue failed: {}",
                        quote(id, 200),
                        e.describe()
                    )
                })?
                .ok_or_else(|| format!("secret {}: has no string value", quote(id, 200)))?;
            match &r.json_key {
                None => text,
                Some(key) => {
                    let doc: serde_json::Value =
                        serde_json::from_str(text.expose()).map_err(|_| {
                            format!(
                                "secret {}: json_key {} given but the secret is not JSON",
                                quote(id, 200),
                                quote(key, 80)
                            )
                        })?;
                    match doc.get(key) {
                        Some(serde_json::Value::String(s)) => Secret::new(s.clone()),
                        Some(_) => {
                            return Err(format!(
                                "secret {}: key {} is not a string",
                                quote(id, 200),
                                quote(key, 80)
                            ))
                        }
                        None => {
                            return Err(format!(
                                "secret {}: has no key {}",
                                quote(id, 200),
                                quote(key, 80)
                            ))
                        }
                    }
                }
            }
        }
        (None, Some(name)) => c
            .params
            .parameter(name)
            .await
            .map_err(|e| {
                format!(
                    "parameter {}: GetParameter failed: {}",
                    quote(name, 200),
                    e.describe()
                )
            })?
            .ok_or_else(|| {
                format!(
                    "parameter {}: GetParameter failed: ParameterNotFound",
                    quote(name, 200)
                )
            })?,
        (None, None) => return Err("a secret header names no source".to_string()),
    };
    Ok(match &r.prefix {
        Some(p) => Secret::new(format!("{p}{}", raw.expose())),
        None => raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_describe() {
        let s = SpecLocation::parse("ssm:/dg/specs/").expect("ssm");
        assert_eq!(s.describe("app", "grp"), "ssm:/dg/specs/app/grp");
        let b = SpecLocation::parse("s3://bucket/smoke").expect("s3");
        assert_eq!(b.describe("c", "s"), "s3://bucket/smoke/c/s.json");
        let b = SpecLocation::parse("s3://bucket").expect("s3");
        assert_eq!(b.describe("c", "s"), "s3://bucket/c/s.json");
        for bad in ["ssm:relative", "s3:///x", "http://x", ""] {
            assert!(SpecLocation::parse(bad).is_err(), "{bad}");
        }
    }
}
