//! RTC callback benchmarks: the real exporter (polling and HTTP, in this process) on a loopback
//! port, the in-process simulated OpenAPI, and the simulator's signed callback sender. They
//! print figures and the goal next to them; they do not gate.
//!
//! Run with `cargo bench --bench callbacks` (about three minutes). The rows:
//!
//! 1. **Callback to first poll** — `RecordStarted` for one unknown running task at a time, at
//!    an idle budget: the time from sending the delivery to the first `GetRecordTask` of that
//!    task arriving at the simulator (goal ≤ 1 s), median and p99, and the delivery's own
//!    answer time.
//! 2. **API calls per finished task** — the same world twice (record tasks starting over the
//!    run, ending, files uploaded after the end; one in ten fails to start), intervals scaled
//!    down 15×: once with callbacks and an empty target list, once without callbacks and each
//!    target registered the moment its task starts. Requests the simulator saw per finished
//!    task in each mode, their ratio, and how many tasks end with their final file sizes.
//! 3. **Callbacks absorbed** — several concurrent clients send signed, distinct deliveries as
//!    fast as answers come for a fixed time while listed targets are polled at the full budget
//!    and `/metrics` is scraped four times a second, on an on-disk store: accepted/s, answer
//!    latency p50/p99, and whether the exporter's `accepted` counter equals the deliveries
//!    answered 200 (none lost).
//!
//! Without the `--bench` argument that `cargo bench` passes (so under `cargo test
//! --all-targets`, in a debug build) every row runs at smoke size for a few seconds, to prove
//! the bench still works; its figures mean nothing.

mod common;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use volc_rtc_exporter::callbacks::settings::{CallbackSettings, KeySource, DEFAULT_PATH};
use volc_rtc_exporter::clock::{now_ms, system_time_to_ms};
use volc_rtc_exporter::config::{default_budget, CredentialSource, Endpoint, Settings};
use volc_rtc_exporter::credentials::Secret;
use volc_rtc_exporter::metrics::own::Telemetry;
use volc_rtc_exporter::model::{Action, Outcome, Target};
use volc_rtc_exporter::runtime::{self, Exporter, ExporterError};
use volc_rtc_exporter::sim::scenario::sim_credentials;
use volc_rtc_exporter::sim::{
    self, stop_reason, CallbackSender, Clock, SimCallback, SimFile, SimOptions, SimTask, Simulator,
};
use volc_rtc_exporter::state::{self, Source};

use common::{ms, quantile};

const KEY: &str = "bench-callback-key-0123456789abcdef";
const APP: &str = "5f3c2a1b0e9d8c7b6a594837";
const ACTION: Action = Action::GetRecordTask;
/// The defaults' intervals divided by this in row 2 (15 s → 1 s, 60 s → 4 s).
const SCALE: u32 = 15;

/// Sizes and durations of one run.
struct Plan {
    full: bool,
    latency_tasks: usize,
    /// Between two deliveries of row 1 (keeps the budget idle).
    latency_gap: Duration,
    world_tasks: usize,
    /// Row 2's time unit: the scaled world's "15 s".
    unit: Duration,
    storm_run: Duration,
    storm_clients: usize,
    storm_listed: usize,
    storm_pool: usize,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            full: true,
            latency_tasks: 50,
            latency_gap: Duration::from_millis(200),
            world_tasks: 200,
            unit: Duration::from_secs(1),
            storm_run: Duration::from_secs(20),
            storm_clients: 8,
            storm_listed: 1_000,
            storm_pool: 1_000,
        }
    }

    /// A few seconds in all, for `cargo test --all-targets`.
    fn smoke() -> Plan {
        Plan {
            full: false,
            latency_tasks: 5,
            latency_gap: Duration::from_millis(20),
            world_tasks: 20,
            unit: Duration::from_millis(60),
            storm_run: Duration::from_millis(1_500),
            storm_clients: 4,
            storm_listed: 50,
            storm_pool: 50,
        }
    }

    /// `k` units in ms.
    fn units_ms(&self, k: u64) -> i64 {
        i64::try_from(self.unit.as_millis()).unwrap_or(1_000) * k as i64
    }
}

fn main() -> ExitCode {
    let (full, runtime) = common::start("callbacks");
    let Some(runtime) = runtime else {
        return ExitCode::FAILURE;
    };
    let plan = if full { Plan::full() } else { Plan::smoke() };
    match runtime.block_on(run(&plan)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callbacks bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(plan: &Plan) -> anyhow::Result<()> {
    let began = Instant::now();
    let latency = latency_row(plan).await?;
    let calls = calls_row(plan).await?;
    let storm = storm_row(plan).await?;
    println!("\nsummary ({:.0} s in all):", began.elapsed().as_secs_f64());
    println!(
        "  [1] callback -> first poll: median {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} tasks ({} missed); goal <= 1000 ms: {}",
        ms(latency.median),
        ms(latency.p99),
        ms(latency.max),
        latency.tasks,
        latency.missed,
        verdict(latency.missed == 0 && latency.p99 <= Duration::from_secs(1))
    );
    println!(
        "  [2] API calls per finished task: {:.2} with callbacks, {:.2} without; ratio {:.2}",
        calls.with.per_task(),
        calls.without.per_task(),
        calls.with.per_task() / calls.without.per_task().max(f64::MIN_POSITIVE)
    );
    println!(
        "  [3] callbacks absorbed: {:.0}/s accepted, answer p50 {:.2} ms / p99 {:.2} ms; {} sent, {} answered 200, {} counted accepted: {}",
        storm.accepted / storm.run.as_secs_f64(),
        ms(storm.p50),
        ms(storm.p99),
        storm.sent,
        storm.ok,
        storm.accepted,
        if storm.accepted == storm.ok as f64 && storm.ok == storm.sent {
            "none lost"
        } else {
            "LOST"
        }
    );
    if !plan.full {
        println!("(smoke run: figures are not measurements)");
    }
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "missed"
    }
}

// ---------------------------------------------------------------------------------------------
// The pieces: simulator, exporter, scrapes

/// The simulator on a loopback port with `tasks`, no QPS limit, signatures verified.
async fn start_sim(
    tasks: Vec<SimTask>,
    stop: &CancellationToken,
) -> anyhow::Result<(Arc<Simulator>, Endpoint)> {
    let options = SimOptions::default()
        .with_qps_limit(Action::GetRecordTask, None)
        .with_qps_limit(Action::GetWebCastTask, None);
    let simulator = Arc::new(Simulator::new(options, Clock::system()));
    simulator.add_credentials(&sim_credentials());
    simulator.add_tasks(tasks);
    let endpoint = common::serve_simulator(simulator.clone(), stop).await?;
    Ok((simulator, endpoint))
}

/// Settings against `endpoint` with `targets`, the intervals and budget given, and callbacks
/// (default path, [`KEY`], any app) when `callbacks`.
fn settings(
    endpoint: Endpoint,
    targets: Vec<Target>,
    callbacks: bool,
    (active, settle): (Duration, Duration),
    budget: f64,
) -> Settings {
    let mut s = Settings::new(sim_credentials(), CredentialSource::Inline, targets);
    s.api.endpoint = endpoint;
    s.schedule.active_interval = active;
    s.schedule.settle_interval = settle;
    s.budget = [budget, budget];
    if callbacks {
        s.callbacks = Some(CallbackSettings {
            key: Secret::new(KEY),
            key_source: KeySource::Inline,
            path: DEFAULT_PATH.to_owned(),
            app_ids: None,
            labels: Vec::new(),
            // Scaled as the other intervals are: the defaults are 15 s and 1 m.
            active_interval: active * 4,
        });
    }
    s
}

/// The exporter polling and serving on a loopback port.
struct Running {
    exporter: Arc<Exporter>,
    base: String,
    stop: CancellationToken,
    handle: JoinHandle<Result<(), ExporterError>>,
    http: reqwest::Client,
}

impl Running {
    /// With an in-memory store, or the one given.
    async fn start(settings: Settings, opened: Option<state::Opened>) -> anyhow::Result<Self> {
        let telemetry = Arc::new(Telemetry::new());
        let exporter = match opened {
            Some(opened) => Exporter::with_store(settings, telemetry, opened)?,
            None => Exporter::new(settings, telemetry)?,
        };
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        let handle = tokio::spawn(runtime::run_with(
            exporter.clone(),
            listener,
            runtime::WebSetup::default(),
            stop.clone(),
        ));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Running {
            exporter,
            base,
            stop,
            handle,
            http,
        })
    }

    fn callback_url(&self) -> String {
        format!("{}{DEFAULT_PATH}", self.base)
    }

    async fn metrics(&self) -> anyhow::Result<String> {
        let resp = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("/metrics answered {}", resp.status());
        }
        Ok(resp.text().await?)
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.handle).await;
    }
}

/// Sum of the samples of `name` whose line contains every one of `labels`.
fn sum_of(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A sender to `url` that does not retry (each send is one delivery).
fn sender(url: &str) -> anyhow::Result<CallbackSender> {
    let mut s = CallbackSender::new(url, Secret::new(KEY))?;
    s.retries = 0;
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// Row 1: callback to first poll

struct LatencyFigures {
    tasks: usize,
    missed: usize,
    median: Duration,
    p99: Duration,
    max: Duration,
}

async fn latency_row(plan: &Plan) -> anyhow::Result<LatencyFigures> {
    let n = plan.latency_tasks;
    println!(
        "\n[1] callback -> first poll: {n} unknown running record tasks, one RecordStarted at a time every {:?}, budget {}/s (idle)",
        plan.latency_gap,
        default_budget()
    );
    let t0 = system_time_to_ms(volc_rtc_exporter::clock::now());
    let tasks: Vec<SimTask> = (0..n)
        .map(|i| {
            SimTask::record(
                APP,
                &format!("lat-room-{i:03}"),
                &format!("lat-task-{i:03}"),
                t0 - 60_000,
            )
        })
        .collect();
    let stop_sim = CancellationToken::new();
    let (simulator, endpoint) = start_sim(tasks.clone(), &stop_sim).await?;
    // Long intervals: nothing but the first polls reaches the simulator.
    let hour = Duration::from_secs(3600);
    let running = Running::start(
        settings(endpoint, Vec::new(), true, (hour, hour), default_budget()),
        None,
    )
    .await?;
    let sender = sender(&running.callback_url())?;
    let mut to_poll = Vec::with_capacity(n);
    let mut answers = Vec::with_capacity(n);
    let mut missed = 0;
    for task in &tasks {
        let event = task
            .callbacks()
            .into_iter()
            .next()
            .context("a RecordStarted event")?;
        let before = simulator.request_log(ACTION).len();
        let sent = Instant::now();
        let delivery = sender.send(&event).await;
        answers.push(sent.elapsed());
        if delivery.status != Some(200) {
            bail!("delivery answered {:?}", delivery.status);
        }
        let deadline = sent + Duration::from_secs(10);
        loop {
            let log = simulator.request_log(ACTION);
            if let Some(first) = log.get(before) {
                to_poll.push(first.saturating_duration_since(sent));
                break;
            }
            if Instant::now() > deadline {
                missed += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(plan.latency_gap).await;
    }
    running.stop().await;
    stop_sim.cancel();
    to_poll.sort();
    answers.sort();
    let f = LatencyFigures {
        tasks: n,
        missed,
        median: quantile(&to_poll, 0.5),
        p99: quantile(&to_poll, 0.99),
        max: to_poll.last().copied().unwrap_or_default(),
    };
    println!(
        "  delivery sent -> first GetRecordTask at the simulator: median {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms ({} polled, {missed} not within 10 s)",
        ms(f.median),
        ms(f.p99),
        ms(to_poll.first().copied().unwrap_or_default()),
        ms(f.max),
        to_poll.len()
    );
    println!(
        "  delivery answered (200): median {:.2} ms, p99 {:.2} ms",
        ms(quantile(&answers, 0.5)),
        ms(quantile(&answers, 0.99))
    );
    Ok(f)
}

// ---------------------------------------------------------------------------------------------
// Row 2: API calls per finished task, with callbacks and without

#[derive(Debug, Default, Clone, Copy)]
struct ModeFigures {
    tasks: usize,
    requests: u64,
    not_success: u64,
    done: usize,
    final_sizes: usize,
    took: Duration,
}

impl ModeFigures {
    fn per_task(&self) -> f64 {
        self.requests as f64 / self.tasks.max(1) as f64
    }
}

struct CallsFigures {
    with: ModeFigures,
    without: ModeFigures,
}

/// Row 2's world from `t0` (ms): task `i` starts at `2 + 30·i/n` units; one in ten fails to
/// start (ends a unit later, no files); the others run 6–15 units, end with `IdleTimeOut` or
/// `StopByAPI`, and list two files with partial sizes 2 units after the end, final sizes 5
/// units after it.
fn world(plan: &Plan, t0: i64) -> Vec<SimTask> {
    let n = plan.world_tasks;
    let u = |k: u64| plan.units_ms(k);
    (0..n)
        .map(|i| {
            let room = format!("room-{i:04}");
            let id = format!("rec-{i:04}");
            let start = t0 + u(2) + u(30) * i as i64 / n as i64;
            let task = SimTask::record(APP, &room, &id, start);
            if i % 10 == 9 {
                return task.ends(start + u(1), stop_reason::START_TASK_FAILED);
            }
            let end = start + u(6 + (i % 10) as u64);
            let reason = if i % 2 == 0 {
                stop_reason::IDLE_TIME_OUT
            } else {
                stop_reason::STOP_BY_API
            };
            let files: Vec<SimFile> = (0..2)
                .map(|f| {
                    SimFile::object(&format!("{room}/{id}/{f}.mp4"), start, end - start, "host")
                        .size(10_000_000 + i as i64 * 1_000 + f)
                })
                .collect();
            let partial = files.iter().map(|f| f.clone().size(f.size_bytes / 3));
            task.ends(end, reason)
                .files_at(end + u(2), partial.collect())
                .files_at(end + u(5), files)
        })
        .collect()
}

async fn calls_row(plan: &Plan) -> anyhow::Result<CallsFigures> {
    let active = plan.unit;
    let settle = plan.unit * 4;
    println!(
        "\n[2] API calls per finished task: {} record tasks starting over {:?}, running {:?}-{:?} (one in ten fails to start), files final 5 units after the end; active_interval {active:?}, settle_interval {settle:?} (defaults / {SCALE} in the full run)",
        plan.world_tasks,
        plan.unit * 30,
        plan.unit * 6,
        plan.unit * 15
    );
    let with = calls_mode(plan, true).await?;
    let without = calls_mode(plan, false).await?;
    for (name, f) in [
        ("with callbacks", &with),
        ("without (registered at start)", &without),
    ] {
        println!(
            "  {name}: {} requests ({} not successful) for {} tasks = {:.2} per finished task; {} done after {:.1} s; {} show their final file sizes",
            f.requests,
            f.not_success,
            f.tasks,
            f.per_task(),
            f.done,
            f.took.as_secs_f64(),
            f.final_sizes
        );
    }
    println!(
        "  ratio with / without: {:.2}",
        with.per_task() / without.per_task().max(f64::MIN_POSITIVE)
    );
    Ok(CallsFigures { with, without })
}

/// One run of row 2's world: with callbacks (empty list, the simulator's deliveries) or
/// without (each target added as its task starts, as an application registering it).
async fn calls_mode(plan: &Plan, callbacks: bool) -> anyhow::Result<ModeFigures> {
    let t0 = now_ms();
    let tasks = world(plan, t0);
    let n = tasks.len();
    let stop_sim = CancellationToken::new();
    let (simulator, endpoint) = start_sim(tasks.clone(), &stop_sim).await?;
    let running = Running::start(
        settings(
            endpoint,
            Vec::new(),
            callbacks,
            (plan.unit, plan.unit * 4),
            200.0,
        ),
        None,
    )
    .await?;
    let began = Instant::now();
    let tick = plan.unit / 10;
    let stop_driver = CancellationToken::new();
    let driver = if callbacks {
        tokio::spawn(sim::run_callbacks(
            simulator.clone(),
            sender(&running.callback_url())?,
            t0,
            tick,
            stop_driver.clone(),
        ))
    } else {
        let exporter = running.exporter.clone();
        let stop = stop_driver.clone();
        let starts: Vec<(i64, Target)> = tasks
            .iter()
            .map(|t| {
                (
                    t.start_ms,
                    common::record_target(APP, t.room_id.clone(), t.task_id.clone(), Vec::new()),
                )
            })
            .collect();
        tokio::spawn(async move {
            let mut next = 0;
            while next < starts.len() {
                let now = now_ms();
                let due: Vec<Target> = starts[next..]
                    .iter()
                    .take_while(|(at, _)| *at <= now)
                    .map(|(_, t)| t.clone())
                    .collect();
                next += due.len();
                if !due.is_empty() {
                    exporter.add_targets(Source::Api, &due);
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(tick) => {}
                }
            }
        })
    };
    // Until every task is settled (done), or 120 units.
    let deadline = began + plan.unit * 120;
    let mut done = 0;
    let mut text = String::new();
    while Instant::now() < deadline {
        text = running.metrics().await?;
        done = sum_of(&text, "volcengine_rtc_targets", &["phase=\"done\""]) as usize;
        if done == n {
            break;
        }
        tokio::time::sleep(plan.unit / 4).await;
    }
    let took = began.elapsed();
    let requests = simulator.total_requests(ACTION);
    let not_success = requests.saturating_sub(simulator.request_count(ACTION, Outcome::Success));
    stop_driver.cancel();
    let _ = driver.await;
    // Final sizes: each finished recording's total is its final files' total.
    let at = now_ms();
    let mut shown: BTreeMap<String, f64> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("volcengine_rtc_record_size_bytes{"))
    {
        let task = line
            .split("task_id=\"")
            .nth(1)
            .and_then(|r| r.split('"').next());
        let value = line.rsplit(' ').next().and_then(|v| v.parse().ok());
        if let (Some(task), Some(v)) = (task, value) {
            shown.insert(task.to_owned(), v);
        }
    }
    let final_sizes = tasks
        .iter()
        .filter(|t| {
            let truth: i64 = t
                .state_at(at)
                .map_or(0, |s| s.files.iter().map(|f| f.size_bytes).sum::<i64>());
            shown.get(&t.task_id).copied() == Some(truth as f64)
        })
        .count();
    running.stop().await;
    stop_sim.cancel();
    Ok(ModeFigures {
        tasks: n,
        requests,
        not_success,
        done,
        final_sizes,
        took,
    })
}

// ---------------------------------------------------------------------------------------------
// Row 3: callbacks absorbed while scrapes and polls go on

struct StormFigures {
    run: Duration,
    sent: u64,
    ok: u64,
    accepted: f64,
    p50: Duration,
    p99: Duration,
}

async fn storm_row(plan: &Plan) -> anyhow::Result<StormFigures> {
    let t0 = system_time_to_ms(volc_rtc_exporter::clock::now());
    // Listed targets, all running: polled at the full budget throughout.
    let listed: Vec<SimTask> = (0..plan.storm_listed)
        .map(|i| {
            SimTask::record(
                APP,
                &format!("listed-{i:05}"),
                &format!("rec-{i:05}"),
                t0 - 60_000,
            )
        })
        .collect();
    // The pool the deliveries name: half running, half ended with two files.
    let pool: Vec<SimTask> = (0..plan.storm_pool)
        .map(|i| {
            let (room, id) = (format!("pool-{i:05}"), format!("cb-{i:05}"));
            let task = SimTask::record(APP, &room, &id, t0 - 600_000);
            if i % 2 == 0 {
                return task;
            }
            let files = (0..2)
                .map(|f| {
                    SimFile::object(&format!("{room}/{f}.mp4"), t0 - 600_000, 500_000, "u")
                        .size(1_000_000 + f)
                })
                .collect();
            task.ends(t0 - 100_000, stop_reason::IDLE_TIME_OUT)
                .files_at(t0 - 90_000, files)
        })
        .collect();
    let events: Vec<SimCallback> = pool.iter().flat_map(SimTask::callbacks).collect();
    let budget = 50.0;
    println!(
        "\n[3] callbacks absorbed: {} clients sending distinct signed deliveries (RecordStarted / RecordStopped for {} unlisted tasks) for {:?}, while {} listed running targets are polled (budget {budget}/s, active_interval 1s) and /metrics is scraped every 250 ms; on-disk store",
        plan.storm_clients,
        pool.len(),
        plan.storm_run,
        listed.len()
    );
    let targets: Vec<Target> = listed
        .iter()
        .map(|t| common::record_target(APP, t.room_id.clone(), t.task_id.clone(), Vec::new()))
        .collect();
    let stop_sim = CancellationToken::new();
    let (simulator, endpoint) =
        start_sim(listed.into_iter().chain(pool).collect(), &stop_sim).await?;
    let dir = std::env::temp_dir().join(format!("volc-callbacks-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opened = state::open(&dir, state::WriterConfig::default())?;
    let one = Duration::from_secs(1);
    let running = Running::start(
        settings(endpoint, targets, true, (one, one * 4), budget),
        Some(opened),
    )
    .await?;
    // Let the first polls begin.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stop = CancellationToken::new();
    let scraper = {
        let http = running.http.clone();
        let url = format!("{}/metrics", running.base);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut took = Vec::new();
            while !stop.is_cancelled() {
                let at = Instant::now();
                if let Ok(r) = http.get(&url).send().await {
                    if r.status().is_success() && r.bytes().await.is_ok() {
                        took.push(at.elapsed());
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            took
        })
    };
    let events = Arc::new(events);
    let polls_before = simulator.total_requests(ACTION);
    let began = Instant::now();
    let until = began + plan.storm_run;
    let mut clients = Vec::new();
    for c in 0..plan.storm_clients {
        let sender = sender(&running.callback_url())?;
        let events = events.clone();
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut sent, mut ok) = (0u64, 0u64);
            let mut i = 0usize;
            while Instant::now() < until {
                let mut event = events[(c * 7_919 + i) % events.len()].clone();
                event.event_id = format!("storm-{c}-{i}");
                let at = Instant::now();
                let delivery = sender.send(&event).await;
                latencies.push(at.elapsed());
                sent += 1;
                ok += u64::from(delivery.status == Some(200));
                i += 1;
            }
            (sent, ok, latencies)
        }));
    }
    let (mut sent, mut ok, mut latencies) = (0, 0, Vec::new());
    for c in clients {
        let (s, o, l) = c.await?;
        sent += s;
        ok += o;
        latencies.extend(l);
    }
    let run = began.elapsed();
    let polls = simulator.total_requests(ACTION) - polls_before;
    stop.cancel();
    let mut scrapes = scraper.await?;
    let text = running.metrics().await?;
    let accepted = sum_of(
        &text,
        "volcengine_rtc_callbacks_total",
        &["outcome=\"accepted\""],
    );
    let refused = sum_of(&text, "volcengine_rtc_callbacks_total", &[]) - accepted;
    let discovered = sum_of(&text, "volcengine_rtc_targets", &[]) as usize;
    running.stop().await;
    stop_sim.cancel();
    let _ = std::fs::remove_dir_all(&dir);
    latencies.sort();
    scrapes.sort();
    let f = StormFigures {
        run,
        sent,
        ok,
        accepted,
        p50: quantile(&latencies, 0.5),
        p99: quantile(&latencies, 0.99),
    };
    println!(
        "  {sent} deliveries in {:.1} s: {ok} answered 200, {:.0} counted accepted, {refused:.0} otherwise; {:.0} accepted/s",
        run.as_secs_f64(),
        f.accepted,
        f.accepted / run.as_secs_f64()
    );
    println!(
        "  answer latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(f.p50),
        ms(quantile(&latencies, 0.9)),
        ms(f.p99),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!(
        "  meanwhile: {polls} polls ({:.1}/s), {} scrapes (p50 {:.1} ms, max {:.1} ms); {discovered} targets at the end",
        polls as f64 / run.as_secs_f64(),
        scrapes.len(),
        ms(quantile(&scrapes, 0.5)),
        ms(scrapes.last().copied().unwrap_or_default())
    );
    Ok(f)
}
