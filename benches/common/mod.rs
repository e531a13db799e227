//! What the benches share: record targets built by number, and a process's resident memory
//! read from `/proc`. Each bench uses only part of this module, hence `allow(dead_code)`.
#![allow(dead_code)]

use volc_rtc_exporter::model::{Kind, Target, TargetKey};

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
