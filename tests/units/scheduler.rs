//! `scheduler`: phases, queues, spreading, settling, expiry and backoff, driven in synthetic
//! time through the public API.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use volc_rtc_exporter::config::ScheduleSettings;
use volc_rtc_exporter::model::{Action, Kind, Outcome, Target, TargetKey, TaskSnapshot};
use volc_rtc_exporter::scheduler::*;

const ACTIVE: Duration = Duration::from_secs(15);
const SETTLE: Duration = Duration::from_secs(60);
const R: Action = Action::GetRecordTask;
const W: Action = Action::GetWebCastTask;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn schedule() -> ScheduleSettings {
    ScheduleSettings {
        active_interval: ACTIVE,
        settle_interval: SETTLE,
        retention: secs(86_400),
        ..ScheduleSettings::default()
    }
}

fn target(kind: Kind, i: usize, task: bool) -> Target {
    Target {
        key: TargetKey {
            kind,
            app_id: "app".into(),
            room_id: format!("room{i}"),
            task_id: task.then(|| format!("task{i}")),
        },
        labels: Default::default(),
    }
}

fn records(n: usize) -> Vec<Target> {
    (0..n).map(|i| target(Kind::Record, i, true)).collect()
}

/// A fixed wall clock: `t0` corresponds to this.
fn wall0() -> SystemTime {
    UNIX_EPOCH + secs(1_800_000_000)
}

/// Wall-clock time at `now`, given that `t0` is [`wall0`].
fn wall(t0: Instant, now: Instant) -> SystemTime {
    wall0() + (now - t0)
}

/// StartTime (ms) of a task that started `ago` before `t0`.
fn started_ago(ago: Duration) -> i64 {
    let ms = (wall0() - ago)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    i64::try_from(ms).unwrap()
}

fn running(start_ms: i64) -> PollResult {
    PollResult::Success {
        terminal: false,
        start_time_ms: start_ms,
        end_time_ms: 0,
        failed: false,
        files: 0,
        changed: true,
    }
}

/// A terminal answer with one file and no EndTime.
fn ended(start_ms: i64, changed: bool) -> PollResult {
    finished(start_ms, 0, 1, changed)
}

/// A terminal answer (not failed) with EndTime `end_ms` and `files` files.
fn finished(start_ms: i64, end_ms: i64, files: usize, changed: bool) -> PollResult {
    PollResult::Success {
        terminal: true,
        start_time_ms: start_ms,
        end_time_ms: end_ms,
        failed: false,
        files,
        changed,
    }
}

/// A failed task's answer (Status 4, `StartTaskFailed`): no files.
fn failed_to_start(start_ms: i64, end_ms: i64, changed: bool) -> PollResult {
    PollResult::Success {
        terminal: true,
        start_time_ms: start_ms,
        end_time_ms: end_ms,
        failed: true,
        files: 0,
        changed,
    }
}

/// Pops the next target of `action` at its due time; returns (id, when).
fn pop_next(s: &mut Scheduler, action: Action) -> Option<(TargetId, Instant)> {
    let due = s.next_due(action)?;
    s.pop_due(action, due).map(|id| (id, due))
}

#[test]
fn phase_labels() {
    let labels: Vec<_> = Phase::ALL.iter().map(|p| p.as_str()).collect();
    assert_eq!(labels, ["new", "active", "settling", "done", "expired"]);
    for (i, p) in Phase::ALL.iter().enumerate() {
        assert_eq!(p.index(), i);
    }
}

#[test]
fn first_polls_are_spread_evenly_per_action() {
    let t0 = Instant::now();
    let mut targets = records(5000);
    targets.extend((0..300).map(|i| target(Kind::Webcast, i, i % 2 == 0)));
    let mut s = Scheduler::new(&targets, &schedule(), t0);
    for (action, n) in [(R, 5000usize), (W, 300)] {
        assert!(
            s.pop_due(action, t0).is_some(),
            "the first one is due at t0"
        );
        assert!(
            s.pop_due(action, t0).is_none(),
            "never everything due at t0"
        );
        let mut times = vec![t0];
        while let Some((_, at)) = pop_next(&mut s, action) {
            times.push(at);
        }
        assert_eq!(times.len(), n);
        assert!(times.iter().all(|&t| t >= t0 && t < t0 + ACTIVE));
        let limit = n.div_ceil(150) + 1;
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi] - times[lo] >= Duration::from_millis(100) {
                lo += 1;
            }
            assert!(
                hi - lo < limit,
                "{action}: {} polls due within 100 ms (limit {limit})",
                hi - lo + 1
            );
        }
    }
}

#[test]
fn active_targets_go_before_settling_ones_and_most_overdue_first() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&records(4), &schedule(), t0);
    let start = started_ago(secs(3600));
    // Due at 0, 3.75, 7.5 and 11.25 s.
    let mut popped = Vec::new();
    while let Some((id, _)) = pop_next(&mut s, R) {
        popped.push(id);
    }
    assert_eq!(popped, [0, 1, 2, 3]);
    let at = t0 + secs(12);
    // 0 becomes settling (next due 0 + 60 s on its grid? no: dispatched late, so 12 + 60).
    s.complete(0, ended(start, true), at, wall(t0, at));
    // The others fail and retry after active_interval, at different times.
    s.complete(3, PollResult::Failed(Outcome::Timeout), at, wall(t0, at));
    s.complete(
        1,
        PollResult::Failed(Outcome::Timeout),
        at + secs(1),
        wall(t0, at),
    );
    s.complete(
        2,
        PollResult::Failed(Outcome::Timeout),
        at + secs(2),
        wall(t0, at),
    );
    assert_eq!(s.phase(0), Some(Phase::Settling));
    let late = t0 + secs(600);
    assert_eq!(s.lag(R, late), late - (t0 + secs(27)));
    let order: Vec<_> = std::iter::from_fn(|| s.pop_due(R, late)).collect();
    assert_eq!(
        order,
        [3, 1, 2, 0],
        "active most-overdue first, then settling"
    );
}

#[test]
fn first_answer_terminal_settles_and_unchanged_first_settle_poll_is_done() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&records(1), &schedule(), t0);
    let start = started_ago(secs(7200));
    let (id, at) = pop_next(&mut s, R).unwrap();
    s.complete(id, ended(start, true), at, wall(t0, at));
    assert_eq!(s.phase(id), Some(Phase::Settling));
    let (id, at) = pop_next(&mut s, R).unwrap();
    assert_eq!(at, t0 + SETTLE);
    s.complete(id, ended(start, false), at, wall(t0, at));
    assert_eq!(s.phase(id), Some(Phase::Done));
    assert_eq!(s.next_due(R), None);
}

#[test]
fn tasks_older_than_72_hours_expire_and_are_never_polled() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&records(3), &schedule(), t0);
    let mut popped: Vec<_> = std::iter::from_fn(|| s.pop_due(R, t0 + ACTIVE)).collect();
    popped.sort_unstable();
    assert_eq!(popped, [0, 1, 2]);
    let at = t0 + ACTIVE;
    // 0: answered, but started 73 h ago.
    s.complete(
        0,
        ended(started_ago(secs(73 * 3600)), true),
        at,
        wall(t0, at),
    );
    assert_eq!(s.phase(0), Some(Phase::Expired));
    // 1: running, 71 h 59 m 30 s old: expires before its next-but-one poll.
    let almost = started_ago(VISIBILITY_WINDOW - secs(30));
    s.complete(1, running(almost), at, wall(t0, at));
    assert_eq!(s.phase(1), Some(Phase::Active));
    // 2: running, same age, then answers NotFound once it is over 72 h old.
    s.complete(2, running(almost), at, wall(t0, at));
    let mut polls = Vec::new();
    let end = t0 + secs(3600);
    while let Some((id, at)) = pop_next(&mut s, R) {
        assert!(at < end);
        polls.push(id);
        let result = if at - t0 > secs(30) && id == 2 {
            PollResult::Failed(Outcome::NotFound)
        } else {
            running(almost)
        };
        s.complete(id, result, at, wall(t0, at));
    }
    assert!(!polls.contains(&0));
    assert_eq!(s.phase(1), Some(Phase::Expired));
    assert_eq!(s.phase(2), Some(Phase::Expired));
    assert_eq!(s.next_due(R), None);
    assert_eq!(s.phase_counts()[R][Phase::Expired.index()], 3);
}

#[test]
fn not_found_backoff_grows_caps_and_resets_on_success() {
    let t0 = Instant::now();
    let n = 50;
    let mut s = Scheduler::new(&records(n), &schedule(), t0);
    // Each target: one success (so it has been seen: the never-seen rule does not apply),
    // nine NotFound, one success, one NotFound, then successes.
    let mut times: Vec<Vec<Instant>> = vec![Vec::new(); n];
    while let Some((id, at)) = pop_next(&mut s, R) {
        if at > t0 + secs(2 * 3600) {
            break;
        }
        times[id].push(at);
        let result = match times[id].len() {
            2..=10 | 12 => PollResult::Failed(Outcome::NotFound),
            _ => running(started_ago(secs(60))),
        };
        s.complete(id, result, at, wall(t0, at));
    }
    let mut capped = Vec::new();
    for t in &times {
        let gaps: Vec<Duration> = t.windows(2).skip(1).map(|w| w[1] - w[0]).collect();
        assert!(gaps.len() > 11, "{gaps:?}");
        for (k, gap) in gaps.iter().take(9).enumerate() {
            let full = (ACTIVE * (1 << k)).min(MAX_BACKOFF);
            assert!(
                *gap >= ACTIVE.max(full / 2) && *gap <= full,
                "failure {}: waited {gap:?}, full backoff {full:?}",
                k + 1
            );
        }
        capped.push(gaps[8]);
        assert_eq!(gaps[9], ACTIVE, "after the success: active_interval");
        assert_eq!(gaps[10], ACTIVE, "backoff restarted after the success");
    }
    let (lo, hi) = (capped.iter().min().unwrap(), capped.iter().max().unwrap());
    assert!(
        *hi - *lo >= secs(120),
        "jitter spreads the capped retries: {lo:?}..{hi:?}"
    );
}

#[test]
fn never_seen_target_keeps_looking_at_least_once_a_minute_in_its_first_hour() {
    let t0 = Instant::now();
    let n = 40;
    let mut s = Scheduler::new(&records(n), &schedule(), t0);
    let mut times: Vec<Vec<Instant>> = vec![Vec::new(); n];
    while let Some((id, at)) = pop_next(&mut s, R) {
        if at > t0 + secs(3 * 3600) {
            break;
        }
        times[id].push(at);
        s.complete(id, PollResult::Failed(Outcome::NotFound), at, wall(t0, at));
    }
    let mut in_first_hour = Vec::new();
    for t in &times {
        let gaps: Vec<(Instant, Duration)> = t.windows(2).map(|w| (w[0], w[1] - w[0])).collect();
        for (k, &(from, gap)) in gaps.iter().enumerate() {
            // The n-th failure waits half to all of min(15 s × 2^(n−1), cap).
            let cap = if from < t0 + NEVER_SEEN_GRACE {
                NEVER_SEEN_MAX_BACKOFF
            } else {
                MAX_BACKOFF
            };
            let full = (ACTIVE * (1 << k.min(20))).min(cap);
            assert!(
                gap >= ACTIVE.max(full / 2) && gap <= full,
                "failure {} at {:?}: waited {gap:?}, full backoff {full:?}",
                k + 1,
                from - t0
            );
            if from < t0 + NEVER_SEEN_GRACE {
                in_first_hour.push(gap);
            }
        }
        // Once the hour is over, the backoff grows to 5–10 minutes again.
        let (_, last) = gaps[gaps.len() - 1];
        assert!(last >= MAX_BACKOFF / 2, "{gaps:?}");
    }
    // About one poll a minute each over the first hour (the naive 15 s would be 240), and
    // the jitter keeps them apart.
    for t in &times {
        let first_hour = t.iter().filter(|&&at| at < t0 + NEVER_SEEN_GRACE).count();
        assert!((60..=130).contains(&first_hour), "{first_hour}");
    }
    let late: Vec<_> = in_first_hour
        .iter()
        .filter(|g| **g > NEVER_SEEN_MAX_BACKOFF / 2)
        .collect();
    let (lo, hi) = (
        late.iter().min().copied().unwrap(),
        late.iter().max().copied().unwrap(),
    );
    assert!(*hi - *lo >= secs(20), "jitter: {lo:?}..{hi:?}");
}

/// Polls `s`'s one record target every time it is due; `answer(at, first)` says what the
/// API answers at `at`. Returns the phase after each poll with the poll's time since `t0`,
/// until it is parked or `until` passes.
fn follow(
    s: &mut Scheduler,
    t0: Instant,
    until: Instant,
    mut answer: impl FnMut(Instant, bool) -> PollResult,
) -> Vec<(Duration, Phase)> {
    let mut seen = Vec::new();
    let mut first = true;
    while let Some((id, at)) = pop_next(s, R) {
        if at > until {
            break;
        }
        s.complete(id, answer(at, first), at, wall(t0, at));
        first = false;
        seen.push((at - t0, s.phase(id).unwrap()));
    }
    seen
}

#[test]
fn record_task_files_appearing_a_minute_after_the_end_are_picked_up() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&records(1), &schedule(), t0);
    let start = started_ago(secs(600));
    // The task ends at t0 + 20 s; its file is listed 100 s later.
    let end = t0 + secs(20);
    let end_ms = started_ago(Duration::ZERO) + 20_000;
    let files_at = end + secs(100);
    let mut previous = None;
    let phases = follow(&mut s, t0, t0 + secs(7200), |at, _| {
        let now = if at < end {
            (false, 0)
        } else if at < files_at {
            (true, 0)
        } else {
            (true, 1)
        };
        let changed = previous != Some(now);
        previous = Some(now);
        match now {
            (false, _) => running(start),
            (true, files) => finished(start, end_ms, files, changed),
        }
    });
    let at = |secs_since: u64| {
        phases
            .iter()
            .find(|(t, _)| *t >= secs(secs_since))
            .map(|&(t, p)| (t.as_secs(), p))
    };
    // Polled every 15 s while running, then every minute: at 30 s the task has ended
    // (no file yet), at 90 s it still has none: it keeps settling (two identical
    // answers are not enough without a file).
    assert_eq!(at(30), Some((30, Phase::Settling)));
    assert_eq!(at(90), Some((90, Phase::Settling)));
    // 150 s: the file is listed (changed); 210 s: the same again: done, for good.
    assert_eq!(at(150), Some((150, Phase::Settling)));
    assert_eq!(at(210), Some((210, Phase::Done)));
    assert_eq!(phases.last().map(|&(t, p)| (t.as_secs(), p)), at(210));
    assert_eq!(s.next_due(R), None);
}

#[test]
fn record_task_without_files_settles_at_the_settle_timeout_after_its_end_time() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&records(1), &schedule(), t0);
    // Ended 10 minutes before t0, never any file.
    let start = started_ago(secs(1800));
    let end_ms = started_ago(secs(600));
    let phases = follow(&mut s, t0, t0 + secs(4 * 3600), |_, first| {
        finished(start, end_ms, 0, first)
    });
    let (done_at, phase) = *phases.last().unwrap();
    assert_eq!(phase, Phase::Done);
    // EndTime + 1 h is t0 + 50 min: the first poll at or after it (the grid is t0 + k min).
    assert_eq!(done_at, secs(50 * 60));
    assert!(phases[..phases.len() - 1]
        .iter()
        .all(|&(_, p)| p == Phase::Settling));
    assert_eq!(phases.len(), 51, "polled once a minute until then");
    assert_eq!(s.next_due(R), None);
}

#[test]
fn settle_timeout_counts_from_first_seen_terminal_without_or_with_a_future_end_time() {
    let t0 = Instant::now();
    let start = started_ago(secs(1800));
    let in_a_day = started_ago(Duration::ZERO) + 86_400_000;
    for end_ms in [0, in_a_day] {
        let mut s = Scheduler::new(&records(1), &schedule(), t0);
        // Running until t0 + 5 min, then terminal with no file.
        let phases = follow(&mut s, t0, t0 + secs(4 * 3600), |at, _| {
            if at < t0 + secs(300) {
                running(start)
            } else {
                finished(start, end_ms, 0, at == t0 + secs(300))
            }
        });
        let (done_at, phase) = *phases.last().unwrap();
        assert_eq!(phase, Phase::Done, "EndTime {end_ms}");
        assert_eq!(done_at, secs(300 + 3600), "EndTime {end_ms}");
    }
}

#[test]
fn a_file_list_that_keeps_changing_settles_at_the_settle_timeout() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&records(1), &schedule(), t0);
    let start = started_ago(secs(1800));
    let end_ms = started_ago(secs(60));
    let phases = follow(&mut s, t0, t0 + secs(4 * 3600), |_, _| {
        finished(start, end_ms, 2, true)
    });
    let (done_at, phase) = *phases.last().unwrap();
    assert_eq!((done_at, phase), (secs(59 * 60), Phase::Done));
}

#[test]
fn a_settle_timeout_long_past_settles_on_the_first_answer() {
    // A recording that ended two days ago (a target added late, or after a restart) is
    // final: one answer is enough, files or not.
    let t0 = Instant::now();
    let start = started_ago(secs(50 * 3600));
    let end_ms = started_ago(secs(48 * 3600));
    for files in [0, 3] {
        let mut s = Scheduler::new(&records(1), &schedule(), t0);
        let (id, at) = pop_next(&mut s, R).unwrap();
        s.complete(id, finished(start, end_ms, files, true), at, wall(t0, at));
        assert_eq!(s.phase(id), Some(Phase::Done), "{files} files");
        assert_eq!(s.next_due(R), None);
    }
}

#[test]
fn a_failed_record_task_settles_after_two_identical_answers() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&records(1), &schedule(), t0);
    let start = started_ago(secs(5));
    let end_ms = started_ago(Duration::ZERO);
    let phases = follow(&mut s, t0, t0 + secs(3600), |_, first| {
        failed_to_start(start, end_ms, first)
    });
    assert_eq!(
        phases,
        [(secs(0), Phase::Settling), (SETTLE, Phase::Done)],
        "no file ever, yet done after two identical answers"
    );
}

#[test]
fn webcast_and_failed_tasks_whose_answer_keeps_changing_settle_at_the_timeout() {
    let t0 = Instant::now();
    let start = started_ago(secs(1800));
    let end_ms = started_ago(secs(60));
    let mut s = Scheduler::new(&[target(Kind::Webcast, 0, true)], &schedule(), t0);
    let mut done_at = None;
    while let Some((id, at)) = pop_next(&mut s, W) {
        s.complete(id, finished(start, end_ms, 0, true), at, wall(t0, at));
        done_at = Some(at - t0);
    }
    assert_eq!(s.phase(0), Some(Phase::Done));
    assert_eq!(done_at, Some(secs(59 * 60)));
    let mut s = Scheduler::new(&records(1), &schedule(), t0);
    let phases = follow(&mut s, t0, t0 + secs(4 * 3600), |_, _| {
        failed_to_start(start, end_ms, true)
    });
    assert_eq!(phases.last(), Some(&(secs(59 * 60), Phase::Done)));
    // A followed room is not parked by the timeout: it stays settling until two answers
    // agree.
    let mut s = Scheduler::new(&[target(Kind::Webcast, 0, false)], &schedule(), t0);
    for _ in 0..90 {
        let (id, at) = pop_next(&mut s, W).unwrap();
        s.complete(id, finished(start, end_ms, 0, true), at, wall(t0, at));
        assert_eq!(s.phase(id), Some(Phase::Settling));
    }
}

#[test]
fn webcast_tasks_settle_after_two_identical_answers_without_files() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&[target(Kind::Webcast, 0, true)], &schedule(), t0);
    let start = started_ago(secs(600));
    let end_ms = started_ago(secs(60));
    let (id, at) = pop_next(&mut s, W).unwrap();
    s.complete(id, finished(start, end_ms, 0, true), at, wall(t0, at));
    assert_eq!(s.phase(id), Some(Phase::Settling));
    let (id, at) = pop_next(&mut s, W).unwrap();
    s.complete(id, finished(start, end_ms, 0, false), at, wall(t0, at));
    assert_eq!(s.phase(id), Some(Phase::Done));
    assert_eq!(s.next_due(W), None);
}

#[test]
fn auth_errors_for_every_target_do_not_storm() {
    let t0 = Instant::now();
    let n = 1000;
    let mut s = Scheduler::new(&records(n), &schedule(), t0);
    let mut per_minute = [0usize; 10];
    let end = t0 + secs(600);
    while let Some((id, at)) = pop_next(&mut s, R) {
        if at >= end {
            break;
        }
        per_minute[((at - t0).as_secs() / 60) as usize] += 1;
        s.complete(id, PollResult::Failed(Outcome::AuthError), at, wall(t0, at));
    }
    // Minute 1: each target at 0, +15 s and +45 s; then the backoff doubles (with jitter)
    // up to 10 minutes. The naive 4 polls per target per minute would be 40,000.
    assert!(per_minute[0] <= 3 * n, "{per_minute:?}");
    assert!(per_minute[1] <= n + n / 10, "{per_minute:?}");
    for m in &per_minute[2..] {
        assert!(*m <= n / 2 + n / 20, "{per_minute:?}");
    }
    assert!(
        per_minute[5..].iter().sum::<usize>() <= n + n / 5,
        "about one request per target per 5 minutes by then: {per_minute:?}"
    );
    assert!(
        per_minute.iter().sum::<usize>() <= 40_000 / 5,
        "{per_minute:?}"
    );
    assert!(per_minute[9] > 0, "still trying: {per_minute:?}");
}

#[test]
fn retryable_and_throttled_failures_never_loop_tightly() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&records(1), &schedule(), t0);
    let (id, at) = pop_next(&mut s, R).unwrap();
    s.complete(
        id,
        PollResult::Failed(Outcome::ServerError),
        at,
        wall(t0, at),
    );
    assert_eq!(s.next_due(R), Some(at + ACTIVE));
    let mut gaps = Vec::new();
    let mut last = at + ACTIVE;
    for _ in 0..7 {
        let (id, at) = pop_next(&mut s, R).unwrap();
        gaps.push((at - last).as_secs());
        last = at;
        s.complete(id, PollResult::Failed(Outcome::Throttled), at, wall(t0, at));
    }
    assert_eq!(gaps, [0, 1, 2, 4, 8, 15, 15]);
    // A success resets the throttle streak.
    let (id, at) = pop_next(&mut s, R).unwrap();
    s.complete(id, running(started_ago(secs(60))), at, wall(t0, at));
    let (id, at) = pop_next(&mut s, R).unwrap();
    s.complete(id, PollResult::Failed(Outcome::Throttled), at, wall(t0, at));
    assert_eq!(s.next_due(R), Some(at + secs(1)));
}

#[test]
fn room_following_target_watches_the_room_and_picks_up_a_new_task() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&[target(Kind::Webcast, 0, false)], &schedule(), t0);
    let first = started_ago(secs(7200));
    let (id, at) = pop_next(&mut s, W).unwrap();
    s.complete(id, ended(first, true), at, wall(t0, at));
    assert_eq!(s.phase(id), Some(Phase::Settling));
    let (id, at) = pop_next(&mut s, W).unwrap();
    s.complete(id, ended(first, false), at, wall(t0, at));
    assert_eq!(s.phase(id), Some(Phase::Done));
    // Still watched at settle_interval.
    let (id, at) = pop_next(&mut s, W).unwrap();
    assert_eq!(at, t0 + 2 * SETTLE);
    s.complete(id, ended(first, false), at, wall(t0, at));
    assert_eq!(s.phase(id), Some(Phase::Done));
    // A new task started in the room.
    let (id, at) = pop_next(&mut s, W).unwrap();
    s.complete(id, running(started_ago(secs(10))), at, wall(t0, at));
    assert_eq!(s.phase(id), Some(Phase::Active));
    assert_eq!(s.next_due(W), Some(at + ACTIVE));
    // It ends and settles.
    let second = started_ago(secs(10));
    let (id, at) = pop_next(&mut s, W).unwrap();
    s.complete(id, ended(second, true), at, wall(t0, at));
    let (id, at) = pop_next(&mut s, W).unwrap();
    s.complete(id, ended(second, false), at, wall(t0, at));
    assert_eq!(s.phase(id), Some(Phase::Done));
    // A third task, already terminal when first seen, goes through settling again, even
    // if the caller's `changed` were false.
    let (id, at) = pop_next(&mut s, W).unwrap();
    s.complete(id, ended(started_ago(secs(5)), false), at, wall(t0, at));
    assert_eq!(s.phase(id), Some(Phase::Settling));
    // A file appearing late for the same task while done also reopens settling.
    let (id, at) = pop_next(&mut s, W).unwrap();
    s.complete(id, ended(started_ago(secs(5)), false), at, wall(t0, at));
    assert_eq!(s.phase(id), Some(Phase::Done));
    let (id, at) = pop_next(&mut s, W).unwrap();
    s.complete(id, ended(started_ago(secs(5)), true), at, wall(t0, at));
    assert_eq!(s.phase(id), Some(Phase::Settling));
}

#[test]
fn room_whose_newest_task_expired_is_still_checked() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&[target(Kind::Webcast, 0, false)], &schedule(), t0);
    let (id, at) = pop_next(&mut s, W).unwrap();
    s.complete(
        id,
        ended(started_ago(secs(80 * 3600)), true),
        at,
        wall(t0, at),
    );
    assert_eq!(s.phase(id), Some(Phase::Expired));
    let (id, at) = pop_next(&mut s, W).unwrap();
    assert_eq!(at, t0 + SETTLE);
    s.complete(id, running(started_ago(secs(1))), at, wall(t0, at));
    assert_eq!(s.phase(id), Some(Phase::Active));
}

#[test]
fn lag_is_how_overdue_the_most_overdue_target_is() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&records(3), &schedule(), t0);
    assert_eq!(s.lag(R, t0), Duration::ZERO);
    assert_eq!(
        s.lag(W, t0 + secs(100)),
        Duration::ZERO,
        "no webcast targets"
    );
    assert_eq!(s.lag(R, t0 + secs(7)), secs(7));
    assert_eq!(s.pop_due(R, t0 + secs(7)), Some(0));
    assert_eq!(s.lag(R, t0 + secs(7)), secs(2), "target 1 was due at 5 s");
    assert_eq!(s.pop_due(R, t0 + secs(7)), Some(1));
    assert_eq!(s.lag(R, t0 + secs(7)), Duration::ZERO);
}

#[test]
fn lag_stays_bounded_when_the_budget_is_the_bottleneck() {
    // 100 targets every 15 s need 6.7 polls/s; only 2/s can be sent.
    let t0 = Instant::now();
    let mut s = Scheduler::new(&records(100), &schedule(), t0);
    let start = started_ago(secs(60));
    let mut lags = Vec::new();
    for step in 0..2000u64 {
        let now = t0 + Duration::from_millis(500 * step);
        if let Some(id) = s.pop_due(R, now) {
            s.complete(id, running(start), now, wall(t0, now));
        }
        if step % 200 == 199 {
            lags.push(s.lag(R, now).as_secs_f64());
        }
    }
    let last = lags[lags.len() - 1];
    // Each target is polled every 100 / 2 = 50 s: 35 s more than active_interval.
    assert!((30.0..=40.0).contains(&last), "{lags:?}");
    assert!(
        lags.iter().skip(3).all(|l| (l - last).abs() < 5.0),
        "{lags:?}"
    );
}

#[test]
fn on_time_polls_keep_their_grid_despite_latency() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&records(2), &schedule(), t0);
    let start = started_ago(secs(60));
    for _ in 0..200 {
        let due = s.next_due(R).unwrap();
        // Dispatched 2 s late (the limiter was busy), answered 500 ms later.
        let id = s.pop_due(R, due + secs(2)).unwrap();
        let done = due + Duration::from_millis(2500);
        s.complete(id, running(start), done, wall(t0, done));
    }
    // Both targets are still on their original grid: 0 s and 7.5 s.
    assert_eq!(s.next_due(R), Some(t0 + ACTIVE * 100));
    assert_eq!(s.pop_due(R, t0 + ACTIVE * 100), Some(0));
    assert_eq!(s.next_due(R), Some(t0 + ACTIVE * 100 + ACTIVE / 2));
}

#[test]
fn absurd_start_times_do_not_panic() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(&records(3), &schedule(), t0);
    for (id, start) in [(0, i64::MAX), (1, i64::MIN), (2, -5)] {
        while s.pop_due(R, t0 + ACTIVE).is_some() {}
        s.complete(id, running(start), t0 + ACTIVE, wall0());
        assert_eq!(s.phase(id), Some(Phase::Active));
    }
}

#[test]
fn poll_result_from_snapshot() {
    let snap = TaskSnapshot {
        status: volc_rtc_exporter::model::status::ENDED,
        start_time_ms: 42,
        ..Default::default()
    };
    assert_eq!(
        PollResult::success(&snap, true),
        PollResult::Success {
            terminal: true,
            start_time_ms: 42,
            end_time_ms: 0,
            failed: false,
            files: 0,
            changed: true
        }
    );
    let with_files = TaskSnapshot {
        end_time_ms: 99,
        files: vec![Default::default(); 3],
        ..snap.clone()
    };
    assert_eq!(
        PollResult::success(&with_files, false),
        PollResult::Success {
            terminal: true,
            start_time_ms: 42,
            end_time_ms: 99,
            failed: false,
            files: 3,
            changed: false
        }
    );
    for failed in [
        TaskSnapshot {
            status: volc_rtc_exporter::model::status::FAILED,
            ..Default::default()
        },
        TaskSnapshot {
            status: volc_rtc_exporter::model::status::ENDED,
            stop_reason: "StartTaskFailed".into(),
            ..Default::default()
        },
    ] {
        assert!(matches!(
            PollResult::success(&failed, true),
            PollResult::Success {
                terminal: true,
                failed: true,
                ..
            }
        ));
    }
}
