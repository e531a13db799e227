//! How much memory loading a large config takes: the heap in use at its peak while
//! [`config::parse`] reads 10,000 targets, counted by a global allocator that tracks live
//! bytes (exact and repeatable, unlike the process's resident size).

use peak_alloc::PeakAlloc;
use volc_rtc_exporter::config;
use volc_rtc_exporter::sim::MapEnv;

/// The system allocator, counting the bytes live now and the most live since the last reset.
#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

const APPS: [&str; 4] = [
    "661e8f0d1ab2c3d4e5f60718",
    "5f3c2a1b0e9d8c7b6a594837",
    "64b7c9e2f1a0d3b5c8e7f601",
    "6a0b1c2d3e4f5a6b7c8d9e0f",
];
const TEAMS: [&str; 4] = ["live", "education", "events", "platform"];

/// A config with `n` record targets, each with a `team` label, as the benchmark writes it
/// (flow style, one target a line) or in block style, with this `GetRecordTask` budget.
fn config_text(n: usize, flow: bool, budget: u32) -> String {
    use std::fmt::Write as _;
    let mut y = format!(
        "api:\n  endpoint: http://127.0.0.1:9\nbudget:\n  GetRecordTask: {budget}\n\
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

/// Heap bytes above the starting point at the peak of parsing `text`, what is left once
/// parsed (the settings, or the problems; both in bytes), and the settings' warnings or the
/// problems.
fn measure(text: &str) -> (usize, usize, Result<Vec<String>, config::ConfigError>) {
    let env = MapEnv::new()
        .with_var("VOLC_ACCESSKEY", "AKLT0000000000001234")
        .with_var("VOLC_SECRETKEY", "c2VjcmV0");
    let base = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    let settings = config::parse(text, "c.yaml", &env);
    let peak = ALLOC.peak_usage() - base;
    let kept = ALLOC.current_usage() - base;
    (peak, kept, settings.map(|s| s.warnings))
}

// One test only: the counters are global, so a second test running alongside would blur them.
#[test]
fn loading_ten_thousand_targets_stays_small() {
    const N: usize = 10_000;
    // A warning or a problem comes with its place, which the tree already holds.
    for (style, flow, budget) in [
        ("flow", true, 50),
        ("block", false, 50),
        ("warned", true, 70),
    ] {
        let text = config_text(N, flow, budget);
        let (peak, kept, warnings) = measure(&text);
        let warnings = warnings.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(warnings.len(), usize::from(budget > 60), "{warnings:?}");
        eprintln!(
            "{style}: {} bytes of YAML, peak {} KiB above the text ({} per target), settings {} KiB",
            text.len(),
            peak / 1024,
            peak / N,
            kept / 1024
        );
        // Was 4.5 KiB per target when the text was also read into a serde_yaml value and every
        // path's place kept in a map; now under 0.6 KiB: the positioned tree, freed target by
        // target as the settings (about 0.2 KiB a target) are built from it.
        assert!(
            peak < N * 768,
            "{style}: loading took {} bytes per target at its peak",
            peak / N
        );
        // Targets with equal labels share them, so the settings alone are small; the peak
        // (the tree of the whole config while it is converted) is held to a few times the text.
        assert!(
            peak < text.len() * 5,
            "{style}: peak {peak} bytes for {} bytes of YAML",
            text.len()
        );
        assert!(kept < peak, "{style}: {kept} bytes kept, peak {peak}");
    }
    // Every target wrong: each of the 10,000 problems has its place.
    let text = config_text(N, true, 50).replace("app_id: \"", "app_id: \"no spaces ");
    let (peak, _, problems) = measure(&text);
    let problems = problems.err().map(config::ConfigError::into_problems);
    assert_eq!(problems.as_ref().map(Vec::len), Some(N));
    assert!(problems.iter().flatten().all(|p| p.pos.is_some()));
    eprintln!("{N} problems: peak {} KiB above the text", peak / 1024);
    // The problems' own text is some 0.3 KiB each.
    assert!(peak < N * 1536, "{N} problems: peak {peak} bytes");
}
