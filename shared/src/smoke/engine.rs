//! The smoke engine: sends the spec's requests to the target and judges the answers.
//!
//! Safety rails (reliability.md, invariant 7): redirects are never followed (a 3xx is a
//! result), bodies are read up to a cap, every request is bounded by its own timeout and by the
//! invocation's budget, and addresses on loopback, link-local or unspecified ranges are refused
//! unless the operator mapped that host explicitly ([`ResolveMap`], curl's `--resolve`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use super::expect::{evaluate, prove_version, Observed};
use super::spec::{HeaderValueSpec, Readiness, Request, Retry, SecretRef, Spec, VersionField};
use crate::budget::Budget;
use crate::secret::Secret;
use crate::text::quote;

// ---------------------------------------------------------------------------------------------
// Where requests may go.

/// Operator-mapped host names, curl `--resolve` style: `host:port:addr[;addr…]`.
///
/// An entry applies to that host and port only. One host may be mapped for several ports, but
/// to the same addresses (the resolver sees names, not ports).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolveMap {
    entries: BTreeMap<String, (Vec<u16>, Vec<IpAddr>)>,
}

impl ResolveMap {
    /// Parses entries separated by commas or whitespace; each `host:port:addr` where addr may
    /// be an IPv6 address in brackets. Several addresses for one host are separated by `;`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries: BTreeMap<String, (Vec<u16>, Vec<IpAddr>)> = BTreeMap::new();
        for item in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            let bad = || format!("expected host:port:address, found {}", quote(item, 120));
            let (host, rest) = item.split_once(':').ok_or_else(bad)?;
            let (port, addrs) = rest.split_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            let addrs = addrs
                .split(';')
                .map(|a| {
                    a.trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<IpAddr>()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| bad())?;
            if host.is_empty() || addrs.is_empty() {
                return Err(bad());
            }
            let entry = entries
                .entry(host.to_ascii_lowercase())
                .or_insert_with(|| (vec![], addrs.clone()));
            if entry.1 != addrs {
                return Err(format!(
                    "{} is mapped to different addresses for different ports; map each host to one set of addresses",
                    quote(host, 120)
                ));
            }
            entry.0.push(port);
        }
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn lookup(&self, host: &str) -> Option<&(Vec<u16>, Vec<IpAddr>)> {
        self.entries.get(&host.to_ascii_lowercase())
    }
}

/// Addresses the smoke tester never reaches on its own: the Lambda Runtime API and the
/// secrets extension listen on loopback, the instance metadata service on link-local.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some("loopback"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("link-local"),
        IpAddr::V4(v4) if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() => {
            Some("unspecified, broadcast or multicast")
        }
        IpAddr::V6(v6) if v6.is_loopback() => Some("loopback"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("link-local"),
        IpAddr::V6(v6) if v6.is_unspecified() || v6.is_multicast() => {
            Some("unspecified or multicast")
        }
        IpAddr::V6(v6) => v6.to_ipv4_mapped().and_then(|v4| forbidden(IpAddr::V4(v4))),
        _ => None,
    }
}

/// DNS for the smoke client: mapped hosts answer from the map, other names from the system
/// resolver with forbidden addresses removed.
struct GuardedResolver {
    map: Arc<ResolveMap>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let map = self.map.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            if let Some((_, addrs)) = map.lookup(&host) {
                // The connector sets the URL's port on these addresses.
                let list: Vec<SocketAddr> = addrs.iter().map(|a| SocketAddr::new(*a, 0)).collect();
                return Ok(Box::new(list.into_iter()) as reqwest::dns::Addrs);
            }
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| forbidden(a.ip()).is_none())
                .collect();
            if allowed.is_empty() {
                let why = found
                    .first()
                    .map(|a| {
                        format!(
                            "{host} resolves to {} ({})",
                            a.ip(),
                            forbidden(a.ip()).unwrap_or("no address")
                        )
                    })
                    .unwrap_or_else(|| format!("{host} has no address"));
                return Err(format!("refused: {why}; map the host explicitly to allow it").into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Where the checks go: a base URL derived from AWS state or set by the operator.
#[derive(Debug, Clone)]
pub struct Target {
    pub base_url: url::Url,
    /// Headers every request carries (a Service Connect test header, a listener rule's
    /// host-header or http-header condition).
    pub headers: Vec<(String, String)>,
    /// How the target was found, for the outcome line.
    pub origin: String,
    /// True when the operator set this base URL: an IP literal on loopback is then allowed.
    pub operator_set: bool,
}

/// Resolved secret header values, keyed by their reference.
pub type SecretValues = BTreeMap<SecretRef, Secret<String>>;

// ---------------------------------------------------------------------------------------------
// What a run reports.

/// The result of one check (or of the version proof).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub name: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Readiness progress carried between invocations (ECS `hookDetails`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessState {
    /// When polling started, Unix milliseconds.
    pub started_ms: u64,
    pub polls: u32,
    pub consecutive: u32,
}

/// How the readiness phase ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ReadinessOutcome {
    Ready {
        polls: u32,
        elapsed_ms: u64,
    },
    NotReady {
        polls: u32,
        elapsed_ms: u64,
        reason: String,
    },
    /// The invocation's budget ran out before readiness was decided.
    Pending {
        state: ReadinessState,
        last: Option<String>,
    },
}

/// Everything a run observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness: Option<ReadinessOutcome>,
    pub checks: Vec<CheckReport>,
}

// ---------------------------------------------------------------------------------------------
// The engine.

/// One HTTP client per process, with the guarded resolver and no redirects.
#[derive(Clone)]
pub struct Engine {
    client: reqwest::Client,
    map: Arc<ResolveMap>,
}

/// Everything a run needs besides the engine.
pub struct Plan<'a> {
    pub spec: &'a Spec,
    pub target: &'a Target,
    pub secrets: &'a SecretValues,
    /// The version the new tasks must report, or why it is unknown.
    pub expected_version: Result<&'a str, &'a str>,
}

impl Engine {
    pub fn new(map: ResolveMap) -> Result<Self, String> {
        let map = Arc::new(map);
        // Compiled-in Mozilla roots: reading and parsing the system store at start-up costs
        // more than the rest of the cold start (performance.md).
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("could not configure TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver { map: map.clone() }))
            .user_agent(concat!("deploy-guard-smoke/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .map_err(|e| format!("could not build the HTTP client: {e}"))?;
        Ok(Self { client, map })
    }

    /// Runs readiness (resuming from `resume`), then the checks and the version proof.
    pub async fn run(
        &self,
        plan: &Plan<'_>,
        resume: Option<ReadinessState>,
        budget: &Budget,
    ) -> RunReport {
        let readiness = match &plan.spec.readiness {
            Some(r) => Some(self.readiness(plan, r, resume, budget).await),
            None => None,
        };
        if let Some(outcome) = &readiness {
            if !matches!(outcome, ReadinessOutcome::Ready { .. }) {
                return RunReport {
                    readiness,
                    checks: vec![],
                };
            }
        }
        let mut jobs: Vec<Job<'_>> = plan.spec.checks.iter().map(Job::Check).collect();
        if let Some(vp) = &plan.spec.version_proof {
            jobs.push(Job::Version(vp));
        }
        let checks =
            futures::stream::iter(jobs.into_iter().map(|job| self.run_job(plan, job, budget)))
                .buffered(plan.spec.concurrency)
                .collect::<Vec<_>>()
                .await;
        RunReport { readiness, checks }
    }

    async fn run_job(&self, plan: &Plan<'_>, job: Job<'_>, budget: &Budget) -> CheckReport {
        let (name, request, retry) = match job {
            Job::Check(c) => (c.name.clone(), &c.request, c.retry),
            Job::Version(v) => ("version proof".to_string(), &v.request, v.retry),
        };
        let mut attempts = 0;
        let mut last: Option<(Option<Observed>, String)> = None;
        while attempts < retry.attempts {
            if budget.work_exhausted() {
                let why = format!(
                    "stopped after {attempts} attempts: the invocation's time budget ran out"
                );
                let detail = last
                    .map(|(_, r)| format!("{why}; last: {r}"))
                    .unwrap_or(why);
                last = Some((None, detail));
                break;
            }
            attempts += 1;
            let result = self.send(plan, request, budget).await;
            let verdict = match (&job, &result) {
                (_, Err(e)) => Err(e.clone()),
                (Job::Check(c), Ok(seen)) => {
                    let fails = evaluate(&c.expect, seen);
                    if fails.is_empty() {
                        Ok(())
                    } else {
                        Err(fails.join("; "))
                    }
                }
                (Job::Version(v), Ok(seen)) => version_ok(&v.field, plan.expected_version, seen),
            };
            let seen = result.ok();
            match verdict {
                Ok(()) => {
                    return CheckReport {
                        name,
                        passed: true,
                        status: seen.as_ref().map(|s| s.status),
                        latency_ms: seen.as_ref().map(|s| s.latency.as_millis() as u64),
                        attempts,
                        reason: None,
                    }
                }
                Err(reason) => last = Some((seen, reason)),
            }
            if attempts < retry.attempts {
                let delay = backoff(retry, attempts);
                if delay >= budget.work_left() {
                    let (seen, reason) = last.take().unwrap_or((None, String::new()));
                    last = Some((seen, format!("{reason} (no time left to retry)")));
                    break;
                }
                tokio::time::sleep(delay).await;
            }
        }
        let (seen, reason) = last.unwrap_or((None, "not run".to_string()));
        CheckReport {
            name,
            passed: false,
            status: seen.as_ref().map(|s| s.status),
            latency_ms: seen.as_ref().map(|s| s.latency.as_millis() as u64),
            attempts,
            reason: Some(if attempts > 1 {
                format!("{reason} (after {attempts} attempts)")
            } else {
                reason
            }),
        }
    }

    async fn readiness(
        &self,
        plan: &Plan<'_>,
        r: &Readiness,
        resume: Option<ReadinessState>,
        budget: &Budget,
    ) -> ReadinessOutcome {
        let mut state = resume.unwrap_or(ReadinessState {
            started_ms: now_ms(),
            polls: 0,
            consecutive: 0,
        });
        let same_path = plan
            .spec
            .version_proof
            .as_ref()
            .is_some_and(|v| v.request.path == r.request.path);
        let mut last: Option<String> = None;
        loop {
            let elapsed = Duration::from_millis(now_ms().saturating_sub(state.started_ms));
            if elapsed > r.timeout {
                return ReadinessOutcome::NotReady {
                    polls: state.polls,
                    elapsed_ms: elapsed.as_millis() as u64,
                    reason: format!(
                        "not ready after {} s and {} polls ({} of {} consecutive successes); last: {}",
                        r.timeout.as_secs(),
                        state.polls,
                        state.consecutive,
                        r.consecutive,
                        last.as_deref().unwrap_or("no poll ran")
                    ),
                };
            }
            if budget.work_exhausted() {
                return ReadinessOutcome::Pending { state, last };
            }
            state.polls += 1;
            let mut fails: Vec<String> = match self.send(plan, &r.request, budget).await {
                Err(e) => vec![e],
                Ok(seen) => {
                    let mut f = evaluate(&r.expect, &seen);
                    if let (Some(vp), true) = (&plan.spec.version_proof, same_path) {
                        if let Err(e) = version_ok(&vp.field, plan.expected_version, &seen) {
                            f.push(e);
                        }
                    }
                    f
                }
            };
            if let (Some(vp), false) = (&plan.spec.version_proof, same_path) {
                if fails.is_empty() {
                    match self.send(plan, &vp.request, budget).await {
                        Err(e) => fails.push(e),
                        Ok(seen) => {
                            if let Err(e) = version_ok(&vp.field, plan.expected_version, &seen) {
                                fails.push(e)
                            }
                        }
                    }
                }
            }
            if fails.is_empty() {
                state.consecutive += 1;
                if state.consecutive >= r.consecutive {
                    let elapsed = Duration::from_millis(now_ms().saturating_sub(state.started_ms));
                    return ReadinessOutcome::Ready {
                        polls: state.polls,
                        elapsed_ms: elapsed.as_millis() as u64,
                    };
                }
            } else {
                state.consecutive = 0;
                last = Some(fails.join("; "));
            }
            if r.interval >= budget.work_left() {
                return ReadinessOutcome::Pending { state, last };
            }
            tokio::time::sleep(r.interval).await;
        }
    }

    /// One request; an error names what went wrong on the way (DNS, connect, timeout, size).
    async fn send(
        &self,
        plan: &Plan<'_>,
        req: &Request,
        budget: &Budget,
    ) -> Result<Observed, String> {
        let url = join(&plan.target.base_url, &req.path)?;
        self.permitted(&url, plan.target)?;
        let timeout = req.timeout.min(budget.work_left());
        if timeout.is_zero() {
            return Err("not sent: the invocation's time budget ran out".to_string());
        }
        let mut headers = HeaderMap::new();
        for (k, v) in &plan.target.headers {
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.insert(name, value);
            }
        }
        for (name, spec) in &req.headers {
            let value = match spec {
                HeaderValueSpec::Literal(v) => HeaderValue::from_str(v)
                    .map_err(|_| format!("header {name} has an invalid value"))?,
                HeaderValueSpec::Secret(r) => {
                    let secret = plan
                        .secrets
                        .get(r)
                        .ok_or_else(|| format!("header {name}: its secret was not resolved"))?;
                    let mut v = HeaderValue::from_str(secret.expose()).map_err(|_| {
                        format!("header {name}: the secret is not a valid header value")
                    })?;
                    v.set_sensitive(true);
                    v
                }
            };
            headers.insert(name.clone(), value);
        }
        let mut builder = self
            .client
            .request(req.method.clone(), url.clone())
            .headers(headers);
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        let started = Instant::now();
        let cap = req.max_body_bytes;
        let exchange = async {
            let mut resp = builder
                .send()
                .await
                .map_err(|e| describe_reqwest(&e, &url))?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            if resp.content_length().is_some_and(|n| n > cap) {
                return Err(format!(
                    "status {status} with a body of {} bytes, above the cap of {cap} bytes",
                    resp.content_length().unwrap_or(0)
                ));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| {
                format!(
                    "status {status}, then reading the body failed: {}",
                    describe_reqwest(&e, &url)
                )
            })? {
                if body.len() as u64 + chunk.len() as u64 > cap {
                    return Err(format!(
                        "status {status} with a body above the cap of {cap} bytes"
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Observed {
                status,
                headers,
                body,
                latency: started.elapsed(),
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no complete response from {} within {} ms",
                url_for_humans(&url),
                timeout.as_millis()
            )),
        }
    }

    fn permitted(&self, url: &url::Url, target: &Target) -> Result<(), String> {
        let port = url.port_or_known_default().unwrap_or(0);
        match url.host() {
            Some(url::Host::Ipv4(ip)) => literal_ok(IpAddr::V4(ip), target),
            Some(url::Host::Ipv6(ip)) => literal_ok(IpAddr::V6(ip), target),
            Some(url::Host::Domain(d)) => match self.map.lookup(d) {
                Some((ports, _)) if !ports.contains(&port) => Err(format!(
                    "refused: {d} is mapped for port {ports:?} only, not {port}"
                )),
                _ => Ok(()),
            },
            None => Err(format!("{} has no host", url_for_humans(url))),
        }
    }
}

enum Job<'a> {
    Check(&'a super::spec::Check),
    Version(&'a super::spec::VersionProof),
}

fn literal_ok(ip: IpAddr, target: &Target) -> Result<(), String> {
    match forbidden(ip) {
        Some(kind) if !target.operator_set => Err(format!(
            "refused: {ip} is a {kind} address; only an operator override may point there"
        )),
        _ => Ok(()),
    }
}

fn version_ok(
    field: &VersionField,
    expected: Result<&str, &str>,
    seen: &Observed,
) -> Result<(), String> {
    match expected {
        Ok(v) => prove_version(field, v, seen),
        Err(why) => Err(format!("cannot prove the version: {why}")),
    }
}

/// `base` with `path` appended to its path.
pub fn join(base: &url::Url, path: &str) -> Result<url::Url, String> {
    let text = format!("{}{}", base.as_str().trim_end_matches('/'), path);
    let url = url::Url::parse(&text).map_err(|e| format!("bad URL {}: {e}", quote(&text, 200)))?;
    if url.host() != base.host() || url.port_or_known_default() != base.port_or_known_default() {
        return Err(format!("path {} would leave the target", quote(path, 100)));
    }
    Ok(url)
}

/// The delay before attempt `done + 1`: capped exponential backoff with equal jitter.
pub fn backoff(retry: Retry, done: u32) -> Duration {
    let exp = retry
        .base_delay
        .saturating_mul(1u32.checked_shl(done.saturating_sub(1)).unwrap_or(u32::MAX));
    let capped = exp.min(retry.max_delay);
    let half = capped / 2;
    half + Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64))
}

fn url_for_humans(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

fn describe_reqwest(e: &reqwest::Error, url: &url::Url) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "broken response body"
    } else if e.is_request() {
        "request failed"
    } else {
        "failed"
    };
    format!(
        "{what} to {}: {}",
        url_for_humans(url),
        crate::aws::error_chain(e)
    )
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_entries_parse_like_curl() {
        let m = ResolveMap::parse(
            "app.elb.local:8080:127.0.0.1, app.elb.local:80:127.0.0.1 v6.local:443:[::1];127.0.0.2",
        )
        .expect("ok");
        assert_eq!(
            m.lookup("APP.elb.local").map(|e| e.0.clone()),
            Some(vec![8080, 80])
        );
        assert!(ResolveMap::parse("a:1:127.0.0.1,a:2:127.0.0.2")
            .expect_err("conflict")
            .contains("different addresses"));
        assert_eq!(m.lookup("v6.local").map(|e| e.1.len()), Some(2));
        for bad in ["nohost", "h:x:127.0.0.1", "h:80:notanip", ":80:127.0.0.1"] {
            let e = ResolveMap::parse(bad).expect_err(bad);
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn forbidden_ranges() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(forbidden(ip.parse().expect("ip")).is_some(), "{ip}");
        }
        for ip in ["10.0.0.1", "52.1.2.3", "2600::1"] {
            assert!(forbidden(ip.parse().expect("ip")).is_none(), "{ip}");
        }
    }

    #[test]
    fn joining_keeps_the_target() {
        let base = url::Url::parse("http://lb.example:8080/prefix/").expect("url");
        assert_eq!(
            join(&base, "/health?x=1").expect("ok").as_str(),
            "http://lb.example:8080/prefix/health?x=1"
        );
        let base = url::Url::parse("http://lb.example:8080").expect("url");
        assert_eq!(
            join(&base, "/a").expect("ok").as_str(),
            "http://lb.example:8080/a"
        );
        assert!(join(&base, "@evil.example/").is_err());
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let r = Retry {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for done in 1..=12 {
            let d = backoff(r, done);
            let full =
                Duration::from_millis(100 * 2u64.pow(done - 1)).min(Duration::from_millis(1000));
            assert!(
                d >= full / 2 && d <= full,
                "attempt {done}: {d:?} vs {full:?}"
            );
        }
    }
}
