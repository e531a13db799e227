//! Ready-made simulated worlds: [`demo_scenario`] for the `demo` command (a few dozen tasks
//! living through their lifecycles in the first minutes) and [`bulk_scenario`] for
//! benchmarks and load tests.
//!
//! Times are real wall-clock ms relative to the `now` given, so a demo started now shows
//! today's timestamps.

use std::time::SystemTime;

use crate::credentials::{Credentials, Secret};
use crate::model::{Kind, Target, TargetKey};

use super::fault::{Fault, FaultSpec, TaskMatch};
use super::task::{stop_reason, SimFile, SimTask, VideoSolution};
use crate::clock::system_time_to_ms;

/// A world to simulate: its tasks, the targets an exporter should poll in it, the
/// credentials the simulator accepts, and faults to inject from the start.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub tasks: Vec<SimTask>,
    pub targets: Vec<Target>,
    pub credentials: Credentials,
    pub faults: Vec<FaultSpec>,
}

/// The access key ID the scenarios use (not a real key).
pub const SIM_ACCESS_KEY_ID: &str = "AKLTc2ltdWxhdGVkLWRlbW8ta2V5";
/// The secret key the scenarios use (not a real key).
const SIM_SECRET_ACCESS_KEY: &str = "c2ltdWxhdGVkLXNlY3JldC1ub3QtcmVhbA==";

/// The credentials every scenario accepts.
pub fn sim_credentials() -> Credentials {
    Credentials {
        access_key_id: SIM_ACCESS_KEY_ID.into(),
        secret_access_key: Secret::new(SIM_SECRET_ACCESS_KEY),
        session_token: None,
    }
}

const APP_LIVE: &str = "661e8f0d1ab2c3d4e5f60718";
const APP_EDU: &str = "5f3c2a1b0e9d8c7b6a594837";
const APP_EVENTS: &str = "64b7c9e2f1a0d3b5c8e7f601";

const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;

fn team(app: &str) -> &'static str {
    match app {
        APP_LIVE => "live",
        APP_EDU => "education",
        _ => "events",
    }
}

fn target(kind: Kind, app: &str, room: &str, task: Option<&str>) -> Target {
    Target {
        key: TargetKey {
            kind,
            app_id: app.into(),
            room_id: room.into(),
            task_id: task.map(Into::into),
        },
        labels: vec![
            ("env".into(), "demo".into()),
            ("team".into(), team(app).into()),
        ]
        .into(),
    }
}

/// `n` consecutive files covering `[start, end)`: object storage MP4s, every second one in
/// VOD instead; the last one carries the screen-share stream too.
fn recording(app: &str, room: &str, task: &str, start: i64, end: i64, n: usize) -> Vec<SimFile> {
    let n = n.max(1);
    let span = (end - start).max(1);
    let each = span / n as i64;
    (0..n)
        .map(|i| {
            let s = start + each * i as i64;
            let d = if i + 1 == n { end - s } else { each };
            let mut f = if i % 2 == 1 {
                SimFile::vod(&format!("v0d{:x}{i}", s % 0xffff_ffff), s, d, "host")
            } else {
                SimFile::object(&format!("{app}/{room}/{task}/{s}_{i}.mp4"), s, d, "host")
            };
            if i + 1 == n {
                f.streams.push(super::task::SimStream {
                    user_id: "host".into(),
                    stream_type: 1,
                    index: Some(1),
                });
            }
            f
        })
        .collect()
}

/// Partial sizes, as first listed while uploads are still going.
fn partial(files: &[SimFile]) -> Vec<SimFile> {
    files
        .iter()
        .map(|f| f.clone().size(f.size_bytes / 3))
        .collect()
}

/// A record task ending at `end` with `reason`; unless it failed to start, its files appear
/// `first_s` seconds after the end with partial sizes, and settle `final_s` seconds after it.
fn ended_record(
    (app, room, task): (&str, &str, &str),
    start: i64,
    end: i64,
    reason: &str,
    (first_s, final_s): (i64, i64),
) -> SimTask {
    let t = SimTask::record(app, room, task, start).ends(end, reason);
    if reason == stop_reason::START_TASK_FAILED {
        return t;
    }
    let files = recording(app, room, task, start, end, 2);
    t.files_at(end + first_s * SEC, partial(&files))
        .files_at(end + final_s * SEC, files)
}

/// The `demo` world at `now`: 20 record and 14 webcast tasks in three apps, with IDs using
/// `@ . - _`. Within 30 s of `now` it shows running tasks and stops with `StartTaskFailed`,
/// `IdleTimeOut`, `StopByAPI` (both kinds) and `ExceedMaxRunningTime`, record files arriving
/// and settling after the end, a task passing the 72-hour horizon, and a followed webcast room
/// (`lobby.main`, target without task ID) whose task is replaced; new tasks keep starting for
/// five minutes. A few targets are deliberately not found (a typo, tasks older than 72 h), and
/// a few answers show the vendor's quirks (three early 503s, the other field spellings).
/// Four tasks starting 4–40 s after `now` have no target at all
/// ([`Scenario::unlisted_tasks`]): `demo` learns of them from RTC callbacks only.
pub fn demo_scenario(now: SystemTime) -> Scenario {
    let t0 = system_time_to_ms(now);
    let s = |secs: i64| t0 + secs * SEC;
    // (task, whether it has its own target rather than being found through its room)
    let mut items: Vec<(SimTask, bool)> = Vec::new();
    let mut extra_targets = Vec::new();
    let mut add = |task: SimTask, followed: bool| items.push((task, !followed));

    // Record tasks running through the demo.
    add(
        SimTask::record(APP_LIVE, "studio-1", "rec-studio-1", t0 - 2 * HOUR),
        false,
    );
    add(
        SimTask::record(APP_LIVE, "studio-2", "rec_studio-2", t0 - 35 * MIN),
        false,
    );
    add(
        SimTask::record(APP_EDU, "class-101", "rec.class-101.main", t0 - 40 * MIN),
        false,
    );
    // Finished before the demo started, files settled.
    add(
        ended_record(
            (APP_LIVE, "user@example.com", "rec.task-01"),
            t0 - 3 * HOUR,
            t0 - HOUR,
            stop_reason::STOP_BY_API,
            (2, 5),
        ),
        false,
    );
    add(
        ended_record(
            (APP_EDU, "class-99", "rec-class-99"),
            t0 - 26 * HOUR,
            t0 - 24 * HOUR - 30 * MIN,
            stop_reason::IDLE_TIME_OUT,
            (2, 5),
        ),
        false,
    );
    add(
        ended_record(
            (APP_EDU, "lab-7", "rec-lab-7"),
            t0 - 20 * MIN,
            t0 - 20 * MIN + 2 * SEC,
            stop_reason::START_TASK_FAILED,
            (0, 0),
        ),
        false,
    );
    add(
        ended_record(
            (APP_EVENTS, "expo-hall", "rec-expo-old"),
            t0 - 6 * HOUR,
            t0 - 5 * HOUR,
            stop_reason::UNKNOWN,
            (2, 5),
        ),
        false,
    );
    // Stopping during the first 30 s.
    add(
        ended_record(
            (APP_LIVE, "backstage", "rec@backstage"),
            s(2),
            s(3),
            stop_reason::START_TASK_FAILED,
            (0, 0),
        ),
        false,
    );
    add(
        ended_record(
            (APP_EDU, "class-102", "rec-class-102"),
            t0 - 50 * MIN,
            s(8),
            stop_reason::IDLE_TIME_OUT,
            (2, 5),
        ),
        false,
    );
    // A long, high-bitrate recording: its file is over 4 GiB.
    let townhall = ended_record(
        (APP_LIVE, "town.hall_2024", "rec-townhall"),
        t0 - HOUR,
        s(12),
        stop_reason::STOP_BY_API,
        (3, 7),
    );
    let big: Vec<SimFile> = recording(
        APP_LIVE,
        "town.hall_2024",
        "rec-townhall",
        t0 - HOUR,
        s(12),
        1,
    )
    .into_iter()
    .map(|f| f.size(5_368_709_120 + 123_456_789))
    .collect();
    add(townhall.files_at(s(12) + 7 * SEC, big), false);
    add(
        ended_record(
            (APP_EVENTS, "expo-hall", "rec-expo-a"),
            t0 - 5 * MIN,
            s(20),
            stop_reason::IDLE_TIME_OUT,
            (2, 6),
        ),
        false,
    );
    // Starting later: new tasks keep appearing for a few minutes.
    add(
        SimTask::record(APP_EVENTS, "expo-hall", "rec-expo-b", s(6)).pending_for(3 * SEC),
        false,
    );
    add(
        ended_record(
            (APP_EVENTS, "keynote", "rec-keynote-1"),
            s(45),
            s(105),
            stop_reason::STOP_BY_API,
            (3, 8),
        ),
        false,
    );
    add(
        SimTask::record(APP_LIVE, "studio-3", "rec-studio-3", s(90)),
        false,
    );
    add(
        ended_record(
            (APP_EDU, "class-103", "rec-class-103"),
            s(150),
            s(240),
            stop_reason::IDLE_TIME_OUT,
            (2, 5),
        ),
        false,
    );
    add(
        SimTask::record(APP_EDU, "class-104", "rec-class-104", s(240)),
        false,
    );
    add(
        ended_record(
            (APP_LIVE, "studio-4", "rec-studio-4"),
            s(300),
            s(302),
            stop_reason::START_TASK_FAILED,
            (0, 0),
        ),
        false,
    );
    // Past, or passing, the 72-hour horizon.
    add(
        ended_record(
            (APP_LIVE, "archive", "rec-archive-old"),
            t0 - 80 * HOUR,
            t0 - 79 * HOUR,
            stop_reason::STOP_BY_API,
            (2, 5),
        ),
        false,
    );
    add(
        ended_record(
            (APP_EDU, "class-98", "rec-class-98"),
            t0 - 72 * HOUR + 25 * SEC,
            t0 - 71 * HOUR,
            stop_reason::STOP_BY_API,
            (2, 5),
        ),
        false,
    );
    // Never existed (a typo in the target list).
    extra_targets.push(target(
        Kind::Record,
        APP_LIVE,
        "studio-1",
        Some("rec-studio-l"),
    ));

    // Webcast tasks.
    add(
        SimTask::webcast(APP_LIVE, "studio-1", "web-studio-1", t0 - 2 * HOUR),
        false,
    );
    add(
        SimTask::webcast(APP_EVENTS, "expo-hall", "web-expo-2", t0 - HOUR).webcast_plan(|p| {
            p.user_id = "capture@expo".into();
            p.source_url = "https://example.com/expo/hall?screen=2&lang=en".into();
            p.video_solutions.push(VideoSolution {
                width: 1920,
                height: 1080,
                frame_rate: 30,
                bitrate: 3_000,
            });
            p.monitor = [30, 10, 20];
            p.enable_event_notify = true;
        }),
        false,
    );
    add(
        SimTask::webcast(APP_EVENTS, "expo-hall", "web_expo@hall", t0 - 30 * SEC)
            .exceeds_max_running_time(40),
        false,
    );
    add(
        SimTask::webcast(APP_EDU, "class-101", "web-class-101", t0 - 10 * MIN)
            .ends(s(15), stop_reason::STOP_BY_API),
        false,
    );
    add(
        SimTask::webcast(APP_LIVE, "backstage", "web-backstage", s(1))
            .ends(s(3), stop_reason::START_TASK_FAILED),
        false,
    );
    add(
        SimTask::webcast(APP_EDU, "class-99", "web-class-99", t0 - 25 * HOUR)
            .exceeds_max_running_time(3600),
        false,
    );
    add(
        SimTask::webcast(APP_LIVE, "archive", "web-archive-old", t0 - 75 * HOUR)
            .ends(t0 - 74 * HOUR, stop_reason::STOP_BY_API),
        false,
    );
    // A followed room: its task stops, a new one starts, hits MaxRunningTime, another follows.
    extra_targets.push(target(Kind::Webcast, APP_EVENTS, "lobby.main", None));
    add(
        SimTask::webcast(APP_EVENTS, "lobby.main", "web-lobby-1", t0 - 20 * MIN)
            .ends(s(9), stop_reason::STOP_BY_API),
        true,
    );
    add(
        SimTask::webcast(APP_EVENTS, "lobby.main", "web-lobby-2", s(14))
            .exceeds_max_running_time(60),
        true,
    );
    add(
        SimTask::webcast(APP_EVENTS, "lobby.main", "web-lobby-3", s(100)),
        true,
    );
    // Starting later.
    add(
        SimTask::webcast(APP_LIVE, "studio-3", "web-studio-3", s(60)),
        false,
    );
    add(
        SimTask::webcast(APP_EVENTS, "keynote", "web-keynote-1", s(120))
            .exceeds_max_running_time(30),
        false,
    );
    add(
        SimTask::webcast(APP_EDU, "class-104", "web-class-104", s(200))
            .ends(s(260), stop_reason::STOP_BY_API),
        false,
    );
    add(
        SimTask::webcast(APP_LIVE, "studio-4", "web-studio-4", s(280)),
        false,
    );

    // Known only through RTC callbacks: no target names them, so an exporter learns of them
    // from the lifecycle events alone (`demo` has the simulator POST them to its callback
    // endpoint). All start after `now`: one records and ends with files, one fails to start,
    // a web capture runs, and a recording starts later.
    for task in [
        ended_record(
            (APP_EDU, "class-105", "rec-class-105"),
            s(4),
            s(20),
            stop_reason::IDLE_TIME_OUT,
            (2, 5),
        ),
        ended_record(
            (APP_LIVE, "studio-5", "rec-studio-5"),
            s(5),
            s(6),
            stop_reason::START_TASK_FAILED,
            (0, 0),
        ),
        SimTask::webcast(APP_EVENTS, "hall-b", "web-hall-b", s(7)),
        SimTask::record(APP_EVENTS, "hall-b", "rec-hall-b", s(40)),
    ] {
        items.push((task, false));
    }

    let mut targets: Vec<Target> = items
        .iter()
        .filter(|(_, own)| *own)
        .map(|(t, _)| target(t.kind(), &t.app_id, &t.room_id, Some(&t.task_id)))
        .collect();
    targets.extend(extra_targets);
    let tasks = items.into_iter().map(|(t, _)| t).collect();
    // The vendor's quirks, so the demo's request counters are not all `success`: a few
    // transient 503s early on (retried), and answers in the other documented spellings.
    let faults = vec![
        FaultSpec::once(Fault::unavailable())
            .times(3)
            .for_action(crate::model::Action::GetRecordTask),
        FaultSpec::always(Fault::WebcastSpelling).for_target(TaskMatch::task(
            APP_EVENTS,
            "expo-hall",
            Some("web-expo-2"),
        )),
        FaultSpec::always(Fault::ShortConfigSpellings).for_target(TaskMatch::task(
            APP_LIVE,
            "studio-1",
            Some("web-studio-1"),
        )),
        FaultSpec::always(Fault::ExtraFields).for_target(TaskMatch::task(
            APP_LIVE,
            "studio-2",
            Some("rec_studio-2"),
        )),
    ];
    Scenario {
        tasks,
        targets,
        credentials: sim_credentials(),
        faults,
    }
}

impl Scenario {
    /// The tasks no target names, neither by task ID nor (webcast) by a followed room: an
    /// exporter polling only [`Scenario::targets`] never sees them; callbacks announce them.
    pub fn unlisted_tasks(&self) -> Vec<&SimTask> {
        self.tasks
            .iter()
            .filter(|t| {
                !self.targets.iter().any(|target| {
                    let k = &target.key;
                    k.kind == t.kind()
                        && k.app_id == t.app_id
                        && k.room_id == t.room_id
                        && k.task_id.as_deref().is_none_or(|id| id == t.task_id)
                })
            })
            .collect()
    }
}

const BULK_APPS: [&str; 4] = [APP_LIVE, APP_EDU, APP_EVENTS, "6a0b1c2d3e4f5a6b7c8d9e0f"];

/// Whether task `i` of a bulk set runs: exactly ⌊n·fraction⌋ of the first n are, spread evenly.
fn runs(i: usize, fraction: f64) -> bool {
    let f = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    ((i + 1) as f64 * f).floor() > (i as f64 * f).floor()
}

/// A deterministic world for benchmarks and load tests: `n_record` record and `n_webcast`
/// webcast tasks (one target each) spread over four apps, `running_fraction` of each kind
/// running (evenly spread), the rest finished 1–3 hours before `now` (stop reasons cycling
/// through the kind's usual ones, `StartTaskFailed` every third) with `files_per_task` settled
/// files per finished recording.
pub fn bulk_scenario(
    n_record: usize,
    n_webcast: usize,
    running_fraction: f64,
    files_per_task: usize,
    now: SystemTime,
) -> Scenario {
    let t0 = system_time_to_ms(now);
    let mut tasks = Vec::with_capacity(n_record + n_webcast);
    let mut targets = Vec::with_capacity(n_record + n_webcast);
    for i in 0..n_record {
        let app = BULK_APPS[i % BULK_APPS.len()];
        let room = format!("room-{:05}", i / BULK_APPS.len());
        let task_id = format!("rec-{i:06}");
        let offset = (i % 3600) as i64 * SEC;
        let task = if runs(i, running_fraction) {
            SimTask::record(app, &room, &task_id, t0 - MIN - offset)
        } else {
            let start = t0 - 3 * HOUR + offset / 2;
            let reason = [
                stop_reason::STOP_BY_API,
                stop_reason::IDLE_TIME_OUT,
                stop_reason::START_TASK_FAILED,
            ][i % 3];
            let end = if reason == stop_reason::START_TASK_FAILED {
                start + 2 * SEC
            } else {
                start + 30 * MIN + offset / 4
            };
            let t = SimTask::record(app, &room, &task_id, start).ends(end, reason);
            if reason == stop_reason::START_TASK_FAILED || files_per_task == 0 {
                t
            } else {
                let files = recording(app, &room, &task_id, start, end, files_per_task);
                t.files_at(end + 5 * SEC, files)
            }
        };
        targets.push(target(Kind::Record, app, &room, Some(&task_id)));
        tasks.push(task);
    }
    for j in 0..n_webcast {
        let app = BULK_APPS[j % BULK_APPS.len()];
        let room = format!("wroom-{:05}", j / BULK_APPS.len());
        let task_id = format!("web-{j:06}");
        let offset = (j % 3600) as i64 * SEC;
        let task = if runs(j, running_fraction) {
            SimTask::webcast(app, &room, &task_id, t0 - MIN - offset)
        } else {
            let start = t0 - 3 * HOUR + offset / 2;
            match j % 3 {
                0 => SimTask::webcast(app, &room, &task_id, start)
                    .ends(start + 20 * MIN, stop_reason::STOP_BY_API),
                1 => SimTask::webcast(app, &room, &task_id, start).exceeds_max_running_time(3600),
                _ => SimTask::webcast(app, &room, &task_id, start)
                    .ends(start + 2 * SEC, stop_reason::START_TASK_FAILED),
            }
        };
        targets.push(target(Kind::Webcast, app, &room, Some(&task_id)));
        tasks.push(task);
    }
    Scenario {
        tasks,
        targets,
        credentials: sim_credentials(),
        faults: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::status;
    use std::collections::HashSet;

    #[test]
    fn bulk_is_deterministic_with_the_running_fraction() {
        let now = crate::clock::now();
        let a = bulk_scenario(1000, 100, 0.1, 3, now);
        let b = bulk_scenario(1000, 100, 0.1, 3, now);
        assert_eq!(a.tasks, b.tasks);
        assert_eq!(a.targets.len(), 1100);
        let t0 = system_time_to_ms(now);
        let running = |kind: Kind| {
            a.tasks
                .iter()
                .filter(|t| t.kind() == kind)
                .filter(|t| t.state_at(t0).map(|s| s.status) == Some(status::RUNNING))
                .count()
        };
        assert_eq!(running(Kind::Record), 100);
        assert_eq!(running(Kind::Webcast), 10);
        let keys: HashSet<_> = a.targets.iter().map(|t| t.key.clone()).collect();
        assert_eq!(keys.len(), 1100, "targets are unique");
        let finished_with_files = a
            .tasks
            .iter()
            .filter_map(|t| t.state_at(t0))
            .filter(|s| s.files.len() == 3)
            .count();
        assert!(finished_with_files > 500, "{finished_with_files}");
    }

    #[test]
    fn demo_targets_are_unique_and_valid() {
        let s = demo_scenario(crate::clock::now());
        let keys: HashSet<_> = s.targets.iter().map(|t| t.key.clone()).collect();
        assert_eq!(keys.len(), s.targets.len());
        assert!(s.tasks.len() >= 30, "{}", s.tasks.len());
        let ok = |id: &str| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_@.-".contains(&b))
        };
        for t in &s.targets {
            assert!(ok(&t.key.app_id) && ok(&t.key.room_id));
            assert!(t.key.task_id.as_deref().is_none_or(ok));
            assert!(t.key.kind == Kind::Webcast || t.key.task_id.is_some());
        }
        // The tasks known only from callbacks: all start after now (so callbacks sent from
        // now on announce them), within a minute, one of them failing to start.
        let t0 = system_time_to_ms(crate::clock::now());
        let unlisted = s.unlisted_tasks();
        assert_eq!(unlisted.len(), 4, "{unlisted:?}");
        assert!(unlisted
            .iter()
            .all(|t| t.start_ms > t0 && t.start_ms < t0 + 60 * SEC));
        assert!(unlisted.iter().any(|t| t
            .end
            .as_ref()
            .is_some_and(|e| e.stop_reason == stop_reason::START_TASK_FAILED)));
        assert!(unlisted.iter().any(|t| t.kind() == Kind::Webcast));
    }
}
