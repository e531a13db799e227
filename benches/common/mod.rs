//! What the benches share: record targets built by number, and a process's resident memory
//! read from `/proc`. Each bench uses only part of this module, hence `allow(dead_code)`.
#![allow(dead_code)]

use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use volc_rtc_exporter::config::Endpoint;
use volc_rtc_exporter::model::{status, Kind, RecordFile, Target, TargetKey, TaskSnapshot};
use volc_rtc_exporter::sim::{self, Simulator};

/// A record target of `app` for `room` and `task`, with `labels`.
pub fn record_target(
    app: &str,
    room: String,
    task: String,
    labels: Vec<(String, String)>,
) -> Target {
    Target {
        key: TargetKey {
            kind: Kind::Record,
            app_id: app.into(),
            room_id: room,
            task_id: Some(task),
        },
        labels: labels.into(),
    }
}

/// How many files each record task of [`ended_record`] has.
pub const FILES: usize = 3;

/// Record task `i`, started at `t0` + `i` seconds and stopped by API `run_ms` later, with
/// [`FILES`] files whose durations and sizes grow with `generation`.
pub fn ended_record(i: usize, t0: i64, run_ms: i64, generation: i64) -> TaskSnapshot {
    let start = t0 + i as i64 * 1_000;
    TaskSnapshot {
        status: status::ENDED,
        start_time_ms: start,
        end_time_ms: start + run_ms,
        stop_reason: "StopByAPI".into(),
        files: (0..FILES)
            .map(|f| RecordFile {
                vid: Some(format!("Task{i:05}_video_{f}_main")),
                object_key: Some(format!("record/Room{i:05}/Task{i:05}/{f}.mp4")),
                duration_ms: Some(3_599_123 + f as i64 + generation),
                size_bytes: Some(734_003_200 + (i * 7 + f) as i64 + generation),
                start_time_ms: Some(start),
            })
            .collect(),
        ..Default::default()
    }
}

/// Serves `simulator` on an ephemeral 127.0.0.1 port until `stop`; returns its endpoint.
pub async fn serve_simulator(
    simulator: Arc<Simulator>,
    stop: &CancellationToken,
) -> anyhow::Result<Endpoint> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the simulator on 127.0.0.1")?;
    let port = listener.local_addr()?.port();
    tokio::spawn(sim::serve(listener, simulator, stop.clone()));
    Ok(Endpoint {
        scheme: "http".into(),
        host: "127.0.0.1".into(),
        port: Some(port),
    })
}

/// How a bench binary starts: whether this is the full run (`cargo bench` passes `--bench`;
/// without it, under `cargo test --all-targets`, a smoke run), announced on stdout with the
/// core count, and the multi-threaded runtime it runs on (`None`, reported, if it cannot start).
pub fn start(name: &str) -> (bool, Option<tokio::runtime::Runtime>) {
    let full = std::env::args().any(|a| a == "--bench");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    if full {
        println!("{name} bench: {cores} cores (available_parallelism)");
    } else {
        println!("{name} bench: smoke run (no --bench argument), figures are not measurements");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| eprintln!("{name} bench: cannot start the runtime: {e}"))
        .ok();
    (full, runtime)
}

/// `VmRSS` and `VmHWM` of process `pid`, KiB; `None` when `/proc` does not say.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    status_kib(&format!("/proc/{pid}/status"))
}

/// `VmRSS` and `VmHWM` of this process, KiB; `None` when `/proc` does not say.
pub fn own_rss_kib() -> Option<(u64, u64)> {
    status_kib("/proc/self/status")
}

fn status_kib(path: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
