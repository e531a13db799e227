//! `/metrics` render benchmark for SPEC §8: 10,000 record targets × 3 files (~150,000 series).
//!
//! Run with `cargo bench --bench render`. Prints the median and p90 render time over 31
//! renders (each into a fresh buffer, as a scrape does, and into one reused buffer), the body size, the process resident
//! memory, and the same figures after 10 % of the targets changed.
//!
//! Without the `--bench` argument that `cargo bench` passes (so under `cargo test
//! --all-targets`, in a debug build) it runs with 200 targets and 3 renders, as a smoke test.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use tokio::time::Instant;
use volc_rtc_exporter::model::{status, RecordFile, Target, TaskSnapshot};
use volc_rtc_exporter::render::render;
use volc_rtc_exporter::store::Store;
use volc_rtc_exporter::telemetry::Telemetry;

use common::{own_rss_kib, record_target};

const FULL_TARGETS: usize = 10_000;
const FILES: usize = 3;
const FULL_RENDERS: usize = 31;
/// Sizes when run without `--bench`.
const SMOKE_TARGETS: usize = 200;
const SMOKE_RENDERS: usize = 3;
const T0: i64 = 1_700_000_000_123;

fn snapshot(i: usize, generation: i64) -> TaskSnapshot {
    let start = T0 + i as i64 * 1_000;
    let files = (0..FILES)
        .map(|f| RecordFile {
            vid: Some(format!("Task{i:05}_video_{f}_main")),
            object_key: Some(format!("record/Room{i:05}/Task{i:05}/{f}.mp4")),
            duration_ms: Some(3_599_123 + f as i64 + generation),
            size_bytes: Some(734_003_200 + (i * 7 + f) as i64 + generation),
            start_time_ms: Some(start),
        })
        .collect();
    TaskSnapshot {
        status: status::ENDED,
        start_time_ms: start,
        end_time_ms: start + 3_600_456,
        stop_reason: "StopByAPI".into(),
        files,
        ..Default::default()
    }
}

/// This process's `VmRSS` and `VmHWM`, KiB (0 when `/proc` does not say).
fn rss_kib() -> (u64, u64) {
    own_rss_kib().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn time_renders(store: &Store, telemetry: &Telemetry, renders: usize) -> (Vec<Duration>, usize) {
    let mut times = Vec::with_capacity(renders);
    let mut size = 0;
    for _ in 0..renders {
        let started = Instant::now();
        let mut out = Vec::new();
        render(store, telemetry, &mut out);
        times.push(started.elapsed());
        size = out.len();
        std::hint::black_box(&out);
    }
    times.sort();
    (times, size)
}

/// The same, rendering into one buffer reused across renders (no allocation, no page faults).
fn time_renders_reused(
    store: &Store,
    telemetry: &Telemetry,
    renders: usize,
) -> (Vec<Duration>, usize) {
    let mut times = Vec::with_capacity(renders);
    let mut out = Vec::new();
    for _ in 0..renders {
        out.clear();
        let started = Instant::now();
        render(store, telemetry, &mut out);
        times.push(started.elapsed());
        std::hint::black_box(&out);
    }
    times.sort();
    (times, out.len())
}

fn report(label: &str, times: &[Duration], size: usize) {
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let (rss, hwm) = rss_kib();
    println!(
        "{label}: median {:.1} ms, p90 {:.1} ms, min {:.1} ms, max {:.1} ms over {} renders; \
         body {} bytes ({:.1} MB); VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len(),
        size,
        size as f64 / 1e6,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (targets_n, renders) = if full {
        (FULL_TARGETS, FULL_RENDERS)
    } else {
        (SMOKE_TARGETS, SMOKE_RENDERS)
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("render bench: {targets_n} record targets x {FILES} files, {cores} cores");
    if !full {
        println!("(smoke run without --bench: figures are not measurements)");
    }
    let (rss0, _) = rss_kib();
    let targets: Vec<Target> = (0..targets_n)
        .map(|i| {
            record_target(
                "661e8f0d1ab2c3d4e5f60718",
                format!("Room{i:05}"),
                format!("Task{i:05}"),
                vec![("team".into(), "live".into())],
            )
        })
        .collect();
    let store = Store::new(targets);
    let telemetry = Telemetry::new();
    let polled = UNIX_EPOCH + Duration::from_millis(T0 as u64 + 86_400_000);
    let started = Instant::now();
    for i in 0..targets_n {
        store.record_success(i, snapshot(i, 0), polled);
    }
    let fill = started.elapsed();
    let (rss1, _) = rss_kib();
    println!(
        "recorded {targets_n} successes in {:.1} ms; VmRSS {:.1} MiB before the store, {:.1} MiB after",
        ms(fill),
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0
    );

    let (times, size) = time_renders(&store, &telemetry, renders);
    report("render", &times, size);
    let (times, size) = time_renders_reused(&store, &telemetry, renders);
    report("render into a reused buffer", &times, size);

    let changed_at = polled + Duration::from_secs(60);
    let started = Instant::now();
    for i in (0..targets_n).step_by(10) {
        let u = store.record_success(i, snapshot(i, 1), changed_at);
        assert!(u.changed);
    }
    println!(
        "changed {} targets (10 %) in {:.1} ms",
        targets_n / 10,
        ms(started.elapsed())
    );
    let (times, size) = time_renders(&store, &telemetry, renders);
    report("render after 10 % changed", &times, size);
}
