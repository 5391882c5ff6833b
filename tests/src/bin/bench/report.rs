//! BENCHMARKS.md: the budgets with PASS/FAIL, the machine, the commands, one section per
//! figure, and the hand-written analysis.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// One budget line.
pub struct Budget {
    pub ok: bool,
    pub what: String,
    pub measured: String,
    pub limit: String,
}

#[derive(Default)]
pub struct Report {
    pub budgets: Vec<Budget>,
    pub sections: String,
}

impl Report {
    /// Records a budget and prints its line.
    pub fn budget(&mut self, ok: bool, what: &str, measured: String, limit: &str) -> bool {
        println!(
            "{:<5} {what:<58} {measured:<32} budget {limit}",
            if ok { "PASS" } else { "FAIL" }
        );
        self.budgets.push(Budget {
            ok,
            what: what.to_string(),
            measured,
            limit: limit.to_string(),
        });
        ok
    }

    pub fn section(&mut self, text: &str) {
        self.sections.push_str(text);
        if !text.ends_with('\n') {
            self.sections.push('\n');
        }
        self.sections.push('\n');
    }
}

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The machine, as a Markdown list.
pub fn machine(load_before: &str, python: &Path) -> String {
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
    let load_after = read("/proc/loadavg");
    let peer = run(
        &python.display().to_string(),
        &[
            "-c",
            "import sys, boto3, botocore, requests, awslambdaric; print(f'Python {sys.version.split()[0]}, boto3 {boto3.__version__}, botocore {botocore.__version__}, requests {requests.__version__}, awslambdaric {awslambdaric.__version__}')",
        ],
    )
    .unwrap_or_else(|| "unknown".into());
    let rustc = run("rustc", &["-V"]).unwrap_or_else(|| "unknown".into());
    let lambda = std::env::var("BENCH_CARGO_LAMBDA").unwrap_or_else(|_| "unknown".into());
    let commit = run("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = run("git", &["status", "--porcelain"])
        .map(|s| s.lines().count())
        .unwrap_or(0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "- CPU: {model}, {nproc} cores seen by the process (`nproc`); memory {:.1} GiB; Linux {kernel}",
        mem_kib as f64 / 1024.0 / 1024.0
    );
    let _ = writeln!(
        s,
        "- Load average (1, 5, 15 min) before: {}; after: {} (the machine is shared: other builds may run)",
        first3(load_before),
        first3(&load_after)
    );
    let _ = writeln!(
        s,
        "- deploy-guard: {rustc}; {lambda}; commit {commit}{}",
        if dirty > 0 {
            format!(" with {dirty} uncommitted paths")
        } else {
            String::new()
        }
    );
    let _ = writeln!(s, "- Peer: {peer}");
    s
}

fn first3(loadavg: &str) -> String {
    loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The whole file.
pub fn render(report: &Report, header: &str, machine: &str, analysis: &str) -> String {
    let mut s = String::new();
    s.push_str(header);
    s.push_str("\n## Budgets\n\n");
    let failed = report.budgets.iter().filter(|b| !b.ok).count();
    let _ = writeln!(
        s,
        "{} of {} budgets met{}.\n",
        report.budgets.len() - failed,
        report.budgets.len(),
        if failed > 0 {
            "; the misses are explained under Analysis"
        } else {
            ""
        }
    );
    s.push_str("| | budget | measured | limit |\n|---|---|---|---|\n");
    for b in &report.budgets {
        let _ = writeln!(
            s,
            "| **{}** | {} | {} | {} |",
            if b.ok { "PASS" } else { "FAIL" },
            b.what,
            b.measured,
            b.limit
        );
    }
    s.push_str("\n## The machine\n\n");
    s.push_str(machine);
    s.push('\n');
    s.push_str(&report.sections);
    if !analysis.trim().is_empty() {
        s.push_str(analysis);
        if !s.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}
