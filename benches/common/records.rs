//! The record-target workload that the `exporter` bench's `/metrics` and restart rows and
//! `scrape_soak` share: the scenario of record tasks, the config file the child runs on, the
//! unlimited simulator, a timed scrape, and waiting for a phase count.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use volc_rtc_exporter::config::Endpoint;
use volc_rtc_exporter::sim::{self, stop_reason, Clock, Scenario, SimFile, SimOptions, SimTask};

use super::{record_target, ChildExporter};

pub const APPS: [&str; 4] = [
    "661e8f0d1ab2c3d4e5f60718",
    "5f3c2a1b0e9d8c7b6a594837",
    "64b7c9e2f1a0d3b5c8e7f601",
    "6a0b1c2d3e4f5a6b7c8d9e0f",
];
pub const TEAMS: [&str; 4] = ["live", "education", "events", "platform"];

/// `n` record tasks, one target each with a `team` label. Task `i` runs (started a minute ago)
/// when `running(i)`; the others ended 1–3 hours ago with three settled files (object storage,
/// VOD, object storage).
pub fn scenario(n: usize, now: SystemTime, running: impl Fn(usize) -> bool) -> Scenario {
    let t0 = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut tasks = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    for i in 0..n {
        let app = APPS[i % APPS.len()];
        let room = format!("room-{:05}", i / APPS.len());
        let task = format!("rec-{i:06}");
        let jitter = (i % 3600) as i64 * 1_000;
        if running(i) {
            tasks.push(SimTask::record(app, &room, &task, t0 - 60_000 - jitter));
        } else {
            tasks.push(ended_task(i, app, &room, &task, t0, jitter));
        }
        targets.push(record_target(
            app,
            room,
            task,
            vec![("team".into(), TEAMS[i % TEAMS.len()].into())],
        ));
    }
    Scenario {
        tasks,
        targets,
        credentials: sim::scenario::sim_credentials(),
        faults: Vec::new(),
    }
}

/// Task `i` of [`scenario`] that ended: it ran half an hour or more, starting about three hours
/// before `t0`, and its three files came 5 s after its end.
fn ended_task(i: usize, app: &str, room: &str, task: &str, t0: i64, jitter: i64) -> SimTask {
    let start = t0 - 3 * 3_600_000 + jitter / 2;
    let end = start + 30 * 60_000 + jitter / 4;
    let each = (end - start) / 3;
    let files = (0..3i64)
        .map(|f| {
            let s = start + each * f;
            if f == 1 {
                SimFile::vod(&format!("v0d{i:06}{f}"), s, each, "host")
            } else {
                SimFile::object(&format!("{app}/{room}/{task}/{s}_{f}.mp4"), s, each, "host")
            }
        })
        .collect();
    let reason = if i % 2 == 0 {
        stop_reason::STOP_BY_API
    } else {
        stop_reason::IDLE_TIME_OUT
    };
    SimTask::record(app, room, task, start)
        .ends(end, reason)
        .files_at(end + 5_000, files)
}

/// The config file the child runs on: the simulator's endpoint, its (not real) keys inline,
/// `budget` for both actions, `schedule` (indented lines) and the scenario's targets.
pub fn config_yaml(
    scenario: &Scenario,
    endpoint: &Endpoint,
    budget: f64,
    schedule: &str,
) -> String {
    use std::fmt::Write as _;
    let c = &scenario.credentials;
    let mut y = String::with_capacity(100 * scenario.targets.len() + 1024);
    let _ = writeln!(y, "api:\n  endpoint: {}", endpoint.base_url());
    let _ = writeln!(
        y,
        "credentials:\n  access_key_id: \"{}\"\n  secret_access_key: \"{}\"",
        c.access_key_id,
        c.secret_access_key.expose()
    );
    let _ = writeln!(
        y,
        "budget:\n  GetRecordTask: {budget}\n  GetWebCastTask: {budget}"
    );
    let _ = writeln!(y, "schedule:\n{schedule}");
    y.push_str("targets:\n");
    for t in &scenario.targets {
        let k = &t.key;
        let _ = write!(
            y,
            "  - {{kind: {}, app_id: \"{}\", room_id: \"{}\", task_id: \"{}\", labels: {{",
            k.kind,
            k.app_id,
            k.room_id,
            k.task_id.as_deref().unwrap_or("")
        );
        for (i, (name, value)) in t.labels.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(y, "{sep}{name}: \"{value}\"");
        }
        y.push_str("}}\n");
    }
    y
}

/// The simulator for rows that count rather than limit: no QPS limit, signatures verified,
/// no request log.
pub fn unlimited_sim_options() -> SimOptions {
    SimOptions {
        qps_limit: volc_rtc_exporter::model::PerAction::new(|_| None),
        verify_signatures: true,
        request_log_capacity: 0,
        ..SimOptions::default()
    }
}

/// A simulator serving `scenario` on an ephemeral loopback port until `stop` is cancelled.
pub async fn start_sim(
    scenario: &Scenario,
    options: SimOptions,
    stop: &CancellationToken,
) -> anyhow::Result<(Arc<sim::Simulator>, Endpoint)> {
    let simulator = Arc::new(sim::Simulator::from_scenario(
        scenario,
        options,
        Clock::system(),
    ));
    let endpoint = super::serve_simulator(simulator.clone(), stop).await?;
    Ok((simulator, endpoint))
}

/// An HTTP client for the child on loopback (no proxy), each request limited to `timeout`.
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .context("building the HTTP client")
}

/// One GET of `/metrics` (with `Accept-Encoding: gzip` when `gzip`), timed from sending to the
/// last body byte; also whether the answer came gzipped.
pub async fn scrape(
    http: &reqwest::Client,
    url: &str,
    gzip: bool,
) -> anyhow::Result<(Duration, bytes::Bytes, bool)> {
    let mut req = http.get(url);
    if gzip {
        req = req.header("Accept-Encoding", "gzip");
    }
    let started = Instant::now();
    let resp = req.send().await.context("scraping /metrics")?;
    let status = resp.status();
    let gzipped = resp
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let body = resp.bytes().await.context("reading /metrics")?;
    let took = started.elapsed();
    if !status.is_success() {
        bail!("/metrics answered {status}");
    }
    Ok((took, body, gzipped))
}

/// Scrapes every 500 ms until `volcengine_rtc_targets{kind="record",phase=...}` reads `n` for
/// `phase`; returns how long that took. Fails after 10 minutes or if the child exits.
pub async fn wait_for_phase(
    child: &mut ChildExporter,
    http: &reqwest::Client,
    url: &str,
    phase: &str,
    n: usize,
) -> anyhow::Result<Duration> {
    let series = format!("volcengine_rtc_targets{{kind=\"record\",phase=\"{phase}\"}}");
    let began = Instant::now();
    loop {
        let (_, body, gzipped) = scrape(http, url, false).await?;
        if gzipped {
            bail!("asked for gzip: false, got gzip: true");
        }
        let body = String::from_utf8_lossy(&body);
        let count = body
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if count == Some(n as f64) {
            return Ok(began.elapsed());
        }
        if began.elapsed() > Duration::from_secs(600) {
            bail!("not {n} {phase} after 10 minutes ({count:?})");
        }
        if let Some(status) = child.exited() {
            bail!(
                "the exporter exited ({status}); its last lines:\n{}",
                child.tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The soak's world ([`soak_scenario`]): every task in the simulator, the targets that run
/// from the start (in the config), and the later ones to register when their task starts.
pub struct SoakWorld {
    /// Every task; `targets` holds only the ones started by `t0` (the config's).
    pub scenario: Scenario,
    /// The targets of the tasks that start after `t0`, with their StartTime (ms since the
    /// epoch), sorted by it: each is registered when its task starts.
    pub later: Vec<(i64, super::Target)>,
}

/// `n` record tasks whose ends are spread evenly over `duration_ms` from `t0_ms`: task `i` ends
/// at `t0_ms + (i + ½) · duration_ms / n`, after running `run_ms` on average (½–1½ of it, spread
/// by `i`), so about `n · run_ms / duration_ms` run at any time. Those that started by `t0_ms`
/// are the scenario's targets; the others start during the run. Each task lists `files(i)`
/// files (object storage, VOD, object storage, …) 5 s after its end.
pub fn soak_scenario(
    n: usize,
    t0_ms: i64,
    duration_ms: i64,
    run_ms: i64,
    files: impl Fn(usize) -> usize,
) -> SoakWorld {
    let mut tasks = Vec::with_capacity(n);
    let mut targets = Vec::new();
    let mut later = Vec::new();
    for i in 0..n {
        let app = APPS[i % APPS.len()];
        let room = format!("soak-room-{:05}", i / APPS.len());
        let task = format!("soak-{i:06}");
        let end = t0_ms + ((2 * i + 1) as i64 * duration_ms) / (2 * n as i64);
        // ½ to 1½ of `run_ms`, in a spread that does not follow `i`.
        let spread = ((i * 7_919) % 1_000) as i64;
        let run = (run_ms / 2 + run_ms * spread / 1_000).max(1);
        let start = end - run;
        let count = files(i) as i64;
        let each = run / count.max(1);
        let list = (0..count)
            .map(|f| {
                let s = start + each * f;
                if f % 2 == 1 {
                    SimFile::vod(&format!("v0s{i:06}{f}"), s, each, "host")
                } else {
                    SimFile::object(&format!("{app}/{room}/{task}/{s}_{f}.mp4"), s, each, "host")
                }
            })
            .collect();
        let reason = if i % 2 == 0 {
            stop_reason::STOP_BY_API
        } else {
            stop_reason::IDLE_TIME_OUT
        };
        tasks.push(
            SimTask::record(app, &room, &task, start)
                .ends(end, reason)
                .uploads_after_end(5_000, list),
        );
        let target = record_target(
            app,
            room,
            task,
            vec![("team".into(), TEAMS[i % TEAMS.len()].into())],
        );
        if start <= t0_ms {
            targets.push(target);
        } else {
            later.push((start, target));
        }
    }
    later.sort_by_key(|(start, _)| *start);
    SoakWorld {
        scenario: Scenario {
            tasks,
            targets,
            credentials: sim::scenario::sim_credentials(),
            faults: Vec::new(),
        },
        later,
    }
}

/// The body of `POST /api/v1/targets` registering `targets`.
pub fn targets_json<'a>(targets: impl Iterator<Item = &'a super::Target>) -> serde_json::Value {
    let list: Vec<serde_json::Value> = targets
        .map(|t| {
            let labels: serde_json::Map<String, serde_json::Value> = t
                .labels
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string().into()))
                .collect();
            serde_json::json!({
                "kind": t.key.kind.to_string(),
                "app_id": t.key.app_id,
                "room_id": t.key.room_id,
                "task_id": t.key.task_id,
                "labels": labels,
            })
        })
        .collect();
    serde_json::Value::Array(list)
}
