//! One poll of the bake timer: read the job and its continuation token, resolve the watched
//! alarms, read their states and their history since the bake started, decide, and report
//! exactly once: a continuation (progress in `executionDetails`), the final success, or the
//! failure naming the alarm and when.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::types::{AlarmType, HistoryItemType, ScanBy};
use aws_smithy_types::DateTime;
use deploy_guard::aws::{describe_sdk_error, error_code};
use deploy_guard::budget::Budget;
use deploy_guard::config::{AwsSettings, ConfigError};
use deploy_guard::pipeline::{self, user_parameters, FailureKind, Job, Verdict};
use deploy_guard::text::quote;
use futures::StreamExt;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::{json, Value};

use crate::bake::{
    alarm_set_digest, human_ms, iso, judge, AlarmNow, Breach, OnProblem, Params, Policy, Token,
    MAX_ALARMS,
};
use crate::config::BakeConfig;

/// Everything built once per process.
pub struct App {
    pub codepipeline: aws_sdk_codepipeline::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub aws: AwsSettings,
    pub config: Result<BakeConfig, ConfigError>,
}

/// Most alarms whose tags are read to apply a tag filter.
const MAX_TAG_CANDIDATES: usize = 200;
/// Most pages of history read per alarm and poll.
const MAX_HISTORY_PAGES: usize = 10;

/// The verdict and what explains it.
#[derive(Debug)]
struct Evaluation {
    verdict: Verdict,
    alarms: Vec<String>,
    token: Option<Token>,
}

impl From<Verdict> for Evaluation {
    fn from(verdict: Verdict) -> Self {
        Self {
            verdict,
            alarms: vec![],
            token: None,
        }
    }
}

fn failed(kind: FailureKind, reason: impl Into<String>) -> Evaluation {
    Evaluation::from(Verdict::failed(kind, reason))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The Lambda handler.
pub async fn handle(app: &App, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, ctx) = event.into_parts();
    let reserve = app
        .config
        .as_ref()
        .map(|c| c.report_reserve)
        .unwrap_or(Duration::from_secs(3));
    let budget = Budget::from_deadline(ctx.deadline(), reserve);
    let work = |job: Job| async move {
        let ev = evaluate(app, &job).await;
        let percent = match &ev.verdict {
            Verdict::InProgress { percent, .. } => Some(*percent),
            Verdict::Succeeded { .. } => Some(100),
            Verdict::Failed { .. } => None,
        };
        let fields = json!({
            "percent": percent,
            "alarms": ev.alarms,
            "bake_started": ev.token.as_ref().map(|t| iso(t.start)),
            "bake_ends": ev.token.as_ref().map(|t| iso(t.end)),
            "polls": ev.token.as_ref().map(|t| t.polls),
        });
        (ev.verdict, fields.as_object().cloned().unwrap_or_default())
    };
    pipeline::handle_job(
        "bake-timer",
        &app.codepipeline,
        &app.aws,
        &payload,
        &budget,
        work,
    )
    .await
    .map_err(Error::from)
}

async fn evaluate(app: &App, job: &Job) -> Evaluation {
    let config = match &app.config {
        Ok(c) => c,
        Err(e) => return failed(FailureKind::ConfigurationError, e.to_string()),
    };
    let policy =
        match user_parameters::<Params>(job.data.user_parameters()).and_then(Params::compile) {
            Ok(p) => p,
            Err(e) => return failed(FailureKind::ConfigurationError, e),
        };
    let now = now_ms();
    let carried = match job.data.continuation_token.as_deref() {
        None | Some("") => None,
        Some(raw) => match Token::verify(raw, &policy, now) {
            Ok(t) => Some(t),
            Err(e) => return failed(FailureKind::JobFailed, e),
        },
    };
    let watched = match resolve(app, &policy).await {
        Ok(w) => w,
        Err(e) => return e,
    };
    let names: Vec<String> = watched.alarms.iter().map(|a| a.name.clone()).collect();
    let digest = alarm_set_digest(&names);
    let token = match carried {
        None => Token::first(&policy, now, digest),
        Some(t) if t.alarms != digest => {
            return Evaluation {
                alarms: names.clone(),
                ..failed(
                    FailureKind::JobFailed,
                    format!(
                        "the watched alarms changed since the bake started at {} (an alarm was created, deleted or retagged): now {} alarm(s): {} (restart the stage to bake with the new set)",
                        iso(t.start),
                        names.len(),
                        names.join(", ")
                    ),
                )
            }
        }
        // This poll's token: the carried one, counted.
        Some(t) => t.next(&policy),
    };
    let breaches = if job
        .data
        .continuation_token
        .as_deref()
        .is_some_and(|t| !t.is_empty())
    {
        match history(app, config, &names, token.start, now).await {
            Ok(b) => b,
            Err(e) => {
                return Evaluation {
                    alarms: names,
                    token: Some(token),
                    ..e
                }
            }
        }
    } else {
        vec![]
    };
    let problems = judge(&watched.alarms, &breaches, &policy);
    let mut notes = watched.notes;
    let shown = list(&names, 20);
    let ev = |verdict| Evaluation {
        verdict,
        alarms: names.clone(),
        token: Some(token.clone()),
    };
    if !problems.is_empty() {
        let mut reasons = vec![format!(
            "bake failed after {} of {}",
            human_ms(now.saturating_sub(token.start)),
            human_ms(token.end - token.start)
        )];
        reasons.extend(problems);
        return ev(Verdict::Failed {
            kind: FailureKind::JobFailed,
            reasons,
        });
    }
    if now >= token.end {
        let mut summary = format!(
            "bake passed: {} watched through the {} bake (from {} to {}, {} polls), none went to ALARM: {shown}",
            plural(names.len(), "alarm"),
            human_ms(token.end - token.start),
            iso(token.start),
            iso(now),
            token.polls
        );
        notes.dedup();
        for n in &notes {
            summary.push_str(&format!("; note: {n}"));
        }
        let output_variables = BTreeMap::from([
            ("BakeStartedAt".to_string(), iso(token.start)),
            ("BakeEndedAt".to_string(), iso(now)),
            ("AlarmsWatched".to_string(), names.len().to_string()),
            ("Polls".to_string(), token.polls.to_string()),
        ]);
        return ev(Verdict::Succeeded {
            summary,
            output_variables,
        });
    }
    let next = token;
    let percent = next.percent(now);
    let mut summary = format!(
        "baking {percent}% ({} of {}, until {}): {} OK so far: {shown}",
        human_ms(now.saturating_sub(next.start)),
        human_ms(next.end - next.start),
        iso(next.end),
        plural(names.len(), "alarm")
    );
    for n in &notes {
        summary.push_str(&format!("; note: {n}"));
    }
    Evaluation {
        verdict: Verdict::InProgress {
            summary,
            percent,
            continuation_token: next.encode(),
        },
        alarms: names,
        token: Some(next),
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn list(items: &[String], max: usize) -> String {
    let mut out: Vec<String> = items.iter().take(max).cloned().collect();
    if items.len() > max {
        out.push(format!("… {} more", items.len() - max));
    }
    out.join(", ")
}

/// The watched alarms, as read now, and notes about what was ignored.
struct Watched {
    alarms: Vec<AlarmNow>,
    notes: Vec<String>,
}

fn aws_failure<E, R>(
    what: &str,
    e: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> Evaluation
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let kind = FailureKind::of_aws_code(error_code(e));
    let hint = if kind == FailureKind::PermissionError {
        format!(" (the function's role needs cloudwatch:{what})")
    } else {
        String::new()
    };
    failed(
        kind,
        format!(
            "could not read the alarms: {what} failed: {}{hint}",
            describe_sdk_error(e)
        ),
    )
}

fn alarm_now(
    name: Option<&str>,
    state: Option<&str>,
    since: Option<&DateTime>,
    reason: Option<&str>,
) -> AlarmNow {
    AlarmNow {
        name: name.unwrap_or_default().to_string(),
        state: state.unwrap_or("INSUFFICIENT_DATA").to_string(),
        since: since
            .and_then(|d| d.to_millis().ok())
            .map(|m| m.max(0) as u64),
        reason: reason.unwrap_or_default().to_string(),
    }
}

/// One DescribeAlarms listing (metric and composite alarms), all pages, with ARNs.
async fn describe(
    app: &App,
    names: Option<Vec<String>>,
    prefix: Option<&str>,
    cap: usize,
) -> Result<Vec<(AlarmNow, String)>, Evaluation> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = app
            .cloudwatch
            .describe_alarms()
            .set_alarm_names(names.clone())
            .set_alarm_name_prefix(prefix.map(str::to_string))
            .alarm_types(AlarmType::MetricAlarm)
            .alarm_types(AlarmType::CompositeAlarm)
            .max_records(100)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| aws_failure("DescribeAlarms", &e))?;
        for a in page.metric_alarms() {
            out.push((
                alarm_now(
                    a.alarm_name(),
                    a.state_value().map(|s| s.as_str()),
                    a.state_updated_timestamp(),
                    a.state_reason(),
                ),
                a.alarm_arn().unwrap_or_default().to_string(),
            ));
        }
        for a in page.composite_alarms() {
            out.push((
                alarm_now(
                    a.alarm_name(),
                    a.state_value().map(|s| s.as_str()),
                    a.state_updated_timestamp(),
                    a.state_reason(),
                ),
                a.alarm_arn().unwrap_or_default().to_string(),
            ));
        }
        if out.len() > cap {
            return Err(failed(
                FailureKind::ConfigurationError,
                format!("the alarm selection matches more than {cap} alarms; narrow it (a longer prefix, or names)"),
            ));
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

async fn resolve(app: &App, policy: &Policy) -> Result<Watched, Evaluation> {
    let sel = &policy.selector;
    let mut alarms: Vec<AlarmNow> = Vec::new();
    let mut notes = Vec::new();
    let mut missing = Vec::new();
    if !sel.names.is_empty() {
        let found = describe(app, Some(sel.names.clone()), None, MAX_ALARMS).await?;
        for n in &sel.names {
            if !found.iter().any(|(a, _)| &a.name == n) {
                missing.push(format!("alarm {} does not exist", quote(n, 80)));
            }
        }
        alarms.extend(found.into_iter().map(|(a, _)| a));
    }
    if sel.prefix.is_some() || sel.tag.is_some() {
        let cap = if sel.tag.is_some() {
            MAX_TAG_CANDIDATES
        } else {
            MAX_ALARMS
        };
        let mut found = describe(app, None, sel.prefix.as_deref(), cap).await?;
        if let Some(tag) = &sel.tag {
            let concurrency = app
                .config
                .as_ref()
                .map(|c| c.history_concurrency)
                .unwrap_or(4);
            let tagged: Vec<Result<bool, Evaluation>> = futures::stream::iter(found.iter())
                .map(|(_, arn)| async move {
                    let out = app
                        .cloudwatch
                        .list_tags_for_resource()
                        .resource_arn(arn)
                        .send()
                        .await
                        .map_err(|e| aws_failure("ListTagsForResource", &e))?;
                    Ok(out.tags().iter().any(|t| {
                        t.key() == Some(tag.key.as_str())
                            && tag.value.as_deref().is_none_or(|v| t.value() == Some(v))
                    }))
                })
                .buffered(concurrency)
                .collect()
                .await;
            let mut keep = Vec::new();
            for (alarm, matched) in found.into_iter().zip(tagged) {
                if matched? {
                    keep.push(alarm);
                }
            }
            found = keep;
        }
        if found.is_empty() {
            let mut what = Vec::new();
            if let Some(p) = &sel.prefix {
                what.push(format!("name prefix {}", quote(p, 80)));
            }
            if let Some(t) = &sel.tag {
                what.push(match &t.value {
                    Some(v) => format!("tag {}={}", quote(&t.key, 60), quote(v, 60)),
                    None => format!("tag {}", quote(&t.key, 60)),
                });
            }
            missing.push(format!("no alarm has the {}", what.join(" and the ")));
        }
        for (a, _) in found {
            if !alarms.iter().any(|x| x.name == a.name) {
                alarms.push(a);
            }
        }
    }
    if !missing.is_empty() {
        match policy.missing_alarm {
            OnProblem::Fail => {
                let mut reasons = missing;
                reasons.push(
                    "fix the action's UserParameters.alarms, or set missing_alarm to ignore".into(),
                );
                return Err(Evaluation::from(Verdict::Failed {
                    kind: FailureKind::ConfigurationError,
                    reasons,
                }));
            }
            OnProblem::Ignore => {
                notes.extend(missing.into_iter().map(|m| format!("{m} (ignored)")))
            }
        }
    }
    if alarms.is_empty() {
        return Err(failed(
            FailureKind::ConfigurationError,
            "no alarm to watch: a bake that watches nothing proves nothing; fix UserParameters.alarms",
        ));
    }
    if alarms.len() > MAX_ALARMS {
        return Err(failed(
            FailureKind::ConfigurationError,
            format!("{} alarms selected, at most {MAX_ALARMS} can be watched; narrow UserParameters.alarms", alarms.len()),
        ));
    }
    alarms.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Watched { alarms, notes })
}

/// Transitions to ALARM since `start`, per alarm (the first one each).
async fn history(
    app: &App,
    config: &BakeConfig,
    names: &[String],
    start: u64,
    now: u64,
) -> Result<Vec<Breach>, Evaluation> {
    let from = DateTime::from_millis(start.saturating_sub(1000) as i64);
    let to = DateTime::from_millis(now as i64 + 1000);
    let results: Vec<Result<Option<Breach>, Evaluation>> = futures::stream::iter(names.iter())
        .map(|name| async move {
            let mut token: Option<String> = None;
            for _ in 0..MAX_HISTORY_PAGES {
                let page = app
                    .cloudwatch
                    .describe_alarm_history()
                    .alarm_name(name)
                    .alarm_types(AlarmType::MetricAlarm)
                    .alarm_types(AlarmType::CompositeAlarm)
                    .history_item_type(HistoryItemType::StateUpdate)
                    .start_date(from)
                    .end_date(to)
                    .scan_by(ScanBy::TimestampAscending)
                    .max_records(100)
                    .set_next_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| aws_failure("DescribeAlarmHistory", &e))?;
                for item in page.alarm_history_items() {
                    let at = item.timestamp().and_then(|t| t.to_millis().ok()).unwrap_or(0).max(0) as u64;
                    if at + 1000 < start {
                        continue;
                    }
                    if went_to_alarm(item.history_data(), item.history_summary()) {
                        return Ok(Some(Breach {
                            name: name.clone(),
                            at,
                            summary: item.history_summary().unwrap_or_default().to_string(),
                        }));
                    }
                }
                token = page.next_token().map(str::to_string);
                if token.is_none() {
                    return Ok(None);
                }
            }
            Err(failed(
                FailureKind::JobFailed,
                format!("alarm {name} changed state more than {} times during the bake; treating it as unhealthy", MAX_HISTORY_PAGES * 100),
            ))
        })
        .buffered(config.history_concurrency)
        .collect()
        .await;
    let mut out = Vec::new();
    for r in results {
        if let Some(b) = r? {
            out.push(b);
        }
    }
    Ok(out)
}

/// True when a StateUpdate history item is a transition into ALARM.
fn went_to_alarm(data: Option<&str>, summary: Option<&str>) -> bool {
    if let Some(v) = data.and_then(|d| serde_json::from_str::<Value>(d).ok()) {
        if let Some(state) = v.pointer("/newState/stateValue").and_then(Value::as_str) {
            return state == "ALARM";
        }
    }
    summary.is_some_and(|s| s.trim_end().ends_with("to ALARM"))
}

/// SDK-level tests: a panic mid-poll, the report of a flapped alarm, AWS errors as failure
/// types. Unmatched SDK calls fail these tests.
#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::operation::describe_alarm_history::DescribeAlarmHistoryOutput;
    use aws_sdk_cloudwatch::operation::describe_alarms::{
        DescribeAlarmsError, DescribeAlarmsOutput,
    };
    use aws_sdk_cloudwatch::types::{AlarmHistoryItem, MetricAlarm, StateValue};
    use aws_sdk_codepipeline::operation::put_job_failure_result::PutJobFailureResultOutput;
    use aws_sdk_codepipeline::operation::put_job_success_result::PutJobSuccessResultOutput;
    use aws_sdk_codepipeline::types::FailureType;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use deploy_guard::config::Env;

    const JOB: &str = "0a1b2c3d-0000-4000-8000-0000000bae01";
    const PARAMS: &str = r#"{"duration_minutes": 10, "alarms": {"names": ["web-5xx"]}}"#;

    fn app(cp: &[&Rule], cw: &[&Rule]) -> App {
        let (aws, config) = crate::config::load(&Env::from_pairs([]));
        App {
            codepipeline: mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, cp),
            cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, cw),
            aws,
            config,
        }
    }

    fn event(token: Option<String>) -> LambdaEvent<Value> {
        let payload = json!({"CodePipeline.job": {"id": JOB, "data": {
            "actionConfiguration": {"configuration": {"FunctionName": "bake-timer", "UserParameters": PARAMS}},
            "continuationToken": token}}});
        let mut ctx = lambda_runtime::Context::default();
        ctx.deadline = now_ms() + 10_000;
        LambdaEvent::new(payload, ctx)
    }

    fn alarms(state: StateValue) -> Rule {
        mock!(aws_sdk_cloudwatch::Client::describe_alarms).then_output(move || {
            DescribeAlarmsOutput::builder()
                .metric_alarms(
                    MetricAlarm::builder()
                        .alarm_name("web-5xx")
                        .alarm_arn("arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-5xx")
                        .state_value(state.clone())
                        .build(),
                )
                .build()
        })
    }

    fn policy() -> Policy {
        user_parameters::<Params>(Some(PARAMS))
            .and_then(Params::compile)
            .expect("policy")
    }

    #[tokio::test]
    async fn a_flap_between_polls_fails_the_bake_naming_the_alarm_and_when() {
        let token = Token::first(
            &policy(),
            now_ms() - 60_000,
            alarm_set_digest(&["web-5xx".into()]),
        );
        let states = alarms(StateValue::Ok);
        let at = DateTime::from_millis(now_ms() as i64 - 30_000);
        let history = mock!(aws_sdk_cloudwatch::Client::describe_alarm_history)
            .match_requests(|r| r.alarm_name() == Some("web-5xx") && r.history_item_type() == Some(&HistoryItemType::StateUpdate))
            .then_output(move || {
                DescribeAlarmHistoryOutput::builder()
                    .alarm_history_items(
                        AlarmHistoryItem::builder()
                            .alarm_name("web-5xx")
                            .timestamp(at)
                            .history_item_type(HistoryItemType::StateUpdate)
                            .history_summary("Alarm updated from OK to ALARM")
                            .history_data(r#"{"oldState": {"stateValue": "OK"}, "newState": {"stateValue": "ALARM"}}"#)
                            .build(),
                    )
                    .build()
            });
        let failed = mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
            .match_requests(|r| {
                let d = r.failure_details();
                d.map(|d| d.r#type()) == Some(&FailureType::JobFailed)
                    && d.is_some_and(|d| {
                        d.message().contains("alarm web-5xx went to ALARM at")
                            && d.message().contains("(now OK)")
                    })
            })
            .then_output(|| PutJobFailureResultOutput::builder().build());
        let app = app(&[&failed], &[&states, &history]);
        let out = handle(&app, event(Some(token.encode())))
            .await
            .expect("reported");
        assert_eq!(failed.num_calls(), 1, "{out}");
        assert_eq!(history.num_calls(), 1);
    }

    #[tokio::test]
    async fn the_first_poll_answers_with_a_continuation_token() {
        let states = alarms(StateValue::Ok);
        let progress = mock!(aws_sdk_codepipeline::Client::put_job_success_result)
            .match_requests(|r| {
                r.output_variables().is_none()
                    && r.continuation_token().is_some_and(|t| {
                        Token::verify(t, &policy(), now_ms()).is_ok_and(|t| t.polls == 1)
                    })
            })
            .then_output(|| PutJobSuccessResultOutput::builder().build());
        let app = app(&[&progress], &[&states]);
        let out = handle(&app, event(None)).await.expect("reported");
        assert_eq!(progress.num_calls(), 1, "{out}");
        assert_eq!(out["verdict"], "InProgress");
    }

    #[tokio::test]
    async fn a_panic_mid_poll_is_reported_as_job_failed() {
        let states = mock!(aws_sdk_cloudwatch::Client::describe_alarms)
            .then_compute_output(|_| -> DescribeAlarmsOutput { panic!("cloudwatch boom") });
        let failed = mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
            .then_output(|| PutJobFailureResultOutput::builder().build());
        let app = app(&[&failed], &[&states]);
        let out = handle(&app, event(None)).await.expect("reported");
        assert_eq!(failed.num_calls(), 1);
        assert!(
            out["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("cloudwatch boom"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn access_denied_is_a_permission_error() {
        let denied = mock!(aws_sdk_cloudwatch::Client::describe_alarms).then_error(|| {
            DescribeAlarmsError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("AccessDenied")
                    .message("not authorized")
                    .build(),
            )
        });
        let failed = mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
            .match_requests(|r| {
                r.failure_details().map(|d| d.r#type()) == Some(&FailureType::PermissionError)
            })
            .then_output(|| PutJobFailureResultOutput::builder().build());
        let app = app(&[&failed], &[&denied]);
        let out = handle(&app, event(None)).await.expect("reported");
        assert_eq!(failed.num_calls(), 1, "{out}");
        assert!(
            out["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("cloudwatch:DescribeAlarms"),
            "{out}"
        );
    }

    #[test]
    fn history_items_into_alarm() {
        assert!(went_to_alarm(
            Some(r#"{"newState": {"stateValue": "ALARM"}}"#),
            None
        ));
        assert!(!went_to_alarm(
            Some(r#"{"newState": {"stateValue": "OK"}}"#),
            Some("Alarm updated from ALARM to OK")
        ));
        assert!(went_to_alarm(None, Some("Alarm updated from OK to ALARM")));
        assert!(!went_to_alarm(
            Some("not json"),
            Some("Alarm updated from ALARM to INSUFFICIENT_DATA")
        ));
    }
}
