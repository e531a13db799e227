//! Three checks of issue 18, with the real binary as a child process against the in-process
//! simulated OpenAPI, its store on disk (`--storage.path`):
//!
//! 1. **memory** — 10,000 record targets × 3 files (≈ 150,000 series), all finished, polled
//!    until every one is done; then 15 identity and 15 gzip scrapes. Reports the child's VmRSS
//!    and VmHWM (bar: VmRSS ≤ 48 MiB) and its anonymous and file-backed shares
//!    (`/proc/PID/smaps_rollup`).
//! 2. **pauses** — 10,000 record targets × 3 files, one in ten (1,000) running. The exporter
//!    first polls all of them at a high budget with short intervals, so the finished ones are
//!    done within seconds; then the config is reloaded (`POST /-/reload`) with a budget of 55/s
//!    and the default intervals, so the running targets are polled at 55/s. After a warm-up,
//!    the bench pauses `VOLC_BENCH_PAUSE_SECS` (default 15) and times the first gzip scrape
//!    after the pause, and a second one at once, `VOLC_BENCH_PAUSES` times (default 12).
//!    Bar: median of the first ≤ 8 ms.
//! 3. **soak** — an hour of the exporter's life (`VOLC_BENCH_SOAK_SECS`, default 3600):
//!    3,200 record tasks whose ends are spread evenly over the run, each running 14 minutes on
//!    average (½–1½ of it), so about 750 run at a time and, polled every 15 s, with the
//!    settle polls of the finished ones, keep the budget of 55/s nearly busy (≈ 53/s). The tasks running at the start are in the config; each later one
//!    is registered (`POST /api/v1/targets`, `--web.enable-targets-api`) when it starts. A task
//!    lists 1–3 files 5 s after its end (2 on average: ≈ 35,000 series at the end). A gzip
//!    scrape every 15 s, timed: the first after each pause; VmRSS every minute; a progress line
//!    every 5 minutes. At half time the binary is stopped with SIGTERM and started again on the
//!    same store. Reported per third of the run: the first gzip scrape after a pause (count,
//!    median, max), VmRSS at the third's first and last sample, the series at its last scrape,
//!    the polls/s the simulator saw and the load average. Goal: flat across the hour.
//!
//! Run with `cargo bench --bench scrape_soak` (about six minutes and the hour of the soak), or
//! name the rows: `cargo bench --bench scrape_soak -- memory` (or `pauses`, `soak`).
//! `VOLC_BENCH_EXPORTER_BIN` runs another build of the binary. Without the `--bench` argument
//! (under `cargo test --all-targets`) the three rows run at smoke size (the soak for 6 s, 60
//! tasks); the figures then mean nothing.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use volc_rtc_exporter::config::Endpoint;
use volc_rtc_exporter::sim::{self, Scenario};

use common::records::{
    self, config_yaml, http_client, scenario, start_sim, unlimited_sim_options, wait_for_phase,
};
use common::{exporter_binary, mib, quantile, rss_kib, ChildExporter};

struct Plan {
    full: bool,
    targets: usize,
    scrapes: usize,
    pauses: usize,
    pause: Duration,
    warm_up: Duration,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> std::process::ExitCode {
    let (full, runtime) = common::start("scrape_soak");
    let Some(runtime) = runtime else {
        return std::process::ExitCode::FAILURE;
    };
    let plan = if full {
        Plan {
            full,
            targets: 10_000,
            scrapes: 15,
            pauses: env_u64("VOLC_BENCH_PAUSES", 12) as usize,
            pause: Duration::from_secs(env_u64("VOLC_BENCH_PAUSE_SECS", 15)),
            warm_up: Duration::from_secs(20),
        }
    } else {
        Plan {
            full,
            targets: 200,
            scrapes: 2,
            pauses: 2,
            pause: Duration::from_secs(1),
            warm_up: Duration::from_secs(1),
        }
    };
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |row: &str| named.is_empty() || named.iter().any(|n| n == row);
    let result = runtime.block_on(async {
        if wants("memory") {
            memory_row(&plan).await?;
        }
        if wants("pauses") {
            pauses_row(&plan).await?;
        }
        if wants("soak") {
            soak_row(&SoakPlan::new(full)).await?;
        }
        anyhow::Ok(())
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scrape_soak bench failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One timed GET of `/metrics` ([`records::scrape`]), failing when the answer's encoding is not
/// the one asked for.
async fn scrape(
    http: &reqwest::Client,
    url: &str,
    gzip: bool,
) -> anyhow::Result<(Duration, bytes::Bytes)> {
    let (took, body, gzipped) = records::scrape(http, url, gzip).await?;
    if gzipped != gzip {
        bail!("asked for gzip: {gzip}, got gzip: {gzipped}");
    }
    Ok((took, body))
}

fn binary() -> anyhow::Result<std::path::PathBuf> {
    match std::env::var_os("VOLC_BENCH_EXPORTER_BIN") {
        Some(p) => Ok(p.into()),
        None => exporter_binary(),
    }
}

/// `Rss`, `Anonymous` and file-backed (`Rss` − `Anonymous`) of `pid` from
/// `/proc/PID/smaps_rollup`, KiB.
fn smaps(pid: u32) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    let rss = field("Rss:")?;
    let anon = field("Anonymous:")?;
    Some((rss, anon, rss.saturating_sub(anon)))
}

async fn memory_row(plan: &Plan) -> anyhow::Result<()> {
    let n = plan.targets;
    println!(
        "\n[memory] {n} finished record targets x 3 files, the binary with --storage.path, \
         {} identity + {} gzip scrapes",
        plan.scrapes, plan.scrapes
    );
    let stop_sim = CancellationToken::new();
    let scenario = scenario(n, volc_rtc_exporter::clock::now(), |_| false);
    let (_simulator, endpoint) = start_sim(&scenario, unlimited_sim_options(), &stop_sim).await?;
    let dir = tempfile::tempdir().context("a temporary folder")?;
    let config = dir.path().join("config.yaml");
    let schedule = "  active_interval: 2s\n  settle_interval: 2s";
    std::fs::write(&config, config_yaml(&scenario, &endpoint, 2000.0, schedule))?;
    let result = memory_measurements(plan, &config, &dir.path().join("data")).await;
    stop_sim.cancel();
    result
}

async fn memory_measurements(plan: &Plan, config: &Path, storage: &Path) -> anyhow::Result<()> {
    let n = plan.targets;
    let bin = binary()?;
    println!("  binary: {}", bin.display());
    let (mut child, addr) = ChildExporter::start_with_store(&bin, config, storage)?;
    let url = format!("http://{addr}/metrics");
    let http = http_client(Duration::from_secs(60))?;
    let took = wait_for_phase(&mut child, &http, &url, "done", n).await?;
    let polled = rss_kib(child.pid()).unwrap_or_default();
    println!(
        "  all {n} done after {:.1} s: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        took.as_secs_f64(),
        mib(polled.0),
        mib(polled.1)
    );
    let mut identity = 0;
    let mut gzip = 0;
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..plan.scrapes {
        let (took, body) = scrape(&http, &url, false).await?;
        identity = body.len();
        times[0].push(took);
    }
    for _ in 0..plan.scrapes {
        let (took, body) = scrape(&http, &url, true).await?;
        gzip = body.len();
        times[1].push(took);
    }
    for (label, t) in ["identity", "gzip"].iter().zip(&mut times) {
        t.sort();
        let at = |q: f64| t[((t.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
        println!(
            "  {label} scrapes: median {:.1} ms, min {:.1}, max {:.1}",
            at(0.5),
            at(0.0),
            at(1.0)
        );
    }
    let (rss, hwm) = rss_kib(child.pid()).unwrap_or_default();
    let (_, anon, file) = smaps(child.pid()).unwrap_or_default();
    let store_bytes = std::fs::metadata(storage.join("state.redb")).map_or(0, |m| m.len());
    println!(
        "  after {} identity ({identity} bytes) + {} gzip ({gzip} bytes) scrapes: \
         VmRSS {:.1} MiB (anonymous {:.1}, file-backed {:.1}), VmHWM {:.1} MiB; \
         store file {store_bytes} bytes (bar: VmRSS <= 48 MiB: {})",
        plan.scrapes,
        plan.scrapes,
        mib(rss),
        mib(anon),
        mib(file),
        mib(hwm),
        if rss <= 48 * 1024 { "met" } else { "MISSED" }
    );
    Ok(())
}

async fn pauses_row(plan: &Plan) -> anyhow::Result<()> {
    let n = plan.targets;
    let running = n / 10;
    println!(
        "\n[pauses] {n} record targets x 3 files, {running} running (every tenth), polled at \
         55/s after a reload; {} pauses of {} s, each followed by two gzip scrapes",
        plan.pauses,
        plan.pause.as_secs()
    );
    let stop_sim = CancellationToken::new();
    let scenario = scenario(n, volc_rtc_exporter::clock::now(), |i| i % 10 == 9);
    let (simulator, endpoint) = start_sim(&scenario, unlimited_sim_options(), &stop_sim).await?;
    let dir = tempfile::tempdir().context("a temporary folder")?;
    let config = dir.path().join("config.yaml");
    let fill = "  active_interval: 2s\n  settle_interval: 2s";
    std::fs::write(&config, config_yaml(&scenario, &endpoint, 2000.0, fill))?;
    let result =
        pauses_measurements(plan, &simulator, &scenario, &endpoint, &config, dir.path()).await;
    stop_sim.cancel();
    result
}

async fn pauses_measurements(
    plan: &Plan,
    simulator: &sim::Simulator,
    scenario: &Scenario,
    endpoint: &Endpoint,
    config: &Path,
    dir: &Path,
) -> anyhow::Result<()> {
    let n = plan.targets;
    let running = n / 10;
    let bin = binary()?;
    println!("  binary: {}", bin.display());
    let (mut child, addr) = ChildExporter::start_with_args(
        &bin,
        config,
        &dir.join("data"),
        &["--web.enable-lifecycle"],
    )?;
    let url = format!("http://{addr}/metrics");
    let http = http_client(Duration::from_secs(60))?;
    let took = wait_for_phase(&mut child, &http, &url, "done", n - running).await?;
    println!("  {} done after {:.1} s", n - running, took.as_secs_f64());

    // The reload: 55/s and the default intervals from now on.
    std::fs::write(
        config,
        config_yaml(scenario, endpoint, 55.0, "  active_interval: 15s"),
    )?;
    let reload = http
        .post(format!("http://{addr}/-/reload"))
        .send()
        .await
        .context("POST /-/reload")?;
    if !reload.status().is_success() {
        bail!("/-/reload answered {}", reload.status());
    }
    tokio::time::sleep(plan.warm_up).await;
    scrape(&http, &url, true).await?;
    let action = volc_rtc_exporter::model::Action::GetRecordTask;
    let calls_before = simulator.total_requests(action);
    let began = Instant::now();
    let mut first = Vec::with_capacity(plan.pauses);
    let mut again = Vec::with_capacity(plan.pauses);
    for _ in 0..plan.pauses {
        tokio::time::sleep(plan.pause).await;
        first.push(scrape(&http, &url, true).await?.0);
        again.push(scrape(&http, &url, true).await?.0);
    }
    let rate =
        (simulator.total_requests(action) - calls_before) as f64 / began.elapsed().as_secs_f64();
    if let Some(status) = child.exited() {
        bail!(
            "the exporter exited ({status}); its last lines:\n{}",
            child.tail()
        );
    }
    let (rss, hwm) = rss_kib(child.pid()).unwrap_or_default();
    let ms = |d: &Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
    let list = |v: &[Duration]| v.iter().map(ms).collect::<Vec<_>>().join(" ");
    println!("  polls: {rate:.1}/s during the pauses");
    println!("  first gzip scrape after each pause, ms: {}", list(&first));
    println!("  the next one at once, ms:              {}", list(&again));
    first.sort();
    again.sort();
    let median = |v: &[Duration]| v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let max = |v: &[Duration]| v.last().map_or(0.0, |d| d.as_secs_f64() * 1e3);
    println!(
        "  first after a pause: median {:.1} ms, max {:.1} ms (bar: median <= 8 ms: {}); \
         at once again: median {:.1} ms, max {:.1} ms; VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        median(&first),
        max(&first),
        if median(&first) <= 8.0 {
            "met"
        } else {
            "MISSED"
        },
        median(&again),
        max(&again),
        mib(rss),
        mib(hwm)
    );
    if !plan.full {
        println!("  (smoke run: the figures mean nothing)");
    }
    Ok(())
}

/// The soak row's sizes and rhythms.
struct SoakPlan {
    full: bool,
    duration: Duration,
    tasks: usize,
    /// How many tasks run at any time, on average: 750, polled every 15 s, make 50/s, and the
    /// finished ones' settle polls and the new ones' first polls about 3.5/s more, just under
    /// the budget of 55/s (at 825 the running ones alone would take all of it, and the finished
    /// ones would wait in `settling` for ever).
    running: usize,
    pause: Duration,
    rss_every: Duration,
    progress_every: Duration,
    register_every: Duration,
    schedule: &'static str,
}

impl SoakPlan {
    fn new(full: bool) -> SoakPlan {
        if full {
            let duration = Duration::from_secs(env_u64("VOLC_BENCH_SOAK_SECS", 3600).max(60));
            SoakPlan {
                full,
                duration,
                tasks: 3_200,
                running: 750,
                pause: Duration::from_secs(15),
                // Every minute and every 5 minutes in the hour; more often in a shorter run.
                rss_every: Duration::from_secs(60).min(duration / 60),
                progress_every: Duration::from_secs(300).min(duration / 6),
                register_every: Duration::from_secs(1),
                schedule: "  active_interval: 15s\n  settle_interval: 60s",
            }
        } else {
            SoakPlan {
                full,
                duration: Duration::from_secs(6),
                tasks: 60,
                running: 15,
                pause: Duration::from_millis(500),
                rss_every: Duration::from_secs(1),
                progress_every: Duration::from_secs(2),
                register_every: Duration::from_millis(100),
                schedule: "  active_interval: 1s\n  settle_interval: 1s",
            }
        }
    }
}

/// How many files task `i` of the soak lists after its end: 2 on average, so that the page
/// holds about 35,000 series at the end of the hour.
fn soak_files(i: usize) -> usize {
    1 + i % 3
}

async fn soak_row(plan: &SoakPlan) -> anyhow::Result<()> {
    println!(
        "\n[soak] {} record tasks ending evenly over {} s (about {} running at a time, {:.1} files \
         each on average), registered as they start; the binary with --storage.path, budget \
         55/s; a gzip scrape every {} s, VmRSS every {} s; SIGTERM and a restart on the same \
         store at half time",
        plan.tasks,
        plan.duration.as_secs(),
        plan.running,
        (0..plan.tasks).map(soak_files).sum::<usize>() as f64 / plan.tasks.max(1) as f64,
        plan.pause.as_secs_f64(),
        plan.rss_every.as_secs_f64()
    );
    let stop_sim = CancellationToken::new();
    let duration_ms = plan.duration.as_millis() as i64;
    let run_ms = duration_ms * plan.running as i64 / plan.tasks.max(1) as i64;
    let world = records::soak_scenario(
        plan.tasks,
        volc_rtc_exporter::clock::now_ms(),
        duration_ms,
        run_ms,
        soak_files,
    );
    let (simulator, endpoint) =
        start_sim(&world.scenario, unlimited_sim_options(), &stop_sim).await?;
    let dir = tempfile::tempdir().context("a temporary folder")?;
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        config_yaml(&world.scenario, &endpoint, 55.0, plan.schedule),
    )?;
    println!(
        "  {} tasks run at the start (in the config), {} start later (registered with POST \
         /api/v1/targets)",
        world.scenario.targets.len(),
        world.later.len()
    );
    let result = soak_measurements(plan, &simulator, world.later, &config, dir.path()).await;
    stop_sim.cancel();
    result
}

/// The exporter's address while it runs (`None` during the restart), shared with the
/// registrar.
type SharedAddr = Arc<Mutex<Option<SocketAddr>>>;

/// Registers each of `later` once its StartTime has come (`POST /api/v1/targets`, every
/// `every`), keeping them for the next round while the exporter is down; until `stop`.
/// Returns how many were registered and how many POSTs failed.
async fn registrar(
    http: reqwest::Client,
    addr: SharedAddr,
    later: Vec<(i64, volc_rtc_exporter::model::Target)>,
    every: Duration,
    stop: CancellationToken,
) -> (usize, usize) {
    let mut next = 0;
    let mut failed = 0;
    while next < later.len() {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        let now = volc_rtc_exporter::clock::now_ms();
        let due = later[next..].partition_point(|(start, _)| *start <= now);
        let Some(at) = *addr.lock().unwrap_or_else(|e| e.into_inner()) else {
            continue;
        };
        if due == 0 {
            continue;
        }
        let body = records::targets_json(later[next..next + due].iter().map(|(_, t)| t));
        let sent = http
            .post(format!("http://{at}/api/v1/targets"))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => next += due,
            Ok(resp) => {
                failed += 1;
                eprintln!("  registration answered {}", resp.status());
            }
            Err(_) => failed += 1,
        }
    }
    (next, failed)
}

/// What the soak saw, by time since its start.
#[derive(Default)]
struct SoakLog {
    /// The first gzip scrape after each pause: when, and how long it took.
    scrapes: Vec<(Duration, Duration)>,
    /// VmRSS (KiB), the simulator's GetRecordTask count and the 1-minute load average.
    samples: Vec<(Duration, u64, u64, f64)>,
    /// The last gzip body of each third.
    last_body: [Option<bytes::Bytes>; 3],
}

impl SoakLog {
    fn third(at: Duration, duration: Duration) -> usize {
        ((at.as_secs_f64() * 3.0 / duration.as_secs_f64().max(1e-9)) as usize).min(2)
    }
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The series of a gzip page (its lines that are not comments), and the record targets per
/// phase (`volcengine_rtc_targets`).
fn page_counts(gzipped: &[u8]) -> (usize, Vec<(String, f64)>) {
    use std::io::Read as _;
    let mut text = String::new();
    if flate2::read::GzDecoder::new(gzipped)
        .read_to_string(&mut text)
        .is_err()
    {
        return (0, Vec::new());
    }
    let series = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    let prefix = "volcengine_rtc_targets{kind=\"record\",phase=\"";
    let phases = text
        .lines()
        .filter_map(|l| {
            let (phase, value) = l.strip_prefix(prefix)?.split_once("\"}")?;
            Some((phase.to_string(), value.trim().parse().ok()?))
        })
        .collect();
    (series, phases)
}

async fn soak_measurements(
    plan: &SoakPlan,
    simulator: &sim::Simulator,
    later: Vec<(i64, volc_rtc_exporter::model::Target)>,
    config: &Path,
    dir: &Path,
) -> anyhow::Result<()> {
    let bin = binary()?;
    println!("  binary: {}", bin.display());
    let storage = dir.join("data");
    let args = ["--web.enable-targets-api"];
    let (mut child, addr) = ChildExporter::start_with_args(&bin, config, &storage, &args)?;
    let shared: SharedAddr = Arc::new(Mutex::new(Some(addr)));
    let http = http_client(Duration::from_secs(60))?;
    let stop = CancellationToken::new();
    let registering = tokio::spawn(registrar(
        http.clone(),
        shared.clone(),
        later,
        plan.register_every,
        stop.clone(),
    ));
    let action = volc_rtc_exporter::model::Action::GetRecordTask;
    let began = Instant::now();
    let mut url = format!("http://{addr}/metrics");
    let mut log = SoakLog::default();
    let (took, _) = scrape(&http, &url, true).await?;
    println!(
        "  first gzip scrape of the process: {:.1} ms",
        common::ms(took)
    );
    let sample = |log: &mut SoakLog, child: &ChildExporter| {
        let rss = rss_kib(child.pid()).map_or(0, |r| r.0);
        let calls = simulator.total_requests(action);
        log.samples
            .push((began.elapsed(), rss, calls, load_average()));
    };
    sample(&mut log, &child);
    let mut restarted = false;
    let mut last_progress = Duration::ZERO;
    while began.elapsed() + plan.pause < plan.duration {
        tokio::time::sleep(plan.pause).await;
        let (took, body) = scrape(&http, &url, true).await?;
        let at = began.elapsed();
        log.scrapes.push((at, took));
        log.last_body[SoakLog::third(at, plan.duration)] = Some(body);
        if log
            .samples
            .last()
            .is_none_or(|s| at >= s.0 + plan.rss_every)
        {
            sample(&mut log, &child);
        }
        if at >= last_progress + plan.progress_every {
            last_progress = at;
            soak_progress(&log, at, plan.progress_every);
        }
        if let Some(status) = child.exited() {
            bail!(
                "the exporter exited ({status}); its last lines:\n{}",
                child.tail()
            );
        }
        if !restarted && at >= plan.duration / 2 {
            restarted = true;
            sample(&mut log, &child);
            let (new_child, new_addr) =
                soak_restart(&mut child, &bin, config, &storage, &args, &shared).await?;
            child = new_child;
            url = format!("http://{new_addr}/metrics");
            let (took, _) = scrape(&http, &url, true).await?;
            let rss = rss_kib(child.pid()).map_or(0, |r| r.0);
            println!(
                "  the new process's first gzip scrape: {:.1} ms; VmRSS {:.1} MiB",
                common::ms(took),
                mib(rss)
            );
            sample(&mut log, &child);
        }
    }
    sample(&mut log, &child);
    stop.cancel();
    let (registered, failed) = registering.await.unwrap_or_default();
    println!("  registered {registered} targets as their tasks started ({failed} POSTs failed)");
    soak_report(plan, &log);
    if !plan.full {
        println!("  (smoke run: the figures mean nothing)");
    }
    Ok(())
}

/// Stops `child` with SIGTERM and starts the binary again on the same config and store; the
/// registrar waits meanwhile.
async fn soak_restart(
    child: &mut ChildExporter,
    bin: &Path,
    config: &Path,
    storage: &Path,
    args: &[&str],
    shared: &SharedAddr,
) -> anyhow::Result<(ChildExporter, SocketAddr)> {
    let before = rss_kib(child.pid()).map_or(0, |r| r.0);
    *shared.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let (status, stopping) = child.terminate(Duration::from_secs(60)).await?;
    let starting = Instant::now();
    let (new_child, addr) = ChildExporter::start_with_args(bin, config, storage, args)?;
    let listening = starting.elapsed();
    *shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
    println!(
        "  restart: VmRSS {:.1} MiB before; SIGTERM -> exited ({status}) in {:.0} ms; the new \
         process listened after {:.0} ms",
        mib(before),
        common::ms(stopping),
        common::ms(listening)
    );
    Ok((new_child, addr))
}

/// One progress line: the last `window`'s first scrapes after a pause, and the newest sample.
fn soak_progress(log: &SoakLog, at: Duration, window: Duration) {
    let mut recent: Vec<Duration> = log
        .scrapes
        .iter()
        .filter(|(when, _)| *when + window > at)
        .map(|(_, took)| *took)
        .collect();
    recent.sort();
    let (rss, load) = log.samples.last().map_or((0, 0.0), |s| (s.1, s.3));
    let since = log.samples.iter().rfind(|s| s.0 + window <= at);
    let rate = match (since, log.samples.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (b.2 - a.2) as f64 / (b.0 - a.0).as_secs_f64(),
        _ => 0.0,
    };
    let body = log.last_body.iter().rev().flatten().next();
    let (series, phases) = body.map(|b| page_counts(b)).unwrap_or_default();
    let phases: Vec<String> = phases
        .iter()
        .filter(|(_, n)| *n > 0.0)
        .map(|(p, n)| format!("{p} {n}"))
        .collect();
    println!(
        "  {:>5.0} s: last {} s: {} first scrapes, median {:.1} ms, max {:.1} ms; VmRSS {:.1} \
         MiB; {series} series; record targets: {}; polls {rate:.1}/s; load {load:.2}",
        at.as_secs_f64(),
        window.as_secs(),
        recent.len(),
        common::ms(quantile(&recent, 0.5)),
        common::ms(quantile(&recent, 1.0)),
        mib(rss),
        phases.join(", ")
    );
}

/// The table: per third, the first gzip scrape after a pause (count, median, max), VmRSS at
/// the third's first and last sample, the series at its last scrape, polls/s and the load.
fn soak_report(plan: &SoakPlan, log: &SoakLog) {
    println!(
        "  {:<13} {:>7} {:>10} {:>8}   {:>17} {:>8} {:>8} {:>9}",
        "third (s)", "scrapes", "median ms", "max ms", "VmRSS MiB", "series", "polls/s", "load"
    );
    for third in 0..3 {
        let from = plan.duration * third as u32 / 3;
        let to = plan.duration * (third as u32 + 1) / 3;
        let mut took: Vec<Duration> = log
            .scrapes
            .iter()
            .filter(|(at, _)| SoakLog::third(*at, plan.duration) == third)
            .map(|(_, t)| *t)
            .collect();
        took.sort();
        let samples: Vec<_> = log
            .samples
            .iter()
            .filter(|s| SoakLog::third(s.0, plan.duration) == third || (third == 2 && s.0 >= to))
            .collect();
        let (first, last) = (samples.first(), samples.last());
        let rss = |s: Option<&&(Duration, u64, u64, f64)>| s.map_or(0.0, |s| mib(s.1));
        let rate = match (first, last) {
            (Some(a), Some(b)) if b.0 > a.0 => (b.2 - a.2) as f64 / (b.0 - a.0).as_secs_f64(),
            _ => 0.0,
        };
        let loads: Vec<f64> = samples.iter().map(|s| s.3).collect();
        let load_min = loads.iter().copied().fold(f64::INFINITY, f64::min);
        let load_max = loads.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let series = log.last_body[third]
            .as_ref()
            .map_or(0, |b| page_counts(b).0);
        println!(
            "  {:<13} {:>7} {:>10.1} {:>8.1}   {:>7.1} -> {:>6.1} {:>8} {:>8.1} {:>4.1}-{:<4.1}",
            format!("{}-{}", from.as_secs(), to.as_secs()),
            took.len(),
            common::ms(quantile(&took, 0.5)),
            common::ms(quantile(&took, 1.0)),
            rss(first),
            rss(last),
            series,
            rate,
            load_min,
            load_max
        );
    }
}
