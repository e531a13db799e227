//! The real binary: `--help`, `check` (a good and a broken config), `once` against a simulator
//! started here (exact values; failed targets named on stderr), and `demo` serving `/metrics`
//! until SIGTERM.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{get, key, parse_exposition, tkey, SimServer};
use volc_rtc_exporter::clock::system_time_to_ms;
use volc_rtc_exporter::model::{Kind, TargetKey};
use volc_rtc_exporter::sim::scenario::{sim_credentials, SIM_ACCESS_KEY_ID};
use volc_rtc_exporter::sim::{stop_reason, Clock, SimFile, SimOptions, SimTask, Simulator};

const APP: &str = "661e8f0d1ab2c3d4e5f60718";
const SECRET: &str = "c2VjcmV0LWZvci1jbGktdGVzdHMtb25seQ==";

/// Runs the binary to completion with a clean credential environment plus `env`.
async fn run(args: &[&str], env: &[(&str, &str)]) -> (Output, String, String) {
    let home = common::scratch_dir("home");
    let mut cmd = tokio::process::Command::from(common::binary_command(args, env, &home));
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the binary finishes within 60 s")
        .expect("run the binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = std::fs::remove_dir_all(home);
    (out, stdout, stderr)
}

#[tokio::test]
async fn help_lists_every_flag_and_command() {
    let (out, stdout, _) = run(&["--help"], &[]).await;
    assert!(out.status.success(), "--help exits 0");
    for word in [
        "--config.file",
        "--web.listen-address",
        "--web.config.file",
        "--web.max-requests",
        "[default: 40]",
        "--web.enable-lifecycle",
        "--web.enable-targets-api",
        "--log.level",
        "--log.format",
        "--help",
        "--version",
        "check",
        "once",
        "demo",
        "[default: :19966]",
        "debug, info, warn, error",
        "logfmt, json",
    ] {
        assert!(stdout.contains(word), "--help lacks {word:?}:\n{stdout}");
    }
    let (out, stdout, _) = run(&["--version"], &[]).await;
    assert!(out.status.success());
    assert_eq!(
        stdout.trim(),
        format!(
            "volcengine-rtc-exporter {} (revision {})",
            env!("CARGO_PKG_VERSION"),
            volc_rtc_exporter::REVISION
        )
    );
    let (out, _, stderr) = run(&["--no-such-flag"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "bad usage exits 2");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

#[tokio::test]
async fn check_example_config_with_environment_credentials() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.yaml");
    let arg = format!("--config.file={}", example.display());
    let ak = "AKLTexampleAccessKey0001";
    let (out, stdout, stderr) = run(
        &["check", &arg],
        &[("VOLC_ACCESSKEY", ak), ("VOLC_SECRETKEY", SECRET)],
    )
    .await;
    assert!(out.status.success(), "check exits 0; stderr:\n{stderr}");
    assert!(
        stdout.starts_with(&format!("{}: OK\n", example.display())),
        "{stdout}"
    );
    for line in [
        "budget:      GetRecordTask 50/s, GetWebCastTask 50/s",
        "schedule:    active tasks every 15s, settling tasks every 1m, retention 1d",
        "targets:     4 (record 2, webcast 2)",
        "environment variables VOLC_ACCESSKEY/VOLC_SECRETKEY",
        "warnings:    none",
    ] {
        assert!(stdout.contains(line), "summary lacks {line:?}:\n{stdout}");
    }
    for leak in [SECRET, ak] {
        assert!(
            !stdout.contains(leak) && !stderr.contains(leak),
            "{leak:?} printed"
        );
    }

    // Without credentials the same config is a problem.
    let (out, _, stderr) = run(&["check", &arg], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.to_lowercase().contains("credential"), "{stderr}");
}

#[tokio::test]
async fn check_broken_config_names_every_place() {
    let dir = common::scratch_dir("broken");
    let path = dir.join("broken.yaml");
    std::fs::write(
        &path,
        "api:\n  timeout: 5s\n  bogus_key: 1\nbudget:\n  GetRecordTask: -1\ntargets:\n  \
         - kind: record\n    app_id: \"bad id!\"\n    room_id: r\n    task_id: t\n",
    )
    .expect("write the config");
    let arg = format!("--config.file={}", path.display());
    let (out, stdout, stderr) = run(
        &["check", &arg],
        &[("VOLC_ACCESSKEY", "AKLTx"), ("VOLC_SECRETKEY", SECRET)],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "check fails");
    assert!(!stdout.contains("OK"), "{stdout}");
    let p = path.display();
    for place in [
        format!("{p}:3:3: unknown key `bogus_key`"),
        format!("{p}:5:18: `budget.GetRecordTask`"),
        format!("{p}:8:13: `targets[0].app_id`"),
    ] {
        assert!(stderr.contains(&place), "stderr lacks {place:?}:\n{stderr}");
    }
    // A YAML syntax error has its place too.
    std::fs::write(&path, "targets:\n  - kind: record\n   app_id: [\n").expect("write");
    let (out, _, stderr) = run(&["check", &arg], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!("{p}:3:")),
        "no line:column for the syntax error:\n{stderr}"
    );
    // An unclosed `[` is placed on its own line, not where the parser gave up.
    std::fs::write(&path, "targets:\n  - kind: [record\n    app_id: a\n").expect("write");
    let (out, _, stderr) = run(&["check", &arg], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!(
            "{p}:2:11: YAML syntax error: this `[` is not closed"
        )),
        "the open bracket is not named at its place:\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn once_config(sim: &SimServer, targets: &[volc_rtc_exporter::model::Target]) -> String {
    format!(
        "api:\n  endpoint: http://127.0.0.1:{}\n  timeout: 5s\nbudget:\n  GetRecordTask: 20\n  \
         GetWebCastTask: 20\n{}",
        sim.addr.port(),
        common::targets_yaml(targets)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_prints_exact_values_and_names_failed_targets() {
    let now = system_time_to_ms(volc_rtc_exporter::clock::now());
    let start = now - 3_600_000;
    let end = now - 600_000;
    let files = vec![
        SimFile::object("app/room/rec-1/a.mp4", start, 1_800_000, "host").size(337_500_000),
        SimFile::vod("v0d1234abcd", start + 1_800_000, 1_200_500, "host").size(225_093_750),
    ];
    let rec = SimTask::record(APP, "user@example.com", "rec.task-01", start)
        .ends(end, stop_reason::IDLE_TIME_OUT)
        .files_at(end + 5_000, files);
    let web = SimTask::webcast(APP, "Lobby", "web-1", start)
        .ends(start + 2_000, stop_reason::START_TASK_FAILED)
        .webcast_plan(|p| p.max_running_time_s = 3_600);
    let sim = Simulator::new(SimOptions::default(), Clock::system());
    sim.add_credentials(&sim_credentials());
    sim.add_tasks([rec, web]);
    let sim = SimServer::start(sim).await;

    let good = vec![
        common::target(Kind::Record, APP, "user@example.com", "rec.task-01"),
        common::target(Kind::Webcast, APP, "Lobby", "web-1"),
    ];
    let dir = common::scratch_dir("once");
    let path = common::write_config(&dir, once_config(&sim, &good));
    let arg = format!("--config.file={}", path.display());
    let secret = sim_credentials().secret_access_key.expose().to_string();
    let env = [
        ("VOLC_ACCESSKEY", SIM_ACCESS_KEY_ID),
        ("VOLC_SECRETKEY", secret.as_str()),
    ];
    let (out, stdout, stderr) = run(&["once", &arg], &env).await;
    assert!(out.status.success(), "once exits 0; stderr:\n{stderr}");
    let m = parse_exposition(&stdout).expect("valid exposition on stdout");
    let r = &good[0].key;
    let w = &good[1].key;
    let want = [
        (tkey("task_status", r, &[]), 3.0),
        (
            tkey("task_start_timestamp_seconds", r, &[]),
            start as f64 / 1e3,
        ),
        (tkey("task_end_timestamp_seconds", r, &[]), end as f64 / 1e3),
        (tkey("task_duration_seconds", r, &[]), 3_000.0),
        (
            tkey("task_stop_reason", r, &[("reason", "IdleTimeOut")]),
            1.0,
        ),
        (tkey("record_files", r, &[]), 2.0),
        (tkey("record_size_bytes", r, &[]), 562_593_750.0),
        (
            tkey(
                "record_file_size_bytes",
                r,
                &[("file", "app/room/rec-1/a.mp4")],
            ),
            337_500_000.0,
        ),
        (
            tkey("record_file_size_bytes", r, &[("file", "v0d1234abcd")]),
            225_093_750.0,
        ),
        (
            tkey(
                "record_file_duration_seconds",
                r,
                &[("file", "v0d1234abcd")],
            ),
            1_200.5,
        ),
        (tkey("target_up", r, &[]), 1.0),
        (tkey("task_status", w, &[]), 4.0),
        (tkey("task_duration_seconds", w, &[]), 2.0),
        (
            tkey("task_stop_reason", w, &[("reason", "StartTaskFailed")]),
            1.0,
        ),
        (tkey("webcast_max_running_time_seconds", w, &[]), 3_600.0),
        (tkey("target_up", w, &[]), 1.0),
        (stops_key("record", "IdleTimeOut"), 1.0),
        (stops_key("record", "StopByAPI"), 0.0),
        (stops_key("webcast", "StartTaskFailed"), 1.0),
        (requests_key("GetRecordTask", "success"), 1.0),
        (requests_key("GetWebCastTask", "success"), 1.0),
        (requests_key("GetRecordTask", "not_found"), 0.0),
    ];
    for (k, v) in &want {
        assert_eq!(get(&m, k), Some(*v), "{k}\n{stdout}");
    }
    assert!(!stdout.contains(&secret) && !stderr.contains(&secret));
    assert!(
        !stderr.contains("poll failed"),
        "no failure expected:\n{stderr}"
    );

    // Two targets that do not exist: exit 1, one stderr line each, the rest still printed.
    let mut targets = good.clone();
    targets.push(common::target(
        Kind::Record,
        APP,
        "user@example.com",
        "rec.typo",
    ));
    targets.push(common::target(Kind::Webcast, APP, "Nowhere", "web-missing"));
    std::fs::write(&path, once_config(&sim, &targets)).expect("write the config");
    let (out, stdout, stderr) = run(&["once", &arg], &env).await;
    assert_eq!(out.status.code(), Some(1), "once fails; stderr:\n{stderr}");
    let failed: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("poll failed"))
        .collect();
    assert_eq!(failed.len(), 2, "{stderr}");
    for missing in ["task_id=rec.typo", "task_id=web-missing"] {
        let lines: Vec<&&str> = failed.iter().filter(|l| l.contains(missing)).collect();
        assert_eq!(lines.len(), 1, "{missing}: {stderr}");
        assert!(lines[0].contains("not_found"), "{}", lines[0]);
        // The line names the endpoint that answered.
        let endpoint = format!("at http://127.0.0.1:{}:", sim.addr.port());
        assert!(lines[0].contains(&endpoint), "{}", lines[0]);
    }
    let m = parse_exposition(&stdout).expect("valid exposition on stdout");
    assert_eq!(get(&m, &tkey("task_status", r, &[])), Some(3.0));
    assert_eq!(get(&m, &tkey("target_up", r, &[])), Some(1.0));
    let typo = &targets[2].key;
    assert_eq!(get(&m, &tkey("target_up", typo, &[])), Some(0.0));
    assert_eq!(get(&m, &tkey("task_status", typo, &[])), None);
    assert_eq!(
        get(&m, &requests_key("GetRecordTask", "not_found")),
        Some(1.0)
    );
    assert_eq!(
        get(&m, &requests_key("GetWebCastTask", "not_found")),
        Some(1.0)
    );
    sim.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

fn stops_key(kind: &str, reason: &str) -> String {
    common::stops_key(kind, APP, reason)
}

fn requests_key(action: &str, outcome: &str) -> String {
    key(
        "volcengine_rtc_api_requests_total",
        &[("action", action), ("outcome", outcome)],
    )
}

/// The `task_status` series of one of the demo's record targets (labelled `env="demo"` and
/// its team).
fn demo_record_status(app: &str, room: &str, task: &str, team: &str) -> String {
    let target = TargetKey {
        kind: Kind::Record,
        app_id: app.into(),
        room_id: room.into(),
        task_id: Some(task.into()),
    };
    let mut labels = common::target_labels(&target);
    labels.push(("env", "demo"));
    labels.push(("team", team));
    key("volcengine_rtc_task_status", &labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_metrics_and_stops_on_sigterm() {
    let (mut child, addr) = common::start_demo(&[]).await;
    let url = format!("http://{addr}/metrics");
    // The demo's StartTaskFailed recording, labelled like every target of the demo.
    let failed_status = demo_record_status(
        "5f3c2a1b0e9d8c7b6a594837",
        "lab-7",
        "rec-lab-7",
        "education",
    );
    let m = child
        .scrape_until(
            &format!("http://{addr}"),
            Duration::from_secs(15),
            "the demo's /metrics to be populated",
            |m| {
                let statuses = m
                    .keys()
                    .filter(|k| k.starts_with("volcengine_rtc_task_status{"))
                    .count();
                statuses >= 10 && get(m, &failed_status).is_some()
            },
        )
        .await;
    assert_eq!(get(&m, &failed_status), Some(4.0));
    // Tasks that finished hours before the demo started are shown too (retention).
    let earlier = demo_record_status(APP, "user@example.com", "rec.task-01", "live");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut first_seen = None;
    loop {
        let shown = match common::http_get(&url).await {
            Some((200, text)) => parse_exposition(&text).ok().and_then(|m| get(&m, &earlier)),
            _ => None,
        };
        let now = tokio::time::Instant::now();
        match (shown, first_seen) {
            // Still there a few housekeeping rounds after it was first shown.
            (Some(3.0), Some(at)) if now >= at + Duration::from_secs(3) => break,
            (Some(3.0), None) => first_seen = Some(now),
            (Some(3.0), Some(_)) => {}
            (other, _) => assert!(
                first_seen.is_none() && now < deadline,
                "a task that ended an hour before the demo is not shown: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (healthy, _) = common::http_get(&format!("http://{addr}/-/healthy"))
        .await
        .expect("/-/healthy answers");
    assert_eq!(healthy, 200);

    let (status, took) = child.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "demo exit status {status}");
    assert!(
        took <= Duration::from_secs(5),
        "SIGTERM took {took:?} to stop the demo"
    );
    assert!(
        common::http_get(&url).await.is_none(),
        "still serving after exit"
    );
}

/// `check` on a config whose targets come only from target files, or only from callbacks:
/// exit 0, no "nothing will be polled" warning, and the summary names those sources. A
/// broken target file fails `check` with its place.
#[tokio::test]
async fn check_with_only_target_files_or_only_callbacks() {
    let dir = common::scratch_dir("check-sources");
    let creds = [("VOLC_ACCESSKEY", "AKLTx"), ("VOLC_SECRETKEY", SECRET)];
    std::fs::create_dir_all(dir.join("targets")).expect("mkdir");
    std::fs::write(
        dir.join("targets/more.yaml"),
        format!("- kind: record\n  app_id: {APP}\n  room_id: r1\n  task_id: t1\n"),
    )
    .expect("write the targets file");
    std::fs::write(dir.join("key"), "callback-key-for-check\n").expect("write the key");
    for (name, text, says) in [
        (
            "files.yaml",
            "target_files: [\"targets/*.yaml\"]\ntargets: []\n".to_string(),
            "1 files matched now, with 1 targets",
        ),
        (
            "files-no-list.yaml",
            "target_files: [\"targets/more.yaml\"]\n".to_string(),
            "1 files matched now, with 1 targets",
        ),
        (
            "callbacks.yaml",
            "callbacks:\n  secret_key_file: key\ntargets: []\n".to_string(),
            "callbacks:   on /callbacks/volcengine-rtc for any app",
        ),
        (
            // As in docs/CALLBACKS.md: no `targets:` key at all.
            "callbacks-no-list.yaml",
            "callbacks:\n  secret_key_file: key\n".to_string(),
            "callbacks:   on /callbacks/volcengine-rtc for any app",
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, &text).expect("write the config");
        let arg = format!("--config.file={}", path.display());
        let (out, stdout, stderr) = run(&["check", &arg], &creds).await;
        assert!(out.status.success(), "{name}: {stdout}\n{stderr}");
        assert!(
            !stdout.contains("nothing will be polled"),
            "{name}: {stdout}"
        );
        assert!(
            !stderr.contains("nothing will be polled"),
            "{name}: {stderr}"
        );
        assert!(stdout.contains("warnings:    none"), "{name}: {stdout}");
        assert!(
            stdout.contains(says),
            "{name}: summary lacks {says:?}:\n{stdout}"
        );
        assert!(
            !stdout.contains("callback-key-for-check"),
            "the key is printed"
        );
    }
    // A broken target file fails `check`, at its place.
    std::fs::write(dir.join("targets/broken.yaml"), "- kind: recrd\n").expect("write");
    let arg = format!("--config.file={}", dir.join("files.yaml").display());
    let (out, stdout, stderr) = run(&["check", &arg], &creds).await;
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("broken.yaml:1:"), "{stderr}");
    // The plain case still warns.
    let path = dir.join("empty.yaml");
    std::fs::write(&path, "targets: []\n").expect("write the config");
    let arg = format!("--config.file={}", path.display());
    let (out, stdout, _) = run(&["check", &arg], &creds).await;
    assert!(out.status.success());
    assert!(stdout.contains("nothing will be polled"), "{stdout}");
}

/// `--storage.path=` (empty) runs the exporter with its state in memory: it serves, says so,
/// and creates no folder, neither `./data` nor any other, in its working directory.
#[tokio::test]
async fn empty_storage_path_keeps_state_in_memory() {
    let dir = common::scratch_dir("memory-store");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    let config = common::write_config(
        &dir,
        format!(
            "api:\n  endpoint: http://127.0.0.1:9\ntargets:\n  - kind: record\n    app_id: {APP}\n    \
             room_id: r1\n    task_id: t1\n"
        ),
    );
    let config_arg = format!("--config.file={}", config.display());
    let mut cmd = common::binary_command(
        &[
            &config_arg,
            "--storage.path=",
            "--web.listen-address=127.0.0.1:0",
        ],
        &[("VOLC_ACCESSKEY", "AKLTx"), ("VOLC_SECRETKEY", SECRET)],
        &dir,
    );
    cmd.current_dir(&work)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .expect("start the exporter");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::BufReader::new(stderr);
    let mut log = String::new();
    let addr = loop {
        use tokio::io::AsyncBufReadExt as _;
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(30), lines.read_line(&mut line))
            .await
            .expect("the exporter logs within 30 s")
            .expect("read stderr");
        assert!(n > 0, "the exporter ended:\n{log}");
        log.push_str(&line);
        if let Some(rest) = line.split("message=listening address=").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    };
    assert!(log.contains("state is kept in memory only"), "{log}");
    let metrics = common::scrape_at(&format!("http://{addr}")).await;
    assert!(
        metrics
            .keys()
            .any(|k| k.starts_with("volcengine_rtc_task_stops_total{") && k.contains(APP)),
        "the target is not served: {metrics:?}"
    );
    let entries: Vec<_> = std::fs::read_dir(&work)
        .expect("read the working directory")
        .map_while(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(entries.is_empty(), "the exporter created {entries:?}");
    let _ = child.kill().await;
}
