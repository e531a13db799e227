//! End-to-end benchmarks: the real exporter against the in-process simulated
//! OpenAPI over loopback. They print figures and the bars next to them; they do not gate.
//!
//! Run with `cargo bench --bench exporter` (about seven minutes); name rows to run only those:
//! `cargo bench --bench exporter -- budget metrics calls restart`. The rows:
//!
//! 1. **Budget use** — 5,000 running record targets, budget 60/s, the simulator limiting
//!    `GetRecordTask` to 60 per sliding second (so any overshoot shows up as 429s), for
//!    `VOLC_BENCH_BUDGET_SECS` seconds (default 60): achieved requests/s in the steady state,
//!    sliding one-second windows of arrivals over 60, 429s, arrival spacing, scheduler lag.
//! 2. **`/metrics`** — 10,000 settled record targets × 3 files, served by the real binary
//!    (a child process polling the simulator): scrape latency and body size over HTTP, with and
//!    without gzip, plus the median of in-process renders of the same data.
//! 3. **Memory** — that child's VmRSS and VmHWM after every target was polled once, and again
//!    after the scrapes.
//! 4. **API calls** — 1,000 record targets, 10 % running and 90 % finished, with intervals
//!    scaled down 15× (`active_interval` 1 s, `settle_interval` 4 s) for `VOLC_BENCH_CALLS_SECS`
//!    seconds (default 240, one scaled hour): requests the simulator saw against polling every
//!    target every `active_interval`. `cargo bench --bench calls` gives the same figure from
//!    the scheduler alone in synthetic time.
//!
//! 5. **Restart** — 10,000 finished record targets polled until done, the binary stopped and
//!    started again on the same store: time until all are served again (bar ≤ 2 s), API calls
//!    in the first minute after (bar: none), memory, and the store's bytes per target.
//!
//! Without the `--bench` argument that `cargo bench` passes (so under `cargo test
//! --all-targets`) every row runs at smoke size for a few seconds, to prove the bench still
//! works; its figures mean nothing.

mod common;

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use volc_rtc_exporter::budget::max_starts_in_window;
use volc_rtc_exporter::config::{CredentialSource, Endpoint, Settings};
use volc_rtc_exporter::metrics::own::Telemetry;
use volc_rtc_exporter::model::{Action, Kind, Outcome};
use volc_rtc_exporter::runtime::Exporter;
use volc_rtc_exporter::sim::{self, Scenario, SimOptions};

use common::records::{
    config_yaml, http_client, scenario, scrape, start_sim, unlimited_sim_options, wait_for_phase,
};
use common::{exporter_binary, mib, ms, quantile, rss_kib, ChildExporter};

const SECOND: Duration = Duration::from_secs(1);
const BUDGET: f64 = 60.0;
const ACTION: Action = Action::GetRecordTask;
/// The throughput bar: at least 95 % of the budget used in the steady state. Measured in wall
/// time, so it lives here and not in the tests (a loaded 2-core CI machine can miss it).
const RATE_BAR: f64 = 0.95 * BUDGET;

/// Sizes and durations of one run.
struct Plan {
    full: bool,
    budget_targets: usize,
    budget_run: Duration,
    budget_active: Duration,
    metrics_targets: usize,
    metrics_active: Duration,
    metrics_budget: f64,
    scrapes: usize,
    renders: usize,
    calls_targets: usize,
    calls_run: Duration,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            full: true,
            budget_targets: 5_000,
            budget_run: Duration::from_secs(env_secs("VOLC_BENCH_BUDGET_SECS", 60)),
            budget_active: Duration::from_secs(15),
            metrics_targets: 10_000,
            metrics_active: Duration::from_secs(15),
            metrics_budget: 2_000.0,
            scrapes: 31,
            renders: 31,
            calls_targets: 1_000,
            calls_run: Duration::from_secs(env_secs("VOLC_BENCH_CALLS_SECS", 240)),
        }
    }

    /// A few seconds in all, for `cargo test --all-targets`.
    fn smoke() -> Plan {
        Plan {
            full: false,
            budget_targets: 200,
            budget_run: Duration::from_secs(2),
            budget_active: Duration::from_secs(2),
            metrics_targets: 200,
            metrics_active: Duration::from_secs(1),
            metrics_budget: 2_000.0,
            scrapes: 2,
            renders: 2,
            calls_targets: 100,
            calls_run: Duration::from_secs(2),
        }
    }
}

/// A whole number of seconds from the environment, or `default` when unset or not a positive
/// number.
fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&n| n >= 2)
        .unwrap_or(default)
}

fn main() -> ExitCode {
    let (full, runtime) = common::start("exporter");
    let Some(runtime) = runtime else {
        return ExitCode::FAILURE;
    };
    let plan = if full { Plan::full() } else { Plan::smoke() };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    match runtime.block_on(run(&plan, cores)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exporter bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Row names given on the command line (`cargo bench --bench exporter -- budget calls`); all
/// rows when none is.
const ROWS: [&str; 4] = ["budget", "metrics", "calls", "restart"];

fn selected_rows() -> anyhow::Result<Vec<String>> {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if let Some(bad) = named.iter().find(|a| !ROWS.contains(&a.as_str())) {
        bail!("unknown row `{bad}`; the rows are {}", ROWS.join(", "));
    }
    if named.is_empty() {
        Ok(ROWS.iter().map(|r| r.to_string()).collect())
    } else {
        Ok(named)
    }
}

async fn run(plan: &Plan, cores: usize) -> anyhow::Result<()> {
    let rows = selected_rows()?;
    let wants = |row: &str| rows.iter().any(|r| r == row);
    let budget = match wants("budget") {
        true => Some(budget_row(plan).await.context("budget row")?),
        false => None,
    };
    let metrics = match wants("metrics") {
        true => Some(
            metrics_rows(plan)
                .await
                .context("/metrics and memory rows")?,
        ),
        false => None,
    };
    let calls = match wants("calls") {
        true => Some(calls_row(plan).await.context("API calls row")?),
        false => None,
    };
    let restart = match wants("restart") {
        true => Some(restart_row(plan).await.context("restart row")?),
        false => None,
    };
    summary(
        plan,
        cores,
        budget.as_ref(),
        metrics.as_ref(),
        calls.as_ref(),
    );
    if let Some(r) = restart {
        println!(
            "| restart ({} finished targets) | all served {:.2} s after the start; {} API calls in the first {:.0} s; VmRSS {:.1} MiB, VmHWM {:.1} MiB; store {} bytes ({:.0} B/target) | <= 2 s, 0 calls | {} |",
            r.targets,
            r.served.as_secs_f64(),
            r.calls,
            r.watched.as_secs_f64(),
            r.rss.map_or(0.0, |(rss, _)| mib(rss)),
            r.rss.map_or(0.0, |(_, hwm)| mib(hwm)),
            r.store_bytes,
            r.store_bytes as f64 / r.targets.max(1) as f64,
            match (plan.full, r.served <= 2 * SECOND && r.calls == 0) {
                (false, _) => "n/a (smoke)",
                (true, true) => "met",
                (true, false) => "MISSED",
            }
        );
    }
    Ok(())
}

/// The restart row's figures.
struct RestartFigures {
    targets: usize,
    served: Duration,
    calls: u64,
    watched: Duration,
    rss: Option<(u64, u64)>,
    store_bytes: u64,
}

/// Row 5, **restart**: the release binary polls 10,000 finished record targets until every one
/// is done, stops (SIGTERM), and starts again on the same store with the simulator still
/// there: how long until `/metrics` serves all 10,000 again, the API calls in the first
/// minute after the restart (done tasks are never polled again), and the child's memory.
async fn restart_row(plan: &Plan) -> anyhow::Result<RestartFigures> {
    let n = plan.metrics_targets;
    println!("\n[5] restart: {n} finished record targets, the release binary, its store on disk");
    let stop_sim = CancellationToken::new();
    let scenario = scenario(n, volc_rtc_exporter::clock::now(), |_| false);
    let (simulator, endpoint) = start_sim(&scenario, unlimited_sim_options(), &stop_sim).await?;
    let dir = std::env::temp_dir().join(format!(
        "volc-rtc-exporter-bench-restart-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = restart_measurements(plan, &simulator, &scenario, &endpoint, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    stop_sim.cancel();
    result
}

async fn restart_measurements(
    plan: &Plan,
    simulator: &sim::Simulator,
    scenario: &Scenario,
    endpoint: &Endpoint,
    dir: &Path,
) -> anyhow::Result<RestartFigures> {
    let n = plan.metrics_targets;
    let config = dir.join("config.yaml");
    let mut yaml = child_config(scenario, endpoint, plan);
    yaml = yaml.replacen("schedule:\n", "schedule:\n  settle_interval: 1s\n", 1);
    std::fs::write(&config, yaml).with_context(|| format!("writing {}", config.display()))?;
    let storage = dir.join("data");
    let bin = exporter_binary()?;
    let http = http_client(Duration::from_secs(30))?;

    // First run: poll until every target is done, then stop cleanly.
    let (mut child, addr) = ChildExporter::start_with_store(&bin, &config, &storage)?;
    let url = format!("http://{addr}/metrics");
    let took = wait_for_phase(&mut child, &http, &url, "done", n).await?;
    println!(
        "  first run: all {n} done after {:.1} s",
        took.as_secs_f64()
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.pid().to_string())
        .status();
    let stopped = Instant::now();
    while child.exited().is_none() {
        if stopped.elapsed() > Duration::from_secs(30) {
            bail!("the first run did not stop within 30 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let store_bytes = std::fs::metadata(storage.join("state.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    let calls_before = simulator.total_requests(Action::GetRecordTask);

    // Second run: time until all n are served, then the calls in the first minute.
    let spawned = Instant::now();
    let (mut child, addr) = ChildExporter::start_with_store(&bin, &config, &storage)?;
    let url = format!("http://{addr}/metrics");
    let served = loop {
        let (_, body, _) = scrape(&http, &url, false).await?;
        let body = String::from_utf8_lossy(&body);
        let statuses = body
            .lines()
            .filter(|l| l.starts_with("volcengine_rtc_task_status{"))
            .count();
        if statuses >= n {
            break spawned.elapsed();
        }
        if spawned.elapsed() > Duration::from_secs(120) || child.exited().is_some() {
            bail!(
                "{statuses} of {n} served after the restart; last lines:\n{}",
                child.tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let watched = if plan.full {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(2)
    };
    tokio::time::sleep_until(spawned + watched).await;
    let calls = simulator.total_requests(Action::GetRecordTask) - calls_before;
    let rss = rss_kib(child.pid());
    println!(
        "  restart: all {n} served {:.2} s after the start; {calls} API calls in the first {:.0} s; store {store_bytes} bytes",
        served.as_secs_f64(),
        watched.as_secs_f64()
    );
    Ok(RestartFigures {
        targets: n,
        served,
        calls,
        watched,
        rss,
        store_bytes,
    })
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

fn settings_for(scenario: &Scenario, endpoint: Endpoint, budget: f64) -> Settings {
    let mut settings = Settings::new(
        scenario.credentials.clone(),
        CredentialSource::Inline,
        scenario.targets.clone(),
    );
    settings.api.endpoint = endpoint;
    settings.budget = [budget, budget];
    settings
}

/// The value of the first sample line of `name` whose labels contain every one of `labels`.
fn sample(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// Row 1: budget use

struct BudgetFigures {
    targets: usize,
    run: Duration,
    arrivals: usize,
    steady_rate: f64,
    windows_over: usize,
    /// Windows over 60 among arrivals after the first second.
    windows_over_steady: usize,
    max_in_window: usize,
    throttled_sim: u64,
    throttled_exporter: u64,
    gaps_ms: [f64; 5],
    lag_end: f64,
    lag_max: f64,
    rate_end: f64,
}

async fn budget_row(plan: &Plan) -> anyhow::Result<BudgetFigures> {
    let n = plan.budget_targets;
    println!(
        "\n[1] budget use: {n} running record targets, budget {BUDGET}/s, simulator QPS limit 60, \
         active_interval {:?}, {:?} run",
        plan.budget_active, plan.budget_run
    );
    let stop_sim = CancellationToken::new();
    let scenario = sim::bulk_scenario(n, 0, 1.0, 0, volc_rtc_exporter::clock::now());
    let options = SimOptions {
        qps_limit: volc_rtc_exporter::model::PerAction::new(|_| Some(60)),
        verify_signatures: true,
        request_log_capacity: 1_000_000,
        ..SimOptions::default()
    };
    let (simulator, endpoint) = start_sim(&scenario, options, &stop_sim).await?;
    let mut settings = settings_for(&scenario, endpoint, BUDGET);
    settings.schedule.active_interval = plan.budget_active;
    let telemetry = Arc::new(Telemetry::new());
    let exporter = Exporter::new(settings, telemetry.clone())?;

    let stop = CancellationToken::new();
    let started = Instant::now();
    let polling = tokio::spawn({
        let exporter = exporter.clone();
        let stop = stop.clone();
        async move { exporter.poll(stop).await }
    });
    let end = started + plan.budget_run;
    let lag_gauge = telemetry
        .scheduler_lag
        .with_label_values(&[ACTION.as_str()]);
    let mut lag_max: f64 = 0.0;
    let mut tick = tokio::time::interval_at(started + SECOND, SECOND);
    while Instant::now() < end {
        tick.tick().await;
        exporter.refresh_gauges();
        lag_max = lag_max.max(lag_gauge.get());
    }
    exporter.refresh_gauges();
    let lag_end = lag_gauge.get();
    let rate_end = exporter.limiters[ACTION].rate();
    stop.cancel();
    let _ = polling.await;
    stop_sim.cancel();

    let arrivals = simulator.request_log(ACTION);
    let steady_from = started + SECOND;
    let steady = arrivals
        .iter()
        .filter(|&&t| t >= steady_from && t < end)
        .count();
    let steady_rate = steady as f64 / (end - steady_from).as_secs_f64();
    let over = windows_over(&arrivals, SECOND, BUDGET as usize);
    // Where each window over the budget begins, and how long its first 61 arrivals took.
    let over_at: Vec<(f64, f64)> = over
        .iter()
        .filter_map(|&lo| {
            let first = arrivals.get(lo)?;
            let last = arrivals.get(lo + BUDGET as usize)?;
            Some(((*first - started).as_secs_f64(), ms(*last - *first)))
        })
        .collect();
    let max_in_window = max_starts_in_window(&arrivals, SECOND);
    let steady_arrivals: Vec<Instant> = arrivals
        .iter()
        .copied()
        .filter(|&t| t >= steady_from)
        .collect();
    let windows_over_steady = windows_over(&steady_arrivals, SECOND, BUDGET as usize).len();
    let mut gaps: Vec<Duration> = arrivals
        .windows(2)
        .filter_map(|w| match w {
            [a, b] if *a >= steady_from && *b < end => Some(*b - *a),
            _ => None,
        })
        .collect();
    gaps.sort();
    let gaps_ms = [0.0, 0.01, 0.5, 0.99, 1.0].map(|q| ms(quantile(&gaps, q)));
    let throttled_sim = simulator.request_count(ACTION, Outcome::Throttled);
    let throttled_exporter = telemetry
        .requests
        .with_label_values(&[ACTION.as_str(), Outcome::Throttled.as_str()])
        .get();

    let f = BudgetFigures {
        targets: n,
        run: plan.budget_run,
        arrivals: arrivals.len(),
        steady_rate,
        windows_over: over.len(),
        windows_over_steady,
        max_in_window,
        throttled_sim,
        throttled_exporter,
        gaps_ms,
        lag_end,
        lag_max,
        rate_end,
    };
    println!(
        "  requests the simulator saw: {} (all outcomes, including the shutdown grace)",
        f.arrivals
    );
    println!(
        "  achieved: {:.2} requests/s from 1 s to {:.0} s (bar >= {:.0}, 95 % of the budget)",
        f.steady_rate,
        f.run.as_secs_f64(),
        RATE_BAR
    );
    println!(
        "  sliding 1 s windows of arrivals over 60: {} ({} after the first second; most in one window: {}; bar 0)",
        f.windows_over, f.windows_over_steady, f.max_in_window
    );
    for (at, span) in over_at.iter().take(5) {
        println!("    one starts {at:.3} s into the run: 61 arrivals within {span:.2} ms");
    }
    println!(
        "  (arrival times at the simulator include loopback and scheduling jitter; the exporter's \
         own start times are not exposed, the limiter's guarantee on them is unit-tested)"
    );
    println!(
        "  429s: {} answered by the simulator, {} seen by the exporter; rate in force at the end {:.1}/s",
        f.throttled_sim, f.throttled_exporter, f.rate_end
    );
    println!(
        "  arrival spacing (ideal {:.2} ms): min {:.2}, p1 {:.2}, median {:.2}, p99 {:.2}, max {:.2} ms",
        1e3 / BUDGET,
        f.gaps_ms[0],
        f.gaps_ms[1],
        f.gaps_ms[2],
        f.gaps_ms[3],
        f.gaps_ms[4]
    );
    println!(
        "  scheduler lag: {:.1} s at the end, {:.1} s at most (demand {:.0}/s exceeds the budget by design)",
        f.lag_end,
        f.lag_max,
        n as f64 / plan.budget_active.as_secs_f64()
    );
    Ok(f)
}

/// The indices `i` whose window `[sorted[i], sorted[i] + window)` holds more than `limit`
/// arrivals (`sorted` ascending). Any window over the limit contains one of these, so none
/// means no window at all is over.
fn windows_over(sorted: &[Instant], window: Duration, limit: usize) -> Vec<usize> {
    let mut over = Vec::new();
    let mut hi = 0;
    for (lo, &start) in sorted.iter().enumerate() {
        hi = hi.max(lo);
        while sorted.get(hi).is_some_and(|&t| t - start < window) {
            hi += 1;
        }
        if hi - lo > limit {
            over.push(lo);
        }
    }
    over
}

// ---------------------------------------------------------------------------------------------
// Rows 2 and 3: /metrics and memory, on the real binary

struct Scrapes {
    times: Vec<Duration>,
    bytes: usize,
}

impl Scrapes {
    fn p(&self, q: f64) -> f64 {
        ms(quantile(&self.times, q))
    }
}

struct MetricsFigures {
    targets: usize,
    poll_all: Duration,
    series: usize,
    plain: Scrapes,
    gzip: Scrapes,
    renders: Vec<Duration>,
    render_bytes: usize,
    rss_polled: Option<(u64, u64)>,
    rss_scraped: Option<(u64, u64)>,
    child_rss_metric: Option<f64>,
}

fn gunzip(body: &[u8]) -> anyhow::Result<String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut text)
        .context("decompressing the gzip body")?;
    Ok(text)
}

/// The config file the child runs on: the metrics rows' budget and active interval.
fn child_config(scenario: &Scenario, endpoint: &Endpoint, plan: &Plan) -> String {
    let schedule = format!("  active_interval: {}ms", plan.metrics_active.as_millis());
    config_yaml(scenario, endpoint, plan.metrics_budget, &schedule)
}

async fn metrics_rows(plan: &Plan) -> anyhow::Result<MetricsFigures> {
    let n = plan.metrics_targets;
    println!(
        "\n[2,3] /metrics and memory: {n} settled record targets x 3 files, the release binary as \
         a child process; budget {}/s, simulator QPS limit off, signatures verified",
        plan.metrics_budget
    );
    let stop_sim = CancellationToken::new();
    let scenario = scenario(n, volc_rtc_exporter::clock::now(), |_| false);
    let options = unlimited_sim_options();
    let (simulator, endpoint) = start_sim(&scenario, options, &stop_sim).await?;

    let dir = std::env::temp_dir().join(format!("volc-rtc-exporter-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("config.yaml");
    std::fs::write(&config, child_config(&scenario, &endpoint, plan))
        .with_context(|| format!("writing {}", config.display()))?;
    let result = child_measurements(plan, &simulator, &config).await;
    let _ = std::fs::remove_dir_all(&dir);
    let (child_figures, series) = result?;

    // The same data rendered in this process, for comparison.
    let (renders, render_bytes) = in_process_renders(plan, &scenario, endpoint).await?;
    stop_sim.cancel();
    let ChildFigures {
        poll_all,
        plain,
        gzip,
        rss_polled,
        rss_scraped,
        child_rss_metric,
    } = child_figures;
    let f = MetricsFigures {
        targets: n,
        poll_all,
        series,
        plain,
        gzip,
        renders,
        render_bytes,
        rss_polled,
        rss_scraped,
        child_rss_metric,
    };
    for (label, s) in [("plain", &f.plain), ("gzip ", &f.gzip)] {
        println!(
            "  scrape {label}: median {:.1} ms, p90 {:.1} ms, min {:.1}, max {:.1} over {} scrapes; body {} bytes ({:.1} MB)",
            s.p(0.5),
            s.p(0.9),
            s.p(0.0),
            s.p(1.0),
            s.times.len(),
            s.bytes,
            s.bytes as f64 / 1e6
        );
    }
    println!(
        "  in-process render: median {:.1} ms, p90 {:.1} ms over {} renders, {} bytes (bar: p50 <= 100 ms)",
        ms(quantile(&f.renders, 0.5)),
        ms(quantile(&f.renders, 0.9)),
        f.renders.len(),
        f.render_bytes
    );
    Ok(f)
}

struct ChildFigures {
    poll_all: Duration,
    plain: Scrapes,
    gzip: Scrapes,
    rss_polled: Option<(u64, u64)>,
    rss_scraped: Option<(u64, u64)>,
    child_rss_metric: Option<f64>,
}

async fn child_measurements(
    plan: &Plan,
    simulator: &sim::Simulator,
    config: &Path,
) -> anyhow::Result<(ChildFigures, usize)> {
    let n = plan.metrics_targets;
    let bin = exporter_binary()?;
    println!("  binary: {}", bin.display());
    let spawned = Instant::now();
    let (mut child, addr) = ChildExporter::start(&bin, config)?;
    let url = format!("http://{addr}/metrics");
    let http = http_client(Duration::from_secs(60))?;

    // Every target polled once: the simulator saw n requests, then the exporter says so.
    let deadline = spawned + Duration::from_secs(600);
    loop {
        if let Some(status) = child.exited() {
            bail!(
                "the exporter exited ({status}); its last lines:\n{}",
                child.tail()
            );
        }
        if Instant::now() > deadline {
            bail!("targets still new after 10 minutes");
        }
        if simulator.total_requests(ACTION) >= n as u64 {
            let (_, body, _) = scrape(&http, &url, false).await?;
            let text = String::from_utf8_lossy(&body);
            let new = sample(
                &text,
                "volcengine_rtc_targets",
                &["kind=\"record\"", "phase=\"new\""],
            );
            if new == Some(0.0) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let poll_all = spawned.elapsed();
    let rss_polled = rss_kib(child.pid());
    println!(
        "  all {n} targets polled {:.1} s after the start ({} requests); VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        poll_all.as_secs_f64(),
        simulator.total_requests(ACTION),
        rss_polled.map_or(0.0, |r| mib(r.0)),
        rss_polled.map_or(0.0, |r| mib(r.1)),
    );

    let mut plain = Scrapes {
        times: Vec::new(),
        bytes: 0,
    };
    let mut gzip = Scrapes {
        times: Vec::new(),
        bytes: 0,
    };
    let mut last_plain = bytes::Bytes::new();
    let mut last_gzip = bytes::Bytes::new();
    for _ in 0..plan.scrapes {
        let (t, body, gzipped) = scrape(&http, &url, false).await?;
        if gzipped {
            bail!("a scrape without Accept-Encoding came back gzipped");
        }
        plain.times.push(t);
        plain.bytes = body.len();
        last_plain = body;
    }
    for _ in 0..plan.scrapes {
        let (t, body, gzipped) = scrape(&http, &url, true).await?;
        if !gzipped {
            bail!("a scrape with Accept-Encoding: gzip came back uncompressed");
        }
        gzip.times.push(t);
        gzip.bytes = body.len();
        last_gzip = body;
    }
    plain.times.sort();
    gzip.times.sort();
    let rss_scraped = rss_kib(child.pid());
    let text = String::from_utf8_lossy(&last_plain);
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    let child_rss_metric = sample(&text, "process_resident_memory_bytes", &[]);
    let unzipped = gunzip(&last_gzip)?;
    println!(
        "  {series} samples per page; a gzip body decompresses to {} bytes (plain {} bytes)",
        unzipped.len(),
        last_plain.len()
    );
    println!(
        "  after {} + {} scrapes: VmRSS {:.1} MiB, VmHWM {:.1} MiB (process_resident_memory_bytes said {:.1} MiB)",
        plan.scrapes,
        plan.scrapes,
        rss_scraped.map_or(0.0, |r| mib(r.0)),
        rss_scraped.map_or(0.0, |r| mib(r.1)),
        child_rss_metric.unwrap_or(0.0) / 1048576.0
    );
    if let Some(status) = child.exited() {
        bail!(
            "the exporter exited ({status}); its last lines:\n{}",
            child.tail()
        );
    }
    drop(child);
    Ok((
        ChildFigures {
            poll_all,
            plain,
            gzip,
            rss_polled,
            rss_scraped,
            child_rss_metric,
        },
        series,
    ))
}

/// Polls `scenario` once with an exporter in this process, then times renders of `/metrics`
/// into a fresh buffer each, as a scrape does.
async fn in_process_renders(
    plan: &Plan,
    scenario: &Scenario,
    endpoint: Endpoint,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut settings = settings_for(scenario, endpoint, plan.metrics_budget);
    settings.schedule.active_interval = plan.metrics_active;
    let telemetry = Arc::new(Telemetry::new());
    let exporter = Exporter::new(settings, telemetry.clone())?;
    let stop = CancellationToken::new();
    let polling = tokio::spawn({
        let exporter = exporter.clone();
        let stop = stop.clone();
        async move { exporter.poll(stop).await }
    });
    let new = telemetry
        .targets
        .with_label_values(&[Kind::Record.as_str(), "new"]);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        exporter.refresh_gauges();
        if new.get() == 0 {
            break;
        }
        if Instant::now() > deadline {
            stop.cancel();
            bail!("in-process exporter: targets still new after 10 minutes");
        }
    }
    stop.cancel();
    let _ = polling.await;
    let mut times = Vec::with_capacity(plan.renders);
    let mut size = 0;
    for _ in 0..plan.renders {
        let started = Instant::now();
        let mut out = Vec::new();
        exporter.render(&mut out);
        times.push(started.elapsed());
        size = out.len();
        std::hint::black_box(&out);
    }
    times.sort();
    Ok((times, size))
}

// ---------------------------------------------------------------------------------------------
// Row 4: API calls, end to end

struct CallsFigures {
    targets: usize,
    run: Duration,
    requests: u64,
    naive: u64,
    failed: u64,
}

/// How much the schedule is sped up: intervals are `1/SCALE` of the defaults.
const SCALE: u32 = 15;

async fn calls_row(plan: &Plan) -> anyhow::Result<CallsFigures> {
    let n = plan.calls_targets;
    let active = Duration::from_secs(15) / SCALE;
    let settle = Duration::from_secs(60) / SCALE;
    println!(
        "\n[4] API calls: {n} record targets, 10 % running, 90 % finished (files settled), \
         active_interval {active:?}, settle_interval {settle:?} (defaults / {SCALE}), {:?} run = {:.0} min at default intervals",
        plan.calls_run,
        plan.calls_run.as_secs_f64() * f64::from(SCALE) / 60.0
    );
    let stop_sim = CancellationToken::new();
    let scenario = sim::bulk_scenario(n, 0, 0.1, 3, volc_rtc_exporter::clock::now());
    let options = unlimited_sim_options();
    let (simulator, endpoint) = start_sim(&scenario, options, &stop_sim).await?;
    let mut settings = settings_for(&scenario, endpoint, 1_000.0);
    settings.schedule.active_interval = active;
    settings.schedule.settle_interval = settle;
    let telemetry = Arc::new(Telemetry::new());
    let exporter = Exporter::new(settings, telemetry)?;
    let stop = CancellationToken::new();
    let polling = tokio::spawn({
        let exporter = exporter.clone();
        let stop = stop.clone();
        async move { exporter.poll(stop).await }
    });
    tokio::time::sleep(plan.calls_run).await;
    let requests = simulator.total_requests(ACTION);
    stop.cancel();
    let _ = polling.await;
    stop_sim.cancel();
    let failed = requests.saturating_sub(simulator.request_count(ACTION, Outcome::Success));
    let naive = (n as f64 * plan.calls_run.as_secs_f64() / active.as_secs_f64()).round() as u64;
    let f = CallsFigures {
        targets: n,
        run: plan.calls_run,
        requests,
        naive,
        failed,
    };
    println!(
        "  requests: {} ({} not successful); naive: {} (every target every active_interval); {:.1}x fewer (bar >= 5x)",
        f.requests,
        f.failed,
        f.naive,
        ratio(f.naive, f.requests)
    );
    Ok(f)
}

fn ratio(naive: u64, actual: u64) -> f64 {
    if actual == 0 {
        0.0
    } else {
        naive as f64 / actual as f64
    }
}

// ---------------------------------------------------------------------------------------------
// Summary

fn summary(
    plan: &Plan,
    cores: usize,
    b: Option<&BudgetFigures>,
    m: Option<&MetricsFigures>,
    c: Option<&CallsFigures>,
) {
    let verdict = |ok: bool| match (plan.full, ok) {
        (false, _) => "n/a (smoke)",
        (true, true) => "met",
        (true, false) => "MISSED",
    };
    println!(
        "\nsummary ({cores} cores; a shared, noisy machine; {}):",
        if plan.full { "full run" } else { "smoke run" }
    );
    println!("| row | measured | bar | |");
    println!("|---|---|---|---|");
    if let Some(b) = b {
        println!(
            "| budget use ({} targets, {:.0} s) | {:.2} req/s steady, {} windows over 60 ({} after 1 s; max {}), {} × 429, lag {:.0} s at the end | >= 57 req/s, 0 windows over 60 | {} |",
            b.targets,
            b.run.as_secs_f64(),
            b.steady_rate,
            b.windows_over,
            b.windows_over_steady,
            b.max_in_window,
            b.throttled_sim,
            b.lag_end,
            verdict(b.steady_rate >= RATE_BAR && b.windows_over == 0)
        );
    }
    if let Some(m) = m {
        metrics_summary(m, &verdict);
    }
    if let Some(c) = c {
        let calls_ratio = ratio(c.naive, c.requests);
        println!(
            "| API calls ({} targets, 10 % running, {:.0} scaled min) | {} requests vs {} naive: {:.1}x fewer | >= 5x fewer | {} |",
            c.targets,
            c.run.as_secs_f64() * f64::from(SCALE) / 60.0,
            c.requests,
            c.naive,
            calls_ratio,
            verdict(calls_ratio >= 5.0)
        );
    }
    if let Some(m) = m {
        println!(
            "(/metrics: all targets polled {:.1} s after the start; the child's process_resident_memory_bytes said {:.1} MiB)",
            m.poll_all.as_secs_f64(),
            m.child_rss_metric.unwrap_or(0.0) / 1048576.0
        );
    }
}

fn metrics_summary(m: &MetricsFigures, verdict: &dyn Fn(bool) -> &'static str) {
    let render_p50 = ms(quantile(&m.renders, 0.5));
    let rss = m.rss_scraped.or(m.rss_polled);
    let hwm_mib = rss.map_or(f64::NAN, |r| mib(r.1));
    println!(
        "| /metrics ({} targets x 3 files, {} samples) | render p50 {:.1} ms in process; scrape p50 {:.1} ms / p90 {:.1} ms plain ({:.1} MB), {:.1} / {:.1} ms gzip ({:.1} MB) | render p50 <= 100 ms | {} |",
        m.targets,
        m.series,
        render_p50,
        m.plain.p(0.5),
        m.plain.p(0.9),
        m.plain.bytes as f64 / 1e6,
        m.gzip.p(0.5),
        m.gzip.p(0.9),
        m.gzip.bytes as f64 / 1e6,
        verdict(render_p50 <= 100.0)
    );
    println!(
        "| memory ({} targets) | VmRSS {:.1} MiB after polling, {:.1} MiB after scrapes; VmHWM {:.1} MiB | <= 100 MiB (judged on VmHWM) | {} |",
        m.targets,
        m.rss_polled.map_or(f64::NAN, |r| mib(r.0)),
        rss.map_or(f64::NAN, |r| mib(r.0)),
        hwm_mib,
        verdict(hwm_mib <= 100.0)
    );
}
