//! Durable state with the real binary against the simulator: `kill -9` at random moments
//! while tasks end never counts a stop twice nor loses one already shown; a restart serves
//! every stored target at once and does not poll finished tasks again; targets the API no
//! longer shows keep their values; targets removed from the config leave; store faults
//! (corrupt file, read-only folder, a second process) are handled as documented.

mod common;

use std::time::Duration;

use common::{get, tkey, Metrics, SimServer};
use volc_rtc_exporter::clock::system_time_to_ms;
use volc_rtc_exporter::model::{Action, Kind, Target};
use volc_rtc_exporter::sim::scenario::{sim_credentials, SIM_ACCESS_KEY_ID};
use volc_rtc_exporter::sim::{
    stop_reason, Clock, Fault, FaultSpec, SimFile, SimOptions, SimTask, Simulator, TaskMatch,
};

const APP: &str = "durable-app";
const SEC: Duration = Duration::from_secs(1);

fn now_ms() -> i64 {
    system_time_to_ms(volc_rtc_exporter::clock::now())
}

fn config(sim: &SimServer, targets: &[Target]) -> String {
    format!(
        "api:\n  endpoint: http://127.0.0.1:{}\n  timeout: 2s\nbudget:\n  GetRecordTask: 20\n  \
         GetWebCastTask: 20\nschedule:\n  active_interval: 1s\n  settle_interval: 1s\n{}",
        sim.addr.port(),
        common::targets_yaml(targets)
    )
}

fn stops(m: &Metrics, reason: &str) -> f64 {
    get(m, &common::stops_key("record", APP, reason)).unwrap_or(0.0)
}

fn all_stops(m: &Metrics) -> f64 {
    [
        "IdleTimeOut",
        "StopByAPI",
        "StartTaskFailed",
        "UnknownStopReason",
    ]
    .iter()
    .map(|r| stops(m, r))
    .sum()
}

/// Record tasks that started an hour ago; task `i` ends `first_end_ms + i * step_ms` with its
/// files uploaded at the end; every fifth stops by API, the rest idle out.
fn ending_tasks(n: usize, first_end_ms: i64, step_ms: i64) -> (Vec<SimTask>, Vec<Target>) {
    let start = now_ms() - 3_600_000;
    let mut tasks = Vec::new();
    let mut targets = Vec::new();
    for i in 0..n {
        let task = format!("task-{i:03}");
        let room = format!("room-{i:03}");
        let end = first_end_ms + i as i64 * step_ms;
        let reason = if i % 5 == 0 {
            stop_reason::STOP_BY_API
        } else {
            stop_reason::IDLE_TIME_OUT
        };
        let file = SimFile::object(&format!("{room}/{task}.mp4"), start, 60_000, "u")
            .size(1_000 + i as i64);
        tasks.push(
            SimTask::record(APP, &room, &task, start)
                .ends(end, reason)
                .files_at(end, vec![file]),
        );
        targets.push(common::target(Kind::Record, APP, &room, &task));
    }
    (tasks, targets)
}

fn sim_with(tasks: Vec<SimTask>) -> Simulator {
    let sim = Simulator::new(SimOptions::default(), Clock::system());
    sim.add_credentials(&sim_credentials());
    sim.add_tasks(tasks);
    sim
}

/// A small deterministic sequence in `[lo, hi)` ms (xorshift), so runs are reproducible.
fn pauses(n: usize, lo: u64, hi: u64) -> Vec<Duration> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Duration::from_millis(lo + x % (hi - lo))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_twenty_times_while_tasks_end_counts_every_stop_exactly_once() {
    const N: usize = 30;
    // Tasks end one every 0.6 s from 1 s on, while the exporter is killed and restarted.
    let (tasks, targets) = ending_tasks(N, now_ms() + 1_000, 600);
    let sim = SimServer::start(sim_with(tasks)).await;
    let dir = common::scratch_dir("durable-kill");
    let cfg = common::write_config(&dir, config(&sim, &targets));
    let store = dir.join("data");

    let mut shown = 0.0;
    for (round, pause) in pauses(20, 150, 1_400).into_iter().enumerate() {
        let (mut child, base) = common::start_binary(&cfg, &store, &[]).await;
        let m = common::scrape_at(&base).await;
        let now_shown = all_stops(&m);
        assert!(
            now_shown >= shown,
            "round {round}: {now_shown} stops shown after the restart, {shown} before the kill"
        );
        tokio::time::sleep(pause).await;
        let m = common::scrape_at(&base).await;
        shown = all_stops(&m);
        assert!(
            shown <= N as f64,
            "round {round}: {shown} stops for {N} tasks"
        );
        // SIGKILL: no shutdown, no flush.
        child.child.kill().expect("kill -9");
        let _ = child.child.wait();
    }

    // The last run: every value reaches the simulator's truth, each stop counted once.
    let (mut child, base) = common::start_binary(&cfg, &store, &[]).await;
    let m = child
        .scrape_until(&base, 60 * SEC, "every task's final values", |m| {
            let done = targets.iter().all(|t| {
                get(m, &tkey("task_status", &t.key, &[])) == Some(3.0)
                    && get(m, &tkey("record_files", &t.key, &[])) == Some(1.0)
            });
            done && all_stops(m) >= N as f64
        })
        .await;
    assert!(all_stops(&m) >= shown);
    // Let any duplicate show up before judging.
    tokio::time::sleep(3 * SEC).await;
    let m = common::scrape_at(&base).await;
    let by_api = (0..N).filter(|i| i % 5 == 0).count() as f64;
    assert_eq!(
        stops(&m, "StopByAPI"),
        by_api,
        "StopByAPI counted once each"
    );
    assert_eq!(
        stops(&m, "IdleTimeOut"),
        N as f64 - by_api,
        "IdleTimeOut counted once each"
    );
    for (i, t) in targets.iter().enumerate() {
        assert_eq!(
            get(&m, &tkey("record_size_bytes", &t.key, &[])),
            Some(1_000.0 + i as f64),
            "{:?}",
            t.key
        );
    }
    child.terminate(10 * SEC).await;
    sim.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_everything_at_once_and_does_not_poll_finished_tasks() {
    const N: usize = 12;
    let (tasks, targets) = ending_tasks(N, now_ms() - 600_000, 1_000);
    let removed = targets[N - 1].clone();
    let sim = SimServer::start(sim_with(tasks)).await;
    let dir = common::scratch_dir("durable-restart");
    let cfg = common::write_config(&dir, config(&sim, &targets));
    let store = dir.join("data");

    let (mut child, base) = common::start_binary(&cfg, &store, &[]).await;
    let done = common::key(
        "volcengine_rtc_targets",
        &[("kind", "record"), ("phase", "done")],
    );
    let before = child
        .scrape_until(&base, 30 * SEC, "the tasks to settle", |m| {
            get(m, &done) == Some(N as f64)
        })
        .await;
    let (status, _) = child.terminate(10 * SEC).await;
    assert!(status.success());
    let stderr = child.stderr();
    assert!(stderr.contains("shutting down"), "{stderr}");

    // The API no longer shows any of them (as after 72 h), and one target leaves the config.
    let sim2 = SimServer::start(sim_with(Vec::new())).await;
    std::fs::write(&cfg, config(&sim2, &targets[..N - 1])).expect("write the config");
    let (mut child, base) = common::start_binary(&cfg, &store, &[]).await;
    // Served at once, from the first scrape.
    let after = common::scrape_at(&base).await;
    for t in &targets[..N - 1] {
        for family in [
            "task_status",
            "task_end_timestamp_seconds",
            "record_size_bytes",
            "target_up",
            "target_last_success_timestamp_seconds",
        ] {
            let k = tkey(family, &t.key, &[]);
            assert_eq!(get(&after, &k), get(&before, &k), "{k}");
            assert!(get(&after, &k).is_some(), "{k}");
        }
    }
    assert_eq!(all_stops(&after), N as f64, "the counters continue");
    assert_eq!(
        get(&after, &tkey("task_status", &removed.key, &[])),
        None,
        "a target removed from the config leaves /metrics"
    );
    tokio::time::sleep(3 * SEC).await;
    for action in Action::ALL {
        assert_eq!(
            sim2.sim.total_requests(action),
            0,
            "{action}: finished tasks are not polled after a restart"
        );
    }
    let m = common::scrape_at(&base).await;
    assert_eq!(all_stops(&m), N as f64, "nothing counted twice");
    child.terminate(10 * SEC).await;

    // The removed target left the store too: back in the config, it starts as new.
    std::fs::write(&cfg, config(&sim2, &targets)).expect("write the config");
    let (mut child, base) = common::start_binary(&cfg, &store, &[]).await;
    let m = common::scrape_at(&base).await;
    assert_eq!(get(&m, &tkey("task_status", &removed.key, &[])), None);
    child.terminate(10 * SEC).await;
    sim.stop().await;
    sim2.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_faults_corrupt_file_read_only_folder_and_a_second_process() {
    let (tasks, targets) = ending_tasks(2, now_ms() - 600_000, 1_000);
    let sim = SimServer::start(sim_with(tasks)).await;
    let dir = common::scratch_dir("durable-faults");
    let cfg = common::write_config(&dir, config(&sim, &targets));

    // A second process on the same folder is refused at once, and the first is unharmed.
    let store = dir.join("data");
    let (mut first, base) = common::start_binary(&cfg, &store, &[]).await;
    let secret = sim_credentials().secret_access_key.expose().to_string();
    let out = common::binary_command(
        &[
            &format!("--config.file={}", cfg.display()),
            &format!("--storage.path={}", store.display()),
            "--web.listen-address=127.0.0.1:0",
        ],
        &[
            ("VOLC_ACCESSKEY", SIM_ACCESS_KEY_ID),
            ("VOLC_SECRETKEY", secret.as_str()),
        ],
        &common::scratch_dir("home"),
    )
    .output()
    .expect("run a second exporter");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("locked"), "{stderr}");
    assert!(stderr.contains(&store.display().to_string()), "{stderr}");
    let m = common::scrape_at(&base).await;
    assert_eq!(
        get(&m, "volcengine_rtc_storage_errors_total{op=\"commit\"}"),
        Some(0.0),
        "the first process is unharmed"
    );
    first.terminate(10 * SEC).await;

    // A corrupt file is moved aside; the exporter starts empty and polls.
    let file = store.join("state.redb");
    std::fs::write(
        &file,
        b"this is not a redb file, just garbage bytes".repeat(100),
    )
    .expect("corrupt the store");
    let (mut child, base) = common::start_binary(&cfg, &store, &[]).await;
    let aside: Vec<_> = std::fs::read_dir(&store)
        .expect("read the store folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("corrupt"))
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "one *corrupt* file beside the store: {aside:?}"
    );
    let stderr = child.stderr();
    assert!(
        stderr.contains(&aside[0]),
        "the log names the moved file:\n{stderr}"
    );
    common::wait_until(20 * SEC, "polled again after corruption", || {
        let base = base.clone();
        let key = tkey("task_status", &targets[0].key, &[]);
        async move { get(&common::scrape_at(&base).await, &key) == Some(3.0) }
    })
    .await;
    child.terminate(10 * SEC).await;

    // A folder that cannot be written: polling and serving go on in memory, counted.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let ro = dir.join("read-only");
        std::fs::create_dir_all(&ro).expect("mkdir");
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        // Root ignores permissions; then the folder is writable and this part proves nothing.
        let probe = ro.join("probe");
        if std::fs::write(&probe, b"x").is_ok() {
            let _ = std::fs::remove_file(&probe);
            eprintln!("running as root: a read-only folder is writable; using a file as folder");
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).ok();
            let _ = std::fs::remove_dir(&ro);
            std::fs::write(&ro, b"a file where the folder should be").expect("write");
        }
        let store = ro.join("data");
        let (mut child, base) = common::start_binary(&cfg, &store, &[]).await;
        common::wait_until(20 * SEC, "polling goes on without a store", || {
            let base = base.clone();
            let key = tkey("task_status", &targets[0].key, &[]);
            async move { get(&common::scrape_at(&base).await, &key) == Some(3.0) }
        })
        .await;
        let m = common::scrape_at(&base).await;
        assert_eq!(
            get(&m, "volcengine_rtc_storage_errors_total{op=\"open\"}"),
            Some(1.0)
        );
        let stderr = child.stderr();
        assert!(
            stderr.contains("--storage.path"),
            "the fix is named:\n{stderr}"
        );
        child.terminate(10 * SEC).await;
        if let Ok(meta) = std::fs::metadata(&ro) {
            if meta.is_dir() {
                let _ = std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755));
            }
        }
    }
    sim.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_change_while_running_without_losing_state() {
    // Four finished tasks; the config lists 0 and 1, the API registers 1 and 2.
    let (tasks, targets) = ending_tasks(4, now_ms() - 600_000, 1_000);
    let sim = SimServer::start(sim_with(tasks)).await;
    let settings = common::settings(
        &sim,
        sim_credentials(),
        targets[..2].to_vec(),
        SEC,
        SEC,
        20.0,
    );
    let exporter = common::ExporterServer::start(settings).await;
    let e = exporter.exporter.clone();
    let status = |i: usize| tkey("task_status", &targets[i].key, &[]);
    let done = common::key(
        "volcengine_rtc_targets",
        &[("kind", "record"), ("phase", "done")],
    );
    let added = e.add_targets(volc_rtc_exporter::targets::Source::Api, &targets[1..3]);
    assert_eq!(
        added.added, 1,
        "target 1 is known already: one target, two sources"
    );
    let m = common::scrape_until(&exporter, 30 * SEC, "three targets done", |m| {
        get(m, &done) == Some(3.0)
    })
    .await;
    assert_eq!(get(&m, &status(2)), Some(3.0));
    assert_eq!(all_stops(&m), 3.0);
    let id1 = e.store.id_of(&targets[1].key).expect("target 1");
    assert_eq!(e.sources_of(id1), ["config", "api"]);

    // A reload that drops 0 and 1 from the config and adds 3.
    let calls = sim.sim.total_requests(Action::GetRecordTask);
    let change = e.set_targets(
        volc_rtc_exporter::targets::Source::Config,
        &[targets[3].clone()],
    );
    assert_eq!(
        (change.added, change.removed),
        (1, 1),
        "0 removed, 1 kept by the API"
    );
    let m = exporter.scrape().await;
    assert_eq!(
        get(&m, &status(0)),
        None,
        "a removed target's series go at once"
    );
    assert_eq!(get(&m, &status(1)), Some(3.0), "kept, with its values");
    assert_eq!(e.sources_of(id1), ["api"]);
    let m = common::scrape_until(&exporter, 30 * SEC, "the new target polled", |m| {
        get(m, &status(3)) == Some(3.0)
    })
    .await;
    tokio::time::sleep(3 * SEC).await;
    let m2 = exporter.scrape().await;
    assert_eq!(all_stops(&m2), 4.0, "each task counted once: {m:?}");
    // Only the new target was polled (settling needs two answers, plus slack).
    let extra = sim.sim.total_requests(Action::GetRecordTask) - calls;
    assert!(
        extra <= 4,
        "{extra} requests after the reload; the kept targets were polled again"
    );

    // Deregistering 1 and 2 from the API removes them: no source left.
    let change = e.remove_targets(
        &volc_rtc_exporter::targets::Source::Api,
        &[targets[1].key.clone(), targets[2].key.clone()],
    );
    assert_eq!(change.removed, 2);
    let m = exporter.scrape().await;
    assert_eq!(get(&m, &status(1)), None);
    assert_eq!(get(&m, &status(2)), None);
    assert_eq!(all_stops(&m), 4.0, "counters stay when targets leave");
    exporter.stop().await;
    sim.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Each target's last poll (time, outcome, error) across a restart.

/// The outcome names the README lists (for `volcengine_rtc_api_requests_total`'s `outcome`):
/// the only ones `last_outcome` may show.
fn readme_outcomes() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let line = readme
        .lines()
        .find(|l| l.starts_with("| `volcengine_rtc_api_requests_total` |"))
        .expect("the README lists volcengine_rtc_api_requests_total");
    let (_, list) = line
        .split_once("`outcome` is ")
        .expect("the README lists the outcomes");
    let names: Vec<String> = list
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(
        names.len() >= 9 && names.contains(&"success".to_string()),
        "{names:?}"
    );
    names
}

/// `GET /api/v1/targets`: each target by room, with its `last_poll`, `last_outcome` and
/// `last_error`; checks that every outcome shown is one the README lists.
async fn last_polls(base: &str) -> std::collections::BTreeMap<String, [serde_json::Value; 3]> {
    let (status, text) = common::http_get(&format!("{base}/api/v1/targets"))
        .await
        .expect("/api/v1/targets answers");
    assert_eq!(status, 200, "{text}");
    let listed: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let allowed = readme_outcomes();
    let mut out = std::collections::BTreeMap::new();
    for t in listed["data"].as_array().expect("data is a list") {
        let outcome = &t["last_outcome"];
        assert!(
            outcome.is_null()
                || outcome
                    .as_str()
                    .is_some_and(|o| allowed.iter().any(|a| a == o)),
            "last_outcome {outcome} is not among the README's outcomes {allowed:?}"
        );
        let room = t["room_id"].as_str().expect("room_id").to_string();
        out.insert(
            room,
            [
                t["last_poll"].clone(),
                outcome.clone(),
                t["last_error"].clone(),
            ],
        );
    }
    out
}

/// A config polling `endpoint` once an hour (`timeout` per request), with no targets of its
/// own: they come from the registration API.
fn hourly_config(endpoint: &str, timeout: &str) -> String {
    format!(
        "api:\n  endpoint: {endpoint}\n  timeout: {timeout}\nschedule:\n  active_interval: 1h\n  \
         settle_interval: 1h\ntargets: []\n"
    )
}

/// An API that takes connections and never answers: a poll sent there is still in flight
/// when the test reads the targets.
async fn silent_api() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a silent port");
    let port = listener.local_addr().expect("address").port();
    (listener, format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_each_targets_last_poll_time_outcome_and_error() {
    let start = now_ms() - 3_600_000;
    let sim = sim_with(vec![
        SimTask::record(APP, "room-ok", "task-ok", start),
        SimTask::record(APP, "room-reset", "task-reset", start),
    ]);
    sim.inject(
        FaultSpec::always(Fault::ResetConnection).for_target(TaskMatch::task(
            APP,
            "room-reset",
            Some("task-reset"),
        )),
    );
    let sim = SimServer::start(sim).await;
    let dir = common::scratch_dir("durable-last-poll");
    let cfg = dir.join("config.yaml");
    let store = dir.join("data");
    std::fs::write(
        &cfg,
        hourly_config(&format!("http://127.0.0.1:{}", sim.addr.port()), "2s"),
    )
    .expect("write the config");
    let api = ["--web.enable-targets-api"];
    let (mut child, base) = common::start_binary(&cfg, &store, &api).await;
    // Registered one at a time, each is polled at once, then not for an hour.
    for (room, task) in [
        ("room-ok", "task-ok"),
        ("room-reset", "task-reset"),
        ("room-missing", "task-missing"),
    ] {
        let body = format!(
            r#"[{{"kind":"record","app_id":"{APP}","room_id":"{room}","task_id":"{task}"}}]"#
        );
        common::targets_api(reqwest::Method::POST, &base, body).await;
    }
    let before = child
        .poll_until(30 * SEC, "every target to be polled", async || {
            let polls = last_polls(&base).await;
            let all = polls.len() == 3 && polls.values().all(|[_, outcome, _]| !outcome.is_null());
            all.then_some(polls)
        })
        .await;
    let outcome = |room: &str| before[room][1].as_str().unwrap_or_default().to_string();
    assert_eq!(outcome("room-ok"), "success");
    assert_eq!(outcome("room-reset"), "network_error");
    assert_eq!(outcome("room-missing"), "not_found");
    assert!(before["room-ok"][2].is_null());
    for room in ["room-reset", "room-missing"] {
        let error = before[room][2].as_str().unwrap_or_default();
        assert!(error.starts_with(&outcome(room)), "{room}: {error}");
    }
    let (status, _) = child.terminate(10 * SEC).await;
    assert!(status.success());
    sim.stop().await;

    // Restarted against an API that never answers: a restored target due at once is still
    // waiting for its answer, so every row shows what the store kept.
    let (_silent, endpoint) = silent_api().await;
    std::fs::write(&cfg, hourly_config(&endpoint, "60s")).expect("write the config");
    let (mut child, base) = common::start_binary(&cfg, &store, &api).await;
    let after = last_polls(&base).await;
    assert_eq!(after, before, "the last polls as before the restart");
    let (status, _) = child.terminate(10 * SEC).await;
    assert!(status.success());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_before_last_polls_were_kept_opens_and_shows_no_made_up_outcome() {
    use volc_rtc_exporter::model::{Phase, TargetKey};
    use volc_rtc_exporter::state::{self, Change, Settle, Source, TargetRecord};

    let dir = common::scratch_dir("durable-old-rows");
    let store = dir.join("data");
    let polled_ms = now_ms() - 60_000;
    // Rows as an older version wrote them: no `last_poll`, only whether the last poll
    // succeeded and when the last success was.
    let opened = state::open(&store, state::WriterConfig::default()).expect("open");
    for (room, up) in [("room-was-up", true), ("room-was-down", false)] {
        let key = TargetKey {
            kind: Kind::Record,
            app_id: APP.into(),
            room_id: room.into(),
            task_id: Some("task".into()),
        };
        let record = TargetRecord {
            sources: [Source::Api].into(),
            added_ms: polled_ms - 60_000,
            up: Some(up),
            last_success_ms: Some(polled_ms),
            settle: Settle {
                phase: Phase::Active,
                ..Settle::default()
            },
            ..TargetRecord::default()
        };
        let json = serde_json::to_string(&record).expect("JSON");
        assert!(!json.contains("last_poll"), "{json}");
        opened.writer.submit(Change::Put {
            key,
            record,
            stop: None,
        });
    }
    assert!(opened.writer.close(10 * SEC), "written");
    drop(opened);

    let (_silent, endpoint) = silent_api().await;
    let cfg = common::write_config(&dir, hourly_config(&endpoint, "60s"));
    let (mut child, base) = common::start_binary(&cfg, &store, &["--web.enable-targets-api"]).await;
    let polls = last_polls(&base).await;
    let at = serde_json::Value::from(volc_rtc_exporter::clock::rfc3339_ms(polled_ms));
    assert_eq!(
        polls["room-was-up"],
        [at, "success".into(), serde_json::Value::Null],
        "a success: the last success"
    );
    assert_eq!(
        polls["room-was-down"],
        [
            serde_json::Value::Null,
            serde_json::Value::Null,
            serde_json::Value::Null
        ],
        "a failure of unknown outcome: nothing made up"
    );
    let (status, _) = child.terminate(10 * SEC).await;
    assert!(status.success());
    let _ = std::fs::remove_dir_all(dir);
}
