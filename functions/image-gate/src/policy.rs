//! The image gate's policy and its pure decision: `UserParameters` → [`Policy`], image
//! references, the facts gathered from ECR, and [`decide`]. No I/O here; table-tested.

use std::collections::BTreeMap;

use deploy_guard::pipeline::FailureKind;
use deploy_guard::text::quote;
use regex_lite::Regex;
use serde::Deserialize;

/// Semantic version (`1.4.0`, `v2.0.0-rc.1`) or a git SHA (7 to 40 hex digits).
pub const DEFAULT_TAG_PATTERN: &str = r"v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?|[0-9a-f]{7,40}";

/// Tags refused by default because they move. `latest` is refused whatever the list says.
pub const DEFAULT_MUTABLE_TAGS: &[&str] = &[
    "latest",
    "stable",
    "main",
    "master",
    "develop",
    "dev",
    "prod",
    "production",
    "staging",
    "release",
    "nightly",
    "edge",
];

// ---------------------------------------------------------------------------------------------
// UserParameters as written

/// The action's `UserParameters` (JSON, at most 1000 characters). Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The image to check, instead of the input artifact (`repo:tag`, a full ECR URI, `@sha256:…`).
    pub image: Option<String>,
    /// Which input artifact holds `imageDetail.json` / `imagedefinitions.json` (default: the first).
    pub artifact: Option<String>,
    /// Which `imagedefinitions.json` entry (its `name`) when it lists several.
    pub container: Option<String>,
    /// The whole tag must match this regex.
    pub tag_pattern: Option<String>,
    /// Tags refused because they move (replaces the default list; `latest` stays refused).
    pub mutable_tags: Option<Vec<String>>,
    /// What a repository without immutable tags gets: `fail` (default), `warn` or `off`.
    pub immutable_repository: Option<Enforce>,
    #[serde(default)]
    pub scan: ScanParams,
    /// Refuse images pushed longer ago than this.
    pub max_age_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanParams {
    /// Most findings allowed per severity (default CRITICAL 0, HIGH 0; others unlimited).
    pub max: Option<BTreeMap<String, u32>>,
    /// Findings accepted until a date.
    #[serde(default)]
    pub allow: Vec<AllowEntry>,
    /// A missing, failed or unfinished scan: `fail` (default), `warn` or `off`.
    pub missing: Option<Enforce>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowEntry {
    /// The finding's id (`CVE-2024-1234`, as ECR names it).
    pub id: String,
    /// Last day (UTC, `YYYY-MM-DD`) the entry applies.
    pub expires: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforce {
    Fail,
    Warn,
    Off,
}

/// ECR's finding severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Informational,
    Undefined,
    Untriaged,
}

impl Severity {
    pub const ALL: [Severity; 7] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Informational,
        Severity::Undefined,
        Severity::Untriaged,
    ];

    pub fn parse(s: &str) -> Severity {
        match s.to_ascii_uppercase().as_str() {
            "CRITICAL" => Severity::Critical,
            "HIGH" => Severity::High,
            "MEDIUM" => Severity::Medium,
            "LOW" => Severity::Low,
            "INFORMATIONAL" => Severity::Informational,
            "UNTRIAGED" => Severity::Untriaged,
            _ => Severity::Undefined,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::High => "HIGH",
            Severity::Medium => "MEDIUM",
            Severity::Low => "LOW",
            Severity::Informational => "INFORMATIONAL",
            Severity::Undefined => "UNDEFINED",
            Severity::Untriaged => "UNTRIAGED",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The compiled policy

#[derive(Debug, Clone)]
pub struct Allowed {
    pub id: String,
    /// Unix day number of the last day it applies.
    pub expires_day: i64,
    pub expires: String,
    pub reason: Option<String>,
}

/// `Params`, checked.
#[derive(Debug, Clone)]
pub struct Policy {
    pub image: Option<ImageRef>,
    pub artifact: Option<String>,
    pub container: Option<String>,
    pub tag_pattern: Regex,
    pub tag_pattern_text: String,
    pub mutable_tags: Vec<String>,
    pub immutable_repository: Enforce,
    pub max: BTreeMap<Severity, u32>,
    pub allow: Vec<Allowed>,
    pub scan_missing: Enforce,
    pub max_age_days: Option<u32>,
}

impl Policy {
    /// How the tag pattern is named in messages.
    pub fn tag_pattern_label(&self) -> String {
        if self.tag_pattern_text == DEFAULT_TAG_PATTERN {
            "the default pattern (a semantic version or a git SHA)".to_string()
        } else {
            quote(&self.tag_pattern_text, 80)
        }
    }
}

impl Params {
    /// Checks the values; errors name the field as `UserParameters.<field>`.
    pub fn compile(self) -> Result<Policy, String> {
        let image = self
            .image
            .as_deref()
            .map(|i| ImageRef::parse(i).map_err(|e| format!("UserParameters.image: {e}")))
            .transpose()?;
        let text = self
            .tag_pattern
            .unwrap_or_else(|| DEFAULT_TAG_PATTERN.to_string());
        let tag_pattern = Regex::new(&format!("^(?:{text})$")).map_err(|e| {
            format!(
                "UserParameters.tag_pattern: not a valid regular expression ({e}): {}",
                quote(&text, 80)
            )
        })?;
        let mut mutable_tags = self
            .mutable_tags
            .unwrap_or_else(|| DEFAULT_MUTABLE_TAGS.iter().map(|s| s.to_string()).collect());
        if !mutable_tags.iter().any(|t| t == "latest") {
            mutable_tags.push("latest".into());
        }
        let mut allow = Vec::new();
        for (i, a) in self.scan.allow.iter().enumerate() {
            if a.id.trim().is_empty() {
                return Err(format!(
                    "UserParameters.scan.allow[{i}].id: must not be empty"
                ));
            }
            let day = parse_day(&a.expires).ok_or_else(|| {
                format!(
                    "UserParameters.scan.allow[{i}].expires: expected a date YYYY-MM-DD, found {}",
                    quote(&a.expires, 40)
                )
            })?;
            allow.push(Allowed {
                id: a.id.trim().to_string(),
                expires_day: day,
                expires: a.expires.clone(),
                reason: a.reason.clone(),
            });
        }
        let max = match self.scan.max {
            None => [(Severity::Critical, 0), (Severity::High, 0)].into(),
            Some(m) => {
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    let sev = Severity::ALL
                        .into_iter()
                        .find(|s| s.as_str() == k)
                        .ok_or_else(|| {
                            format!(
                                "UserParameters.scan.max.{}: not a severity; use {}",
                                quote(&k, 40).trim_matches('"'),
                                Severity::ALL.map(Severity::as_str).join(", ")
                            )
                        })?;
                    out.insert(sev, v);
                }
                out
            }
        };
        if self.max_age_days == Some(0) {
            return Err("UserParameters.max_age_days: must be at least 1".into());
        }
        Ok(Policy {
            image,
            artifact: self.artifact,
            container: self.container,
            tag_pattern,
            tag_pattern_text: text,
            mutable_tags,
            immutable_repository: self.immutable_repository.unwrap_or(Enforce::Fail),
            max,
            allow,
            scan_missing: self.scan.missing.unwrap_or(Enforce::Fail),
            max_age_days: self.max_age_days,
        })
    }
}

/// `YYYY-MM-DD` → days since 1970-01-01.
pub fn parse_day(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d == 0 || d > days_in[(m - 1) as usize] {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

// ---------------------------------------------------------------------------------------------
// Image references

/// A container image reference, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `123456789012.dkr.ecr.us-east-1.amazonaws.com`, or none (the function's own registry).
    pub registry: Option<String>,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, String> {
        let raw = s.trim();
        let bad = |why: &str| format!("{why}: {}", quote(s, 120));
        if raw.is_empty() {
            return Err(bad("an image reference is empty"));
        }
        if raw.len() > 512 || raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("not an image reference"));
        }
        let (name, digest) = match raw.split_once('@') {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (raw, None),
        };
        if let Some(d) = &digest {
            let ok = d.strip_prefix("sha256:").is_some_and(|h| {
                h.len() == 64
                    && h.bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            });
            if !ok {
                return Err(bad(
                    "the digest must be sha256: and 64 lowercase hex digits",
                ));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (Some(first.to_string()), rest)
            }
            _ => (None, name),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) => (r, Some(t.to_string())),
            None => (path, None),
        };
        let repo_ok = !repository.is_empty()
            && repository.len() <= 256
            && repository.split('/').all(|seg| {
                !seg.is_empty()
                    && seg.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
                    && seg.as_bytes()[0].is_ascii_alphanumeric()
            });
        if !repo_ok {
            return Err(bad("not a valid repository name"));
        }
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_');
            if !ok {
                return Err(bad("not a valid tag"));
            }
        }
        Ok(ImageRef {
            registry,
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// `(account, region)` when the registry is an ECR registry.
    pub fn ecr_registry(&self) -> Option<(String, String)> {
        let host = self.registry.as_deref()?;
        let parts: Vec<&str> = host.split('.').collect();
        let ecr = parts.len() >= 5
            && parts[0].len() == 12
            && parts[0].bytes().all(|b| b.is_ascii_digit())
            && matches!((parts[1], parts[2]), ("dkr", "ecr"));
        ecr.then(|| (parts[0].to_string(), parts[3].to_string()))
    }

    /// `repo:tag`, `repo@digest`, as written (without the registry).
    pub fn short(&self) -> String {
        let mut s = self.repository.clone();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Facts and the decision

/// A fact that could not be read, and the failure type it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: FailureKind,
    pub message: String,
}

impl Problem {
    pub fn failed(message: impl Into<String>) -> Self {
        Problem {
            kind: FailureKind::JobFailed,
            message: message.into(),
        }
    }
}

/// The image as ECR knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrImage {
    pub registry_id: String,
    pub digest: String,
    pub tags: Vec<String>,
    /// Unix seconds.
    pub pushed_at: Option<i64>,
}

/// The repository's tag mutability (`IMMUTABLE`, `MUTABLE`, `…_WITH_EXCLUSION`) and its
/// exclusion filters (wildcards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryFacts {
    pub mutability: String,
    pub exclusions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub id: String,
    pub severity: Severity,
}

/// The image's scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanFacts {
    /// No scan was ever made.
    None,
    /// A scan that did not complete: its status and description.
    Unfinished { status: String, description: String },
    /// A complete scan: the findings (when listed) and ECR's counts.
    Complete {
        findings: Vec<Finding>,
        counts: BTreeMap<Severity, u32>,
    },
}

/// Everything the decision looks at.
#[derive(Debug, Clone)]
pub struct Facts {
    pub image: ImageRef,
    /// Where the image came from, for the summary.
    pub source: String,
    /// Tags the artifact lists (an ECR source action's `ImageTags`).
    pub artifact_tags: Vec<String>,
    /// The function's region.
    pub region: String,
    pub ecr: Result<EcrImage, Problem>,
    pub repository: Result<RepositoryFacts, Problem>,
    /// `None` when the scan could not be looked up because the image was not found.
    pub scan: Option<Result<ScanFacts, Problem>>,
}

/// The verdict's material.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub failures: Vec<String>,
    pub warnings: Vec<String>,
    /// What passed, for the success summary.
    pub passed: Vec<String>,
    pub kind: Option<FailureKind>,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Decision {
    fn fail(&mut self, kind: FailureKind, msg: String) {
        self.failures.push(msg);
        // The most telling type wins: a permission problem over a plain failure.
        self.kind = Some(match (self.kind, kind) {
            (Some(FailureKind::ConfigurationError), _) | (_, FailureKind::ConfigurationError) => {
                FailureKind::ConfigurationError
            }
            (Some(FailureKind::PermissionError), _) | (_, FailureKind::PermissionError) => {
                FailureKind::PermissionError
            }
            _ => FailureKind::JobFailed,
        });
    }
}

fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(p) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else if let Some(at) = rest.find(p) {
            rest = &rest[at + p.len()..];
        } else {
            return false;
        }
    }
    true
}

fn list(items: &[String], max: usize) -> String {
    let mut out: Vec<String> = items.iter().take(max).cloned().collect();
    if items.len() > max {
        out.push(format!("… {} more", items.len() - max));
    }
    out.join(", ")
}

/// Applies the policy to the facts, at `now` (Unix seconds). Every rule that fails is listed.
pub fn decide(facts: &Facts, policy: &Policy, now: i64) -> Decision {
    let mut d = Decision::default();
    let image = &facts.image;
    let name = image.short();

    // Registry: an ECR registry in this region (or none given: this account's).
    if let Some(host) = &image.registry {
        match image.ecr_registry() {
            None => d.fail(
                FailureKind::ConfigurationError,
                format!("registry: {} is not an ECR registry (only ECR images can be checked)", quote(host, 80)),
            ),
            Some((_, region)) if region != facts.region => d.fail(
                FailureKind::ConfigurationError,
                format!("registry: the image is in {region}'s registry, but this gate runs in {} (deploy a gate in {region})", facts.region),
            ),
            Some(_) => {}
        }
    }

    // Tags: the reference's own tag, else the artifact's tags, else ECR's tags for the digest.
    let candidates: Vec<String> = if let Some(t) = &image.tag {
        vec![t.clone()]
    } else if !facts.artifact_tags.is_empty() {
        facts.artifact_tags.clone()
    } else if let Ok(e) = &facts.ecr {
        e.tags.clone()
    } else {
        vec![]
    };
    let is_mutable = |t: &str| policy.mutable_tags.iter().any(|m| m == t);
    let good: Vec<&String> = candidates
        .iter()
        .filter(|t| !is_mutable(t) && policy.tag_pattern.is_match(t))
        .collect();
    if let Some(t) = good.first() {
        d.tag = Some((*t).clone());
        d.passed
            .push(format!("tag {t} matches {}", policy.tag_pattern_label()));
    } else if candidates.is_empty() {
        d.fail(
            FailureKind::JobFailed,
            format!("tag: {name} has no tag to check (tag the image with a version: semantic version or git SHA)"),
        );
    } else {
        let mutable: Vec<String> = candidates
            .iter()
            .filter(|t| is_mutable(t))
            .cloned()
            .collect();
        if !mutable.is_empty() {
            d.fail(
                FailureKind::JobFailed,
                format!(
                    "mutable tag: {} can move to another image (tag releases with a version and ship that)",
                    list(&mutable.iter().map(|t| quote(t, 60)).collect::<Vec<_>>(), 5)
                ),
            );
        }
        let unmatched: Vec<String> = candidates
            .iter()
            .filter(|t| !policy.tag_pattern.is_match(t))
            .map(|t| quote(t, 60))
            .collect();
        if !unmatched.is_empty() {
            d.fail(
                FailureKind::JobFailed,
                format!(
                    "tag pattern: {} does not match {}",
                    list(&unmatched, 5),
                    policy.tag_pattern_label()
                ),
            );
        }
    }

    // Existence and digest.
    match &facts.ecr {
        Err(p) => d.fail(p.kind, format!("exists: {}", p.message)),
        Ok(e) => {
            d.digest = Some(e.digest.clone());
            match &image.digest {
                Some(want) if *want != e.digest => d.fail(
                    FailureKind::JobFailed,
                    format!(
                        "digest: the artifact names {want}, but ECR's {} is {} (the tag moved after the build: rebuild, or re-run the source stage)",
                        image.tag.as_deref().map(|t| format!("tag {t}")).unwrap_or_else(|| "image".into()),
                        e.digest
                    ),
                ),
                Some(_) => d.passed.push(format!("digest {} matches ECR", short_digest(&e.digest))),
                None => d.passed.push(format!("in ECR as {}", short_digest(&e.digest))),
            }
            if let (Some(max), Some(pushed)) = (policy.max_age_days, e.pushed_at) {
                let age_days = (now - pushed).max(0) / 86_400;
                if age_days > i64::from(max) {
                    d.fail(
                        FailureKind::JobFailed,
                        format!("age: pushed {age_days} days ago, more than the {max} days allowed (rebuild it)"),
                    );
                } else {
                    d.passed
                        .push(format!("pushed {age_days} days ago (≤ {max})"));
                }
            }
        }
    }

    // Repository tag mutability.
    if policy.immutable_repository != Enforce::Off {
        match &facts.repository {
            Err(p) => d.fail(p.kind, format!("repository: {}", p.message)),
            Ok(r) => {
                let tag = d.tag.clone().or_else(|| candidates.first().cloned());
                let excluded = tag
                    .as_deref()
                    .is_some_and(|t| r.exclusions.iter().any(|f| wildcard(f, t)));
                let immutable = match r.mutability.as_str() {
                    "IMMUTABLE" => true,
                    "IMMUTABLE_WITH_EXCLUSION" => !excluded,
                    "MUTABLE_WITH_EXCLUSION" => excluded,
                    _ => false,
                };
                if immutable {
                    d.passed.push(format!(
                        "repository {} has immutable tags",
                        image.repository
                    ));
                } else {
                    let msg = format!(
                        "tag mutability: repository {} has {} tags{}, so the tag can be pushed again with other content (set imageTagMutability to IMMUTABLE)",
                        image.repository,
                        r.mutability,
                        if excluded { " (this tag matches an exclusion filter)" } else { "" }
                    );
                    if policy.immutable_repository == Enforce::Fail {
                        d.fail(FailureKind::JobFailed, msg);
                    } else {
                        d.warnings.push(msg);
                    }
                }
            }
        }
    }

    // Scan.
    match &facts.scan {
        None => {}
        Some(Err(p)) => d.fail(p.kind, format!("scan: {}", p.message)),
        Some(Ok(scan)) => judge_scan(&mut d, scan, policy, now),
    }
    d
}

fn short_digest(d: &str) -> String {
    d.chars().take(19).collect::<String>() + "…"
}

fn judge_scan(d: &mut Decision, scan: &ScanFacts, policy: &Policy, now: i64) {
    let missing = |d: &mut Decision, msg: String| match policy.scan_missing {
        Enforce::Fail => d.fail(FailureKind::JobFailed, msg),
        Enforce::Warn => d.warnings.push(msg),
        Enforce::Off => {}
    };
    match scan {
        ScanFacts::None => missing(
            d,
            "scan: the image has no scan (turn on scan on push, or start a scan, and run again)"
                .into(),
        ),
        ScanFacts::Unfinished {
            status,
            description,
        } => missing(
            d,
            format!(
                "scan: the image's scan is {status}{} (run again once it completes)",
                if description.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", quote(description, 120))
                }
            ),
        ),
        ScanFacts::Complete { findings, counts } => {
            let today = now.div_euclid(86_400);
            let mut counted: BTreeMap<Severity, Vec<String>> = BTreeMap::new();
            let mut allowed: Vec<String> = Vec::new();
            let mut expired: Vec<String> = Vec::new();
            if findings.is_empty() {
                for (s, n) in counts {
                    counted
                        .entry(*s)
                        .or_default()
                        .extend((0..*n).map(|_| String::new()));
                }
            }
            for f in findings {
                match policy.allow.iter().find(|a| a.id == f.id) {
                    Some(a) if a.expires_day >= today => {
                        let note = match &a.reason {
                            Some(r) => format!("{} until {} ({})", f.id, a.expires, quote(r, 80)),
                            None => format!("{} until {}", f.id, a.expires),
                        };
                        if !allowed.contains(&note) {
                            allowed.push(note);
                        }
                        continue;
                    }
                    Some(a) => {
                        let note = format!("{} (allowlist entry expired {})", f.id, a.expires);
                        if !expired.contains(&note) {
                            expired.push(note);
                        }
                    }
                    None => {}
                }
                counted.entry(f.severity).or_default().push(f.id.clone());
            }
            let mut over = Vec::new();
            for (sev, max) in &policy.max {
                let ids = counted.get(sev).map(Vec::as_slice).unwrap_or(&[]);
                if ids.len() as u64 > u64::from(*max) {
                    let named: Vec<String> =
                        ids.iter().filter(|i| !i.is_empty()).cloned().collect();
                    over.push(format!(
                        "{} {} findings, at most {max} allowed{}",
                        ids.len(),
                        sev.as_str(),
                        if named.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", list(&named, 5))
                        }
                    ));
                }
            }
            if !over.is_empty() {
                let mut msg = format!("scan findings: {}", over.join(", and "));
                if !expired.is_empty() {
                    msg.push_str(&format!(
                        " (expired allowlist entries no longer apply: {})",
                        list(&expired, 5)
                    ));
                }
                d.fail(FailureKind::JobFailed, msg);
            } else {
                let shown: Vec<String> = counted
                    .iter()
                    .filter(|(_, ids)| !ids.is_empty())
                    .map(|(s, ids)| format!("{} {}", ids.len(), s.as_str()))
                    .collect();
                let mut s = if shown.is_empty() {
                    "scan: no findings".to_string()
                } else {
                    format!("scan: {} within limits", shown.join(", "))
                };
                if !allowed.is_empty() {
                    s.push_str(&format!(", allowlisted: {}", list(&allowed, 5)));
                }
                d.passed.push(s);
                if !expired.is_empty() {
                    d.warnings
                        .push(format!("expired allowlist entries: {}", list(&expired, 5)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const OTHER: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    const NOW: i64 = 1_780_000_000; // 2026-05-28

    fn policy(params: &str) -> Policy {
        deploy_guard::pipeline::user_parameters::<Params>(Some(params))
            .expect("params")
            .compile()
            .expect("compiles")
    }

    fn facts(image: &str) -> Facts {
        Facts {
            image: ImageRef::parse(image).expect("ref"),
            source: "test".into(),
            artifact_tags: vec![],
            region: "us-east-1".into(),
            ecr: Ok(EcrImage {
                registry_id: "123456789012".into(),
                digest: DIGEST.into(),
                tags: vec!["1.4.0".into()],
                pushed_at: Some(NOW - 3 * 86_400),
            }),
            repository: Ok(RepositoryFacts {
                mutability: "IMMUTABLE".into(),
                exclusions: vec![],
            }),
            scan: Some(Ok(ScanFacts::Complete {
                findings: vec![],
                counts: BTreeMap::new(),
            })),
        }
    }

    fn findings(list: &[(&str, Severity)]) -> Option<Result<ScanFacts, Problem>> {
        let findings: Vec<Finding> = list
            .iter()
            .map(|(id, s)| Finding {
                id: id.to_string(),
                severity: *s,
            })
            .collect();
        let mut counts = BTreeMap::new();
        for f in &findings {
            *counts.entry(f.severity).or_insert(0) += 1;
        }
        Some(Ok(ScanFacts::Complete { findings, counts }))
    }

    #[test]
    fn image_references_table() {
        type Case<'a> = (&'a str, Option<&'a str>, &'a str, Option<&'a str>, bool);
        let cases: &[Case] = &[
            ("shop:1.4.0", None, "shop", Some("1.4.0"), false),
            ("team/shop", None, "team/shop", None, false),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop:v2",
                Some(HOST),
                "shop",
                Some("v2"),
                false,
            ),
            (
                "localhost:5000/shop:abc1234",
                Some("localhost:5000"),
                "shop",
                Some("abc1234"),
                false,
            ),
        ];
        for (s, reg, repo, tag, digest) in cases {
            let r = ImageRef::parse(s).expect(s);
            assert_eq!(r.registry.as_deref(), *reg, "{s}");
            assert_eq!(r.repository, *repo, "{s}");
            assert_eq!(r.tag.as_deref(), *tag, "{s}");
            assert_eq!(r.digest.is_some(), *digest, "{s}");
        }
        let r = ImageRef::parse(&format!("{HOST}/shop@{DIGEST}")).expect("digest");
        assert_eq!(r.digest.as_deref(), Some(DIGEST));
        assert_eq!(
            r.ecr_registry(),
            Some(("123456789012".into(), "us-east-1".into()))
        );
        for bad in [
            "",
            "Shop:1",
            "shop:",
            "shop@sha256:xyz",
            "shop:1 2",
            "a//b",
            "shop:-x",
        ] {
            let e = ImageRef::parse(bad).expect_err(bad);
            assert!(e.contains(&quote(bad, 120)), "{bad}: {e}");
        }
    }

    #[test]
    fn params_errors_name_the_field() {
        let cases = [
            (r#"{"tag_pattern": "("}"#, "UserParameters.tag_pattern"),
            (
                r#"{"scan": {"allow": [{"id": "CVE-1", "expires": "next week"}]}}"#,
                "UserParameters.scan.allow[0].expires",
            ),
            (r#"{"image": "Not An Image"}"#, "UserParameters.image"),
            (r#"{"max_age_days": 0}"#, "UserParameters.max_age_days"),
            (
                r#"{"scan": {"max": {"SEVERE": 1}}}"#,
                "UserParameters.scan.max.SEVERE: not a severity",
            ),
        ];
        for (raw, field) in cases {
            let p = deploy_guard::pipeline::user_parameters::<Params>(Some(raw)).expect(raw);
            let e = p.compile().expect_err(raw);
            assert!(e.starts_with(field), "{raw}: {e}");
        }
        for (raw, words) in [
            (
                r#"{"scan": {"max": {"HIGH": -1}}}"#,
                "UserParameters.scan.max.HIGH: invalid value",
            ),
            (
                r#"{"immutable_repository": "maybe"}"#,
                "UserParameters.immutable_repository",
            ),
            (r#"{"tags": []}"#, "unknown field `tags`"),
        ] {
            let e = deploy_guard::pipeline::user_parameters::<Params>(Some(raw)).expect_err(raw);
            assert!(e.contains(words), "{raw}: {e}");
        }
    }

    /// The sample events' UserParameters are valid policies.
    #[test]
    fn sample_event_parameters_compile() {
        for name in ["job-image-detail.json", "job-user-parameters.json"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../events/image-gate")
                .join(name);
            let event: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
            let raw = event["CodePipeline.job"]["data"]["actionConfiguration"]["configuration"]
                ["UserParameters"]
                .as_str();
            deploy_guard::pipeline::user_parameters::<Params>(raw)
                .and_then(Params::compile)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn days_are_counted_from_the_epoch() {
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2000-03-01"), Some(11_017));
        assert_eq!(parse_day("2024-02-29"), Some(19_782));
        assert_eq!(parse_day("2023-02-29"), None);
        assert_eq!(parse_day("2024-13-01"), None);
        assert_eq!(parse_day("24-1-1"), None);
    }

    /// (image, params, fact changes, expected failure fragments (empty = passes), warnings)
    #[test]
    fn decisions_table() {
        type Change = fn(&mut Facts);
        type Case<'a> = (&'a str, &'a str, Change, Vec<&'a str>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            ("shop:1.4.0", "{}", |_| {}, vec![], vec![]),
            (
                "shop:latest",
                "{}",
                |_| {},
                vec!["mutable tag: \"latest\"", "tag pattern: \"latest\""],
                vec![],
            ),
            (
                "shop:latest",
                r#"{"mutable_tags": ["dev"], "tag_pattern": ".*"}"#,
                |_| {},
                vec!["mutable tag: \"latest\""],
                vec![],
            ),
            (
                "shop:feature-x",
                "{}",
                |_| {},
                vec!["tag pattern: \"feature-x\" does not match"],
                vec![],
            ),
            (
                "shop:build-42",
                r#"{"tag_pattern": "build-[0-9]+"}"#,
                |_| {},
                vec![],
                vec![],
            ),
            ("shop:abc1234", "{}", |_| {}, vec![], vec![]),
            (
                "shop@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                "{}",
                |_| {},
                vec![
                    "digest: the artifact names sha256:bbbb",
                    "ECR's image is sha256:aaaa",
                ],
                vec![],
            ),
            (
                "shop:1.4.0",
                "{}",
                |f| {
                    f.repository = Ok(RepositoryFacts {
                        mutability: "MUTABLE".into(),
                        exclusions: vec![],
                    })
                },
                vec!["tag mutability: repository shop has MUTABLE tags"],
                vec![],
            ),
            (
                "shop:1.4.0",
                r#"{"immutable_repository": "warn"}"#,
                |f| {
                    f.repository = Ok(RepositoryFacts {
                        mutability: "MUTABLE".into(),
                        exclusions: vec![],
                    })
                },
                vec![],
                vec!["MUTABLE"],
            ),
            (
                "shop:1.4.0",
                "{}",
                |f| {
                    f.repository = Ok(RepositoryFacts {
                        mutability: "IMMUTABLE_WITH_EXCLUSION".into(),
                        exclusions: vec!["1.*".into()],
                    })
                },
                vec!["matches an exclusion filter"],
                vec![],
            ),
            (
                "shop:1.4.0",
                "{}",
                |f| {
                    f.repository = Ok(RepositoryFacts {
                        mutability: "MUTABLE_WITH_EXCLUSION".into(),
                        exclusions: vec!["*.*.*".into()],
                    })
                },
                vec![],
                vec![],
            ),
            (
                "shop:1.4.0",
                "{}",
                |f| {
                    f.scan = findings(&[("CVE-1", Severity::Critical), ("CVE-2", Severity::Medium)])
                },
                vec!["1 CRITICAL findings, at most 0 allowed (CVE-1)"],
                vec![],
            ),
            (
                "shop:1.4.0",
                r#"{"scan": {"max": {"HIGH": 1}}}"#,
                |f| {
                    f.scan = findings(&[
                        ("CVE-1", Severity::High),
                        ("CVE-2", Severity::High),
                        ("CVE-3", Severity::Critical),
                    ])
                },
                vec!["2 HIGH findings, at most 1 allowed (CVE-1, CVE-2)"],
                vec![],
            ),
            (
                "shop:1.4.0",
                r#"{"scan": {"allow": [{"id": "CVE-1", "expires": "2099-01-01"}]}}"#,
                |f| f.scan = findings(&[("CVE-1", Severity::Critical)]),
                vec![],
                vec![],
            ),
            (
                "shop:1.4.0",
                r#"{"scan": {"allow": [{"id": "CVE-1", "expires": "2026-01-01"}]}}"#,
                |f| f.scan = findings(&[("CVE-1", Severity::Critical)]),
                vec!["1 CRITICAL", "CVE-1 (allowlist entry expired 2026-01-01)"],
                vec![],
            ),
            (
                "shop:1.4.0",
                "{}",
                |f| f.scan = Some(Ok(ScanFacts::None)),
                vec!["scan: the image has no scan"],
                vec![],
            ),
            (
                "shop:1.4.0",
                r#"{"scan": {"missing": "warn"}}"#,
                |f| {
                    f.scan = Some(Ok(ScanFacts::Unfinished {
                        status: "IN_PROGRESS".into(),
                        description: String::new(),
                    }))
                },
                vec![],
                vec!["scan is IN_PROGRESS"],
            ),
            (
                "shop:1.4.0",
                r#"{"max_age_days": 2}"#,
                |_| {},
                vec!["age: pushed 3 days ago, more than the 2 days"],
                vec![],
            ),
            (
                "shop:1.4.0",
                "{}",
                |f| {
                    f.ecr = Err(Problem::failed(
                        "image shop:1.4.0 is not in repository shop",
                    ));
                    f.scan = None;
                },
                vec!["exists: image shop:1.4.0 is not in repository shop"],
                vec![],
            ),
            (
                "987654321098.dkr.ecr.eu-west-1.amazonaws.com/shop:1.4.0",
                "{}",
                |_| {},
                vec!["registry: the image is in eu-west-1's registry"],
                vec![],
            ),
            (
                "ghcr.io/shop:1.4.0",
                "{}",
                |_| {},
                vec!["is not an ECR registry"],
                vec![],
            ),
            // Every failing rule is listed, not only the first.
            (
                "shop:latest",
                "{}",
                |f| {
                    f.repository = Ok(RepositoryFacts {
                        mutability: "MUTABLE".into(),
                        exclusions: vec![],
                    });
                    f.scan = findings(&[("CVE-9", Severity::Critical)]);
                },
                vec![
                    "mutable tag",
                    "tag pattern",
                    "tag mutability",
                    "scan findings",
                ],
                vec![],
            ),
        ];
        for (image, params, change, fails, warns) in cases {
            let mut f = facts(image);
            change(&mut f);
            let d = decide(&f, &policy(params), NOW);
            let all = d.failures.join(" | ");
            if fails.is_empty() {
                assert!(
                    d.failures.is_empty(),
                    "{image} {params}: unexpected failures: {all}"
                );
                assert!(d.tag.is_some() && d.digest.is_some(), "{image}: {d:?}");
            } else {
                for w in &fails {
                    assert!(all.contains(w), "{image} {params}: expected {w:?} in {all}");
                }
                assert!(d.kind.is_some());
            }
            let warned = d.warnings.join(" | ");
            for w in warns {
                assert!(
                    warned.contains(w),
                    "{image} {params}: expected warning {w:?} in {warned}"
                );
            }
        }
    }

    #[test]
    fn artifact_tags_are_used_when_the_reference_is_pinned_by_digest() {
        let mut f = facts(&format!("{HOST}/shop@{DIGEST}"));
        f.artifact_tags = vec!["latest".into(), "1.4.0".into()];
        let d = decide(&f, &policy("{}"), NOW);
        assert!(d.failures.is_empty(), "{d:?}");
        assert_eq!(d.tag.as_deref(), Some("1.4.0"));
        f.artifact_tags = vec!["latest".into()];
        let d = decide(&f, &policy("{}"), NOW);
        assert!(d.failures.join(" ").contains("mutable tag"), "{d:?}");
        let mut f = facts(&format!("shop@{OTHER}"));
        f.ecr = Ok(EcrImage {
            registry_id: "1".into(),
            digest: OTHER.into(),
            tags: vec![],
            pushed_at: None,
        });
        let d = decide(&f, &policy("{}"), NOW);
        assert!(
            d.failures.join(" ").contains("has no tag to check"),
            "{d:?}"
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("latest*", "latest-x"));
        assert!(wildcard("*", "x"));
        assert!(wildcard("a*c", "abbc"));
        assert!(!wildcard("a*c", "abd"));
        assert!(wildcard("1.4.0", "1.4.0"));
        assert!(!wildcard("1.4", "1.4.0"));
    }
}
