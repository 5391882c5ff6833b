//! The bake timer's parameters, its continuation token and its pure decision. No I/O here;
//! table-tested.
//!
//! The token is small, versioned JSON carried by CodePipeline from one job to the next:
//! `{"v":1,"start":ms,"end":ms,"deadline":ms,"polls":n,"alarms":"<digest>","sum":"<digest>"}`.
//! `start`/`end` bound the bake, `deadline` is when the token stops being honoured (the end
//! plus a grace period), `alarms` is a digest of the watched alarm set, and `sum` a checksum
//! over all of it and the action's configuration, so an edited token or one carried into a
//! changed configuration is refused. Every way a token can be wrong fails the job with a
//! reason: a bad token never loops.

use std::fmt::Write as _;

use deploy_guard::pipeline::CONTINUATION_TOKEN_MAX;
use deploy_guard::text::quote;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The token format's version.
pub const TOKEN_VERSION: u32 = 1;
/// How long after the bake's end a token is still honoured.
pub const GRACE_MS: u64 = 30 * 60 * 1000;
/// Most alarms one bake watches.
pub const MAX_ALARMS: usize = 100;

// ---------------------------------------------------------------------------------------------
// UserParameters

/// The action's `UserParameters` (JSON, at most 1000 characters).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The bake period in minutes (1 to 1440). Exactly one of the two durations.
    pub duration_minutes: Option<u32>,
    /// The bake period in seconds (1 to 86400).
    pub duration_seconds: Option<u32>,
    /// Which alarms to watch.
    #[serde(default)]
    pub alarms: Selector,
    /// An alarm in INSUFFICIENT_DATA: `fail` (default) or `ignore`.
    pub insufficient_data: Option<OnProblem>,
    /// A named alarm that does not exist, or a prefix/tag that selects none: `fail` (default) or
    /// `ignore`.
    pub missing_alarm: Option<OnProblem>,
    /// Most polls before the bake is given up (default: one per 10 s of bake, plus 10).
    pub max_polls: Option<u32>,
}

/// `names` are watched as listed; `prefix` and `tag` select further alarms (both must hold
/// when both are given).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub tag: Option<TagFilter>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TagFilter {
    pub key: String,
    /// Any value when absent.
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnProblem {
    Fail,
    Ignore,
}

/// `Params`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub duration_ms: u64,
    pub selector: Selector,
    pub insufficient_data: OnProblem,
    pub missing_alarm: OnProblem,
    pub max_polls: u32,
}

impl Params {
    /// Checks the values; errors name the field as `UserParameters.<field>`.
    pub fn compile(self) -> Result<Policy, String> {
        let duration_ms = match (self.duration_minutes, self.duration_seconds) {
            (Some(_), Some(_)) => {
                return Err("UserParameters.duration_minutes: give duration_minutes or duration_seconds, not both".into())
            }
            (None, None) => {
                return Err("UserParameters.duration_minutes: the bake period is required (duration_minutes, or duration_seconds)".into())
            }
            (Some(m), None) if (1..=1440).contains(&m) => u64::from(m) * 60_000,
            (Some(m), None) => {
                return Err(format!("UserParameters.duration_minutes: must be 1 to 1440, found {m}"))
            }
            (None, Some(s)) if (1..=86_400).contains(&s) => u64::from(s) * 1000,
            (None, Some(s)) => {
                return Err(format!("UserParameters.duration_seconds: must be 1 to 86400, found {s}"))
            }
        };
        let sel = &self.alarms;
        if sel.names.is_empty() && sel.prefix.is_none() && sel.tag.is_none() {
            return Err(
                "UserParameters.alarms: name the alarms to watch (names, prefix or tag)".into(),
            );
        }
        if sel.names.len() > MAX_ALARMS {
            return Err(format!(
                "UserParameters.alarms.names: at most {MAX_ALARMS} alarms, found {}",
                sel.names.len()
            ));
        }
        for (i, n) in sel.names.iter().enumerate() {
            if n.trim().is_empty() || n.len() > 255 || n.chars().any(char::is_control) {
                return Err(format!(
                    "UserParameters.alarms.names[{i}]: not an alarm name: {}",
                    quote(n, 60)
                ));
            }
        }
        if let Some(p) = &sel.prefix {
            if p.is_empty() || p.len() > 255 {
                return Err("UserParameters.alarms.prefix: must be 1 to 255 characters".into());
            }
        }
        if let Some(t) = &sel.tag {
            if t.key.is_empty() || t.key.len() > 128 {
                return Err("UserParameters.alarms.tag.key: must be 1 to 128 characters".into());
            }
        }
        let default_polls = u32::try_from(duration_ms / 10_000 + 10).unwrap_or(u32::MAX);
        let max_polls = self.max_polls.unwrap_or(default_polls);
        if !(1..=100_000).contains(&max_polls) {
            return Err(format!(
                "UserParameters.max_polls: must be 1 to 100000, found {max_polls}"
            ));
        }
        Ok(Policy {
            duration_ms,
            selector: self.alarms,
            insufficient_data: self.insufficient_data.unwrap_or(OnProblem::Fail),
            missing_alarm: self.missing_alarm.unwrap_or(OnProblem::Fail),
            max_polls,
        })
    }
}

impl Policy {
    /// A digest of everything that shapes the bake, folded into the token's checksum.
    pub fn digest(&self) -> String {
        let text = format!(
            "{}|{}|{:?}|{:?}|{}",
            self.duration_ms,
            serde_json::to_string(&self.selector).unwrap_or_default(),
            self.insufficient_data,
            self.missing_alarm,
            self.max_polls
        );
        hex16(text.as_bytes())
    }
}

fn hex16(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(16);
    for b in &d[..8] {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A digest of the watched alarm set (sorted names).
pub fn alarm_set_digest(names: &[String]) -> String {
    let mut sorted: Vec<&str> = names.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    hex16(sorted.join("\n").as_bytes())
}

// ---------------------------------------------------------------------------------------------
// The continuation token

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    pub v: u32,
    /// Unix ms when the bake started.
    pub start: u64,
    /// Unix ms when the bake ends.
    pub end: u64,
    /// Unix ms after which the token is refused.
    pub deadline: u64,
    /// Polls made so far.
    pub polls: u32,
    /// Digest of the watched alarm set.
    pub alarms: String,
    /// Checksum over the above and the configuration.
    pub sum: String,
}

impl Token {
    /// The first token of a bake starting `now`.
    pub fn first(policy: &Policy, now: u64, alarms: String) -> Token {
        let end = now + policy.duration_ms;
        let mut t = Token {
            v: TOKEN_VERSION,
            start: now,
            end,
            deadline: end + GRACE_MS,
            polls: 1,
            alarms,
            sum: String::new(),
        };
        t.sum = t.checksum(policy);
        t
    }

    /// The token for the next poll.
    pub fn next(&self, policy: &Policy) -> Token {
        let mut t = Token {
            polls: self.polls + 1,
            sum: String::new(),
            ..self.clone()
        };
        t.sum = t.checksum(policy);
        t
    }

    fn checksum(&self, policy: &Policy) -> String {
        hex16(
            format!(
                "deploy-guard bake|{}|{}|{}|{}|{}|{}|{}",
                self.v,
                self.start,
                self.end,
                self.deadline,
                self.polls,
                self.alarms,
                policy.digest()
            )
            .as_bytes(),
        )
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads and checks a token at `now`. Every error says what was wrong with it.
    pub fn verify(raw: &str, policy: &Policy, now: u64) -> Result<Token, String> {
        let n = raw.chars().count();
        if n > CONTINUATION_TOKEN_MAX {
            return Err(format!(
                "the continuation token is {n} characters long, more than the {CONTINUATION_TOKEN_MAX} CodePipeline carries; it is not one of ours"
            ));
        }
        let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| {
            format!(
                "the continuation token is not JSON ({e}): {}",
                quote(raw, 60)
            )
        })?;
        match value.get("v") {
            Some(v) if v.as_u64() == Some(u64::from(TOKEN_VERSION)) => {}
            Some(v) => {
                return Err(format!(
                    "the continuation token has version {v}, this bake timer reads version {TOKEN_VERSION}; restart the stage to begin a new bake"
                ))
            }
            None => return Err("the continuation token has no version (\"v\"); it is not one of ours".into()),
        }
        let t: Token = serde_json::from_value(value)
            .map_err(|e| format!("the continuation token does not parse: {e}"))?;
        if t.checksum(policy) != t.sum {
            return Err("the continuation token's checksum does not match: it was altered, or the action's UserParameters changed during the bake; restart the stage".into());
        }
        if t.end <= t.start || t.deadline < t.end {
            return Err(
                "the continuation token's times are inconsistent (end before start)".into(),
            );
        }
        if t.start > now + 5 * 60 * 1000 {
            return Err(format!(
                "the continuation token's bake starts {} in the future; the clock or the token is wrong",
                human_ms(t.start - now)
            ));
        }
        if now > t.deadline {
            return Err(format!(
                "the continuation token's deadline passed {} ago (the bake ended at {}); a late or replayed job cannot vouch for the bake: restart the stage",
                human_ms(now - t.deadline),
                iso(t.end)
            ));
        }
        if t.polls >= policy.max_polls {
            return Err(format!(
                "the bake has been polled {} times, the limit is {}: CodePipeline re-invoked faster than expected or the token was replayed",
                t.polls, policy.max_polls
            ));
        }
        Ok(t)
    }

    /// Percent of the bake done at `now`.
    pub fn percent(&self, now: u64) -> u8 {
        let total = self.end.saturating_sub(self.start).max(1);
        let done = now.saturating_sub(self.start).min(total);
        ((done * 100) / total) as u8
    }
}

/// `1 h 2 min`, `3 min 4 s`, `5 s`.
pub fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 if s.is_multiple_of(60) => format!("{} min", s / 60),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ if s % 3600 / 60 == 0 => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// Unix ms as `2026-05-28T12:00:00Z`.
pub fn iso(ms: u64) -> String {
    aws_smithy_types::DateTime::from_secs((ms / 1000) as i64)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| format!("{ms} ms"))
        .replace(".000Z", "Z")
}

// ---------------------------------------------------------------------------------------------
// Facts and the decision

/// One watched alarm as read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmNow {
    pub name: String,
    /// OK, ALARM or INSUFFICIENT_DATA.
    pub state: String,
    /// Unix ms of its last state change.
    pub since: Option<u64>,
    pub reason: String,
}

/// A transition to ALARM seen in the history since the bake started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    pub name: String,
    pub at: u64,
    pub summary: String,
}

/// What one poll found wrong (empty: clean so far).
pub fn judge(alarms: &[AlarmNow], breaches: &[Breach], policy: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    for a in alarms {
        let since = a
            .since
            .map(|s| format!(" since {}", iso(s)))
            .unwrap_or_default();
        let why = if a.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", quote(&a.reason, 160))
        };
        match a.state.as_str() {
            "ALARM" => out.push(format!("alarm {} is in ALARM{since}{why}", a.name)),
            "INSUFFICIENT_DATA" if policy.insufficient_data == OnProblem::Fail => out.push(format!(
                "alarm {} has INSUFFICIENT_DATA{since}: nothing proves the release healthy (set insufficient_data to ignore to accept it)",
                a.name
            )),
            _ => {}
        }
    }
    for b in breaches {
        let now = alarms
            .iter()
            .find(|a| a.name == b.name)
            .map(|a| a.state.as_str())
            .unwrap_or("unknown");
        if now == "ALARM" {
            continue; // already reported, with its current reason
        }
        out.push(format!(
            "alarm {} went to ALARM at {} during the bake (now {now}){}",
            b.name,
            iso(b.at),
            if b.summary.is_empty() {
                String::new()
            } else {
                format!(": {}", quote(&b.summary, 120))
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_780_000_000_000;

    fn policy(raw: &str) -> Policy {
        deploy_guard::pipeline::user_parameters::<Params>(Some(raw))
            .expect("parses")
            .compile()
            .expect("compiles")
    }

    fn standard() -> Policy {
        policy(r#"{"duration_minutes": 10, "alarms": {"names": ["a", "b"]}}"#)
    }

    #[test]
    fn params_errors_name_the_field() {
        let cases = [
            (
                r#"{"alarms": {"names": ["a"]}}"#,
                "UserParameters.duration_minutes: the bake period is required",
            ),
            (
                r#"{"duration_minutes": 1, "duration_seconds": 5, "alarms": {"names": ["a"]}}"#,
                "not both",
            ),
            (
                r#"{"duration_minutes": 0, "alarms": {"names": ["a"]}}"#,
                "UserParameters.duration_minutes: must be 1 to 1440",
            ),
            (
                r#"{"duration_seconds": 90000, "alarms": {"names": ["a"]}}"#,
                "UserParameters.duration_seconds",
            ),
            (
                r#"{"duration_minutes": 5}"#,
                "UserParameters.alarms: name the alarms",
            ),
            (
                r#"{"duration_minutes": 5, "alarms": {"names": [""]}}"#,
                "UserParameters.alarms.names[0]",
            ),
            (
                r#"{"duration_minutes": 5, "alarms": {"tag": {"key": ""}}}"#,
                "UserParameters.alarms.tag.key",
            ),
            (
                r#"{"duration_minutes": 5, "alarms": {"prefix": "x"}, "max_polls": 0}"#,
                "UserParameters.max_polls",
            ),
        ];
        for (raw, words) in cases {
            let e = deploy_guard::pipeline::user_parameters::<Params>(Some(raw))
                .and_then(Params::compile)
                .expect_err(raw);
            assert!(e.contains(words), "{raw}: expected {words:?} in {e}");
        }
        for (raw, words) in [
            (
                r#"{"duration_minutes": 5, "alarms": {"names": ["a"], "regex": "x"}}"#,
                "UserParameters.alarms.regex: unknown field `regex`",
            ),
            (
                r#"{"duration_minutes": "5"}"#,
                "UserParameters.duration_minutes: invalid type",
            ),
            (
                r#"{"duration_minutes": 5, "alarms": {"prefix": "a"}, "insufficient_data": "wait"}"#,
                "UserParameters.insufficient_data",
            ),
        ] {
            let e = deploy_guard::pipeline::user_parameters::<Params>(Some(raw)).expect_err(raw);
            assert!(e.contains(words), "{raw}: expected {words:?} in {e}");
        }
        let p = policy(r#"{"duration_seconds": 600, "alarms": {"prefix": "shop-"}}"#);
        assert_eq!((p.duration_ms, p.max_polls), (600_000, 70));
        assert_eq!(p.insufficient_data, OnProblem::Fail);
        assert_eq!(p.missing_alarm, OnProblem::Fail);
    }

    #[test]
    fn a_token_round_trips_and_counts_its_polls() {
        let p = standard();
        let t = Token::first(&p, NOW, alarm_set_digest(&["b".into(), "a".into()]));
        assert_eq!(t.alarms, alarm_set_digest(&["a".into(), "b".into()]));
        let raw = t.encode();
        assert!(raw.len() < 200, "{raw}");
        let back = Token::verify(&raw, &p, NOW + 30_000).expect("valid");
        assert_eq!(back, t);
        let n = back.next(&p);
        assert_eq!(n.polls, 2);
        assert_eq!(
            Token::verify(&n.encode(), &p, NOW + 60_000)
                .expect("valid")
                .polls,
            2
        );
        assert_eq!(t.percent(NOW + 300_000), 50);
        assert_eq!(t.percent(NOW + 3_000_000), 100);
    }

    /// Every way a token can be wrong, and the words of the reason.
    #[test]
    fn bad_tokens_table() {
        let p = standard();
        let good = Token::first(&p, NOW, "abc".into());
        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = serde_json::to_value(&good).expect("json");
            f(&mut v);
            v.to_string()
        };
        let mut exhausted = good.clone();
        for _ in 0..p.max_polls {
            exhausted = exhausted.next(&p);
        }
        let other = policy(r#"{"duration_minutes": 10, "alarms": {"names": ["a", "c"]}}"#);
        let cases: Vec<(String, &Policy, u64, &str)> = vec![
            ("not json".into(), &p, NOW, "is not JSON"),
            ("x".repeat(3000), &p, NOW, "more than the 2048"),
            (edit(&|v| v["v"] = 2.into()), &p, NOW, "has version 2"),
            (r#"{"start": 1}"#.into(), &p, NOW, "has no version"),
            (
                edit(&|v| {
                    v.as_object_mut().map(|o| o.remove("polls"));
                }),
                &p,
                NOW,
                "does not parse: missing field `polls`",
            ),
            (
                edit(&|v| v["start"] = (NOW + 500_000).into()),
                &p,
                NOW,
                "checksum does not match",
            ),
            (
                edit(&|v| v["polls"] = 0.into()),
                &p,
                NOW,
                "checksum does not match",
            ),
            (good.encode(), &other, NOW, "checksum does not match"),
            (good.encode(), &p, good.deadline + 1, "deadline passed"),
            (
                exhausted.encode(),
                &p,
                NOW,
                "polled 71 times, the limit is 70",
            ),
        ];
        for (raw, policy, now, words) in cases {
            let e = Token::verify(&raw, policy, now).expect_err(&raw);
            assert!(e.contains(words), "expected {words:?} in {e}");
        }
    }

    #[test]
    fn judging_a_poll() {
        let p = standard();
        let ok = |n: &str| AlarmNow {
            name: n.into(),
            state: "OK".into(),
            since: None,
            reason: String::new(),
        };
        assert!(judge(&[ok("a"), ok("b")], &[], &p).is_empty());
        let alarm = AlarmNow {
            name: "a".into(),
            state: "ALARM".into(),
            since: Some(NOW),
            reason: "5xx > 5".into(),
        };
        let r = judge(
            &[alarm.clone(), ok("b")],
            &[Breach {
                name: "a".into(),
                at: NOW,
                summary: String::new(),
            }],
            &p,
        );
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].contains("alarm a is in ALARM since 2026-05-28T") && r[0].contains("5xx > 5"),
            "{r:?}"
        );
        let flapped = judge(
            &[ok("a"), ok("b")],
            &[Breach {
                name: "b".into(),
                at: NOW,
                summary: "Alarm updated from OK to ALARM".into(),
            }],
            &p,
        );
        assert!(
            flapped[0].contains("alarm b went to ALARM at 2026-05-28T")
                && flapped[0].contains("(now OK)"),
            "{flapped:?}"
        );
        let insufficient = AlarmNow {
            state: "INSUFFICIENT_DATA".into(),
            ..ok("a")
        };
        assert!(
            judge(std::slice::from_ref(&insufficient), &[], &p)[0].contains("INSUFFICIENT_DATA")
        );
        let lenient = policy(
            r#"{"duration_minutes": 10, "alarms": {"names": ["a"]}, "insufficient_data": "ignore"}"#,
        );
        assert!(judge(&[insufficient], &[], &lenient).is_empty());
    }

    /// The sample events' UserParameters are valid; the bad token sample is refused.
    #[test]
    fn sample_events() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/bake-timer");
        for name in [
            "job-first-poll.json",
            "job-continuation.json",
            "bad-token-version.json",
        ] {
            let event: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join(name)).expect("read"))
                    .expect("json");
            let data = &event["CodePipeline.job"]["data"];
            let raw = data["actionConfiguration"]["configuration"]["UserParameters"].as_str();
            let p = deploy_guard::pipeline::user_parameters::<Params>(raw)
                .and_then(Params::compile)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            if name.starts_with("bad-") {
                let token = data["continuationToken"].as_str().expect("token");
                let e = Token::verify(token, &p, NOW).expect_err(name);
                assert!(e.contains("has version 9"), "{e}");
            }
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_ms(5_000), "5 s");
        assert_eq!(human_ms(180_000), "3 min");
        assert_eq!(human_ms(185_000), "3 min 5 s");
        assert_eq!(human_ms(3_600_000), "1 h");
        assert_eq!(human_ms(3_720_000), "1 h 2 min");
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
    }
}
