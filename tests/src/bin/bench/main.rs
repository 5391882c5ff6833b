//! The side-by-side benchmark: deploy-guard's release binaries against the Python peer
//! (`bench/peer`: Python 3, boto3 and requests, run by awslambdaric), alternately (A B A B), on
//! the same local test bed, the same sample app and the same loopback Runtime API emulator.
//! Prints one PASS/FAIL line per budget and writes BENCHMARKS.md. Run by `scripts/bench.sh`,
//! which builds the release binaries, zips them and installs the peer first.
//!
//! Usage: bench --out FILE --bins DIR --peer DIR [--runs N] [--default-features DIR]
//!              [--analysis FILE] [--only 1,4]
//!   --bins DIR               cargo-lambda's output: DIR/<function>/bootstrap and DIR/<function>.zip
//!   --peer DIR               the peer's virtualenv bin: python and the peer-* launchers
//!   --default-features DIR   the same layout, built with the SDK's default features (figure 7)
//!   --only LIST              run only these figures (2 and 3 run together), for profiling

mod relay;
mod report;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deploy_guard_tests::demos::alarm_rollback::rfc3339;
use deploy_guard_tests::runtime::{Function, Invocation};
use deploy_guard_tests::sample_app::{Behaviour, SampleApp};
use deploy_guard_tests::testbed::Testbed;
use serde_json::{json, Value};

use relay::{Replay, Tap};
use report::Report;
use stats::{median, num, ratio, spread};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Rust,
    Python,
}

/// A B, in that order, every round.
const SIDES: [Side; 2] = [Side::Rust, Side::Python];

#[derive(Clone, Copy)]
enum Func {
    Hook,
    Router,
    Bake,
}

impl Func {
    fn binary(self) -> &'static str {
        match self {
            Func::Hook => "smoke-test-hook",
            Func::Router => "alarm-rollback",
            Func::Bake => "bake-timer",
        }
    }

    fn launcher(self) -> &'static str {
        match self {
            Func::Hook => "peer-hook",
            Func::Router => "peer-alarm-router",
            Func::Bake => "peer-bake-poll",
        }
    }

    fn peer_module(self) -> &'static str {
        match self {
            Func::Hook => "hook",
            Func::Router => "alarm_router",
            Func::Bake => "bake_poll",
        }
    }
}

const FUNCTIONS: [&str; 4] = [
    "smoke-test-hook",
    "alarm-rollback",
    "bake-timer",
    "image-gate",
];
const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop";

struct Args {
    out: PathBuf,
    bins: PathBuf,
    peer: PathBuf,
    default_features: Option<PathBuf>,
    analysis: PathBuf,
    runs: usize,
    /// Figures to run (all when empty): `--only 1,4`.
    only: Vec<u8>,
}

fn parse_args() -> Args {
    let mut args = Args {
        out: "BENCHMARKS.md".into(),
        bins: "target/lambda".into(),
        peer: ".venv-bench/bin".into(),
        default_features: None,
        analysis: deploy_guard_tests::repo_root().join("bench/analysis.md"),
        runs: 15,
        only: vec![],
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--out" => args.out = value().into(),
            "--bins" => args.bins = value().into(),
            "--peer" => args.peer = value().into(),
            "--default-features" => args.default_features = Some(value().into()),
            "--analysis" => args.analysis = value().into(),
            "--runs" => args.runs = value().parse().expect("--runs takes a number"),
            "--only" => {
                args.only = value()
                    .split(',')
                    .map(|n| n.trim().parse().expect("--only takes figure numbers: 1,4"))
                    .collect()
            }
            other => {
                panic!("unknown argument {other} (see the top of tests/src/bin/bench/main.rs)")
            }
        }
    }
    args.runs = args.runs.max(3);
    args
}

struct Bench {
    args: Args,
    bed: &'static Testbed,
    counter: AtomicU32,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// CPU time the process has used so far, every thread, in nanoseconds (`/proc/PID/task/*/schedstat`).
fn cpu_ns(f: &Function) -> u64 {
    let Some(pid) = f.pid() else { return 0 };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn logs(f: &Function) -> String {
    let l = f.logs();
    let tail = l.len().saturating_sub(40);
    l[tail..].join("\n")
}

impl Bench {
    fn unique(&self, what: &str) -> String {
        format!(
            "{what}-{}-{}",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// The test bed's environment with its endpoint replaced.
    fn aws_env(&self, endpoint: &str) -> Vec<(String, String)> {
        self.bed
            .aws_env()
            .into_iter()
            .map(|(k, v)| {
                if k == "AWS_ENDPOINT_URL" {
                    (k, endpoint.to_string())
                } else {
                    (k, v)
                }
            })
            .collect()
    }

    fn rust_binary(&self, func: Func) -> PathBuf {
        self.args.bins.join(func.binary()).join("bootstrap")
    }

    async fn start(&self, side: Side, func: Func, env: &[(String, String)]) -> Function {
        match side {
            Side::Rust => Function::start(&self.rust_binary(func), env).await,
            Side::Python => {
                let mut env = env.to_vec();
                env.push((
                    "PYTHONPATH".into(),
                    deploy_guard_tests::repo_root()
                        .join("bench/peer")
                        .display()
                        .to_string(),
                ));
                Function::start(&self.args.peer.join(func.launcher()), &env).await
            }
        }
    }

    /// A CodeDeploy blue/green deployment whose listeners answer on `localhost` at the apps'
    /// ports, at AfterAllowTestTraffic.
    async fn cd_scenario(&self, test_port: u16, prod_port: u16) -> Value {
        self.bed
            .codedeploy_scenario(json!({
                "name": self.unique("bench"),
                "image_from": format!("{IMAGE}:v1"),
                "image_to": format!("{IMAGE}:v2"),
                "container": "web",
                "prod_port": prod_port,
                "test_port": test_port,
                "lb_dns_name": "localhost",
            }))
            .await
    }

    async fn expect_hook_report(&self, scenario: &Value, f: &Function, inv: &Invocation) {
        let id = scenario["deploymentId"].as_str().unwrap_or_default();
        let calls = self
            .bed
            .calls("codedeploy", "PutLifecycleEventHookExecutionStatus", id)
            .await;
        let status: Vec<String> = calls
            .iter()
            .map(|c| c.params["status"].as_str().unwrap_or("?").to_string())
            .collect();
        assert!(
            status == ["Succeeded"],
            "one Succeeded report expected for {id}, got {status:?}; answer {inv:?}; logs:\n{}",
            logs(f)
        );
    }
}

fn hook_event(scenario: &Value) -> Value {
    json!({"DeploymentId": scenario["deploymentId"], "LifecycleEventHookExecutionId": scenario["hookExecutionId"]})
}

fn resolve(test_port: u16, prod_port: u16) -> String {
    format!("localhost:{test_port}:127.0.0.1,localhost:{prod_port}:127.0.0.1")
}

/// The ten checks of figures 2 and 3.
fn ten_checks() -> Value {
    let mut checks = vec![
        json!({"name": "home page", "path": "/", "expect": {"status": 200, "body_contains": "hello"}}),
        json!({"name": "health", "path": "/health", "expect": {"json": {"/status": "ok"}, "headers": {"content-type": {"matches": "json"}}}}),
        json!({"name": "version", "path": "/version", "expect": {"json": {"/version": "v2"}}}),
    ];
    for i in 1..=7 {
        checks.push(json!({"name": format!("page {i}"), "path": format!("/page/{i}"), "expect": {"status": 200}}));
    }
    json!({"defaults": {"timeout_ms": 2000, "retry": {"attempts": 2, "base_delay_ms": 50, "max_delay_ms": 200}},
           "checks": checks})
}

/// `n` checks run one at a time (figure 4).
fn serial_checks(n: usize) -> Value {
    let checks: Vec<Value> = (1..=n)
        .map(|i| json!({"name": format!("page {i}"), "path": format!("/page/{i}"), "expect": {"status": 200, "body_contains": "hello"}}))
        .collect();
    json!({"concurrency": 1, "defaults": {"timeout_ms": 2000, "retry": {"attempts": 1}}, "checks": checks})
}

fn sample(dir: &str, file: &str) -> Value {
    let path = deploy_guard_tests::repo_root()
        .join("events")
        .join(dir)
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `events/alarm-rollback/metric-alarm.json` made into `alarm` going to ALARM two seconds ago.
fn alarm_event(id: &str, alarm: &str) -> Value {
    let mut e = sample("alarm-rollback", "metric-alarm.json");
    e["id"] = json!(id);
    e["time"] = json!(rfc3339((now_ms() / 1000) as i64 - 2));
    e["resources"] = json!([format!(
        "arn:aws:cloudwatch:us-east-1:123456789012:alarm:{alarm}"
    )]);
    e["detail"]["alarmName"] = json!(alarm);
    e
}

/// A CodePipeline job for the bake timer.
fn job_event(id: &str, params: &str, token: Option<&str>) -> Value {
    let mut data = json!({
        "actionConfiguration": {"configuration": {"FunctionName": "bake-timer", "UserParameters": params}},
        "inputArtifacts": [], "outputArtifacts": [],
    });
    if let Some(t) = token {
        data["continuationToken"] = json!(t);
    }
    json!({"CodePipeline.job": {"id": id, "accountId": "123456789012", "data": data}})
}

/// A job id shaped like CodePipeline's (a UUID).
fn job_id(b: &Bench) -> String {
    let n = b.counter.fetch_add(1, Ordering::SeqCst);
    format!(
        "{:08x}-{:04x}-4000-8000-{:012x}",
        std::process::id(),
        n & 0xffff,
        (now_ms() & 0xffff_ffff) << 12 | u64::from(n & 0xfff)
    )
}

// ---------------------------------------------------------------------------------------------
// 1. Start-up

/// Spawn → first invocation answered, `runs` times per side (after one discarded round).
async fn startup(b: &Bench, func: Func, event: &Value, runs: usize) -> [Vec<f64>; 2] {
    let env = b.aws_env(&b.bed.url());
    let mut out = [vec![], vec![]];
    for round in 0..=runs {
        for (s, side) in SIDES.iter().enumerate() {
            let f = b.start(*side, func, &env).await;
            // `invoke_at` returns once the log pipe is quiet; its `elapsed` ends at the answer.
            let queued = f.spawned.elapsed();
            let inv = f
                .invoke_at(event.clone(), now_ms() + 30_000, Duration::from_secs(30))
                .await;
            let took = queued + inv.elapsed;
            assert!(
                inv.response.is_some() || inv.error.is_some(),
                "{side:?} {}: no answer; logs:\n{}",
                func.binary(),
                logs(&f)
            );
            f.stop().await;
            if round > 0 {
                out[s].push(ms(took));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 2 and 3. Peak memory and time to verdict of the smoke hook

#[derive(Default)]
struct HookRuns {
    cold: [Vec<f64>; 2],
    warm: [Vec<f64>; 2],
    /// Of `cold` and `warm`: time with at least one AWS call waiting for the test bed.
    cold_wait: [Vec<f64>; 2],
    warm_wait: [Vec<f64>; 2],
    cold_answer: [Vec<f64>; 2],
    rss_mib: [Vec<f64>; 2],
}

async fn hook_verdict(
    b: &Bench,
    tap: &Tap,
    test: &SampleApp,
    prod: &SampleApp,
    runs: usize,
) -> HookRuns {
    let mut out = HookRuns::default();
    const OP: &str = "PutLifecycleEventHookExecutionStatus";
    for round in 0..=runs {
        for (s, side) in SIDES.iter().enumerate() {
            let first = b.cd_scenario(test.port, prod.port).await;
            let second = b.cd_scenario(test.port, prod.port).await;
            let mut env = b.aws_env(&tap.url());
            env.push(("SMOKE_SPEC_DEFAULT".into(), ten_checks().to_string()));
            env.push(("SMOKE_RESOLVE".into(), resolve(test.port, prod.port)));
            tap.clear();
            let f = b.start(*side, Func::Hook, &env).await;
            let queued = f.spawned.elapsed();
            let inv = f.invoke(hook_event(&first), Duration::from_secs(30)).await;
            let answered = queued + inv.elapsed;
            let rss = f.peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
            let recorded = tap
                .first(OP)
                .unwrap_or_else(|| panic!("{side:?}: no {OP} seen; {inv:?}; logs:\n{}", logs(&f)));
            let cold = recorded.saturating_duration_since(f.spawned);
            let cold_wait = tap.waiting(f.spawned, recorded);
            b.expect_hook_report(&first, &f, &inv).await;
            tap.clear();
            let asked = Instant::now();
            let inv = f.invoke(hook_event(&second), Duration::from_secs(30)).await;
            let recorded = tap
                .first(OP)
                .unwrap_or_else(|| panic!("{side:?}: no {OP} seen; {inv:?}; logs:\n{}", logs(&f)));
            let warm = recorded.saturating_duration_since(asked);
            let warm_wait = tap.waiting(asked, recorded);
            b.expect_hook_report(&second, &f, &inv).await;
            f.stop().await;
            if round > 0 {
                out.cold[s].push(ms(cold));
                out.warm[s].push(ms(warm));
                out.cold_wait[s].push(ms(cold_wait));
                out.warm_wait[s].push(ms(warm_wait));
                out.cold_answer[s].push(ms(answered));
                out.rss_mib[s].push(rss);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 4. Smoke-engine overhead

#[derive(Default)]
struct EngineRuns {
    /// Per round: (wall ms, CPU ms) of the N-check and the 1-check invocation.
    wall_n: [Vec<f64>; 2],
    wall_1: [Vec<f64>; 2],
    cpu_n: [Vec<f64>; 2],
    cpu_1: [Vec<f64>; 2],
    /// Per round: (N-check − 1-check) / (N − 1), wall and CPU, in µs.
    per_request_us: [Vec<f64>; 2],
    per_request_cpu_us: [Vec<f64>; 2],
    replay_misses: u64,
    replay_hits: u64,
}

const ENGINE_CHECKS: usize = 50;

async fn engine(b: &Bench, runs: usize) -> EngineRuns {
    let app = SampleApp::start(Behaviour::Healthy("v2".into())).await;
    let prod = SampleApp::start(Behaviour::Healthy("v1".into())).await;
    let replay = Replay::start(b.bed.url()).await;
    let mut procs: Vec<(Value, Function, Function)> = vec![];
    for side in SIDES {
        let scenario = b.cd_scenario(app.port, prod.port).await;
        let mut fs = vec![];
        for n in [ENGINE_CHECKS, 1] {
            let mut env = b.aws_env(&replay.url());
            env.push(("SMOKE_SPEC_DEFAULT".into(), serial_checks(n).to_string()));
            env.push(("SMOKE_RESOLVE".into(), resolve(app.port, prod.port)));
            fs.push(b.start(side, Func::Hook, &env).await);
        }
        let one = fs.pop().expect("1-check process");
        let many = fs.pop().expect("N-check process");
        // Warm both: the first invocation fills the replay proxy from the test bed.
        for f in [&many, &one] {
            for _ in 0..3 {
                let inv = f
                    .invoke(hook_event(&scenario), Duration::from_secs(30))
                    .await;
                assert_eq!(
                    inv.response.as_ref().map(|r| r["verdict"].clone()),
                    Some(json!("Succeeded")),
                    "{side:?} warm-up: {inv:?}; logs:\n{}",
                    logs(f)
                );
            }
        }
        procs.push((scenario, many, one));
    }
    let (hits0, misses0) = replay.counts();
    let mut out = EngineRuns::default();
    for _ in 0..runs {
        for (s, side) in SIDES.iter().enumerate() {
            let (scenario, many, one) = &procs[s];
            let mut round = [(0.0, 0.0); 2];
            for (k, (f, n)) in [(many, ENGINE_CHECKS), (one, 1)].into_iter().enumerate() {
                let seen = app.seen().len();
                let cpu = cpu_ns(f);
                let inv = f
                    .invoke(hook_event(scenario), Duration::from_secs(30))
                    .await;
                let cpu = (cpu_ns(f) - cpu) as f64 / 1e6;
                assert_eq!(
                    inv.response.as_ref().map(|r| r["verdict"].clone()),
                    Some(json!("Succeeded")),
                    "{side:?}: {inv:?}; logs:\n{}",
                    logs(f)
                );
                assert_eq!(
                    app.seen().len() - seen,
                    n,
                    "{side:?}: {n} requests expected"
                );
                round[k] = (ms(inv.elapsed), cpu);
            }
            out.wall_n[s].push(round[0].0);
            out.wall_1[s].push(round[1].0);
            out.cpu_n[s].push(round[0].1);
            out.cpu_1[s].push(round[1].1);
            let per = (ENGINE_CHECKS - 1) as f64;
            out.per_request_us[s].push((round[0].0 - round[1].0) / per * 1000.0);
            out.per_request_cpu_us[s].push((round[0].1 - round[1].1) / per * 1000.0);
        }
    }
    let (hits1, misses1) = replay.counts();
    out.replay_hits = hits1 - hits0;
    out.replay_misses = misses1 - misses0;
    for (_, many, one) in procs {
        many.stop().await;
        one.stop().await;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 5. Alarm → rollback call

#[derive(Default)]
struct RollbackRuns {
    cold: [Vec<f64>; 2],
    warm: [Vec<f64>; 2],
    cold_wait: [Vec<f64>; 2],
    warm_wait: [Vec<f64>; 2],
    rss_mib: [Vec<f64>; 2],
}

/// A CodeDeploy deployment in flight and an alarm in ALARM tagged with its group.
async fn alarm_case(b: &Bench) -> (Value, String) {
    let scenario = b.cd_scenario(18000, 18001).await;
    let alarm = b.unique("bench-5xx");
    b.bed
        .alarm(json!({"name": alarm, "tags": {
            "deploy-guard:codedeploy-application": scenario["application"],
            "deploy-guard:codedeploy-deployment-group": scenario["deploymentGroup"]}}))
        .await;
    (scenario, alarm)
}

async fn expect_stopped(b: &Bench, scenario: &Value, f: &Function, inv: &Invocation) {
    let id = scenario["deploymentId"].as_str().unwrap_or_default();
    let stops = b.bed.calls("codedeploy", "StopDeployment", id).await;
    assert!(
        stops.len() == 1 && stops[0].params["autoRollbackEnabled"] == json!(true) && stops[0].error.is_none(),
        "one StopDeployment with automatic rollback expected for {id}: {stops:?}; {inv:?}; logs:\n{}",
        logs(f)
    );
}

async fn rollback(b: &Bench, tap: &Tap, runs: usize) -> RollbackRuns {
    let mut out = RollbackRuns::default();
    for round in 0..=runs {
        for (s, side) in SIDES.iter().enumerate() {
            let (first, first_alarm) = alarm_case(b).await;
            let (second, second_alarm) = alarm_case(b).await;
            let env = b.aws_env(&tap.url());
            tap.clear();
            let f = b.start(*side, Func::Router, &env).await;
            let event = alarm_event(&b.unique("event"), &first_alarm);
            let inv = f.invoke(event, Duration::from_secs(30)).await;
            let at = tap.first("StopDeployment").unwrap_or_else(|| {
                panic!(
                    "{side:?}: no StopDeployment seen; {inv:?}; logs:\n{}",
                    logs(&f)
                )
            });
            let cold = at.saturating_duration_since(f.spawned);
            let cold_wait = tap.waiting(f.spawned, at);
            expect_stopped(b, &first, &f, &inv).await;
            tap.clear();
            let asked = Instant::now();
            let event = alarm_event(&b.unique("event"), &second_alarm);
            let inv = f.invoke(event, Duration::from_secs(30)).await;
            let at = tap.first("StopDeployment").unwrap_or_else(|| {
                panic!(
                    "{side:?}: no StopDeployment seen; {inv:?}; logs:\n{}",
                    logs(&f)
                )
            });
            let warm = at.saturating_duration_since(asked);
            let warm_wait = tap.waiting(asked, at);
            expect_stopped(b, &second, &f, &inv).await;
            let rss = f.peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
            f.stop().await;
            if round > 0 {
                out.cold[s].push(ms(cold));
                out.warm[s].push(ms(warm));
                out.cold_wait[s].push(ms(cold_wait));
                out.warm_wait[s].push(ms(warm_wait));
                out.rss_mib[s].push(rss);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 6. One bake poll

#[derive(Default)]
struct BakeRuns {
    warm_cpu: [Vec<f64>; 2],
    warm_wall: [Vec<f64>; 2],
    cold_cpu: [Vec<f64>; 2],
    rss_mib: [Vec<f64>; 2],
}

const WARM_POLLS: usize = 3;

async fn poll(b: &Bench, f: &Function, params: &str, token: Option<&str>) -> (Invocation, String) {
    let id = job_id(b);
    let inv = f
        .invoke(job_event(&id, params, token), Duration::from_secs(30))
        .await;
    let mut reports = b
        .bed
        .calls("codepipeline", "PutJobSuccessResult", &id)
        .await;
    reports.extend(
        b.bed
            .calls("codepipeline", "PutJobFailureResult", &id)
            .await,
    );
    assert!(
        reports.len() == 1 && reports[0].operation == "PutJobSuccessResult",
        "one continuation expected for job {id}: {reports:?}; {inv:?}; logs:\n{}",
        logs(f)
    );
    let next = reports[0].params["continuationToken"]
        .as_str()
        .unwrap_or_else(|| panic!("a continuation token expected: {reports:?}"))
        .to_string();
    (inv, next)
}

async fn bake(b: &Bench, runs: usize) -> BakeRuns {
    let prefix = format!("{}-", b.unique("bench-bake"));
    for name in ["5xx", "latency"] {
        b.bed
            .alarm(json!({"name": format!("{prefix}{name}"), "state": "OK"}))
            .await;
    }
    let params = json!({"duration_minutes": 10, "alarms": {"prefix": prefix}}).to_string();
    let env = b.aws_env(&b.bed.url());
    // Each side's own continuation token, from its own first poll.
    let mut tokens = vec![];
    for side in SIDES {
        let f = b.start(side, Func::Bake, &env).await;
        tokens.push(poll(b, &f, &params, None).await.1);
        f.stop().await;
    }
    let mut out = BakeRuns::default();
    for round in 0..=runs {
        for (s, side) in SIDES.iter().enumerate() {
            let token = Some(tokens[s].as_str());
            let f = b.start(*side, Func::Bake, &env).await;
            poll(b, &f, &params, token).await;
            let cold = cpu_ns(&f) as f64 / 1e6;
            let mut cpu = vec![];
            let mut wall = vec![];
            for _ in 0..WARM_POLLS {
                let before = cpu_ns(&f);
                let (inv, _) = poll(b, &f, &params, token).await;
                cpu.push((cpu_ns(&f) - before) as f64 / 1e6);
                wall.push(ms(inv.elapsed));
            }
            let rss = f.peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
            f.stop().await;
            if round > 0 {
                out.cold_cpu[s].push(cold);
                out.warm_cpu[s].extend(cpu);
                out.warm_wall[s].extend(wall);
                out.rss_mib[s].push(rss);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 7. Sizes

fn size(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

// ---------------------------------------------------------------------------------------------

/// The `[profile.release]` settings of the workspace's Cargo.toml, as `key = value, …`.
fn release_profile() -> String {
    let text = std::fs::read_to_string(deploy_guard_tests::repo_root().join("Cargo.toml"))
        .unwrap_or_default();
    text.lines()
        .skip_while(|l| l.trim() != "[profile.release]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| format!("`{l}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Run by run, `a[side] - b[side]`.
fn minus(a: &[Vec<f64>; 2], b: &[Vec<f64>; 2], side: usize) -> Vec<f64> {
    a[side].iter().zip(&b[side]).map(|(x, y)| x - y).collect()
}

fn table_row(
    what: &str,
    rust: &[f64],
    python: &[f64],
    unit: &str,
    higher_is_better: bool,
) -> String {
    let r = if higher_is_better {
        ratio(median(rust), median(python))
    } else {
        ratio(median(python), median(rust))
    };
    format!(
        "| {what} | {} | {} | {r} | {} + {} |\n",
        spread(rust, unit),
        spread(python, unit),
        rust.len(),
        python.len()
    )
}

const TABLE_HEAD: &str = "| | deploy-guard, median (p25–p75) | Python peer, median (p25–p75) | ratio | runs |\n|---|---|---|---|---|\n";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = parse_args();
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let started = Instant::now();
    for func in [Func::Hook, Func::Router, Func::Bake] {
        let rust = args.bins.join(func.binary()).join("bootstrap");
        let peer = args.peer.join(func.launcher());
        assert!(
            rust.exists(),
            "{} missing: run scripts/bench.sh",
            rust.display()
        );
        assert!(
            peer.exists(),
            "{} missing: run scripts/bench.sh",
            peer.display()
        );
    }
    let bed = Testbed::shared();
    let b = Bench {
        args,
        bed,
        counter: AtomicU32::new(0),
    };
    let runs = b.args.runs;
    let only = b.args.only.clone();
    let wants = |n: u8| only.is_empty() || only.contains(&n);
    let mut rep = Report::default();
    let upstream: std::net::SocketAddr = format!("127.0.0.1:{}", bed.port).parse().expect("addr");
    let tap = Tap::start(upstream).await;
    let test_app = SampleApp::start(Behaviour::Healthy("v2".into())).await;
    let prod_app = SampleApp::start(Behaviour::Healthy("v1".into())).await;

    println!(
        "deploy-guard against the Python peer, {runs} runs a figure, alternating; test bed on {}",
        bed.url()
    );

    // 1. Start-up.
    if wants(1) {
        eprintln!("[bench] 1. start-up");
        let cases = [
            (
                Func::Hook,
                sample("smoke-test-hook", "bad-empty.json"),
                "an event without ids: both answer with an error, no AWS call",
            ),
            (
                Func::Router,
                sample("alarm-rollback", "ok-state.json"),
                "an alarm going to OK: both ignore it, no AWS call",
            ),
            (
                Func::Bake,
                json!({}),
                "an event without a job: both answer with an error, no AWS call",
            ),
        ];
        let mut text = String::from("## 1. Start-up: spawn → first invocation handled\n\n");
        text.push_str(TABLE_HEAD);
        let mut lines = vec![];
        for (func, event, _) in &cases {
            let [rust, python] = startup(&b, *func, event, runs).await;
            text.push_str(&table_row(func.binary(), &rust, &python, "ms", false));
            lines.push((*func, median(&rust), median(&python)));
        }
        text.push_str("\nThe process is spawned with an invocation already queued in the emulator; the time is taken when the emulator receives the answer. The first invocation of each function is one it answers without any AWS call, so the figure is process start, runtime and init (SDK config and clients, configuration, the HTTP client) plus one trivial event:\n\n");
        for (func, _, what) in &cases {
            text.push_str(&format!("- {}: {what}\n", func.binary()));
        }
        rep.section(&text);
        for (func, rust, python) in lines {
            let what = format!("start-up, {}: median", func.binary());
            rep.budget(rust <= 10.0, &what, format!("{} ms", num(rust)), "<= 10 ms");
            let what = format!("start-up, {}: faster than the peer", func.binary());
            rep.budget(python / rust >= 50.0, &what, ratio(python, rust), ">= 50x");
        }
    }

    // 2 and 3. The smoke hook, ten checks, against a healthy app.
    if wants(2) {
        eprintln!("[bench] 2, 3. smoke hook: memory and time to verdict");
        let hook = hook_verdict(&b, &tap, &test_app, &prod_app, runs).await;
        let (rss_r, rss_p) = (median(&hook.rss_mib[0]), median(&hook.rss_mib[1]));
        rep.section(&format!(
        "## 2. Peak memory of one invocation with ten checks\n\n{TABLE_HEAD}{}\nPeak resident set (`VmHWM` in `/proc/PID/status`) of a fresh process after one CodeDeploy invocation (discovery, ten checks, the report) against the healthy sample app. The ten checks: the home page (status, body text), /health (a JSON pointer, a header regex), /version (a JSON pointer), seven pages (status); each side runs them as it runs them for users (deploy-guard four at a time, the peer one after the other).\n",
        table_row("smoke-test-hook", &hook.rss_mib[0], &hook.rss_mib[1], "MiB", false)
    ));
        rep.budget(
            rss_r <= 16.0,
            "peak memory, smoke hook with ten checks",
            format!("{} MiB", num(rss_r)),
            "<= 16 MiB",
        );
        rep.budget(
            rss_p / rss_r >= 5.0,
            "peak memory, smoke hook: lighter than the peer",
            ratio(rss_p, rss_r),
            ">= 5x (<= 1/5)",
        );
        rep.section(&format!(
        "## 3. Smoke hook: time to verdict\n\n{TABLE_HEAD}{}{}{}{}{}{}{}\nFrom cold: spawn of a new process with the invocation queued → the test bed answers `PutLifecycleEventHookExecutionStatus` (it records the call before answering). Warm: the same process's second invocation, for another deployment → the same moment. Both: the CodeDeploy discovery calls, the ten checks of figure 2 against the healthy local app on the test listener, the report. The moment is taken by a TCP relay between the functions and the test bed that notes the first answer bytes to the call (a relay hop on every AWS call, both sides: see figure 5's note). Every run checks that exactly one `Succeeded` was recorded. \"Waiting on the test bed\": the time, inside the window, during which at least one AWS call had been sent and not yet answered (from the relay's timestamps), whatever the function was doing meanwhile.\n",
        table_row("**from cold**", &hook.cold[0], &hook.cold[1], "ms", false),
        table_row("… of which an AWS call was waiting on the test bed", &hook.cold_wait[0], &hook.cold_wait[1], "ms", false),
        table_row("… the rest (start-up, the checks, the function's own work)", &minus(&hook.cold, &hook.cold_wait, 0), &minus(&hook.cold, &hook.cold_wait, 1), "ms", false),
        table_row("**warm**", &hook.warm[0], &hook.warm[1], "ms", false),
        table_row("… of which an AWS call was waiting on the test bed", &hook.warm_wait[0], &hook.warm_wait[1], "ms", false),
        table_row("… the rest (the checks, the function's own work)", &minus(&hook.warm, &hook.warm_wait, 0), &minus(&hook.warm, &hook.warm_wait, 1), "ms", false),
        table_row("from cold, until the invocation's answer", &hook.cold_answer[0], &hook.cold_answer[1], "ms", false),
    ));
        let cold = median(&hook.cold[0]);
        rep.budget(
            cold <= 50.0,
            "smoke hook, time to verdict from cold (healthy app)",
            format!("{} ms", num(cold)),
            "<= 50 ms",
        );
    }

    // 4. Smoke engine.
    if wants(4) {
        eprintln!("[bench] 4. smoke engine");
        let eng = engine(&b, runs).await;
        let per = [
            median(&eng.per_request_us[0]),
            median(&eng.per_request_us[1]),
        ];
        let cpu = [
            median(&eng.per_request_cpu_us[0]),
            median(&eng.per_request_cpu_us[1]),
        ];
        let rps = [1e6 / per[0], 1e6 / per[1]];
        rep.section(&format!(
        "## 4. Smoke engine against a local server\n\n| | deploy-guard | Python peer (requests.Session) | ratio |\n|---|---|---|---|\n| requests per second, one at a time | {} | {} | {} |\n| wall time per request, µs | {} | {} | {} |\n| CPU time per request in the function's process, µs | {} | {} | {} |\n\n{TABLE_HEAD}{}{}{}{}\nTwo warm processes per side run the same CodeDeploy invocation again and again: one with {ENGINE_CHECKS} checks, one with 1, one request at a time (`concurrency: 1`; the peer's loop is sequential anyway), each check a GET of `/page/N` judged on its status and body text, against the sample app (a hyper server in the benchmark's own process). Per request = (the {ENGINE_CHECKS}-check invocation − the 1-check invocation) / {}, per round; the table gives the median over rounds. AWS calls go through a replaying proxy that forwarded each distinct call to the test bed once and answers repeats from memory ({} answered from memory, {} forwarded during the measured rounds), so what differs between the two invocations is the checks alone. The peer's per-request cost is requests.Session's (keep-alive, one connection), with the same judging.\n",
        num(rps[0]), num(rps[1]), ratio(rps[0], rps[1]),
        num(per[0]), num(per[1]), ratio(per[1], per[0]),
        num(cpu[0]), num(cpu[1]), ratio(cpu[1], cpu[0]),
        table_row(&format!("invocation with {ENGINE_CHECKS} checks, wall"), &eng.wall_n[0], &eng.wall_n[1], "ms", false),
        table_row("invocation with 1 check, wall", &eng.wall_1[0], &eng.wall_1[1], "ms", false),
        table_row(&format!("invocation with {ENGINE_CHECKS} checks, CPU"), &eng.cpu_n[0], &eng.cpu_n[1], "ms", false),
        table_row("invocation with 1 check, CPU", &eng.cpu_1[0], &eng.cpu_1[1], "ms", false),
        ENGINE_CHECKS - 1,
        eng.replay_hits,
        eng.replay_misses,
    ));
        rep.budget(
            rps[0] / rps[1] >= 15.0,
            "smoke engine: requests per second against the peer",
            format!(
                "{} ({} vs {} req/s)",
                ratio(rps[0], rps[1]),
                num(rps[0]),
                num(rps[1])
            ),
            ">= 15x",
        );
    }

    // 5. Alarm → rollback.
    if wants(5) {
        eprintln!("[bench] 5. alarm -> rollback");
        let rb = rollback(&b, &tap, runs).await;
        let relay_cost = relay_overhead(&b, &tap).await;
        rep.section(&format!(
        "## 5. Alarm → rollback call recorded\n\n{TABLE_HEAD}{}{}{}{}{}{}{}\nAn EventBridge alarm state change (ALARM) for an alarm tagged with a CodeDeploy application and deployment group whose deployment is in flight. From cold: spawn with the event queued → the test bed answers `StopDeployment` (automatic rollback on). Warm: the same process's second event, for another deployment. Before it: DescribeAlarms and ListTagsForResource (deploy-guard runs them at once, the peer one after the other), ListDeployments, BatchGetDeployments; after it (not timed): GetDeployment to confirm, PutEvents to announce. Every run checks that exactly one StopDeployment with `autoRollbackEnabled` was recorded.\n\nThe relay that takes the moment adds a hop to every AWS call of both sides: {} µs per call (median of 200 calls of `GET /_testbed/health` through it, less the same calls made directly, from a separate process). The test bed is moto, in Python, answering each call in a few milliseconds with `Connection: close`; AWS's own latency would replace it.\n",
        table_row("**from cold**", &rb.cold[0], &rb.cold[1], "ms", false),
        table_row("… of which an AWS call was waiting on the test bed", &rb.cold_wait[0], &rb.cold_wait[1], "ms", false),
        table_row("… the rest (start-up, the function's own work)", &minus(&rb.cold, &rb.cold_wait, 0), &minus(&rb.cold, &rb.cold_wait, 1), "ms", false),
        table_row("**warm**", &rb.warm[0], &rb.warm[1], "ms", false),
        table_row("… of which an AWS call was waiting on the test bed", &rb.warm_wait[0], &rb.warm_wait[1], "ms", false),
        table_row("… the rest (the function's own work)", &minus(&rb.warm, &rb.warm_wait, 0), &minus(&rb.warm, &rb.warm_wait, 1), "ms", false),
        table_row("peak memory after two events", &rb.rss_mib[0], &rb.rss_mib[1], "MiB", false),
        num(relay_cost),
    ));
        let cold = median(&rb.cold[0]);
        rep.budget(
            cold <= 20.0,
            "alarm -> rollback call recorded, from cold",
            format!("{} ms", num(cold)),
            "<= 20 ms",
        );
    }

    // 6. Bake poll.
    if wants(6) {
        eprintln!("[bench] 6. bake poll");
        let bk = bake(&b, runs).await;
        rep.section(&format!(
        "## 6. One bake poll: CPU time\n\n{TABLE_HEAD}{}{}{}{}\nA continuation poll of a 10-minute bake watching two alarms selected by name prefix (both OK): DescribeAlarms, DescribeAlarmHistory for each alarm since the bake started, PutJobSuccessResult with the next continuation token; each poll is a new job. CPU time is the sum of every thread's `sum_exec_runtime` (`/proc/PID/task/*/schedstat`, nanoseconds) across the invocation; {WARM_POLLS} warm polls per process. From cold: everything the process used from spawn to the answer of its first poll (start-up, init and the poll). A bake timer that sleeps inside Lambda instead pays wall time for the whole bake.\n",
        table_row("warm poll, CPU", &bk.warm_cpu[0], &bk.warm_cpu[1], "ms", false),
        table_row("warm poll, wall (invocation → answer)", &bk.warm_wall[0], &bk.warm_wall[1], "ms", false),
        table_row("first poll from cold, CPU", &bk.cold_cpu[0], &bk.cold_cpu[1], "ms", false),
        table_row(&format!("peak memory after {} polls", WARM_POLLS + 1), &bk.rss_mib[0], &bk.rss_mib[1], "MiB", false),
    ));
    }

    // 7. Sizes.
    if wants(7) {
        eprintln!("[bench] 7. sizes");
        let mut text = String::from("## 7. Zipped bootstrap per function\n\n| function | zipped | unzipped | with the SDK's default features, zipped | unzipped | trimming saved |\n|---|---|---|---|---|---|\n");
        let mut zips = vec![];
        for f in FUNCTIONS {
            let zip = size(&b.args.bins.join(format!("{f}.zip")));
            let raw = size(&b.args.bins.join(f).join("bootstrap"));
            let dz = b
                .args
                .default_features
                .as_ref()
                .and_then(|d| size(&d.join(format!("{f}.zip"))));
            let draw = b
                .args
                .default_features
                .as_ref()
                .and_then(|d| size(&d.join(f).join("bootstrap")));
            let show = |v: Option<u64>| v.map(mb).unwrap_or_else(|| "not built".into());
            let saved = match (zip, dz) {
                (Some(z), Some(d)) => format!(
                    "{} ({:.0}%)",
                    mb(d.saturating_sub(z)),
                    (d as f64 - z as f64) / d as f64 * 100.0
                ),
                _ => "–".into(),
            };
            text.push_str(&format!(
                "| {f} | {} | {} | {} | {} | {saved} |\n",
                show(zip),
                show(raw),
                show(dz),
                show(draw)
            ));
            zips.push((f, zip));
        }
        text.push_str(&format!("\nThe release `bootstrap` (cargo-lambda, x86_64, the workspace's release profile: {}) zipped alone with deflate at level 9, as Lambda receives it. The default-features column is the same workspace built with `default-features = false` removed from the `aws-config` and `aws-sdk-*` lines of Cargo.toml (a temporary copy, its own target directory)", release_profile()));
        if b.args.default_features.is_none() {
            text.push_str(": not built in this run; `scripts/bench.sh --default-features` builds it (a second release build of the SDK, about 20 minutes on 2 cores)");
        }
        text.push_str(".\n");
        rep.section(&text);
        for (f, zip) in zips {
            match zip {
                Some(z) => rep.budget(
                    z <= 3_000_000,
                    &format!("zipped bootstrap, {f}"),
                    mb(z),
                    "<= 3 MB",
                ),
                None => rep.budget(
                    false,
                    &format!("zipped bootstrap, {f}"),
                    "missing".into(),
                    "<= 3 MB",
                ),
            };
        }
    }

    // The file.
    let command = std::env::var("BENCH_COMMAND").unwrap_or_else(|_| "scripts/bench.sh".into());
    let steps = std::env::var("BENCH_STEPS").unwrap_or_default();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let python = b.args.peer.join("python");
    let launchers: Vec<String> = [Func::Hook, Func::Router, Func::Bake]
        .iter()
        .map(|f| {
            format!(
                "`{}`: `python -m awslambdaric {}.lambda_handler`",
                f.launcher(),
                f.peer_module()
            )
        })
        .collect();
    let header = format!(
        "# Benchmarks: deploy-guard against the hooks users write themselves\n\n\
         Generated by `{command}` on {date} in {:.0} s; every figure below is from that one run. Do not edit by hand: run the command again (the Analysis at the end is `bench/analysis.md`, written by hand).\n\n\
         The peer (`bench/peer/`) does the same jobs the way users write them today, like the AWS sample hooks: Python 3, boto3 and requests, clients created once at module level, run by `awslambdaric` (the runtime interface client of the managed Python runtime). Both sides run alternately (deploy-guard, then the peer, every round), each figure's runs after one discarded round, as real processes through the same loopback Lambda Runtime API emulator (`tests/src/runtime.rs`), against the same local AWS test bed (moto, extended: `tests/testbed/`) and the same sample app (`tests/src/sample_app.rs`). Medians over {runs} runs a side unless a table says otherwise; ratios compare medians of the same run.\n\n\
         ## How to run it\n\n```sh\n{command}\n```\n\nWhat it ran:\n\n{steps}\n\
         - deploy-guard's functions: `target/lambda/<function>/bootstrap`, started by the emulator with the test bed's environment (`AWS_ENDPOINT_URL`, region, test credentials) and nothing else.\n\
         - The peer: `.venv-bench/bin/<launcher>`, a two-line script whose first line is the virtualenv's interpreter (`#!{}`), so the kernel starts the real interpreter (no shell, no pyenv shim): {}; same environment, plus `PYTHONPATH=bench/peer`.\n",
        started.elapsed().as_secs_f64(),
        python.display(),
        launchers.join("; "),
    );
    let analysis = std::fs::read_to_string(&b.args.analysis).unwrap_or_default();
    let machine = report::machine(&load_before, &python);
    let doc = report::render(&rep, &header, &machine, &analysis);
    std::fs::write(&b.args.out, doc)
        .unwrap_or_else(|e| panic!("write {}: {e}", b.args.out.display()));
    let failed = rep.budgets.iter().filter(|x| !x.ok).count();
    println!(
        "{} of {} budgets met; wrote {} in {:.0} s",
        rep.budgets.len() - failed,
        rep.budgets.len(),
        b.args.out.display(),
        started.elapsed().as_secs_f64()
    );
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

/// Median cost of one relay hop, in µs, seen from another process (the peer's interpreter):
/// `GET /_testbed/health` through the tap less the same call made directly, 200 of each.
async fn relay_overhead(b: &Bench, tap: &Tap) -> f64 {
    const SCRIPT: &str = r#"
import http.client, statistics, sys, time
def one(port):
    t = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/_testbed/health")
    c.getresponse().read()
    c.close()
    return time.perf_counter() - t
d, r = [], []
for _ in range(200):
    d.append(one(int(sys.argv[1])))
    r.append(one(int(sys.argv[2])))
print((statistics.median(r) - statistics.median(d)) * 1e6)
"#;
    let out = tokio::process::Command::new(b.args.peer.join("python"))
        .args(["-c", SCRIPT, &b.bed.port.to_string(), &tap.port.to_string()])
        .output()
        .await
        .expect("run the relay measurement");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(f64::NAN)
}
