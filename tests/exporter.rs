//! The whole exporter (`runtime::run_with`) against the simulated OpenAPI, both on 127.0.0.1 ports,
//! asserting exact values scraped from `/metrics` over HTTP: task lifecycles through every
//! phase, stops counted once, every fault kind of the simulator (with the budget held), and a
//! saturated budget with thousands of targets.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use common::{
    get, key, requests, scrape_until, settings, target, tkey, ExporterServer, Metrics, SimServer,
};
use volc_rtc_exporter::clock::system_time_to_ms;
use volc_rtc_exporter::model::{Action, Kind, Outcome, Target, TargetKey};
use volc_rtc_exporter::sim::scenario::sim_credentials;
use volc_rtc_exporter::sim::{
    bulk_scenario, stop_reason, Clock, Fault, FaultSpec, SimFile, SimOptions, SimTask, Simulator,
};

const APP: &str = "661e8f0d1ab2c3d4e5f60718";
const SEC: Duration = Duration::from_secs(1);

/// The saturation test wants the budget to be the bottleneck: it runs alone (write), the
/// others share (read).
static EXCLUSIVE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// What the sim's timeline says about `task` at the end, as the exporter's per-target series.
fn expected_series(sim: &Simulator, task: &SimTask, target: &TargetKey) -> Metrics {
    let now = sim.clock().now_ms();
    let state = task.state_at(now).expect("task visible");
    let mut m = Metrics::new();
    let k = |name: &str, extra: &[(&str, &str)]| tkey(name, target, extra);
    m.insert(k("task_status", &[]), state.status as f64);
    m.insert(k("task_start_timestamp_seconds", &[]), secs(task.start_ms));
    assert!(state.end_ms > 0, "the scripted task has ended");
    m.insert(k("task_end_timestamp_seconds", &[]), secs(state.end_ms));
    m.insert(
        k("task_duration_seconds", &[]),
        secs(state.end_ms - task.start_ms),
    );
    m.insert(k("task_stop_reason", &[("reason", state.stop_reason)]), 1.0);
    m.insert(k("target_up", &[]), 1.0);
    match target.kind {
        Kind::Record => {
            m.insert(k("record_files", &[]), state.files.len() as f64);
            m.insert(
                k("record_size_bytes", &[]),
                state.files.iter().map(|f| f.size_bytes).sum::<i64>() as f64,
            );
            for f in state.files {
                let label = f
                    .vid
                    .as_deref()
                    .or(f.object_key.as_deref())
                    .expect("scripted files are named");
                m.insert(
                    k("record_file_size_bytes", &[("file", label)]),
                    f.size_bytes as f64,
                );
                m.insert(
                    k("record_file_duration_seconds", &[("file", label)]),
                    secs(f.duration_ms),
                );
            }
        }
        Kind::Webcast => {
            if let volc_rtc_exporter::sim::task::TaskDetail::Webcast(plan) = &task.detail {
                m.insert(
                    k("webcast_max_running_time_seconds", &[]),
                    plan.max_running_time_s as f64,
                );
            }
        }
    }
    m
}

/// The scraped per-target series of `target`, without the last-success timestamp.
fn scraped_series(m: &Metrics, target: &TargetKey) -> Metrics {
    let labels = common::target_labels(target);
    m.iter()
        .filter(|(k, _)| {
            k.starts_with("volcengine_rtc_")
                && !k.starts_with("volcengine_rtc_target_last_success")
                && labels.iter().all(|(n, v)| {
                    let mut one = String::new();
                    one.push_str(n);
                    one.push_str("=\"");
                    one.push_str(v);
                    one.push('"');
                    k.contains(&one)
                })
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn phase(m: &Metrics, kind: &str, phase: &str) -> f64 {
    get(
        m,
        &key(
            "volcengine_rtc_targets",
            &[("kind", kind), ("phase", phase)],
        ),
    )
    .unwrap_or(-1.0)
}

fn stops(m: &Metrics, kind: &str, reason: &str) -> f64 {
    get(m, &common::stops_key(kind, APP, reason)).unwrap_or(-1.0)
}

/// One target per task, by its IDs.
fn targets_of(tasks: &[SimTask]) -> Vec<Target> {
    tasks
        .iter()
        .map(|t| target(t.kind(), &t.app_id, &t.room_id, &t.task_id))
        .collect()
}

/// The simulator on a loopback port, on the system clock, knowing the simulator's credentials
/// and `tasks`.
async fn sim_with(tasks: impl IntoIterator<Item = SimTask>) -> SimServer {
    let sim = Simulator::new(SimOptions::default(), Clock::system());
    sim.add_credentials(&sim_credentials());
    sim.add_tasks(tasks);
    SimServer::start(sim).await
}

fn total_requests(sim: &Simulator) -> u64 {
    Action::ALL.iter().map(|a| sim.total_requests(*a)).sum()
}

/// Record with files arriving after the end, webcast ending at its MaxRunningTime, record that
/// fails to start: every value at the end equals the sim's timeline, every target reaches
/// done, and done targets are never polled again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_truth_across_phases() {
    let _shared = EXCLUSIVE.read().await;
    let now = system_time_to_ms(volc_rtc_exporter::clock::now());
    let rec_end = now + 3_000;
    let file_a = SimFile::object("rec/idle/a.mp4", now - 10_000, 8_000, "host");
    let file_b = SimFile::vod("v0dvidb", now - 2_000, 4_999, "guest");
    let rec = SimTask::record(APP, "room-1", "rec-idle", now - 10_000)
        .ends(rec_end, stop_reason::IDLE_TIME_OUT)
        .files_at(
            rec_end + 200,
            vec![file_a.clone().size(1_000), file_b.clone().size(77)],
        )
        .files_at(
            rec_end + 500,
            vec![file_a.size(5_368_709_120 + 3), file_b.size(123_457)],
        );
    let web = SimTask::webcast(APP, "room-1", "web-mrt", now - 6_000).exceeds_max_running_time(10);
    let failed = SimTask::record(APP, "room-2", "rec-fail", now - 2_000)
        .pending_for(4_000)
        .ends(now + 2_000, stop_reason::START_TASK_FAILED);
    let tasks = [rec.clone(), web.clone(), failed.clone()];
    let targets = targets_of(&tasks);

    let sim = sim_with(tasks.iter().cloned()).await;
    let exporter = ExporterServer::start(settings(
        &sim,
        sim_credentials(),
        targets.clone(),
        SEC,
        SEC,
        10.0,
    ))
    .await;

    // Watch the statuses and phases go by, until every target is done.
    let mut statuses: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut phases_seen = BTreeSet::new();
    let end = scrape_until(&exporter, 40 * SEC, "every target to be done", |m| {
        for (i, t) in targets.iter().enumerate() {
            if let Some(s) = get(m, &tkey("task_status", &t.key, &[])) {
                if statuses[i].last() != Some(&s) {
                    statuses[i].push(s);
                }
            }
        }
        for p in ["new", "active", "settling", "done", "expired"] {
            if phase(m, "record", p) > 0.0 {
                phases_seen.insert(p);
            }
        }
        phase(m, "record", "done") == 2.0 && phase(m, "webcast", "done") == 1.0
    })
    .await;
    assert_eq!(statuses[0], [2.0, 3.0], "record: running, then ended");
    assert_eq!(statuses[1], [2.0, 3.0], "webcast: running, then ended");
    assert_eq!(statuses[2], [1.0, 4.0], "record: not started, then failed");
    for p in ["active", "settling", "done"] {
        assert!(
            phases_seen.contains(p),
            "phase {p} never seen: {phases_seen:?}"
        );
    }

    // Every value equals the timeline at the end.
    for (task, t) in tasks.iter().zip(&targets) {
        let want = expected_series(&sim.sim, task, &t.key);
        assert_eq!(scraped_series(&end, &t.key), want, "{}", task.task_id);
    }
    // Spot checks that do not go through the timeline code.
    let r = &targets[0].key;
    assert_eq!(get(&end, &tkey("record_files", r, &[])), Some(2.0));
    assert_eq!(
        get(&end, &tkey("record_size_bytes", r, &[])),
        Some((5_368_709_123_i64 + 123_457) as f64)
    );
    assert_eq!(
        get(
            &end,
            &tkey("record_file_duration_seconds", r, &[("file", "v0dvidb")])
        ),
        Some(4.999)
    );
    assert_eq!(
        get(&end, &tkey("task_duration_seconds", r, &[])),
        Some(13.0)
    );
    let w = &targets[1].key;
    assert_eq!(
        get(&end, &tkey("webcast_max_running_time_seconds", w, &[])),
        Some(10.0)
    );
    assert_eq!(
        get(
            &end,
            &tkey("task_stop_reason", w, &[("reason", "ExceedMaxRunningTime")])
        ),
        Some(1.0)
    );
    assert_eq!(
        get(&end, &tkey("task_status", &targets[2].key, &[])),
        Some(4.0)
    );
    for p in ["new", "active", "settling", "expired"] {
        assert_eq!(phase(&end, "record", p), 0.0, "record {p}");
        assert_eq!(phase(&end, "webcast", p), 0.0, "webcast {p}");
    }
    assert_eq!(stops(&end, "record", "IdleTimeOut"), 1.0);
    assert_eq!(stops(&end, "record", "StartTaskFailed"), 1.0);
    assert_eq!(stops(&end, "record", "StopByAPI"), 0.0);
    assert_eq!(stops(&end, "webcast", "ExceedMaxRunningTime"), 1.0);
    assert_eq!(stops(&end, "webcast", "StartTaskFailed"), 0.0);

    // Done targets are never polled again: three settle intervals without a request.
    let before = total_requests(&sim.sim);
    tokio::time::sleep(3 * SEC).await;
    assert_eq!(total_requests(&sim.sim), before, "a done target was polled");
    let m = exporter.scrape().await;
    assert_eq!(
        requests(&m, "GetRecordTask", Outcome::Success)
            + requests(&m, "GetWebCastTask", Outcome::Success),
        before as f64,
        "every request the sim answered was a success the exporter counted"
    );

    exporter.stop().await;
    sim.stop().await;
}

/// Stops are counted once per task across many polls and scrapes; reasons never seen stay 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_counted_exactly_once() {
    let _shared = EXCLUSIVE.read().await;
    let now = system_time_to_ms(volc_rtc_exporter::clock::now());
    let tasks = vec![
        SimTask::record(APP, "r", "rec-api", now - 60_000)
            .ends(now - 30_000, stop_reason::STOP_BY_API),
        SimTask::record(APP, "r", "rec-idle", now - 60_000)
            .ends(now - 20_000, stop_reason::IDLE_TIME_OUT),
        SimTask::record(APP, "r", "rec-later", now - 60_000)
            .ends(now + 2_000, stop_reason::STOP_BY_API),
        SimTask::record(APP, "r", "rec-running", now - 60_000),
        SimTask::webcast(APP, "r", "web-failed", now - 60_000)
            .ends(now - 59_000, stop_reason::START_TASK_FAILED),
        SimTask::webcast(APP, "r", "web-running", now - 60_000),
    ];
    let targets = targets_of(&tasks);
    let sim = sim_with(tasks).await;
    let exporter =
        ExporterServer::start(settings(&sim, sim_credentials(), targets, SEC, SEC, 10.0)).await;

    let want = [
        ("record", "StopByAPI", 2.0),
        ("record", "IdleTimeOut", 1.0),
        ("record", "StartTaskFailed", 0.0),
        ("record", "UnknownStopReason", 0.0),
        ("webcast", "StartTaskFailed", 1.0),
        ("webcast", "StopByAPI", 0.0),
        ("webcast", "ExceedMaxRunningTime", 0.0),
        ("webcast", "UnknownStopReason", 0.0),
    ];
    scrape_until(
        &exporter,
        Duration::from_secs(30),
        "all four stops seen",
        |m| stops(m, "record", "StopByAPI") == 2.0,
    )
    .await;
    let polls_before = total_requests(&sim.sim);
    for i in 0..20 {
        let m = exporter.scrape().await;
        for (kind, reason, n) in want {
            assert_eq!(stops(&m, kind, reason), n, "scrape {i}: {kind} {reason}");
        }
        let all: f64 = m
            .iter()
            .filter(|(k, _)| k.starts_with("volcengine_rtc_task_stops_total"))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(all, 4.0, "scrape {i}: no other stop counted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The running tasks kept being polled meanwhile.
    let polled = total_requests(&sim.sim) - polls_before;
    assert!(polled >= 4, "only {polled} polls during the scrapes");

    exporter.stop().await;
    sim.stop().await;
}

/// What a persistent fault should do to the exporter.
enum Expect {
    /// Every poll fails with this outcome: `target_up` 0, last values kept.
    Fails(Outcome),
    /// Polls still succeed; the scraped values then are these (after the fault's effect),
    /// relative to the values before the fault.
    Succeeds(fn(&Metrics, &TargetKey, &TargetKey) -> Metrics),
}

/// The values before the fault stay exactly as they were.
fn unchanged(before: &Metrics, _rec: &TargetKey, _web: &TargetKey) -> Metrics {
    before.clone()
}

const FAULT_BUDGET: f64 = 5.0;

/// Per-target series that do not move between polls of a running task.
fn stable(m: &Metrics, targets: &[&TargetKey]) -> Metrics {
    let mut out = Metrics::new();
    for t in targets {
        out.extend(
            scraped_series(m, t)
                .into_iter()
                .filter(|(k, _)| !k.starts_with("volcengine_rtc_task_duration_seconds")),
        );
    }
    out
}

/// Exporter-side counters equal what the sim says a correct client makes of its answers (a
/// slow answer the client gave up on is a success to the sim, a timeout to the exporter).
fn counters_match(m: &Metrics, sim: &Simulator) -> bool {
    Action::ALL.iter().all(|&a| {
        Outcome::ALL.iter().all(|&o| {
            let ours = requests(m, a.as_str(), o);
            let theirs = sim.request_count(a, o) as f64;
            match o {
                Outcome::Timeout => true,
                Outcome::Success => ours + requests(m, a.as_str(), Outcome::Timeout) == theirs,
                _ => ours == theirs,
            }
        })
    })
}

/// After a first good poll, `fault` is injected for every request until cleared: `/metrics`
/// keeps answering with the last values, `target_up` and the outcome counters say what
/// happened, and after the fault is cleared the targets recover; the budget held throughout.
async fn fault_case(fault: Fault, expect: Expect) {
    let _shared = EXCLUSIVE.read().await;
    let now = system_time_to_ms(volc_rtc_exporter::clock::now());
    let rec = SimTask::record(APP, "room-f", "rec-running", now - 60_000).files_at(
        now - 50_000,
        vec![SimFile::vod("v0dlive", now - 60_000, 10_000, "host").size(4_096)],
    );
    let web = SimTask::webcast(APP, "room-f", "web-running", now - 60_000)
        .webcast_plan(|p| p.max_running_time_s = 7_200);
    let targets = targets_of(&[rec.clone(), web.clone()]);
    let (rk, wk) = (targets[0].key.clone(), targets[1].key.clone());
    let sim = sim_with([rec, web]).await;
    let mut s = settings(&sim, sim_credentials(), targets, SEC, SEC, FAULT_BUDGET);
    // Small for the slow answer; roomy for the rest, so that a loaded machine does not turn a
    // 1 MiB answer into a timeout.
    s.api.timeout = match fault {
        Fault::Slow(_) => Duration::from_millis(300),
        _ => 2 * SEC,
    };
    let exporter = ExporterServer::start(s).await;
    let up = |m: &Metrics, t: &TargetKey| get(m, &tkey("target_up", t, &[]));

    let first = scrape_until(
        &exporter,
        Duration::from_secs(20),
        "a first good poll",
        |m| up(m, &rk) == Some(1.0) && up(m, &wk) == Some(1.0),
    )
    .await;
    let before = stable(&first, &[&rk, &wk]);
    assert_eq!(get(&before, &tkey("task_status", &rk, &[])), Some(2.0));
    assert_eq!(
        get(
            &before,
            &tkey("record_file_size_bytes", &rk, &[("file", "v0dlive")])
        ),
        Some(4_096.0)
    );
    assert_eq!(
        get(&before, &tkey("webcast_max_running_time_seconds", &wk, &[])),
        Some(7_200.0)
    );

    let id = sim.sim.inject(FaultSpec::always(fault.clone()));
    match &expect {
        Expect::Fails(outcome) => {
            let o = *outcome;
            let at_fault = exporter.scrape().await;
            let m = scrape_until(
                &exporter,
                Duration::from_secs(30),
                &format!("both targets down with {o}"),
                |m| {
                    up(m, &rk) == Some(0.0)
                        && up(m, &wk) == Some(0.0)
                        && Action::ALL.iter().all(|a| {
                            requests(m, a.as_str(), o) > requests(&at_fault, a.as_str(), o)
                        })
                },
            )
            .await;
            // The last values are kept, whatever the fault (target_up aside).
            let mut kept = stable(&m, &[&rk, &wk]);
            for t in [&rk, &wk] {
                assert_eq!(kept.insert(tkey("target_up", t, &[]), 1.0), Some(0.0));
            }
            assert_eq!(kept, before, "{fault:?}: last values kept");
            if o == Outcome::Throttled {
                let budget_now = scrape_until(
                    &exporter,
                    Duration::from_secs(10),
                    "the rate in force cut below the budget",
                    |m| {
                        Action::ALL.iter().all(|a| {
                            get(
                                m,
                                &key(
                                    "volcengine_rtc_api_rate_limit_requests_per_second",
                                    &[("action", a.as_str())],
                                ),
                            )
                            .is_some_and(|r| r < FAULT_BUDGET)
                        })
                    },
                )
                .await;
                assert_eq!(
                    get(
                        &budget_now,
                        &key(
                            "volcengine_rtc_api_budget_requests_per_second",
                            &[("action", "GetRecordTask")]
                        )
                    ),
                    Some(FAULT_BUDGET)
                );
            }
        }
        Expect::Succeeds(want) => {
            let want = want(&before, &rk, &wk);
            let at_fault: u64 = Action::ALL
                .iter()
                .map(|a| sim.sim.request_count(*a, Outcome::Success))
                .sum();
            // Two polls of each target through the fault, then the values are the fault's.
            let m = scrape_until(
                &exporter,
                Duration::from_secs(30),
                "polls through the fault",
                |m| {
                    let now: u64 = Action::ALL
                        .iter()
                        .map(|a| sim.sim.request_count(*a, Outcome::Success))
                        .sum();
                    now >= at_fault + 4 && stable(m, &[&rk, &wk]) == want
                },
            )
            .await;
            for a in Action::ALL {
                for o in Outcome::ALL {
                    if o != Outcome::Success {
                        assert_eq!(requests(&m, a.as_str(), o), 0.0, "{a} {o}");
                    }
                }
            }
        }
    }

    assert!(sim.sim.clear_fault(id), "the fault was still active");
    scrape_until(
        &exporter,
        Duration::from_secs(40),
        "recovery after the fault is cleared",
        |m| stable(m, &[&rk, &wk]) == before,
    )
    .await;
    scrape_until(
        &exporter,
        Duration::from_secs(10),
        "the exporter's counters to match the sim's",
        |m| counters_match(m, &sim.sim),
    )
    .await;
    for a in Action::ALL {
        let worst = sim.sim.max_requests_in_window(a, SEC);
        assert!(
            worst as f64 <= FAULT_BUDGET,
            "{fault:?}: {worst} {a} requests in one second, budget {FAULT_BUDGET}"
        );
    }
    exporter.stop().await;
    sim.stop().await;
}

/// Empty and optional fields left out: the webcast's MaxRunningTime is gone, the rest stays.
fn without_max_running_time(before: &Metrics, _rec: &TargetKey, web: &TargetKey) -> Metrics {
    let mut m = before.clone();
    assert!(m
        .remove(&tkey("webcast_max_running_time_seconds", web, &[]))
        .is_some());
    m
}

/// Sizes and durations above 2^32, kept exactly.
fn large_numbers(before: &Metrics, rec: &TargetKey, _web: &TargetKey) -> Metrics {
    let mut m = before.clone();
    let size = (4_096_i64 + (3 << 32)) as f64;
    m.insert(tkey("record_size_bytes", rec, &[]), size);
    m.insert(
        tkey("record_file_size_bytes", rec, &[("file", "v0dlive")]),
        size,
    );
    m.insert(
        tkey("record_file_duration_seconds", rec, &[("file", "v0dlive")]),
        (10_000_i64 + (1 << 32)) as f64 / 1000.0,
    );
    m
}

/// One test per fault kind (each on its own, so they run side by side and fail by name).
macro_rules! fault_tests {
    ($($name:ident: $fault:expr => $expect:expr;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                fault_case($fault, $expect).await;
            }
        )*
    };
}

fault_tests! {
    fault_http_500: Fault::internal_error() => Expect::Fails(Outcome::ServerError);
    fault_http_503: Fault::unavailable() => Expect::Fails(Outcome::ServerError);
    fault_html_502: Fault::HtmlBadGateway => Expect::Fails(Outcome::ServerError);
    fault_error_inside_http_200: Fault::ErrorInOk {
        code: "InvalidParameter.AccountIdMismatch".into(),
    } => Expect::Fails(Outcome::ClientError);
    fault_malformed_json: Fault::MalformedJson => Expect::Fails(Outcome::DecodeError);
    fault_truncated_json: Fault::TruncatedJson => Expect::Fails(Outcome::DecodeError);
    fault_huge_body: Fault::HugeBody {
        bytes: (1 << 20) + 1,
    } => Expect::Fails(Outcome::DecodeError);
    fault_connection_reset: Fault::ResetConnection => Expect::Fails(Outcome::NetworkError);
    fault_slow_past_the_timeout: Fault::Slow(Duration::from_secs(2))
        => Expect::Fails(Outcome::Timeout);
    fault_throttling: Fault::Throttle => Expect::Fails(Outcome::Throttled);
    fault_webcast_spelling: Fault::WebcastSpelling => Expect::Succeeds(unchanged);
    fault_short_config_spellings: Fault::ShortConfigSpellings => Expect::Succeeds(unchanged);
    fault_extra_fields: Fault::ExtraFields => Expect::Succeeds(unchanged);
    fault_missing_optional_fields: Fault::MissingOptionalFields
        => Expect::Succeeds(without_max_running_time);
    fault_large_numbers: Fault::LargeNumbers => Expect::Succeeds(large_numbers);
}

/// 2,400 running record targets polled every 10 s want 240 requests/s; the budget is 50/s.
/// The budget is the bottleneck: no sliding second over it, no request refused, and the
/// shortfall shown as scheduler lag. (How much of the budget is used is a throughput figure
/// measured in wall time, which a loaded machine lowers: `cargo bench --bench exporter --
/// budget` reports it against its bar of 95 %.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_budget_with_thousands_of_targets() {
    let _alone = EXCLUSIVE.write().await;
    const BUDGET: f64 = 50.0;
    const TARGETS: usize = 2_400;
    let scenario = bulk_scenario(TARGETS, 0, 1.0, 0, volc_rtc_exporter::clock::now());
    let sim = Simulator::from_scenario(&scenario, SimOptions::default(), Clock::system());
    let sim = SimServer::start(sim).await;
    let mut s = settings(
        &sim,
        sim_credentials(),
        scenario.targets.clone(),
        10 * SEC,
        10 * SEC,
        BUDGET,
    );
    s.budget[Action::GetWebCastTask.index()] = 5.0;
    let started = Instant::now();
    let exporter = ExporterServer::start(s).await;
    let record_lag = |m: &Metrics| {
        get(
            m,
            &key(
                "volcengine_rtc_scheduler_lag_seconds",
                &[("action", "GetRecordTask")],
            ),
        )
    };

    // Let it run at least 10 s, until the shortfall shows as lag.
    let lagging = scrape_until(
        &exporter,
        Duration::from_secs(30),
        "scheduler lag to show",
        |m| started.elapsed() >= 10 * SEC && record_lag(m).is_some_and(|lag| lag > 0.0),
    )
    .await;
    let lag = record_lag(&lagging);
    exporter.stop().await;

    let log = sim.sim.request_log(Action::GetRecordTask);
    let worst = sim.sim.max_requests_in_window(Action::GetRecordTask, SEC);
    let cap = BUDGET as usize;
    let tightest = log
        .windows(cap + 1)
        .map(|w| w[cap].duration_since(w[0]))
        .min()
        .unwrap_or_default();
    let failures: u64 = Outcome::ALL
        .iter()
        .filter(|o| **o != Outcome::Success)
        .map(|o| sim.sim.request_count(Action::GetRecordTask, *o))
        .sum();
    eprintln!(
        "saturated budget: {} requests, worst 1 s window {worst} (budget {BUDGET}), \
         lag {lag:?} s, {failures} failed; tightest {} requests span {tightest:?}",
        log.len(),
        cap + 1
    );
    assert!(
        worst as f64 <= BUDGET,
        "{worst} requests in one second, budget {BUDGET}"
    );
    assert_eq!(failures, 0, "every request succeeded");
    sim.stop().await;
}

/// Requests (both actions) the sim logged in `[from, to)`.
fn requests_between(sim: &Simulator, from: Instant, to: Instant) -> usize {
    Action::ALL
        .iter()
        .flat_map(|a| sim.request_log(*a))
        .filter(|t| *t >= from && *t < to)
        .count()
}

const AUTH_TARGETS: (usize, usize) = (150, 50);
const SESSION_TOKEN: &str = "tok-IwVb3sQz9LmN5pR7sessiontoken";

/// The real binary signing with wrong credentials for 200 targets: auth errors are counted,
/// requests fall off at once instead of storming, and the log says so once per action,
/// never with the secret, the token or the Authorization header.
async fn wrong_credentials(access_key: &str, secret: &str) {
    let _shared = EXCLUSIVE.read().await;
    let scenario = bulk_scenario(
        AUTH_TARGETS.0,
        AUTH_TARGETS.1,
        1.0,
        0,
        volc_rtc_exporter::clock::now(),
    );
    let n_targets = scenario.targets.len();
    let sim = Simulator::from_scenario(&scenario, SimOptions::default(), Clock::system());
    let sim = SimServer::start(sim).await;
    let dir = common::scratch_dir("auth");
    let config = common::write_config(
        &dir,
        format!(
            "api:\n  endpoint: http://127.0.0.1:{}\n  timeout: 2s\n\
             credentials:\n  access_key_id: \"{access_key}\"\n  secret_access_key: \"{secret}\"\n  session_token: \"{SESSION_TOKEN}\"\n\
             budget:\n  GetRecordTask: 50\n  GetWebCastTask: 50\n\
             schedule:\n  active_interval: 1s\n  settle_interval: 1s\n{}",
            sim.addr.port(),
            common::targets_yaml(&scenario.targets)
        ),
    );
    let config_arg = format!("--config.file={}", config.display());
    let mut child = common::ChildProcess::spawn(
        &[
            &config_arg,
            "--web.listen-address=127.0.0.1:0",
            "--log.level=debug",
        ],
        &[],
    );
    let addr = child
        .wait_for_word_after("message=listening address=", 20 * SEC)
        .await;

    // Wait for the first auth error of each action, then watch for 6 s more.
    common::wait_until(20 * SEC, "an auth error for each action", || async {
        Action::ALL
            .iter()
            .all(|a| sim.sim.request_count(*a, Outcome::AuthError) > 0)
    })
    .await;
    let first = Action::ALL
        .iter()
        .filter_map(|a| sim.sim.request_log(*a).first().copied())
        .min()
        .expect("requests were logged");
    tokio::time::sleep_until(first + 6 * SEC + SEC / 2).await;
    let wave = requests_between(&sim.sim, first, first + SEC);
    let after = requests_between(&sim.sim, first + SEC, first + 6 * SEC);
    let naive = n_targets * 5;
    eprintln!(
        "wrong credentials (access key {access_key}): {wave} requests in the first second, \
         {after} in the next 5 s (polling every target every active_interval: {naive})"
    );

    let (status, text) = common::http_get(&format!("http://{addr}/metrics"))
        .await
        .expect("/metrics answers");
    assert_eq!(status, 200);
    let m = common::parse_exposition(&text).expect("valid exposition");
    for a in Action::ALL {
        let counted = requests(&m, a.as_str(), Outcome::AuthError);
        assert!(counted >= 1.0, "{a}: auth_error not counted");
        assert_eq!(
            counted,
            sim.sim.request_count(a, Outcome::AuthError) as f64,
            "{a}: every auth error counted"
        );
        assert_eq!(requests(&m, a.as_str(), Outcome::Success), 0.0);
    }
    assert!(!text.contains(secret) && !text.contains(SESSION_TOKEN));

    let (exit, took) = child.terminate(10 * SEC).await;
    assert!(exit.success(), "exit status {exit}");
    assert!(took <= 5 * SEC, "stopping took {took:?}");
    let logs = child.stderr();
    let auth_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("authentication failed"))
        .collect();
    assert_eq!(auth_lines.len(), 2, "one auth error per action:\n{logs}");
    for a in Action::ALL {
        assert_eq!(
            auth_lines
                .iter()
                .filter(|l| l.contains(&format!("action={a}")))
                .count(),
            1,
            "{a}: {auth_lines:?}"
        );
    }
    for leak in [
        secret,
        SESSION_TOKEN,
        "HMAC-SHA256",
        "Signature=",
        "Credential=",
    ] {
        assert!(!logs.contains(leak), "the log contains {leak:?}:\n{logs}");
    }
    assert!(
        after * 20 < naive,
        "{after} requests in the 5 s after the first wave; polling every target would be {naive}"
    );
    sim.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_key_no_storm_and_no_leak() {
    wrong_credentials(
        volc_rtc_exporter::sim::scenario::SIM_ACCESS_KEY_ID,
        "d3JvbmctU2VjcmV0LUtleS1YeXo5ODc2NTQzMjE=",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_access_key_no_storm_and_no_leak() {
    let secret = sim_credentials().secret_access_key.expose().to_string();
    wrong_credentials("AKLTd3JvbmdBY2Nlc3NLZXlJZA", &secret).await;
}

/// Late uploads, in paused time (the whole hour passes in a moment): a recording whose files
/// are uploaded 60 s after its end is exposed with its files and their final sizes (the old
/// rule, two identical answers, froze it at 0 files); a recording that never gets a file keeps
/// settling until `settle_timeout` (1 h) after its EndTime, then is done and stays exposed with
/// `record_files 0`; a task that failed to start settles after two identical answers; done
/// tasks are never polled again.
#[tokio::test(start_paused = true)]
async fn late_record_files_are_picked_up_and_fileless_recordings_settle_at_the_timeout() {
    let now = system_time_to_ms(volc_rtc_exporter::clock::now());
    let end = now + 30_000;
    let file_a = SimFile::object("rec/late/a.mp4", now - 600_000, 400_000, "host");
    let file_b = SimFile::vod("v0dlateb", now - 200_000, 230_000, "guest");
    let late = SimTask::record(APP, "room-late", "rec-late", now - 600_000)
        .ends(end, stop_reason::STOP_BY_API)
        .uploads_after_end(60_000, vec![file_a.clone().size(1_000), file_b.clone()])
        .uploads_after_end(80_000, vec![file_a.clone(), file_b.clone()]);
    let empty = SimTask::record(APP, "room-late", "rec-empty", now - 600_000)
        .ends(end, stop_reason::IDLE_TIME_OUT);
    let failed = SimTask::record(APP, "room-late", "rec-fail", now - 1_000)
        .ends(end, stop_reason::START_TASK_FAILED);
    let tasks = [late.clone(), empty.clone(), failed.clone()];
    let targets = targets_of(&tasks);
    let sim = sim_with(tasks.iter().cloned()).await;
    // Settling polls every 20 s: the ended recording answers twice with no file before its
    // files come, which the old rule took as settled. settle_timeout is the default 1 h.
    let mut s = settings(
        &sim,
        sim_credentials(),
        targets.clone(),
        10 * SEC,
        20 * SEC,
        10.0,
    );
    assert_eq!(s.schedule.settle_timeout, 3600 * SEC);
    s.schedule.retention = Duration::from_secs(7 * 86_400);
    let exporter = ExporterServer::start(s).await;
    let (l, e, f) = (&targets[0].key, &targets[1].key, &targets[2].key);
    let files = |m: &Metrics, t: &TargetKey| get(m, &tkey("record_files", t, &[]));

    // Five minutes: the late files were uploaded 60–80 s after the end and are exposed
    // with their final sizes; the failed task is done; the fileless one is still settling.
    tokio::time::sleep(300 * SEC).await;
    let m = exporter.scrape().await;
    assert_eq!(scraped_series(&m, l), expected_series(&sim.sim, &late, l));
    assert_eq!(files(&m, l), Some(2.0));
    assert_eq!(
        get(&m, &tkey("record_size_bytes", l, &[])),
        Some((file_a.size_bytes + file_b.size_bytes) as f64)
    );
    assert_eq!(
        get(
            &m,
            &tkey("record_file_size_bytes", l, &[("file", "rec/late/a.mp4")])
        ),
        Some(file_a.size_bytes as f64)
    );
    assert_eq!(files(&m, e), Some(0.0));
    assert_eq!(get(&m, &tkey("task_status", f, &[])), Some(4.0));
    assert_eq!(phase(&m, "record", "done"), 2.0, "late and failed");
    assert_eq!(phase(&m, "record", "settling"), 1.0, "the fileless one");

    // Just before EndTime + 1 h: still settling.
    let wait_until_ms = |at: i64| {
        let left = at - system_time_to_ms(volc_rtc_exporter::clock::now());
        Duration::from_millis(u64::try_from(left).unwrap_or(0))
    };
    tokio::time::sleep(wait_until_ms(end + 3_540_000)).await;
    let m = exporter.scrape().await;
    assert_eq!(phase(&m, "record", "settling"), 1.0);
    let before = sim.sim.total_requests(Action::GetRecordTask);
    // Past EndTime + 1 h and the next settle poll: done, exposed with no file.
    tokio::time::sleep(wait_until_ms(end + 3_600_000 + 90_000)).await;
    let m = exporter.scrape().await;
    assert_eq!(phase(&m, "record", "done"), 3.0);
    assert_eq!(phase(&m, "record", "settling"), 0.0);
    assert_eq!(scraped_series(&m, e), expected_series(&sim.sim, &empty, e));
    assert_eq!(files(&m, e), Some(0.0));
    assert_eq!(get(&m, &tkey("record_size_bytes", e, &[])), Some(0.0));
    assert_eq!(get(&m, &tkey("task_status", e, &[])), Some(3.0));
    let polled = sim.sim.total_requests(Action::GetRecordTask) - before;
    assert!(
        (2..=4).contains(&polled),
        "{polled} polls in the last 2.5 minutes"
    );
    // Nothing is polled any more; the values stay.
    let done_at = sim.sim.total_requests(Action::GetRecordTask);
    tokio::time::sleep(3600 * SEC).await;
    assert_eq!(sim.sim.total_requests(Action::GetRecordTask), done_at);
    let later = exporter.scrape().await;
    for t in [l, e, f] {
        assert_eq!(
            scraped_series(&later, t),
            scraped_series(&m, t),
            "{}",
            t.task_id.as_deref().unwrap_or_default()
        );
    }
    // Each task about 4 times while running; then the failed one twice, the late one about
    // 6 times, the fileless one every 20 s for the hour.
    assert!(
        done_at <= 3 * 4 + 2 + 6 + 182,
        "{done_at} GetRecordTask requests"
    );
    exporter.stop().await;
    sim.stop().await;
}
