//! How much memory loading a large config takes: the heap in use at its peak while
//! [`config::parse`] reads 10,000 targets, counted by a global allocator that tracks live
//! bytes (exact and repeatable, unlike the process's resident size).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use volc_rtc_exporter::config::{self, MapEnv};

/// The system allocator, counting the bytes live now and the most live since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed straight to `System`; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const APPS: [&str; 4] = [
    "661e8f0d1ab2c3d4e5f60718",
    "5f3c2a1b0e9d8c7b6a594837",
    "64b7c9e2f1a0d3b5c8e7f601",
    "6a0b1c2d3e4f5a6b7c8d9e0f",
];
const TEAMS: [&str; 4] = ["live", "education", "events", "platform"];

/// A config with `n` record targets, each with a `team` label, as the benchmark writes it
/// (flow style, one target a line) or in block style.
fn config_text(n: usize, flow: bool) -> String {
    use std::fmt::Write as _;
    let mut y = String::from(
        "api:\n  endpoint: http://127.0.0.1:9\nbudget:\n  GetRecordTask: 50\n\
         schedule:\n  active_interval: 1s\ntargets:\n",
    );
    for i in 0..n {
        let (app, team) = (APPS[i % APPS.len()], TEAMS[i % TEAMS.len()]);
        let (room, task) = (format!("room-{:05}", i / APPS.len()), format!("rec-{i:06}"));
        let _ = if flow {
            writeln!(
                y,
                "  - {{kind: record, app_id: \"{app}\", room_id: \"{room}\", task_id: \"{task}\", labels: {{team: \"{team}\"}}}}"
            )
        } else {
            writeln!(
                y,
                "  - kind: record\n    app_id: \"{app}\"\n    room_id: \"{room}\"\n    task_id: \"{task}\"\n    labels:\n      team: {team}"
            )
        };
    }
    y
}

/// Heap bytes above the starting point at the peak of parsing `text`, and the settings' own
/// size once parsed (both in bytes).
fn measure(text: &str) -> (usize, usize) {
    let env = MapEnv::new()
        .with_var("VOLC_ACCESSKEY", "AKLT0000000000001234")
        .with_var("VOLC_SECRETKEY", "c2VjcmV0");
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let settings = config::parse(text, "c.yaml", &env);
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let kept = LIVE.load(Ordering::Relaxed) - base;
    match settings {
        Ok(s) => assert_eq!(s.targets.len(), text.matches("kind: record").count()),
        Err(e) => panic!("{e}"),
    }
    (peak, kept)
}

// One test only: the counters are global, so a second test running alongside would blur them.
#[test]
fn loading_ten_thousand_targets_stays_small() {
    const N: usize = 10_000;
    for flow in [true, false] {
        let text = config_text(N, flow);
        let (peak, kept) = measure(&text);
        let style = if flow { "flow" } else { "block" };
        eprintln!(
            "{style}: {} bytes of YAML, peak {} KiB above the text ({} per target), settings {} KiB",
            text.len(),
            peak / 1024,
            peak / N,
            kept / 1024
        );
    }
}

#[test]
fn scratch_stages() {
    let text = config_text(10_000, true);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let root = config::yaml::load(&text).unwrap().unwrap();
    eprintln!(
        "tree: peak {} KiB kept {} KiB",
        (PEAK.load(Ordering::Relaxed) - base) / 1024,
        (LIVE.load(Ordering::Relaxed) - base) / 1024
    );
    let base2 = LIVE.load(Ordering::Relaxed);
    PEAK.store(base2, Ordering::Relaxed);
    let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    eprintln!(
        "serde value: peak {} KiB kept {} KiB",
        (PEAK.load(Ordering::Relaxed) - base2) / 1024,
        (LIVE.load(Ordering::Relaxed) - base2) / 1024
    );
    drop(v);
    drop(root);
}
