//! API calls per hour: the scheduler alone, in synthetic time, for 1,000 record
//! targets where 10 % of the tasks run for the whole hour and 90 % are already finished (their
//! answers change on the first one or two settle polls while files upload, then stay the same),
//! compared with naive polling of every target every `active_interval`. The bar is ≥ 5× fewer.
//!
//! Run with `cargo bench --bench calls`; exits non-zero when the bar is missed.

mod common;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use tokio::time::Instant;
use volc_rtc_exporter::config::ScheduleSettings;
use volc_rtc_exporter::model::{Action, Target};
use volc_rtc_exporter::scheduler::{Phase, PollResult, Scheduler};

use common::record_target;

const TARGETS: usize = 1000;
const HOUR: Duration = Duration::from_secs(3600);
/// Time from dispatch to answer.
const LATENCY: Duration = Duration::from_millis(80);

/// How a simulated task answers its n-th poll (n from 0).
#[derive(Clone, Copy)]
enum Task {
    /// Not terminal for the whole hour; its answer changes (duration grows).
    Running { start_ms: i64 },
    /// Terminal from the start (ended at `end_ms`, with two files); the answer changes on the
    /// first `uploads` settle polls.
    Finished {
        start_ms: i64,
        end_ms: i64,
        uploads: usize,
    },
}

impl Task {
    fn answer(self, n: usize) -> PollResult {
        match self {
            Task::Running { start_ms } => PollResult::Success {
                terminal: false,
                start_time_ms: start_ms,
                end_time_ms: 0,
                failed: false,
                files: 0,
                changed: true,
            },
            Task::Finished {
                start_ms,
                end_ms,
                uploads,
            } => PollResult::Success {
                terminal: true,
                start_time_ms: start_ms,
                end_time_ms: end_ms,
                failed: false,
                files: 2,
                changed: n <= uploads,
            },
        }
    }
}

fn main() -> ExitCode {
    let schedule = ScheduleSettings {
        active_interval: Duration::from_secs(15),
        settle_interval: Duration::from_secs(60),
        retention: Duration::from_secs(86_400),
        ..ScheduleSettings::default()
    };
    let wall0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let ms_ago = |ago: Duration| -> i64 {
        let at = (wall0 - ago).duration_since(UNIX_EPOCH).unwrap_or_default();
        i64::try_from(at.as_millis()).unwrap_or(0)
    };
    let targets: Vec<Target> = (0..TARGETS)
        .map(|i| {
            record_target(
                "661e8f0d1ab2c3d4e5f60718",
                format!("room{i}"),
                format!("task{i}"),
                Vec::new(),
            )
        })
        .collect();
    let tasks: Vec<Task> = (0..TARGETS)
        .map(|i| {
            if i % 10 == 0 {
                Task::Running {
                    start_ms: ms_ago(Duration::from_secs(600)),
                }
            } else {
                Task::Finished {
                    start_ms: ms_ago(Duration::from_secs(3600 + 60 * i as u64)),
                    end_ms: ms_ago(Duration::from_secs(600)),
                    uploads: 1 + i % 2,
                }
            }
        })
        .collect();

    let cpu = volc_rtc_exporter::clock::real_now();
    let t0 = Instant::now();
    let end = t0 + HOUR;
    let mut scheduler = Scheduler::new(&targets, &schedule, t0);
    let mut polls = vec![0usize; TARGETS];
    let mut answers: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let action = Action::GetRecordTask;
    loop {
        let next_answer = answers.peek().map(|Reverse((at, _))| *at);
        let now = match (scheduler.next_due(action), next_answer) {
            (Some(d), Some(a)) => d.min(a),
            (d, a) => match d.or(a) {
                Some(t) => t,
                None => break,
            },
        };
        if now >= end {
            break;
        }
        while let Some(Reverse((at, id))) = answers.peek().copied() {
            if at > now {
                break;
            }
            answers.pop();
            let wall = wall0 + (at - t0);
            let n = polls[id] - 1;
            scheduler.complete(id, tasks[id].answer(n), at, wall);
        }
        while let Some(id) = scheduler.pop_due(action, now) {
            polls[id] += 1;
            answers.push(Reverse((now + LATENCY, id)));
        }
    }
    let cpu = cpu.elapsed();

    let total: usize = polls.iter().sum();
    let running: usize = (0..TARGETS).filter(|i| i % 10 == 0).map(|i| polls[i]).sum();
    let naive = TARGETS * (HOUR.as_secs() / schedule.active_interval.as_secs()) as usize;
    let ratio = naive as f64 / total as f64;
    let counts = scheduler.phase_counts()[action];
    println!("calls: {TARGETS} record targets, 10 % running, 90 % finished, 1 h simulated");
    println!(
        "  polls: {total} ({running} for running tasks, {} for finished ones)",
        total - running
    );
    println!("  naive: {naive} (every target every active_interval)");
    println!("  ratio: {ratio:.1}x fewer (bar: >= 5x)");
    let phases: Vec<String> = Phase::ALL
        .iter()
        .map(|p| format!("{}={}", p.as_str(), counts[p.index()]))
        .collect();
    println!("  phases after 1 h: {}", phases.join(" "));
    println!("  simulation took {cpu:?}");
    if ratio >= 5.0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("calls: bar missed");
        ExitCode::FAILURE
    }
}
