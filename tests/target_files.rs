//! `target_files` with the real binary: files matched by a glob are followed while the exporter
//! runs (written in place or replaced by a rename), a broken file keeps its previous targets and
//! reports 0, a target in the config and a file is one target, and a restart serves the files'
//! targets from the store at once.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{get, key, tkey, ChildProcess, SimServer};
use volc_rtc_exporter::clock::system_time_to_ms;
use volc_rtc_exporter::model::{Kind, Target};
use volc_rtc_exporter::sim::scenario::{sim_credentials, SIM_ACCESS_KEY_ID};
use volc_rtc_exporter::sim::{stop_reason, Clock, SimOptions, SimTask, Simulator};

const APP: &str = "files-app";
const SEC: Duration = Duration::from_secs(1);

/// A target file's text: a YAML list of targets, written as under `targets:`.
fn file_text(targets: &[&Target]) -> String {
    let mut s = String::new();
    for t in targets {
        s.push_str(&format!(
            "- kind: record\n  app_id: \"{}\"\n  room_id: \"{}\"\n  task_id: \"{}\"\n",
            t.key.app_id,
            t.key.room_id,
            t.key.task_id.as_deref().unwrap_or("")
        ));
    }
    s
}

/// A record task of [`APP`] that started an hour ago and ended a minute later for `reason`.
fn ended_an_hour_ago(room: &str, task: &str, reason: &str) -> SimTask {
    let start_ms = system_time_to_ms(volc_rtc_exporter::clock::now()) - 3_600_000;
    SimTask::record(APP, room, task, start_ms).ends(start_ms + 60_000, reason)
}

/// The simulator on loopback with `tasks`, taking the simulator's credentials.
async fn simulator(tasks: Vec<SimTask>) -> SimServer {
    let sim = Simulator::new(SimOptions::default(), Clock::system());
    sim.add_credentials(&sim_credentials());
    sim.add_tasks(tasks);
    SimServer::start(sim).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_files_are_followed_while_running_and_across_a_restart() {
    let mut tasks = Vec::new();
    let mut targets = Vec::new();
    for i in 0..4 {
        let (room, task) = (format!("room-{i}"), format!("task-{i}"));
        tasks.push(ended_an_hour_ago(&room, &task, stop_reason::IDLE_TIME_OUT));
        targets.push(common::target(Kind::Record, APP, &room, &task));
    }
    let sim = simulator(tasks).await;
    let dir = common::scratch_dir("target-files");
    let files = dir.join("targets");
    std::fs::create_dir_all(&files).expect("mkdir");
    // The config lists target 0 too: one target from two sources.
    let cfg = common::write_config(
        &dir,
        format!(
            "api:\n  endpoint: http://127.0.0.1:{}\nschedule:\n  active_interval: 1s\n  \
             settle_interval: 1s\ntarget_files:\n  - targets/*.yaml\n\
             target_files_refresh_interval: 1s\n{}",
            sim.addr.port(),
            common::targets_yaml(&targets[..1])
        ),
    );
    let a = files.join("a.yaml");
    std::fs::write(&a, file_text(&[&targets[0], &targets[1]])).expect("write a.yaml");
    let store = dir.join("data");
    let (mut child, base) = common::start_binary(&cfg, &store, &[]).await;
    let status = |i: usize| tkey("task_status", &targets[i].key, &[]);
    let ok = |f: &Path| {
        key(
            "volcengine_rtc_target_file_last_load_successful",
            &[("file", &f.display().to_string())],
        )
    };
    let m = child
        .scrape_until(&base, 20 * SEC, "targets of a.yaml polled", |m| {
            get(m, &status(1)) == Some(3.0) && get(m, &status(0)) == Some(3.0)
        })
        .await;
    assert_eq!(get(&m, &ok(&a)), Some(1.0));

    // A second file, replaced by a rename as editors and Kubernetes do.
    let b = files.join("b.yaml");
    let tmp = dir.join("b.tmp");
    std::fs::write(&tmp, file_text(&[&targets[2]])).expect("write");
    std::fs::rename(&tmp, &b).expect("rename");
    child
        .scrape_until(&base, 20 * SEC, "b.yaml's target polled", |m| {
            get(m, &status(2)) == Some(3.0)
        })
        .await;
    std::fs::write(&tmp, file_text(&[&targets[3]])).expect("write");
    std::fs::rename(&tmp, &b).expect("rename");
    child
        .scrape_until(&base, 20 * SEC, "b.yaml replaced", |m| {
            get(m, &status(3)) == Some(3.0) && get(m, &status(2)).is_none()
        })
        .await;

    // A broken file keeps its previous targets and reports 0.
    std::fs::write(&a, "- kind: record\n  app_id: [oops\n").expect("break a.yaml");
    let m = child
        .scrape_until(&base, 20 * SEC, "a.yaml reported broken", |m| {
            get(m, &ok(&a)) == Some(0.0)
        })
        .await;
    assert_eq!(get(&m, &status(1)), Some(3.0), "previous targets kept");
    // The log line may reach us a moment after the metric does.
    let placed = format!(
        "{}:2:11: YAML syntax error: this `[` is not closed",
        a.display()
    );
    child
        .poll_until(5 * SEC, "the log to place the problem", || async {
            child.stderr().contains(&placed).then_some(())
        })
        .await;

    // a.yaml removed: target 1 leaves, target 0 stays (the config lists it).
    std::fs::remove_file(&a).expect("remove a.yaml");
    let m = child
        .scrape_until(&base, 20 * SEC, "a.yaml's targets gone", |m| {
            get(m, &status(1)).is_none()
        })
        .await;
    assert_eq!(get(&m, &status(0)), Some(3.0));
    assert_eq!(get(&m, &ok(&a)), None, "a gone file has no series");
    child.terminate(10 * SEC).await;

    // A restart serves the file's targets from the store at once.
    let (mut child, base) = common::start_binary(&cfg, &store, &[]).await;
    let m = common::scrape_at(&base).await;
    assert_eq!(
        get(&m, &status(3)),
        Some(3.0),
        "served from the store at once"
    );
    assert_eq!(get(&m, &status(1)), None);

    // A reload with other patterns: the new files are followed, the old ones' targets leave.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("c.yaml"), file_text(&[&targets[2]])).expect("write c.yaml");
    let text = std::fs::read_to_string(&cfg).expect("read the config");
    std::fs::write(&cfg, text.replace("targets/*.yaml", "other/*.yaml")).expect("rewrite");
    child.signal("HUP");
    let m = child
        .scrape_until(&base, 20 * SEC, "the new pattern followed", |m| {
            get(m, &status(2)) == Some(3.0) && get(m, &status(3)).is_none()
        })
        .await;
    assert_eq!(
        get(&m, &status(0)),
        Some(3.0),
        "the config's own target stays"
    );
    child.terminate(10 * SEC).await;
    sim.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_registered_through_the_api_are_polled_and_survive_a_restart() {
    let sim = simulator(vec![ended_an_hour_ago(
        "api-room",
        "api-task",
        stop_reason::START_TASK_FAILED,
    )])
    .await;
    let target = common::target(Kind::Record, APP, "api-room", "api-task");
    let dir = common::scratch_dir("targets-api");
    let cfg = common::write_config(
        &dir,
        format!(
            "api:\n  endpoint: http://127.0.0.1:{}\nschedule:\n  active_interval: 1s\n  \
             settle_interval: 1s\ntargets: []\n",
            sim.addr.port()
        ),
    );
    let store = dir.join("data");
    let secret = sim_credentials().secret_access_key.expose().to_string();
    let spawn = || {
        ChildProcess::spawn(
            &[
                &format!("--config.file={}", cfg.display()),
                &format!("--storage.path={}", store.display()),
                "--web.listen-address=127.0.0.1:0",
                "--web.enable-targets-api",
            ],
            &[
                ("VOLC_ACCESSKEY", SIM_ACCESS_KEY_ID),
                ("VOLC_SECRETKEY", secret.as_str()),
            ],
        )
    };
    let mut child = spawn();
    let addr = child
        .wait_for_word_after("message=listening address=", 20 * SEC)
        .await;
    let base = format!("http://{addr}");
    let body = format!(
        "[{{\"kind\":\"record\",\"app_id\":\"{APP}\",\"room_id\":\"api-room\",\"task_id\":\"api-task\"}}]"
    );
    common::targets_api(reqwest::Method::POST, &base, body.clone()).await;
    let status = tkey("task_status", &target.key, &[]);
    let failed = common::stops_key("record", APP, "StartTaskFailed");
    let m = child
        .scrape_until(&base, 20 * SEC, "the registered target polled", |m| {
            get(m, &failed) == Some(1.0)
        })
        .await;
    let first = get(&m, &status);
    assert!(first.is_some());
    child.terminate(10 * SEC).await;

    // After a restart it is still there, with its source, and counted once.
    let mut child = spawn();
    let addr = child
        .wait_for_word_after("message=listening address=", 20 * SEC)
        .await;
    let base = format!("http://{addr}");
    let m = common::scrape_at(&base).await;
    assert_eq!(get(&m, &status), first);
    assert_eq!(get(&m, &failed), Some(1.0));
    let (code, listed) = common::http_get(&format!("{base}/api/v1/targets"))
        .await
        .expect("GET");
    assert_eq!(code, 200);
    assert!(
        listed.contains("api-task") && listed.contains("\"api\""),
        "{listed}"
    );
    // A target the API does not know: its outcome and error are listed.
    let ghost = format!(
        "[{{\"kind\":\"record\",\"app_id\":\"{APP}\",\"room_id\":\"nowhere\",\"task_id\":\"ghost\"}}]"
    );
    common::targets_api(reqwest::Method::POST, &base, ghost).await;
    let row = child
        .poll_until(20 * SEC, "the ghost's failed poll listed", async || {
            let (_, listed) = common::http_get(&format!("{base}/api/v1/targets"))
                .await
                .expect("GET");
            serde_json::from_str::<serde_json::Value>(&listed)
                .ok()
                .and_then(|v| {
                    v["data"]
                        .as_array()?
                        .iter()
                        .find(|r| r["task_id"] == "ghost")
                        .cloned()
                })
                .filter(|r| r["last_outcome"] == "not_found")
        })
        .await;
    assert!(
        row["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{row}"
    );
    assert!(row["last_poll"].is_string(), "{row}");
    // Deregistered, it leaves.
    common::targets_api(reqwest::Method::DELETE, &base, body).await;
    let m = common::scrape_at(&base).await;
    assert_eq!(get(&m, &status), None);
    child.terminate(10 * SEC).await;
    sim.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
