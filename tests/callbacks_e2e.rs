//! RTC callbacks with the real binary: an empty `targets:` list, the simulator sending signed
//! lifecycle callbacks; the exporter discovers every task, reaches the simulator's truth,
//! refuses forged deliveries, and keeps discovered targets (and seen event ids) across a
//! restart on the same store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{get, key, tkey, Metrics, SimServer};
use tokio_util::sync::CancellationToken;
use volc_rtc_exporter::clock::system_time_to_ms;
use volc_rtc_exporter::credentials::Secret;
use volc_rtc_exporter::model::Kind;
use volc_rtc_exporter::sim::scenario::sim_credentials;
use volc_rtc_exporter::sim::{
    run_callbacks, stop_reason, CallbackSender, Clock, SimFile, SimOptions, SimTask, Simulator,
};

const APP: &str = "cb-app";
const SEC: Duration = Duration::from_secs(1);
const KEY: &str = "callback-key-for-tests-0123456789";

/// The sum of the `volcengine_rtc_callbacks_total` series whose key passes `keep`.
fn callbacks(m: &Metrics, keep: impl Fn(&str) -> bool) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with("volcengine_rtc_callbacks_total{") && keep(k))
        .map(|(_, v)| v)
        .sum()
}

fn accepted(m: &Metrics) -> f64 {
    callbacks(m, |k| k.contains("outcome=\"accepted\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_discover_every_task_without_a_target_list() {
    let now = system_time_to_ms(volc_rtc_exporter::clock::now());
    let sim = Simulator::new(SimOptions::default(), Clock::system());
    sim.add_credentials(&sim_credentials());
    // Tasks start and end during the test: one records with files, one fails to start.
    let ok = SimTask::record(APP, "room-a", "rec-a", now + 500)
        .ends(now + 1_500, stop_reason::IDLE_TIME_OUT)
        .files_at(
            now + 1_500,
            vec![SimFile::object("room-a/rec-a.mp4", now + 500, 1_000, "u").size(4_242)],
        );
    let failed = SimTask::record(APP, "room-b", "rec-b", now + 700)
        .ends(now + 800, stop_reason::START_TASK_FAILED);
    sim.add_tasks([ok, failed]);
    let sim = SimServer::start(sim).await;
    let dir = common::scratch_dir("callbacks-e2e");
    let cfg = common::write_config(
        &dir,
        format!(
            "api:\n  endpoint: http://127.0.0.1:{}\nschedule:\n  active_interval: 1s\n  \
             settle_interval: 1s\ncallbacks:\n  secret_key: \"{KEY}\"\ntargets: []\n",
            sim.addr.port()
        ),
    );
    let store = dir.join("data");
    let (mut child, base) = common::start_binary(&cfg, &store, &[]).await;
    let url = format!("{base}/callbacks/volcengine-rtc");
    let sender = CallbackSender::new(&url, Secret::new(KEY.to_string())).expect("loopback url");
    let stop = CancellationToken::new();
    let driver = tokio::spawn(run_callbacks(
        sim.sim.clone(),
        sender,
        now - 1,
        Duration::from_millis(50),
        stop.clone(),
    ));
    let a = common::target(Kind::Record, APP, "room-a", "rec-a");
    let b = common::target(Kind::Record, APP, "room-b", "rec-b");
    let failed_stops = common::stops_key("record", APP, "StartTaskFailed");
    let m = child
        .scrape_until(&base, 30 * SEC, "the tasks to be discovered", |m| {
            get(m, &tkey("task_status", &a.key, &[])) == Some(3.0)
                && get(m, &tkey("record_size_bytes", &a.key, &[])) == Some(4_242.0)
                && get(m, &failed_stops) == Some(1.0)
        })
        .await;
    stop.cancel();
    let _ = driver.await;
    assert!(get(&m, &tkey("task_status", &b.key, &[])).is_some());
    assert!(accepted(&m) >= 3.0, "{m:?}");

    // A forged delivery: 401, counted, nothing learned.
    let client = reqwest::Client::new();
    let forged = r#"{"EventType":"RecordStarted","EventData":"{\"AppId\":\"cb-app\",\"RoomId\":\"x\",\"TaskId\":\"y\"}","EventTime":"1","EventId":"forged-1","AppId":"cb-app","Version":"2020-12-01","Nonce":"abcd","Signature":"00"}"#;
    let resp = client.post(&url).body(forged).send().await.expect("POST");
    assert_eq!(resp.status().as_u16(), 401);
    let resp = client.get(&url).send().await.expect("GET");
    assert_eq!(resp.status().as_u16(), 405, "POST only");
    let m = common::scrape_at(&base).await;
    let bad = callbacks(&m, |k| k.contains("bad_signature"));
    assert_eq!(bad, 1.0);
    let stderr = child.stderr();
    assert!(!stderr.contains(KEY), "the key never shows");
    child.terminate(10 * SEC).await;

    // A restart on the same store: the discovered targets are still there, and a delivery
    // already seen is a duplicate.
    let (mut child, base) = common::start_binary(&cfg, &store, &[]).await;
    let m = common::scrape_at(&base).await;
    assert_eq!(get(&m, &tkey("task_status", &a.key, &[])), Some(3.0));
    assert_eq!(get(&m, &failed_stops), Some(1.0));
    let url = format!("{base}/callbacks/volcengine-rtc");
    let sender = CallbackSender::new(&url, Secret::new(KEY.to_string())).expect("loopback url");
    let again = sim.sim.callbacks_between(now - 1, now + 5_000);
    assert!(!again.is_empty());
    let delivery = sender.send(&again[0]).await;
    assert_eq!(delivery.status, Some(200));
    let m = common::scrape_at(&base).await;
    let duplicates = callbacks(&m, |k| k.contains("duplicate"));
    assert_eq!(duplicates, 1.0, "seen before the restart: a duplicate");
    let (_, listed) = common::http_get(&format!("{base}/targets"))
        .await
        .expect("GET");
    assert!(listed.contains("callback"), "the source is shown");
    child.terminate(10 * SEC).await;
    let _ = Arc::strong_count(&sim.sim);
    sim.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// `demo` shows callbacks: its unlisted tasks (in no target list) are discovered from the
/// signed events its simulator POSTs to the exporter's own endpoint, reach their true status,
/// and are listed with source `callback` on `/targets` and in the targets API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_discovers_its_unlisted_tasks_from_its_own_callbacks() {
    use volc_rtc_exporter::sim::demo_scenario;
    let scenario = demo_scenario(volc_rtc_exporter::clock::now());
    let unlisted: Vec<_> = scenario.unlisted_tasks().into_iter().cloned().collect();
    // The unlisted record that fails to start (5 s in) and the web capture (7 s in).
    let failed = unlisted
        .iter()
        .find(|t| {
            t.end
                .as_ref()
                .is_some_and(|e| e.stop_reason == stop_reason::START_TASK_FAILED)
        })
        .expect("an unlisted task fails to start");
    let webcast = unlisted
        .iter()
        .find(|t| t.kind() == Kind::Webcast)
        .expect("an unlisted web capture");
    fn labels(t: &SimTask) -> Vec<(&str, &str)> {
        vec![
            ("kind", t.kind().as_str()),
            ("app_id", t.app_id.as_str()),
            ("room_id", t.room_id.as_str()),
            ("task_id", t.task_id.as_str()),
            ("env", "demo"),
        ]
    }
    let status_of = |t: &SimTask| key("volcengine_rtc_task_status", &labels(t));
    let mut failed_reason = labels(failed);
    failed_reason.push(("reason", "StartTaskFailed"));
    let failed_reason = key("volcengine_rtc_task_stop_reason", &failed_reason);

    let (mut child, addr) = common::start_demo(&["--web.enable-targets-api"]).await;
    let base = format!("http://{addr}");
    assert!(
        child
            .stdout()
            .contains("RTC callbacks: the simulator POSTs"),
        "the intro mentions the callbacks:\n{}",
        child.stdout()
    );
    let m = child
        .scrape_until(&base, 30 * SEC, "the demo's unlisted tasks", |m| {
            get(m, &status_of(failed)) == Some(4.0)
                && get(m, &failed_reason) == Some(1.0)
                && get(m, &status_of(webcast)).is_some()
        })
        .await;
    assert!(accepted(&m) > 0.0, "accepted deliveries are counted");
    let bad = callbacks(&m, |k| !k.contains("outcome=\"accepted\""));
    assert_eq!(bad, 0.0, "every demo delivery verifies: {m:?}");

    // The source, on the page and in the API.
    let (status, page) = common::http_get(&format!("{base}/targets"))
        .await
        .expect("GET /targets");
    assert_eq!(status, 200);
    let row = page
        .lines()
        .find(|l| l.contains(&failed.task_id))
        .unwrap_or_else(|| panic!("{} is on /targets:\n{page}", failed.task_id));
    assert!(row.contains("callback"), "{row}");
    let (status, api) = common::http_get(&format!("{base}/api/v1/targets"))
        .await
        .expect("GET /api/v1/targets");
    assert_eq!(status, 200);
    let api: serde_json::Value = serde_json::from_str(&api).expect("JSON");
    let rows = api["data"].as_array().expect("data");
    for t in [failed, webcast] {
        let row = rows
            .iter()
            .find(|r| r["task_id"] == t.task_id.as_str())
            .unwrap_or_else(|| panic!("{} in the API", t.task_id));
        assert_eq!(row["sources"], serde_json::json!(["callback"]), "{row}");
    }
    // A listed target keeps its list source.
    let listed = &scenario.targets[0].key;
    let row = rows
        .iter()
        .find(|r| r["task_id"] == listed.task_id.as_deref().unwrap_or_default())
        .expect("a listed target in the API");
    assert!(
        !row["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|s| s == "callback"),
        "{row}"
    );
    // The landing page's header counts every target, whatever its source, as the phase
    // table below it does. (Read between two API reads that agree: a task may be discovered
    // meanwhile.)
    let api_rows = || async {
        let (_, api) = common::http_get(&format!("{base}/api/v1/targets"))
            .await
            .expect("GET /api/v1/targets");
        let api: serde_json::Value = serde_json::from_str(&api).expect("JSON");
        api["data"].as_array().cloned().unwrap_or_default()
    };
    let (rows, landing) = loop {
        let before = api_rows().await;
        let (status, landing) = common::http_get(&format!("{base}/")).await.expect("GET /");
        assert_eq!(status, 200);
        if api_rows().await.len() == before.len() {
            break (before, landing);
        }
    };
    let from_callbacks = rows
        .iter()
        .filter(|r| {
            r["sources"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s == "callback"))
        })
        .count();
    let record = rows.iter().filter(|r| r["kind"] == "record").count();
    let header = format!(
        "{record} record and {} webcast targets (",
        rows.len() - record
    );
    assert!(landing.contains(&header), "no {header:?} on /:\n{landing}");
    assert!(
        landing.contains(&format!("{from_callbacks} from callbacks")),
        "callback targets are not counted on /:\n{landing}"
    );
    assert!(
        landing.contains(&format!("<p>{} targets · <a href=\"targets\">", rows.len())),
        "the phase table counts another number:\n{landing}"
    );
    let stdout = child.stdout();
    assert!(!stdout.contains(volc_rtc_exporter::commands::DEMO_CALLBACK_KEY));
    child.terminate(10 * SEC).await;
}
