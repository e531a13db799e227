//! The two checks of issue 18, with the real binary as a child process against the in-process
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
//!
//! Run with `cargo bench --bench scrape_soak` (about six minutes), or name the rows:
//! `cargo bench --bench scrape_soak -- memory`. `VOLC_BENCH_EXPORTER_BIN` runs another build of
//! the binary. Without the `--bench` argument (under `cargo test --all-targets`) both rows run
//! at smoke size; the figures then mean nothing.

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use volc_rtc_exporter::config::Endpoint;
use volc_rtc_exporter::sim::{self, Scenario};

use common::records::{
    self, config_yaml, http_client, scenario, start_sim, unlimited_sim_options, wait_for_phase,
};
use common::{exporter_binary, mib, rss_kib, ChildExporter};

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
