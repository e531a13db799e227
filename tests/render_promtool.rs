//! The whole `/metrics` body — per-target families for varied targets (hostile label values
//! included) plus the self-metrics — checked by `promtool check metrics`, which parses it and
//! lints it. promtool must be installed (`scripts/install-test-deps`); a missing promtool fails.

mod tools;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use volc_rtc_exporter::model::{status, Kind, RecordFile, Target, TargetKey, TaskSnapshot};
use volc_rtc_exporter::render::render;
use volc_rtc_exporter::store::Store;
use volc_rtc_exporter::telemetry::Telemetry;

const T0: u64 = 1_700_000_000_123;

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn target(kind: Kind, room: &str, task: Option<&str>, labels: &[(&str, &str)]) -> Target {
    Target {
        key: TargetKey {
            kind,
            app_id: "661e8f0d1ab2c3d4e5f60718".into(),
            room_id: room.into(),
            task_id: task.map(Into::into),
        },
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
    }
}

const HOSTILE: &str = "q\"uote b\\ackslash\nnewline } # , = 🎥 录制 \t";

fn body() -> String {
    let store = Store::new(vec![
        target(Kind::Record, "Room1", Some("Task1"), &[("team", "live")]),
        target(Kind::Record, "Room1", Some("Task2"), &[("team", HOSTILE)]),
        target(Kind::Record, "Room2", Some("Task3"), &[]),
        target(
            Kind::Webcast,
            "Room3",
            None,
            &[("env", ""), ("team", "web")],
        ),
        target(Kind::Webcast, "Room4", Some("Cast1"), &[]),
        target(Kind::Record, "Room5", Some("Never"), &[]),
    ]);
    store.record_success(
        0,
        TaskSnapshot {
            status: status::RUNNING,
            start_time_ms: 1_700_000_000_123,
            ..Default::default()
        },
        at(T0 + 30_000),
    );
    let files = vec![
        RecordFile {
            vid: Some(HOSTILE.into()),
            duration_ms: Some(3_599_999),
            size_bytes: Some(1 << 40),
            ..Default::default()
        },
        RecordFile {
            vid: Some(HOSTILE.into()),
            object_key: Some("rec/\"x\".mp4".into()),
            duration_ms: Some(1),
            size_bytes: Some(0),
            ..Default::default()
        },
        RecordFile {
            object_key: Some("rec/3.mp4".into()),
            ..Default::default()
        },
        RecordFile::default(),
    ];
    store.record_success(
        1,
        TaskSnapshot {
            status: status::ENDED,
            start_time_ms: 1_700_000_000_123,
            end_time_ms: 1_700_003_600_456,
            stop_reason: HOSTILE.into(),
            files,
            ..Default::default()
        },
        at(T0 + 3_700_000),
    );
    store.record_success(
        2,
        TaskSnapshot {
            status: status::FAILED,
            start_time_ms: 1_700_000_000_000,
            stop_reason: "StartTaskFailed".into(),
            ..Default::default()
        },
        at(T0),
    );
    store.record_failure(2);
    store.record_success(
        3,
        TaskSnapshot {
            status: status::ENDED,
            start_time_ms: 1_700_000_000_000,
            end_time_ms: 1_700_086_400_000,
            stop_reason: "ExceedMaxRunningTime".into(),
            max_running_time_s: Some(86_400),
            user_id: Some(HOSTILE.into()),
            ..Default::default()
        },
        at(T0 + 86_500_000),
    );
    store.record_failure(4);
    store.record_failure(5);

    let telemetry = Telemetry::new();
    telemetry.observe_request(
        volc_rtc_exporter::model::Action::GetRecordTask,
        volc_rtc_exporter::model::Outcome::Success,
        Duration::from_millis(42),
    );
    let mut out = Vec::new();
    render(&store, &telemetry, &mut out);
    String::from_utf8(out).expect("the body is UTF-8")
}

fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new(tools::promtool_program())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (scripts/install-test-deps)");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    (out.status.success(), tools::output_text(&out))
}

#[test]
fn body_passes_promtool_check_metrics_without_lint_findings() {
    let text = body();
    let (ok, report) = promtool_check(&text);
    assert!(
        ok && report.trim().is_empty(),
        "promtool: {report}\n---\n{text}"
    );

    // The body really holds what was checked: every per-target family, the hostile values
    // escaped, self-metrics and process metrics.
    for needle in [
        "volcengine_rtc_task_status{",
        "volcengine_rtc_task_start_timestamp_seconds{",
        "volcengine_rtc_task_end_timestamp_seconds{",
        "volcengine_rtc_task_duration_seconds{",
        "volcengine_rtc_task_stop_reason{",
        "volcengine_rtc_record_files{",
        "volcengine_rtc_record_size_bytes{",
        "volcengine_rtc_record_file_size_bytes{",
        "volcengine_rtc_record_file_duration_seconds{",
        "volcengine_rtc_webcast_max_running_time_seconds{",
        "volcengine_rtc_target_up{",
        "volcengine_rtc_target_last_success_timestamp_seconds{",
        "volcengine_rtc_task_stops_total{",
        "volcengine_rtc_api_requests_total{",
        "volcengine_rtc_exporter_build_info{",
        "process_resident_memory_bytes ",
        r#"file="q\"uote b\\ackslash\nnewline } # , = 🎥 录制 	#2""#,
        r#"reason="q\"uote b\\ackslash\nnewline } # , = 🎥 录制 	"} 1"#,
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn promtool_catches_broken_bodies() {
    // Guard: the check above can fail. A family without HELP is a lint finding, a raw newline
    // inside a label value a parse error.
    let (ok, report) = promtool_check("# TYPE foo_total counter\nfoo_total 1\n");
    assert!(!(ok && report.trim().is_empty()), "{report}");
    let (ok, _) = promtool_check("# HELP foo x\n# TYPE foo gauge\nfoo{a=\"x\ny\"} 1\n");
    assert!(!ok);
}
