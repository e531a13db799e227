//! Target file benchmark: one file of 100,000 targets loaded the way the watcher loads it
//! (`sources::files::Loader::scan`), against the budget of at most 2 s and 50 MiB more resident
//! memory.
//!
//! Run with `cargo bench --bench target_files`. Two files are measured, each in a fresh child
//! process so one's freed memory does not hide the other's: targets with IDs only, and the same
//! with two labels each. For each it prints the load time (wall, and CPU time from
//! `/proc/thread-self/schedstat`, which a busy machine does not inflate), the peak resident memory
//! added while loading (`VmHWM` after minus `VmRSS` before, the peak reset first through
//! `/proc/self/clear_refs`) and what stays resident once loaded. Exits non-zero when over budget.
//!
//! Without the `--bench` argument that `cargo bench` passes (so under `cargo test
//! --all-targets`, in a debug build) it loads 2,000 targets in-process as a smoke test.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tokio::time::Instant;
use volc_rtc_exporter::targets::files::Loader;

use common::own_rss_kib;

const FULL_TARGETS: usize = 100_000;
const SMOKE_TARGETS: usize = 2_000;
const MAX_LOAD: Duration = Duration::from_secs(2);
const MAX_ADDED_KIB: u64 = 50 * 1024;
/// Set in a child: which file to measure.
const SHAPE_VAR: &str = "VOLC_TARGET_FILES_BENCH_SHAPE";

/// Writes a file of `n` record targets a line at a time, as a generator would.
fn write_file(path: &Path, n: usize, labels: bool) -> std::io::Result<u64> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "# {n} recording tasks")?;
    for i in 0..n {
        write!(
            out,
            "- {{kind: record, app_id: 5f3c2a1b9e8d7c6b5a4f3e2d, room_id: room-{:06}, task_id: task-{i:08}-rec",
            i / 4
        )?;
        match labels {
            true => writeln!(out, ", labels: {{team: team{}, env: prod}}}}", i % 50)?,
            false => writeln!(out, "}}")?,
        }
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// This thread's time on a CPU, from `/proc/thread-self/schedstat` (its first field, ns).
fn cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Loads one file of `n` targets; prints a row; whether it kept within budget.
fn measure(n: usize, labels: bool) -> std::io::Result<bool> {
    let dir = std::env::temp_dir().join(format!("volc-target-files-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let size = write_file(&dir.join("targets.yaml"), n, labels)?;

    let peak_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let (before, _) = own_rss_kib().unwrap_or_default();
    let (started, cpu_started) = (Instant::now(), cpu_time());
    let mut loader = Loader::new(vec![dir.join("*.yaml")]);
    let changed = loader.scan(true);
    let took = started.elapsed();
    let cpu = cpu_time()
        .zip(cpu_started)
        .map(|(b, a)| b.saturating_sub(a));
    let (after, peak) = own_rss_kib().unwrap_or_default();
    let loaded: usize = loader.current().files().map(|(_, e)| e.targets.len()).sum();
    let ok = loader
        .current()
        .files()
        .all(|(_, e)| e.last_load_successful);
    std::fs::remove_dir_all(&dir)?;
    assert!(changed && ok, "the file did not load");
    assert_eq!(loaded, n, "targets loaded");

    let (added_peak, retained) = (peak.saturating_sub(before), after.saturating_sub(before));
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "{n} targets, {}: {:.1} MiB of YAML; load {:.0} ms wall, {} CPU (budget {} ms); peak +{:.1} MiB{} (budget {} MiB), +{:.1} MiB resident after",
        if labels { "IDs and 2 labels" } else { "IDs only" },
        size as f64 / 1048576.0,
        took.as_secs_f64() * 1e3,
        cpu.map_or("?".into(), |c| format!("{:.0} ms", c.as_secs_f64() * 1e3)),
        MAX_LOAD.as_millis(),
        mib(added_peak),
        if peak_reset { "" } else { " (peak not reset: an upper bound)" },
        MAX_ADDED_KIB / 1024,
        mib(retained),
    );
    // CPU time judges speed when it is known: wall time on a shared machine measures the others.
    let load = cpu.unwrap_or(took);
    Ok(load <= MAX_LOAD && added_peak <= MAX_ADDED_KIB)
}

fn main() -> std::io::Result<()> {
    if let Ok(shape) = std::env::var(SHAPE_VAR) {
        let ok = measure(FULL_TARGETS, shape == "labels")?;
        std::process::exit(if ok { 0 } else { 1 });
    }
    if !std::env::args().any(|a| a == "--bench") {
        measure(SMOKE_TARGETS, true)?;
        println!("(smoke run without --bench: figures are not measurements)");
        return Ok(());
    }
    let mut all_ok = true;
    for shape in ["ids", "labels"] {
        let status = Command::new(std::env::current_exe()?)
            .env(SHAPE_VAR, shape)
            .status()?;
        all_ok &= status.success();
    }
    if !all_ok {
        eprintln!("over budget");
        std::process::exit(1);
    }
    Ok(())
}
