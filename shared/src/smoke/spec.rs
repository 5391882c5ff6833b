//! The smoke spec: one declarative JSON document per service, parsed strictly.
//!
//! A spec names paths, never hosts: where requests go is decided by discovery from AWS state
//! or by the operator's override (reliability.md, invariant 7). [`Spec::parse`] turns the
//! document into a checked, compiled form; every error names the field and quotes the value.

use std::collections::BTreeMap;
use std::time::Duration;

use regex_lite::Regex;
use serde::Deserialize;

use crate::text::quote;

/// Why a spec was refused. The message names the field (`checks[1].expect.status`) and quotes
/// the problem; it becomes the reason of a Failed verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid smoke spec: {0}")]
pub struct SpecError(pub String);

fn err(field: &str, problem: impl std::fmt::Display) -> SpecError {
    SpecError(format!("{field}: {problem}"))
}

// ---------------------------------------------------------------------------------------------
// The document as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(default)]
    stages: Option<Vec<String>>,
    #[serde(default)]
    defaults: DocDefaults,
    #[serde(default)]
    concurrency: Option<usize>,
    #[serde(default)]
    readiness: Option<DocReadiness>,
    #[serde(default)]
    version_proof: Option<DocVersionProof>,
    #[serde(default)]
    checks: Vec<DocCheck>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocDefaults {
    timeout_ms: Option<u64>,
    retry: Option<DocRetry>,
    #[serde(default)]
    headers: BTreeMap<String, HeaderValueSpec>,
    max_body_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocRetry {
    attempts: Option<u32>,
    base_delay_ms: Option<u64>,
    max_delay_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocCheck {
    name: Option<String>,
    method: Option<String>,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, HeaderValueSpec>,
    body: Option<String>,
    json: Option<serde_json::Value>,
    #[serde(default)]
    expect: DocExpect,
    retry: Option<DocRetry>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocExpect {
    status: Option<StatusSpec>,
    #[serde(default)]
    headers: BTreeMap<String, DocMatch>,
    body_contains: Option<OneOrMany>,
    body_matches: Option<String>,
    #[serde(default)]
    json: BTreeMap<String, serde_json::Value>,
    max_latency_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StatusSpec {
    Code(u16),
    Codes(Vec<u16>),
    Class(String),
    Range { min: u16, max: u16 },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocMatch {
    equals: Option<String>,
    matches: Option<String>,
    present: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocReadiness {
    path: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, HeaderValueSpec>,
    #[serde(default)]
    expect: DocExpect,
    consecutive: Option<u32>,
    interval_ms: Option<u64>,
    timeout_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocVersionProof {
    path: Option<String>,
    header: Option<String>,
    json_pointer: Option<String>,
    source: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, HeaderValueSpec>,
}

/// A header value: literal text, or a reference to a secret resolved at run time and never
/// logged (`{"secretsmanager": "arn-or-name", "json_key": "token", "prefix": "Bearer "}` or
/// `{"ssm": "/path/to/SecureString"}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum HeaderValueSpec {
    Literal(String),
    Secret(SecretRef),
}

/// Where a secret header value lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    #[serde(default)]
    pub secretsmanager: Option<String>,
    #[serde(default)]
    pub ssm: Option<String>,
    /// For a Secrets Manager secret holding JSON: the key whose value to use.
    #[serde(default)]
    pub json_key: Option<String>,
    /// Text put before the value (`"Bearer "`).
    #[serde(default)]
    pub prefix: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The checked form.

/// Limits that keep one spec from running away with an invocation.
pub const MAX_CHECKS: usize = 50;
pub const MAX_CONCURRENCY: usize = 16;
pub const MAX_ATTEMPTS: u32 = 10;
pub const MAX_TIMEOUT_MS: u64 = 60_000;
pub const MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_BODY_BYTES: u64 = 1024 * 1024;
pub const MAX_READINESS_S: u64 = 24 * 3600;

/// A parsed, validated smoke spec.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Lifecycle events / stages this spec runs at; `None` means the defaults of the protocol.
    pub stages: Option<Vec<String>>,
    pub concurrency: usize,
    pub readiness: Option<Readiness>,
    pub version_proof: Option<VersionProof>,
    pub checks: Vec<Check>,
}

/// How to retry a request that did not meet its expectations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

/// One request and what its response must satisfy.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: reqwest::Method,
    pub path: String,
    pub headers: Vec<(reqwest::header::HeaderName, HeaderValueSpec)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
    pub max_body_bytes: u64,
}

/// A named check.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub request: Request,
    pub expect: Expect,
    pub retry: Retry,
}

/// Expectations on a response. All that are set must hold.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Inclusive ranges; a response passes when its status is in any of them.
    pub status: Vec<(u16, u16)>,
    pub headers: Vec<(String, HeaderMatch)>,
    pub body_contains: Vec<String>,
    pub body_matches: Option<Regex>,
    pub json: Vec<(String, serde_json::Value)>,
    pub max_latency: Option<Duration>,
}

/// What a response header must be.
#[derive(Debug, Clone)]
pub enum HeaderMatch {
    Equals(String),
    Matches(Regex),
    Present(bool),
}

/// Poll until `consecutive` successes in a row, at most `timeout` in all.
#[derive(Debug, Clone)]
pub struct Readiness {
    pub request: Request,
    pub expect: Expect,
    pub consecutive: u32,
    pub interval: Duration,
    pub timeout: Duration,
}

/// Which part of the deployed image the answering task must report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSource {
    /// The tag when the image has one, else the digest.
    Auto,
    Tag,
    Digest,
}

/// Where the answering task reports its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionField {
    Header(String),
    JsonPointer(String),
}

/// Proof that the new tasks answered: a header or JSON field equal to the deployed version.
#[derive(Debug, Clone)]
pub struct VersionProof {
    pub request: Request,
    pub field: VersionField,
    pub source: VersionSource,
    pub retry: Retry,
}

impl Spec {
    /// Parses and validates a JSON spec.
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        let doc: Doc = serde_json::from_str(text)
            .map_err(|e| SpecError(format!("not a valid spec document: {e}")))?;
        build(doc)
    }

    /// Every secret referenced by a header, without duplicates.
    pub fn secret_refs(&self) -> Vec<SecretRef> {
        let mut refs: Vec<SecretRef> = Vec::new();
        let mut requests: Vec<&Request> = self.checks.iter().map(|c| &c.request).collect();
        if let Some(r) = &self.readiness {
            requests.push(&r.request);
        }
        if let Some(v) = &self.version_proof {
            requests.push(&v.request);
        }
        for req in requests {
            for (_, v) in &req.headers {
                if let HeaderValueSpec::Secret(s) = v {
                    if !refs.contains(s) {
                        refs.push(s.clone());
                    }
                }
            }
        }
        refs
    }

    /// True when the spec runs at `stage` (given the protocol's default stages).
    pub fn runs_at(&self, stage: &str, defaults: &[&str]) -> bool {
        match &self.stages {
            Some(list) => list.iter().any(|s| s == stage),
            None => defaults.contains(&stage),
        }
    }
}

struct Defaults {
    timeout: Duration,
    retry: Retry,
    headers: BTreeMap<String, HeaderValueSpec>,
    max_body_bytes: u64,
}

fn build(doc: Doc) -> Result<Spec, SpecError> {
    let timeout = timeout_of("defaults.timeout_ms", doc.defaults.timeout_ms, 5_000)?;
    let base_retry = Retry {
        attempts: 3,
        base_delay: Duration::from_millis(250),
        max_delay: Duration::from_millis(4_000),
    };
    let retry = retry_of("defaults.retry", doc.defaults.retry, base_retry)?;
    let max_body_bytes = doc.defaults.max_body_bytes.unwrap_or(DEFAULT_BODY_BYTES);
    if max_body_bytes == 0 || max_body_bytes > MAX_BODY_BYTES {
        return Err(err(
            "defaults.max_body_bytes",
            format!("must be between 1 and {MAX_BODY_BYTES}, found {max_body_bytes}"),
        ));
    }
    let defaults = Defaults {
        timeout,
        retry,
        headers: doc.defaults.headers,
        max_body_bytes,
    };
    check_headers("defaults.headers", &defaults.headers)?;

    if let Some(stages) = &doc.stages {
        if stages.is_empty() {
            return Err(err("stages", "must list at least one stage when given"));
        }
    }
    let concurrency = doc.concurrency.unwrap_or(4);
    if concurrency == 0 || concurrency > MAX_CONCURRENCY {
        return Err(err(
            "concurrency",
            format!("must be between 1 and {MAX_CONCURRENCY}, found {concurrency}"),
        ));
    }
    if doc.checks.len() > MAX_CHECKS {
        return Err(err(
            "checks",
            format!("at most {MAX_CHECKS} checks, found {}", doc.checks.len()),
        ));
    }
    if doc.checks.is_empty() && doc.readiness.is_none() && doc.version_proof.is_none() {
        return Err(err(
            "checks",
            "the spec checks nothing: give at least one check, a readiness phase or a version proof",
        ));
    }

    let mut checks = Vec::with_capacity(doc.checks.len());
    let mut names = std::collections::BTreeSet::new();
    for (i, c) in doc.checks.into_iter().enumerate() {
        let field = format!("checks[{i}]");
        let name = c
            .name
            .clone()
            .unwrap_or_else(|| format!("{} {}", c.method.as_deref().unwrap_or("GET"), c.path));
        if name.trim().is_empty() || name.len() > 100 {
            return Err(err(
                &format!("{field}.name"),
                format!("must be 1 to 100 characters, found {}", quote(&name, 40)),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(err(
                &format!("{field}.name"),
                format!("{} is used by an earlier check", quote(&name, 100)),
            ));
        }
        let body = match (c.body, c.json) {
            (Some(_), Some(_)) => {
                return Err(err(&field, "give either body or json, not both"));
            }
            (Some(b), None) => Some((b.into_bytes(), None)),
            (None, Some(j)) => Some((j.to_string().into_bytes(), Some("application/json"))),
            (None, None) => None,
        };
        let request = request_of(
            &field,
            c.method.as_deref(),
            &c.path,
            c.headers,
            body,
            c.timeout_ms,
            &defaults,
        )?;
        checks.push(Check {
            name,
            expect: expect_of(&format!("{field}.expect"), c.expect)?,
            retry: retry_of(&format!("{field}.retry"), c.retry, defaults.retry)?,
            request,
        });
    }

    let readiness = doc
        .readiness
        .map(|r| -> Result<Readiness, SpecError> {
            let path = r.path.unwrap_or_else(|| "/".to_string());
            let consecutive = r.consecutive.unwrap_or(3);
            if !(1..=20).contains(&consecutive) {
                return Err(err(
                    "readiness.consecutive",
                    format!("must be between 1 and 20, found {consecutive}"),
                ));
            }
            let interval = r.interval_ms.unwrap_or(1_000);
            if !(50..=60_000).contains(&interval) {
                return Err(err(
                    "readiness.interval_ms",
                    format!("must be between 50 and 60000, found {interval}"),
                ));
            }
            let total = r.timeout_s.unwrap_or(120);
            if total == 0 || total > MAX_READINESS_S {
                return Err(err(
                    "readiness.timeout_s",
                    format!("must be between 1 and {MAX_READINESS_S}, found {total}"),
                ));
            }
            Ok(Readiness {
                request: request_of("readiness", None, &path, r.headers, None, None, &defaults)?,
                expect: expect_of("readiness.expect", r.expect)?,
                consecutive,
                interval: Duration::from_millis(interval),
                timeout: Duration::from_secs(total),
            })
        })
        .transpose()?;

    let version_proof = doc
        .version_proof
        .map(|v| -> Result<VersionProof, SpecError> {
            let field = match (v.header, v.json_pointer) {
                (Some(h), None) => {
                    reqwest::header::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                        err(
                            "version_proof.header",
                            format!("{} is not a valid header name", quote(&h, 80)),
                        )
                    })?;
                    VersionField::Header(h.to_ascii_lowercase())
                }
                (None, Some(p)) => {
                    check_pointer("version_proof.json_pointer", &p)?;
                    VersionField::JsonPointer(p)
                }
                _ => {
                    return Err(err(
                        "version_proof",
                        "give exactly one of header or json_pointer",
                    ));
                }
            };
            let source = match v.source.as_deref() {
                None | Some("auto") => VersionSource::Auto,
                Some("tag") => VersionSource::Tag,
                Some("digest") => VersionSource::Digest,
                Some(other) => {
                    return Err(err(
                        "version_proof.source",
                        format!("expected auto, tag or digest, found {}", quote(other, 40)),
                    ));
                }
            };
            let path = v.path.unwrap_or_else(|| "/".to_string());
            Ok(VersionProof {
                request: request_of(
                    "version_proof",
                    None,
                    &path,
                    v.headers,
                    None,
                    None,
                    &defaults,
                )?,
                field,
                source,
                retry: defaults.retry,
            })
        })
        .transpose()?;

    Ok(Spec {
        stages: doc.stages,
        concurrency,
        readiness,
        version_proof,
        checks,
    })
}

fn timeout_of(field: &str, v: Option<u64>, default: u64) -> Result<Duration, SpecError> {
    let ms = v.unwrap_or(default);
    if ms == 0 || ms > MAX_TIMEOUT_MS {
        return Err(err(
            field,
            format!("must be between 1 and {MAX_TIMEOUT_MS} ms, found {ms}"),
        ));
    }
    Ok(Duration::from_millis(ms))
}

fn retry_of(field: &str, r: Option<DocRetry>, base: Retry) -> Result<Retry, SpecError> {
    let Some(r) = r else { return Ok(base) };
    let attempts = r.attempts.unwrap_or(base.attempts);
    if attempts == 0 || attempts > MAX_ATTEMPTS {
        return Err(err(
            &format!("{field}.attempts"),
            format!("must be between 1 and {MAX_ATTEMPTS}, found {attempts}"),
        ));
    }
    let base_delay = r
        .base_delay_ms
        .map(Duration::from_millis)
        .unwrap_or(base.base_delay);
    let max_delay = r
        .max_delay_ms
        .map(Duration::from_millis)
        .unwrap_or(base.max_delay);
    if max_delay > Duration::from_secs(60) || base_delay > max_delay {
        return Err(err(
            field,
            format!(
                "need base_delay_ms <= max_delay_ms <= 60000, found {} and {}",
                base_delay.as_millis(),
                max_delay.as_millis()
            ),
        ));
    }
    Ok(Retry {
        attempts,
        base_delay,
        max_delay,
    })
}

fn check_path(field: &str, path: &str) -> Result<(), SpecError> {
    let bad = |why: &str| Err(err(field, format!("{why}, found {}", quote(path, 80))));
    if !path.starts_with('/') {
        return bad("must be a path starting with '/' (a spec names paths, never hosts)");
    }
    if path.starts_with("//") || path.contains("://") || path.contains('\\') {
        return bad("must be a relative path, not a URL or host");
    }
    if path.len() > 2048 {
        return bad("must be at most 2048 characters");
    }
    if path
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '#')
    {
        return bad("must not contain spaces, control characters or '#'");
    }
    Ok(())
}

fn check_pointer(field: &str, p: &str) -> Result<(), SpecError> {
    if !p.is_empty() && !p.starts_with('/') {
        return Err(err(
            field,
            format!(
                "a JSON Pointer is empty or starts with '/', found {}",
                quote(p, 80)
            ),
        ));
    }
    Ok(())
}

fn check_headers(
    field: &str,
    headers: &BTreeMap<String, HeaderValueSpec>,
) -> Result<(), SpecError> {
    for (name, value) in headers {
        reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            err(
                field,
                format!("{} is not a valid header name", quote(name, 80)),
            )
        })?;
        match value {
            HeaderValueSpec::Literal(v) => {
                reqwest::header::HeaderValue::from_str(v).map_err(|_| {
                    err(
                        &format!("{field}.{name}"),
                        "is not a valid header value (control characters?)",
                    )
                })?;
            }
            HeaderValueSpec::Secret(s) => match (&s.secretsmanager, &s.ssm) {
                (Some(id), None) | (None, Some(id)) if !id.trim().is_empty() => {
                    if s.ssm.is_some() && s.json_key.is_some() {
                        return Err(err(
                            &format!("{field}.{name}"),
                            "json_key applies to secretsmanager, not ssm",
                        ));
                    }
                }
                _ => {
                    return Err(err(
                        &format!("{field}.{name}"),
                        "a secret header names exactly one of secretsmanager or ssm",
                    ));
                }
            },
        }
    }
    Ok(())
}

fn request_of(
    field: &str,
    method: Option<&str>,
    path: &str,
    headers: BTreeMap<String, HeaderValueSpec>,
    body: Option<(Vec<u8>, Option<&'static str>)>,
    timeout_ms: Option<u64>,
    defaults: &Defaults,
) -> Result<Request, SpecError> {
    let method_text = method.unwrap_or("GET").to_ascii_uppercase();
    let method = match method_text.as_str() {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => {
            reqwest::Method::from_bytes(method_text.as_bytes())
                .map_err(|_| err(&format!("{field}.method"), "invalid"))?
        }
        _ => {
            return Err(err(
                &format!("{field}.method"),
                format!(
                    "expected GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS, found {}",
                    quote(&method_text, 20)
                ),
            ))
        }
    };
    check_path(&format!("{field}.path"), path)?;
    check_headers(&format!("{field}.headers"), &headers)?;
    let mut merged = defaults.headers.clone();
    let mut has_content_type = false;
    for (k, v) in headers {
        has_content_type |= k.eq_ignore_ascii_case("content-type");
        merged.insert(k, v);
    }
    let mut out = Vec::with_capacity(merged.len() + 1);
    for (k, v) in merged {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            err(
                &format!("{field}.headers"),
                format!("{} is not a valid header name", quote(&k, 80)),
            )
        })?;
        out.push((name, v));
    }
    let body = body.map(|(bytes, content_type)| {
        if let (Some(ct), false) = (content_type, has_content_type) {
            out.push((
                reqwest::header::CONTENT_TYPE,
                HeaderValueSpec::Literal(ct.to_string()),
            ));
        }
        bytes
    });
    Ok(Request {
        method,
        path: path.to_string(),
        headers: out,
        body,
        timeout: match timeout_ms {
            Some(ms) => timeout_of(&format!("{field}.timeout_ms"), Some(ms), 0)?,
            None => defaults.timeout,
        },
        max_body_bytes: defaults.max_body_bytes,
    })
}

fn regex(field: &str, pattern: &str) -> Result<Regex, SpecError> {
    Regex::new(pattern).map_err(|e| {
        err(
            field,
            format!("invalid regular expression {}: {e}", quote(pattern, 80)),
        )
    })
}

fn expect_of(field: &str, e: DocExpect) -> Result<Expect, SpecError> {
    let status = match e.status {
        None => vec![(200, 299)],
        Some(StatusSpec::Code(c)) => vec![(valid_status(field, c)?, c)],
        Some(StatusSpec::Codes(cs)) => {
            if cs.is_empty() {
                return Err(err(
                    &format!("{field}.status"),
                    "an empty list accepts nothing",
                ));
            }
            cs.into_iter()
                .map(|c| valid_status(field, c).map(|c| (c, c)))
                .collect::<Result<_, _>>()?
        }
        Some(StatusSpec::Class(class)) => {
            let b = class.as_bytes();
            if b.len() == 3
                && (b'1'..=b'5').contains(&b[0])
                && class[1..].eq_ignore_ascii_case("xx")
            {
                let base = u16::from(b[0] - b'0') * 100;
                vec![(base, base + 99)]
            } else {
                return Err(err(
                    &format!("{field}.status"),
                    format!("expected a code, a list of codes, a class like \"2xx\" or {{\"min\", \"max\"}}, found {}", quote(&class, 20)),
                ));
            }
        }
        Some(StatusSpec::Range { min, max }) => {
            valid_status(field, min)?;
            valid_status(field, max)?;
            if min > max {
                return Err(err(
                    &format!("{field}.status"),
                    format!("min {min} is above max {max}"),
                ));
            }
            vec![(min, max)]
        }
    };
    let mut headers = Vec::new();
    for (name, m) in e.headers {
        let f = format!("{field}.headers.{name}");
        reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| err(&f, "is not a valid header name"))?;
        let matcher = match (m.equals, m.matches, m.present) {
            (Some(v), None, None) => HeaderMatch::Equals(v),
            (None, Some(p), None) => HeaderMatch::Matches(regex(&format!("{f}.matches"), &p)?),
            (None, None, Some(b)) => HeaderMatch::Present(b),
            _ => return Err(err(&f, "give exactly one of equals, matches or present")),
        };
        headers.push((name.to_ascii_lowercase(), matcher));
    }
    let body_contains = match e.body_contains {
        None => vec![],
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    };
    if body_contains.iter().any(String::is_empty) {
        return Err(err(
            &format!("{field}.body_contains"),
            "an empty string matches everything",
        ));
    }
    let body_matches = e
        .body_matches
        .map(|p| regex(&format!("{field}.body_matches"), &p))
        .transpose()?;
    let mut json = Vec::new();
    for (pointer, value) in e.json {
        check_pointer(&format!("{field}.json"), &pointer)?;
        json.push((pointer, value));
    }
    let max_latency = match e.max_latency_ms {
        Some(0) => return Err(err(&format!("{field}.max_latency_ms"), "must be above 0")),
        other => other.map(Duration::from_millis),
    };
    Ok(Expect {
        status,
        headers,
        body_contains,
        body_matches,
        json,
        max_latency,
    })
}

fn valid_status(field: &str, c: u16) -> Result<u16, SpecError> {
    if (100..=599).contains(&c) {
        Ok(c)
    } else {
        Err(err(
            &format!("{field}.status"),
            format!("{c} is not an HTTP status (100 to 599)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_spec_parses() {
        let spec = Spec::parse(
            r#"{
              "stages": ["AfterAllowTestTraffic"],
              "defaults": {"timeout_ms": 2000, "retry": {"attempts": 4}, "headers": {"User-Agent": "dg"}},
              "concurrency": 2,
              "readiness": {"path": "/health", "consecutive": 2, "interval_ms": 100, "timeout_s": 30},
              "version_proof": {"path": "/version", "json_pointer": "/version"},
              "checks": [
                {"name": "home", "path": "/", "expect": {"status": [200, 204], "body_contains": "ok",
                  "headers": {"content-type": {"matches": "^text/"}}, "max_latency_ms": 500}},
                {"method": "post", "path": "/api/echo", "json": {"a": 1},
                  "headers": {"Authorization": {"secretsmanager": "app/token", "prefix": "Bearer "}},
                  "expect": {"status": "2xx", "json": {"/a": 1}}}
              ]
            }"#,
        )
        .expect("valid");
        assert_eq!(spec.checks.len(), 2);
        assert_eq!(spec.checks[0].expect.status, vec![(200, 200), (204, 204)]);
        assert_eq!(spec.checks[1].name, "post /api/echo");
        assert_eq!(spec.checks[1].request.method, reqwest::Method::POST);
        assert_eq!(spec.checks[1].retry.attempts, 4);
        assert!(spec.checks[1]
            .request
            .headers
            .iter()
            .any(|(k, _)| k == reqwest::header::CONTENT_TYPE));
        assert_eq!(spec.secret_refs().len(), 1);
        assert_eq!(spec.readiness.as_ref().map(|r| r.consecutive), Some(2));
        assert!(spec.runs_at("AfterAllowTestTraffic", &[]));
        assert!(!spec.runs_at("AfterAllowTraffic", &["AfterAllowTraffic"]));
    }

    /// Each bad spec and the words its error must contain.
    #[test]
    fn bad_specs_are_refused_with_a_reason_naming_the_field() {
        let cases: &[(&str, &[&str])] = &[
            ("not json", &["not a valid spec document"]),
            ("{}", &["checks nothing"]),
            (
                r#"{"checks": [{"path": "/", "bogus": 1}]}"#,
                &["unknown field", "bogus"],
            ),
            (
                r#"{"checks": [{"path": "http://evil.example/"}]}"#,
                &["checks[0].path", "evil.example"],
            ),
            (
                r#"{"checks": [{"path": "//evil.example/"}]}"#,
                &["checks[0].path", "not a URL"],
            ),
            (
                r#"{"checks": [{"path": "health"}]}"#,
                &["starting with '/'"],
            ),
            (
                r#"{"checks": [{"path": "/", "method": "TRACE"}]}"#,
                &["checks[0].method", "\"TRACE\""],
            ),
            (
                r#"{"checks": [{"path": "/", "expect": {"status": 700}}]}"#,
                &["700"],
            ),
            (
                r#"{"checks": [{"path": "/", "expect": {"status": "2yy"}}]}"#,
                &["\"2yy\""],
            ),
            (
                r#"{"checks": [{"path": "/", "expect": {"body_matches": "(["}}]}"#,
                &["body_matches", "\"([\""],
            ),
            (
                r#"{"checks": [{"path": "/", "expect": {"json": {"a": 1}}}]}"#,
                &["JSON Pointer", "\"a\""],
            ),
            (
                r#"{"checks": [{"path": "/", "retry": {"attempts": 0}}]}"#,
                &["attempts", "found 0"],
            ),
            (
                r#"{"concurrency": 0, "checks": [{"path": "/"}]}"#,
                &["concurrency"],
            ),
            (
                r#"{"checks": [{"path": "/"}, {"path": "/"}]}"#,
                &["checks[1].name", "earlier check"],
            ),
            (
                r#"{"checks": [{"path": "/", "headers": {"X": {"ssm": "/a", "secretsmanager": "b"}}}]}"#,
                &["exactly one of secretsmanager or ssm"],
            ),
            (
                r#"{"checks": [{"path": "/", "headers": {"bad header": "v"}}]}"#,
                &["not a valid header name"],
            ),
            (
                r#"{"version_proof": {"path": "/v"}}"#,
                &["exactly one of header or json_pointer"],
            ),
            (
                r#"{"readiness": {"timeout_s": 0}}"#,
                &["readiness.timeout_s"],
            ),
            (
                r#"{"checks": [{"path": "/", "timeout_ms": 600000}]}"#,
                &["timeout_ms", "600000"],
            ),
        ];
        for (doc, words) in cases {
            let e = Spec::parse(doc).expect_err(doc).to_string();
            for w in *words {
                assert!(e.contains(w), "error for {doc} should mention {w:?}: {e}");
            }
        }
    }
}
