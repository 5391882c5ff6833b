//! The EventBridge "CloudWatch Alarm State Change" event, and which release an alarm guards.
//!
//! `aws_lambda_events::cloudwatch_alarms` models the alarm *action* payload, not this event, and
//! types `period` as a `u16` (an 86400 s period fails to parse). This module reads the envelope
//! and the few fields it needs, and keeps `configuration` as JSON: metric, metric-math and
//! composite alarms have different shapes there, and none of them matter for a rollback.
//!
//! [`classify`] reads the event leniently from a `serde_json::Value` (reliability.md, invariant
//! 3): the alarm's name is what everything else hangs on, so an event without one cannot be
//! handled, while a well-formed event meant for someone else is simply not ours.
//!
//! [`Target`] is what an alarm is mapped to: a CodeDeploy deployment group or an ECS service,
//! named by the alarm's tags ([`target_from_tags`]) or by an operator's static mapping
//! ([`StaticTargets`]).

use std::collections::BTreeMap;
use std::fmt;

use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use serde::Deserialize;
use serde_json::Value;

use crate::text::quote;

/// `source` of CloudWatch's events.
pub const SOURCE: &str = "aws.cloudwatch";
/// `detail-type` of an alarm's state change.
pub const DETAIL_TYPE: &str = "CloudWatch Alarm State Change";
/// Default prefix of the tags that name an alarm's target.
pub const DEFAULT_TAG_PREFIX: &str = "deploy-guard:";

/// One alarm state change, as EventBridge delivers it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AlarmStateChange {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    #[serde(default)]
    pub account: String,
    #[serde(default)]
    pub region: String,
    /// RFC 3339, e.g. `2019-10-02T17:04:40Z`.
    #[serde(default)]
    pub time: String,
    #[serde(default)]
    pub resources: Vec<String>,
    pub detail: AlarmDetail,
}

/// `detail` of the event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmDetail {
    pub alarm_name: String,
    pub state: AlarmState,
    #[serde(default)]
    pub previous_state: Option<AlarmState>,
    /// Metric, metric-math or composite: kept as JSON, never typed (see the module doc).
    #[serde(default)]
    pub configuration: Option<Value>,
    /// Present when the alarm propagates its tags (a set of key-value pairs).
    #[serde(default)]
    pub alarm_tags: Option<Value>,
    /// `SUCCESS` when `alarmTags` is the alarm's complete tag set.
    #[serde(default)]
    pub alarm_tags_status: Option<String>,
}

/// `state` and `previousState`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AlarmState {
    pub value: String,
    #[serde(default)]
    pub reason: String,
    /// CloudWatch's own format (`2019-10-02T17:04:40.989+0000`); informational only.
    #[serde(default)]
    pub timestamp: Option<String>,
}

impl AlarmStateChange {
    /// The alarm's ARN: the event's first resource.
    pub fn alarm_arn(&self) -> Option<&str> {
        self.resources
            .iter()
            .map(String::as_str)
            .find(|r| r.starts_with("arn:") && r.contains(":alarm:"))
    }

    /// Kind of alarm, from its configuration: `composite`, `metric-math` or `metric`.
    pub fn alarm_kind(&self) -> &'static str {
        let Some(c) = &self.detail.configuration else {
            return "unknown";
        };
        if c.get("alarmRule").is_some() {
            return "composite";
        }
        match c.get("metrics").and_then(Value::as_array) {
            Some(m) if m.iter().any(|q| q.get("expression").is_some()) => "metric-math",
            Some(_) => "metric",
            None => "unknown",
        }
    }

    /// The propagated tags, when they are complete (`alarmTagsStatus` SUCCESS, or no status at
    /// all with tags present). Keys beginning with `aws:` are never propagated and never used.
    pub fn propagated_tags(&self) -> Option<BTreeMap<String, String>> {
        let tags = self.detail.alarm_tags.as_ref()?.as_object()?;
        if let Some(status) = &self.detail.alarm_tags_status {
            if status != "SUCCESS" {
                return None;
            }
        }
        Some(
            tags.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect(),
        )
    }

    /// The event's `time` in Unix milliseconds.
    pub fn time_ms(&self) -> Result<i64, String> {
        DateTime::from_str(&self.time, Format::DateTime)
            .ok()
            .and_then(|t| t.to_millis().ok())
            .ok_or_else(|| {
                format!(
                    "the event's time {} is not an RFC 3339 timestamp",
                    quote(&self.time, 40)
                )
            })
    }
}

/// What arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// An alarm state change (any state: [`check`] decides whether it is for us).
    Alarm(Box<AlarmStateChange>),
    /// A well-formed event that is not an alarm state change: not ours, nothing to do.
    NotOurs(String),
    /// Cannot be handled at all (no alarm name, not an event): a Lambda error.
    Invalid(String),
}

/// Classifies a raw event.
pub fn classify(event: &Value) -> Incoming {
    let Some(obj) = event.as_object() else {
        return Incoming::Invalid(format!(
            "the event is not a JSON object (found {}); expected an EventBridge \"{DETAIL_TYPE}\" event",
            kind(event)
        ));
    };
    let text = |k: &str| obj.get(k).and_then(Value::as_str);
    match (text("source"), text("detail-type")) {
        (Some(SOURCE), Some(DETAIL_TYPE)) => {}
        (Some(source), Some(dt)) => {
            return Incoming::NotOurs(format!(
                "not an alarm state change: source {} and detail-type {} (expected {SOURCE:?} and {DETAIL_TYPE:?})",
                quote(source, 60),
                quote(dt, 60)
            ))
        }
        _ => {
            let keys: Vec<String> = obj.keys().take(10).map(|k| quote(k, 40)).collect();
            return Incoming::Invalid(format!(
                "the event has no source and detail-type strings: not an EventBridge event; found keys [{}]",
                keys.join(", ")
            ));
        }
    }
    match obj.get("detail").and_then(|d| d.get("alarmName")) {
        Some(Value::String(name)) if valid_name(name) => {}
        Some(Value::String(name)) => {
            return Incoming::Invalid(format!(
                "detail.alarmName is not an alarm name: {}",
                quote(name, 60)
            ))
        }
        None | Some(Value::Null) => {
            return Incoming::Invalid("detail.alarmName is missing".to_string())
        }
        Some(other) => {
            return Incoming::Invalid(format!(
                "detail.alarmName must be a string, found {}",
                kind(other)
            ))
        }
    }
    match serde_json::from_value::<AlarmStateChange>(event.clone()) {
        Ok(e) => Incoming::Alarm(Box::new(e)),
        Err(e) => Incoming::Invalid(format!("the alarm state change does not parse: {e}")),
    }
}

fn valid_name(s: &str) -> bool {
    // CloudWatch: 1 to 255 characters, no control characters.
    !s.trim().is_empty() && s.chars().count() <= 255 && !s.chars().any(char::is_control)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where an event must come from, and how old it may be, to be acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub account: Option<String>,
    pub region: String,
    pub max_age_ms: i64,
}

/// `Ok` when the event is an ALARM from our account and region, recent enough; else the reason
/// to ignore it.
pub fn check(e: &AlarmStateChange, expect: &Expectation, now_ms: i64) -> Result<(), String> {
    if e.detail.state.value != "ALARM" {
        return Err(format!(
            "alarm {} went to {}, not ALARM: nothing to roll back",
            e.detail.alarm_name,
            quote(&e.detail.state.value, 30)
        ));
    }
    if let Some(account) = &expect.account {
        if &e.account != account {
            return Err(format!(
                "the event comes from account {}, not this function's account {account}",
                quote(&e.account, 20)
            ));
        }
    }
    if e.region != expect.region {
        return Err(format!(
            "the event comes from region {}, not this function's region {}",
            quote(&e.region, 30),
            expect.region
        ));
    }
    let at = e.time_ms()?;
    let age = now_ms - at;
    if age > expect.max_age_ms {
        return Err(format!(
            "the event is stale: sent at {} ({} s ago), older than the maximum age of {} s",
            e.time,
            age / 1000,
            expect.max_age_ms / 1000
        ));
    }
    Ok(())
}

/// What an alarm guards: a CodeDeploy deployment group, or an ECS service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    CodeDeploy {
        application: String,
        deployment_group: String,
    },
    Ecs {
        cluster: String,
        service: String,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::CodeDeploy {
                application,
                deployment_group,
            } => write!(f, "codedeploy:{application}/{deployment_group}"),
            Target::Ecs { cluster, service } => write!(f, "ecs:{cluster}/{service}"),
        }
    }
}

impl Target {
    /// `codedeploy:APPLICATION/GROUP` or `ecs:CLUSTER/SERVICE`.
    pub fn parse(s: &str) -> Result<Target, String> {
        let bad = || {
            format!(
                "{} is not codedeploy:APPLICATION/DEPLOYMENT_GROUP or ecs:CLUSTER/SERVICE",
                quote(s, 80)
            )
        };
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        let (a, b) = rest.split_once('/').ok_or_else(bad)?;
        if a.is_empty() || b.is_empty() || b.contains('/') {
            return Err(bad());
        }
        match kind {
            "codedeploy" => Ok(Target::CodeDeploy {
                application: a.to_string(),
                deployment_group: b.to_string(),
            }),
            "ecs" => Ok(Target::Ecs {
                cluster: a.to_string(),
                service: b.to_string(),
            }),
            _ => Err(bad()),
        }
    }
}

/// The tag keys that name a target, under a prefix (default `deploy-guard:`).
pub fn tag_keys(prefix: &str) -> [String; 4] {
    [
        format!("{prefix}codedeploy-application"),
        format!("{prefix}codedeploy-deployment-group"),
        format!("{prefix}ecs-cluster"),
        format!("{prefix}ecs-service"),
    ]
}

/// The target named by an alarm's tags: `Ok(None)` when no tag names one, an error when the tags
/// name half of one (an application without a group, a service without a cluster) or both kinds.
pub fn target_from_tags(
    tags: &BTreeMap<String, String>,
    prefix: &str,
) -> Result<Option<Target>, String> {
    let [app, group, cluster, service] = tag_keys(prefix);
    let get = |k: &str| tags.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let cd = match (get(&app), get(&group)) {
        (Some(a), Some(g)) => Some(Target::CodeDeploy {
            application: a.to_string(),
            deployment_group: g.to_string(),
        }),
        (None, None) => None,
        (Some(_), None) => return Err(format!("the alarm has the tag {app} but not {group}")),
        (None, Some(_)) => return Err(format!("the alarm has the tag {group} but not {app}")),
    };
    let ecs = match (get(&cluster), get(&service)) {
        (Some(c), Some(s)) => Some(Target::Ecs {
            cluster: c.to_string(),
            service: s.to_string(),
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(format!("the alarm has the tag {cluster} but not {service}"))
        }
        (None, Some(_)) => {
            return Err(format!("the alarm has the tag {service} but not {cluster}"))
        }
    };
    match (cd, ecs) {
        (Some(_), Some(_)) => Err(format!(
            "the alarm's tags name both a CodeDeploy deployment group and an ECS service; keep one ({app}/{group} for a service deployed by CodeDeploy)"
        )),
        (cd, ecs) => Ok(cd.or(ecs)),
    }
}

/// An operator's static mapping: alarm name (or a prefix ending in `*`) → target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticTargets {
    exact: BTreeMap<String, Target>,
    prefixes: Vec<(String, Target)>,
}

impl StaticTargets {
    /// From a JSON object such as `{"shop-5xx": "codedeploy:AppECS-shop/DgpECS-shop",
    /// "api-*": "ecs:prod/api"}`.
    pub fn parse(json: &str) -> Result<StaticTargets, String> {
        let raw: BTreeMap<String, String> = serde_json::from_str(json).map_err(|e| {
            format!("expected a JSON object of alarm name → \"codedeploy:APP/GROUP\" or \"ecs:CLUSTER/SERVICE\": {e}")
        })?;
        let mut out = StaticTargets::default();
        for (name, target) in raw {
            let t = Target::parse(&target).map_err(|e| format!("{}: {e}", quote(&name, 80)))?;
            match name.strip_suffix('*') {
                Some(prefix) => out.prefixes.push((prefix.to_string(), t)),
                None => {
                    out.exact.insert(name, t);
                }
            }
        }
        // Longest prefix first: the most specific entry wins.
        out.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Ok(out)
    }

    /// The target for `alarm`: an exact entry, else the longest matching prefix.
    pub fn lookup(&self, alarm: &str) -> Option<&Target> {
        self.exact.get(alarm).or_else(|| {
            self.prefixes
                .iter()
                .find(|(p, _)| alarm.starts_with(p.as_str()))
                .map(|(_, t)| t)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({"version": "0", "id": "e-1", "detail-type": DETAIL_TYPE, "source": SOURCE,
               "account": "123456789012", "time": "2019-10-02T17:04:40Z", "region": "us-east-1",
               "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:shop-5xx"],
               "detail": {"alarmName": "shop-5xx",
                          "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {"namespace": "AWS/ApplicationELB", "name": "HTTPCode_Target_5XX_Count", "dimensions": {}}, "period": 86400, "stat": "Sum"}, "returnData": true}]},
                          "previousState": {"value": "OK", "reason": "fine", "timestamp": "2019-10-02T17:00:00.000+0000"},
                          "state": {"value": "ALARM", "reason": "Threshold crossed", "reasonData": "{}", "timestamp": "2019-10-02T17:04:40.989+0000"}}})
    }

    fn alarm(v: &Value) -> AlarmStateChange {
        match classify(v) {
            Incoming::Alarm(a) => *a,
            other => panic!("expected an alarm, got {other:?}"),
        }
    }

    #[test]
    fn a_metric_alarm_with_a_day_long_period_parses() {
        let a = alarm(&event());
        assert_eq!(a.detail.alarm_name, "shop-5xx");
        assert_eq!(a.alarm_kind(), "metric");
        assert_eq!(
            a.alarm_arn(),
            Some("arn:aws:cloudwatch:us-east-1:123456789012:alarm:shop-5xx")
        );
        assert_eq!(a.time_ms(), Ok(1_570_035_880_000));
        assert_eq!(a.propagated_tags(), None);
    }

    #[test]
    fn composite_and_metric_math_alarms_parse() {
        let mut c = event();
        c["detail"]["configuration"] =
            json!({"alarmRule": "ALARM(a) OR ALARM(b)", "actionsSuppressor": null});
        assert_eq!(alarm(&c).alarm_kind(), "composite");
        let mut m = event();
        m["detail"]["configuration"] = json!({"metrics": [{"id": "e1", "expression": "m1/m2*100", "label": "rate", "returnData": true}, {"id": "m1", "metricStat": {"period": 60}}]});
        assert_eq!(alarm(&m).alarm_kind(), "metric-math");
    }

    /// Each malformed or foreign event and what it is classified as.
    #[test]
    fn classification_table() {
        let mut other_type = event();
        other_type["detail-type"] = json!("CloudWatch Alarm Configuration Change");
        let mut other_source = event();
        other_source["source"] = json!("aws.ecs");
        let mut no_name = event();
        no_name["detail"]
            .as_object_mut()
            .expect("detail")
            .remove("alarmName");
        let mut number_name = event();
        number_name["detail"]["alarmName"] = json!(12);
        let mut control = event();
        control["detail"]["alarmName"] = json!("a\u{7}b");
        let mut long = event();
        long["detail"]["alarmName"] = json!("x".repeat(100_000));
        let mut no_state = event();
        no_state["detail"]
            .as_object_mut()
            .expect("detail")
            .remove("state");
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!({}), "invalid", "no source and detail-type"),
            (json!("text"), "invalid", "not a JSON object"),
            (other_type, "not ours", "Configuration Change"),
            (other_source, "not ours", "aws.ecs"),
            (no_name, "invalid", "detail.alarmName is missing"),
            (number_name, "invalid", "must be a string, found a number"),
            (control, "invalid", "not an alarm name"),
            (long, "invalid", "100000 characters"),
            (no_state, "invalid", "missing field `state`"),
        ];
        for (ev, want, words) in cases {
            let (got, reason) = match classify(&ev) {
                Incoming::Alarm(_) => ("alarm", String::new()),
                Incoming::NotOurs(r) => ("not ours", r),
                Incoming::Invalid(r) => ("invalid", r),
            };
            assert_eq!(got, want, "{ev:.80}");
            assert!(reason.contains(words), "{words:?} not in {reason}");
        }
    }

    #[test]
    fn unknown_extra_fields_are_ignored() {
        let mut e = event();
        e["detail"]["unexpected"] = json!({"deep": ["\u{1}"]});
        e["extra"] = json!(1);
        alarm(&e);
    }

    /// Each reason to ignore an event, and the words of its reason.
    #[test]
    fn check_table() {
        let expect = Expectation {
            account: Some("123456789012".into()),
            region: "us-east-1".into(),
            max_age_ms: 600_000,
        };
        let sent = 1_570_035_880_000;
        let base = alarm(&event());
        let with = |f: &dyn Fn(&mut AlarmStateChange)| {
            let mut a = base.clone();
            f(&mut a);
            a
        };
        assert_eq!(check(&base, &expect, sent + 1_000), Ok(()));
        let cases: Vec<(AlarmStateChange, i64, &str)> = vec![
            (
                with(&|a| a.detail.state.value = "OK".into()),
                sent,
                "went to \"OK\", not ALARM",
            ),
            (
                with(&|a| a.detail.state.value = "INSUFFICIENT_DATA".into()),
                sent,
                "INSUFFICIENT_DATA",
            ),
            (
                with(&|a| a.account = "999999999999".into()),
                sent,
                "account \"999999999999\"",
            ),
            (
                with(&|a| a.region = "eu-west-1".into()),
                sent,
                "region \"eu-west-1\"",
            ),
            (base.clone(), sent + 601_000, "stale"),
            (
                with(&|a| a.time = "yesterday".into()),
                sent,
                "not an RFC 3339",
            ),
        ];
        for (a, now, words) in cases {
            let r = check(&a, &expect, now).expect_err(words);
            assert!(r.contains(words), "{words:?} not in {r}");
        }
    }

    #[test]
    fn propagated_tags_are_used_only_when_complete() {
        let mut e = event();
        e["detail"]["alarmTags"] = json!({"deploy-guard:ecs-cluster": "prod", "n": 1});
        e["detail"]["alarmTagsStatus"] = json!("SUCCESS");
        let tags = alarm(&e).propagated_tags().expect("tags");
        assert_eq!(tags.len(), 1, "non-string values are dropped");
        e["detail"]["alarmTagsStatus"] = json!("PARTIAL");
        assert_eq!(alarm(&e).propagated_tags(), None);
    }

    #[test]
    fn targets_from_tags() {
        let p = DEFAULT_TAG_PREFIX;
        let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (format!("{p}{k}"), v.to_string()))
                .collect()
        };
        assert_eq!(
            target_from_tags(
                &tags(&[
                    ("codedeploy-application", "app"),
                    ("codedeploy-deployment-group", "grp")
                ]),
                p
            ),
            Ok(Some(Target::CodeDeploy {
                application: "app".into(),
                deployment_group: "grp".into()
            }))
        );
        assert_eq!(
            target_from_tags(&tags(&[("ecs-cluster", "c"), ("ecs-service", "s")]), p),
            Ok(Some(Target::Ecs {
                cluster: "c".into(),
                service: "s".into()
            }))
        );
        assert_eq!(target_from_tags(&tags(&[("team", "x")]), p), Ok(None));
        let half = target_from_tags(&tags(&[("ecs-service", "s")]), p).expect_err("half");
        assert!(half.contains("deploy-guard:ecs-cluster"), "{half}");
        let both = target_from_tags(
            &tags(&[
                ("codedeploy-application", "a"),
                ("codedeploy-deployment-group", "g"),
                ("ecs-cluster", "c"),
                ("ecs-service", "s"),
            ]),
            p,
        )
        .expect_err("both");
        assert!(both.contains("both"), "{both}");
    }

    #[test]
    fn static_targets_exact_then_longest_prefix() {
        let m = StaticTargets::parse(
            r#"{"shop-5xx": "codedeploy:app/grp", "shop-*": "ecs:c/shop", "shop-api-*": "ecs:c/api"}"#,
        )
        .expect("valid");
        assert_eq!(
            m.lookup("shop-5xx").map(ToString::to_string),
            Some("codedeploy:app/grp".into())
        );
        assert_eq!(
            m.lookup("shop-api-latency").map(ToString::to_string),
            Some("ecs:c/api".into())
        );
        assert_eq!(
            m.lookup("shop-cpu").map(ToString::to_string),
            Some("ecs:c/shop".into())
        );
        assert_eq!(m.lookup("other"), None);
        for bad in [
            r#"{"a": "lambda:x/y"}"#,
            r#"{"a": "ecs:only-cluster"}"#,
            r#"{"a": "ecs:/s"}"#,
            "[1]",
        ] {
            assert!(StaticTargets::parse(bad).is_err(), "{bad}");
        }
    }
}
