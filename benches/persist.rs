//! Durable store benchmark: loading 10,000 finished targets at start (after a clean stop and
//! after a crash), bytes per target, and commits per second at the full poll budget
//! (2 × 60 answers/s), flat out, and one change per commit.
//!
//! Run with `cargo bench --bench persist`. Without the `--bench` argument that `cargo bench`
//! passes (so under `cargo test --all-targets`, in a debug build) it runs small, as a smoke
//! test.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use volc_rtc_exporter::clock::real_now;
use volc_rtc_exporter::model::Phase;

use volc_rtc_exporter::state::{
    self, Change, EventRetention, Source, StopCount, StoredSnapshot, TargetRecord, TaskRef,
    WriterConfig, FILE_NAME,
};

use common::{ended_record, ms, own_rss_kib, record_target, FILES};

const T0: i64 = 1_700_000_000_000;
const CHILD_VAR: &str = "VOLC_PERSIST_BENCH_CHILD";

struct Sizes {
    targets: usize,
    loads: usize,
    paced_secs: u64,
    burst: usize,
    serial: usize,
}

const FULL: Sizes = Sizes {
    targets: 10_000,
    loads: 5,
    paced_secs: 10,
    burst: 50_000,
    serial: 300,
};
const SMOKE: Sizes = Sizes {
    targets: 200,
    loads: 1,
    paced_secs: 1,
    burst: 500,
    serial: 10,
};

/// Target `i`'s Put: a finished record task with three files, as the exporter stores it.
fn finished(i: usize, generation: i64) -> Change {
    let target = record_target(
        "app1",
        format!("Room{i:05}"),
        format!("Task{i:05}"),
        vec![("team".into(), "media".into())],
    );
    let start = T0 + i as i64 * 1_000;
    let snap = ended_record(i, T0, 3_600_000, generation);
    let mut record = TargetRecord::new(&target, Source::Config, T0);
    record.snapshot = Some(StoredSnapshot::from(&snap));
    record.up = Some(true);
    record.last_success_ms = Some(start + 3_700_000);
    record.settle.phase = Phase::Done;
    record.settle.terminal_since_ms = Some(start + 3_601_000);
    record.settle.stop_counted = true;
    Change::Put {
        stop: Some(StopCount {
            task: TaskRef::of(&target.key, &snap),
            reason: "StopByAPI".into(),
            ended_ms: snap.end_time_ms,
        }),
        key: target.key,
        record,
    }
}

fn fill(dir: &Path, n: usize) -> state::Opened {
    let o = state::open(dir, WriterConfig::default()).expect("open");
    let rt = runtime();
    let mut last = None;
    for i in 0..n {
        last = Some(o.writer.submit(finished(i, 0)));
    }
    if let Some(last) = last {
        rt.block_on(last.durable()).expect("flush");
    }
    o
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn time_load(dir: &Path, loads: usize, expect: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..loads {
        let t = real_now();
        let o = state::open(dir, WriterConfig::default()).expect("open");
        times.push(t.elapsed());
        assert_eq!(o.state.targets.len(), expect);
        assert!(o.recovered.is_none());
        o.writer.close(Duration::from_secs(10));
    }
    median(times)
}

fn main() {
    if let Some(dir) = std::env::var_os(CHILD_VAR) {
        // Crash child: fill the store, then exit without closing it (no clean shutdown).
        let n: usize = std::env::args()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .expect("count");
        let _o = fill(Path::new(&dir), n);
        std::process::exit(0);
    }
    let full = std::env::args().any(|a| a == "--bench");
    let s = if full { FULL } else { SMOKE };
    let rt = runtime();

    // Load after a clean stop.
    let dir = tempfile::tempdir().expect("tempdir");
    let o = fill(dir.path(), s.targets);
    o.writer.close(Duration::from_secs(30));
    drop(o);
    let file = dir.path().join(FILE_NAME);
    let bytes = std::fs::metadata(&file).expect("size").len();
    let load = time_load(dir.path(), s.loads, s.targets);
    println!(
        "load {} finished targets ({FILES} files each) at open: median {:.1} ms over {} opens",
        s.targets,
        ms(load),
        s.loads
    );
    println!(
        "store file: {} bytes = {:.0} bytes per target",
        bytes,
        bytes as f64 / s.targets as f64
    );
    let rss = own_rss_kib().map_or(0, |(rss, _)| rss);

    // Load after a crash (the writer process exits without closing: redb repairs on open).
    let crashed = tempfile::tempdir().expect("tempdir");
    let status = Command::new(std::env::current_exe().expect("exe"))
        .arg(s.targets.to_string())
        .env(CHILD_VAR, crashed.path())
        .status()
        .expect("child");
    assert!(status.success());
    let t = real_now();
    let o = state::open(crashed.path(), WriterConfig::default()).expect("open after crash");
    let after_crash = t.elapsed();
    assert_eq!(o.state.targets.len(), s.targets);
    o.writer.close(Duration::from_secs(10));
    println!(
        "load {} targets after an unclean exit (repair included): {:.1} ms",
        s.targets,
        ms(after_crash)
    );

    // Retention: prune everything, then store as many again: the file does not grow.
    let o = state::open(dir.path(), WriterConfig::default()).expect("open");
    rt.block_on(
        o.writer
            .prune(
                T0 + 400 * 86_400_000,
                Duration::from_secs(86_400),
                EventRetention::default(),
            )
            .durable(),
    )
    .expect("prune");
    let mut last = None;
    for i in 0..s.targets {
        last = Some(o.writer.submit(finished(i + s.targets, 0)));
    }
    if let Some(last) = last {
        rt.block_on(last.durable()).expect("flush");
    }
    o.writer.close(Duration::from_secs(30));
    drop(o);
    let after = std::fs::metadata(&file).expect("size").len();
    println!(
        "after pruning all and storing {} new targets: {} bytes ({:+.1} %)",
        s.targets,
        after,
        (after as f64 / bytes as f64 - 1.0) * 100.0
    );

    // Paced: 120 answers/s (2 actions × 60/s), each waited for until durable.
    let dir = tempfile::tempdir().expect("tempdir");
    let o = fill(dir.path(), s.targets);
    let (c0, n0) = (
        o.writer.stats().commit_duration().get_sample_count(),
        o.writer.stats().changes(),
    );
    let rate = 120u64;
    let total = rate * s.paced_secs;
    let writer = o.writer.clone();
    let latencies = rt.block_on(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        let mut waits = Vec::new();
        for i in 0..total as usize {
            tick.tick().await;
            let sent = real_now();
            let sub = writer.submit(finished(i % s.targets, 1 + i as i64));
            waits.push(tokio::spawn(async move {
                sub.durable().await.expect("durable");
                sent.elapsed()
            }));
        }
        let mut out = Vec::new();
        for w in waits {
            out.push(w.await.expect("join"));
        }
        out
    });
    let stats = o.writer.stats();
    println!(
        "paced {rate} changes/s for {} s: {} commits ({:.1}/s), {} changes; submit→durable p50 {:.2} ms, p99 {:.2} ms",
        s.paced_secs,
        stats.commit_duration().get_sample_count() - c0,
        (stats.commit_duration().get_sample_count() - c0) as f64 / s.paced_secs as f64,
        stats.changes() - n0,
        ms(pct(latencies.clone(), 0.5)),
        ms(pct(latencies, 0.99)),
    );

    // Flat out: as many changes as can be submitted.
    let (c0, n0) = (stats.commit_duration().get_sample_count(), stats.changes());
    let t = real_now();
    let mut last = None;
    for i in 0..s.burst {
        last = Some(
            o.writer
                .submit(finished(i % s.targets, 1_000_000 + i as i64)),
        );
    }
    if let Some(last) = last {
        rt.block_on(last.durable()).expect("flush");
    }
    let took = t.elapsed().as_secs_f64();
    println!(
        "flat out: {} changes in {:.2} s = {:.0} changes/s, {} commits ({:.0} commits/s, {:.0} changes merged per commit)",
        s.burst,
        took,
        s.burst as f64 / took,
        stats.commit_duration().get_sample_count() - c0,
        (stats.commit_duration().get_sample_count() - c0) as f64 / took,
        (stats.changes() - n0) as f64 / (stats.commit_duration().get_sample_count() - c0).max(1) as f64,
    );

    // One change per commit: the fsync-bound ceiling.
    let c0 = stats.commit_duration().get_sample_count();
    let t = real_now();
    for i in 0..s.serial {
        rt.block_on(o.writer.submit(finished(i, 2_000_000 + i as i64)).durable())
            .expect("durable");
    }
    let took = t.elapsed().as_secs_f64();
    println!(
        "one change per commit: {:.0} commits/s ({} commits, mean {:.2} ms)",
        (stats.commit_duration().get_sample_count() - c0) as f64 / took,
        stats.commit_duration().get_sample_count() - c0,
        took * 1e3 / s.serial as f64,
    );
    o.writer.close(Duration::from_secs(30));
    println!("RSS after loading {} targets: {} KiB", s.targets, rss);
}
